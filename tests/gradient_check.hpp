// Finite-difference check of the whole ELBO backward (GradientEngine::compute against central
// differences of loss_forward), shared by the gradient tests of every model family. Test-only.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"
#include "core/train_step.hpp"

namespace vaelab::test {

inline Eigen::MatrixXf random_matrix(int r, int c, Rng& rng, float scale = 1.0f) {
  Eigen::MatrixXf m(r, c);
  for (int j = 0; j < c; ++j)
    for (int i = 0; i < r; ++i) m(i, j) = scale * rng.normal();
  return m;
}

// Max over elements of |a − b| / (atol + rtol·|b|): ≤ 1 means every element agrees.
inline double worst_ratio(const float* a, const double* b, std::size_t n, double atol, double rtol) {
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (atol + rtol * std::abs(b[i])));
  return worst;
}

// Where each tensor lies in the parameter buffer: (offset, size) of every weight and bias, the
// cluster Gaussians and the decoder's log σ² (the padding between them is not a parameter).
struct ParamBlock {
  std::size_t offset;
  std::size_t size;
};
inline std::vector<ParamBlock> parameter_blocks(const Model& m) {
  std::vector<ParamBlock> blocks;
  auto dense = [&](const std::vector<DenseShape>& layers) {
    for (const DenseShape& l : layers) {
      blocks.push_back({l.w, static_cast<std::size_t>(l.out) * static_cast<std::size_t>(l.in)});
      blocks.push_back({l.b, static_cast<std::size_t>(l.out)});
    }
  };
  auto conv = [&](const std::vector<ConvLayerShape>& layers) {
    for (const ConvLayerShape& l : layers) {
      blocks.push_back({l.w, static_cast<std::size_t>(l.g.weight_size())});
      blocks.push_back({l.b, static_cast<std::size_t>(l.g.bias_size())});
    }
  };
  conv(m.conv_encoder());
  dense(m.encoder());
  dense(m.decoder());
  conv(m.conv_decoder());
  dense(m.classifier());
  const auto dk = static_cast<std::size_t>(m.latent()) * static_cast<std::size_t>(m.clusters());
  if (m.cluster_mean_offset() != Model::npos) blocks.push_back({m.cluster_mean_offset(), dk});
  if (m.cluster_logvar_offset() != Model::npos) blocks.push_back({m.cluster_logvar_offset(), dk});
  if (m.decoder_logvar_offset() != Model::npos) blocks.push_back({m.decoder_logvar_offset(), 1});
  return blocks;
}

// The entries of one tensor a check visits: 0, stride, 2·stride, …, and when that is more than
// per_tensor of them, per_tensor entries spread evenly over the tensor instead (so a big
// convolution costs no more than a small one).
inline std::vector<std::size_t> picked_in(const ParamBlock& b, std::size_t stride, std::size_t per_tensor) {
  const std::size_t by_stride = (b.size + stride - 1) / stride;
  const std::size_t n = std::min(by_stride, per_tensor);
  std::vector<std::size_t> picked(n);
  for (std::size_t k = 0; k < n; ++k) picked[k] = b.offset + (n == by_stride ? k * stride : k * b.size / n);
  return picked;
}

// Every tensor's picks, in the order of parameter_blocks: each tensor, bias or not, is visited.
inline std::vector<std::size_t> checked_parameters(const Model& m, std::size_t stride, std::size_t per_tensor) {
  std::vector<std::size_t> all;
  for (const ParamBlock& b : parameter_blocks(m)) {
    const std::vector<std::size_t> picked = picked_in(b, stride, per_tensor);
    all.insert(all.end(), picked.begin(), picked.end());
  }
  return all;
}

