// Forward and backward of the β-weighted negative ELBO for one batch (see train_step.hpp).
// Shapes: D pixels, d latent dims, Bs examples in a shard, L samples, C = Bs·L decoder columns.
#include "core/train_step.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/bernoulli_rows.hpp"
#include "core/conv.hpp"
#include "core/denormals.hpp"
#include "core/gemm.hpp"
#include "core/layers.hpp"
#include "core/objective.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {

const char* step_phase_name(StepPhase p) {
  switch (p) {
    case StepPhase::Batch: return "batch";
    case StepPhase::Gradient: return "gradient";
    case StepPhase::WeightGradients: return "weight_gradients";
    case StepPhase::Optimizer: return "optimizer";
    case StepPhase::EncoderForward: return "encoder_forward";
    case StepPhase::DecoderForward: return "decoder_forward";
    case StepPhase::OutputAndLoss: return "output_and_loss";
    case StepPhase::DecoderBackward: return "decoder_backward";
    case StepPhase::PriorTerms: return "prior_terms";
    case StepPhase::EncoderBackward: return "encoder_backward";
    case StepPhase::Count: break;
  }
  return "?";
}

namespace {

// Splits a step into phases: each mark() charges the time since the previous one to a phase.
class PhaseClock {
 public:
  explicit PhaseClock(StepTimes& t) : times_(t), last_(std::chrono::steady_clock::now()) {}
  void mark(StepPhase p) {
    const auto now = std::chrono::steady_clock::now();
    times_[p] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  StepTimes& times_;
  std::chrono::steady_clock::time_point last_;
};

// One operand that every row chunk of a product reads, to be packed once (gemm::pack_b).
struct PackJob {
  gemm::Op op;
  const float* b;
  std::ptrdiff_t ldb;
  int k, n;
  float* dst;
};

// At most 16 chunks per layer (13 for 400 or 784 rows, MR-row chunks below 16·MR rows), each a
// multiple of the GEMM's MR-row tile (16, or 32 with AVX-512), so that only a layer's last chunk
// has a short tile and two threads share a layer evenly. Chunks are cheap: the shared operand is
// packed once per product, not once per chunk.
struct RowChunks {
  int rows, step, count;
  explicit RowChunks(int r)
      : rows(r),
        step(std::max(gemm::kMR, ((r + 15) / 16 + gemm::kMR - 1) / gemm::kMR * gemm::kMR)),
        count((r + step - 1) / step) {}
  int lo(int k) const { return k * step; }
  int len(int k) const { return std::min(step, rows - k * step); }
};

}  // namespace

struct GradientEngine::Shard {
  // Encoder hidden activations, each (h_i, Bs). Conv: conv1 (32·h1·w1, Bs), conv2 (64·h2·w2, Bs).
  std::vector<Eigen::MatrixXf> enc_h;
  Eigen::MatrixXf head;                 // (2d, Bs): μ rows then raw log σ² rows
  Eigen::MatrixXf logvar, sigma;        // (d, Bs), log σ² clamped
  Eigen::MatrixXf z;                    // (d, C)
  Eigen::MatrixXf x_rep;                // (D, C) the input repeated L times (L > 1 only)
  // Decoder hidden activations, each (w_i, C). Conv: dense (32·h2·w2, C), convT1 (64·h1·w1, C),
  // convT2 (32·H·W, C); convT3 writes out.
  std::vector<Eigen::MatrixXf> dec_h;
  Eigen::MatrixXf out;                  // (D, C) decoder output, then d loss / d out in place
  Eigen::MatrixXf tmp;                  // (D, C) scratch
  Eigen::RowVectorXf col_logp;          // (C)
  std::vector<Eigen::MatrixXf> dec_dh;  // gradients of decoder hidden activations, (w_i, C)
  Eigen::MatrixXf dz;                   // (d, C)
  Eigen::MatrixXf dhead;                // (2d, Bs)
  std::vector<Eigen::MatrixXf> enc_dh;  // (h_i, Bs)
  // Clustering families only: the classifier's hidden activations (hidden, C; gmvae only), p(y|z)
  // then d loss / d logits (K, C), its hidden gradient (hidden, C; gmvae only), its part of dz
  // (d, C), the per-example
  // responsibilities (K, Bs); the clamped cluster log variances and their e^{−lv} (d, K). Scratch
  // for one example: its per-dimension KL to each cluster (d, K) and that KL summed over dimensions
  // (K), log K p(y|z) and d loss / dp(y|z) (K), σ² and μ − μ_y (d), one sample's KL per dimension (d).
  Eigen::MatrixXf cls_h, cls_p, cls_dh, dz_cls, resp;
  Eigen::MatrixXf cluster_logvar, cluster_inv_var, cluster_kl_dim;
  Eigen::ArrayXf cluster_kl, log_kp, dloss_dp, var, mean_diff;
  Eigen::VectorXf sample_kl_dim;
  ConvWorkspace conv_ws;                // Conv only: reserved for all five convolutions
  ParamVector grad;                     // this shard's gradient (shard 0 writes the caller's)
  double recon_sum = 0, kl_sum = 0;
  std::vector<double> kl_dim;
};

struct GradientEngine::MlpWork {
  std::vector<Eigen::MatrixXf> enc_h, enc_dh;  // (h_i, B) hidden activations and their gradients
  std::vector<Eigen::MatrixXf> dec_h, dec_dh;  // (w_i, C)
  Eigen::MatrixXf head, dhead;                 // (2d, B): μ rows then raw log σ² rows; its gradient
  Eigen::MatrixXf logvar, sigma;               // (d, B), log σ² clamped
  Eigen::MatrixXf z, dz;                       // (d, C)
  Eigen::MatrixXf x_rep;                       // (D, C) the input repeated L times (L > 1 only)
  Eigen::MatrixXf out, tmp;                    // (D, C) decoder output then d loss / d out; scratch
  Eigen::MatrixXf part;                        // (chunks of D, C): per-chunk column sums of log p (Bernoulli)
                                               // or of squared errors (Gaussian), summed in chunk order
  std::vector<double> kl_dim;
  std::vector<StepTimes> slice_times;  // each column slice's phases
  // Packed right-hand sides (gemm::pack_b) shared by all row chunks of a product: one per column
  // slice for its forward and dx products (pack_floats each), then every layer's inputᵀ for the
  // weight gradients (dw_offsets).
  std::vector<float> packs;
  std::size_t pack_floats = 0;
  std::vector<std::size_t> dw_offsets;
  // The weight-gradient phase: dense layer j (the encoder's, then the decoder's) has its inᵀ packed
  // by dw_jobs[j] and its row chunks as tasks [dw_first_task[j], dw_first_task[j + 1]).
  std::vector<PackJob> dw_jobs;
  std::vector<int> dw_first_task;
  float* pack(int slice) { return packs.data() + static_cast<std::size_t>(slice) * pack_floats; }
  float* dw_pack(std::size_t layer) { return packs.data() + dw_offsets[layer]; }
};

namespace {

// The buffers the MLP workspace and every shard share, for a batch of `batch` examples and C = batch
// · samples decoder columns: dense hidden activations and their gradients (appended after any conv
// layers' already in enc_h / dec_h), the head, log σ², σ, z, their gradients, the repeated input.
template <class Work>
void size_dense_buffers(Work& w, const Model& layout, int batch, int samples) {
  const int C = batch * samples, d = layout.config().latent, D = layout.config().input_dim();
  for (std::size_t i = 0; i + 1 < layout.encoder().size(); ++i) {
    w.enc_h.emplace_back(layout.encoder()[i].out, batch);
    w.enc_dh.emplace_back(layout.encoder()[i].out, batch);
  }
  for (std::size_t i = 0; i + 1 < layout.decoder().size(); ++i) {
    w.dec_h.emplace_back(layout.decoder()[i].out, C);
    w.dec_dh.emplace_back(layout.decoder()[i].out, C);
  }
  w.head.resize(2 * d, batch);
  w.dhead.resize(2 * d, batch);
  w.logvar.resize(d, batch);
  w.sigma.resize(d, batch);
  w.z.resize(d, C);
  w.dz.resize(d, C);
  if (samples > 1) w.x_rep.resize(D, C);
  w.out.resize(D, C);
  w.tmp.resize(D, C);
}

}  // namespace

GradientEngine::GradientEngine(const ModelConfig& cfg, int max_batch, int samples, int shards)
    : max_batch_(max_batch), samples_(samples), kl_per_dim_(static_cast<std::size_t>(cfg.latent), 0.0) {
  const Model layout(cfg);
  if (cfg.family == ModelFamily::Mlp) {
    // Plain MLP: one whole-batch workspace (see compute_mlp); column slices write their columns.
    mlp_slices_ = std::clamp(max_batch / kMlpShardExamples, 1, std::max(1, shards));
    int widest_slice = 1;  // the most examples a slice of any batch up to max_batch gets
    for (int b = 1; b <= max_batch; ++b) {
      const int slices = mlp_slices(b);
      widest_slice = std::max(widest_slice, (b + slices - 1) / slices);
    }
    const int C = max_batch * samples, d = cfg.latent, D = cfg.input_dim();
    auto w = std::make_unique<MlpWork>();
    size_dense_buffers(*w, layout, max_batch, samples);
    w->part.resize(RowChunks(D).count, C);
    w->kl_dim.resize(d);
    w->slice_times.resize(mlp_slices_);
    // A slice's packed operands are (a layer width × its columns); the weight gradients' are
    // (C × a layer's input width), one per layer, all live at once.
    int widest = 0;
    for (const auto* net : {&layout.encoder(), &layout.decoder()})
      for (const DenseShape& l : *net) widest = std::max({widest, l.in, l.out});
    w->pack_floats = gemm::packed_b_floats(widest, widest_slice * samples);
    std::size_t total = w->pack_floats * static_cast<std::size_t>(mlp_slices_);
    w->dw_first_task.push_back(0);
    for (const auto* net : {&layout.encoder(), &layout.decoder()})
      for (const DenseShape& l : *net) {
        w->dw_offsets.push_back(total);
        total += gemm::packed_b_floats(C, l.in);
        w->dw_first_task.push_back(w->dw_first_task.back() + RowChunks(l.out).count);
      }
    w->dw_jobs.resize(w->dw_offsets.size());
    w->packs.assign(total, 0.0f);
    mlp_ = std::move(w);
    return;
  }
  const int S = std::max(1, std::min(shards, max_batch));
  const int Bs = (max_batch + S - 1) / S, C = Bs * samples, d = cfg.latent;
  for (int s = 0; s < S; ++s) {
    auto sh = std::make_unique<Shard>();
    if (layout.is_conv()) {
      for (const ConvLayerShape& l : layout.conv_encoder()) {
        sh->enc_h.emplace_back(l.g.out_size(), Bs);
        sh->enc_dh.emplace_back(l.g.out_size(), Bs);
        sh->conv_ws.reserve(l.g);
      }
      sh->dec_h.emplace_back(layout.decoder()[0].out, C);
      sh->dec_dh.emplace_back(layout.decoder()[0].out, C);
      for (std::size_t i = 0; i < layout.conv_decoder().size(); ++i) {
        const ConvLayerShape& l = layout.conv_decoder()[i];
        if (i + 1 < layout.conv_decoder().size()) {
          sh->dec_h.emplace_back(l.g.out_size(), C);
          sh->dec_dh.emplace_back(l.g.out_size(), C);
        }
        sh->conv_ws.reserve(l.g);
      }
    }
    size_dense_buffers(*sh, layout, Bs, samples);
    sh->col_logp.resize(C);
    if (is_clustering(cfg.family)) {
      const int K = cfg.clusters;
      if (cfg.family == ModelFamily::Gmvae) {
        sh->cls_h.resize(kClassifierHidden, C);
        sh->cls_dh.resize(kClassifierHidden, C);
      }
      sh->cls_p.resize(K, C);
      sh->dz_cls.resize(d, C);
      sh->resp.resize(K, Bs);
      for (Eigen::MatrixXf* m : {&sh->cluster_logvar, &sh->cluster_inv_var, &sh->cluster_kl_dim}) m->resize(d, K);
      for (Eigen::ArrayXf* a : {&sh->cluster_kl, &sh->log_kp, &sh->dloss_dp}) a->resize(K);
      for (Eigen::ArrayXf* a : {&sh->var, &sh->mean_diff}) a->resize(d);
      sh->sample_kl_dim.resize(d);
    }
    if (s > 0) sh->grad.resize(layout.size());
    sh->kl_dim.resize(d);
    shards_.push_back(std::move(sh));
  }
  unsummed_.resize(shards_.size());
}

GradientEngine::~GradientEngine() = default;

int GradientEngine::mlp_slices(int batch) const { return std::clamp(batch / kMlpShardExamples, 1, mlp_slices_); }

int GradientEngine::shards_for(int batch) const {
  if (mlp_) return mlp_slices(batch);
  return std::max(1, std::min(static_cast<int>(shards_.size()), batch));
}

namespace {

using Block = Eigen::Block<Eigen::MatrixXf, Eigen::Dynamic, Eigen::Dynamic, true>;  // leftCols(n) of a buffer

// ---- Pieces both paths share ----

// Layer l's weight and bias gradients inside the gradient buffer g (laid out like the parameters).
Eigen::Map<Eigen::MatrixXf> dW(float* g, const DenseShape& l) { return {g + l.w, l.out, l.in}; }
Eigen::Map<Eigen::VectorXf> db(float* g, const DenseShape& l) { return {g + l.b, l.out}; }

// z_bl = μ_b + σ_b ⊙ ε_bl.  mu, sigma: (d, B)  eps, z: (d, B·L), column b·L + l is sample l of example b.
template <class Mu, class Sigma, class Eps, class Z>
void reparameterize_forward(const Mu& mu, const Sigma& sigma, const Eps& eps, int B, int L, Z& z) {
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l) z.col(b * L + l) = mu.col(b) + sigma.col(b).cwiseProduct(eps.col(b * L + l));
}

// Through z = μ + σ ⊙ ε, added into dhead (2d, B): d/dμ += Σ_l dz and d/dlog σ² += Σ_l dz ⊙ ε ⊙ σ/2,
// zero where the raw log σ² (head's bottom rows) was clamped.  dz, eps: (d, B·L)  sigma: (d, B).
template <class DZ, class Eps, class Sigma, class Head>
void reparameterize_backward(Block& dhead, const DZ& dz, const Eps& eps, const Sigma& sigma, const Head& head, int d,
                             int B, int L) {
  for (int b = 0; b < B; ++b) {
    auto dmu = dhead.col(b).head(d);
    auto dlv = dhead.col(b).tail(d);
    for (int l = 0; l < L; ++l) {
      const int c = b * L + l;
      dmu += dz.col(c);
      dlv.array() += dz.col(c).array() * eps.col(c).array() * (0.5f * sigma.col(b).array());
    }
    for (int j = 0; j < d; ++j) {
      const float raw = head(d + j, b);
      if (raw < kLogVarMin || raw > kLogVarMax) dlv(j) = 0.0f;
    }
  }
}

// KL(q(z|x) ‖ N(0, I)) per latent dimension, summed over the examples in double:
// kl_dim[j] = Σ_b ½(μ² + σ² − log σ² − 1). Returns Σ_j kl_dim[j].  mu, logvar: (d, B).
template <class Mu, class Lv>
double gaussian_kl_forward(const Mu& mu, const Lv& logvar, std::vector<double>& kl_dim) {
  std::fill(kl_dim.begin(), kl_dim.end(), 0.0);
  for (Eigen::Index b = 0; b < mu.cols(); ++b)
    for (Eigen::Index j = 0; j < mu.rows(); ++j) {
      const float m = mu(j, b), v = logvar(j, b);
      kl_dim[j] += 0.5 * (static_cast<double>(m) * m + std::exp(static_cast<double>(v)) - v - 1.0);
    }
  double kl_sum = 0;
  for (double v : kl_dim) kl_sum += v;
  return kl_sum;
}

// β KL(q ‖ N(0, I)) into dhead (2d, B):  d/dμ = β μ / B,  d/dlog σ² = β (σ² − 1) / (2B), with
// kl_scale = β / B.  mu, sigma: (d, B).
template <class Mu, class Sigma>
void gaussian_kl_backward(const Mu& mu, const Sigma& sigma, float kl_scale, Block& dhead) {
  const Eigen::Index d = mu.rows();
  dhead.topRows(d) = kl_scale * mu;
  dhead.bottomRows(d) = (0.5f * kl_scale) * (sigma.array().square() - 1.0f).matrix();
}

// Whether the learned decoder log σ²'s raw parameter is outside the range the model clamps it to,
// where its gradient is 0. Each path writes the gradient itself, d(−log p)/d lv =
// ½ Σ (1 − (x − m)² e^{−lv}) per column, from Σ (x − m)² summed its own way (in float by the
// sharded step, in double by the plain MLP step).
bool decoder_logvar_clamped(const Model& model) {
  const float raw = model.params()[model.decoder_logvar_offset()];
  return raw < kDecoderLogVarMin || raw > kLogVarMax;
}

// The step's statistics per example, from sums over the batch's B examples.
StepStats step_stats(double recon_sum, double kl_sum, int B, float beta, std::span<const double> kl_per_dim) {
  StepStats st;
  st.kl_per_dim = kl_per_dim;
  st.recon = recon_sum / B;
  st.kl = kl_sum / B;
  st.elbo = st.recon - st.kl;
  st.loss = -st.recon + beta * st.kl;
  st.finite = std::isfinite(st.loss);
  return st;
}

// ---- The sharded step (conv, clustering VAE): each shard forward and backward on its own ----

// A dense stack over the first `cols` columns of its buffers:  hidden[i] = relu(W_i in_i + b_i)
// for every layer but the last, out = W in + b for the last; in_0 = in, in_i = hidden[i − 1].
// in: (layers[0].in, cols)  hidden[i]: (layers[i].out, ≥ cols)  out: (layers.back().out, cols)
void dense_stack_forward(const Model& model, const std::vector<DenseShape>& layers, ConstMatRef in,
                         std::vector<Eigen::MatrixXf>& hidden, int cols, MatRef out) {
  const std::size_t n = layers.size();
  for (std::size_t i = 0; i < n; ++i) {
    const DenseShape& l = layers[i];
    const ConstMatRef layer_in = i == 0 ? in : ConstMatRef(hidden[i - 1].leftCols(cols));
    if (i + 1 == n) {
      dense_forward(model.W(l), model.b(l), layer_in, out);
    } else {
      Block h = hidden[i].leftCols(cols);
      dense_forward(model.W(l), model.b(l), layer_in, h);
      relu_forward(h);
    }
  }
}

// Backward of dense_stack_forward given dout (layers.back().out, cols): every layer's dW and db
// into g, every layer's dX through the ReLU below it into dhidden, and the first layer's dX into
// *dx_in unless it is null (no gradient for the data).
void dense_stack_backward(const Model& model, const std::vector<DenseShape>& layers, ConstMatRef in,
                          const std::vector<Eigen::MatrixXf>& hidden, std::vector<Eigen::MatrixXf>& dhidden, int cols,
                          ConstMatRef dout, MatRef* dx_in, float* g) {
  for (std::size_t i = layers.size(); i-- > 0;) {
    const DenseShape& l = layers[i];
    const ConstMatRef dy = i + 1 == layers.size() ? dout : ConstMatRef(dhidden[i].leftCols(cols));
    if (i == 0) {
      dense_backward(model.W(l), in, dy, dW(g, l), db(g, l), dx_in);
    } else {
      const ConstMatRef h = hidden[i - 1].leftCols(cols);
      MatRef dx(dhidden[i - 1].leftCols(cols));
      dense_backward(model.W(l), h, dy, dW(g, l), db(g, l), &dx);
      relu_backward(h, dx);
    }
  }
}

// ---- Clustering prior: for each sampled column, the loss part
//   Σ_y p(y|z) KL(q(z|x) ‖ N(μ_y, σ_y²)) + KL(p(y|z) ‖ uniform(K)),
// p(y|z) at the sampled z from gmvae's classifier or, for vade, the mixture's own posterior ----

// z (d, C) → p(y|z) (K, C): gmvae's classifier (z → cls_h (hidden, C) → logits) or vade's
// mixture_logits, softmax down each column; then for each example and sample its loss part (into
// sh.kl_sum and sh.kl_dim), its responsibilities (sh.resp, (K, Bs)), and, in place of p(y|z),
// d loss / d logits. col_scale = β / (B·L) weighs one sampled column.
template <class Mu, class Lv, class Z>
void gmvae_prior_forward(const Model& model, GradientEngine::Shard& sh, const Mu& mu, const Lv& logvar, const Z& z,
                         int Bs, int L, float col_scale) {
  const int d = model.latent(), K = model.clusters(), C = Bs * L;
  const Eigen::Map<const Eigen::MatrixXf> cluster_mean(model.data() + model.cluster_mean_offset(), d, K);
  const Eigen::Map<const Eigen::MatrixXf> cluster_logvar_raw(model.data() + model.cluster_logvar_offset(), d, K);
  sh.cluster_logvar = cluster_logvar_raw.cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
  sh.cluster_inv_var = (-sh.cluster_logvar.array()).exp();
  auto p_y = sh.cls_p.leftCols(C);
  if (model.config().family == ModelFamily::Vade) {
    mixture_logits(cluster_mean, sh.cluster_logvar, sh.cluster_inv_var, z, p_y);
  } else {
    const auto& cls = model.classifier();
    auto hidden = sh.cls_h.leftCols(C);
    dense_forward(model.W(cls[0]), model.b(cls[0]), z, hidden);
    relu_forward(hidden);
    dense_forward(model.W(cls[1]), model.b(cls[1]), hidden, p_y);
  }
  softmax_columns(p_y);
  auto resp = sh.resp.leftCols(Bs);
  resp.setZero();
  std::fill(sh.kl_dim.begin(), sh.kl_dim.end(), 0.0);
  sh.kl_sum = 0;
  const float log_k = std::log(static_cast<float>(K));
  for (int b = 0; b < Bs; ++b) {
    // cluster_kl_dim(j, y): KL of dimension j between q(z|x_b) and cluster y.
    sh.var = logvar.col(b).array().exp();  // σ², here rather than in the broadcast (a temporary)
    sh.cluster_kl_dim = 0.5f * ((sh.cluster_logvar.array().colwise() - logvar.col(b).array()) +
                                ((cluster_mean.colwise() - mu.col(b)).array().square().colwise() + sh.var) *
                                    sh.cluster_inv_var.array() -
                                1.0f);
    Eigen::ArrayXf& cluster_kl = sh.cluster_kl;  // (K): KL(q(z|x_b) ‖ N(μ_y, σ_y²)) for each y
    cluster_kl = sh.cluster_kl_dim.colwise().sum().transpose();
    for (int l = 0; l < L; ++l) {
      auto p = p_y.col(b * L + l);
      Eigen::ArrayXf& log_kp = sh.log_kp;  // log K p(y|z)
      log_kp = p.array().max(1e-30f).log() + log_k;
      sh.kl_sum += ((p.array() * (cluster_kl + log_kp)).sum()) / L;
      sh.sample_kl_dim.noalias() = sh.cluster_kl_dim * p;
      for (int j = 0; j < d; ++j) sh.kl_dim[j] += sh.sample_kl_dim(j) / L;
      resp.col(b) += p / static_cast<float>(L);
      // d/dp_y = col_scale (KL_y + log K p_y + 1); softmax backward turns it into d/dlogits.
      Eigen::ArrayXf& dp = sh.dloss_dp;
      dp = col_scale * (cluster_kl + log_kp + 1.0f);
      const float mean = (p.array() * dp).sum();
      p = (p.array() * (dp - mean)).matrix();
    }
  }
}

// Backward of gmvae_prior_forward from d loss / d logits: through gmvae's classifier (its dW and
// db) or vade's mixture logits (the cluster means and log variances), the part for z added into
// sh.dz (d, C); then the responsibility-weighted Gaussian KL gradients for (μ, log σ²), written
// into sh.dhead (2d, Bs), and for the cluster means and log variances. kl_scale = β / B.
template <class Mu, class Lv, class Z>
void gmvae_prior_backward(const Model& model, GradientEngine::Shard& sh, const Mu& mu, const Lv& logvar, const Z& z,
                          int Bs, int L, float kl_scale, float* g) {
  const int d = model.latent(), K = model.clusters(), C = Bs * L;
  const std::size_t mean_at = model.cluster_mean_offset(), logvar_at = model.cluster_logvar_offset();
  const Eigen::Map<const Eigen::MatrixXf> cluster_mean(model.data() + mean_at, d, K);
  const Eigen::Map<const Eigen::MatrixXf> cluster_logvar_raw(model.data() + logvar_at, d, K);
  Eigen::Map<Eigen::MatrixXf> d_cluster_mean(g + mean_at, d, K), d_cluster_logvar(g + logvar_at, d, K);
  d_cluster_mean.setZero();
  d_cluster_logvar.setZero();
  const auto dlogits = sh.cls_p.leftCols(C);
  MatRef dz_cls(sh.dz_cls.leftCols(C));
  if (model.config().family == ModelFamily::Vade) {
    // logit_y = −½ Σ_j ((z_j − μ_yj)² e^{−lv_yj} + lv_yj): with u = (z − μ_y) e^{−lv_y},
    // ∂/∂z = −u, ∂/∂μ_y = u, ∂/∂lv_y = ½ ((z − μ_y) u − 1).
    dz_cls.setZero();
    for (int c = 0; c < C; ++c)
      for (int y = 0; y < K; ++y) {
        Eigen::ArrayXf& u = sh.mean_diff;
        u = (z.col(c) - cluster_mean.col(y)).array() * sh.cluster_inv_var.col(y).array();
        const float gy = dlogits(y, c);
        dz_cls.col(c).array() -= gy * u;
        d_cluster_mean.col(y).array() += gy * u;
        d_cluster_logvar.col(y).array() += (0.5f * gy) * ((z.col(c) - cluster_mean.col(y)).array() * u - 1.0f);
      }
  } else {
    const auto& cls = model.classifier();
    const auto hidden = sh.cls_h.leftCols(C);
    MatRef dh(sh.cls_dh.leftCols(C));
    dense_backward(model.W(cls[1]), hidden, dlogits, dW(g, cls[1]), db(g, cls[1]), &dh);
    relu_backward(hidden, dh);
    dense_backward(model.W(cls[0]), z, dh, dW(g, cls[0]), db(g, cls[0]), &dz_cls);
  }
  sh.dz.leftCols(C) += dz_cls;
  const auto resp = sh.resp.leftCols(Bs);
  auto dhead = sh.dhead.leftCols(Bs);
  for (int b = 0; b < Bs; ++b) {
    auto dmu = dhead.col(b).head(d);
    auto dlv = dhead.col(b).tail(d);
    dmu.setZero();
    dlv.setZero();
    Eigen::ArrayXf& var = sh.var;
    var = logvar.col(b).array().exp();
    for (int y = 0; y < K; ++y) {
      const float w = kl_scale * resp(y, b);
      Eigen::ArrayXf& diff = sh.mean_diff;  // μ − μ_y
      diff = mu.col(b).array() - cluster_mean.col(y).array();
      const auto inv = sh.cluster_inv_var.col(y).array();
      dmu.array() += w * diff * inv;
      dlv.array() += (0.5f * w) * (var * inv - 1.0f);
      d_cluster_mean.col(y).array() -= w * diff * inv;
      d_cluster_logvar.col(y).array() += (0.5f * w) * (1.0f - (var + diff.square()) * inv);
    }
  }
  // No gradient where the cluster log variance is clamped.
  d_cluster_logvar = (cluster_logvar_raw.array() < kLogVarMin || cluster_logvar_raw.array() > kLogVarMax)
                         .select(0.0f, d_cluster_logvar);
}

// ---- Convolutional encoder and decoder (ModelFamily::Conv), see Model::conv_encoder/decoder ----

// x: (D, Bs) → enc_h[0] (32·h1·w1, Bs) → enc_h[1] (64·h2·w2, Bs) → head (2d, Bs).
void conv_encoder_forward(const Model& model, GradientEngine::Shard& sh, ConstMatRef x, int Bs, MatRef head) {
  const float* p = model.data();
  const auto& ce = model.conv_encoder();
  for (std::size_t i = 0; i < ce.size(); ++i) {
    Block h = sh.enc_h[i].leftCols(Bs);
    if (i == 0)
      conv_forward(p + ce[i].w, p + ce[i].b, ce[i].g, x, h, sh.conv_ws);
    else
      conv_forward(p + ce[i].w, p + ce[i].b, ce[i].g, sh.enc_h[i - 1].leftCols(Bs), h, sh.conv_ws);
    relu_forward(h);
  }
  const DenseShape& fc = model.encoder()[0];
  dense_forward(model.W(fc), model.b(fc), sh.enc_h.back().leftCols(Bs), head);
}

// dhead (2d, Bs) → dW and db of the dense head and both convolutions (no gradient for x).
void conv_encoder_backward(const Model& model, GradientEngine::Shard& sh, ConstMatRef x, ConstMatRef dhead, int Bs,
                           float* g) {
  const float* p = model.data();
  const auto& ce = model.conv_encoder();
  const DenseShape& fc = model.encoder()[0];
  const std::size_t n = ce.size();
  {
    MatRef dx(sh.enc_dh[n - 1].leftCols(Bs));
    dense_backward(model.W(fc), sh.enc_h[n - 1].leftCols(Bs), dhead, dW(g, fc), db(g, fc), &dx);
    relu_backward(sh.enc_h[n - 1].leftCols(Bs), dx);
  }
  for (std::size_t i = n; i-- > 0;) {
    const ConvLayerShape& l = ce[i];
    if (i == 0) {
      conv_backward(p + l.w, l.g, x, sh.enc_dh[0].leftCols(Bs), g + l.w, g + l.b, nullptr, sh.conv_ws);
    } else {
      MatRef dx(sh.enc_dh[i - 1].leftCols(Bs));
      conv_backward(p + l.w, l.g, sh.enc_h[i - 1].leftCols(Bs), sh.enc_dh[i].leftCols(Bs), g + l.w, g + l.b, &dx,
                    sh.conv_ws);
      relu_backward(sh.enc_h[i - 1].leftCols(Bs), dx);
    }
  }
}

// z: (d, C) → dec_h[0] (32·h2·w2, C) → dec_h[1] (64·h1·w1, C) → dec_h[2] (32·H·W, C) → out (D, C).
void conv_decoder_forward(const Model& model, GradientEngine::Shard& sh, ConstMatRef z, int C, MatRef out) {
  const float* p = model.data();
  const auto& cd = model.conv_decoder();
  const DenseShape& fc = model.decoder()[0];
  Block h0 = sh.dec_h[0].leftCols(C);
  dense_forward(model.W(fc), model.b(fc), z, h0);
  relu_forward(h0);
  for (std::size_t i = 0; i < cd.size(); ++i) {
    const ConvLayerShape& l = cd[i];
    if (i + 1 < cd.size()) {
      Block h = sh.dec_h[i + 1].leftCols(C);
      conv_forward(p + l.w, p + l.b, l.g, sh.dec_h[i].leftCols(C), h, sh.conv_ws);
      relu_forward(h);
    } else {
      conv_forward(p + l.w, p + l.b, l.g, sh.dec_h[i].leftCols(C), out, sh.conv_ws);
    }
  }
}

// dout (D, C) → dW and db of the three transposed convolutions and the dense layer; dz (d, C) assigned.
void conv_decoder_backward(const Model& model, GradientEngine::Shard& sh, ConstMatRef z, ConstMatRef dout, int C,
                           float* g) {
  const float* p = model.data();
  const auto& cd = model.conv_decoder();
  const DenseShape& fc = model.decoder()[0];
  for (std::size_t i = cd.size(); i-- > 0;) {
    const ConvLayerShape& l = cd[i];
    // Layer i reads dec_h[i] and writes dec_h[i + 1] (or out); its dy is dec_dh[i + 1] (or dout).
    const ConstMatRef dy = i + 1 == cd.size() ? dout : ConstMatRef(sh.dec_dh[i + 1].leftCols(C));
    MatRef dx(sh.dec_dh[i].leftCols(C));
    conv_backward(p + l.w, l.g, sh.dec_h[i].leftCols(C), dy, g + l.w, g + l.b, &dx, sh.conv_ws);
    relu_backward(sh.dec_h[i].leftCols(C), dx);
  }
  MatRef dz(sh.dz.leftCols(C));
  dense_backward(model.W(fc), z, sh.dec_dh[0].leftCols(C), dW(g, fc), db(g, fc), &dz);
}

// x: (D, Bs) → head (2d, Bs): μ rows then raw log σ² rows.
void encoder_forward(const Model& model, GradientEngine::Shard& sh, ConstMatRef x, int Bs, MatRef head) {
  if (model.is_conv())
    conv_encoder_forward(model, sh, x, Bs, head);
  else
    dense_stack_forward(model, model.encoder(), x, sh.enc_h, Bs, head);
}

// dhead (2d, Bs) → every encoder layer's dW and db (no gradient for x).
void encoder_backward(const Model& model, GradientEngine::Shard& sh, ConstMatRef x, ConstMatRef dhead, int Bs,
                      float* g) {
  if (model.is_conv())
    conv_encoder_backward(model, sh, x, dhead, Bs, g);
  else
    dense_stack_backward(model, model.encoder(), x, sh.enc_h, sh.enc_dh, Bs, dhead, nullptr, g);
}

// z: (d, C) → out (D, C), the decoder's raw output (logits or means).
void decoder_forward(const Model& model, GradientEngine::Shard& sh, ConstMatRef z, int C, MatRef out) {
  if (model.is_conv())
    conv_decoder_forward(model, sh, z, C, out);
  else
    dense_stack_forward(model, model.decoder(), z, sh.dec_h, C, out);
}

// dout (D, C) → every decoder layer's dW and db, and dz (d, C) into sh.dz.
void decoder_backward(const Model& model, GradientEngine::Shard& sh, ConstMatRef z, ConstMatRef dout, int C, float* g) {
  if (model.is_conv()) {
    conv_decoder_backward(model, sh, z, dout, C, g);
  } else {
    MatRef dz(sh.dz.leftCols(C));
    dense_stack_backward(model, model.decoder(), z, sh.dec_h, sh.dec_dh, C, dout, &dz, g);
  }
}

// The reconstruction term and its gradient, fused: for out (D, C) the decoder output of x (D, Bs)'s
// C = Bs·L columns, returns Σ_c log p(x | out_c) / L and overwrites out with d loss / d out
// (scale = 1/(B·L) weighs a column); a learned decoder log σ² gets its gradient in g.
double likelihood_forward_backward(const Model& model, GradientEngine::Shard& sh, ConstMatRef x, int Bs, int L,
                                   float scale, Block& out, float* g) {
  const int D = model.config().input_dim(), C = Bs * L;
  if (L > 1)
    for (int b = 0; b < Bs; ++b)
      for (int l = 0; l < L; ++l) sh.x_rep.col(b * L + l) = x.col(b);
  // Column c of the decoder output is compared with its example: x itself when L = 1.
  const ConstMatRef target = L > 1 ? ConstMatRef(sh.x_rep.leftCols(C)) : x;
  Block tmp = sh.tmp.leftCols(C);
  auto logp = sh.col_logp.head(C);
  if (model.config().likelihood == Likelihood::Bernoulli) {
    // One exp per pixel serves both softplus and sigmoid: e = exp(−|l|).
    tmp = (-out.array().abs()).exp();
    logp = (target.array() * out.array() - out.array().max(0.0f) - tmp.array().log1p()).colwise().sum();
    out = ((out.array() >= 0.0f).select((1.0f + tmp.array()).inverse(), tmp.array() / (1.0f + tmp.array())) -
           target.array()) *
          scale;
  } else {
    const float lv = model.decoder_logvar(), inv_var = std::exp(-lv);
    tmp = out - target;  // m − x
    const auto sq = tmp.array().square().colwise().sum();
    logp = -0.5f * inv_var * sq - 0.5f * (lv + static_cast<float>(kLog2Pi)) * static_cast<float>(D);
    if (model.decoder_logvar_offset() != Model::npos)
      g[model.decoder_logvar_offset()] = decoder_logvar_clamped(model)
                                             ? 0.0f
                                             : scale * 0.5f * (static_cast<float>(D) * C - inv_var * sq.sum());
    out = tmp * (inv_var * scale);
  }
  return logp.cast<double>().sum() / L;
}

// Forward and backward for examples [lo, lo + Bs) of a batch of B_total: the full gradient into g,
// the shard's sums into sh.recon_sum, sh.kl_sum and sh.kl_dim.
void shard_step(const Model& model, GradientEngine::Shard& sh, const Eigen::Ref<const Eigen::MatrixXf>& x_all,
                const Eigen::Ref<const Eigen::MatrixXf>& eps_all, int lo, int Bs, int B_total, int L, float beta,
                float* g) {
  const int d = model.latent(), C = Bs * L;
  const auto x = x_all.middleCols(lo, Bs);                                    // (D, Bs)
  const auto eps = eps_all.middleCols(static_cast<Eigen::Index>(lo) * L, C);  // (d, C)
  const float scale = 1.0f / (static_cast<float>(B_total) * L);             // mean over batch and samples
  const float kl_scale = beta / static_cast<float>(B_total);
  Block head = sh.head.leftCols(Bs), dhead = sh.dhead.leftCols(Bs);  // (2d, Bs): μ rows then log σ² rows
  Block logvar = sh.logvar.leftCols(Bs), sigma = sh.sigma.leftCols(Bs);
  Block z = sh.z.leftCols(C), out = sh.out.leftCols(C);
  const auto mu = head.topRows(d);

  encoder_forward(model, sh, x, Bs, head);
  logvar = head.bottomRows(d).cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
  sigma = (0.5f * logvar.array()).exp();
  reparameterize_forward(mu, sigma, eps, Bs, L, z);
  decoder_forward(model, sh, z, C, out);
  sh.recon_sum = likelihood_forward_backward(model, sh, x, Bs, L, scale, out, g);  // out becomes d loss / d out
  decoder_backward(model, sh, z, out, C, g);                                      // → sh.dz
  if (model.clusters() > 0) {
    gmvae_prior_forward(model, sh, mu, logvar, z, Bs, L, scale * beta);
    gmvae_prior_backward(model, sh, mu, logvar, z, Bs, L, kl_scale, g);  // dhead assigned, dz added to
  } else {
    sh.kl_sum = gaussian_kl_forward(mu, logvar, sh.kl_dim);
    gaussian_kl_backward(mu, sigma, kl_scale, dhead);
  }
  reparameterize_backward(dhead, sh.dz, eps, sigma, head, d, Bs, L);
  encoder_backward(model, sh, x, dhead, Bs, g);
}

// ---- Plain MLP: each layer's products split by output rows over the pool ----
// Rows are cut into fixed chunks that depend only on the layer's size, never on the thread count,
// and every output element is computed by exactly one task over the whole batch: the gradient
// needs no per-thread copies and no reduction, and any number of threads gives the same bits.

// Packs the jobs' panels in parallel (each job in a few panel ranges), before the chunks start.
void pack_shared(ThreadPool* pool, const PackJob* jobs, int count) {
  constexpr int kParts = 4;
  run_tasks(pool, count * kParts, [&](int t) {
    const PackJob& j = jobs[t / kParts];
    const int np = gemm::panels(j.n), part = t % kParts;
    gemm::pack_b(j.op, j.b, j.ldb, j.k, j.n, j.dst, np * part / kParts, np * (part + 1) / kParts);
  });
}

// y[rows] = W[rows, :] in + b[rows], then ReLU if relu (bias and ReLU applied on the tile).
// W: (out, in)  in: (in, C), packed  y: (out, C)
void dense_rows_forward(const Model& m, const DenseShape& l, const float* in_packed, int C, MatRef y, int lo, int n,
                        bool relu) {
  gemm::Epilogue e;
  e.bias = m.data() + l.b + lo;
  e.relu = relu;
  gemm::multiply_packed(gemm::Op::N, m.data() + l.w + lo, l.out, n, C, l.in, in_packed, y.data() + lo,
                        y.outerStride(), false, e);
}

// y = W in + b (then ReLU if relu) by row chunks, in packed first into pack.  in: (in, C)  y: (out, C)
void dense_forward_by_rows(ThreadPool* pool, const Model& m, const DenseShape& l, ConstMatRef in, MatRef y, bool relu,
                           float* pack) {
  const int C = static_cast<int>(in.cols());
  const PackJob job{gemm::Op::N, in.data(), in.outerStride(), l.in, C, pack};
  pack_shared(pool, &job, 1);
  const RowChunks ch(l.out);
  run_tasks(pool, ch.count, [&](int k) { dense_rows_forward(m, l, pack, C, y, ch.lo(k), ch.len(k), relu); });
}

// dW[rows] = dy[rows] inᵀ: dy (out, C), inᵀ packed from in (in, C); dW (out, in) at g.
void dw_rows(float* g, const DenseShape& l, ConstMatRef dy, const float* in_t_packed, int lo, int n) {
  gemm::multiply_packed(gemm::Op::N, dy.data() + lo, dy.outerStride(), n, l.in, static_cast<int>(dy.cols()),
                        in_t_packed, g + l.w + lo, l.out, false);
}

// dX = Wᵀ dy for layer l (W: (out, in), dy (out, C), dX (in, C)) by chunks of dX's rows; where the
// layer's input is a ReLU output relu_in (not null), dX is zeroed where the unit was off (on the
// tile, by the GEMM's mask). dy is packed first into pack. Its dW waits for the weight gradients.
void dense_dx_by_rows(ThreadPool* pool, const Model& m, const DenseShape& l, ConstMatRef dy, MatRef dx,
                      const ConstMatRef* relu_in, float* pack) {
  const int C = static_cast<int>(dy.cols());
  const PackJob job{gemm::Op::N, dy.data(), dy.outerStride(), l.out, C, pack};
  pack_shared(pool, &job, 1);
  const RowChunks dx_rows(l.in);
  run_tasks(pool, dx_rows.count, [&](int t) {
    const int lo = dx_rows.lo(t), n = dx_rows.len(t);
    gemm::Epilogue e;
    if (relu_in) {
      e.mask = relu_in->data() + lo;
      e.ldmask = relu_in->outerStride();
    }
    // Row i of Wᵀ is column i of W: op(A) = Wᵀ with A = W stored (out, in), leading dimension out.
    gemm::multiply_packed(gemm::Op::T, m.data() + l.w + static_cast<std::size_t>(lo) * l.out, l.out, n, C, l.out,
                          pack, dx.data() + lo, dx.outerStride(), false, e);
  });
}

// A dense stack by row chunks on one column slice: hidden_i = relu(W_i in_i + b_i) for every layer
// but the last, in_0 = in, in_i = hidden_{i−1}; the last layer into *out unless it is null (the
// decoder's output layer goes with the loss). slice(m): the slice's columns of buffer m.
template <class Slice>
void mlp_stack_forward(ThreadPool* pool, const Model& model, const std::vector<DenseShape>& layers, ConstMatRef in,
                       std::vector<Eigen::MatrixXf>& hidden, const Slice& slice, MatRef* out, float* pack) {
  const std::size_t n = layers.size();
  for (std::size_t i = 0; i < n; ++i) {
    const ConstMatRef layer_in = i == 0 ? in : ConstMatRef(slice(hidden[i - 1]));
    if (i + 1 < n) {
      MatRef h(slice(hidden[i]));
      dense_forward_by_rows(pool, model, layers[i], layer_in, h, true, pack);
    } else if (out) {
      dense_forward_by_rows(pool, model, layers[i], layer_in, *out, false, pack);
    }
  }
}

// Backward of mlp_stack_forward's products given dout: every layer's dX by row chunks, through the
// ReLU below it, into dhidden, and the first layer's into *dx_in unless it is null (no gradient for
// the data). The dW wait for mlp_weight_gradients.
template <class Slice>
void mlp_stack_backward(ThreadPool* pool, const Model& model, const std::vector<DenseShape>& layers,
                        std::vector<Eigen::MatrixXf>& hidden, std::vector<Eigen::MatrixXf>& dhidden, const Slice& slice,
                        ConstMatRef dout, MatRef* dx_in, float* pack) {
  for (std::size_t i = layers.size(); i-- > 0;) {
    const ConstMatRef dy = i + 1 == layers.size() ? dout : ConstMatRef(slice(dhidden[i]));
    if (i > 0) {
      const ConstMatRef h = slice(hidden[i - 1]);
      MatRef dx(slice(dhidden[i - 1]));
      dense_dx_by_rows(pool, model, layers[i], dy, dx, &h, pack);
    } else if (dx_in) {
      dense_dx_by_rows(pool, model, layers[0], dy, *dx_in, nullptr, pack);
    }
  }
}

// The decoder's output layer, the reconstruction term and d loss / d out, fused, by row chunks of
// the output for the slice's decoder columns [c0, c0 + C): each chunk k writes its output rows of
// w.out, then d loss / d out in their place, and its column sums of log p (Bernoulli) or of squared
// errors (Gaussian) into w.part row k, for mlp_reconstruction_sum. x: the slice's examples (D, C/L).
void output_layer_forward_backward(ThreadPool* pool, const Model& model, GradientEngine::MlpWork& w, ConstMatRef x,
                                   int c0, int C, int L, int B_total, float* pack) {
  const ModelConfig& cfg = model.config();
  const DenseShape& out_layer = model.decoder().back();
  const float scale = 1.0f / (static_cast<float>(B_total) * L);  // mean over batch and samples
  const bool bernoulli = cfg.likelihood == Likelihood::Bernoulli;
  const float lv = bernoulli ? 0.0f : model.decoder_logvar(), inv_var = std::exp(-lv);
  const RowChunks out_rows(cfg.input_dim());
  auto cols = [&](Eigen::MatrixXf& m) { return m.middleCols(c0, C); };
  Block out = cols(w.out);
  {
    const auto h_last = cols(w.dec_h.back());
    const PackJob h_job{gemm::Op::N, h_last.data(), h_last.outerStride(), out_layer.in, C, pack};
    pack_shared(pool, &h_job, 1);
  }
  run_tasks(pool, out_rows.count, [&](int k) {
    const int r0 = out_rows.lo(k), n = out_rows.len(k);
    MatRef out_ref(out);
    dense_rows_forward(model, out_layer, pack, C, out_ref, r0, n, false);
    auto o = out.middleRows(r0, n);
    // Column c of the decoder output is compared with its example: x itself when L = 1.
    if (L > 1)
      for (int c = 0; c < C; ++c) w.x_rep.col(c0 + c).segment(r0, n) = x.col(c / L).segment(r0, n);
    const ConstMatRef target = L > 1 ? ConstMatRef(cols(w.x_rep).middleRows(r0, n)) : ConstMatRef(x.middleRows(r0, n));
    auto part = w.part.row(k).segment(c0, C);
    if (bernoulli) {
      bernoulli_rows(o.data(), o.outerStride(), target.data(), target.outerStride(), n, C, scale, part.data(),
                     w.part.outerStride());
    } else {
      auto t = cols(w.tmp).middleRows(r0, n);
      t = o - target;  // m − x
      part = t.array().square().colwise().sum();
      o = t * (inv_var * scale);
    }
  });
}

// Everything of the plain MLP step that runs column by column (forward, loss, d loss / d out,
// every dX, the prior terms), for examples [b0, b0 + nb) of a batch of B_total examples: their
// columns of the workspace and of w.part. With a pool, every product is split into row chunks
// claimed by the pool's threads; without one, all runs on the calling thread. Phases into times.
void mlp_columns_step(const Model& model, GradientEngine::MlpWork& w, const Eigen::Ref<const Eigen::MatrixXf>& x_all,
                      const Eigen::Ref<const Eigen::MatrixXf>& eps_all, int b0, int nb, int B_total, int L, float beta,
                      float* pack, ThreadPool* pool, StepTimes& times) {
  const int c0 = b0 * L, C = nb * L, d = model.latent();
  const auto x = x_all.middleCols(b0, nb);    // (D, nb)
  const auto eps = eps_all.middleCols(c0, C);  // (d, C)
  auto ex = [&](Eigen::MatrixXf& m) { return m.middleCols(b0, nb); };  // this slice's examples
  auto col = [&](Eigen::MatrixXf& m) { return m.middleCols(c0, C); };  // its decoder columns
  Block head = ex(w.head), dhead = ex(w.dhead);  // (2d, nb): μ rows then log σ² rows
  Block logvar = ex(w.logvar), sigma = ex(w.sigma);
  Block z = col(w.z), out = col(w.out);
  const auto mu = head.topRows(d);
  MatRef head_ref(head), dz(col(w.dz));
  times = {};
  PhaseClock clock(times);

  mlp_stack_forward(pool, model, model.encoder(), x, w.enc_h, ex, &head_ref, pack);
  logvar = head.bottomRows(d).cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
  // Column by column: over a whole contiguous block Eigen would take some elements' exp from its
  // vector form and others' from std::exp depending on where the block starts, and σ would
  // change with the column slices.
  for (int b = 0; b < nb; ++b) sigma.col(b) = (0.5f * logvar.col(b).array()).exp();
  clock.mark(StepPhase::EncoderForward);

  reparameterize_forward(mu, sigma, eps, nb, L, z);  // d × C, too small to split
  mlp_stack_forward(pool, model, model.decoder(), z, w.dec_h, col, nullptr, pack);
  clock.mark(StepPhase::DecoderForward);

  output_layer_forward_backward(pool, model, w, x, c0, C, L, B_total, pack);  // out becomes d loss / d out
  clock.mark(StepPhase::OutputAndLoss);

  mlp_stack_backward(pool, model, model.decoder(), w.dec_h, w.dec_dh, col, out, &dz, pack);
  clock.mark(StepPhase::DecoderBackward);

  gaussian_kl_backward(mu, sigma, beta / static_cast<float>(B_total), dhead);
  reparameterize_backward(dhead, col(w.dz), eps, sigma, head, d, nb, L);
  clock.mark(StepPhase::PriorTerms);

  mlp_stack_backward(pool, model, model.encoder(), w.enc_h, w.enc_dh, ex, dhead, nullptr, pack);
  clock.mark(StepPhase::EncoderBackward);
}

// Every layer's dW = dy inᵀ and db = Σ dy over the whole batch, after every column slice is done:
// first each layer's inᵀ packed once (gemm::pack_b, by panel ranges), then dW by row chunks of all
// layers, claimed by the pool's threads. Each element sums the batch's columns in order, in one
// product, so the gradient's bits depend neither on the threads nor on the column slices.
void mlp_weight_gradients(ThreadPool* pool, const Model& model, GradientEngine::MlpWork& w,
                          const Eigen::Ref<const Eigen::MatrixXf>& x, int B, int L, float* g) {
  const int C = B * L;
  const auto& enc = model.encoder();
  const auto& dec = model.decoder();
  const std::size_t ne = enc.size(), nd = dec.size(), layers = ne + nd;
  // Layer j's shape, input and dy over the whole batch.
  auto layer = [&](std::size_t j) {
    struct LayerGrad {
      const DenseShape& l;
      ConstMatRef in, dy;
    };
    if (j < ne)
      return LayerGrad{enc[j], j == 0 ? ConstMatRef(x) : ConstMatRef(w.enc_h[j - 1].leftCols(B)),
                       j + 1 == ne ? ConstMatRef(w.dhead.leftCols(B)) : ConstMatRef(w.enc_dh[j].leftCols(B))};
    const std::size_t i = j - ne;
    return LayerGrad{dec[i], i == 0 ? ConstMatRef(w.z.leftCols(C)) : ConstMatRef(w.dec_h[i - 1].leftCols(C)),
                     i + 1 == nd ? ConstMatRef(w.out.leftCols(C)) : ConstMatRef(w.dec_dh[i].leftCols(C))};
  };
  for (std::size_t j = 0; j < layers; ++j) {
    const auto lg = layer(j);
    w.dw_jobs[j] = {gemm::Op::T, lg.in.data(), lg.in.outerStride(), static_cast<int>(lg.in.cols()), lg.l.in,
                    w.dw_pack(j)};
  }
  pack_shared(pool, w.dw_jobs.data(), static_cast<int>(layers));
  const std::vector<int>& first = w.dw_first_task;
  run_tasks(pool, first[layers], [&](int t) {
    std::size_t j = 0;
    while (t >= first[j + 1]) ++j;
    const auto lg = layer(j);
    const RowChunks ch(lg.l.out);
    const int lo = ch.lo(t - first[j]), rows = ch.len(t - first[j]);
    dw_rows(g, lg.l, lg.dy, w.dw_pack(j), lo, rows);
    column_sum(lg.dy.middleRows(lo, rows), db(g, lg.l).segment(lo, rows));
  });
}

// Σ_c log p(x | out_c) / L over the batch's C = B·L columns, from output_layer_forward_backward's
// per-chunk column sums in chunk order, then column order; a learned decoder log σ² gets its
// gradient in g.
double mlp_reconstruction_sum(const Model& model, const GradientEngine::MlpWork& w, int B, int L, float* g) {
  const int D = model.config().input_dim(), C = B * L;
  const RowChunks out_rows(D);
  double recon_sum = 0;
  if (model.config().likelihood == Likelihood::Bernoulli) {
    for (int k = 0; k < out_rows.count; ++k) recon_sum += w.part.row(k).head(C).cast<double>().sum();
  } else {
    const float lv = model.decoder_logvar(), inv_var = std::exp(-lv), scale = 1.0f / (static_cast<float>(B) * L);
    double sq_total = 0;
    for (int c = 0; c < C; ++c) {
      float sq = 0;
      for (int k = 0; k < out_rows.count; ++k) sq += w.part(k, c);
      sq_total += sq;
      recon_sum += -0.5f * inv_var * sq - 0.5f * (lv + static_cast<float>(kLog2Pi)) * static_cast<float>(D);
    }
    if (model.decoder_logvar_offset() != Model::npos)
      g[model.decoder_logvar_offset()] =
          decoder_logvar_clamped(model)
              ? 0.0f
              : static_cast<float>(scale * 0.5 * (static_cast<double>(D) * C - inv_var * sq_total));
  }
  return recon_sum / L;
}

// grad[0, n) += parts[0], parts[1], … in that order (shard 0 wrote grad itself), split over
// parameter ranges on the pool: a fixed order, so the same bits on any thread, and the same as
// Adam::step summing them.
void sum_gradients(ThreadPool* pool, float* grad, std::span<const float* const> parts, std::size_t n) {
  if (parts.empty()) return;
  const int ranges = pool ? pool->size() : 1;
  run_tasks(pool, ranges, [&](int r) {
    const std::size_t chunk = (n + ranges - 1) / ranges;
    const std::size_t lo = std::min(n, chunk * r), hi = std::min(n, chunk * (r + 1));
    if (hi <= lo) return;
    const auto len = static_cast<Eigen::Index>(hi - lo);
    Eigen::Map<Eigen::VectorXf> dst(grad + lo, len);
    for (const float* part : parts) dst += Eigen::Map<const Eigen::VectorXf>(part + lo, len);
  });
}

}  // namespace

