// The vade family: a mixture prior p(z) = (1/K) Σ_y N(μ_y, σ_y²) whose own posterior p(y|z)
// assigns clusters, its symmetric start, its EM cluster fit and its checkpoint. The gradient
// against finite differences is in test_gradients.cpp, the trainer's fit in test_trainer.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include <Eigen/Core>

#include "core/checkpoint.hpp"
#include "core/data.hpp"
#include "core/model.hpp"
#include "core/objective.hpp"
#include "core/rng.hpp"
#include "core/train_step.hpp"
#include "support.hpp"

using namespace vaelab;

namespace {

ModelConfig vade_config(int K) {
  ModelConfig cfg;
  cfg.image_h = cfg.image_w = 4;
  cfg.latent = 2;
  cfg.hidden = {8};
  cfg.family = ModelFamily::Vade;
  cfg.clusters = K;
  return cfg;
}

// Σ_i log (1/K) Σ_y N(μ_i; μ_y, σ_y²) of the codes' means, in double.
double mixture_log_likelihood(const Eigen::MatrixXf& means, const Eigen::MatrixXf& logvars, const Eigen::MatrixXf& mu) {
  double total = 0;
  for (Eigen::Index i = 0; i < mu.cols(); ++i) {
    double best = -1e300;
    std::vector<double> t(static_cast<std::size_t>(means.cols()));
    for (Eigen::Index y = 0; y < means.cols(); ++y) {
      t[static_cast<std::size_t>(y)] = test::log_gauss(mu.col(i).cast<double>(), means.col(y).cast<double>(), logvars.col(y).cast<double>());
      best = std::max(best, t[static_cast<std::size_t>(y)]);
    }
    double s = 0;
    for (double v : t) s += std::exp(v - best);
    total += best + std::log(s / static_cast<double>(means.cols()));
  }
  return total;
}

}  // namespace

TEST_CASE("vade: p(y|z) is the mixture's exact posterior, so its ELBO term is log p(z) itself") {
  Model m(vade_config(4));
  m.init(3);
  CHECK(m.classifier().empty());
  Eigen::Map<Eigen::MatrixXf> means(m.data() + m.cluster_mean_offset(), 2, 4), logvars(m.data() + m.cluster_logvar_offset(), 2, 4);
  means << -3, -1, 1, 3, 0, 2, -2, 0;
  logvars << -0.5, 0, 0.5, -1, 0.2, -0.2, 0, 1;
  Rng rng(6);
  Eigen::MatrixXf z(2, 40);
  for (Eigen::Index k = 0; k < z.size(); ++k) z.data()[k] = 2.5f * rng.normal();
  Eigen::MatrixXf probs;
  m.classify(z, probs);
  const Eigen::VectorXf lp = log_prior(m, z);
  for (Eigen::Index c = 0; c < z.cols(); ++c) {
    // Bayes' rule in double: p(y|z) = N(z; μ_y, σ_y²) / Σ_y' N(z; μ_y', σ_y'²).
    double t[4], best = -1e300;
    for (int y = 0; y < 4; ++y) {
      t[y] = test::log_gauss(z.col(c).cast<double>(), means.col(y).cast<double>(), logvars.col(y).cast<double>());
      best = std::max(best, t[y]);
    }
    double s = 0;
    for (double v : t) s += std::exp(v - best);
    double bound = 0;
    for (int y = 0; y < 4; ++y) {
      const double p = std::exp(t[y] - best) / s;
      CHECK(probs(y, c) == doctest::Approx(p).epsilon(1e-5));
      if (probs(y, c) > 0) bound += probs(y, c) * (std::log(0.25) + t[y] - std::log(static_cast<double>(probs(y, c))));
    }
    // Jensen's inequality holds with equality at the true posterior.
    CHECK(bound == doctest::Approx(lp(c)).epsilon(1e-4));
  }
}

