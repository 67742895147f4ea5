// libFuzzer harness for the CIFAR batch reader (core/cifar.cpp): each input is read as a CIFAR-10
// batch (1 label byte a record) and a CIFAR-100 one (2), from an in-memory file; what is accepted
// must be whole records, copied exactly. Not the folder loader. Run by scripts/run-fuzzers.sh.
#include <algorithm>
#include <cstdint>

#include "core/cifar.hpp"
#include "core/error.hpp"
#include "memfd_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using vaelab::fuzz::broken;
  static vaelab::fuzz::MemfdInput input("fuzz_cifar");
  const std::string& path = input.put(data, size);
  for (int label_bytes : {1, 2}) {
    try {
      const vaelab::ImageSet set = vaelab::read_cifar_batch(path, label_bytes);
      const std::size_t record = static_cast<std::size_t>(label_bytes + vaelab::kCifarImageBytes);
      if (set.count < 1 || static_cast<std::size_t>(set.count) * record != size)
        broken("fuzz_cifar", "accepted a size that is not whole records");
      if (set.channels != 3 || set.height != 32 || set.width != 32) broken("fuzz_cifar", "not 3×32×32");
      if (set.labels.size() != static_cast<std::size_t>(set.count) ||
          set.pixels.size() != static_cast<std::size_t>(set.count) * vaelab::kCifarImageBytes)
        broken("fuzz_cifar", "sizes do not match the count");
      const std::size_t last = static_cast<std::size_t>(set.count - 1);
      if (set.labels[last] != data[last * record + static_cast<std::size_t>(label_bytes) - 1] ||
          !std::equal(set.image(set.count - 1), set.image(set.count - 1) + vaelab::kCifarImageBytes,
                      data + last * record + static_cast<std::size_t>(label_bytes)))
        broken("fuzz_cifar", "the last record was not copied exactly");
    } catch (const vaelab::Error&) {
    }
  }
  return 0;
}
