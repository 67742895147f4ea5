// Tests of core/gap: the posterior grid, aggregate posterior, active units and the score-function
// estimator, against closed forms of a linear-Gaussian VAE (p(z|x) and log p(x) known exactly)
// built inside vaelab's own Model. Not tests of training or of the UI that draws these grids.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#include "support.hpp"
#include "core/error.hpp"
#include "core/gap.hpp"
#include "core/model.hpp"
#include "core/objective.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"
#include "core/train_step.hpp"

using namespace vaelab;
using vaelab::test::LinearGaussianVae;

namespace {

// A point in pixel space that is representable in float (so double and float views agree).
Eigen::VectorXd some_x(int D, std::uint64_t seed) {
  Rng rng(seed);
  Eigen::VectorXd x(D);
  for (int i = 0; i < D; ++i) x(i) = static_cast<double>(static_cast<float>(rng.uniform()));
  return x;
}

struct Encoded {
  Eigen::VectorXd mu, var;
};
Encoded encode_one(const Model& m, const Eigen::VectorXd& x) {
  Eigen::MatrixXf mu, lv;
  m.encode(x.cast<float>(), mu, lv);
  return {mu.col(0).cast<double>(), lv.col(0).cast<double>().array().exp()};
}

// Closed-form log ∫ N(z0 + U u; m, diag v) du over the plane, and the conditional's mean and covariance.
struct PlaneGaussian {
  double log_integral;
  Eigen::Vector2d mean;
  Eigen::Matrix2d cov;
};
PlaneGaussian on_plane(const Eigen::VectorXd& m, const Eigen::VectorXd& v, const Eigen::VectorXd& z0,
                       const Eigen::MatrixXd& U) {
  const int d = static_cast<int>(m.size());
  const Eigen::VectorXd r = m - z0;
  const Eigen::Matrix2d P = U.transpose() * v.cwiseInverse().asDiagonal() * U;
  const Eigen::Vector2d b = U.transpose() * r.cwiseQuotient(v);
  PlaneGaussian g;
  g.cov = P.inverse();
  g.mean = g.cov * b;
  g.log_integral = -0.5 * d * kLog2Pi - 0.5 * v.array().log().sum() + kLog2Pi - 0.5 * std::log(P.determinant()) +
                   0.5 * b.dot(g.mean) - 0.5 * r.dot(r.cwiseQuotient(v));
  return g;
}

}  // namespace

