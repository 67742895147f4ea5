// The VAE's parameters and their layout: an MLP (or convolutional) encoder to (μ, log σ²) and an
// MLP (or transposed-convolutional) decoder to Bernoulli logits or a Gaussian mean. All parameters
// live in one float buffer with Eigen::Map views per layer, so the optimiser is one loop and a
// checkpoint one copy.
// Not the training step (train_step.hpp) nor the losses (objective.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "core/config.hpp"
#include "core/conv.hpp"

namespace vaelab {

// Parameter and gradient buffers: 64-byte aligned, and every layer starts on a 64-byte boundary
// (offsets padded to 16 floats). Eigen's kernels pick their code path by alignment, so a fixed
// alignment is what makes two runs with the same seed give the same bits.
using ParamVector = std::vector<float, Eigen::aligned_allocator<float>>;
inline constexpr std::size_t kParamAlign = 16;  // floats

// One dense layer's place in the parameter buffer. W is (out, in) column-major at offset w,
// b is (out) at offset b.
struct DenseShape {
  int in = 0;
  int out = 0;
  std::size_t w = 0;
  std::size_t b = 0;
};

// One convolution's place in the parameter buffer: its geometry, the weight at offset w in PyTorch's
// layout (Conv2d [out_c, in_c, k, k], ConvTranspose2d [in_c, out_c, k, k], row-major) and the bias
// (out_c) at offset b — what conv_forward / conv_backward take.
struct ConvLayerShape {
  ConvGeometry g;
  std::size_t w = 0;
  std::size_t b = 0;
};

// Clamp on log σ² of q(z|x) (and of the learned decoder variance) to keep exp() finite.
inline constexpr float kLogVarMin = -20.0f;
inline constexpr float kLogVarMax = 10.0f;
// The learned decoder log σ² is clamped from below so a flat background cannot drive σ to 0.
inline constexpr float kDecoderLogVarMin = -9.0f;

class Model {
 public:
  explicit Model(ModelConfig cfg);

  const ModelConfig& config() const { return cfg_; }
  int input_dim() const { return cfg_.input_dim(); }
  int latent() const { return cfg_.latent; }

  // Dense encoder layers. Mlp / Gmvae: input → hidden… → head (2·latent rows: μ then log σ²).
  // Conv: only the head, 64·h2·w2 → 2·latent, fed by conv_encoder().back()'s flattened output.
  const std::vector<DenseShape>& encoder() const { return enc_; }
  // Dense decoder layers. Mlp / Gmvae: latent → hidden (reversed)… → output (input_dim rows).
  // Conv: only latent → 32·h2·w2 (followed by a ReLU), which feeds conv_decoder().front().
  const std::vector<DenseShape>& decoder() const { return dec_; }
  // Conv only (empty otherwise), see conv_vae_geometries. `hidden` is ignored by this family.
  // conv_encoder(): Conv 3×3 32 s2 → ReLU → Conv 3×3 64 s2 → ReLU (then the dense head).
  // conv_decoder(): (after the dense layer and ReLU) ConvT 3×3 64 s2 → ReLU → ConvT 3×3 32 s2 →
  //                 ReLU → ConvT 3×3 1 s1, the last giving the decoder output (input_dim rows).
  const std::vector<ConvLayerShape>& conv_encoder() const { return conv_enc_; }
  const std::vector<ConvLayerShape>& conv_decoder() const { return conv_dec_; }
  bool is_conv() const { return cfg_.family == ModelFamily::Conv; }
  // Clustering families only (empty / npos otherwise): gmvae's classifier p(y|z) (z → hidden → K
  // logits; vade has none) and the cluster Gaussians: means and log variances, each (d, K)
  // column-major.
  const std::vector<DenseShape>& classifier() const { return cls_; }
  std::size_t cluster_mean_offset() const { return cluster_mu_; }
  std::size_t cluster_logvar_offset() const { return cluster_lv_; }
  int clusters() const { return is_clustering(cfg_.family) ? cfg_.clusters : 0; }
  // The cluster Gaussians as (d, K) matrices (clustering VAE only); the log variances clamped to
  // [kLogVarMin, kLogVarMax] as the objective, the IWAE bound and the panels all use them.
  Eigen::Map<const Eigen::MatrixXf> cluster_means() const { return {params_.data() + cluster_mu_, cfg_.latent, clusters()}; }
  Eigen::MatrixXf cluster_logvars_clamped() const {
    return Eigen::Map<const Eigen::MatrixXf>(params_.data() + cluster_lv_, cfg_.latent, clusters())
        .cwiseMax(kLogVarMin)
        .cwiseMin(kLogVarMax);
  }
  // Offset of the learned decoder log σ² (GaussianLearned only), else npos.
  std::size_t decoder_logvar_offset() const { return dec_logvar_; }
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::size_t size() const { return params_.size(); }
  float* data() { return params_.data(); }
  const float* data() const { return params_.data(); }
  ParamVector& params() { return params_; }
  const ParamVector& params() const { return params_; }

