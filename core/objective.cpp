// ELBO terms, the analytic KL and the importance-weighted bound (see objective.hpp).
#include "core/objective.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>

#include "core/bernoulli_rows.hpp"
#include "core/data.hpp"
#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {

Eigen::VectorXf log_likelihood(Likelihood lik, const Eigen::Ref<const Eigen::MatrixXf>& x,
                               const Eigen::Ref<const Eigen::MatrixXf>& out, float logvar) {
  if (lik == Likelihood::Bernoulli) {
    // x·l − softplus(l), with softplus(l) = max(l, 0) + log1p(e^−|l|) (no overflow either way).
    const auto l = out.array();
    auto sp = l.max(0.0f) + (-l.abs()).exp().log1p();
    return (x.array() * l - sp).colwise().sum().transpose();
  }
  const float inv_var = std::exp(-logvar);
  const float per_pixel_const = 0.5f * (logvar + static_cast<float>(kLog2Pi));
  const Eigen::RowVectorXf sq = x.cols() == out.cols() ? Eigen::RowVectorXf((x - out).array().square().colwise().sum())
                                                       : Eigen::RowVectorXf((out.colwise() - x.col(0)).array().square().colwise().sum());
  return (-(0.5f * inv_var) * sq.array() - per_pixel_const * static_cast<float>(x.rows())).matrix().transpose();
}

Eigen::MatrixXf kl_elementwise(const Eigen::Ref<const Eigen::MatrixXf>& mu, const Eigen::Ref<const Eigen::MatrixXf>& logvar) {
  return 0.5f * (mu.array().square() + logvar.array().exp() - logvar.array() - 1.0f);
}

Eigen::VectorXf gmvae_prior_terms(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& mu,
                                  const Eigen::Ref<const Eigen::MatrixXf>& logvar,
                                  const Eigen::Ref<const Eigen::MatrixXf>& z, int L, Eigen::MatrixXf* kl_dim) {
  const int d = model.latent(), K = model.clusters(), B = static_cast<int>(mu.cols());
  const auto cm = model.cluster_means();
  const Eigen::MatrixXf cl = model.cluster_logvars_clamped();
  Eigen::MatrixXf probs;
  model.classify(z, probs);
  Eigen::VectorXf out(z.cols());
  if (kl_dim) kl_dim->setZero(d, B);
  for (int b = 0; b < B; ++b) {
    // cdim(j, y) = KL of dimension j between q(z|x) and cluster y's Gaussian.
    const Eigen::ArrayXXf diff = (cm.colwise() - mu.col(b)).array();
    const Eigen::ArrayXXf cdim =
        0.5f * ((cl.array().colwise() - logvar.col(b).array()) +
                (diff.square().colwise() + logvar.col(b).array().exp()) * (-cl.array()).exp() - 1.0f);
    const Eigen::RowVectorXf C = cdim.colwise().sum().matrix();  // (K)
    for (int l = 0; l < L; ++l) {
      const int c = b * L + l;
      const auto p = probs.col(c).array();
      out(c) = (p * C.transpose().array()).sum() + (p * (p * static_cast<float>(K)).max(1e-30f).log()).sum();
      if (kl_dim) kl_dim->col(b) += (cdim.matrix() * probs.col(c)) / static_cast<float>(L);
    }
  }
  return out;
}

Eigen::VectorXf log_normal_diag(const Eigen::Ref<const Eigen::MatrixXf>& z, const Eigen::Ref<const Eigen::MatrixXf>& mu,
                                const Eigen::Ref<const Eigen::MatrixXf>& logvar) {
  if (mu.cols() == z.cols()) {
    auto sq = (z - mu).array().square() * (-logvar.array()).exp();
    return (-0.5f * (sq + logvar.array() + static_cast<float>(kLog2Pi))).colwise().sum().transpose();
  }
  // One q for every column of z (an image's K importance samples).
  const Eigen::ArrayXf sq =
      ((z.colwise() - mu.col(0)).array().square().colwise() * (-logvar.col(0).array()).exp()).colwise().sum().transpose();
  return (-0.5f * (sq + logvar.col(0).sum() + static_cast<float>(z.rows() * kLog2Pi))).matrix();
}

Eigen::VectorXf log_standard_normal(const Eigen::Ref<const Eigen::MatrixXf>& z) {
  return (-0.5f * (z.array().square() + static_cast<float>(kLog2Pi))).colwise().sum().transpose();
}

Eigen::VectorXf log_prior(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& z) {
  const int K = model.clusters();
  if (K == 0) return log_standard_normal(z);
  const int d = model.latent(), n = static_cast<int>(z.cols());
  const auto cm = model.cluster_means();
  const Eigen::MatrixXf cl = model.cluster_logvars_clamped();  // as the training objective sees them
  Eigen::MatrixXf comp(K, n);  // log N(z_c; μ_y, σ_y²), broadcast over the columns (no replicas)
  for (int y = 0; y < K; ++y) {
    const float log_norm = -0.5f * (cl.col(y).sum() + static_cast<float>(d * kLog2Pi));
    const Eigen::ArrayXXf sq = (z.colwise() - cm.col(y)).array().square().colwise() * (-cl.col(y).array()).exp();
    comp.row(y) = (log_norm - 0.5f * sq.colwise().sum()).matrix();
  }
  Eigen::VectorXf out(n);
  for (int c = 0; c < n; ++c) out(c) = static_cast<float>(log_mean_exp(comp.col(c).data(), K));
  return out;
}