void GradientEngine::list_unsummed(int S) {
  unsummed_count_ = 0;
  for (int s = 1; s < S; ++s) unsummed_[unsummed_count_++] = shards_[s]->grad.data();
}

StepStats GradientEngine::compute_mlp(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                      const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* g,
                                      ThreadPool* pool) {
  MlpWork& w = *mlp_;
  const int B = static_cast<int>(x.cols()), L = samples_, S = shards_for(B), d = model.latent();
  unsummed_count_ = 0;
  // Column slices side by side (one thread each, no barrier until the weight gradients) or, for a
  // lone slice, its products split by rows over the pool: the same bits either way.
  auto run_slice = [&](int s, ThreadPool* rows_pool) {
    const int lo = static_cast<int>(static_cast<long long>(B) * s / S);
    const int hi = static_cast<int>(static_cast<long long>(B) * (s + 1) / S);
    mlp_columns_step(model, w, x, eps, lo, hi - lo, B, L, beta, w.pack(s), rows_pool, w.slice_times[s]);
  };
  if (S > 1 && pool && pool->size() > 1)
    pool->run(S, [&](int s) { run_slice(s, nullptr); });
  else
    for (int s = 0; s < S; ++s) run_slice(s, pool);

  const auto t0 = std::chrono::steady_clock::now();
  mlp_weight_gradients(pool, model, w, x, B, L, g);
  const double weight_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const double recon_sum = mlp_reconstruction_sum(model, w, B, L, g);
  const double kl_sum = gaussian_kl_forward(w.head.topRows(d).leftCols(B), w.logvar.leftCols(B), w.kl_dim);
  for (int j = 0; j < d; ++j) kl_per_dim_[j] = w.kl_dim[j] / B;
  StepStats st = step_stats(recon_sum, kl_sum, B, beta, kl_per_dim_);
  st.times = w.slice_times[0];
  st.times[StepPhase::WeightGradients] = weight_seconds;
  return st;
}

