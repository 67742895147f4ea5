// Finite-difference checks of every backward pass: the dense and ReLU layers, and the whole
// β-weighted negative ELBO with ε held fixed, for each likelihood and for L > 1 and several shards.
#include <doctest/doctest.h>

#include <cmath>

#include "core/adam.hpp"
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

TEST_CASE("gradients: the row-chunked MLP backward matches finite differences across chunk boundaries") {
  // Widths that are not multiples of the 16-row chunks (and GEMM tiles): 25 pixels (2 chunks),
  // hidden 20 and 17, a head of 18 rows, so that every layer has several chunks and a short last one.
  ModelConfig cfg;
  cfg.image_h = 5;
  cfg.image_w = 5;
  cfg.latent = 9;
  cfg.hidden = {20, 17};
  check_elbo_gradient(cfg, 6, 1, 1.0f, 2, 3);
  check_elbo_gradient(cfg, 5, 2, 0.5f, 3, 5);
  cfg.likelihood = Likelihood::GaussianLearned;
  check_elbo_gradient(cfg, 5, 2, 1.0f, 2, 5);
}

TEST_CASE("gradients: the same seed gives the same bits whatever the thread count") {
  // MLP: the chunking depends only on the layer sizes, so 1, 2 and 3 threads agree bit for bit.
  // Other families: the same shard count agrees bit for bit whichever threads claim the shards.
  auto run = [](const ModelConfig& cfg, int shards, int threads) {
    Model model(cfg);
    model.init(5);
    Rng rng(1);
    const int B = 23, L = 2;
    Eigen::MatrixXf x = random_matrix(cfg.input_dim(), B, rng).cwiseAbs().cwiseMin(1.0f);
    Eigen::MatrixXf eps = random_matrix(cfg.latent, B * L, rng);
    std::vector<float> g(model.size());
    GradientEngine e(cfg, B, L, shards);
    ThreadPool pool(threads);
    const StepStats st = e.compute(model, x, eps, 1.0f, g.data(), threads > 1 ? &pool : nullptr);
    // One Adam step too, so that the pool's chunked update is covered.
    Adam adam;
    adam.reset(model.size());
    adam.step(model.data(), g.data(), model.size(), 1e-3f, threads > 1 ? &pool : nullptr);
    std::vector<float> out(model.params().begin(), model.params().end());
    out.insert(out.end(), g.begin(), g.end());
    out.push_back(static_cast<float>(st.loss));
    return out;
  };
  ModelConfig mlp;
  mlp.image_h = 7;
  mlp.image_w = 9;
  mlp.latent = 5;
  mlp.hidden = {40, 19};
  const std::vector<float> one = run(mlp, 1, 1);
  CHECK(std::isfinite(one.back()));
  CHECK(one == run(mlp, 1, 2));
  CHECK(one == run(mlp, 4, 3));  // the shard count is not used by the MLP path

  ModelConfig gm = mlp;
  gm.family = ModelFamily::Gmvae;
  gm.clusters = 3;
  const std::vector<float> g4 = run(gm, 4, 1);
  CHECK(std::isfinite(g4.back()));
  CHECK(g4 == run(gm, 4, 2));
  CHECK(g4 == run(gm, 4, 3));
  CHECK(g4 != run(gm, 1, 1));  // a different shard count sums in another order (guards the test itself)
}
