// The VAE objective in nats: log-likelihoods, the analytic KL, the ELBO split into its terms,
// and the importance-weighted bound. Forward computations only; gradients are in train_step.hpp.
#pragma once
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "core/config.hpp"
#include "core/error.hpp"

namespace vaelab {

class Model;
struct ImageSet;
class ThreadPool;

inline constexpr double kLog2Pi = 1.8378770664093453;

// Numerically stable softplus(l) = log(1 + e^l).
inline float softplus(float l) { return l > 0 ? l + std::log1p(std::exp(-l)) : std::log1p(std::exp(l)); }

// log p(x|·) summed over pixels for each column. x, out: (D, B). out is the decoder's raw output
// (logits or means); logvar is the decoder's Gaussian log σ² (ignored for Bernoulli). Gaussian
// only: x may be one column (D, 1), scored against every column of out.
Eigen::VectorXf log_likelihood(Likelihood lik, const Eigen::Ref<const Eigen::MatrixXf>& x,
                               const Eigen::Ref<const Eigen::MatrixXf>& out, float logvar);

// KL(N(μ, σ²) ‖ N(0, 1)) per element: ½(μ² + σ² − log σ² − 1).  mu, logvar: (d, B) → (d, B)
Eigen::MatrixXf kl_elementwise(const Eigen::Ref<const Eigen::MatrixXf>& mu, const Eigen::Ref<const Eigen::MatrixXf>& logvar);

// Clustering VAE: the prior part of the loss for each column c of z (d, B·L), column c belonging
// to example c / L:  Σ_y p(y|z_c) KL(q(z|x) ‖ N(μ_y, σ_y²)) + KL(p(y|z_c) ‖ uniform(K)).
// The Gaussian KLs are in closed form; p(y|z) is the model's classifier at the sampled z.
// kl_dim (d, B), when given, receives the Gaussian part per dimension averaged over the L samples.
Eigen::VectorXf gmvae_prior_terms(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& mu,
                                  const Eigen::Ref<const Eigen::MatrixXf>& logvar,
                                  const Eigen::Ref<const Eigen::MatrixXf>& z, int L, Eigen::MatrixXf* kl_dim = nullptr);

// log N(z; μ, diag e^logvar) per column.  z, mu, logvar: (d, B) → (B); mu and logvar may also be
// one column (d, 1), the same q for every column of z.
Eigen::VectorXf log_normal_diag(const Eigen::Ref<const Eigen::MatrixXf>& z, const Eigen::Ref<const Eigen::MatrixXf>& mu,
                                const Eigen::Ref<const Eigen::MatrixXf>& logvar);
// log N(z; 0, I) per column.
Eigen::VectorXf log_standard_normal(const Eigen::Ref<const Eigen::MatrixXf>& z);
// The model's prior log p(z) per column: N(0, I), or for the clustering VAE its mixture
// (1/K) Σ_y N(z; μ_y, σ_y²) with y summed out exactly (K Gaussians: tractable), so the IWAE bound
// and the true posterior p(z|x) ∝ p(x|z) p(z) are those of the model's own marginal.
Eigen::VectorXf log_prior(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& z);

// log Σ_i exp(a_i) and log (1/k) Σ_i exp(a_i) over a[0, n) or a[0, k), in double, stable for any
// magnitudes (−inf entries allowed); −inf when empty.
double log_sum_exp(const float* a, std::ptrdiff_t n);
double log_mean_exp(const float* a, int k);

// Averages over a set of examples, in nats per example (ELBO negative, higher is better).
struct Evaluation {
  int count = 0;
  double elbo = 0;    // E_q[log p(x|z)] − KL
  double recon = 0;   // E_q[log p(x|z)] (negative)
  double kl = 0;      // KL(q(z|x) ‖ p(z))
  std::vector<double> kl_per_dim;
  double iwae = std::numeric_limits<double>::quiet_NaN();  // log (1/K) Σ p(x,z_k)/q(z_k|x), when K > 0
  std::vector<float> elbo_per_example;  // filled when requested
};

// Progress of a long evaluation (IWAE with a large K takes seconds per image): `report` after each
// batch with the images done and the total (calls never overlap, from whichever thread ran the
// batch); `cancel`, checked before each batch, makes evaluate throw EvaluationCancelled.
struct EvalProgress {
  std::function<void(int done, int total)> report;
  const std::atomic<bool>* cancel = nullptr;
};
struct EvaluationCancelled : Error {
  using Error::Error;
};

struct EvalOptions {
  int samples = 1;          // L samples for the ELBO's reconstruction term
  int iwae_k = 0;           // 0: skip the IWAE bound
  std::uint64_t seed = 12345;
  int batch = 500;
  bool keep_per_example = false;
  const EvalProgress* progress = nullptr;  // none: not reported, not cancellable
};

// Evaluate the ELBO (and optionally IWAE_K) of model on set's images idx (all when empty).
// Pixels are taken as intensities in [0, 1]. Deterministic for a given seed, whatever the pool size.
Evaluation evaluate(const Model& model, const ImageSet& set, const std::vector<int>& idx,
                    const EvalOptions& opt, ThreadPool* pool = nullptr);

// IWAE_K per column of x (D, B) with noise eps (d, B·K): column b's k-th sample is eps column b·K + k.
Eigen::VectorXf iwae_bound(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                           const Eigen::Ref<const Eigen::MatrixXf>& eps, int K);

}  // namespace vaelab
