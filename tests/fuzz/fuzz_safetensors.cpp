// libFuzzer harness for safetensors (core/safetensors.cpp): decode_safetensors on the raw bytes; an
// accepted file must survive encode → decode unchanged, and import_model, when it accepts the file,
// must give a model that export → import reproduces bit for bit. Not a test of the file writer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "core/model.hpp"
#include "core/safetensors.hpp"

namespace {

[[noreturn]] void broken(const std::string& what) {
  std::fprintf(stderr, "fuzz_safetensors: invariant broken: %s\n", what.c_str());
  std::abort();
}

bool same_tensors(const vaelab::SafetensorsFile& a, const vaelab::SafetensorsFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& x = a.tensors[i];
    const auto& y = b.tensors[i];
    if (x.name != y.name || x.shape != y.shape || x.data.size() != y.data.size()) return false;
    if (!x.data.empty() && std::memcmp(x.data.data(), y.data.data(), x.data.size() * sizeof(float)) != 0) return false;
  }
  return true;
}

bool same_model(const vaelab::Model& a, const vaelab::Model& b) {
  return a.config() == b.config() && a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vaelab::SafetensorsFile f;
  try {
    f = vaelab::decode_safetensors(data, size);
  } catch (const vaelab::Error&) {
    return 0;
  }
  // The writer stores F32 in file order; reading that back must give the same tensors.
  try {
    const auto bytes = vaelab::encode_safetensors(f);
    if (!same_tensors(f, vaelab::decode_safetensors(bytes.data(), bytes.size())))
      broken("encode → decode changed an accepted file");
  } catch (const vaelab::Error& e) {
    broken(std::string("an accepted file cannot be encoded and decoded again: ") + e.what());
  }
  try {
    const vaelab::Model m = vaelab::import_model(f);
    if (!m.all_finite()) broken("import_model accepted NaN or Inf");
    try {
      if (!same_model(m, vaelab::import_model(vaelab::export_model(m)))) broken("export → import changed the model");
    } catch (const vaelab::Error& e) {
      broken(std::string("an imported model cannot be exported and imported again: ") + e.what());
    }
  } catch (const vaelab::Error&) {
  }
  return 0;
}
