// Forward and backward of the ELBO for one batch: the gradient of
//   loss = mean_b [ −(1/L) Σ_l log p(x_b | z_bl) + β · KL(q(z|x_b) ‖ p(z)) ],  z_bl = μ_b + σ_b ⊙ ε_bl
// with respect to every parameter. Every family cuts the batch into shards, each with its own
// workspace and gradient buffer, summed in a fixed order (same shard count → same bits).
// - Plain MLP: shards of at least kMlpShardExamples examples, at most the constructor's `shards`
//   (the trainer passes the machine's core count, not --threads). Two or more shards run side by
//   side, one per thread, with no barrier until the sum; a lone shard (a small batch) splits each
//   layer's products by output rows into fixed chunks claimed by the pool's threads. Either way the
//   bits depend on the batch and the shard limit only, never on the thread count.
// - Other families: as many shards as the constructor says (normally the pool size).
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
// gradient into the phases below (other families leave them 0): those of shard 0, which with
// shards side by side is one thread's view of a step that the others share. Eleven clock reads.
enum class StepPhase {
  Batch,            // gathering the batch and drawing ε (trainer)
  Gradient,         // GradientEngine::compute, all of it (trainer)
  ShardSum,         // MLP: summing the shards' gradients (0 with one shard)
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
  // batch is cut into (for plain MLP models the most it is cut into, see above).
  GradientEngine(const ModelConfig& cfg, int max_batch, int samples, int shards);
  ~GradientEngine();

  int max_batch() const { return max_batch_; }
  int samples() const { return samples_; }
  // How many shards compute() cuts a batch of `batch` examples into.
  int shards_for(int batch) const;

  // A plain MLP shard holds at least this many examples: below it the products' batch dimension
  // gets short (dW's k) and the per-shard gradient buffer and its sum cost more than a second
  // thread gains. At batch 64 one thread's gradient costs 2 % more per example than at 128.
  static constexpr int kMlpShardExamples = 64;

  // x: (D, B) with B ≤ max_batch; eps: (d, B·L), column b·L + l is sample l of example b.
  // Writes d loss / dθ into grad (model.size() floats).
  StepStats compute(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                    const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool);
  // compute() without its last pass: grad gets shard 0's part of the gradient only, and
  // unsummed_gradients() the other shards' parts, which the caller adds to it in that order.
  // Adam::step takes them and sums in its own pass over the gradient, which saves the shard sum's
  // pass over memory (100–170 µs of a 2.2 ms step for 784-400-20 at batch 128). Same bits.
  StepStats compute_unsummed(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                             const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool);
  // The parts compute_unsummed() left out (model.size() floats each), valid until the next call;
  // empty after compute().
  std::span<const float* const> unsummed_gradients() const { return {unsummed_.data(), unsummed_count_}; }

  struct Shard;    // per-shard workspace (defined in train_step.cpp)
  struct MlpWork;  // a plain MLP shard's workspace (defined in train_step.cpp)

 private:
  StepStats compute_any(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool,
                        bool sum);
  StepStats compute_mlp(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool,
                        bool sum);
  // Gradients of shards 1 … S−1 for the caller to add (compute_unsummed), or for the shard sum.
  void list_unsummed(int S);

  int max_batch_;
  int samples_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::unique_ptr<MlpWork>> mlp_;  // plain MLP: one workspace per shard
  std::vector<double> kl_per_dim_;  // StepStats::kl_per_dim points here
  std::vector<const float*> unsummed_;
  std::size_t unsummed_count_ = 0;
};

// The same loss by forward pass only (for finite-difference checks and tests).
double loss_forward(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                    const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, int samples);

}  // namespace vaelab
