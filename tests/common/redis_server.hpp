// A real redis-server for the remote tier's tests: loopback only, a free port, no persistence,
// its files in a temp directory; stopped (SIGKILL) when it goes out of scope. Tests skip when
// redis-server is not installed (setup.sh installs it). Header-only: the tests that use it
// (tests/cpu/jit/test_remote_lookup.cpp, tests/cpu/cli/test_cli_remote.cpp, ...) include it.
#pragma once

#include "tests/common/run_command.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

namespace sigjit::test {

inline std::optional<std::string> find_program_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  dirs += ":/usr/sbin:/usr/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::filesystem::path candidate = std::filesystem::path(dirs.substr(start, end - start)) / name;
    start = end + 1;
    if (!candidate.parent_path().empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return std::nullopt;
}

inline int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  if (fd >= 0) ::close(fd);
  return port;
}

class TestRedis {
 public:
  explicit TestRedis(std::filesystem::path dir) : dir_(std::move(dir)) {
    binary_ = find_program_on_path("redis-server").value_or("");
    cli_ = find_program_on_path("redis-cli").value_or("");
  }
  ~TestRedis() { stop(); }
  TestRedis(const TestRedis&) = delete;
  TestRedis& operator=(const TestRedis&) = delete;
  bool installed() const { return !binary_.empty() && !cli_.empty(); }

  // Starts on `port` (0: a free one) and waits until it answers PING (at most 5 s).
  bool start(int port = 0) {
    if (!installed()) return false;
    port_ = port != 0 ? port : free_tcp_port();
    const std::string port_text = std::to_string(port_);
    const std::string log = (dir_ / "redis.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl(binary_.c_str(), binary_.c_str(), "--port", port_text.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--dir", dir_.c_str(), "--logfile", log.c_str(), "--daemonize", "no", "--maxclients", "1000", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid_ < 0) return false;
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (cli("PING").find("PONG") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop();
    return false;
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  std::string cli(const std::string& args) const {
    return run_command(cli_ + " -h 127.0.0.1 -p " + std::to_string(port_) + " " + args + " 2>&1").out;
  }

 private:
  std::string binary_, cli_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace sigjit::test
