// ASCII and SVG Gantt charts of one iteration.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "sim/core/error.hpp"
#include "sim/report/report.hpp"

namespace bubblesim::sim {
namespace {

char phase_char(const Op& op) {
  switch (op.label.phase) {
    case Phase::F: return 'F';
    case Phase::B: return 'B';
    case Phase::I: return 'I';
    case Phase::W: return 'W';
    case Phase::FB: return 'X';
    case Phase::None: break;
  }
  return op.kind == OpKind::Compute ? '#' : '~';
}

/// Label inside a bar: "3", "3a", "3a|1b" (F&B).
std::string bar_label(const Program& p, OpId id) {
  const Label& l = p.op(id).label;
  auto part = [&](int32_t mb, int16_t chunk) {
    std::string s = std::to_string(mb);
    if (chunk >= 0 && static_cast<size_t>(chunk) < p.chunk_names.size()) s += p.chunk_names[static_cast<size_t>(chunk)];
    return s;
  };
  if (l.microbatch < 0) return "";
  if (l.phase == Phase::FB) return part(l.microbatch, l.chunk) + "|" + part(l.b_microbatch, l.b_chunk);
  return part(l.microbatch, l.chunk);
}

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks.
double nice_step(double range, int target) {
  if (range <= 0) return 1;
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double k : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= k * mag) return k * mag;
  }
  return 10 * mag;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

/// " (stage 5, from layer 12)" for tooltips.
std::string where_of(const Op& op) {
  std::string s;
  if (op.label.stage >= 0) s += "stage " + std::to_string(op.label.stage);
  if (op.label.layer >= 0) s += (s.empty() ? "" : ", ") + std::string("from layer ") + std::to_string(op.label.layer);
  return s.empty() ? s : " (" + s + ")";
}

const char* phase_colour(const Op& op) {
  switch (op.label.phase) {
    case Phase::F: return "#4c78a8";
    case Phase::B: return "#54a24b";
    case Phase::I: return "#72b7b2";
    case Phase::W: return "#f58518";
    case Phase::FB: return "#b279a2";
    case Phase::None: break;
  }
  return "#9d755d";
}

}  // namespace

std::string ascii_gantt(const Program& p, const Trace& t, const TimeUnit& unit, size_t width, size_t max_devices,
                        size_t max_ops) {
  if (p.devices().size() > max_devices || p.num_ops() > max_ops || t.makespan <= Time::zero()) return "";
  // Exact drawing when every start and end is a multiple of a quantum that fits the width.
  int64_t quantum = 0;
  for (const OpRecord& r : t.records) quantum = std::gcd(std::gcd(quantum, r.start.count_ps()), r.end.count_ps());
  const int64_t cells = quantum > 0 ? t.makespan.count_ps() / quantum : 0;
  const bool exact = cells > 0 && static_cast<size_t>(cells) <= width;
  const size_t per_cell = exact ? std::max<size_t>(1, std::min<size_t>(4, width / static_cast<size_t>(cells))) : 1;
  const size_t cols = exact ? static_cast<size_t>(cells) * per_cell : width;
  auto col_of = [&](Time x) {
    return static_cast<size_t>(std::llround(static_cast<double>(x.count_ps()) / t.makespan.count_ps() * cols));
  };
  std::string out;
  static const std::vector<OpId> kNoOps;
  for (DeviceId dev = 0; dev < p.devices().size(); ++dev) {
    std::string row(cols, '.');
    const StreamId cs = p.compute_stream(dev);
    for (OpId id : cs == kNone ? kNoOps : p.stream(cs).ops) {
      const OpRecord& r = t.records[id];
      const size_t a = col_of(r.start);
      const size_t b = std::max(a + 1, col_of(r.end));
      const char c = phase_char(p.op(id));
      const std::string text = exact ? std::string(1, c) + bar_label(p, id) : std::string(1, c);
      for (size_t k = a; k < b && k < cols; ++k) row[k] = k - a < text.size() ? text[k - a] : (exact ? '=' : c);
    }
    char name[24];
    std::snprintf(name, sizeof name, "%4u |", dev);
    out += name + row + "|\n";
  }
  out += "     0" + std::string(cols > 1 ? cols - 1 : 0, ' ') + num(unit.of(t.makespan)) + " " + unit.name + "\n";
  out += "     F forward  B backward  I input-grad  W weight-grad  X overlapped F&B  . idle";
  out += exact ? "  (digits: microbatch)\n" : "  (scaled: one column = " + num(unit.of(t.makespan) / cols) + " " +
                                                 unit.name + ")\n";
  return out;
}

void check_svg_size(const Program& p) {
  if (p.num_ops() > kMaxSvgOps) {
    throw InputError("--gantt: " + std::to_string(p.num_ops()) + " ops are too many for an SVG (at most " +
                     std::to_string(kMaxSvgOps) + "); use --trace for a Perfetto trace instead");
  }
}

