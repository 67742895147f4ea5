// Checks of the objective against closed forms: the analytic KL against Monte Carlo, and, on a
// linear-Gaussian model built inside vaelab's own Model (ReLUs kept in their linear region),
// ELBO ≤ IWAE_K ≤ log p(x), IWAE → log p(x) as K grows, ELBO = log p(x) − KL(q ‖ p(z|x)),
// and ELBO = log p(x) exactly when q is the true posterior.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "support.hpp"
#include "core/data.hpp"
#include "core/model.hpp"
#include "core/objective.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"

using namespace vaelab;

TEST_CASE("objective: analytic KL matches a Monte-Carlo estimate") {
  Eigen::MatrixXf mu(3, 1), lv(3, 1);
  mu << 0.5f, -1.2f, 0.0f;
  lv << -0.7f, 0.4f, -2.0f;
  const double analytic = kl_elementwise(mu, lv).sum();
  Rng rng(3);
  const int n = 200000;
  Eigen::MatrixXf z(3, n);
  for (int c = 0; c < n; ++c)
    for (int j = 0; j < 3; ++j) z(j, c) = mu(j) + std::exp(0.5f * lv(j)) * rng.normal();
  const Eigen::MatrixXf mur = mu.replicate(1, n), lvr = lv.replicate(1, n);
  const Eigen::VectorXf diff = log_normal_diag(z, mur, lvr) - log_standard_normal(z);
  const double mc = diff.cast<double>().mean();
  const double se = std::sqrt((diff.cast<double>().array() - mc).square().mean() / n);
  CHECK(std::abs(mc - analytic) < 4 * se + 1e-3);
  CHECK(analytic > 0);
}

TEST_CASE("objective: log_mean_exp is stable for large and -inf inputs") {
  const float a[3] = {1000.0f, 1000.0f, 1000.0f};
  CHECK(log_mean_exp(a, 3) == doctest::Approx(1000.0));
  const float b[2] = {-std::numeric_limits<float>::infinity(), 0.0f};
  CHECK(log_mean_exp(b, 2) == doctest::Approx(std::log(0.5)));
  const float c[2] = {-1e4f, -1e4f - std::log(3.0f)};
  CHECK(log_mean_exp(c, 2) == doctest::Approx(-1e4 + std::log((1 + 1.0 / 3) / 2)).epsilon(1e-9));
}

