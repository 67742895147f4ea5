// Writes the fuzzers' seed corpora: tiny valid IDX (raw, gzipped), checkpoint, safetensors, .npy,
// .npz (stored, deflated) and CIFAR batch files into DIR/{idx,checkpoint,safetensors,npy,npz,cifar}/
// (tests/fuzz/corpus is its output). Not a fuzzer:
// scripts/run-fuzzers.sh runs it too, so the seeds keep up with format changes.
#include <zip.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/checkpoint.hpp"
#include "core/error.hpp"
#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/safetensors.hpp"

namespace fs = std::filesystem;
using namespace vaelab;
using Bytes = std::vector<std::uint8_t>;

namespace {

void write(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!out) throw Error("cannot write " + p.string());
}

Bytes gzip(const Bytes& raw) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw Error("deflateInit2");
  Bytes out(deflateBound(&z, raw.size()) + 32);
  z.next_in = const_cast<Bytes::value_type*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw Error("deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

Bytes idx(std::uint8_t ndims, const std::vector<std::uint32_t>& dims, std::uint8_t seed) {
  Bytes b = {0, 0, 0x08, ndims};
  std::size_t n = 1;
  for (auto d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
    n *= d;
  }
  for (std::size_t i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(seed + 37 * i));
  return b;
}

// A .npy file: "\x93NUMPY", version 1.0, the header dictionary padded to 64 bytes, the data.
Bytes npy(const std::string& descr, const std::string& shape, std::size_t data_bytes, std::uint8_t seed) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append(63 - (10 + header.size()) % 64, ' ').push_back('\n');
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<std::uint8_t>(header.size()),
             static_cast<std::uint8_t>(header.size() >> 8)};
  b.insert(b.end(), header.begin(), header.end());
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<std::uint8_t>(seed + 29 * i));
  return b;
}

