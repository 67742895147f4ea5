// libFuzzer harness for the .npz reader (core/numpy_data.cpp through libzip): each input is loaded
// as a Keras-layout archive from an in-memory file; what is accepted must hold together (sizes,
// labels one per image, class names covering the labels). Not the .npy header alone (fuzz_npy).
// Run by scripts/run-fuzzers.sh.
#include <cstdint>

#include "core/error.hpp"
#include "core/numpy_data.hpp"
#include "memfd_input.hpp"

namespace {

using vaelab::fuzz::broken;

void check_set(const vaelab::ImageSet& set, std::size_t classes) {
  if (set.count < 1) broken("fuzz_npz", "an empty split was accepted");
  if (set.channels != 1 && set.channels != 3) broken("fuzz_npz", "channels other than 1 or 3");
  if (set.pixels.size() != static_cast<std::size_t>(set.count) * static_cast<std::size_t>(set.values_per_image()))
    broken("fuzz_npz", "pixel count differs from count × C × H × W");
  if (set.has_labels() && set.labels.size() != static_cast<std::size_t>(set.count))
    broken("fuzz_npz", "labels are not one per image");
  for (std::uint8_t label : set.labels)
    if (label >= classes) broken("fuzz_npz", "a label without a class name");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static vaelab::fuzz::MemfdInput input("fuzz_npz");
  const std::string& path = input.put(data, size);
  vaelab::LoadOptions options;
  options.memory_limit = std::uint64_t{64} << 20;
  options.max_images = size % 3 == 0 ? 3 : 0;
  try {
    const vaelab::Dataset d = vaelab::load_npz(path, options);
    check_set(d.train, d.class_names.size());
    check_set(d.test, d.class_names.size());
    if (options.max_images && d.train.count + d.test.count > options.max_images) broken("fuzz_npz", "max_images exceeded");
    if (d.train.pixels.size() + d.test.pixels.size() > options.memory_limit) broken("fuzz_npz", "over the memory limit");
  } catch (const vaelab::Error&) {
  }
  return 0;
}
