#include "sim/core/error.hpp"

namespace bubblesim {

void fail_assertion(const char* expr, const char* file, int line, const std::string& msg) {
  throw InternalError(std::string("internal error at ") + file + ":" + std::to_string(line) +
                      ": assertion `" + expr + "` failed" + (msg.empty() ? "" : ": " + msg));
}

}  // namespace bubblesim
