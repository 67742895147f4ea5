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
// has a short tile and two threads share a layer evenly. Chunks are cheap now that the shared
// operand is packed once per product, not once per chunk.
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
  // Clustering VAE only: classifier activations (hidden, C), p(y|z) then d loss/d logits (K, C),
  // classifier hidden gradient, its contribution to dz (d, C), per-example responsibilities
  // (K, Bs), and per-example scratch for the cluster KLs (d, K), their sums over dimensions, the
  // clamped log p(y|z) + log K, the gradient by p(y|z) (K each), and per-dimension terms (d each).
  Eigen::MatrixXf cls_h, cls_p, cls_dh, dz_cls, resp, cdim, cl_lv, cl_inv;
  Eigen::ArrayXf cl_sum, cl_logkp, cl_gp, cl_var, cl_diff;
  Eigen::VectorXf cl_kd;
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
    if (cfg.family == ModelFamily::Gmvae) {
      const int K = cfg.clusters;
      sh->cls_h.resize(kClassifierHidden, C);
      sh->cls_dh.resize(kClassifierHidden, C);
      sh->cls_p.resize(K, C);
      sh->dz_cls.resize(d, C);
      sh->resp.resize(K, Bs);
      sh->cdim.resize(d, K);
      sh->cl_lv.resize(d, K);
      sh->cl_inv.resize(d, K);
      for (Eigen::ArrayXf* a : {&sh->cl_sum, &sh->cl_logkp, &sh->cl_gp}) a->resize(K);
      for (Eigen::ArrayXf* a : {&sh->cl_var, &sh->cl_diff}) a->resize(d);
      sh->cl_kd.resize(d);
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

// Clustering VAE prior terms for one shard: the loss part
//   Σ_y p(y|z) KL(q(z|x) ‖ N(μ_y, σ_y²)) + KL(p(y|z) ‖ uniform),
// its gradients for the classifier (added into sh.dz through z), for the cluster Gaussians, and
// the prior part of d loss / d(μ, log σ²) written into sh.dhead. kl_scale = β / B, col_scale =
// β / (B·L) weighs one sampled column. Also fills sh.kl_sum and sh.kl_dim.
template <class Mu, class Lv, class Z>
void gmvae_prior_step(const Model& model, GradientEngine::Shard& sh, const Mu& mu, const Lv& logvar, const Z& z,
                      int Bs, int L, float kl_scale, float col_scale, float* g) {
  const int d = model.latent(), K = model.clusters(), C = Bs * L;
  const auto& cls = model.classifier();
  auto ch = sh.cls_h.leftCols(C);
  auto cp = sh.cls_p.leftCols(C);
  dense_forward(model.W(cls[0]), model.b(cls[0]), z, ch);
  relu_forward(ch);
  dense_forward(model.W(cls[1]), model.b(cls[1]), ch, cp);
  softmax_columns(cp);

  const std::size_t mo = model.cluster_mean_offset(), lo = model.cluster_logvar_offset();
  const Eigen::Map<const Eigen::MatrixXf> cm(model.data() + mo, d, K), cl_raw(model.data() + lo, d, K);
  sh.cl_lv = cl_raw.cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
  sh.cl_inv = (-sh.cl_lv.array()).exp();
  auto resp = sh.resp.leftCols(Bs);
  resp.setZero();
  std::fill(sh.kl_dim.begin(), sh.kl_dim.end(), 0.0);
  sh.kl_sum = 0;
  const float log_k = std::log(static_cast<float>(K));
  for (int b = 0; b < Bs; ++b) {
    // cdim(j, y): KL of dimension j between q(z|x_b) and cluster y.
    sh.cl_var = logvar.col(b).array().exp();  // σ², here rather than in the broadcast (a temporary)
    sh.cdim = 0.5f * ((sh.cl_lv.array().colwise() - logvar.col(b).array()) +
                      ((cm.colwise() - mu.col(b)).array().square().colwise() + sh.cl_var) *
                          sh.cl_inv.array() -
                      1.0f);
    Eigen::ArrayXf& Cy = sh.cl_sum;
    Cy = sh.cdim.colwise().sum().transpose();
    for (int l = 0; l < L; ++l) {
      auto p = cp.col(b * L + l);
      Eigen::ArrayXf& logKp = sh.cl_logkp;
      logKp = p.array().max(1e-30f).log() + log_k;
      sh.kl_sum += ((p.array() * (Cy + logKp)).sum()) / L;
      sh.cl_kd.noalias() = sh.cdim * p;
      for (int j = 0; j < d; ++j) sh.kl_dim[j] += sh.cl_kd(j) / L;
      resp.col(b) += p / static_cast<float>(L);
      // d/dp_y = col_scale (C_y + log K p_y + 1); softmax backward turns it into d/dlogits.
      Eigen::ArrayXf& gp = sh.cl_gp;
      gp = col_scale * (Cy + logKp + 1.0f);
      const float mean = (p.array() * gp).sum();
      p = (p.array() * (gp - mean)).matrix();
    }
  }
  auto gW = [&](const DenseShape& l) { return Eigen::Map<Eigen::MatrixXf>(g + l.w, l.out, l.in); };
  auto gb = [&](const DenseShape& l) { return Eigen::Map<Eigen::VectorXf>(g + l.b, l.out); };
  MatRef dh(sh.cls_dh.leftCols(C));
  dense_backward(model.W(cls[1]), ch, cp, gW(cls[1]), gb(cls[1]), &dh);
  relu_backward(ch, dh);
  MatRef dzc(sh.dz_cls.leftCols(C));
  dense_backward(model.W(cls[0]), z, dh, gW(cls[0]), gb(cls[0]), &dzc);
  sh.dz.leftCols(C) += dzc;

  // Responsibility-weighted Gaussian KL gradients for (μ, log σ²) and the cluster parameters.
  Eigen::Map<Eigen::MatrixXf> gm(g + mo, d, K), gs(g + lo, d, K);
  gm.setZero();
  gs.setZero();
  auto dhead = sh.dhead.leftCols(Bs);
  for (int b = 0; b < Bs; ++b) {
    auto dmu = dhead.col(b).head(d);
    auto dlv = dhead.col(b).tail(d);
    dmu.setZero();
    dlv.setZero();
    Eigen::ArrayXf& var = sh.cl_var;
    var = logvar.col(b).array().exp();
    for (int y = 0; y < K; ++y) {
      const float w = kl_scale * resp(y, b);
      Eigen::ArrayXf& diff = sh.cl_diff;
      diff = mu.col(b).array() - cm.col(y).array();
      const auto inv = sh.cl_inv.col(y).array();
      dmu.array() += w * diff * inv;
      dlv.array() += (0.5f * w) * (var * inv - 1.0f);
      gm.col(y).array() -= w * diff * inv;
      gs.col(y).array() += (0.5f * w) * (1.0f - (var + diff.square()) * inv);
    }
  }
  // No gradient where the cluster log variance is clamped.
  gs = (cl_raw.array() < kLogVarMin || cl_raw.array() > kLogVarMax).select(0.0f, gs);
}

// ---- Convolutional encoder and decoder (ModelFamily::Conv), see Model::conv_encoder/decoder ----

// x: (D, Bs) → enc_h[0] (32·h1·w1, Bs) → enc_h[1] (64·h2·w2, Bs) → head (2d, Bs).
// Through the reparameterisation z = μ + σ ⊙ ε, added into dhead (2d, B): d/dμ += Σ_l dz and
// d/dlog σ² += Σ_l dz ⊙ ε ⊙ σ/2, zero where the raw log σ² (head's bottom rows) was clamped.
// dz, eps: (d, B·L); sigma: (d, B). Shared by the sharded step and the row-chunked MLP step.
template <class DZ, class Eps, class Sigma, class Head>
void reparam_backward(Block& dhead, const DZ& dz, const Eps& eps, const Sigma& sigma, const Head& head, int d, int B,
                      int L) {
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

// dhead (2d, Bs) → gradients of the dense head and both convolutions (no gradient for x).
void conv_encoder_backward(const Model& model, GradientEngine::Shard& sh, ConstMatRef x, ConstMatRef dhead, int Bs,
                           float* g) {
  const float* p = model.data();
  const auto& ce = model.conv_encoder();
  const DenseShape& fc = model.encoder()[0];
  const std::size_t n = ce.size();
  {
    MatRef dx(sh.enc_dh[n - 1].leftCols(Bs));
    dense_backward(model.W(fc), sh.enc_h[n - 1].leftCols(Bs), dhead, Eigen::Map<Eigen::MatrixXf>(g + fc.w, fc.out, fc.in),
                   Eigen::Map<Eigen::VectorXf>(g + fc.b, fc.out), &dx);
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

// dout (D, C) → gradients of the three transposed convolutions and the dense layer; dz (d, C) assigned.
void conv_decoder_backward(const Model& model, GradientEngine::Shard& sh, ConstMatRef z, ConstMatRef dout, int C,
                           float* g) {
  const float* p = model.data();
  const auto& cd = model.conv_decoder();
  const DenseShape& fc = model.decoder()[0];
  for (std::size_t i = cd.size(); i-- > 0;) {
    const ConvLayerShape& l = cd[i];
    // Layer i reads dec_h[i] and writes dec_h[i + 1] (or out); its dy is dec_dh[i + 1] (or dout).
    Eigen::Ref<const Eigen::MatrixXf> dy = i + 1 == cd.size() ? dout : Eigen::Ref<const Eigen::MatrixXf>(sh.dec_dh[i + 1].leftCols(C));
    MatRef dx(sh.dec_dh[i].leftCols(C));
    conv_backward(p + l.w, l.g, sh.dec_h[i].leftCols(C), dy, g + l.w, g + l.b, &dx, sh.conv_ws);
    relu_backward(sh.dec_h[i].leftCols(C), dx);
  }
  MatRef dz(sh.dz.leftCols(C));
  dense_backward(model.W(fc), z, sh.dec_dh[0].leftCols(C), Eigen::Map<Eigen::MatrixXf>(g + fc.w, fc.out, fc.in),
                 Eigen::Map<Eigen::VectorXf>(g + fc.b, fc.out), &dz);
}

// Forward and backward for columns [lo, lo + Bs) of the batch; writes the full gradient into g.
void shard_step(const Model& model, GradientEngine::Shard& sh, const Eigen::Ref<const Eigen::MatrixXf>& x_all,
                const Eigen::Ref<const Eigen::MatrixXf>& eps_all, int lo, int Bs, int B_total, int L, float beta,
                float* g) {
  const ModelConfig& cfg = model.config();
  const int d = cfg.latent, D = cfg.input_dim(), C = Bs * L;
  const auto& enc = model.encoder();
  const auto& dec = model.decoder();
  auto gW = [&](const DenseShape& l) { return Eigen::Map<Eigen::MatrixXf>(g + l.w, l.out, l.in); };
  auto gb = [&](const DenseShape& l) { return Eigen::Map<Eigen::VectorXf>(g + l.b, l.out); };

  const auto x = x_all.middleCols(lo, Bs);                             // (D, Bs)
  const auto eps = eps_all.middleCols(static_cast<Eigen::Index>(lo) * L, C);  // (d, C)

  // ---- encoder: x → h_1 … h_k → head = [μ; log σ²] ----
  const std::size_t ne = enc.size();
  const bool conv = model.is_conv();
  Block head = sh.head.leftCols(Bs);
  if (conv) {
    conv_encoder_forward(model, sh, x, Bs, head);
  } else {
    for (std::size_t i = 0; i + 1 < ne; ++i) {
      Block h = sh.enc_h[i].leftCols(Bs);
      if (i == 0)
        dense_forward(model.W(enc[0]), model.b(enc[0]), x, h);
      else
        dense_forward(model.W(enc[i]), model.b(enc[i]), sh.enc_h[i - 1].leftCols(Bs), h);
      relu_forward(h);
    }
    dense_forward(model.W(enc[ne - 1]), model.b(enc[ne - 1]), sh.enc_h[ne - 2].leftCols(Bs), head);
  }
  const auto mu = head.topRows(d);
  Block logvar = sh.logvar.leftCols(Bs), sigma = sh.sigma.leftCols(Bs);
  logvar = head.bottomRows(d).cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
  sigma = (0.5f * logvar.array()).exp();

  // ---- reparameterise: z_bl = μ_b + σ_b ⊙ ε_bl ----
  Block z = sh.z.leftCols(C);
  for (int b = 0; b < Bs; ++b)
    for (int l = 0; l < L; ++l)
      z.col(b * L + l) = mu.col(b) + sigma.col(b).cwiseProduct(eps.col(b * L + l));

  // ---- decoder: z → g_1 … → out ----
  const std::size_t nd = dec.size();
  Block out = sh.out.leftCols(C);
  if (conv) {
    conv_decoder_forward(model, sh, z, C, out);
  } else {
    for (std::size_t i = 0; i + 1 < nd; ++i) {
      Block h = sh.dec_h[i].leftCols(C);
      if (i == 0)
        dense_forward(model.W(dec[0]), model.b(dec[0]), z, h);
      else
        dense_forward(model.W(dec[i]), model.b(dec[i]), sh.dec_h[i - 1].leftCols(C), h);
      relu_forward(h);
    }
    dense_forward(model.W(dec[nd - 1]), model.b(dec[nd - 1]), sh.dec_h[nd - 2].leftCols(C), out);
  }

  // ---- reconstruction term and d loss / d out (in place) ----
  if (L > 1)
    for (int b = 0; b < Bs; ++b)
      for (int l = 0; l < L; ++l) sh.x_rep.col(b * L + l) = x.col(b);
  // Column c of the decoder output is compared with its example: x itself when L = 1.
  const Eigen::Ref<const Eigen::MatrixXf> target = L > 1 ? Eigen::Ref<const Eigen::MatrixXf>(sh.x_rep.leftCols(C))
                                                         : Eigen::Ref<const Eigen::MatrixXf>(x);
  const float scale = 1.0f / (static_cast<float>(B_total) * L);  // mean over batch and samples
  Block tmp = sh.tmp.leftCols(C);
  auto logp = sh.col_logp.head(C);
  if (cfg.likelihood == Likelihood::Bernoulli) {
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
    if (model.decoder_logvar_offset() != Model::npos) {
      const float raw = model.params()[model.decoder_logvar_offset()];
      const bool clamped = raw < kDecoderLogVarMin || raw > kLogVarMax;
      // d(−log p)/d lv = ½ Σ (1 − (x − m)² e^{−lv})
      g[model.decoder_logvar_offset()] =
          clamped ? 0.0f : scale * 0.5f * (static_cast<float>(D) * C - inv_var * sq.sum());
    }
    out = tmp * (inv_var * scale);
  }
  sh.recon_sum = logp.cast<double>().sum() / L;

  // ---- decoder backward ----
  if (conv) conv_decoder_backward(model, sh, z, out, C, g);
  for (std::size_t i = conv ? 0 : nd; i-- > 0;) {
    const DenseShape& l = dec[i];
    Eigen::Ref<const Eigen::MatrixXf> dy = (i + 1 == nd) ? Eigen::Ref<const Eigen::MatrixXf>(out)
                                                         : Eigen::Ref<const Eigen::MatrixXf>(sh.dec_dh[i].leftCols(C));
    Eigen::Ref<const Eigen::MatrixXf> in = (i == 0) ? Eigen::Ref<const Eigen::MatrixXf>(z)
                                                    : Eigen::Ref<const Eigen::MatrixXf>(sh.dec_h[i - 1].leftCols(C));
    Block dxb = (i == 0) ? sh.dz.leftCols(C) : sh.dec_dh[i - 1].leftCols(C);
    MatRef dx(dxb);
    dense_backward(model.W(l), in, dy, gW(l), gb(l), &dx);
    if (i > 0) relu_backward(sh.dec_h[i - 1].leftCols(C), dx);
  }

  // ---- the prior's part of d loss / d(μ, log σ²), into dhead ----
  Block dhead = sh.dhead.leftCols(Bs);
  const float kl_scale = beta / static_cast<float>(B_total);
  const bool gmvae = model.clusters() > 0;
  if (gmvae) {
    gmvae_prior_step(model, sh, mu, logvar, z, Bs, L, kl_scale, scale * beta, g);
  } else {
    // β KL(q ‖ N(0, I)):  d/dμ = β μ / B,  d/dlog σ² = β (σ² − 1) / (2B)
    dhead.topRows(d) = kl_scale * mu;
    dhead.bottomRows(d) = (0.5f * kl_scale) * (sigma.array().square() - 1.0f).matrix();
  }

  // ---- through the reparameterisation: d/dμ += Σ_l dz;  d/dlog σ² += Σ_l dz ⊙ ε ⊙ σ/2 ----
  reparam_backward(dhead, sh.dz, eps, sigma, head, d, Bs, L);
  if (!gmvae) {
    std::fill(sh.kl_dim.begin(), sh.kl_dim.end(), 0.0);
    for (int b = 0; b < Bs; ++b)
      for (int j = 0; j < d; ++j) {
        const float m = mu(j, b), v = logvar(j, b);
        sh.kl_dim[j] += 0.5 * (static_cast<double>(m) * m + std::exp(static_cast<double>(v)) - v - 1.0);
      }
    sh.kl_sum = 0;
    for (double v : sh.kl_dim) sh.kl_sum += v;
  }

  // ---- encoder backward (no gradient for the input) ----
  if (conv) conv_encoder_backward(model, sh, x, dhead, Bs, g);
  for (std::size_t i = conv ? 0 : ne; i-- > 0;) {
    const DenseShape& l = enc[i];
    Eigen::Ref<const Eigen::MatrixXf> dy = (i + 1 == ne) ? Eigen::Ref<const Eigen::MatrixXf>(dhead)
                                                         : Eigen::Ref<const Eigen::MatrixXf>(sh.enc_dh[i].leftCols(Bs));
    Eigen::Ref<const Eigen::MatrixXf> in = (i == 0) ? Eigen::Ref<const Eigen::MatrixXf>(x)
                                                    : Eigen::Ref<const Eigen::MatrixXf>(sh.enc_h[i - 1].leftCols(Bs));
    if (i == 0) {
      dense_backward(model.W(l), in, dy, gW(l), gb(l), nullptr);
    } else {
      MatRef dx(sh.enc_dh[i - 1].leftCols(Bs));
      dense_backward(model.W(l), in, dy, gW(l), gb(l), &dx);
      relu_backward(sh.enc_h[i - 1].leftCols(Bs), dx);
    }
  }
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

void dense_forward_parallel(ThreadPool* pool, const Model& m, const DenseShape& l, ConstMatRef in, MatRef y, bool relu,
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

// dx = Wᵀ dy for layer l (W: (out, in), dy (out, C)) by chunks of dx's rows; where the layer's
// input in_l is a ReLU output (relu_in), dx is zeroed where the unit was off (on the tile, by the
// GEMM's mask). dy is packed first into pack. Its dW waits for the weight-gradient phase.
void dx_parallel(ThreadPool* pool, const Model& m, const DenseShape& l, ConstMatRef in_l, ConstMatRef dy, MatRef dx,
                 bool relu_in, float* pack) {
  const int C = static_cast<int>(dy.cols());
  const PackJob job{gemm::Op::N, dy.data(), dy.outerStride(), l.out, C, pack};
  pack_shared(pool, &job, 1);
  const RowChunks cx(l.in);
  run_tasks(pool, cx.count, [&](int t) {
    const int lo = cx.lo(t), n = cx.len(t);
    gemm::Epilogue e;
    if (relu_in) {
      e.mask = in_l.data() + lo;
      e.ldmask = in_l.outerStride();
    }
    // Row i of Wᵀ is column i of W: op(A) = Wᵀ with A = W stored (out, in), leading dimension out.
    gemm::multiply_packed(gemm::Op::T, m.data() + l.w + static_cast<std::size_t>(lo) * l.out, l.out, n, C, l.out,
                          pack, dx.data() + lo, dx.outerStride(), false, e);
  });
}

// Everything of the plain MLP step that runs column by column (forward, loss, d loss / d out,
// every dx, the prior terms), for examples [b0, b0 + nb) of a batch of B_total examples: their
// columns of the workspace and of w.part. With a pool, every product is split into row chunks
// claimed by the pool's threads; without one, all runs on the calling thread. Phases into times.
void mlp_columns_step(const Model& model, GradientEngine::MlpWork& w, const Eigen::Ref<const Eigen::MatrixXf>& x_all,
                      const Eigen::Ref<const Eigen::MatrixXf>& eps_all, int b0, int nb, int B_total, int L, float beta,
                      float* pack, ThreadPool* pool, StepTimes& times) {
  const ModelConfig& cfg = model.config();
  const int c0 = b0 * L, C = nb * L, d = cfg.latent, D = cfg.input_dim();
  const auto& enc = model.encoder();
  const auto& dec = model.decoder();
  const std::size_t ne = enc.size(), nd = dec.size();
  const auto x = x_all.middleCols(b0, nb);
  const auto eps = eps_all.middleCols(c0, C);
  auto ex = [&](Eigen::MatrixXf& m) { return m.middleCols(b0, nb); };  // this slice's examples
  auto col = [&](Eigen::MatrixXf& m) { return m.middleCols(c0, C); };  // its decoder columns
  times = {};
  PhaseClock clock(times);

  // ---- encoder: x (D, B) → h_1 … h_k (h_i, B) → head (2d, B) ----
  for (std::size_t i = 0; i + 1 < ne; ++i) {
    MatRef h(ex(w.enc_h[i]));
    if (i == 0)
      dense_forward_parallel(pool, model, enc[0], x, h, true, pack);
    else
      dense_forward_parallel(pool, model, enc[i], ex(w.enc_h[i - 1]), h, true, pack);
  }
  Block head = ex(w.head);
  {
    MatRef hr(head);
    dense_forward_parallel(pool, model, enc[ne - 1], ex(w.enc_h[ne - 2]), hr, false, pack);
  }
  const auto mu = head.topRows(d);
  Block logvar = ex(w.logvar), sigma = ex(w.sigma);
  logvar = head.bottomRows(d).cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
  // Column by column: over a whole contiguous block Eigen would take some elements' exp from its
  // vector form and others' from std::exp depending on where the block starts, and σ would
  // change with the column slices.
  for (int b = 0; b < nb; ++b) sigma.col(b) = (0.5f * logvar.col(b).array()).exp();

  clock.mark(StepPhase::EncoderForward);

  // ---- reparameterise: z_bl = μ_b + σ_b ⊙ ε_bl (d × C, too small to split) ----
  Block z = col(w.z);
  for (int b = 0; b < nb; ++b)
    for (int l = 0; l < L; ++l) z.col(b * L + l) = mu.col(b) + sigma.col(b).cwiseProduct(eps.col(b * L + l));

  // ---- decoder hidden layers: z → g_1 … (w_i, C) ----
  for (std::size_t i = 0; i + 1 < nd; ++i) {
    MatRef h(col(w.dec_h[i]));
    if (i == 0)
      dense_forward_parallel(pool, model, dec[0], z, h, true, pack);
    else
      dense_forward_parallel(pool, model, dec[i], col(w.dec_h[i - 1]), h, true, pack);
  }

  clock.mark(StepPhase::DecoderForward);

  // ---- output layer, its loss and d loss / d out, by row chunks ----
  const DenseShape& lo_l = dec[nd - 1];
  const float scale = 1.0f / (static_cast<float>(B_total) * L);  // mean over batch and samples
  const bool bernoulli = cfg.likelihood == Likelihood::Bernoulli;
  const float lv = bernoulli ? 0.0f : model.decoder_logvar(), inv_var = std::exp(-lv);
  const RowChunks co(D);
  Block out = col(w.out);
  {
    const auto h_last = col(w.dec_h[nd - 2]);
    const PackJob hj{gemm::Op::N, h_last.data(), h_last.outerStride(), lo_l.in, C, pack};
    pack_shared(pool, &hj, 1);
  }
  run_tasks(pool, co.count, [&](int k) {
    const int r0 = co.lo(k), n = co.len(k);
    MatRef outr(out);
    dense_rows_forward(model, lo_l, pack, C, outr, r0, n, false);
    auto o = out.middleRows(r0, n);
    // Column c of the decoder output is compared with its example: x itself when L = 1.
    if (L > 1)
      for (int c = 0; c < C; ++c) w.x_rep.col(c0 + c).segment(r0, n) = x.col(c / L).segment(r0, n);
    const Eigen::Ref<const Eigen::MatrixXf> tg =
        L > 1 ? Eigen::Ref<const Eigen::MatrixXf>(col(w.x_rep).middleRows(r0, n))
              : Eigen::Ref<const Eigen::MatrixXf>(x.middleRows(r0, n));
    auto part = w.part.row(k).segment(c0, C);
    if (bernoulli) {
      bernoulli_rows(o.data(), o.outerStride(), tg.data(), tg.outerStride(), n, C, scale, part.data(),
                     w.part.outerStride());
    } else {
      auto t = col(w.tmp).middleRows(r0, n);
      t = o - tg;  // m − x
      part = t.array().square().colwise().sum();
      o = t * (inv_var * scale);
    }
  });

  clock.mark(StepPhase::OutputAndLoss);

  // ---- decoder backward: dx of every layer, down to dz ----
  for (std::size_t i = nd; i-- > 0;) {
    const Eigen::Ref<const Eigen::MatrixXf> dy = (i + 1 == nd) ? Eigen::Ref<const Eigen::MatrixXf>(out)
                                                                 : Eigen::Ref<const Eigen::MatrixXf>(col(w.dec_dh[i]));
    MatRef dx(i == 0 ? col(w.dz) : col(w.dec_dh[i - 1]));
    if (i == 0)
      dx_parallel(pool, model, dec[0], z, dy, dx, false, pack);
    else
      dx_parallel(pool, model, dec[i], col(w.dec_h[i - 1]), dy, dx, true, pack);
  }

  clock.mark(StepPhase::DecoderBackward);

  // ---- the prior's part of d loss / d(μ, log σ²) and the reparameterisation, into dhead ----
  Block dhead = ex(w.dhead);
  const float kl_scale = beta / static_cast<float>(B_total);
  // β KL(q ‖ N(0, I)):  d/dμ = β μ / B,  d/dlog σ² = β (σ² − 1) / (2B)
  dhead.topRows(d) = kl_scale * mu;
  dhead.bottomRows(d) = (0.5f * kl_scale) * (sigma.array().square() - 1.0f).matrix();
  // d/dμ += Σ_l dz;  d/dlog σ² += Σ_l dz ⊙ ε ⊙ σ/2, zero where log σ² is clamped
  reparam_backward(dhead, col(w.dz), eps, sigma, head, d, nb, L);

  clock.mark(StepPhase::PriorTerms);

  // ---- encoder backward: dx of every layer but the first (no gradient for the input) ----
  for (std::size_t i = ne; i-- > 1;) {
    const Eigen::Ref<const Eigen::MatrixXf> dy = (i + 1 == ne) ? Eigen::Ref<const Eigen::MatrixXf>(dhead)
                                                                 : Eigen::Ref<const Eigen::MatrixXf>(ex(w.enc_dh[i]));
    MatRef dx(ex(w.enc_dh[i - 1]));
    dx_parallel(pool, model, enc[i], ex(w.enc_h[i - 1]), dy, dx, true, pack);
  }

  clock.mark(StepPhase::EncoderBackward);
}

// Every layer's dW = dy inᵀ and db = Σ dy over the whole batch, after every column slice is done:
// first each layer's inᵀ packed once (gemm::pack_b, by panel ranges), then dW by row chunks of all
// layers, claimed by the pool's threads. Each element sums the batch's columns in order, in one
// product, so the gradient's bits depend neither on the threads nor on the column slices.
// (Packing inᵀ inside the column phase instead, each slice its own rows, measured no faster.)
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
    column_sum(lg.dy.middleRows(lo, rows), Eigen::Map<Eigen::VectorXf>(g + lg.l.b, lg.l.out).segment(lo, rows));
  });
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
  const ModelConfig& cfg = model.config();
  const int B = static_cast<int>(x.cols()), L = samples_, C = B * L, S = shards_for(B), d = cfg.latent;
  const int D = cfg.input_dim();
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

  StepStats st;
  st.times = w.slice_times[0];
  const auto t0 = std::chrono::steady_clock::now();
  mlp_weight_gradients(pool, model, w, x, B, L, g);
  st.times[StepPhase::WeightGradients] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // The reconstruction term from the per-chunk column sums, in chunk order, then column order.
  const RowChunks co(D);
  double recon_sum = 0;
  if (cfg.likelihood == Likelihood::Bernoulli) {
    for (int k = 0; k < co.count; ++k) recon_sum += w.part.row(k).head(C).cast<double>().sum();
  } else {
    const float lv = model.decoder_logvar(), inv_var = std::exp(-lv), scale = 1.0f / (static_cast<float>(B) * L);
    double sq_total = 0;
    for (int c = 0; c < C; ++c) {
      float sq = 0;
      for (int k = 0; k < co.count; ++k) sq += w.part(k, c);
      sq_total += sq;
      recon_sum += -0.5f * inv_var * sq - 0.5f * (lv + static_cast<float>(kLog2Pi)) * static_cast<float>(D);
    }
    if (model.decoder_logvar_offset() != Model::npos) {
      const float raw = model.params()[model.decoder_logvar_offset()];
      const bool clamped = raw < kDecoderLogVarMin || raw > kLogVarMax;
      // d(−log p)/d lv = ½ Σ (1 − (x − m)² e^{−lv})
      g[model.decoder_logvar_offset()] =
          clamped ? 0.0f : static_cast<float>(scale * 0.5 * (static_cast<double>(D) * C - inv_var * sq_total));
    }
  }
  recon_sum /= L;
  std::fill(w.kl_dim.begin(), w.kl_dim.end(), 0.0);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < d; ++j) {
      const float m = w.head(j, b), v = w.logvar(j, b);
      w.kl_dim[j] += 0.5 * (static_cast<double>(m) * m + std::exp(static_cast<double>(v)) - v - 1.0);
    }
  double kl_sum = 0;
  for (double v : w.kl_dim) kl_sum += v;

  for (int j = 0; j < d; ++j) kl_per_dim_[j] = w.kl_dim[j] / B;
  st.kl_per_dim = kl_per_dim_;
  st.recon = recon_sum / B;
  st.kl = kl_sum / B;
  st.elbo = st.recon - st.kl;
  st.loss = -st.recon + beta * st.kl;
  st.finite = std::isfinite(st.loss);
  return st;
}

StepStats GradientEngine::compute(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                  const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                  ThreadPool* pool) {
  return compute_any(model, x, eps, beta, grad, pool, true);
}

StepStats GradientEngine::compute_unsummed(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                           const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                           ThreadPool* pool) {
  return compute_any(model, x, eps, beta, grad, pool, false);
}

StepStats GradientEngine::compute_any(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                      const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                      ThreadPool* pool, bool sum) {
  const FlushDenormals flush;  // see core/denormals.hpp; the pool's workers follow
  if (mlp_) return compute_mlp(model, x, eps, beta, grad, pool);
  const int B = static_cast<int>(x.cols());
  const int S = std::min(static_cast<int>(shards_.size()), B);
  const std::size_t n = model.size();
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
  if (sum) {
    sum_gradients(pool, grad, unsummed_gradients(), n);
    unsummed_count_ = 0;
  }

  StepStats st;
  std::fill(kl_per_dim_.begin(), kl_per_dim_.end(), 0.0);
  double recon = 0, kl = 0;
  for (int s = 0; s < S; ++s) {
    recon += shards_[s]->recon_sum;
    kl += shards_[s]->kl_sum;
    for (int j = 0; j < model.latent(); ++j) kl_per_dim_[j] += shards_[s]->kl_dim[j] / B;
  }
  st.kl_per_dim = kl_per_dim_;
  st.recon = recon / B;
  st.kl = kl / B;
  st.elbo = st.recon - st.kl;
  st.loss = -st.recon + beta * st.kl;
  st.finite = std::isfinite(st.loss);
  return st;
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
