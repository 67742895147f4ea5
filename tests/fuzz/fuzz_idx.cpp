// libFuzzer harness for the IDX reader (core/data.cpp): each input is written to an in-memory file
// (memfd) and read as images and as labels; what is accepted must hold together (sizes, batches).
// Not a test of the folder loader. Built by tests/fuzz/CMakeLists.txt, run by scripts/run-fuzzers.sh.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/data.hpp"
#include "core/error.hpp"

namespace {

int g_fd = -1;
std::string g_path;

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_idx: invariant broken: %s\n", what);
  std::abort();
}

// read_idx_* take a path and read through zlib's gzopen; /proc/self/fd/N reopens the memfd at 0.
void put(const std::uint8_t* data, std::size_t size) {
  if (::ftruncate(g_fd, 0) != 0) std::abort();
  std::size_t done = 0;
  while (done < size) {
    const ssize_t w = ::pwrite(g_fd, data + done, size - done, static_cast<off_t>(done));
    if (w <= 0) std::abort();
    done += static_cast<std::size_t>(w);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_fd = ::memfd_create("fuzz_idx", MFD_CLOEXEC);
  if (g_fd < 0) {
    std::perror("memfd_create");
    std::abort();
  }
  g_path = "/proc/self/fd/" + std::to_string(g_fd);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  put(data, size);
  try {
    const vaelab::ImageSet set = vaelab::read_idx_images(g_path);
    if (set.count < 1 || set.height < 1 || set.width < 1) broken("empty dimension accepted");
    const std::size_t n = static_cast<std::size_t>(set.count) * static_cast<std::size_t>(set.values_per_image());
    if (set.pixels.size() != n) broken("pixel count differs from count × height × width");
    if (n > vaelab::kMaxIdxBytes) broken("more pixels than kMaxIdxBytes");
    if (set.has_labels()) broken("read_idx_images returned labels");
    // The first and last images convert to floats in [0, 1].
    const int idx[2] = {0, set.count - 1};
    Eigen::MatrixXf out(set.values_per_image(), 2);
    vaelab::gather_batch(set, idx, 2, vaelab::Binarize::None, nullptr, out);
    if (!(out.minCoeff() >= 0.0f && out.maxCoeff() <= 1.0f)) broken("gathered pixels outside [0, 1]");
  } catch (const vaelab::Error&) {
  }
  try {
    const std::vector<std::uint8_t> labels = vaelab::read_idx_labels(g_path);
    if (labels.empty()) broken("an empty label file was accepted");
    if (size < 8 || labels.size() > size * 1032) broken("more labels than the input can hold");
  } catch (const vaelab::Error&) {
  }
  return 0;
}
