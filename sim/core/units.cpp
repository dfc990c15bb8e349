#include "sim/core/units.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

#include "sim/core/error.hpp"

namespace bubblesim {
namespace {

constexpr double kMaxSeconds = static_cast<double>(std::numeric_limits<int64_t>::max()) / Time::kPerSecond;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

/// Splits "12.5 GB/s" into 12.5 and "GB/s"; throws if there is no number or no unit.
std::pair<double, std::string_view> split_number(std::string_view text, std::string_view what,
                                                 std::string_view accepted) {
  std::string_view s = trim(text);
  double value = 0.0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr == s.data()) {
    throw InputError(std::string(what) + ": expected a number with a unit (" + std::string(accepted) +
                     "), got \"" + std::string(text) + "\"");
  }
  std::string_view unit = trim(std::string_view(ptr, s.data() + s.size() - ptr));
  if (unit.empty()) {
    throw InputError(std::string(what) + ": \"" + std::string(text) + "\" has no unit; write it with one of " +
                     std::string(accepted));
  }
  if (!std::isfinite(value) || value < 0) {
    throw InputError(std::string(what) + ": must be a finite non-negative quantity, got \"" + std::string(text) +
                     "\"");
  }
  return {value, unit};
}

}  // namespace

Time Time::from_seconds(double seconds) {
  if (!std::isfinite(seconds) || std::fabs(seconds) >= kMaxSeconds) {
    throw InputError("time of " + std::to_string(seconds) + " s is out of range (at most about 106 days)");
  }
  return Time(std::llround(seconds * static_cast<double>(kPerSecond)));
}

Time Bandwidth::transfer_time(Bytes b) const {
  if (b.value == 0) return Time::zero();
  return Time::from_seconds(static_cast<double>(b.value) / bytes_per_s);
}

Time parse_time(std::string_view text, std::string_view what) {
  static constexpr std::string_view kAccepted = "ps, ns, us, ms, s";
  static constexpr std::array<std::pair<std::string_view, double>, 5> kUnits{{
      {"ps", 1e-12}, {"ns", 1e-9}, {"us", 1e-6}, {"ms", 1e-3}, {"s", 1.0}}};
  auto [value, unit] = split_number(text, what, kAccepted);
  for (const auto& [name, scale] : kUnits) {
    if (unit == name) return Time::from_seconds(value * scale);
  }
  throw InputError(std::string(what) + ": unknown time unit \"" + std::string(unit) + "\" (accepted: " +
                   std::string(kAccepted) + ")");
}

Bandwidth parse_bandwidth(std::string_view text, std::string_view what) {
  static constexpr std::string_view kAccepted = "B/s, kB/s, MB/s, GB/s, TB/s, b/s, Kb/s, Mb/s, Gb/s, Tb/s";
  static constexpr std::array<std::pair<std::string_view, double>, 10> kUnits{{
      {"B/s", 1.0}, {"kB/s", 1e3}, {"MB/s", 1e6}, {"GB/s", 1e9}, {"TB/s", 1e12},
      {"b/s", 1.0 / 8}, {"Kb/s", 1e3 / 8}, {"Mb/s", 1e6 / 8}, {"Gb/s", 1e9 / 8}, {"Tb/s", 1e12 / 8}}};
  auto [value, unit] = split_number(text, what, kAccepted);
  for (const auto& [name, scale] : kUnits) {
    if (unit == name) {
      if (value <= 0) throw InputError(std::string(what) + ": bandwidth must be > 0, got \"" + std::string(text) + "\"");
      return Bandwidth{value * scale};
    }
  }
  throw InputError(std::string(what) + ": unknown bandwidth unit \"" + std::string(unit) + "\" (accepted: " +
                   std::string(kAccepted) + ")");
}

std::optional<int64_t> parse_integer(std::string_view text) {
  int64_t v = 0;
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;  // from_chars takes '-' but not '+'
  const auto [ptr, ec] = std::from_chars(begin, end, v);
  if (ec != std::errc() || ptr != end || begin == end) return std::nullopt;
  return v;
}

std::optional<double> parse_number(std::string_view text) {
  const std::string s(text);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used == 0 || used != s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string format_time(Time t) {
  const double s = t.seconds();
  const double a = std::fabs(s);
  char buf[64];
  if (a == 0) return "0 s";
  if (a >= 1) std::snprintf(buf, sizeof buf, "%.4g s", s);
  else if (a >= 1e-3) std::snprintf(buf, sizeof buf, "%.4g ms", s * 1e3);
  else if (a >= 1e-6) std::snprintf(buf, sizeof buf, "%.4g us", s * 1e6);
  else if (a >= 1e-9) std::snprintf(buf, sizeof buf, "%.4g ns", s * 1e9);
  else std::snprintf(buf, sizeof buf, "%lld ps", static_cast<long long>(t.count_ps()));
  return buf;
}

}  // namespace bubblesim