  Eigen::Map<const Eigen::MatrixXf> W(const DenseShape& l) const { return {params_.data() + l.w, l.out, l.in}; }
  Eigen::Map<const Eigen::VectorXf> b(const DenseShape& l) const { return {params_.data() + l.b, l.out}; }
  Eigen::Map<Eigen::MatrixXf> W(const DenseShape& l) { return {params_.data() + l.w, l.out, l.in}; }
  Eigen::Map<Eigen::VectorXf> b(const DenseShape& l) { return {params_.data() + l.b, l.out}; }

  // PyTorch's defaults: W, b ~ U(−1/√fan_in, 1/√fan_in) with fan_in = in for nn.Linear,
  // in_c·k·k for nn.Conv2d and out_c·k·k for nn.ConvTranspose2d (PyTorch takes it from weight
  // dimension 1). Decoder log σ² starts at 0.
  void init(std::uint64_t seed);

  // The decoder's log σ² for Gaussian likelihoods (fixed or learned, clamped); 0 for Bernoulli.
  float decoder_logvar() const;

  // ---- Inference for evaluation and the UI (allocates; not the training step) ----
  // x: (D, B) → mu, logvar: (d, B)
  void encode(const Eigen::Ref<const Eigen::MatrixXf>& x, Eigen::MatrixXf& mu, Eigen::MatrixXf& logvar) const;
  // z: (d, B) → raw decoder output (D, B): logits (Bernoulli) or means (Gaussian)
  void decode_raw(const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& out) const;
  // z: (d, B) → the image the decoder expects, in [0, 1]: sigmoid(logits) or the clamped mean
  void decode_image(const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& image) const;

  // Clustering families: p(y|z) for each column of z (d, B) → probabilities (K, B). gmvae: its
  // classifier; vade: the mixture prior's own posterior, softmax of mixture_logits.
  void classify(const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& probs) const;

  bool all_finite() const;

 private:
  ModelConfig cfg_;
  std::vector<DenseShape> enc_;
  std::vector<DenseShape> dec_;
  std::vector<DenseShape> cls_;
  std::vector<ConvLayerShape> conv_enc_;
  std::vector<ConvLayerShape> conv_dec_;
  std::size_t cluster_mu_ = npos;
  std::size_t cluster_lv_ = npos;
  std::size_t dec_logvar_ = npos;
  ParamVector params_;
};

// log N(z; μ_y, σ_y²) + d/2 log 2π for each cluster y and column of z (d, B) → (K, B): the logits
// of vade's p(y|z) (the clusters are equally likely a priori, so the softmax over y is p(y|z)).
// logvars are taken as given (pass the clamped ones).
void mixture_logits(const Eigen::Ref<const Eigen::MatrixXf>& means, const Eigen::Ref<const Eigen::MatrixXf>& logvars,
                    const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& logits);
// The same into logits (K, B) already sized, with inv_vars = e^{−logvars} given: no allocation
// (the training step's form).
void mixture_logits(const Eigen::Ref<const Eigen::MatrixXf>& means, const Eigen::Ref<const Eigen::MatrixXf>& logvars,
                    const Eigen::Ref<const Eigen::MatrixXf>& inv_vars, const Eigen::Ref<const Eigen::MatrixXf>& z,
                    Eigen::Ref<Eigen::MatrixXf> logits);

// Clustering VAE: place the cluster Gaussians q(z|y) on the codes of a sample of data (one
// moment-matched Gaussian per k-means cluster of the means): μ_y = the mean of cluster y's codes,
// σ_y² = per dimension the variance of those means plus the mean of their q variances (the
// moments of the aggregate posterior restricted to the cluster), log σ_y² clamped to the model's
// range. A cluster that k-means leaves with one point gets that point and its q variance.
// mu, logvar: (d, N) with N ≥ K. Deterministic for a seed. Throws vaelab::Error for a model that
// is not a clustering VAE or shapes that do not match.
// vade takes the best of kVadeKmeansRestarts k-means starts and refines it with kMixtureEmSteps
// steps of EM (refine_mixture_by_em).
inline constexpr int kVadeKmeansRestarts = 10;
void fit_clusters_to_codes(Model& model, const Eigen::Ref<const Eigen::MatrixXf>& mu,
                           const Eigen::Ref<const Eigen::MatrixXf>& logvar, std::uint64_t seed);

// EM for vade's prior, a mixture of K diagonal Gaussians with equal weights, on codes
// q(z|x_i) = N(μ_i, σ_i²): EM fits the mixture to the means μ_i (the q variance left out, as it
// would blur every responsibility towards uniform when the codes are still close together), then
// each cluster's variance is widened by its codes' mean q variance, as fit_clusters_to_codes does.
// means, logvars: (d, K), the start (with the q variance included) and the result, in place;
// mu, logvar: (d, N). A cluster whose weight falls to nothing keeps its last mean.
inline constexpr int kMixtureEmSteps = 50;
void refine_mixture_by_em(Eigen::Ref<Eigen::MatrixXf> means, Eigen::Ref<Eigen::MatrixXf> logvars,
                          const Eigen::Ref<const Eigen::MatrixXf>& mu, const Eigen::Ref<const Eigen::MatrixXf>& logvar,
                          int steps);

}  // namespace vaelab
