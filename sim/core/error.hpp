// Error types shared by every module, and the always-on internal assertion.
// Bad input (scenario, CLI, IR) is an InputError; broken internal invariants are InternalError.
// This is not a logging facility: errors end the operation that raised them.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace bubblesim {

/// Bad input from a user: scenario file, command line or a Program built from them.
/// The CLI prints the message on one line and exits with status 2.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A schedule that cannot make progress: the event queue drained with ops still pending.
/// The message names every blocked op and what it waits for.
class DeadlockError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A violated internal invariant: a bug in bubblesim, never the user's fault.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

[[noreturn]] void fail_assertion(const char* expr, const char* file, int line, const std::string& msg);

/// The value named `name` in `table` ({value, name} pairs); otherwise InputError
/// "<what> \"name\" (valid: a, b, ...)".
template <typename T, size_t N>
T from_name(const std::pair<T, std::string_view> (&table)[N], std::string_view name, const std::string& what) {
  std::string valid;
  for (const auto& [value, n] : table) {
    if (n == name) return value;
    valid += (valid.empty() ? "" : ", ") + std::string(n);
  }
  throw InputError(what + " \"" + std::string(name) + "\" (valid: " + valid + ")");
}

}  // namespace bubblesim

/// Always-on assertion for programmer errors (never for user input); throws InternalError.
#define BUBBLESIM_ASSERT(cond, msg)                                              \
  do {                                                                           \
    if (!(cond)) ::bubblesim::fail_assertion(#cond, __FILE__, __LINE__, (msg)); \
  } while (false)