StepStats GradientEngine::compute(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                  const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                  ThreadPool* pool) {
  return compute_step(model, x, eps, beta, grad, pool, ShardSum::Summed);
}

StepStats GradientEngine::compute_unsummed(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                           const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                           ThreadPool* pool) {
  return compute_step(model, x, eps, beta, grad, pool, ShardSum::LeftToCaller);
}

StepStats GradientEngine::compute_step(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                       const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                       ThreadPool* pool, ShardSum shard_sum) {
  const FlushDenormals flush;  // see core/denormals.hpp; the pool's workers follow
  if (mlp_) return compute_mlp(model, x, eps, beta, grad, pool);
  const int B = static_cast<int>(x.cols());
  const int S = std::min(static_cast<int>(shards_.size()), B);
  auto run_shard = [&](int s) {
    const int lo = static_cast<int>(static_cast<long long>(B) * s / S);
    const int hi = static_cast<int>(static_cast<long long>(B) * (s + 1) / S);
    float* g = s == 0 ? grad : shards_[s]->grad.data();
    shard_step(model, *shards_[s], x, eps, lo, hi - lo, B, samples_, beta, g);
  };
  if (pool && S > 1)
    pool->run(S, run_shard);
  else
    for (int s = 0; s < S; ++s) run_shard(s);

  list_unsummed(S);
  if (shard_sum == ShardSum::Summed) {
    sum_gradients(pool, grad, unsummed_gradients(), model.size());
    unsummed_count_ = 0;
  }

  std::fill(kl_per_dim_.begin(), kl_per_dim_.end(), 0.0);
  double recon_sum = 0, kl_sum = 0;
  for (int s = 0; s < S; ++s) {
    recon_sum += shards_[s]->recon_sum;
    kl_sum += shards_[s]->kl_sum;
    for (int j = 0; j < model.latent(); ++j) kl_per_dim_[j] += shards_[s]->kl_dim[j] / B;
  }
  return step_stats(recon_sum, kl_sum, B, beta, kl_per_dim_);
}

double loss_forward(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                    const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, int samples) {
  const int B = static_cast<int>(x.cols()), L = samples, d = model.latent();
  Eigen::MatrixXf mu, logvar, out;
  model.encode(x, mu, logvar);
  const Eigen::MatrixXf sigma = (0.5f * logvar.array()).exp();
  Eigen::MatrixXf z(d, static_cast<Eigen::Index>(B) * L), xr(x.rows(), z.cols());
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l) {
      z.col(b * L + l) = mu.col(b) + sigma.col(b).cwiseProduct(eps.col(b * L + l));
      xr.col(b * L + l) = x.col(b);
    }
  model.decode_raw(z, out);
  const Eigen::VectorXf logp = log_likelihood(model.config().likelihood, xr, out, model.decoder_logvar());
  const double recon = logp.cast<double>().sum() / (static_cast<double>(B) * L);
  const double kl = model.clusters() > 0
                        ? gmvae_prior_terms(model, mu, logvar, z, L).cast<double>().sum() / (static_cast<double>(B) * L)
                        : kl_elementwise(mu, logvar).cast<double>().sum() / B;
  return -recon + beta * kl;
}

}  // namespace vaelab
