// The memory estimate (see memory_estimate.hpp). It mirrors the buffers GradientEngine and the
// Trainer size for a configuration: if those change shape, tests/reliability/memory_estimate.sh
// (estimate against measured peak RSS) says so.
#include "core/memory_estimate.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/conv.hpp"
#include "core/data.hpp"
#include "core/error.hpp"

namespace vaelab {

namespace {

using u64 = std::uint64_t;

// Copies of the parameter vector alive at once while training: the model, its gradient, Adam's two
// moments, and the published model the views and the evaluation read, and one being built.
constexpr u64 kParameterCopies = 6;
// Code, libraries, allocator arenas, thread stacks and the evaluation's batches: what a run of the
// smallest model holds besides its parameters, workspaces and data.
constexpr u64 kProcessBytes = u64{16} << 20;

// A dense layer's input and output widths.
struct Dense {
  u64 in, out;
};

// The dense layers of the encoder and the decoder (for Conv, the head and the decoder's first layer).
std::vector<Dense> dense_layers(const ModelConfig& m, bool encoder) {
  std::vector<Dense> layers;
  if (m.family == ModelFamily::Conv) {
    const ConvVaeGeometry v = conv_vae_geometries(m.image_c, m.image_h, m.image_w, m.latent);
    if (encoder) layers.push_back({u64(v.enc_dense_in), u64(v.enc_dense_out)});
    else layers.push_back({u64(v.dec_dense_in), u64(v.dec_dense_out)});
    return layers;
  }
  const u64 d = u64(m.image_c) * u64(m.image_h) * u64(m.image_w);
  if (encoder) {
    u64 width = d;
    for (int h : m.hidden) {
      layers.push_back({width, u64(h)});
      width = u64(h);
    }
    layers.push_back({width, 2 * u64(m.latent)});
  } else {
    u64 width = u64(m.latent);
    for (auto it = m.hidden.rbegin(); it != m.hidden.rend(); ++it) {
      layers.push_back({width, u64(*it)});
      width = u64(*it);
    }
    layers.push_back({width, d});
  }
  return layers;
}

// Floats of one workspace for a batch of `batch` examples (the MLP's whole-batch one, or a shard's).
u64 workspace_floats(const ModelConfig& m, u64 batch, u64 samples) {
  const u64 C = batch * samples, d = u64(m.latent), D = u64(m.image_c) * u64(m.image_h) * u64(m.image_w);
  const std::vector<Dense> enc = dense_layers(m, true), dec = dense_layers(m, false);
  u64 f = 0;
  // Hidden activations and their gradients: the encoder's per example, the decoder's per sample.
  for (std::size_t i = 0; i + 1 < enc.size(); ++i) f += 2 * enc[i].out * batch;
  for (std::size_t i = 0; i + 1 < dec.size(); ++i) f += 2 * dec[i].out * C;
  f += 6 * d * batch + 2 * d * C;    // head and its gradient, log σ², σ; z and its gradient
  f += 2 * D * C;                    // the decoder's output and its gradient
  if (samples > 1) f += D * C;       // the input repeated per sample
  if (m.family == ModelFamily::Conv) {
    const ConvVaeGeometry v = conv_vae_geometries(m.image_c, m.image_h, m.image_w, m.latent);
    f += 2 * (u64(v.enc1.out_size()) + u64(v.enc2.out_size())) * batch;
    f += 2 * (u64(v.dec_dense_out) + u64(v.dec1.out_size()) + u64(v.dec2.out_size())) * C;
  } else if (m.family == ModelFamily::Gmvae) {
    const u64 K = u64(m.clusters);
    f += (2 * u64(kClassifierHidden) + K + d) * C + K * batch;
  } else if (m.family == ModelFamily::Vade) {
    const u64 K = u64(m.clusters);
    f += (K + d) * C + K * batch;  // p(y|z) then d loss / d logits, and dz of the mixture's logits
  } else {
    // The plain MLP packs every layer's input for its weight gradient (the encoder's per example,
    // the decoder's per sample) and one slice's operands of the widest layer.
    u64 widest = 0;
    for (const auto* net : {&enc, &dec})
      for (const Dense& l : *net) widest = std::max({widest, l.in, l.out});
    for (const Dense& l : enc) f += l.in * batch;
    for (const Dense& l : dec) f += l.in * C;
    f += widest * C;
  }
  return f;
}

}  // namespace

u64 parameter_count(const ModelConfig& m) {
  u64 total = 0;
  for (bool encoder : {true, false})
    for (const Dense& l : dense_layers(m, encoder)) total += l.in * l.out + l.out;
  if (m.family == ModelFamily::Conv) {
    const ConvVaeGeometry v = conv_vae_geometries(m.image_c, m.image_h, m.image_w, m.latent);
    for (const ConvGeometry* g : {&v.enc1, &v.enc2, &v.dec1, &v.dec2, &v.dec3})
      total += u64(g->weight_size()) + u64(g->bias_size());
  }
  if (m.family == ModelFamily::Gmvae) {
    const u64 K = u64(m.clusters), d = u64(m.latent), H = u64(kClassifierHidden);
    total += d * H + H + H * K + K + 2 * K * d;  // the classifier p(y|z) and the cluster Gaussians
  }
  if (m.family == ModelFamily::Vade) total += 2 * u64(m.clusters) * u64(m.latent);  // the cluster Gaussians
  if (m.likelihood == Likelihood::GaussianLearned) total += 1;  // the decoder's log σ²
  return total;
}

u64 dataset_bytes(const Dataset& data, const TrainConfig& train) {
  auto bytes = [](const ImageSet& s) { return u64(s.pixels.size()) + u64(s.labels.size()); };
  u64 total = bytes(data.train) + bytes(data.test);
  // Binarization works on copies: the test set for either kind, the training set for static.
  if (train.binarize != Binarize::None) total += data.test.pixels.size();
  if (train.binarize == Binarize::Static) total += data.train.pixels.size();
  return total;
}

MemoryEstimate estimate_training_memory(const ModelConfig& m, const TrainConfig& t, u64 data_bytes) {
  const u64 P = parameter_count(m), B = u64(std::max(1, t.batch)), L = u64(std::max(1, t.samples));
  const u64 threads = u64(std::max(1, t.threads));
  MemoryEstimate e;
  e.parameters = 4 * P * kParameterCopies;
  if (m.family == ModelFamily::Mlp) {
    e.workspaces = 4 * workspace_floats(m, B, L);
  } else {
    // One workspace per shard and one more gradient for every shard after the first.
    const u64 S = std::min(threads, B), Bs = (B + S - 1) / S;
    e.workspaces = 4 * S * workspace_floats(m, Bs, L);
    e.parameters += 4 * P * (S - 1);
  }
  const u64 D = u64(m.image_c) * u64(m.image_h) * u64(m.image_w);
  e.workspaces += 4 * (D * B + u64(m.latent) * B * L);  // the trainer's batch and its ε
  e.data = data_bytes;
  e.process = kProcessBytes;
  return e;
}

u64 available_memory() {
  u64 available = std::numeric_limits<u64>::max();
  auto lower = [&](u64 v) { available = std::min(available, v); };
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    u64 kb = 0;
    meminfo >> kb;
    if (key == "MemAvailable:") lower(kb * 1024);
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  // cgroup v2: the group's limit less what it already uses.
  u64 limit = 0, used = 0;
  if ((std::ifstream("/sys/fs/cgroup/memory.max") >> limit) && (std::ifstream("/sys/fs/cgroup/memory.current") >> used))
    lower(limit > used ? limit - used : 0);
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) lower(u64(as.rlim_cur));
  return available;
}

std::string format_bytes(u64 bytes) {
  char buf[32];
  if (bytes >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.1f GB", static_cast<double>(bytes) / 1e9);
  else std::snprintf(buf, sizeof buf, "%.0f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

void check_training_memory(const MemoryEstimate& need, u64 available) {
  if (need.total() <= available) return;
  std::string largest, change;
  if (need.parameters >= need.workspaces && need.parameters >= need.data) {
    largest = "the parameters with their gradients and optimiser state take " + format_bytes(need.parameters);
    change = "use fewer or narrower hidden layers (--hidden) or a smaller latent size (--latent)";
  } else if (need.workspaces >= need.data) {
    largest = "one step's workspaces take " + format_bytes(need.workspaces);
    change = "use a smaller batch (--batch) or fewer samples per example (--samples)";
  } else {
    largest = "the data set takes " + format_bytes(need.data);
    change = "use a smaller data set";
  }
  throw Error("training needs about " + format_bytes(need.total()) + " of memory, more than the " +
              format_bytes(available) + " available: " + largest + "; " + change);
}

}  // namespace vaelab
