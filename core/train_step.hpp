// Forward and backward of the ELBO for one batch: the gradient of
//   loss = mean_b [ −(1/L) Σ_l log p(x_b | z_bl) + β · KL(q(z|x_b) ‖ p(z)) ],  z_bl = μ_b + σ_b ⊙ ε_bl
// with respect to every parameter. Plain MLP models run each layer's products split by output rows
// into fixed chunks claimed by the pool's threads (one workspace, no gradient reduction; the same
// bits whatever the thread count). Other families cut the batch into shards, each with its own
// workspace and gradient buffer, summed in a fixed order (same shard count → same bits).
// Workspaces are sized once for the largest batch: no allocation inside compute().
#pragma once
#include <memory>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/model.hpp"

namespace vaelab {

class ThreadPool;

// Where one step's wall-clock time goes, for benchmarks (vaelab-train --bench-steps prints the
// means). The trainer times the whole step's three stages; the plain MLP step also splits its
// gradient into the phases below (other families leave them 0). Ten clock reads a step.
enum class StepPhase {
  Batch,            // gathering the batch and drawing ε (trainer)
  Gradient,         // GradientEngine::compute, all of it (trainer)
  Optimizer,        // Adam (trainer)
  EncoderForward,   // MLP: x → hidden layers → [μ; log σ²]
  DecoderForward,   // MLP: reparameterisation and the decoder's hidden layers
  OutputAndLoss,    // MLP: output layer, reconstruction term, its gradient and the output layer's dW
  DecoderBackward,  // MLP: the decoder's dx and remaining dW
  PriorTerms,       // MLP: KL, its gradient, through the reparameterisation
  EncoderBackward,  // MLP: the encoder's dx and dW
  Count
};
const char* step_phase_name(StepPhase p);  // snake_case, for JSON

struct StepTimes {
  double seconds[static_cast<int>(StepPhase::Count)] = {};
  double& operator[](StepPhase p) { return seconds[static_cast<int>(p)]; }
  double operator[](StepPhase p) const { return seconds[static_cast<int>(p)]; }
  StepTimes& operator+=(const StepTimes& o) {
    for (int i = 0; i < static_cast<int>(StepPhase::Count); ++i) seconds[i] += o.seconds[i];
    return *this;
  }
};

struct StepStats {
  double loss = 0;   // the minimised objective (β-weighted), per example
  double elbo = 0;   // recon − KL (β = 1), per example, nats
  double recon = 0;  // mean log p(x|z)
  double kl = 0;     // mean KL
  // Mean KL per latent dimension: a view of the engine's own buffer, valid until its next
  // compute() (no allocation in the step).
  std::span<const double> kl_per_dim;
  bool finite = true;
  StepTimes times;  // compute() fills the MLP phases; the trainer adds its stages
};

class GradientEngine {
 public:
  // max_batch: the largest batch compute() will see; samples: L; shards: how many pieces the
  // batch is cut into (normally the pool size; unused by plain MLP models, see above).
  GradientEngine(const ModelConfig& cfg, int max_batch, int samples, int shards);
  ~GradientEngine();

  int max_batch() const { return max_batch_; }
  int samples() const { return samples_; }

  // x: (D, B) with B ≤ max_batch; eps: (d, B·L), column b·L + l is sample l of example b.
  // Writes d loss / dθ into grad (model.size() floats).
  StepStats compute(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                    const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool);

  struct Shard;    // per-shard workspace (defined in train_step.cpp)
  struct MlpWork;  // the plain MLP's whole-batch workspace (defined in train_step.cpp)

 private:
  StepStats compute_mlp(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool);

  int max_batch_;
  int samples_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<MlpWork> mlp_;
  std::vector<double> kl_per_dim_;  // StepStats::kl_per_dim points here
};

// The same loss by forward pass only (for finite-difference checks and tests).
double loss_forward(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                    const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, int samples);

}  // namespace vaelab
