// Parameter layout, initialisation and inference passes of the VAE, MLP or convolutional (see model.hpp).
#include "core/model.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/clustering.hpp"
#include "core/error.hpp"
#include "core/gemm.hpp"
#include "core/layers.hpp"
#include "core/rng.hpp"

namespace vaelab {

namespace {

// y = W·x + b, then max(·, 0) if relu, for the inference passes (encode, decode, classify).
// Batches go through core/gemm, the training step's kernel: IWAE decodes 1,000 columns an image
// and the evaluations thousands, where Eigen's product ran at about two thirds of the kernel's
// rate. A handful of columns (a slider's one image) stays with Eigen, since gemm would fill its
// 12-wide column panels with zeros. x is packed kInferColumns columns at a time, so that the
// packed block (602 KB for 784 rows) stays in L2 while all of W's rows pass over it.
constexpr int kInferMinColumns = 16;
constexpr int kInferColumns = 192;

void infer_dense(ConstMatRef W, ConstVecRef b, ConstMatRef x, Eigen::MatrixXf& y, bool relu) {
  const int m = static_cast<int>(W.rows()), k = static_cast<int>(W.cols()), n = static_cast<int>(x.cols());
  y.resize(m, n);
  if (n < kInferMinColumns) {
    dense_forward(W, b, x, y);
    if (relu) relu_forward(y);
    return;
  }
  thread_local std::vector<float> packed;  // Model is const and shared by the pool's threads
  packed.resize(gemm::packed_b_floats(k, std::min(n, kInferColumns)));
  gemm::Epilogue epi;
  epi.bias = b.data();
  epi.relu = relu;
  for (int c0 = 0; c0 < n; c0 += kInferColumns) {
    const int nc = std::min(kInferColumns, n - c0);
    gemm::multiply(gemm::Op::N, gemm::Op::N, m, nc, k, W.data(), W.outerStride(), x.data() + c0 * x.outerStride(),
                   x.outerStride(), y.data() + static_cast<std::ptrdiff_t>(c0) * m, m, false, packed.data(), epi);
  }
}

}  // namespace

Model::Model(ModelConfig cfg) : cfg_(std::move(cfg)) {
  std::size_t offset = 0;
  auto aligned = [](std::size_t o) { return (o + kParamAlign - 1) / kParamAlign * kParamAlign; };
  auto add = [&](std::vector<DenseShape>& list, int in, int out) {
    DenseShape l;
    l.in = in;
    l.out = out;
    l.w = aligned(offset);
    l.b = aligned(l.w + static_cast<std::size_t>(in) * out);
    offset = l.b + out;
    list.push_back(l);
  };
  auto add_conv = [&](std::vector<ConvLayerShape>& list, const ConvGeometry& g) {
    ConvLayerShape l;
    l.g = g;
    l.w = aligned(offset);
    l.b = aligned(l.w + static_cast<std::size_t>(g.weight_size()));
    offset = l.b + static_cast<std::size_t>(g.bias_size());
    list.push_back(l);
  };
  if (cfg_.family == ModelFamily::Conv) {
    // Buffer order: enc conv1, enc conv2, enc dense head, dec dense, dec convT 1, 2, 3.
    const ConvVaeGeometry v = conv_vae_geometries(cfg_.image_c, cfg_.image_h, cfg_.image_w, cfg_.latent);
    add_conv(conv_enc_, v.enc1);
    add_conv(conv_enc_, v.enc2);
    add(enc_, v.enc_dense_in, v.enc_dense_out);
    add(dec_, v.dec_dense_in, v.dec_dense_out);
    add_conv(conv_dec_, v.dec1);
    add_conv(conv_dec_, v.dec2);
    add_conv(conv_dec_, v.dec3);
  } else {
    int width = cfg_.input_dim();
    for (int h : cfg_.hidden) {
      add(enc_, width, h);
      width = h;
    }
    add(enc_, width, 2 * cfg_.latent);
    width = cfg_.latent;
    for (auto it = cfg_.hidden.rbegin(); it != cfg_.hidden.rend(); ++it) {
      add(dec_, width, *it);
      width = *it;
    }
    add(dec_, width, cfg_.input_dim());
  }
  if (cfg_.family == ModelFamily::Gmvae) {
    add(cls_, cfg_.latent, kClassifierHidden);
    add(cls_, kClassifierHidden, cfg_.clusters);
  }
  if (is_clustering(cfg_.family)) {
    cluster_mu_ = aligned(offset);
    cluster_lv_ = aligned(cluster_mu_ + static_cast<std::size_t>(cfg_.latent) * cfg_.clusters);
    offset = cluster_lv_ + static_cast<std::size_t>(cfg_.latent) * cfg_.clusters;
  }
  if (cfg_.likelihood == Likelihood::GaussianLearned) dec_logvar_ = offset++;
  params_.assign(offset, 0.0f);
}

void Model::init(std::uint64_t seed) {
  Rng rng(seed);
  auto init_layer = [&](const DenseShape& l) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(l.in));
    for (std::size_t i = 0; i < static_cast<std::size_t>(l.in) * l.out; ++i) params_[l.w + i] = (2.0f * rng.uniform() - 1.0f) * bound;
    for (int i = 0; i < l.out; ++i) params_[l.b + i] = (2.0f * rng.uniform() - 1.0f) * bound;
  };
  auto init_conv = [&](const ConvLayerShape& l) {
    // PyTorch's fan_in is weight dimension 1 × k × k: in_c for Conv2d, out_c for ConvTranspose2d.
    const int fan_in = (l.g.transposed ? l.g.out_c : l.g.in_c) * l.g.kernel * l.g.kernel;
    const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
    for (int i = 0; i < l.g.weight_size(); ++i) params_[l.w + static_cast<std::size_t>(i)] = (2.0f * rng.uniform() - 1.0f) * bound;
    for (int i = 0; i < l.g.bias_size(); ++i) params_[l.b + static_cast<std::size_t>(i)] = (2.0f * rng.uniform() - 1.0f) * bound;
  };
  if (cfg_.family == ModelFamily::Conv) {  // in buffer order
    for (const auto& l : conv_enc_) init_conv(l);
    for (const auto& l : enc_) init_layer(l);
    for (const auto& l : dec_) init_layer(l);
    for (const auto& l : conv_dec_) init_conv(l);
  } else {
    for (const auto& l : enc_) init_layer(l);
    for (const auto& l : dec_) init_layer(l);
  }
  for (const auto& l : cls_) init_layer(l);
  if (cluster_mu_ != npos) {
    // gmvae: cluster means spread like prior samples, unit variances, so the clusters start
    // distinct. vade: every cluster starts as N(0, I), so the mixture prior is the plain VAE's and
    // stays one Gaussian (identical clusters get identical gradients and move together, up to the
    // optimiser's rounding) until the trainer's cluster fit splits it (fit_clusters_to_codes).
    const std::size_t n = static_cast<std::size_t>(cfg_.latent) * cfg_.clusters;
    const bool spread = cfg_.family == ModelFamily::Gmvae;
    for (std::size_t i = 0; i < n; ++i) params_[cluster_mu_ + i] = spread ? rng.normal() : 0.0f;
    for (std::size_t i = 0; i < n; ++i) params_[cluster_lv_ + i] = 0.0f;
  }
  if (dec_logvar_ != npos) params_[dec_logvar_] = 0.0f;
}

