// Chrome trace event format: {"traceEvents": [...]}, complete events ("ph":"X") with
// microsecond timestamps, one pid per device and one tid per stream, plus name metadata.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "sim/report/report.hpp"

namespace bubblesim::sim {

void write_chrome_trace(std::ostream& out, const Program& p, const Trace& t, const TimeUnit& unit,
                        const std::string& title) {
  // Perfetto reads microseconds; abstract units are stored, and so shown, as milliseconds.
  constexpr double kMicrosPerSecond = 1e6;
  char buf[512];
  out << "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"scenario\":" << nlohmann::json(title).dump() << ",\"time_unit\":\"" << unit.name
      << "\",\"note\":\"1 " << unit.name << " is shown as " << format_time(Time::from_seconds(1.0 / unit.per_second))
      << "\"},\n\"traceEvents\":[\n";
  bool first = true;
  auto sep = [&]() -> const char* {
    const char* s = first ? "" : ",\n";
    first = false;
    return s;
  };
  for (DeviceId d = 0; d < p.devices().size(); ++d) {
    std::snprintf(buf, sizeof buf, "%s{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%u,\"args\":{\"name\":\"device %u\"}}",
                  sep(), d, d);
    out << buf;
    std::snprintf(buf, sizeof buf, "%s{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":%u,\"args\":{\"sort_index\":%u}}",
                  sep(), d, d);
    out << buf;
    for (StreamId s : p.devices()[d].streams) {
      std::snprintf(buf, sizeof buf,
                    "%s{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%u,\"tid\":%u,\"args\":{\"name\":\"%s\"}}", sep(),
                    d, s, p.stream(s).name.c_str());
      out << buf;
    }
  }
  for (OpId id = 0; id < p.num_ops(); ++id) {
    const Op& op = p.op(id);
    const OpRecord& r = t.records[id];
    const Label& l = op.label;
    std::snprintf(buf, sizeof buf,
                  "%s{\"ph\":\"X\",\"name\":\"%s\",\"cat\":\"%s\",\"pid\":%u,\"tid\":%u,\"ts\":%.6f,\"dur\":%.6f,"
                  "\"args\":{\"op\":%u,\"phase\":\"%s\",\"stage\":%d,\"chunk\":%d,\"microbatch\":%d",
                  sep(), short_name(p, id).c_str(), l.phase == Phase::None ? to_string(op.kind) : to_string(l.phase),
                  op.device, op.stream, r.start.seconds() * kMicrosPerSecond,
                  (r.end - r.start).seconds() * kMicrosPerSecond, id, to_string(l.phase), l.stage, l.chunk,
                  l.microbatch);
    out << buf;
    if (l.phase == Phase::FB) {
      std::snprintf(buf, sizeof buf, ",\"b_stage\":%d,\"b_chunk\":%d,\"b_microbatch\":%d", l.b_stage, l.b_chunk,
                    l.b_microbatch);
      out << buf;
    }
    out << "}}";
  }
  out << "\n]}\n";
}

}  // namespace bubblesim::sim
