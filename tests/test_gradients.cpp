// Finite-difference checks of every backward pass: the dense and ReLU layers, and the whole
// β-weighted negative ELBO with ε held fixed, for each likelihood and for L > 1 and several shards.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

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

TEST_CASE("gradients: the checked tensors tile the parameter buffer, and the picks stay inside them") {
  // check_elbo_gradient visits parameters tensor by tensor (parameter_blocks): a tensor missing from
  // that list would never be checked. Every family: blocks in order, disjoint, only padding between.
  ModelConfig mlp;
  mlp.hidden = {9, 7};
  mlp.likelihood = Likelihood::GaussianLearned;
  ModelConfig conv;
  conv.family = ModelFamily::Conv;
  conv.image_c = 3;
  conv.image_h = 8;
  conv.image_w = 6;
  ModelConfig gmvae;
  gmvae.family = ModelFamily::Gmvae;
  gmvae.hidden = {12};
  gmvae.clusters = 4;
  ModelConfig vade = gmvae;
  vade.family = ModelFamily::Vade;
  for (const ModelConfig& cfg : {mlp, conv, gmvae, vade}) {
    const Model m(cfg);
    std::vector<test::ParamBlock> blocks = test::parameter_blocks(m);
    std::sort(blocks.begin(), blocks.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
    std::size_t end = 0;
    for (const test::ParamBlock& b : blocks) {
      CHECK(b.size > 0);
      CHECK(b.offset >= end);
      CHECK(b.offset - end < kParamAlign);
      end = b.offset + b.size;
    }
    CHECK(end <= m.size());
    CHECK(m.size() - end < kParamAlign);
    // Capped picks: at most the cap per tensor, each inside its tensor; uncapped stride 1: all.
    const std::vector<std::size_t> all = test::checked_parameters(m, 1, SIZE_MAX);
    std::size_t total = 0;
    for (const test::ParamBlock& b : blocks) total += b.size;
    CHECK(all.size() == total);
    const std::vector<std::size_t> capped = test::checked_parameters(m, 1, 5);
    CHECK(capped.size() <= 5 * blocks.size());
    for (const std::size_t i : capped) {
      const bool inside = std::any_of(blocks.begin(), blocks.end(), [&](const test::ParamBlock& b) {
        return i >= b.offset && i < b.offset + b.size;
      });
      CHECK(inside);
    }
  }
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

TEST_CASE("gradients: a colour MLP's whole ELBO backward matches finite differences (every likelihood)") {
  // C = 3: D = 3·H·W values, each its own Bernoulli or Gaussian term.
  ModelConfig cfg{.image_c = 3, .image_h = 2, .image_w = 3, .latent = 2, .hidden = {7}};
  REQUIRE(cfg.input_dim() == 18);
  check_elbo_gradient(cfg, 4, 1, 1.0f, 1);
  check_elbo_gradient(cfg, 5, 2, 0.5f, 2);
  cfg.likelihood = Likelihood::GaussianFixed;
  cfg.gaussian_sigma = 0.5f;
  check_elbo_gradient(cfg, 4, 2, 1.0f, 2);
  cfg.likelihood = Likelihood::GaussianLearned;
  check_elbo_gradient(cfg, 4, 1, 1.0f, 1);
  cfg.likelihood = Likelihood::Bernoulli;
  cfg.family = ModelFamily::Gmvae;
  cfg.clusters = 3;
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

TEST_CASE("gradients: vade backward (the mixture's own p(y|z), cluster Gaussians) matches finite differences") {
  // p(y|z) is the softmax of log N(z; μ_y, σ_y²), so the loss reaches z, μ_y and log σ_y² through
  // it as well as through the responsibility-weighted KLs.
  ModelConfig cfg;
  cfg.image_h = 2;
  cfg.image_w = 4;
  cfg.latent = 3;
  cfg.hidden = {6};
  cfg.family = ModelFamily::Vade;
  cfg.clusters = 4;
  // A few entries of the first layer sit on a ReLU kink of one hidden unit: the kink retry.
  check_elbo_gradient(cfg, 4, 1, 1.0f, 1, 1, 0.05);
  check_elbo_gradient(cfg, 5, 2, 0.7f, 2, 1, 0.05);
  cfg.likelihood = Likelihood::GaussianLearned;
  check_elbo_gradient(cfg, 3, 1, 1.0f, 1, 1, 0.05);
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

TEST_CASE("gradients: the deepest MLP the config takes (8 hidden layers) matches finite differences") {
  // 18 dense layers in all, each with its own weight-gradient pack and row chunks.
  ModelConfig cfg;
  cfg.image_h = 3;
  cfg.image_w = 3;
  cfg.latent = 2;
  cfg.hidden = {6, 5, 6, 5, 6, 5, 6, 5};
  check_elbo_gradient(cfg, 5, 1, 1.0f, 2, 3);
}

TEST_CASE("gradients: a plain MLP batch cut into column slices matches finite differences") {
  // K = kMlpShardExamples or more a slice (64, or 96 with AVX-512): 2K + 2 examples and a limit
  // of 2 give slices of K + 1 side by side, whose columns meet in the weight gradients (and the
  // learned decoder variance's).
  const int K = GradientEngine::kMlpShardExamples, B = 2 * K + 2;
  ModelConfig cfg;
  cfg.image_h = 4;
  cfg.image_w = 4;
  cfg.latent = 3;
  cfg.hidden = {10};
  CHECK(GradientEngine(cfg, B, 1, 2).shards_for(B) == 2);
  CHECK(GradientEngine(cfg, B, 1, 2).shards_for(2 * K - 1) == 1);
  CHECK(GradientEngine(cfg, B, 1, 8).shards_for(B) == 2);
  CHECK(GradientEngine(cfg, B, 1, 1).shards_for(B) == 1);
  check_elbo_gradient(cfg, B, 1, 1.0f, 2, 7);
  check_elbo_gradient(cfg, B, 2, 0.5f, 2, 7);
  cfg.likelihood = Likelihood::GaussianLearned;
  check_elbo_gradient(cfg, B, 1, 1.0f, 2, 7);
}

TEST_CASE("gradients: the shards' unsummed parts, summed by Adam, give the bits of compute()") {
  // The clustering VAE sums per-shard gradients; the plain MLP has none to leave.
  ModelConfig cfg;
  cfg.image_h = 5;
  cfg.image_w = 6;
  cfg.latent = 4;
  cfg.hidden = {24};
  cfg.family = ModelFamily::Gmvae;
  cfg.clusters = 3;
  const int B = 20;
  Model model(cfg);
  model.init(2);
  Rng rng(4);
  const Eigen::MatrixXf x = random_matrix(cfg.input_dim(), B, rng).cwiseAbs().cwiseMin(1.0f);
  const Eigen::MatrixXf eps = random_matrix(cfg.latent, B, rng);
  ThreadPool pool(2);
  GradientEngine summed(cfg, B, 1, 3), parts(cfg, B, 1, 3);
  REQUIRE(parts.shards_for(B) == 3);
  std::vector<float> g(model.size()), g0(model.size());
  const StepStats a = summed.compute(model, x, eps, 1.0f, g.data(), &pool);
  CHECK(summed.unsummed_gradients().empty());
  const StepStats b = parts.compute_unsummed(model, x, eps, 1.0f, g0.data(), &pool);
  CHECK(a.loss == b.loss);
  REQUIRE(parts.unsummed_gradients().size() == 2);
  std::vector<float> by_hand = g0;
  for (const float* part : parts.unsummed_gradients())
    for (std::size_t i = 0; i < by_hand.size(); ++i) by_hand[i] += part[i];
  CHECK(by_hand == g);
  CHECK(g0 != g);  // shard 0's part alone is not the gradient (guards the test itself)
  ModelConfig mlp = cfg;
  mlp.family = ModelFamily::Mlp;
  mlp.clusters = 0;
  Model plain(mlp);
  plain.init(2);
  GradientEngine whole(mlp, B, 1, 3);
  std::vector<float> gp(plain.size());
  whole.compute_unsummed(plain, x, eps, 1.0f, gp.data(), &pool);
  CHECK(whole.unsummed_gradients().empty());

  Model m1 = model, m2 = model;
  Adam adam1, adam2;
  adam1.reset(model.size());
  adam2.reset(model.size());
  for (int step = 0; step < 3; ++step) {
    REQUIRE(adam1.step(m1.data(), g.data(), model.size(), 1e-3f, &pool));
    REQUIRE(adam2.step(m2.data(), g0.data(), model.size(), 1e-3f, &pool, parts.unsummed_gradients()));
  }
  CHECK(std::equal(m1.params().begin(), m1.params().end(), m2.params().begin()));
  CHECK(adam1.m == adam2.m);
  CHECK(adam1.v == adam2.v);
  // A NaN in a part is caught like one in the first gradient.
  std::vector<float> bad(model.size(), 0.0f);
  bad[model.size() / 2] = std::numeric_limits<float>::quiet_NaN();
  const float* bad_parts[] = {bad.data()};
  CHECK_FALSE(adam2.step(m2.data(), g0.data(), model.size(), 1e-3f, &pool, bad_parts));
}

TEST_CASE("gradients: the same seed gives the same bits whatever the thread count") {
  // MLP: the chunking depends only on the layer sizes, so 1, 2 and 3 threads agree bit for bit.
  // Other families: the same shard count agrees bit for bit whichever threads claim the shards.
  auto run = [](const ModelConfig& cfg, int shards, int threads, int B = 23) {
    Model model(cfg);
    model.init(5);
    Rng rng(1);
    const int L = 2;
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
  CHECK(one == run(mlp, 4, 3));  // 23 examples: one MLP slice, whatever the limit
  // 2K + 22 examples (K = kMlpShardExamples) in two MLP column slices, side by side or one after
  // the other, or in one slice split by rows: the slices meet only in the weight gradients, each
  // over the whole batch.
  const int B2 = 2 * GradientEngine::kMlpShardExamples + 22;
  REQUIRE(GradientEngine(mlp, B2, 2, 2).shards_for(B2) == 2);
  const std::vector<float> two = run(mlp, 2, 1, B2);
  CHECK(std::isfinite(two.back()));
  CHECK(two == run(mlp, 2, 2, B2));
  CHECK(two == run(mlp, 2, 3, B2));
  CHECK(two == run(mlp, 1, 2, B2));
  CHECK(two == run(mlp, 1, 1, B2));

  ModelConfig gm = mlp;
  gm.family = ModelFamily::Gmvae;
  gm.clusters = 3;
  const std::vector<float> g4 = run(gm, 4, 1);
  CHECK(std::isfinite(g4.back()));
  CHECK(g4 == run(gm, 4, 2));
  CHECK(g4 == run(gm, 4, 3));
  CHECK(g4 != run(gm, 1, 1));  // a different shard count sums in another order (guards the test itself)
}
