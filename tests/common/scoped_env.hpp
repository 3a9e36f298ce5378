// Sets (or unsets: nullptr / nullopt) an environment variable for a scope, restoring the old value;
// shared by the tests that drive SIGJIT_* switches.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace sigjit::test {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : ScopedEnv(name, value ? std::optional<std::string>(value) : std::nullopt) {}
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_.c_str(), old_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace sigjit::test
