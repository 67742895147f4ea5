// Model and training settings shared by core, the CLI, the app and checkpoints, and the ranges
// they may take. Plain data only; validation lives in validate() so every front end gives the
// same messages, and the command-line flags check the very same ranges (app/flags/flags.cpp).
#pragma once
#include <climits>
#include <cstdint>
#include <string>
#include <string_view>
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
  Gmvae,  // clustering VAE of the notes: a categorical y beside z, Gaussian q(z|y) per cluster, classifier p(y|z)
  Vade,   // clustering VAE with a mixture prior p(z) = Σ_y N(μ_y, σ_y²)/K whose own posterior p(y|z) assigns clusters
};

// The two clustering families: both have K cluster Gaussians and score clusters by argmax p(y|z).
inline bool is_clustering(ModelFamily f) { return f == ModelFamily::Gmvae || f == ModelFamily::Vade; }

// Which gradient estimator trains the encoder (the decoder's gradient is the same for both).
enum class Estimator : std::uint8_t {
  Reparameterised,  // z = μ + σ ε, gradients through the sample
  ScoreFunction,    // REINFORCE: E_q[f(z) ∇ log q(z|x)] with a leave-one-out baseline
};

// Width of the clustering VAE's classifier p(y|z) hidden layer.
inline constexpr int kClassifierHidden = 64;

struct ModelConfig {
  int image_c = 1;   // channels: 1 (grey) or 3 (RGB); images are C×H×W planes, as PyTorch's NCHW
  int image_h = 28;
  int image_w = 28;
  int latent = 2;
  std::vector<int> hidden = {400};  // encoder widths; the decoder mirrors them
  Likelihood likelihood = Likelihood::Bernoulli;
  float gaussian_sigma = 0.1f;      // only for GaussianFixed
  ModelFamily family = ModelFamily::Mlp;
  int clusters = 10;                // only for Gmvae and Vade: K categories of y

  int input_dim() const { return image_c * image_h * image_w; }  // D = C·H·W
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

// An allowed range of a whole-number setting, both ends included; hi == INT_MAX reads "lo or more".
struct WholeRange {
  long long lo, hi;
  bool contains(long long v) const { return v >= lo && v <= hi; }
  std::string describe() const;  // "1 to 1024", "0 or more"
};

// An allowed range of a real setting: lo included unless lo_excluded, hi included; NaN and ±∞ never.
struct RealRange {
  double lo, hi;
  bool lo_excluded = false;
  bool contains(double v) const;
  std::string describe() const;  // "0 to 1000", "greater than 0, at most 10"
};

// The ranges validate() enforces; the command-line flags of both programs use the same ones.
namespace limits {
inline constexpr WholeRange kImageSide{1, 4096};
inline constexpr long long kImagePixels = 1 << 20;
inline constexpr WholeRange kLatent{1, 1024};
inline constexpr WholeRange kHiddenLayers{1, 8};
inline constexpr WholeRange kHiddenWidth{1, 8192};
inline constexpr RealRange kGaussianSigma{0, 1e6, true};
inline constexpr WholeRange kClusters{2, 256};
inline constexpr WholeRange kBatch{1, 65536};
inline constexpr RealRange kLearningRate{0, 10, true};
inline constexpr RealRange kBeta{0, 1000};
inline constexpr WholeRange kWarmupSteps{0, INT_MAX};
inline constexpr WholeRange kSamples{1, 1000};
inline constexpr WholeRange kIwaeSamples{0, 100000};  // K of the IWAE bound; 0: off
inline constexpr WholeRange kThreads{1, 256};
}  // namespace limits

// An image size as messages write it: "3×32×32" in colour; grey as "28×28", or "1×28×28" when
// with_channels (beside a colour size, where the channels are the difference).
std::string image_shape_text(int channels, int height, int width, bool with_channels = false);
inline std::string image_shape_text(const ModelConfig& m, bool with_channels = false) {
  return image_shape_text(m.image_c, m.image_h, m.image_w, with_channels);
}

// Throws vaelab::Error with a message naming the bad field and its allowed range (image_c: 1 or 3).
void validate(const ModelConfig& m);
void validate(const TrainConfig& t);

const char* to_string(Likelihood l);
const char* to_string(Binarize b);
const char* to_string(ModelFamily f);
const char* to_string(Estimator e);
// Parse the CLI / UI spellings; an unknown one throws vaelab::Error listing the known ones.
Likelihood parse_likelihood(const std::string& s);  // "bernoulli", "gaussian", "gaussian-learned"
Binarize parse_binarize(const std::string& s);       // "none", "static", "dynamic"
ModelFamily parse_family(const std::string& s);      // "mlp", "conv", "gmvae", "vade"
Estimator parse_estimator(const std::string& s);     // "reparam", "score"

// Hidden widths as the command line and the training panel write them: "400", "512,256" or
// "512, 256". Each width must be a whole number in limits::kHiddenWidth and there must be at
// least one. Returns false and a message for the user otherwise.
bool parse_hidden(std::string_view text, std::vector<int>& widths, std::string& error);

}  // namespace vaelab
