#include "sim/core/error.hpp"

#include <sstream>

namespace bubblesim {

void fail_assertion(const char* expr, const char* file, int line, const std::string& msg) {
  std::ostringstream s;
  s << "internal error at " << file << ":" << line << ": assertion `" << expr << "` failed";
  if (!msg.empty()) s << ": " << msg;
  throw InternalError(s.str());
}

}  // namespace bubblesim
