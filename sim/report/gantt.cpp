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

struct PhaseStyle {
  Phase phase;
  const char* colour;
  const char* legend;  // XML-escaped
};

constexpr PhaseStyle kPhaseStyles[] = {{Phase::F, "#4c78a8", "F forward"},
                                       {Phase::B, "#54a24b", "B backward"},
                                       {Phase::I, "#72b7b2", "I input grad"},
                                       {Phase::W, "#f58518", "W weight grad"},
                                       {Phase::FB, "#b279a2", "F&amp;B overlapped"}};
constexpr const char* kOtherColour = "#9d755d";  // ops without a pipeline phase

const char* phase_colour(const Op& op) {
  for (const PhaseStyle& s : kPhaseStyles) {
    if (s.phase == op.label.phase) return s.colour;
  }
  return kOtherColour;
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

namespace {

/// Geometry of the SVG Gantt, in pixels.
struct SvgLayout {
  static constexpr double kTop = 56, kRow = 30, kGap = 8, kPlot = 1100, kRight = 30;
  static constexpr double kCharWidth = 7.0;   // of the 11 px bar labels
  static constexpr double kLegendGap = 50;    // from the axis to the legend
  static constexpr double kLegendStep = 140;  // between legend entries
  static constexpr double kLegendLine = 24;   // between legend lines
  static constexpr int kTicks = 10;
  size_t rows;
  double span;         // makespan in the display unit
  double left = 80;    // room for the row labels
  double bottom = 70;  // axis labels and legend
  double axis_y() const { return kTop + rows * (kRow + kGap); }
  double row_y(size_t row) const { return kTop + row * (kRow + kGap); }
  double x_of(double v) const { return left + v / span * kPlot; }
};

/// One row of the chart: the ops of some streams of one device.
struct GanttRow {
  std::string label;
  std::vector<StreamId> streams;
};

/// What a chart shows: rows, a title and the unit; `traffic` colours communication ops by the
/// parallelism they serve (cluster runs).
struct GanttView {
  const Program& program;
  const Trace& trace;
  const TimeUnit& unit;
  std::string title;
  std::vector<GanttRow> rows;
  bool traffic = false;
};

struct TrafficStyle {
  Traffic traffic;
  const char* colour;
  const char* legend;
};
constexpr TrafficStyle kTrafficStyles[] = {{Traffic::TensorParallel, "#e45756", "TP collective"},
                                           {Traffic::Pipeline, "#ff9da6", "PP transfer"},
                                           {Traffic::DataParallel, "#bab0ac", "DP collective"},
                                           {Traffic::Ulysses, "#eeca3b", "Ulysses all-to-all"},
                                           {Traffic::Ring, "#9467bd", "ring K/V"},
                                           {Traffic::ContextGather, "#17becf", "CP all-gather"}};

const char* op_colour(const GanttView& v, const Op& op) {
  if (v.traffic && op.kind != OpKind::Compute) {
    for (const TrafficStyle& s : kTrafficStyles) {
      if (s.traffic == op.label.traffic) return s.colour;
    }
  }
  return phase_colour(op);
}

void svg_header(std::ostream& out, const GanttView& v, const SvgLayout& L) {
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << L.left + L.kPlot + L.kRight << "\" height=\""
      << L.axis_y() + L.bottom << "\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n";
  out << "<defs><pattern id=\"idle\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
         "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#f4f4f4\"/>"
         "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#d0d0d0\" stroke-width=\"2\"/></pattern></defs>\n";
  out << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  out << "<text x=\"" << L.left << "\" y=\"24\" font-size=\"16\" font-weight=\"bold\">" << xml_escape(v.title)
      << "</text>\n";
}

/// Vertical grid lines with "nice" tick labels in the scenario's unit.
void svg_axis(std::ostream& out, const GanttView& v, const SvgLayout& L) {
  char buf[512];
  const double step = nice_step(L.span, SvgLayout::kTicks);
  for (int k = 0; k * step <= L.span * (1 + 1e-9); ++k) {
    const double x = L.x_of(k * step);
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>"
                  "<text x=\"%.2f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" fill=\"#444\">%s</text>\n",
                  x, L.kTop - 6, x, L.axis_y(), x, L.axis_y() + 16, num(k * step).c_str());
    out << buf;
  }
  std::snprintf(buf, sizeof buf,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">time (%s)</text>\n",
                L.left + L.kPlot / 2, L.axis_y() + 34, v.unit.name.c_str());
  out << buf;
}

/// One row: its hatched (idle) background, then a bar per op with its microbatch inside.
void svg_row(std::ostream& out, const GanttView& v, const SvgLayout& L, size_t index) {
  const Program& p = v.program;
  const GanttRow& row = v.rows[index];
  char buf[512];
  const double y = L.row_y(index);
  std::snprintf(buf, sizeof buf,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%s</text>\n"
                "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"url(#idle)\"/>\n",
                L.left - 8, y + L.kRow / 2 + 4, xml_escape(row.label).c_str(), L.left, y, L.kPlot, L.kRow);
  out << buf;
  for (StreamId s : row.streams) {
    for (OpId id : p.stream(s).ops) {
      const OpRecord& rec = v.trace.records[id];
      const double x0 = L.x_of(v.unit.of(rec.start));
      const double w = std::max(0.5, L.x_of(v.unit.of(rec.end)) - x0);
      std::snprintf(buf, sizeof buf,
                    "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" stroke=\"white\" "
                    "stroke-width=\"0.6\"><title>%s%s: %s to %s %s</title></rect>\n",
                    x0, y, w, L.kRow, op_colour(v, p.op(id)), xml_escape(short_name(p, id)).c_str(),
                    where_of(p.op(id)).c_str(), num(v.unit.of(rec.start)).c_str(), num(v.unit.of(rec.end)).c_str(),
                    v.unit.name.c_str());
      out << buf;
      const std::string label = bar_label(p, id);
      if (label.empty() || w < L.kCharWidth * label.size() + 2) continue;
      std::snprintf(buf, sizeof buf,
                    "<text x=\"%.2f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" fill=\"white\">%s</text>\n",
                    x0 + w / 2, y + L.kRow / 2 + 4, label.c_str());
      out << buf;
    }
  }
}

void svg_legend(std::ostream& out, const GanttView& v, const SvgLayout& L) {
  char buf[512];
  const double ly = L.axis_y() + L.kLegendGap;
  double lx = L.left;
  const char* kEntry =
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\" stroke=\"#ccc\"/>"
      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n";
  for (const PhaseStyle& s : kPhaseStyles) {
    std::snprintf(buf, sizeof buf, kEntry, lx, ly - 11, s.colour, lx + 19, ly, s.legend);
    out << buf;
    lx += L.kLegendStep;
  }
  std::snprintf(buf, sizeof buf, kEntry, lx, ly - 11, "url(#idle)", lx + 19, ly,
                "idle; numbers = microbatch (chunk letter)");
  out << buf;
  if (!v.traffic) return;
  lx = L.left;
  for (const TrafficStyle& s : kTrafficStyles) {
    std::snprintf(buf, sizeof buf, kEntry, lx, ly + L.kLegendLine - 11, s.colour, lx + 19, ly + L.kLegendLine,
                  s.legend);
    out << buf;
    lx += L.kLegendStep;
  }
}

void write_svg(std::ostream& out, const GanttView& v) {
  check_svg_size(v.program);
  SvgLayout layout{v.rows.size(), std::max(1e-300, v.unit.of(v.trace.makespan))};
  size_t longest = 0;
  for (const GanttRow& r : v.rows) longest = std::max(longest, r.label.size());
  if (v.traffic) {
    layout.left = std::max(layout.left, 16 + 6.5 * static_cast<double>(longest));
    layout.bottom += SvgLayout::kLegendLine;
  }
  svg_header(out, v, layout);
  svg_axis(out, v, layout);
  for (size_t i = 0; i < v.rows.size(); ++i) svg_row(out, v, layout, i);
  svg_legend(out, v, layout);
  out << "</svg>\n";
}

}  // namespace

void write_svg_gantt(std::ostream& out, const RunResult& r) {
  char buf[512];
  const std::string chunks = r.job->shape.v > 1 ? ", v=" + std::to_string(r.job->shape.v) : "";
  std::snprintf(buf, sizeof buf, "%s: %s, p=%d, m=%d%s; iteration %s %s, bubble %.1f%%", r.scenario->name.c_str(),
                std::string(info(r.job->kind).name).c_str(), r.job->shape.p, r.job->shape.m, chunks.c_str(),
                num(r.unit.of(r.trace->makespan)).c_str(), r.unit.name.c_str(), 100 * r.metrics.idle_fraction);
  GanttView v{*r.program, *r.trace, r.unit, buf, {}, false};
  for (DeviceId d = 0; d < r.program->devices().size(); ++d) {
    v.rows.push_back({"device " + std::to_string(d), r.program->devices()[d].streams});
  }
  write_svg(out, v);
}

void write_svg_gantt(std::ostream& out, const Program& p, const Trace& t, const TimeUnit& unit,
                     const std::string& title) {
  GanttView v{p, t, unit, title, {}, true};
  for (const Device& d : p.devices()) {
    // "stage 0 ring 1 (gpu 8)" -> "stage 0 ring 1": the stream name follows.
    const std::string device = d.name.substr(0, d.name.find(" ("));
    for (StreamId s : d.streams) {
      if (!p.stream(s).ops.empty()) v.rows.push_back({device + " " + p.stream(s).name, {s}});
    }
  }
  write_svg(out, v);
}

}  // namespace bubblesim::sim