TEST_CASE("vade: every cluster starts as N(0, I), and identical clusters get identical gradients") {
  // The plain VAE's prior until the trainer's cluster fit splits it: the step cannot break the tie.
  ModelConfig cfg = vade_config(5);
  Model m(cfg);
  m.init(7);
  const Eigen::Map<const Eigen::MatrixXf> means(m.data() + m.cluster_mean_offset(), 2, 5);
  const Eigen::Map<const Eigen::MatrixXf> logvars(m.data() + m.cluster_logvar_offset(), 2, 5);
  CHECK(means.isZero(0));
  CHECK(logvars.isZero(0));
  Rng rng(2);
  Eigen::MatrixXf x(cfg.input_dim(), 6), eps(2, 6);
  for (Eigen::Index k = 0; k < x.size(); ++k) x.data()[k] = rng.uniform();
  for (Eigen::Index k = 0; k < eps.size(); ++k) eps.data()[k] = rng.normal();
  GradientEngine engine(cfg, 6, 1, 1);
  std::vector<float> grad(m.size());
  const StepStats st = engine.compute(m, x, eps, 1.0f, grad.data(), nullptr);
  CHECK(st.finite);
  // With equal clusters the mixture is N(0, I): the loss is the plain VAE's.
  const Eigen::MatrixXf z = Eigen::MatrixXf::Random(2, 9) * 2.0f;
  const Eigen::VectorXf lp = log_prior(m, z), standard = log_standard_normal(z);
  for (Eigen::Index c = 0; c < z.cols(); ++c) CHECK(lp(c) == doctest::Approx(standard(c)).epsilon(1e-5));
  const Eigen::Map<const Eigen::MatrixXf> d_means(grad.data() + m.cluster_mean_offset(), 2, 5);
  const Eigen::Map<const Eigen::MatrixXf> d_logvars(grad.data() + m.cluster_logvar_offset(), 2, 5);
  CHECK(d_means.cwiseAbs().maxCoeff() > 0);
  for (int y = 1; y < 5; ++y) {
    CHECK(d_means.col(y) == d_means.col(0));
    CHECK(d_logvars.col(y) == d_logvars.col(0));
  }
}

TEST_CASE("vade: the cluster fit's EM steps raise the mixture's likelihood of the codes and find unequal spreads") {
  // Two blobs with very different spreads, close enough that k-means, which knows no variances,
  // moves the boundary into the wide blob; EM's likelihood must not fall, and it ends nearer the truth.
  Model m(vade_config(2));
  m.init(1);
  const int per = 1500;
  Eigen::MatrixXf mu(2, 2 * per), lv(2, 2 * per);
  Rng rng(12);
  const float centre[2][2] = {{-1.5f, 0.0f}, {2.5f, 0.0f}}, spread[2] = {0.3f, 2.0f};
  for (int y = 0; y < 2; ++y)
    for (int i = 0; i < per; ++i)
      for (int j = 0; j < 2; ++j) {
        mu(j, y * per + i) = centre[y][j] + spread[y] * rng.normal();
        lv(j, y * per + i) = std::log(1e-4f);  // codes almost points: EM on their means
      }
  fit_clusters_to_codes(m, mu, lv, 5);  // k-means and kMixtureEmSteps of EM
  Eigen::MatrixXf em_means = m.cluster_means(), em_logvars = m.cluster_logvars_clamped();
  // From the k-means start, more EM steps never lower the likelihood.
  Model start(vade_config(2));
  start.init(1);
  Eigen::Map<Eigen::MatrixXf> means(start.data() + start.cluster_mean_offset(), 2, 2);
  Eigen::Map<Eigen::MatrixXf> logvars(start.data() + start.cluster_logvar_offset(), 2, 2);
  ModelConfig gm = vade_config(2);
  gm.family = ModelFamily::Gmvae;  // the same fit without EM: the k-means moments
  Model kmeans_only(gm);
  kmeans_only.init(1);
  fit_clusters_to_codes(kmeans_only, mu, lv, 5);
  means = kmeans_only.cluster_means();
  logvars = kmeans_only.cluster_logvars_clamped();
  const Eigen::MatrixXf start_means = means, start_logvars = logvars;
  double previous = mixture_log_likelihood(means, logvars, mu);
  const double at_kmeans = previous;
  for (const int steps : {1, 2, 3, 5, 10, 20, kMixtureEmSteps}) {
    CAPTURE(steps);
    means = start_means;
    logvars = start_logvars;
    refine_mixture_by_em(means, logvars, mu, lv, steps);
    const double now = mixture_log_likelihood(means, logvars, mu);
    CHECK(now >= previous - 1e-6 * std::abs(previous));
    previous = now;
  }
  CHECK(previous > at_kmeans + 10.0);  // EM improved on k-means' moments by a clear margin
  CHECK(Eigen::MatrixXf(means) == em_means);  // what the fit did
  CHECK(Eigen::MatrixXf(logvars) == em_logvars);
  // The narrow blob's cluster: mean and spread near the truth.
  Eigen::Index narrow = 0;
  em_logvars.colwise().sum().minCoeff(&narrow);
  CHECK(em_means(0, narrow) == doctest::Approx(-1.5).epsilon(0.05));
  CHECK(std::exp(0.5 * em_logvars(0, narrow)) == doctest::Approx(0.3).epsilon(0.15));
  const Eigen::Index wide = 1 - narrow;
  CHECK(std::exp(0.5 * em_logvars(1, wide)) == doctest::Approx(2.0).epsilon(0.15));
}

