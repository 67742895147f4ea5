// Checks of the objective against closed forms: the analytic KL against Monte Carlo, and, on a
// linear-Gaussian model built inside vaelab's own Model (ReLUs kept in their linear region),
// ELBO ≤ IWAE_K ≤ log p(x), IWAE → log p(x) as K grows, ELBO = log p(x) − KL(q ‖ p(z|x)),
// and ELBO = log p(x) exactly when q is the true posterior.
#include <doctest/doctest.h>

#include <cmath>

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

TEST_CASE("objective: evaluate gives the same numbers with and without a thread pool") {
  LinearGaussian lg;
  ImageSet set;
  set.height = 1;
  set.width = 4;
  Rng rng(9);
  for (int i = 0; i < 37 * 4; ++i) set.pixels.push_back(static_cast<std::uint8_t>(rng.below(256)));
  set.count = 37;
  const Model m = lg.model(0.8, 0.1, 1.5);
  EvalOptions eo;
  eo.batch = 5;
  eo.iwae_k = 20;
  ThreadPool pool(2);
  const Evaluation a = evaluate(m, set, {}, eo), b = evaluate(m, set, {}, eo, &pool);
  CHECK(a.elbo == b.elbo);
  CHECK(a.iwae == b.iwae);
  CHECK(a.iwae >= a.elbo - 0.05);
}