namespace {

// log ((1/divisor) Σ_i exp(a_i)), the largest a_i taken out first and the terms summed in order.
double log_scaled_exp_sum(const float* a, std::ptrdiff_t n, double divisor) {
  if (n <= 0) return -std::numeric_limits<double>::infinity();
  double mx = -std::numeric_limits<double>::infinity();
  for (std::ptrdiff_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(a[i]));
  if (!std::isfinite(mx)) return mx;  // all −inf (or a +inf / NaN dominates)
  double s = 0;
  for (std::ptrdiff_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(a[i]) - mx);
  return mx + std::log(s / divisor);
}

}  // namespace

double log_sum_exp(const float* a, std::ptrdiff_t n) { return log_scaled_exp_sum(a, n, 1.0); }

double log_mean_exp(const float* a, int k) { return log_scaled_exp_sum(a, k, k); }

namespace {

// log p(x, z) − log q(z|x) for each column of z. x: (D, G), mu/logvar: (d, G), z: (d, G·k) with
// column g·k + j belonging to example g. Each group's k columns are scored against its one x and
// q by broadcasting, not by repeating them k times: for IWAE_1000 the copies of x alone were
// 3 MB an image, and the Bernoulli term runs through the vectorised bernoulli_log_prob.
Eigen::VectorXf log_importance_weights(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                       const Eigen::Ref<const Eigen::MatrixXf>& mu,
                                       const Eigen::Ref<const Eigen::MatrixXf>& logvar,
                                       const Eigen::Ref<const Eigen::MatrixXf>& z, int k) {
  const int G = static_cast<int>(x.cols()), D = static_cast<int>(x.rows());
  Eigen::MatrixXf out;
  model.decode_raw(z, out);
  Eigen::VectorXf logw = log_prior(model, z);
  Eigen::VectorXf logp(k);
  for (int g = 0; g < G; ++g) {
    const Eigen::Index c0 = static_cast<Eigen::Index>(g) * k;
    const auto cols = out.middleCols(c0, k);
    if (model.config().likelihood == Likelihood::Bernoulli)
      bernoulli_log_prob(cols.data(), out.outerStride(), x.col(g).data(), 0, D, k, logp.data(), 1);
    else
      logp = log_likelihood(model.config().likelihood, x.col(g), cols, model.decoder_logvar());
    logw.segment(c0, k) += logp - log_normal_diag(z.middleCols(c0, k), mu.col(g), logvar.col(g));
  }
  return logw;
}

constexpr int kColumnsPerChunk = 4096;  // bounds the decoder output to D × 4096 floats

}  // namespace

Eigen::VectorXf iwae_bound(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                           const Eigen::Ref<const Eigen::MatrixXf>& eps, int K) {
  const int B = static_cast<int>(x.cols());
  Eigen::MatrixXf mu, logvar;
  model.encode(x, mu, logvar);
  const Eigen::MatrixXf sigma = (0.5f * logvar.array()).exp();
  Eigen::VectorXf result(B);
  std::vector<float> logw(K);
  for (int b = 0; b < B; ++b) {
    for (int k0 = 0; k0 < K; k0 += kColumnsPerChunk) {
      const int k = std::min(kColumnsPerChunk, K - k0);
      Eigen::MatrixXf z = eps.middleCols(static_cast<Eigen::Index>(b) * K + k0, k);
      z = (z.array().colwise() * sigma.col(b).array()).colwise() + mu.col(b).array();
      Eigen::VectorXf w = log_importance_weights(model, x.col(b), mu.col(b), logvar.col(b), z, k);
      std::copy(w.data(), w.data() + k, logw.begin() + k0);
    }
    result(b) = static_cast<float>(log_mean_exp(logw.data(), K));
  }
  return result;
}

