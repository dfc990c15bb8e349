#include <catch2/catch.hpp>

#include "sim/core/error.hpp"
#include "sim/core/units.hpp"

using namespace bubblesim;

TEST_CASE("seconds convert to the nearest picosecond, never truncated", "[core]") {
  CHECK(Time::from_seconds(1.0).count_ps() == 1'000'000'000'000);
  CHECK(Time::from_seconds(1.4e-12).count_ps() == 1);
  CHECK(Time::from_seconds(1.6e-12).count_ps() == 2);
  CHECK(Time::from_seconds(0.999999999999).count_ps() == 999'999'999'999);
  CHECK(Time::from_seconds(2.0 / 3.0).count_ps() == 666'666'666'667);
  CHECK(Time::from_seconds(-0.5).count_ps() == -500'000'000'000);
  CHECK_THROWS_AS(Time::from_seconds(1e9), InputError);
  CHECK_THROWS_AS(Time::from_seconds(std::numeric_limits<double>::infinity()), InputError);
}

TEST_CASE("time strings need a unit and parse exactly", "[core]") {
  CHECK(parse_time("2 us", "x").count_ps() == 2'000'000);
  CHECK(parse_time("1.5ms", "x").count_ps() == 1'500'000'000);
  CHECK(parse_time("300 ns", "x").count_ps() == 300'000);
  CHECK(parse_time("10 ps", "x").count_ps() == 10);
  CHECK(parse_time(" 1 s ", "x") == Time::from_seconds(1));
  CHECK_THROWS_WITH(parse_time("5", "cluster.inter_node.latency"), Catch::Contains("has no unit"));
  CHECK_THROWS_WITH(parse_time("5 min", "lat"), Catch::Contains("unknown time unit") && Catch::Contains("ps, ns"));
  CHECK_THROWS_WITH(parse_time("fast", "lat"), Catch::Contains("expected a number"));
  CHECK_THROWS_AS(parse_time("-2 us", "lat"), InputError);
}

TEST_CASE("bandwidth strings use powers of ten and bits or bytes", "[core]") {
  CHECK(parse_bandwidth("200 Gb/s", "x").bytes_per_s == Approx(25e9));
  CHECK(parse_bandwidth("400GB/s", "x").bytes_per_s == Approx(400e9));
  CHECK(parse_bandwidth("1 TB/s", "x").bytes_per_s == Approx(1e12));
  CHECK(parse_bandwidth("25 MB/s", "x").bytes_per_s == Approx(25e6));
  CHECK(parse_bandwidth("8 b/s", "x").bytes_per_s == Approx(1));
  CHECK_THROWS_WITH(parse_bandwidth("200", "bw"), Catch::Contains("has no unit"));
  CHECK_THROWS_WITH(parse_bandwidth("200 GiB/s", "bw"), Catch::Contains("unknown bandwidth unit"));
  CHECK_THROWS_AS(parse_bandwidth("0 GB/s", "bw"), InputError);
}

TEST_CASE("a transfer time is bytes over bandwidth, rounded to the picosecond", "[core]") {
  const Bandwidth b{100e9};
  CHECK(b.transfer_time(Bytes{1 << 30}).count_ps() == 10'737'418'240);
  CHECK(b.transfer_time(Bytes{0}) == Time::zero());
}

TEST_CASE("times format with a readable prefix", "[core]") {
  CHECK(format_time(Time::from_seconds(2.5)) == "2.5 s");
  CHECK(format_time(Time::from_seconds(12.5e-6)) == "12.5 us");
  CHECK(format_time(Time::ps(7)) == "7 ps");
}

TEST_CASE("integers parse whole or not at all", "[core]") {
  CHECK(parse_integer("8192") == 8192);
  CHECK(parse_integer("-3") == -3);
  CHECK(parse_integer("+7") == 7);
  CHECK(parse_number("0.1") == 0.1);
  CHECK(parse_number("1.5e2") == 150.0);
  CHECK_FALSE(parse_number("12 TFLOPS"));
  CHECK_FALSE(parse_number(""));
  CHECK_FALSE(parse_number("inf"));
  CHECK_FALSE(parse_integer("12x").has_value());
  CHECK_FALSE(parse_integer("").has_value());
  CHECK_FALSE(parse_integer("1.5").has_value());
  CHECK_FALSE(parse_integer("99999999999999999999").has_value());
}