TEST_CASE("objective: log_sum_exp is stable, -inf when empty, and log n above log_mean_exp") {
  const float a[3] = {1000.0f, 1000.0f, 1000.0f};
  CHECK(log_sum_exp(a, 3) == doctest::Approx(1000.0 + std::log(3.0)));
  const float b[3] = {-std::numeric_limits<float>::infinity(), 0.0f, std::log(2.0f)};
  CHECK(log_sum_exp(b, 3) == doctest::Approx(std::log(3.0)));
  const float inf[2] = {-std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  CHECK(log_sum_exp(inf, 2) == -std::numeric_limits<double>::infinity());
  CHECK(log_sum_exp(a, 0) == -std::numeric_limits<double>::infinity());
  const float c[4] = {-3.5f, 2.25f, 0.5f, -40.0f};
  CHECK(log_sum_exp(c, 4) == doctest::Approx(log_mean_exp(c, 4) + std::log(4.0)).epsilon(1e-12));
}

namespace {

// The linear-Gaussian VAE of support.hpp with d = 2, D = 4: its p(z|x) is a diagonal Gaussian
// the encoder holds exactly, and log p(x) has a closed form.
struct LinearGaussian : test::LinearGaussianVae {
  LinearGaussian() : LinearGaussianVae(2, 4, 3) {}
};

ImageSet one_image(const Eigen::VectorXd& x) {
  ImageSet s;
  s.count = 1;
  s.height = 1;
  s.width = static_cast<int>(x.size());
  for (int i = 0; i < x.size(); ++i) s.pixels.push_back(static_cast<std::uint8_t>(std::lround(x(i) * 255)));
  return s;
}

Eigen::VectorXd as_pixels(const ImageSet& s) {
  Eigen::VectorXd x(s.width);
  for (int i = 0; i < s.width; ++i) x(i) = s.pixels[i] / 255.0;
  return x;
}

Eigen::MatrixXf normals(int rows, int cols, std::uint64_t seed) {
  Rng rng(seed);
  Eigen::MatrixXf m(rows, cols);
  for (int c = 0; c < cols; ++c)
    for (int r = 0; r < rows; ++r) m(r, c) = rng.normal();
  return m;
}

}  // namespace

TEST_CASE("objective: with q the exact posterior every importance weight equals p(x)") {
  LinearGaussian lg;
  const ImageSet set = one_image(Eigen::Vector4d(0.9, 0.1, 0.7, 0.2));
  const Eigen::VectorXd x = as_pixels(set);
  const Model m = lg.model();
  Eigen::MatrixXf mu, lv;
  m.encode(x.cast<float>(), mu, lv);
  CHECK((mu.cast<double>() - lg.post_mean(x)).norm() < 1e-4);
  // IWAE with K = 1 is a one-sample ELBO estimate; here it is exactly log p(x), for any ε.
  const Eigen::VectorXf one = iwae_bound(m, x.cast<float>(), normals(2, 1, 5), 1);
  CHECK(one(0) == doctest::Approx(lg.log_px(x)).epsilon(1e-4));
  // The analytic-KL ELBO of evaluate() agrees too, up to Monte-Carlo error in its recon term.
  EvalOptions eo;
  eo.samples = 100000;  // Monte-Carlo standard error of the recon term ≈ 0.003 nats
  const Evaluation ev = evaluate(m, set, {}, eo);
  CHECK(std::abs(ev.elbo - lg.log_px(x)) < 0.015);
}

TEST_CASE("objective: ELBO = log p(x) − KL(q ‖ p(z|x)) ≤ IWAE_K ≤ log p(x), IWAE → log p(x)") {
  LinearGaussian lg;
  const ImageSet set = one_image(Eigen::Vector4d(0.2, 0.8, 0.3, 0.6));
  const Eigen::VectorXd x = as_pixels(set);
  // A deliberately imperfect encoder: mean shrunk and shifted, variance too wide.
  const Model m = lg.model(0.6, 0.3, 2.5);
  Eigen::MatrixXf mu, lv;
  m.encode(x.cast<float>(), mu, lv);
  const double log_px = lg.log_px(x);
  const double gap = lg.kl_to_posterior(mu.cast<double>(), lv.cast<double>().array().exp(), x);
  CHECK(gap > 0.1);

  EvalOptions eo;
  eo.samples = 100000;
  const double elbo = evaluate(m, set, {}, eo).elbo;
  CHECK(std::abs(elbo - (log_px - gap)) < 0.02);

  double previous = -1e30;
  for (int K : {1, 10, 100, 5000}) {
    // Average many independent IWAE_K estimates (x repeated as columns) to compare expectations.
    const int reps = std::max(8, 400000 / K);
    const Eigen::MatrixXf xs = x.cast<float>().replicate(1, reps);
    const double iwae = iwae_bound(m, xs, normals(2, reps * K, 100 + K), K).cast<double>().mean();
    CAPTURE(K);
    CHECK(iwae <= log_px + 0.01);
    CHECK(iwae >= elbo - 0.03);
    CHECK(iwae >= previous - 0.02);
    previous = iwae;
  }
  CHECK(previous == doctest::Approx(log_px).epsilon(5e-3));
  CHECK(log_px - previous < 0.1 * gap);
}

namespace {

// n images of 1×4 random pixels (seed 9), for the evaluation tests on the linear-Gaussian model.
ImageSet random_four_pixel_images(int n) {
  ImageSet set;
  set.height = 1;
  set.width = 4;
  Rng rng(9);
  for (int i = 0; i < n * 4; ++i) set.pixels.push_back(static_cast<std::uint8_t>(rng.below(256)));
  set.count = n;
  return set;
}

// A linear-Gaussian model and 37 such images, evaluated in batches of 5 with IWAE_20.
struct SmallEvaluation {
  LinearGaussian lg;
  ImageSet set = random_four_pixel_images(37);
  Model model = lg.model(0.8, 0.1, 1.5);
  EvalOptions options = [] {
    EvalOptions o;
    o.batch = 5;
    o.iwae_k = 20;
    return o;
  }();
};

}  // namespace

TEST_CASE("objective: evaluate gives the same numbers with and without a thread pool") {
  const SmallEvaluation small;
  const ImageSet& set = small.set;
  const Model& m = small.model;
  EvalOptions eo = small.options;
  ThreadPool pool(2);
  const Evaluation a = evaluate(m, set, {}, eo), b = evaluate(m, set, {}, eo, &pool);
  CHECK(a.elbo == b.elbo);
  CHECK(a.iwae == b.iwae);
  CHECK(a.iwae >= a.elbo - 0.05);
}

TEST_CASE("objective: an evaluation reports its progress and stops when cancelled") {
  const SmallEvaluation small;
  const ImageSet& set = small.set;
  const Model& m = small.model;
  EvalOptions eo = small.options;
  const Evaluation plain = evaluate(m, set, {}, eo);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    // Reported after each batch, in order, ending at the total; the numbers are the same as without.
    std::atomic<bool> cancel{false};
    std::vector<int> seen;
    EvalProgress progress;
    progress.cancel = &cancel;
    progress.report = [&](int done, int total) {
      CHECK(total == 37);
      seen.push_back(done);
    };
    eo.progress = &progress;
    const Evaluation reported = evaluate(m, set, {}, eo, &pool);
    CHECK(reported.iwae == plain.iwae);
    REQUIRE(seen.size() == 8);  // 7 batches of 5 and one of 2
    CHECK(std::is_sorted(seen.begin(), seen.end()));
    CHECK(seen.back() == 37);
    // Cancelled after the third batch: no batch starts after that, and evaluate says how far it got.
    seen.clear();
    progress.report = [&](int done, int) {
      seen.push_back(done);
      if (seen.size() == 3) cancel = true;
    };
    std::string message;
    try {
      evaluate(m, set, {}, eo, &pool);
    } catch (const EvaluationCancelled& e) {
      message = e.what();
    }
    CHECK_MESSAGE(message.find("cancelled after") != std::string::npos, message);
    CHECK_MESSAGE(seen.size() <= 3u + static_cast<unsigned>(threads), "batches after the cancel: " << seen.size() - 3);
    CHECK(seen.size() < 8);
  }
}

