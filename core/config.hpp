// Model and training settings shared by core, the CLI, the app and checkpoints.
// Plain data only; validation lives in validate() so every front end gives the same messages.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vaelab {

enum class Likelihood : std::uint8_t {
  Bernoulli,        // decoder gives logits; log p(x|z) = Σ x·l − softplus(l)
  GaussianFixed,    // decoder gives a mean; σ fixed (ModelConfig::gaussian_sigma)
  GaussianLearned,  // decoder gives a mean; one shared log σ² is a learned parameter
};

enum class Binarize : std::uint8_t { None, Static, Dynamic };

enum class ModelFamily : std::uint8_t {
  Mlp,    // the classic VAE: MLP encoder and decoder
  Conv,   // convolutional encoder/decoder (Conv 32/64 stride 2 → Dense; Dense 7·7·32 → transposed convs)
  Gmvae,  // clustering VAE: a categorical y beside z, Gaussian q(z|y) per cluster, classifier p(y|z)
};

// Which gradient estimator trains the encoder (the decoder's gradient is the same for both).
enum class Estimator : std::uint8_t {
  Reparameterised,  // z = μ + σ ε, gradients through the sample
  ScoreFunction,    // REINFORCE: E_q[f(z) ∇ log q(z|x)] with a leave-one-out baseline
};

// Width of the clustering VAE's classifier p(y|z) hidden layer.
inline constexpr int kClassifierHidden = 64;

struct ModelConfig {
  int image_h = 28;
  int image_w = 28;
  int latent = 2;
  std::vector<int> hidden = {400};  // encoder widths; the decoder mirrors them
  Likelihood likelihood = Likelihood::Bernoulli;
  float gaussian_sigma = 0.1f;      // only for GaussianFixed
  ModelFamily family = ModelFamily::Mlp;
  int clusters = 10;                // only for Gmvae: K categories of y

  int input_dim() const { return image_h * image_w; }
  bool operator==(const ModelConfig&) const = default;
};

struct TrainConfig {
  int batch = 128;
  float lr = 1e-3f;
  float beta = 1.0f;
  int warmup_steps = 0;  // β is scaled by min(1, step / warmup_steps)
  int samples = 1;       // L Monte-Carlo samples of z per example
  std::uint64_t seed = 1;
  int threads = 1;       // worker threads for the training step (the batch is split across them)
  Binarize binarize = Binarize::None;
  Estimator estimator = Estimator::Reparameterised;
  bool operator==(const TrainConfig&) const = default;
};

// Throws vaelab::Error with a message naming the bad field and its allowed range.
void validate(const ModelConfig& m);
void validate(const TrainConfig& t);

const char* to_string(Likelihood l);
const char* to_string(Binarize b);
const char* to_string(ModelFamily f);
const char* to_string(Estimator e);
// Parse the CLI / UI spellings ("bernoulli", "gaussian", "gaussian-learned"; "none", "static", "dynamic").
Likelihood parse_likelihood(const std::string& s);
Binarize parse_binarize(const std::string& s);
ModelFamily parse_family(const std::string& s);
Estimator parse_estimator(const std::string& s);  // "reparam", "score"  // "mlp", "conv", "gmvae"

}  // namespace vaelab