// Checks, tensor by tensor, the entries picked_in chooses (stride 1 and no cap: every one) of a
// model initialised with seed 3 on B uniform-random images, L samples, over `threads` shards.
// Every checked parameter must agree, except that up to max_bad_fraction of them may disagree
// (and never half of one tensor's): with thousands of ReLU units (the
// convolutional VAE) a ±h step crosses some unit's kink, where a central difference is not the
// derivative. A parameter that disagrees at step h is retried at h/4, centrally and on each side
// alone, and the gradient is also checked along random directions of the whole parameter vector,
// where kinks average out.
inline void check_elbo_gradient(ModelConfig cfg, int B, int L, float beta, int threads, std::size_t stride = 1,
                                double max_bad_fraction = 0.0, std::size_t per_tensor = SIZE_MAX) {
  CAPTURE(static_cast<int>(cfg.likelihood));
  CAPTURE(L);
  CAPTURE(threads);
  Model model(cfg);
  model.init(3);
  if (model.decoder_logvar_offset() != Model::npos) model.params()[model.decoder_logvar_offset()] = -1.0f;
  Rng rng(11);
  if (cfg.family == ModelFamily::Vade) {
    // vade starts with every cluster at N(0, I); check the split mixture its cluster fit makes.
    const auto dk = static_cast<std::size_t>(cfg.latent) * static_cast<std::size_t>(cfg.clusters);
    for (std::size_t i = 0; i < dk; ++i) model.params()[model.cluster_mean_offset() + i] = 0.8f * rng.normal();
    for (std::size_t i = 0; i < dk; ++i) model.params()[model.cluster_logvar_offset() + i] = 0.5f * rng.normal() - 0.3f;
  }
  Eigen::MatrixXf x(cfg.input_dim(), B);
  for (int j = 0; j < B; ++j)
    for (int i = 0; i < cfg.input_dim(); ++i) x(i, j) = rng.uniform();
  const Eigen::MatrixXf eps = random_matrix(cfg.latent, B * L, rng);

  ThreadPool pool(threads);
  GradientEngine engine(cfg, B, L, threads);
  std::vector<float> grad(model.size());
  const StepStats st = engine.compute(model, x, eps, beta, grad.data(), &pool);
  CHECK(st.finite);
  CHECK(st.loss == doctest::Approx(loss_forward(model, x, eps, beta, L)).epsilon(1e-5));

  // Central differences, in float with a step that balances the truncation error against
  // rounding: tolerance 2e-3 absolute + 2 % relative. Each difference divides by the step the float
  // parameter really took.
  auto loss_at = [&](std::size_t i, float value) {
    float& p = model.params()[i];
    const float keep = p;
    p = value;
    const double loss = loss_forward(model, x, eps, beta, L);
    p = keep;
    return loss;
  };
  auto central = [&](std::size_t i, float h) {
    const float p = model.params()[i], up = p + h, down = p - h;
    return (loss_at(i, up) - loss_at(i, down)) / (static_cast<double>(up) - static_cast<double>(down));
  };
  // One side only: (f(θ + s·h) − f(θ)) / (s·h), for s = ±1.
  const double at_theta = loss_forward(model, x, eps, beta, L);
  auto one_sided = [&](std::size_t i, float h, float side) {
    const float p = model.params()[i], moved = p + side * h;
    return (loss_at(i, moved) - at_theta) / (static_cast<double>(moved) - static_cast<double>(p));
  };
  auto agrees = [&](std::size_t i, double v, double atol) { return std::abs(grad[i] - v) <= atol + 2e-2 * std::abs(v); };
  std::vector<float> got;
  std::vector<double> fd;
  const float h = 2e-3f;
  std::size_t bad = 0, checked = 0;
  for (const ParamBlock& block : parameter_blocks(model)) {
    const std::vector<std::size_t> picked = picked_in(block, stride, per_tensor);
    std::size_t bad_here = 0;
    for (const std::size_t i : picked) {
      const double v = central(i, h);
      if (max_bad_fraction > 0 && !agrees(i, v, 2e-3)) {
        // A ReLU kink inside [θ − h, θ + h] spoils the central difference. Retry at h/4, then each
        // side alone at h/4: a single kink leaves one side smooth. Bad only if all three disagree.
        const float q = h / 4;
        if (!agrees(i, central(i, q), 8e-3) && !agrees(i, one_sided(i, q, 1.0f), 8e-3) &&
            !agrees(i, one_sided(i, q, -1.0f), 8e-3))
          ++bad_here;
        continue;
      }
      fd.push_back(v);
      got.push_back(grad[i]);
    }
    // Kinks are rare and scattered; a wrong gradient spoils most of its tensor, however small.
    CAPTURE(block.offset);
    CHECK(2 * bad_here <= picked.size());
    bad += bad_here;
    checked += picked.size();
  }
  CHECK(worst_ratio(got.data(), fd.data(), got.size(), 2e-3, 2e-2) <= 1.0);
  CAPTURE(bad);
  CAPTURE(checked);
  CHECK(static_cast<double>(bad) <= max_bad_fraction * static_cast<double>(checked));
  if (max_bad_fraction > 0) {
    // Directional derivatives along random unit directions u: (f(θ + t u) − f(θ − t u)) / 2t ≈ g·u.
    const ParamVector keep = model.params();
    for (int k = 0; k < 3; ++k) {
      Eigen::VectorXf u(static_cast<Eigen::Index>(model.size()));
      for (Eigen::Index i = 0; i < u.size(); ++i) u(i) = rng.normal();
      u.normalize();
      const double gu = Eigen::Map<const Eigen::VectorXf>(grad.data(), u.size()).cast<double>().dot(u.cast<double>());
      const float t = 1e-2f;
      Eigen::Map<Eigen::VectorXf> p(model.data(), u.size());
      p += t * u;
      const double up = loss_forward(model, x, eps, beta, L);
      model.params() = keep;
      p -= t * u;
      const double down = loss_forward(model, x, eps, beta, L);
      model.params() = keep;
      CHECK((up - down) / (2.0 * t) == doctest::Approx(gu).epsilon(2e-2).scale(0.1));
    }
  }
}

}  // namespace vaelab::test