// iwae_bound scores each image's K samples against that one image by broadcasting (no copies of
// x or q); the plain form below repeats them K times and uses the reference log_likelihood. Both
// likelihood families and the clustering VAE's mixture prior, with K past one 4,096-column chunk.
TEST_CASE("objective: iwae_bound matches the bound computed with repeated x and q") {
  struct Case {
    Likelihood lik;
    ModelFamily family;
    int K;
  };
  for (const Case& cs : {Case{Likelihood::Bernoulli, ModelFamily::Mlp, 37}, Case{Likelihood::GaussianFixed, ModelFamily::Mlp, 37},
                         Case{Likelihood::GaussianLearned, ModelFamily::Mlp, 5}, Case{Likelihood::Bernoulli, ModelFamily::Gmvae, 37},
                         Case{Likelihood::Bernoulli, ModelFamily::Mlp, 4100}}) {
    CAPTURE(static_cast<int>(cs.lik));
    CAPTURE(static_cast<int>(cs.family));
    CAPTURE(cs.K);
    ModelConfig cfg;
    cfg.image_h = 5;  // D = 35: not a multiple of the vector width
    cfg.image_w = 7;
    cfg.latent = 3;
    cfg.hidden = {16};
    cfg.likelihood = cs.lik;
    cfg.family = cs.family;
    cfg.clusters = 4;
    Model model(cfg);
    model.init(11);
    const int D = cfg.input_dim(), d = cfg.latent, B = 3, K = cs.K;
    Rng rng(5);
    Eigen::MatrixXf x(D, B), eps(d, B * K);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.uniform();
    for (Eigen::Index i = 0; i < eps.size(); ++i) eps.data()[i] = rng.normal();
    const Eigen::VectorXf got = iwae_bound(model, x, eps, K);
    Eigen::MatrixXf mu, lv, out;
    model.encode(x, mu, lv);
    for (int b = 0; b < B; ++b) {
      Eigen::MatrixXf z = eps.middleCols(static_cast<Eigen::Index>(b) * K, K);
      for (int c = 0; c < K; ++c) z.col(c) = mu.col(b).array() + (0.5f * lv.col(b).array()).exp() * z.col(c).array();
      model.decode_raw(z, out);
      const Eigen::VectorXf w = log_likelihood(cfg.likelihood, x.col(b).replicate(1, K), out, model.decoder_logvar()) +
                                log_prior(model, z) - log_normal_diag(z, mu.col(b).replicate(1, K), lv.col(b).replicate(1, K));
      const double want = log_mean_exp(w.data(), K);
      CHECK(got(b) == doctest::Approx(want).epsilon(1e-5));
    }
  }
}

