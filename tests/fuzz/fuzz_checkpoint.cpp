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
  const std::uint32_t version = static_cast<std::uint32_t>(input[8]) | static_cast<std::uint32_t>(input[9]) << 8 |
                                static_cast<std::uint32_t>(input[10]) << 16 | static_cast<std::uint32_t>(input[11]) << 24;
  if (version == vaelab::kCheckpointVersion) {
    if (again != input) broken("saving an accepted checkpoint gives different bytes");
    return;
  }
  // An older format is saved in the current one, which must read back and save to the same bytes.
  try {
    const vaelab::TrainingState t = vaelab::parse_checkpoint(again.data(), again.size(), "<fuzz again>");
    if (vaelab::encode_checkpoint(t, "<fuzz>") != again)
      broken("an older checkpoint saved in the current format does not save to the same bytes again");
  } catch (const vaelab::Error& e) {
    broken(std::string("an older checkpoint saved in the current format cannot be read: ") + e.what());
  }
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