TEST_CASE("gap: posterior grid matches the linear-Gaussian closed forms (d = 2)") {
  const LinearGaussianVae lg(2, 5, 11);
  const Eigen::VectorXd x = some_x(5, 3);
  // A deliberately imperfect encoder: mean shrunk and shifted, variance too wide.
  const Model m = lg.model(0.6, 0.3, 2.5);
  const Encoded q = encode_one(m, x);
  const double log_px = lg.log_px(x), kl = lg.kl_to_posterior(q.mu, q.var, x);
  CHECK(kl > 0.1);

  GridSpec base;
  base.resolution = 256;
  const GridSpec spec = auto_grid_for(q.mu.cast<float>(), q.var.cwiseSqrt().cast<float>(), base);
  GapOptions opt;
  opt.elbo_samples = 40000;
  opt.iwae_k = 20000;
  const PosteriorGrid g = posterior_grid(m, x.cast<float>(), spec, opt);

  CHECK(g.exact);
  CHECK(g.density.rows() == 256);
  CHECK(g.density.cast<double>().sum() * g.cell_area == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(g.q_density.cast<double>().sum() * g.cell_area == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(g.edge_mass < 1e-6);
  CHECK(std::abs(g.log_px - log_px) < 1e-3);
  CHECK(std::abs(g.kl_grid - kl) < 1e-2);

  // The grid's moments are the posterior's.
  const Eigen::VectorXd pm = lg.post_mean(x), pv = lg.post_var();
  CHECK((g.posterior_mean - pm).norm() < 1e-3);
  CHECK(std::abs(g.posterior_cov(0, 0) - pv(0)) < 1e-3 * pv(0) + 1e-6);
  CHECK(std::abs(g.posterior_cov(1, 1) - pv(1)) < 1e-3 * pv(1) + 1e-6);
  CHECK(std::abs(g.posterior_cov(0, 1)) < 1e-5);

  // ELBO = log p(x) − KL(q ‖ p(z|x)), and the check value is that KL; IWAE sits between.
  CAPTURE(g.elbo_se);
  CHECK(g.elbo_se > 0);
  CHECK(std::abs(g.elbo - (log_px - kl)) < 5 * g.elbo_se + 1e-3);
  CHECK(std::abs(g.gap_check - g.kl_grid) < 5 * g.elbo_se + 2e-3);
  CHECK(g.kl_prior ==
        doctest::Approx(0.5 * (q.mu.squaredNorm() + q.var.sum() - q.var.array().log().sum() - 2)).epsilon(1e-5));
  // One IWAE_K estimate (its mean lies below log p(x); a single draw may land a little above).
  CHECK(std::abs(g.iwae - log_px) < 0.05);
  CHECK(g.iwae > g.elbo);

  // q's ellipses: axis-aligned, semi-axes σ and 2σ (major first), centred at μ.
  CHECK((g.q_1sigma.center.cast<double>() - q.mu).norm() < 1e-5);
  const double s_major = std::sqrt(q.var.maxCoeff()), s_minor = std::sqrt(q.var.minCoeff());
  CHECK(g.q_1sigma.axes(0) == doctest::Approx(s_major).epsilon(1e-5));
  CHECK(g.q_1sigma.axes(1) == doctest::Approx(s_minor).epsilon(1e-5));
  CHECK(g.q_2sigma.axes(0) == doctest::Approx(2 * s_major).epsilon(1e-5));
  const double expected_angle = q.var(0) >= q.var(1) ? 0.0 : std::numbers::pi / 2;
  CHECK(std::abs(std::abs(g.q_1sigma.angle) - expected_angle) < 1e-5);

  // The heat map is the posterior density at cell centres.
  const Eigen::Vector2f u = grid_cell_center(g.spec, 131, 117);
  const double expected = std::exp(-0.5 * ((u.cast<double>() - pm).array().square() / pv.array()).sum()) /
                          (2 * std::numbers::pi * std::sqrt(pv.prod()));
  CHECK(g.density(131, 117) == doctest::Approx(expected).epsilon(1e-3));
}

TEST_CASE("gap: with q the exact posterior the grid KL vanishes and log p(x) = ELBO") {
  const LinearGaussianVae lg(2, 4, 21);
  const Eigen::VectorXd x = some_x(4, 8);
  const Model m = lg.model();
  const Encoded q = encode_one(m, x);
  CHECK((q.mu - lg.post_mean(x)).norm() < 1e-4);
  GridSpec base;
  base.resolution = 200;
  GapOptions opt;
  opt.elbo_samples = 20000;
  opt.iwae_k = 100;
  const PosteriorGrid g =
      posterior_grid(m, x.cast<float>(), auto_grid_for(q.mu.cast<float>(), q.var.cwiseSqrt().cast<float>(), base), opt);
  CHECK(std::abs(g.kl_grid) < 1e-4);
  CHECK(std::abs(g.log_px - lg.log_px(x)) < 1e-3);
  CHECK(std::abs(g.gap_check) < 5 * g.elbo_se + 1e-3);
  CHECK(g.iwae == doctest::Approx(lg.log_px(x)).epsilon(1e-4));  // every importance weight is p(x)
  CHECK((g.density - g.q_density).cwiseAbs().maxCoeff() < 1e-3 * g.density.maxCoeff());
}

TEST_CASE("gap: for d > 2 the grid is the slice of p(x, z) through the plane") {
  const LinearGaussianVae lg(3, 6, 5);
  const Eigen::VectorXd x = some_x(6, 9);
  const Model m = lg.model(0.8, -0.2, 1.8);
  const Encoded q = encode_one(m, x);
  const Eigen::VectorXd pm = lg.post_mean(x), pv = lg.post_var();
  const double log_px = lg.log_px(x);

  SUBCASE("default plane: dims 0 and 1 through q's mean") {
    GridSpec base;
    base.resolution = 200;
    const PosteriorGrid g = posterior_grid(
        m, x.cast<float>(), auto_grid_for(q.mu.cast<float>(), q.var.cwiseSqrt().cast<float>(), base), {500, 0, 1});
    CHECK_FALSE(g.exact);
    CHECK(g.spec.origin(2) == doctest::Approx(q.mu(2)).epsilon(1e-6));
    CHECK(g.spec.origin.head(2).norm() == 0);
    // log ∫ p(x, z0 + U u) du = log p(x) + log p(z_2 = μ_2 | x).
    const double log_cond = -0.5 * (kLog2Pi + std::log(pv(2)) + (q.mu(2) - pm(2)) * (q.mu(2) - pm(2)) / pv(2));
    CHECK(std::abs(g.log_px - (log_px + log_cond)) < 1e-3);
    // Both conditionals are the dims-(0, 1) marginals: the KL is theirs alone.
    const double kl01 =
        lg.kl_to_posterior(q.mu, q.var, x) -
        0.5 * (q.var(2) / pv(2) + (q.mu(2) - pm(2)) * (q.mu(2) - pm(2)) / pv(2) - 1 + std::log(pv(2) / q.var(2)));
    CHECK(std::abs(g.kl_grid - kl01) < 1e-2);
    CHECK(std::isnan(g.iwae));
  }

  SUBCASE("a tilted plane") {
    GridSpec spec;
    spec.resolution = 256;
    spec.half_width = Eigen::Vector2f(2.5f, 2.5f);
    Eigen::MatrixXf U(3, 2);
    U << 0.6f, 0.48f, 0.0f, 0.8f, 0.8f, -0.36f;  // orthonormal, dims 0 and 2 feed both directions
    spec.directions = U;
    spec.origin.resize(3);
    spec.origin << 0.1f, -0.2f, 0.3f;
    // Centre the window on the posterior's conditional mean.
    const PlaneGaussian pp = on_plane(pm, pv, spec.origin.cast<double>(), U.cast<double>());
    spec.center = pp.mean.cast<float>();
    const PosteriorGrid g = posterior_grid(m, x.cast<float>(), spec, {100, 0, 1});
    CHECK(g.edge_mass < 1e-6);
    CHECK(std::abs(g.log_px - (log_px + pp.log_integral)) < 1e-3);
    CHECK((g.posterior_mean - pp.mean).norm() < 1e-3);
    CHECK((g.posterior_cov - pp.cov).norm() < 1e-3 * pp.cov.norm());
    // q's ellipse is q conditioned on the plane.
    const PlaneGaussian qp = on_plane(q.mu, q.var, spec.origin.cast<double>(), U.cast<double>());
    CHECK((g.q_1sigma.center.cast<double>() - qp.mean).norm() < 1e-4);
    const Eigen::SelfAdjointEigenSolver<Eigen::Matrix2d> es(qp.cov);
    CHECK(g.q_1sigma.axes(0) == doctest::Approx(std::sqrt(es.eigenvalues()(1))).epsilon(1e-4));
    CHECK(g.q_1sigma.axes(1) == doctest::Approx(std::sqrt(es.eigenvalues()(0))).epsilon(1e-4));
  }
}

TEST_CASE("gap: auto grid windows and bad grid specs") {
  const GridSpec a = auto_grid_for(Eigen::Vector2f(1.0f, -2.0f), Eigen::Vector2f(0.1f, 2.0f));
  CHECK(a.center.isApprox(Eigen::Vector2f(1.0f, -2.0f)));
  CHECK(a.half_width(0) == doctest::Approx(3.0));
  CHECK(a.half_width(1) == doctest::Approx(8.0));
  // In a 4-D latent the default plane passes through q's mean; the window uses dims 0 and 1.
  Eigen::Vector4f mu(0.5f, 1.5f, -1.0f, 2.0f), sd(1.0f, 0.5f, 3.0f, 3.0f);
  const GridSpec b = auto_grid_for(mu, sd);
  CHECK(b.center.isApprox(Eigen::Vector2f(0.5f, 1.5f)));
  CHECK(b.half_width(0) == doctest::Approx(4.0));
  CHECK(b.origin.isApprox(Eigen::Vector4f(0.0f, 0.0f, -1.0f, 2.0f)));
  CHECK(b.directions.rows() == 4);

  const LinearGaussianVae lg(2, 4, 1);
  const Model m = lg.model();
  const Eigen::VectorXf x = some_x(4, 2).cast<float>();
  GridSpec s;
  s.resolution = 1;
  CHECK_THROWS_AS(posterior_grid(m, x, s), Error);
  s = {};
  s.half_width(1) = 0;
  CHECK_THROWS_AS(posterior_grid(m, x, s), Error);
  s = {};
  s.directions = Eigen::MatrixXf::Ones(2, 2);
  CHECK_THROWS_AS(posterior_grid(m, x, s), Error);
  s = {};
  s.origin = Eigen::VectorXf::Zero(3);
  CHECK_THROWS_AS(posterior_grid(m, x, s), Error);
  CHECK_THROWS_AS(posterior_grid(m, Eigen::VectorXf::Zero(3), GridSpec{}), Error);
  ModelConfig one;
  one.image_h = 1;
  one.image_w = 4;
  one.latent = 1;
  one.hidden = {3};
  CHECK_THROWS_AS(posterior_grid(Model(one), x, GridSpec{}), Error);
}

TEST_CASE("gap: posterior grid gives the same bits with and without a thread pool") {
  ModelConfig cfg;
  cfg.image_h = 3;
  cfg.image_w = 3;
  cfg.latent = 2;
  cfg.hidden = {7};
  Model m(cfg);
  m.init(4);
  Eigen::VectorXf x(9);
  x << 0, 1, 1, 0, 0, 1, 1, 0, 1;
  GridSpec spec;
  spec.resolution = 100;  // 10 000 cells: three chunks
  ThreadPool pool(2);
  GapOptions opt;
  opt.elbo_samples = 100;
  opt.iwae_k = 50;
  const PosteriorGrid a = posterior_grid(m, x, spec, opt), b = posterior_grid(m, x, spec, opt, &pool);
  CHECK(a.log_joint == b.log_joint);
  CHECK(a.log_px == b.log_px);
  CHECK(a.kl_grid == b.kl_grid);
  CHECK(a.elbo == b.elbo);
  CHECK(a.iwae == b.iwae);
  CHECK(a.kl_grid >= 0);
  // Whatever the model, the ELBO lies below log p(x) (the window ±3 holds nearly all of the prior).
  CHECK(a.elbo <= a.log_px + 5 * a.elbo_se + 0.01);
}

TEST_CASE("gap: active units and dims collapsed to the prior") {
  const int N = 1000;
  Rng rng(17);
  Eigen::MatrixXf mu(4, N);
  for (int n = 0; n < N; ++n) {
    mu(0, n) = rng.normal();           // active, variance ≈ 1
    mu(1, n) = 0.2f * rng.normal();    // active, variance ≈ 0.04
    mu(2, n) = 0.001f * rng.normal();  // inactive, at the prior
    mu(3, n) = 1.5f;                   // inactive, a constant code away from the prior
  }
  const ActiveUnits au = active_units(mu);
  CHECK(au.count == 2);
  CHECK(au.active == std::vector<bool>{true, true, false, false});
  CHECK(au.variance[0] == doctest::Approx(1.0).epsilon(0.1));
  CHECK(au.variance[1] == doctest::Approx(0.04).epsilon(0.1));
  CHECK(au.variance[3] == doctest::Approx(0.0));
  CHECK(active_units(mu, 0.05f).count == 1);
  const std::vector<double> kl = {1.2, 0.4, 0.002, 1.1};
  CHECK(collapsed_dims(au, kl) == std::vector<bool>{false, false, true, false});
  CHECK_THROWS_AS(collapsed_dims(au, {0.0}), Error);
}

TEST_CASE("gap: aggregate posterior of identical q's is that q, and its holes against the prior") {
  const int N = 40;
  Eigen::VectorXf m0(3), s0(3);  // (d)
  m0 << 0.5f, -0.3f, 1.0f;
  s0 << 0.3f, 0.6f, 0.2f;
  const Eigen::MatrixXf mu = m0.replicate(1, N);
  const Eigen::MatrixXf lv = (2.0f * s0.array().log()).matrix().replicate(1, N);
  auto gauss2 = [](const Eigen::Vector2d& u, const Eigen::Vector2d& m, const Eigen::Matrix2d& C) {
    const Eigen::Vector2d r = u - m;
    return std::exp(-0.5 * r.dot(C.inverse() * r)) / (2 * std::numbers::pi * std::sqrt(C.determinant()));
  };
  GridSpec spec;
  spec.resolution = 256;
  spec.half_width = Eigen::Vector2f(5.0f, 5.0f);

  SUBCASE("default plane (exact cell averages)") {
    ThreadPool pool(2);
    const AggregateGrid a = aggregate_posterior_grid(mu, lv, spec, &pool);
    const AggregateGrid b = aggregate_posterior_grid(mu, lv, spec);
    CHECK(a.density == b.density);
    CHECK(a.aggregate_mass == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(a.prior_mass == doctest::Approx(std::pow(std::erf(5 / std::sqrt(2.0)), 2)).epsilon(1e-5));
    // Exact cell averages of N(m, s²) along one axis: (Φ((b − m)/s) − Φ((a − m)/s)) / h.
    const double h = 10.0 / 256;
    auto avg = [h](double centre, double m, double s) {
      return 0.5 *
             (std::erf((centre + h / 2 - m) / (s * std::sqrt(2.0))) -
              std::erf((centre - h / 2 - m) / (s * std::sqrt(2.0)))) /
             h;
    };
    double worst_q = 0, worst_p = 0;
    for (int iy = 0; iy < 256; iy += 3)
      for (int ix = 0; ix < 256; ix += 3) {
        const Eigen::Vector2d u = grid_cell_center(a.spec, ix, iy).cast<double>();
        const double q = avg(u(0), m0(0), s0(0)) * avg(u(1), m0(1), s0(1));
        const double p = avg(u(0), 0, 1) * avg(u(1), 0, 1);
        worst_q = std::max(worst_q, std::abs(a.density(ix, iy) - q) / (q + 1e-6));
        worst_p = std::max(worst_p, std::abs(a.prior(ix, iy) - p) / (p + 1e-6));
        // and close to the density at the centre (relative difference ≈ h² f'' / (24 f))
        CHECK(a.density(ix, iy) ==
              doctest::Approx(gauss2(u, m0.head(2).cast<double>(),
                                     s0.head(2).cast<double>().array().square().matrix().asDiagonal()))
                  .epsilon(1e-2));
      }
    CHECK(worst_q < 1e-4);
    CHECK(worst_p < 1e-4);
    // A narrow q covers little of the prior: most of the prior's mass lies in holes.
    CHECK(a.hole_fraction > 0.5);
    // The prior itself as the aggregate: no holes.
    const AggregateGrid p = aggregate_posterior_grid(Eigen::MatrixXf::Zero(3, 5), Eigen::MatrixXf::Zero(3, 5), spec);
    CHECK(p.hole_fraction == 0.0);
    CHECK((p.density - p.prior).cwiseAbs().maxCoeff() < 1e-6);
  }

  SUBCASE("a mixture of two q's is their average") {
    Eigen::MatrixXf mu2(2, 2), lv2(2, 2);
    mu2 << -1.0f, 1.0f, 0.0f, 0.5f;
    lv2 << 0.0f, -1.0f, -0.5f, 0.2f;
    const AggregateGrid a = aggregate_posterior_grid(mu2, lv2, spec);
    const Eigen::Vector2f u = grid_cell_center(a.spec, 100, 140);
    double expected = 0;
    for (int k = 0; k < 2; ++k)
      expected += 0.5 * gauss2(u.cast<double>(), mu2.col(k).cast<double>(),
                               lv2.col(k).cast<double>().array().exp().matrix().asDiagonal());
    CHECK(a.density(100, 140) == doctest::Approx(expected).epsilon(2e-3));
  }

  SUBCASE("a tilted plane (centre values of the exact marginal)") {
    Eigen::MatrixXf U(3, 2);
    U << 0.6f, 0.48f, 0.0f, 0.8f, 0.8f, -0.36f;  // orthonormal, dims 0 and 2 feed both directions
    GridSpec t = spec;
    t.directions = U;
    t.origin.resize(3);
    t.origin << 0.2f, 0.0f, -0.1f;
    const AggregateGrid a = aggregate_posterior_grid(mu, lv, t);
    const Eigen::MatrixXd Ud = U.cast<double>();
    const Eigen::Vector2d qm = Ud.transpose() * (m0 - t.origin).cast<double>();
    const Eigen::Matrix2d qC = Ud.transpose() * s0.cast<double>().array().square().matrix().asDiagonal() * Ud;
    for (auto [ix, iy] : {std::pair{128, 128}, std::pair{140, 120}, std::pair{90, 170}}) {
      const Eigen::Vector2d u = grid_cell_center(a.spec, ix, iy).cast<double>();
      CHECK(a.density(ix, iy) == doctest::Approx(gauss2(u, qm, qC)).epsilon(1e-4));
    }
    CHECK(a.aggregate_mass == doctest::Approx(1.0).epsilon(1e-3));
  }
}

namespace {

void check_estimators_agree(const Model& m, const Eigen::MatrixXf& x, int L, int draws, std::uint64_t seed) {
  Rng rng(seed);
  const EstimatorComparison c = compare_gradient_estimators(m, x, L, rng, draws, true);
  CAPTURE(c.compared);
  CAPTURE(c.max_abs_z);
  CAPTURE(c.chi2);
  CAPTURE(c.variance_ratio);
  CAPTURE(c.median_log10_variance_ratio);
  CHECK(c.param_index.size() == encoder_parameter_indices(m).size());
  CHECK(c.compared > 10);
  // Same expectation: every parameter's mean difference within ~5 standard errors, and the sum of
  // squared z-scores like a χ² with `compared` degrees of freedom.
  CHECK(c.max_abs_z < 5.0);
  CHECK(c.chi2 < c.compared + 6 * std::sqrt(2.0 * c.compared));
  // The test has power: the score-function mean alone is far from zero.
  double chi2_zero = 0;
  for (Eigen::Index i = 0; i < c.score.mean.size(); ++i)
    if (c.score.variance(i) > 0) chi2_zero += c.score.mean(i) * c.score.mean(i) / (c.score.variance(i) / draws);
  CHECK(chi2_zero > 10.0 * c.compared);
  // The reparameterised estimator is the quieter one, overall and parameter by parameter.
  CHECK(c.reparam.total_variance < c.score.total_variance);
  CHECK(c.variance_ratio > 2);
  CHECK(c.median_log10_variance_ratio > 0);
  CHECK(c.reparam.relative_variance < c.score.relative_variance);
  CHECK(c.reparam.mean_snr > c.score.mean_snr);

  // The leave-one-out baseline lowers the score function's variance (same draws).
  Rng again(seed);
  const EstimatorComparison nb = compare_gradient_estimators(m, x, L, again, draws, false);
  CHECK(nb.reparam.mean == c.reparam.mean);
  CHECK(nb.score.total_variance > c.score.total_variance);
}

}  // namespace

TEST_CASE("gap: score-function and reparameterised gradients agree in mean (linear-Gaussian)") {
  const LinearGaussianVae lg(2, 4, 31);
  const Model m = lg.model(0.6, 0.3, 2.5);
  Eigen::MatrixXf x(4, 3);
  for (int b = 0; b < 3; ++b) x.col(b) = some_x(4, 40 + b).cast<float>();
  check_estimators_agree(m, x, 4, 20000, 77);
}

TEST_CASE("gap: score-function and reparameterised gradients agree in mean (Bernoulli MLP)") {
  ModelConfig cfg;
  cfg.image_h = 2;
  cfg.image_w = 4;
  cfg.latent = 2;
  cfg.hidden = {6};
  Model m(cfg);
  m.init(9);
  Eigen::MatrixXf x(8, 4);
  Rng rng(2);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.uniform() < 0.4f ? 1.0f : 0.0f;
  check_estimators_agree(m, x, 3, 20000, 78);
}

TEST_CASE("gap: score_function_encoder_gradient keeps the decoder gradient and is zero at the exact posterior") {
  const LinearGaussianVae lg(2, 4, 13);
  Eigen::MatrixXf x(4, 2);
  x.col(0) = some_x(4, 1).cast<float>();
  x.col(1) = some_x(4, 2).cast<float>();
  const int L = 8;
  Rng rng(5);
  Eigen::MatrixXf eps(2, 2 * L);
  for (Eigen::Index i = 0; i < eps.size(); ++i) eps.data()[i] = rng.normal();
  const std::vector<std::size_t> enc = encoder_parameter_indices(lg.model());
  std::vector<bool> is_enc(lg.model().size(), false);
  for (std::size_t i : enc) is_enc[i] = true;

  {
    const Model m = lg.model(0.7, 0.2, 1.5);
    GradientEngine engine(m.config(), 2, L, 1);
    ParamVector plain(m.size(), 0.0f), score(m.size(), 0.0f);
    const StepStats a = engine.compute(m, x, eps, 1.0f, plain.data(), nullptr);
    const StepStats b = score_function_encoder_gradient(m, engine, x, eps, 1.0f, score.data());
    CHECK(a.loss == b.loss);
    bool decoder_same = true, encoder_differs = false;
    for (std::size_t i = 0; i < m.size(); ++i) {
      if (!is_enc[i]) decoder_same = decoder_same && plain[i] == score[i];
      if (is_enc[i]) encoder_differs = encoder_differs || plain[i] != score[i];
    }
    CHECK(decoder_same);
    CHECK(encoder_differs);
  }
  {
    // q = p(z|x): f = log p(x) for every z, so with the baseline every weight f − c is zero.
    const Model m = lg.model();
    GradientEngine engine(m.config(), 2, L, 1);
    ParamVector with(m.size(), 0.0f), without(m.size(), 0.0f);
    score_function_encoder_gradient(m, engine, x, eps, 1.0f, with.data(), nullptr, true);
    score_function_encoder_gradient(m, engine, x, eps, 1.0f, without.data(), nullptr, false);
    double big = 0, small = 0;
    for (std::size_t i : enc) {
      big = std::max(big, static_cast<double>(std::abs(without[i])));
      small = std::max(small, static_cast<double>(std::abs(with[i])));
    }
    CAPTURE(big);
    CAPTURE(small);
    CHECK(big > 0.1);
    CHECK(small < 1e-3 * big);
  }
}

TEST_CASE("gap: a mixture prior on the aggregate grid: one N(0, I) component is the default prior, K are their mean") {
  Rng rng(31);
  Eigen::MatrixXf mu(3, 40), lv(3, 40);
  for (Eigen::Index k = 0; k < mu.size(); ++k) {
    mu.data()[k] = rng.normal();
    lv.data()[k] = -1.0f + 0.3f * rng.normal();
  }
  GridSpec spec;
  spec.resolution = 96;
  spec.half_width = Eigen::Vector2f::Constant(6.0f);
  const AggregateGrid standard = aggregate_posterior_grid(mu, lv, spec);
  const Eigen::MatrixXf zero_mu = Eigen::MatrixXf::Zero(3, 1), zero_lv = Eigen::MatrixXf::Zero(3, 1);
  const AggregateGrid one = aggregate_posterior_grid(mu, lv, spec, nullptr, &zero_mu, &zero_lv);
  CHECK((one.prior - standard.prior).cwiseAbs().maxCoeff() < 1e-6f * standard.prior.maxCoeff());
  CHECK(one.hole_fraction == doctest::Approx(standard.hole_fraction));

  // Two far-apart clusters: the prior is the mean of their densities, each of mass 1 on this grid.
  Eigen::MatrixXf cm(3, 2), cl(3, 2);
  cm << -3, 3, 0, 0, 1, -1;
  cl << -1, 0, -0.5f, 0.5f, 0, 0;
  const AggregateGrid mix = aggregate_posterior_grid(mu, lv, spec, nullptr, &cm, &cl);
  const Eigen::MatrixXf a0 = cm.col(0), a1 = cm.col(1), l0 = cl.col(0), l1 = cl.col(1);
  const AggregateGrid c0 = aggregate_posterior_grid(a0, l0, spec), c1 = aggregate_posterior_grid(a1, l1, spec);
  CHECK(((mix.prior - 0.5f * (c0.density + c1.density)).cwiseAbs().maxCoeff()) < 1e-5f * mix.prior.maxCoeff());
  CHECK(mix.prior_mass == doctest::Approx(1.0).epsilon(1e-3));
  CHECK((mix.prior - standard.prior).cwiseAbs().maxCoeff() > 0.1f * standard.prior.maxCoeff());
  const Eigen::MatrixXf bad = Eigen::MatrixXf::Zero(2, 2);
  CHECK_THROWS_AS(aggregate_posterior_grid(mu, lv, spec, nullptr, &bad, &bad), Error);
}

TEST_CASE("gap: the aggregate view's half-width covers the prior and the codes") {
  using vaelab::aggregate_view_half_width;
  GridSpec spec;
  spec.resolution = 64;
  // N(0, I) and codes near 0: ±3σ of the prior, at the floor of 3.5.
  Eigen::MatrixXf mu = Eigen::MatrixXf::Constant(2, 50, 0.2f), lv = Eigen::MatrixXf::Constant(2, 50, -4.0f);
  CHECK(aggregate_view_half_width(mu, lv, spec) == 3.5f);
  // Codes far out on the second axis: 99 % of them with 2σ of their own (σ = e^{-2} ≈ 0.135).
  for (int n = 0; n < 50; ++n) mu(1, n) = n < 49 ? -6.0f : -40.0f;  // one outlier does not count
  CHECK(aggregate_view_half_width(mu, lv, spec) == 6.5f);
  // A mixture prior with a component at (7, 0), σ = 0.5: 7 + 1.5 → 8.5.
  Eigen::MatrixXf cm(2, 2), cl(2, 2);
  cm << 0.0f, 7.0f, 0.0f, 0.0f;
  cl.setConstant(2.0f * std::log(0.5f));
  const float h = aggregate_view_half_width(Eigen::MatrixXf::Zero(2, 3), Eigen::MatrixXf::Zero(2, 3), spec, &cm, &cl);
  CHECK(h == 8.5f);
  // With that window the mixture's mass is (almost) all in view; ±3.5 cut off half a component.
  spec.half_width.setConstant(h);
  const AggregateGrid wide = vaelab::aggregate_posterior_grid(Eigen::MatrixXf::Zero(2, 3), Eigen::MatrixXf::Zero(2, 3), spec,
                                                              nullptr, &cm, &cl);
  CHECK(wide.prior_mass > 0.99);
  spec.half_width.setConstant(3.5f);
  const AggregateGrid narrow = vaelab::aggregate_posterior_grid(Eigen::MatrixXf::Zero(2, 3), Eigen::MatrixXf::Zero(2, 3), spec,
                                                                nullptr, &cm, &cl);
  CHECK(narrow.prior_mass < 0.6);
  // In a plane of a 3-D latent space along (1, 1, 0)/√2 and dim 2, the projection decides.
  GridSpec tilted;
  tilted.directions = Eigen::MatrixXf::Zero(3, 2);
  tilted.directions(0, 0) = tilted.directions(1, 0) = std::sqrt(0.5f);
  tilted.directions(2, 1) = 1.0f;
  Eigen::MatrixXf m3 = Eigen::MatrixXf::Zero(3, 10), l3 = Eigen::MatrixXf::Constant(3, 10, -20.0f);
  m3.row(0).setConstant(5.0f);
  m3.row(1).setConstant(5.0f);  // 10/√2 ≈ 7.07 along the first direction
  CHECK(aggregate_view_half_width(m3, l3, tilted) == 7.5f);
  // Non-finite codes (a diverged encoder) give the widest window, not a crash.
  m3(0, 0) = std::numeric_limits<float>::quiet_NaN();
  for (int n = 1; n < 10; ++n) m3(0, n) = std::numeric_limits<float>::quiet_NaN();
  CHECK(aggregate_view_half_width(m3, l3, tilted) == 20.0f);
}
