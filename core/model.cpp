// Parameter layout, initialisation and inference passes of the MLP VAE (see model.hpp).
#include "core/model.hpp"

#include <algorithm>
#include <cmath>

#include "core/layers.hpp"
#include "core/rng.hpp"

namespace vaelab {

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
  if (cfg_.family == ModelFamily::Gmvae) {
    add(cls_, cfg_.latent, kClassifierHidden);
    add(cls_, kClassifierHidden, cfg_.clusters);
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
  for (const auto& l : enc_) init_layer(l);
  for (const auto& l : dec_) init_layer(l);
  for (const auto& l : cls_) init_layer(l);
  if (cluster_mu_ != npos) {
    // Cluster means spread like prior samples, unit variances: the clusters start distinct.
    const std::size_t n = static_cast<std::size_t>(cfg_.latent) * cfg_.clusters;
    for (std::size_t i = 0; i < n; ++i) params_[cluster_mu_ + i] = rng.normal();
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
  Eigen::MatrixXf h = x, next;
  for (std::size_t i = 0; i < enc_.size(); ++i) {
    next.resize(enc_[i].out, h.cols());
    dense_forward(W(enc_[i]), b(enc_[i]), h, next);
    if (i + 1 < enc_.size()) relu_forward(next);
    h.swap(next);
  }
  mu = h.topRows(cfg_.latent);
  logvar = h.bottomRows(cfg_.latent).cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);
}

void Model::decode_raw(const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& out) const {
  Eigen::MatrixXf h = z;
  for (std::size_t i = 0; i < dec_.size(); ++i) {
    out.resize(dec_[i].out, h.cols());
    dense_forward(W(dec_[i]), b(dec_[i]), h, out);
    if (i + 1 < dec_.size()) {
      relu_forward(out);
      h.swap(out);
    }
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
  Eigen::MatrixXf h(kClassifierHidden, z.cols());
  dense_forward(W(cls_[0]), b(cls_[0]), z, h);
  relu_forward(h);
  probs.resize(cfg_.clusters, z.cols());
  dense_forward(W(cls_[1]), b(cls_[1]), h, probs);
  softmax_columns(probs);
}

bool Model::all_finite() const {
  return std::all_of(params_.begin(), params_.end(), [](float v) { return std::isfinite(v); });
}

}  // namespace vaelab
