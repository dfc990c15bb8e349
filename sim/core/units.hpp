// Strong types for the physical quantities bubblesim computes with: Time (int64 picoseconds),
// Bytes, Flops and Bandwidth (bytes/second, GB = 1e9), and the parsers for unit strings.
// Not a general units library: only the quantities and units the scenario format uses.
#pragma once

#include <compare>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace bubblesim {

/// A point in or a span of simulated time, as an integer count of picoseconds.
/// Arithmetic is exact; conversion from seconds happens only in from_seconds(), which rounds
/// to the nearest picosecond (never truncates) and rejects values out of range.
class Time {
 public:
  static constexpr int64_t kPerSecond = 1'000'000'000'000;

  constexpr Time() = default;
  static constexpr Time ps(int64_t n) { return Time(n); }
  static constexpr Time zero() { return Time(0); }
  static constexpr Time max() { return Time(std::numeric_limits<int64_t>::max()); }
  /// The one rounding function: seconds -> nearest picosecond. Throws InputError if the value
  /// is not finite or does not fit in int64 picoseconds (about 106 days).
  static Time from_seconds(double seconds);

  constexpr int64_t count_ps() const { return ps_; }
  constexpr double seconds() const { return static_cast<double>(ps_) / kPerSecond; }

  constexpr Time operator+(Time o) const { return Time(ps_ + o.ps_); }
  constexpr Time operator-(Time o) const { return Time(ps_ - o.ps_); }
  constexpr Time& operator+=(Time o) { ps_ += o.ps_; return *this; }
  constexpr Time& operator-=(Time o) { ps_ -= o.ps_; return *this; }
  constexpr Time operator*(int64_t k) const { return Time(ps_ * k); }
  constexpr auto operator<=>(const Time&) const = default;

 private:
  constexpr explicit Time(int64_t ps) : ps_(ps) {}
  int64_t ps_ = 0;
};

constexpr Time max(Time a, Time b) { return a < b ? b : a; }
constexpr Time min(Time a, Time b) { return a < b ? a : b; }

/// A number of bytes (memory or message size).
struct Bytes {
  int64_t value = 0;
  constexpr auto operator<=>(const Bytes&) const = default;
  constexpr Bytes operator+(Bytes o) const { return {value + o.value}; }
};

/// A number of floating-point operations (a multiply-add counts 2).
struct Flops {
  double value = 0.0;
  constexpr auto operator<=>(const Flops&) const = default;
};

/// Bytes per second; GB = 1e9 bytes, as nccl-tests counts.
struct Bandwidth {
  double bytes_per_s = 0.0;
  constexpr auto operator<=>(const Bandwidth&) const = default;
  /// Time to move `b` at this bandwidth, rounded to the nearest ps.
  Time transfer_time(Bytes b) const;
};

/// Parses "2 us", "1.5ms", "300 ns", "10 ps", "1 s". A bare number is an error (the unit is
/// required). Throws InputError naming `what` (the field) and the rule.
Time parse_time(std::string_view text, std::string_view what);

/// Parses "200 Gb/s" (bits, powers of 10), "400GB/s" (bytes), "25 MB/s", "1 TB/s", ...
/// Throws InputError naming `what` and listing the accepted units.
Bandwidth parse_bandwidth(std::string_view text, std::string_view what);

/// The whole of `text` as a decimal integer (optional sign), or nullopt when it is not one or
/// does not fit in int64. The one integer parser behind scenario keys and command options.
std::optional<int64_t> parse_integer(std::string_view text);
/// The whole of `text` as a finite decimal number, or nullopt. The one number parser behind
/// scenario keys and manifests.
std::optional<double> parse_number(std::string_view text);

/// Formats a time for humans with an SI prefix, e.g. "12.5 us", "3.02 s".
std::string format_time(Time t);

}  // namespace bubblesim