Evaluation evaluate(const Model& model, const ImageSet& set, const std::vector<int>& idx_in,
                    const EvalOptions& opt, ThreadPool* pool) {
  std::vector<int> idx = idx_in;
  if (idx.empty()) {
    idx.resize(set.count);
    for (int i = 0; i < set.count; ++i) idx[i] = i;
  }
  const int n = static_cast<int>(idx.size());
  const int d = model.latent();
  const int L = std::max(1, opt.samples);
  // With IWAE, keep batches small enough that B·K columns stay bounded.
  int batch = std::max(1, opt.batch);
  if (opt.iwae_k > 0) batch = std::clamp(kColumnsPerChunk / opt.iwae_k, 1, batch);
  const int batches = (n + batch - 1) / batch;

  struct Partial {
    double recon = 0, kl = 0, iwae = 0;
    std::vector<double> kl_dim;
  };
  std::vector<Partial> parts(batches);
  Evaluation ev;
  ev.count = n;
  if (opt.keep_per_example) ev.elbo_per_example.resize(n);

  auto run_one_batch = [&](int bi) {
    const int lo = bi * batch, B = std::min(batch, n - lo);
    Rng rng(opt.seed + 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(bi + 1));
    Eigen::MatrixXf x(model.input_dim(), B);
    gather_batch(set, idx.data() + lo, B, Binarize::None, nullptr, x);
    Eigen::MatrixXf mu, logvar, out;
    model.encode(x, mu, logvar);
    const bool gmvae = model.clusters() > 0;
    Eigen::MatrixXf kl = gmvae ? Eigen::MatrixXf::Zero(d, B) : kl_elementwise(mu, logvar);
    Eigen::VectorXf kl_total = Eigen::VectorXf::Zero(B);
    const Eigen::MatrixXf sigma = (0.5f * logvar.array()).exp();
    Eigen::VectorXf recon = Eigen::VectorXf::Zero(B);
    Eigen::MatrixXf z(d, B), kl_dim;
    for (int l = 0; l < L; ++l) {
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < d; ++j) z(j, b) = mu(j, b) + sigma(j, b) * rng.normal();
      model.decode_raw(z, out);
      recon += log_likelihood(model.config().likelihood, x, out, model.decoder_logvar());
      if (gmvae) {
        const Eigen::VectorXf terms = gmvae_prior_terms(model, mu, logvar, z, 1, &kl_dim);
        // vade's q(y|z) is the exact p(y|z), so its ELBO is E_q[log p(x|z) + log p(z) − log q(z|x)]
        // with the mixture summed exactly: the sampled KL log q(z|x) − log p(z) estimates it without
        // bias. Its training loss keeps the closed-form KLs weighted by p(y|z), which have less
        // noise; their per-dimension split is what the KL panel shows for both families.
        kl_total += model.config().family == ModelFamily::Vade ? Eigen::VectorXf(log_normal_diag(z, mu, logvar) - log_prior(model, z))
                                                               : terms;
        kl += kl_dim;
      }
    }
    recon /= static_cast<float>(L);
    if (gmvae) {
      kl_total /= static_cast<float>(L);
      kl /= static_cast<float>(L);
    } else {
      kl_total = kl.colwise().sum().transpose();
    }
    Partial& p = parts[bi];
    p.recon = recon.cast<double>().sum();
    p.kl = kl_total.cast<double>().sum();
    p.kl_dim.resize(d);
    for (int j = 0; j < d; ++j) p.kl_dim[j] = kl.row(j).cast<double>().sum();
    if (opt.keep_per_example)
      for (int b = 0; b < B; ++b) ev.elbo_per_example[lo + b] = recon(b) - kl_total(b);
    // For the clustering VAE the bound uses the exact mixture p(z) (log_prior), so it also closes
    // the ELBO's second gap, the classifier q(y|z) standing in for the true p(y|z).
    if (opt.iwae_k > 0) {
      const int K = opt.iwae_k;
      Eigen::MatrixXf eps(d, static_cast<Eigen::Index>(B) * K);
      for (Eigen::Index c = 0; c < eps.cols(); ++c)
        for (int j = 0; j < d; ++j) eps(j, c) = rng.normal();
      p.iwae = iwae_bound(model, x, eps, K).cast<double>().sum();
    }
  };
  const EvalProgress* progress = opt.progress;
  std::mutex progress_mutex;
  int done = 0;
  std::atomic<bool> cancelled{false};
  auto run_batch = [&](int bi) {
    if (progress && progress->cancel && progress->cancel->load()) {
      cancelled = true;
      return;
    }
    run_one_batch(bi);
    if (progress) {
      const std::lock_guard<std::mutex> lock(progress_mutex);
      done += std::min(batch, n - bi * batch);
      if (progress->report) progress->report(done, n);
    }
  };
  run_tasks(pool, batches, run_batch);
  if (cancelled)
    throw EvaluationCancelled("the evaluation was cancelled after " + std::to_string(done) + " of " + std::to_string(n) +
                              " images");

  ev.kl_per_dim.assign(d, 0.0);
  double iwae = 0;
  for (const Partial& p : parts) {
    ev.recon += p.recon;
    ev.kl += p.kl;
    iwae += p.iwae;
    for (int j = 0; j < d; ++j) ev.kl_per_dim[j] += p.kl_dim[j];
  }
  if (n > 0) {
    ev.recon /= n;
    ev.kl /= n;
    for (double& v : ev.kl_per_dim) v /= n;
    if (opt.iwae_k > 0) ev.iwae = iwae / n;
  }
  ev.elbo = ev.recon - ev.kl;
  return ev;
}

}  // namespace vaelab