float Model::decoder_logvar() const {
  switch (cfg_.likelihood) {
    case Likelihood::Bernoulli: return 0.0f;
    case Likelihood::GaussianFixed: return 2.0f * std::log(cfg_.gaussian_sigma);
    case Likelihood::GaussianLearned: return std::clamp(params_[dec_logvar_], kDecoderLogVarMin, kLogVarMax);
  }
  return 0.0f;
}

void Model::encode(const Eigen::Ref<const Eigen::MatrixXf>& x, Eigen::MatrixXf& mu, Eigen::MatrixXf& logvar) const {
  Eigen::MatrixXf h, next;
  if (is_conv()) {
    // x: (D, B) → conv1 (32·h1·w1, B) → conv2 (64·h2·w2, B), each followed by a ReLU.
    ConvWorkspace ws;
    h = x;
    for (const ConvLayerShape& l : conv_enc_) {
      next.resize(l.g.out_size(), h.cols());
      conv_forward(params_.data() + l.w, params_.data() + l.b, l.g, h, next, ws);
      relu_forward(next);
      h.swap(next);
    }
  }
  for (std::size_t i = 0; i < enc_.size(); ++i) {
    const bool from_x = i == 0 && !is_conv();
    infer_dense(W(enc_[i]), b(enc_[i]), from_x ? ConstMatRef(x) : ConstMatRef(h), next, i + 1 < enc_.size());
    h.swap(next);
  }
  mu = h.topRows(cfg_.latent);
  logvar = h.bottomRows(cfg_.latent).cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
}