TEST_CASE("vade: a checkpoint keeps the family, the clusters and every parameter") {
  test::TempDir dir("vade");
  TrainingState s;
  s.model = vade_config(3);
  Model m(s.model);
  m.init(4);
  Eigen::Map<Eigen::MatrixXf>(m.data() + m.cluster_mean_offset(), 2, 3).setRandom();
  s.params.assign(m.params().begin(), m.params().end());
  s.adam.m.assign(s.params.size(), 0.0f);
  s.adam.v.assign(s.params.size(), 0.0f);
  const auto file = dir.path / "vade.vaelab";
  save_checkpoint(file, s);
  const TrainingState back = load_checkpoint(file);
  CHECK(back.model == s.model);
  CHECK(back.model.family == ModelFamily::Vade);
  CHECK(back.params == s.params);
}

TEST_CASE("vade: the evaluated ELBO is the exact bound with the mixture summed, below IWAE") {
  const auto data = test::synthetic_data(10, 20);
  ModelConfig cfg = vade_config(3);
  cfg.image_h = cfg.image_w = 8;
  Model m(cfg);
  m.init(5);
  Eigen::Map<Eigen::MatrixXf> means(m.data() + m.cluster_mean_offset(), 2, 3), logvars(m.data() + m.cluster_logvar_offset(), 2, 3);
  means << -1.5, 0, 1.5, 0.5, -1, 0.5;
  logvars << -1, -0.5, 0, -0.5, -1, 0;
  EvalOptions opt;
  opt.samples = 400;
  opt.iwae_k = 400;
  const Evaluation ev = evaluate(m, data->test, {}, opt);
  // An independent estimate of E_q[log p(x|z) + log p(z) − log q(z|x)], 4,000 draws per image.
  std::vector<int> idx(20);
  for (int i = 0; i < 20; ++i) idx[static_cast<std::size_t>(i)] = i;
  Eigen::MatrixXf x(cfg.input_dim(), 20), mu, lv, out;
  gather_batch(data->test, idx.data(), 20, Binarize::None, nullptr, x);
  m.encode(x, mu, lv);
  Rng rng(99);
  double total = 0;
  const int draws = 4000;
  for (int b = 0; b < 20; ++b) {
    Eigen::MatrixXf z(2, draws);
    for (int c = 0; c < draws; ++c)
      for (int j = 0; j < 2; ++j) z(j, c) = mu(j, b) + std::exp(0.5f * lv(j, b)) * rng.normal();
    m.decode_raw(z, out);
    const Eigen::MatrixXf xb = x.col(b).replicate(1, draws);
    const Eigen::VectorXf w = log_likelihood(cfg.likelihood, xb, out, m.decoder_logvar()) + log_prior(m, z) -
                              log_normal_diag(z, mu.col(b), lv.col(b));
    total += w.cast<double>().mean();
  }
  const double exact = total / 20;
  CHECK(ev.elbo == doctest::Approx(exact).epsilon(0.003));
  CHECK(ev.iwae >= ev.elbo);
}
