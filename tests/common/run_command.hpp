// Runs a shell command for the CLI tests and captures what it printed: the tests drive the real
// `sigjit` binary (SIGJIT_CLI_PATH) the way a user's shell does.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace sigjit::test {

struct CommandResult {
  int code = -1;    // exit status; -1 when the command could not start or died of a signal
  std::string out;  // what the command wrote, stdout and stderr together when it redirects 2>&1
};

inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace sigjit::test