void Model::decode_raw(const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& out) const {
  if (is_conv()) {
    // z: (d, B) → dense (32·h2·w2, B) → ReLU → convT1 (64·h1·w1, B) → ReLU → convT2 (32·H·W, B)
    // → ReLU → convT3 (D, B).
    ConvWorkspace ws;
    Eigen::MatrixXf h, next;
    infer_dense(W(dec_[0]), b(dec_[0]), z, h, true);
    for (std::size_t i = 0; i < conv_dec_.size(); ++i) {
      const ConvLayerShape& l = conv_dec_[i];
      Eigen::MatrixXf& y = i + 1 < conv_dec_.size() ? next : out;
      y.resize(l.g.out_size(), z.cols());
      conv_forward(params_.data() + l.w, params_.data() + l.b, l.g, h, y, ws);
      if (i + 1 < conv_dec_.size()) {
        relu_forward(y);
        h.swap(y);
      }
    }
    return;
  }
  Eigen::MatrixXf h, next;
  for (std::size_t i = 0; i < dec_.size(); ++i) {
    const bool last = i + 1 == dec_.size();
    infer_dense(W(dec_[i]), b(dec_[i]), i == 0 ? ConstMatRef(z) : ConstMatRef(h), last ? out : next, !last);
    if (!last) h.swap(next);
  }
}

void Model::decode_image(const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& image) const {
  decode_raw(z, image);
  if (cfg_.likelihood == Likelihood::Bernoulli)
    image = (1.0f + (-image.array()).exp()).inverse();
  else
    image = image.cwiseMax(0.0f).cwiseMin(1.0f);
}

void Model::classify(const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& probs) const {
  if (cfg_.family == ModelFamily::Vade) {
    mixture_logits(cluster_means(), cluster_logvars_clamped(), z, probs);
    softmax_columns(probs);
    return;
  }
  Eigen::MatrixXf h;
  infer_dense(W(cls_[0]), b(cls_[0]), z, h, true);
  infer_dense(W(cls_[1]), b(cls_[1]), h, probs, false);
  softmax_columns(probs);
}

bool Model::all_finite() const {
  // v·0 is 0 for finite v and NaN otherwise; Eigen's sum vectorises where std::isfinite per
  // element does not (the trainer asks at every snapshot).
  const Eigen::Map<const Eigen::ArrayXf> p(params_.data(), static_cast<Eigen::Index>(params_.size()));
  return (p * 0.0f).sum() == 0.0f;
}

void mixture_logits(const Eigen::Ref<const Eigen::MatrixXf>& means, const Eigen::Ref<const Eigen::MatrixXf>& logvars,
                    const Eigen::Ref<const Eigen::MatrixXf>& inv_vars, const Eigen::Ref<const Eigen::MatrixXf>& z,
                    Eigen::Ref<Eigen::MatrixXf> logits) {
  for (Eigen::Index y = 0; y < means.cols(); ++y)
    logits.row(y) = (-0.5f * ((z.colwise() - means.col(y)).array().square().colwise() * inv_vars.col(y).array())
                                 .colwise()
                                 .sum() -
                     0.5f * logvars.col(y).sum())
                        .matrix();
}

void mixture_logits(const Eigen::Ref<const Eigen::MatrixXf>& means, const Eigen::Ref<const Eigen::MatrixXf>& logvars,
                    const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& logits) {
  logits.resize(means.cols(), z.cols());
  const Eigen::MatrixXf inv_vars = (-logvars.array()).exp().matrix();
  mixture_logits(means, logvars, inv_vars, z, logits);
}

void fit_clusters_to_codes(Model& model, const Eigen::Ref<const Eigen::MatrixXf>& mu,
                           const Eigen::Ref<const Eigen::MatrixXf>& logvar, std::uint64_t seed) {
  const int K = model.clusters(), d = model.latent();
  if (K == 0) throw Error("fit_clusters_to_codes: the model is not a clustering VAE");
  if (mu.rows() != d || logvar.rows() != d || mu.cols() != logvar.cols() || mu.cols() < K)
    throw Error("fit_clusters_to_codes: codes are (" + std::to_string(mu.rows()) + ", " + std::to_string(mu.cols()) +
                ") and (" + std::to_string(logvar.rows()) + ", " + std::to_string(logvar.cols()) + "); need (" +
                std::to_string(d) + ", N ≥ " + std::to_string(K) + ") for both");
  // vade keeps its fit for good (its clusters are the data's clusters from then on): the best of
  // several k-means starts. gmvae's refit only unsticks its clusters: one start.
  const int restarts = model.config().family == ModelFamily::Vade ? kVadeKmeansRestarts : 1;
  const KMeansResult km = kmeans(mu, K, seed, 100, restarts);
  Eigen::Map<Eigen::MatrixXf> means(model.data() + model.cluster_mean_offset(), d, K);
  Eigen::Map<Eigen::MatrixXf> logvars(model.data() + model.cluster_logvar_offset(), d, K);
  // Accumulate in double: Σ μ, Σ μ², Σ σ² per cluster and dimension.
  Eigen::MatrixXd s1 = Eigen::MatrixXd::Zero(d, K), s2 = s1, sv = s1;
  Eigen::VectorXd n = Eigen::VectorXd::Zero(K);
  for (Eigen::Index i = 0; i < mu.cols(); ++i) {
    const int y = km.assignment[static_cast<std::size_t>(i)];
    const Eigen::VectorXd m = mu.col(i).cast<double>();
    s1.col(y) += m;
    s2.col(y) += m.cwiseAbs2();
    sv.col(y) += logvar.col(i).cast<double>().array().exp().matrix();
    n(y) += 1;
  }
  for (int y = 0; y < K; ++y) {
    const Eigen::VectorXd mean = s1.col(y) / n(y);  // k-means leaves no cluster empty
    const Eigen::VectorXd var = (s2.col(y) / n(y) - mean.cwiseAbs2()).cwiseMax(0.0) + sv.col(y) / n(y);
    means.col(y) = mean.cast<float>();
    logvars.col(y) = var.array().log().cwiseMax(kLogVarMin).cwiseMin(kLogVarMax).matrix().cast<float>();
  }
  if (model.config().family == ModelFamily::Vade) refine_mixture_by_em(means, logvars, mu, logvar, kMixtureEmSteps);
}

