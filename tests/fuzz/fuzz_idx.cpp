// libFuzzer harness for the IDX reader (core/data.cpp): each input is written to an in-memory file
// (memfd) and read as images and as labels; what is accepted must hold together (sizes, batches).
// Not a test of the folder loader. Built by tests/fuzz/CMakeLists.txt, run by scripts/run-fuzzers.sh.
#include <cstdint>
#include <string>

#include "core/data.hpp"
#include "core/error.hpp"
#include "memfd_input.hpp"

namespace {

[[noreturn]] void broken(const char* what) { vaelab::fuzz::broken("fuzz_idx", what); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static vaelab::fuzz::MemfdInput input("fuzz_idx");
  const std::string& path = input.put(data, size);
  try {
    const vaelab::ImageSet set = vaelab::read_idx_images(path);
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
    const std::vector<std::uint8_t> labels = vaelab::read_idx_labels(path);
    if (labels.empty()) broken("an empty label file was accepted");
    if (size < 8 || labels.size() > size * 1032) broken("more labels than the input can hold");
  } catch (const vaelab::Error&) {
  }
  return 0;
}
