// The two POSIX file helpers every layer that writes a file needs: an owning descriptor and a
// write that finishes what it starts (short writes, EINTR). They live here, below kernels/ and
// cache/, so neither layer keeps a copy of its own.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <utility>

namespace sigjit::posix {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

// Writes all `size` bytes, retrying short writes and EINTR; false (errno set) on any other error.
bool write_all(int fd, const void* data, std::size_t size);

}  // namespace sigjit::posix
