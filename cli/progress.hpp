// A progress line for long CLI work: a bar with an ETA redrawn in place on a terminal, plain
// lines (one per 10% and the last) when stderr is a file or a pipe, so CI logs stay readable.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace sigjit::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, int total) : label_(std::move(label)), total_(total), tty_(isatty(fileno(stderr))) {
    std::fprintf(stderr, "%s\n", label_.c_str());
  }
  void update(int done, const std::string& message, int total = 0) {
    if (total > 0 && total != total_) {
      total_ = total;
      last_decile_ = -1;
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double eta = done > 0 && total_ > 0 ? elapsed / done * (total_ - done) : 0;
    const int width = 30, filled = total_ > 0 ? width * done / total_ : 0;
    if (tty_) {
      fmt::print(stderr, "\r  [{:#<{}}{:.<{}}] {}/{} ETA {:>4.0f}s {:<40.40}", "", filled, "", width - filled, done, total_, eta, message);
      std::fflush(stderr);
      dirty_ = true;
      return;
    }
    const int decile = total_ > 0 ? 10 * done / total_ : 0;
    if (decile != last_decile_ || done == total_) {
      fmt::print(stderr, "  {}/{} ({:.0f} s, ETA {:.0f} s) {}\n", done, total_, elapsed, eta, message);
      last_decile_ = decile;
    }
  }
  void finish() {
    if (dirty_) std::fputc('\n', stderr);
    dirty_ = false;
  }

 private:
  std::string label_;
  int total_;
  bool tty_;
  bool dirty_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace sigjit::cli