void write_svg_gantt(std::ostream& out, const RunResult& r) {
  const Program& p = *r.program;
  const Trace& t = *r.trace;
  check_svg_size(p);
  // Layout in pixels.
  constexpr double kLeft = 80, kTop = 56, kRow = 30, kGap = 8, kPlot = 1100, kRight = 30;
  constexpr double kBottom = 70;       // axis labels and legend
  constexpr double kCharWidth = 7.0;   // of the 11 px bar labels
  constexpr double kLegendGap = 50;    // from the axis to the legend
  constexpr double kLegendStep = 140;  // between legend entries
  const size_t rows = p.devices().size();
  const double height = kTop + rows * (kRow + kGap) + kBottom;
  const double width = kLeft + kPlot + kRight;
  const double span = std::max(1e-300, r.unit.of(t.makespan));
  auto x_of = [&](Time x) { return kLeft + r.unit.of(x) / span * kPlot; };
  char buf[512];
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n";
  out << "<defs><pattern id=\"idle\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
         "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#f4f4f4\"/>"
         "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#d0d0d0\" stroke-width=\"2\"/></pattern></defs>\n";
  out << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  std::snprintf(buf, sizeof buf, "%s: %s, p=%d, m=%d%s; iteration %s %s, bubble %.1f%%", r.scenario->name.c_str(),
                std::string(info(r.job->kind).name).c_str(), r.job->shape.p, r.job->shape.m,
                r.job->shape.v > 1 ? (", v=" + std::to_string(r.job->shape.v)).c_str() : "",
                num(r.unit.of(t.makespan)).c_str(), r.unit.name.c_str(), 100 * r.metrics.idle_fraction);
  out << "<text x=\"" << kLeft << "\" y=\"24\" font-size=\"16\" font-weight=\"bold\">" << xml_escape(buf) << "</text>\n";
  // Time axis with nice ticks in the scenario's unit.
  const double step = nice_step(span, 10);
  const double axis_y = kTop + rows * (kRow + kGap);
  for (double v = 0; v <= span * (1 + 1e-9); v += step) {
    const double x = kLeft + v / span * kPlot;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>"
                  "<text x=\"%.2f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">%s</text>\n",
                  x, kTop - 6, x, axis_y, x, axis_y + 16, num(v).c_str());
    out << buf;
  }
  std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">time (%s)</text>\n",
                kLeft + kPlot / 2, axis_y + 34, r.unit.name.c_str());
  out << buf;
  for (size_t row = 0; row < rows; ++row) {
    const Device& d = p.devices()[row];
    const double y = kTop + row * (kRow + kGap);
    std::snprintf(buf, sizeof buf,
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">device %zu</text>\n"
                  "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"url(#idle)\"/>\n",
                  kLeft - 8, y + kRow / 2 + 4, row, kLeft, y, kPlot, kRow);
    out << buf;
    for (StreamId s : d.streams) {
      for (OpId id : p.stream(s).ops) {
        const OpRecord& rec = t.records[id];
        const double x0 = x_of(rec.start);
        const double w = std::max(0.5, x_of(rec.end) - x0);
        const std::string label = bar_label(p, id);
        std::snprintf(buf, sizeof buf,
                      "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" stroke=\"white\" "
                      "stroke-width=\"0.6\"><title>%s%s: %s to %s %s</title></rect>\n",
                      x0, y, w, kRow, phase_colour(p.op(id)), xml_escape(short_name(p, id)).c_str(),
                      where_of(p.op(id)).c_str(), num(r.unit.of(rec.start)).c_str(), num(r.unit.of(rec.end)).c_str(),
                      r.unit.name.c_str());
        out << buf;
        if (!label.empty() && w >= kCharWidth * label.size() + 2) {
          std::snprintf(buf, sizeof buf,
                        "<text x=\"%.2f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" fill=\"white\">%s</text>\n",
                        x0 + w / 2, y + kRow / 2 + 4, label.c_str());
          out << buf;
        }
      }
    }
  }
  // Legend.
  const double ly = axis_y + kLegendGap;
  double lx = kLeft;
  const std::pair<const char*, const char*> legend[] = {{"#4c78a8", "F forward"},     {"#54a24b", "B backward"},
                                                        {"#72b7b2", "I input grad"},  {"#f58518", "W weight grad"},
                                                        {"#b279a2", "F&amp;B overlapped"}};
  for (const auto& [colour, text] : legend) {
    std::snprintf(buf, sizeof buf,
                  "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n",
                  lx, ly - 11, colour, lx + 19, ly, text);
    out << buf;
    lx += kLegendStep;
  }
  std::snprintf(buf, sizeof buf,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"url(#idle)\" stroke=\"#ccc\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">idle; numbers = microbatch (chunk letter)</text>\n",
                lx, ly - 11, lx + 19, ly);
  out << buf << "</svg>\n";
}

}  // namespace bubblesim::sim