// The inference passes send batches of at least 16 columns through core/gemm and fewer through
// Eigen's product: decoding and encoding 200 columns at once (two 192-column packed blocks) must
// match doing it one column at a time, for the MLP, the conv VAE (its dense layers) and the
// clustering VAE's classifier.
TEST_CASE("objective: batched inference (gemm) matches column-by-column inference (Eigen)") {
  for (ModelFamily family : {ModelFamily::Mlp, ModelFamily::Conv, ModelFamily::Gmvae}) {
    CAPTURE(static_cast<int>(family));
    ModelConfig cfg;
    cfg.family = family;
    cfg.image_h = family == ModelFamily::Conv ? 28 : 5;
    cfg.image_w = family == ModelFamily::Conv ? 28 : 7;
    cfg.latent = 3;
    cfg.hidden = {24, 17};
    cfg.clusters = 4;
    if (family == ModelFamily::Conv) cfg.hidden = {32};
    Model model(cfg);
    model.init(3);
    const int D = cfg.input_dim(), n = 200;
    Rng rng(8);
    Eigen::MatrixXf x(D, n), z(cfg.latent, n);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.uniform();
    for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = 2.0f * rng.normal();
    Eigen::MatrixXf mu, lv, out, probs;
    model.encode(x, mu, lv);
    model.decode_raw(z, out);
    if (family == ModelFamily::Gmvae) model.classify(z, probs);
    float worst = 0;
    for (int c = 0; c < n; ++c) {
      Eigen::MatrixXf mu1, lv1, out1, p1;
      model.encode(x.col(c), mu1, lv1);
      model.decode_raw(z.col(c), out1);
      worst = std::max({worst, (mu1 - mu.col(c)).cwiseAbs().maxCoeff() / (1.0f + mu.col(c).cwiseAbs().maxCoeff()),
                        (lv1 - lv.col(c)).cwiseAbs().maxCoeff() / (1.0f + lv.col(c).cwiseAbs().maxCoeff()),
                        (out1 - out.col(c)).cwiseAbs().maxCoeff() / (1.0f + out.col(c).cwiseAbs().maxCoeff())});
      if (family == ModelFamily::Gmvae) {
        model.classify(z.col(c), p1);
        worst = std::max(worst, (p1 - probs.col(c)).cwiseAbs().maxCoeff());
      }
    }
    CHECK(worst < 1e-5f);
    CHECK(worst == worst);  // not NaN
  }
}
