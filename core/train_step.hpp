// Forward and backward of the ELBO for one batch: the gradient of
//   loss = mean_b [ −(1/L) Σ_l log p(x_b | z_bl) + β · KL(q(z|x_b) ‖ p(z)) ],  z_bl = μ_b + σ_b ⊙ ε_bl
// with respect to every parameter.
// - Plain MLP: one whole-batch workspace. Everything that goes column by column (forward, loss,
//   every dx, the prior terms) runs on column slices of at least kMlpShardExamples examples, at
//   most the constructor's `shards` of them, side by side, one per thread, with no barrier; a
//   lone slice (a small batch) splits each layer's products by output rows into fixed chunks
//   claimed by the pool's threads instead. Then every layer's dW = dy inᵀ over the whole batch,
//   by row chunks on the pool. No per-thread gradient, no sum, and the same bits whatever the
//   slices and the thread count.
// - Other families cut the batch into as many shards as the constructor says (normally the pool
//   size), each with its own workspace and gradient buffer, summed in a fixed order (same shard
//   count → same bits).
// Workspaces are sized once for the largest batch: no allocation inside compute().
#pragma once
#include <memory>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "core/gemm.hpp"
#include "core/model.hpp"

namespace vaelab {

class ThreadPool;

// Where one step's wall-clock time goes, for benchmarks (vaelab-train --bench-steps prints the
// means). The trainer times the whole step's three stages; the plain MLP step also splits its
// gradient into the phases below (other families leave them 0): the column phases are those of
// slice 0, which with slices side by side is one thread's view of what the others do meanwhile.
// Ten clock reads a slice.
enum class StepPhase {
  Batch,            // gathering the batch and drawing ε (trainer)
  Gradient,         // GradientEngine::compute, all of it (trainer)
  WeightGradients,  // MLP: every layer's dW and db over the whole batch, after the column phases
  Optimizer,        // Adam (trainer)
  EncoderForward,   // MLP: x → hidden layers → [μ; log σ²]
  DecoderForward,   // MLP: reparameterisation and the decoder's hidden layers
  OutputAndLoss,    // MLP: output layer, reconstruction term and its gradient
  DecoderBackward,  // MLP: the decoder's dx
  PriorTerms,       // MLP: the KL's gradient, through the reparameterisation
  EncoderBackward,  // MLP: the encoder's dx
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
  // How many shards (plain MLP: column slices) compute() cuts a batch of `batch` examples into.
  int shards_for(int batch) const;

  // A plain MLP column slice holds at least this many examples: with fewer, each product's few
  // columns cannot pay for reading its weights, and splitting the products by rows is faster.
  // 64 with the AVX2 kernel; the AVX-512 kernel does a column's FMAs in half the time, so reading
  // the weights needs more columns to pay for it: 96.
  static constexpr int kMlpShardExamples = gemm::kMR == 32 ? 96 : 64;  // the AVX-512 tile is 32 rows

  // x: (D, B) with B ≤ max_batch; eps: (d, B·L), column b·L + l is sample l of example b.
  // Writes d loss / dθ into grad (model.size() floats).
  StepStats compute(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                    const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool);
  // compute() without its last pass: grad gets shard 0's part of the gradient only, and
  // unsummed_gradients() the other shards' parts, which the caller adds to it in that order.
  // Adam::step takes them and sums in its own pass over the gradient, which saves the shard sum's
  // own pass over memory (12 bytes a parameter and a shard). Same bits. The plain MLP, which
  // needs no sum, leaves no parts.
  StepStats compute_unsummed(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                             const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool);
  // The parts compute_unsummed() left out (model.size() floats each), valid until the next call;
  // empty after compute().
  std::span<const float* const> unsummed_gradients() const { return {unsummed_.data(), unsummed_count_}; }

  struct Shard;    // per-shard workspace (defined in train_step.cpp)
  struct MlpWork;  // the plain MLP's whole-batch workspace (defined in train_step.cpp)

 private:
  // Whether compute_step() adds the other shards' gradients into grad (compute) or leaves them to
  // the caller (compute_unsummed).
  enum class ShardSum { Summed, LeftToCaller };
  StepStats compute_step(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                         const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool,
                         ShardSum shard_sum);
  StepStats compute_mlp(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad, ThreadPool* pool);
  // Gradients of shards 1 … S−1 for the caller to add (compute_unsummed), or for the shard sum.
  void list_unsummed(int S);

  int max_batch_;
  int samples_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<MlpWork> mlp_;  // plain MLP only
  int mlp_slices_ = 1;            // the most column slices a batch is cut into
  int mlp_slices(int batch) const;  // column slices for a batch: ≥ kMlpShardExamples each, ≤ mlp_slices_
  std::vector<double> kl_per_dim_;  // StepStats::kl_per_dim points here
  std::vector<const float*> unsummed_;
  std::size_t unsummed_count_ = 0;
};

// The same loss by forward pass only (for finite-difference checks and tests).
double loss_forward(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                    const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, int samples);

}  // namespace vaelab