// A .npz archive of the members, stored or deflated, written by libzip.
void write_npz(const fs::path& p, const std::vector<std::pair<std::string, Bytes>>& members, bool deflate) {
  int error = 0;
  zip_t* z = zip_open(p.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  if (!z) throw Error("cannot create " + p.string());
  for (const auto& [name, bytes] : members) {
    zip_source_t* src = zip_source_buffer(z, bytes.data(), bytes.size(), 0);
    const zip_int64_t index = src ? zip_file_add(z, name.c_str(), src, ZIP_FL_OVERWRITE) : -1;
    if (index < 0 ||
        zip_set_file_compression(z, static_cast<zip_uint64_t>(index), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) != 0)
      throw Error("cannot add " + name + " to " + p.string());
  }
  if (zip_close(z) != 0) throw Error("cannot write " + p.string());
}

TrainingState small_state(ModelConfig mc, int history_steps) {
  TrainingState s;
  s.model = std::move(mc);
  s.train.batch = 4;
  s.train.seed = 7;
  Model m(s.model);
  m.init(3);
  s.params.assign(m.params().begin(), m.params().end());
  s.adam.reset(s.params.size());
  s.adam.t = 2;
  for (std::size_t i = 0; i < s.params.size(); ++i) s.adam.m[i] = 0.01f * static_cast<float>(i % 7);
  Rng rng(5);
  rng.normal();
  s.rng = rng.state();
  s.step = history_steps;
  s.epoch = 1;
  s.batch_in_epoch = 1;
  s.order = {2, 0, 1, 3};
  for (int i = 0; i < history_steps; ++i)
    s.history.steps.push_back({i + 1, 0.25f * static_cast<float>(i), -100.0f + static_cast<float>(i), -90.0f, 10.0f});
  EpochRecord e;
  e.epoch = 1;
  e.step = history_steps;
  e.kl_per_dim.assign(static_cast<std::size_t>(s.model.latent), 0.5f);
  s.history.epochs.push_back(e);
  s.history.markers.push_back({1, "β 1 → 0.5"});
  s.data_name = "seed";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  try {
    const fs::path dir = argv[1];
    for (const char* sub : {"idx", "checkpoint", "safetensors", "npy", "npz", "cifar"}) fs::create_directories(dir / sub);

    // IDX: images (3 dims and 2 dims) and labels, raw and gzipped.
    const Bytes images = idx(3, {3, 4, 5}, 1);
    const Bytes flat = idx(2, {2, 6}, 9);
    const Bytes labels = idx(1, {3}, 0);
    write(dir / "idx/images-3x4x5", images);
    write(dir / "idx/images-3x4x5.gz", gzip(images));
    write(dir / "idx/images-2x6", flat);
    write(dir / "idx/labels-3", labels);
    write(dir / "idx/labels-3.gz", gzip(labels));

    // Checkpoints: one hidden layer (Bernoulli), and two hidden layers with a learned variance.
    ModelConfig a;
    a.image_h = 3;
    a.image_w = 3;
    a.latent = 1;
    a.hidden = {2};
    ModelConfig b;
    b.image_h = 2;
    b.image_w = 3;
    b.latent = 2;
    b.hidden = {3, 2};
    b.likelihood = Likelihood::GaussianLearned;
    // The other model families: a clustering VAE and a convolutional one.
    ModelConfig g = a;
    g.family = ModelFamily::Gmvae;
    g.clusters = 3;
    ModelConfig c;
    c.family = ModelFamily::Conv;
    c.image_h = 4;
    c.image_w = 3;
    c.latent = 1;
    save_checkpoint(dir / "checkpoint/bernoulli.vck", small_state(a, 2));
    save_checkpoint(dir / "checkpoint/gaussian-learned.vck", small_state(b, 3));
    save_checkpoint(dir / "checkpoint/gmvae.vck", small_state(g, 1));
    // No Conv checkpoint: its fixed 32/64-channel kernels make even a 4×3 one 675 KB, which would
    // slow every mutation; the format code is the same for every family (unit tests cover Conv).

    // safetensors: both naming schemes from export_model, and a file of every convertible dtype.
    Model ma(a);
    ma.init(1);
    write(dir / "safetensors/pytorch-names.safetensors", encode_safetensors(export_model(ma)));
    Model mb(b);
    mb.init(2);
    write(dir / "safetensors/vaelab-names.safetensors", encode_safetensors(export_model(mb)));
    // conv.safetensors (226 KB) is not checked in, only generated: import_conv_model is its own parser.
    for (const auto& [name, cfg] : {std::pair{"gmvae", g}, std::pair{"conv", c}}) {
      Model m(cfg);
      m.init(4);
      write(dir / ("safetensors/" + std::string(name) + ".safetensors"), encode_safetensors(export_model(m)));
    }
    // Hand-made: F16, BF16 and F64 tensors plus metadata, laid out as the format requires.
    const std::string header =
        R"({"__metadata__":{"k":"v"},"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
        R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]},"d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}})";
    Bytes mixed;
    for (int i = 0; i < 8; ++i) mixed.push_back(static_cast<std::uint8_t>(header.size() >> (8 * i)));
    mixed.insert(mixed.end(), header.begin(), header.end());
    for (std::uint8_t v : {0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F}) mixed.push_back(v);
    decode_safetensors(mixed.data(), mixed.size());  // must be valid
    write(dir / "safetensors/dtypes.safetensors", mixed);

    // .npy: grey uint8, channels-last RGBA, channels-first RGB, float32 (0.5 and 1.0).
    write(dir / "npy/grey-u1.npy", npy("|u1", "(3, 4, 5)", 60, 1));
    write(dir / "npy/rgba-last.npy", npy("|u1", "(2, 2, 3, 4)", 48, 2));
    write(dir / "npy/rgb-first.npy", npy("|u1", "(2, 3, 2, 2)", 24, 3));
    Bytes f4 = npy("<f4", "(2, 2, 2)", 0, 0);
    for (int i = 0; i < 8; ++i) f4.insert(f4.end(), {0, 0, static_cast<std::uint8_t>(i % 2 ? 0x80 : 0), 0x3F});
    write(dir / "npy/f4.npy", f4);

    // .npz: the Keras layout with labels (stored and deflated), and x alone.
    const std::vector<std::pair<std::string, Bytes>> keras = {
        {"x_train.npy", npy("|u1", "(3, 2, 2)", 12, 4)}, {"y_train.npy", npy("<i8", "(3,)", 0, 0)},
        {"x_test.npy", npy("|u1", "(2, 2, 2)", 8, 5)}, {"y_test.npy", npy("|u1", "(2, 1)", 2, 0)}};
    auto with_labels = keras;
    with_labels[1].second.insert(with_labels[1].second.end(), 24, 0);
    write_npz(dir / "npz/keras-stored.npz", with_labels, false);
    write_npz(dir / "npz/keras-deflated.npz", with_labels, true);
    write_npz(dir / "npz/x-only.npz", {{"x.npy", npy("|u1", "(4, 3, 3, 3)", 108, 6)}}, true);

    // CIFAR: two records of a CIFAR-10 batch, one of a CIFAR-100 batch (coarse, fine label).
    Bytes cifar10, cifar100;
    for (std::uint8_t label : {3, 7}) {
      cifar10.push_back(label);
      for (int i = 0; i < 3072; ++i) cifar10.push_back(static_cast<std::uint8_t>(label + 13 * i));
    }
    cifar100 = {4, 42};
    for (int i = 0; i < 3072; ++i) cifar100.push_back(static_cast<std::uint8_t>(7 * i));
    write(dir / "cifar/cifar10-2.bin", cifar10);
    write(dir / "cifar/cifar100-1.bin", cifar100);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
