// libFuzzer harness for the .npy reader (core/numpy_data.cpp): each input is parsed as a header and
// loaded as a data set from an in-memory file; what is accepted must hold together (sizes, splits,
// no more pixels than the input holds). Not the .npz archive (fuzz_npz). Run by scripts/run-fuzzers.sh.
#include <cstdint>

#include "core/error.hpp"
#include "core/numpy_data.hpp"
#include "memfd_input.hpp"

namespace {

using vaelab::fuzz::broken;

void check_set(const vaelab::ImageSet& set) {
  if (set.count < 1) broken("fuzz_npy", "an empty split was accepted");
  if (set.channels != 1 && set.channels != 3) broken("fuzz_npy", "channels other than 1 or 3");
  if (set.height < 1 || set.width < 1 || set.height > 16384 || set.width > 16384) broken("fuzz_npy", "bad image size");
  if (set.pixels.size() != static_cast<std::size_t>(set.count) * static_cast<std::size_t>(set.values_per_image()))
    broken("fuzz_npy", "pixel count differs from count × C × H × W");
  if (set.has_labels()) broken("fuzz_npy", "a .npy gave labels");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static vaelab::fuzz::MemfdInput input("fuzz_npy");
  try {
    const vaelab::NpyHeader h = vaelab::parse_npy_header(data, size, "input");
    if (h.header_bytes > size) broken("fuzz_npy", "a header longer than the input was accepted");
  } catch (const vaelab::Error&) {
  }
  const std::string& path = input.put(data, size);
  vaelab::LoadOptions options;
  options.memory_limit = std::uint64_t{64} << 20;
  options.background = size % 2 ? vaelab::Background::Black : vaelab::Background::White;
  try {
    const vaelab::Dataset d = vaelab::load_npy(path, options);
    check_set(d.train);
    check_set(d.test);
    if (d.train.channels != d.test.channels || d.train.height != d.test.height || d.train.width != d.test.width)
      broken("fuzz_npy", "the splits differ in shape");
    if (d.train.pixels.size() + d.test.pixels.size() > size) broken("fuzz_npy", "more pixels than the input holds");
  } catch (const vaelab::Error&) {
  }
  return 0;
}
