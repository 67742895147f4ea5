// libFuzzer harness for the checkpoint reader (core/checkpoint.cpp, parse_checkpoint): each input is
// parsed as is, then again with its size field and CRC-32 repaired so mutations reach the body; an
// accepted state with finite parameters must save back to the very same bytes. Not a trainer test.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <zlib.h>

#include "core/checkpoint.hpp"
#include "core/error.hpp"

using Bytes = std::vector<std::uint8_t>;

namespace {

[[noreturn]] void broken(const std::string& what) {
  std::fprintf(stderr, "fuzz_checkpoint: invariant broken: %s\n", what.c_str());
  std::abort();
}

void check_round_trip(const vaelab::TrainingState& s, const Bytes& input) {
  for (float p : s.params)
    if (!std::isfinite(p)) return;  // save refuses these on purpose
  Bytes again;
  try {
    again = vaelab::encode_checkpoint(s, "<fuzz>");
  } catch (const vaelab::Error& e) {
    broken(std::string("an accepted checkpoint cannot be saved again: ") + e.what());
  }
  if (again != input) broken("saving an accepted checkpoint gives different bytes");
}

void parse(const Bytes& bytes) {
  try {
    const vaelab::TrainingState s = vaelab::parse_checkpoint(bytes.data(), bytes.size(), "<fuzz>");
    check_round_trip(s, bytes);
  } catch (const vaelab::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes bytes(data, data + size);
  parse(bytes);
  // Repair the fields that guard the body (file size at 12, CRC-32 of everything before the last 4
  // bytes) so the mutation is judged by the body parser, not just by the checksum.
  if (size >= 24 && std::memcmp(data, "VAELABCK", 8) == 0) {
    for (int i = 0; i < 8; ++i) bytes[12 + i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(size) >> (8 * i));
    const auto crc = static_cast<std::uint32_t>(crc32(0L, bytes.data(), static_cast<uInt>(size - 4)));
    for (int i = 0; i < 4; ++i) bytes[size - 4 + i] = static_cast<std::uint8_t>(crc >> (8 * i));
    if (!std::equal(bytes.begin(), bytes.end(), data)) parse(bytes);
  }
  return 0;
}
