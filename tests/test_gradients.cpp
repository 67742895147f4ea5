// Finite-difference checks of every backward pass: the dense and ReLU layers, and the whole
// β-weighted negative ELBO with ε held fixed, for each likelihood and for L > 1 and several shards.
#include <doctest/doctest.h>

#include <cmath>

#include "core/layers.hpp"
#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"
#include "core/train_step.hpp"
#include "gradient_check.hpp"

using namespace vaelab;

using vaelab::test::random_matrix;
using vaelab::test::check_elbo_gradient;

TEST_CASE("gradients: dense layer backward matches finite differences") {
  Rng rng(7);
  const int in = 5, out = 4, B = 3;
  Eigen::MatrixXf W = random_matrix(out, in, rng), x = random_matrix(in, B, rng), R = random_matrix(out, B, rng);
  Eigen::VectorXf b = random_matrix(out, 1, rng);
  // f = Σ R ⊙ (W x + b), so dy = R.
  auto f = [&] {
    Eigen::MatrixXf y(out, B);
    dense_forward(W, b, x, y);
    return static_cast<double>((R.array() * y.array()).cast<double>().sum());
  };
  Eigen::MatrixXf dW(out, in), dx(in, B);
  Eigen::VectorXf db(out);
  MatRef dxr(dx);
  dense_backward(W, x, R, dW, db, &dxr);
  const float h = 1e-2f;
  auto fd = [&](float& p) {
    const float keep = p;
    p = keep + h;
    const double up = f();
    p = keep - h;
    const double down = f();
    p = keep;
    return (up - down) / (2 * h);
  };
  for (int i = 0; i < out; ++i)
    for (int j = 0; j < in; ++j) CHECK(dW(i, j) == doctest::Approx(fd(W(i, j))).epsilon(1e-3));
  for (int i = 0; i < out; ++i) CHECK(db(i) == doctest::Approx(fd(b(i))).epsilon(1e-3));
  for (int i = 0; i < in; ++i)
    for (int j = 0; j < B; ++j) CHECK(dx(i, j) == doctest::Approx(fd(x(i, j))).epsilon(1e-3));
}

TEST_CASE("gradients: relu backward passes gradient only through active units") {
  Eigen::MatrixXf h(2, 2), dh(2, 2);
  h << -1.0f, 2.0f, 0.5f, -0.25f;
  relu_forward(h);
  CHECK(h(0, 0) == 0.0f);
  CHECK(h(0, 1) == 2.0f);
  dh.setConstant(3.0f);
  relu_backward(h, dh);
  CHECK(dh(0, 0) == 0.0f);
  CHECK(dh(1, 1) == 0.0f);
  CHECK(dh(0, 1) == 3.0f);
  CHECK(dh(1, 0) == 3.0f);
}

TEST_CASE("gradients: whole ELBO backward matches finite differences (Bernoulli)") {
  ModelConfig cfg;
  cfg.image_h = 3;
  cfg.image_w = 4;
  cfg.latent = 3;
  cfg.hidden = {6, 5};
  check_elbo_gradient(cfg, 5, 1, 1.0f, 1);
  check_elbo_gradient(cfg, 5, 3, 0.5f, 1);
  check_elbo_gradient(cfg, 7, 2, 2.0f, 3);  // three shards summed
}

TEST_CASE("gradients: whole ELBO backward matches finite differences (Gaussian fixed and learned)") {
  ModelConfig cfg;
  cfg.image_h = 2;
  cfg.image_w = 5;
  cfg.latent = 2;
  cfg.hidden = {6};
  cfg.likelihood = Likelihood::GaussianFixed;
  cfg.gaussian_sigma = 0.5f;
  check_elbo_gradient(cfg, 4, 2, 1.0f, 2);
  cfg.likelihood = Likelihood::GaussianLearned;
  check_elbo_gradient(cfg, 4, 1, 1.0f, 1);
}

TEST_CASE("gradients: clustering VAE backward (classifier, cluster Gaussians) matches finite differences") {
  ModelConfig cfg;
  cfg.image_h = 2;
  cfg.image_w = 4;
  cfg.latent = 2;
  cfg.hidden = {6};
  cfg.family = ModelFamily::Gmvae;
  cfg.clusters = 3;
  check_elbo_gradient(cfg, 4, 1, 1.0f, 1);
  check_elbo_gradient(cfg, 5, 2, 0.7f, 2);
}

TEST_CASE("gradients: results do not depend on which thread runs a shard") {
  ModelConfig cfg;
  cfg.image_h = 4;
  cfg.image_w = 4;
  cfg.latent = 2;
  cfg.hidden = {8};
  Model model(cfg);
  model.init(5);
  Rng rng(1);
  Eigen::MatrixXf x = random_matrix(16, 9, rng).cwiseAbs().cwiseMin(1.0f);
  Eigen::MatrixXf eps = random_matrix(2, 9, rng);
  std::vector<float> a(model.size()), b(model.size());
  GradientEngine e1(cfg, 9, 1, 2), e2(cfg, 9, 1, 2);
  ThreadPool pool(2);
  e1.compute(model, x, eps, 1.0f, a.data(), nullptr);  // both shards inline
  e2.compute(model, x, eps, 1.0f, b.data(), &pool);    // shards on two threads
  CHECK(a == b);
}