void refine_mixture_by_em(Eigen::Ref<Eigen::MatrixXf> means, Eigen::Ref<Eigen::MatrixXf> logvars,
                          const Eigen::Ref<const Eigen::MatrixXf>& mu, const Eigen::Ref<const Eigen::MatrixXf>& logvar,
                          int steps) {
  const Eigen::Index K = means.cols(), d = means.rows();
  const Eigen::MatrixXd q_var = logvar.array().exp().matrix().cast<double>();
  const Eigen::MatrixXd mu_d = mu.cast<double>(), mu_sq = mu_d.cwiseAbs2();
  // The EM state: each cluster's Gaussian over the codes' means, starting from the given one less
  // the q variance it includes (estimated from the start's responsibilities).
  Eigen::MatrixXf resp;
  mixture_logits(means, logvars.cwiseMax(kLogVarMin).cwiseMin(kLogVarMax), mu, resp);
  softmax_columns(resp);
  Eigen::MatrixXd weight = resp.cast<double>().rowwise().sum();
  Eigen::MatrixXd mean_q_var = q_var * resp.cast<double>().transpose();  // (d, K), divided below
  Eigen::MatrixXf gmm_logvars = logvars;
  for (Eigen::Index y = 0; y < K; ++y) {
    if (weight(y) <= 0) continue;
    mean_q_var.col(y) /= weight(y);
    const Eigen::ArrayXd v = logvars.col(y).cast<double>().array().exp() - mean_q_var.col(y).array();
    gmm_logvars.col(y) = v.max(1e-8).log().matrix().cast<float>();
  }
  for (int s = 0; s < steps; ++s) {
    // E step: p(y | μ_i) under the mixture of the means (equal weights).
    mixture_logits(means, gmm_logvars.cwiseMax(kLogVarMin).cwiseMin(kLogVarMax), mu, resp);
    softmax_columns(resp);
    // M step: each cluster's weighted mean and variance of the means, and its weighted mean q variance.
    const Eigen::MatrixXd r = resp.cast<double>().transpose();  // (N, K)
    weight = r.colwise().sum().transpose();
    const Eigen::MatrixXd s1 = mu_d * r, s2 = mu_sq * r, sq = q_var * r;
    for (Eigen::Index y = 0; y < K; ++y) {
      if (weight(y) < 1e-6 * static_cast<double>(mu.cols())) continue;  // a cluster that lost every code stays put
      const Eigen::VectorXd mean = s1.col(y) / weight(y);
      means.col(y) = mean.cast<float>();
      gmm_logvars.col(y) = (s2.col(y) / weight(y) - mean.cwiseAbs2()).cwiseMax(1e-8).array().log().matrix().cast<float>();
      mean_q_var.col(y) = sq.col(y) / weight(y);
    }
  }
  // The prior's clusters: the mixture of the means widened by the codes' own q variance, the
  // moments of the aggregate posterior restricted to each cluster.
  for (Eigen::Index y = 0; y < K; ++y)
    for (Eigen::Index j = 0; j < d; ++j)
      logvars(j, y) = std::clamp(static_cast<float>(std::log(std::exp(static_cast<double>(gmm_logvars(j, y))) + mean_q_var(j, y))),
                                 kLogVarMin, kLogVarMax);
}

}  // namespace vaelab
