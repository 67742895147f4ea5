// Finite-difference check of the whole ELBO backward (GradientEngine::compute against central
// differences of loss_forward), shared by the gradient tests of every model family. Test-only.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
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

// Checks parameters 0, stride, 2·stride, … (stride 1: every one) of a model initialised with seed 3
// on B uniform-random images, L samples, over `threads` shards. Every checked parameter must agree,
// except that up to max_bad_fraction of them may disagree: with thousands of ReLU units (the
// convolutional VAE) a ±h step crosses some unit's kink, where a central difference is not the
// derivative. A parameter that disagrees at step h is retried at h/4 first, and then the gradient is
// also checked along random directions of the whole parameter vector, where kinks average out.
inline void check_elbo_gradient(ModelConfig cfg, int B, int L, float beta, int threads, std::size_t stride = 1,
                                double max_bad_fraction = 0.0) {
  CAPTURE(static_cast<int>(cfg.likelihood));
  CAPTURE(L);
  CAPTURE(threads);
  Model model(cfg);
  model.init(3);
  if (model.decoder_logvar_offset() != Model::npos) model.params()[model.decoder_logvar_offset()] = -1.0f;
  Rng rng(11);
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
  // rounding: tolerance 2e-3 absolute + 2 % relative.
  auto central = [&](std::size_t i, float h) {
    float& p = model.params()[i];
    const float keep = p;
    p = keep + h;
    const double up = loss_forward(model, x, eps, beta, L);
    p = keep - h;
    const double down = loss_forward(model, x, eps, beta, L);
    p = keep;
    return (up - down) / (2.0 * h);
  };
  std::vector<float> got;
  std::vector<double> fd;
  const float h = 2e-3f;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < model.size(); i += stride) {
    double v = central(i, h);
    if (max_bad_fraction > 0 && std::abs(grad[i] - v) > 2e-3 + 2e-2 * std::abs(v)) {
      v = central(i, h / 4);
      if (std::abs(grad[i] - v) > 8e-3 + 2e-2 * std::abs(v)) ++bad;
      continue;
    }
    fd.push_back(v);
    got.push_back(grad[i]);
  }
  CHECK(worst_ratio(got.data(), fd.data(), got.size(), 2e-3, 2e-2) <= 1.0);
  const std::size_t checked = (model.size() + stride - 1) / stride;
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
