// The fuzz input as a file: readers that take a path read /proc/self/fd/N, an in-memory file
// (memfd) rewritten for each input. Shared by the harnesses of tests/fuzz; not a harness itself.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace vaelab::fuzz {

class MemfdInput {
 public:
  explicit MemfdInput(const char* name) : fd_(::memfd_create(name, MFD_CLOEXEC)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }

  // Replaces the file's contents by the input; returns its path.
  const std::string& put(const std::uint8_t* data, std::size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    std::size_t done = 0;
    while (done < size) {
      const ssize_t w = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (w <= 0) std::abort();
      done += static_cast<std::size_t>(w);
    }
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

[[noreturn]] inline void broken(const char* harness, const char* what) {
  std::fprintf(stderr, "%s: invariant broken: %s\n", harness, what);
  std::abort();
}

}  // namespace vaelab::fuzz
