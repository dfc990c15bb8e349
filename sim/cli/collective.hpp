// `bubblesim collective`: predicted time, algbw and busbw of one collective over a range of
// sizes on a scenario's cluster, in the columns nccl-tests prints. Not a benchmark: nothing runs
// on hardware here (that is hw/).
#pragma once

#include <ostream>
#include <cstdint>
#include <string>
#include <vector>

namespace bubblesim::sim {

struct CollectiveOptions {
  std::string scenario;
  std::string op = "all-reduce";
  int ranks = 0;               // 0: every GPU of the group
  std::string group = "all";   // intra | inter | all
  std::string sizes = "8:1G";  // BEGIN:END, doubling
  std::string algo = "auto";   // auto (NCCL's choice: ring or NVLS) | ring | nvls | two-level
  int channels = 0;            // ring channels across nodes; 0: one per GPU of the group on a node
  std::string mode = "flow";   // flow | analytic
  std::string protocol = "auto";  // auto | LL | LL128 | Simple (NCCL_PROTO), ring collectives
  std::string format = "text"; // text | csv
};

/// Sizes "8B:8GB" -> 8, 16, ..., 8 GiB. K, M, G (with or without B, or KiB/MiB/GiB) are binary
/// multiples, as in nccl-tests -b/-e. Throws InputError on a malformed range.
std::vector<int64_t> parse_size_range(const std::string& text);

void run_collective(const CollectiveOptions& opt, std::ostream& out);

}  // namespace bubblesim::sim
