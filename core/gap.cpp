// The analyses of gap.hpp: posterior and aggregate-posterior grids, active units, and the
// score-function encoder gradient. Not part of the training step: everything here allocates.
// Shapes: D pixels, d latent dims, n cells per grid side, B examples, L samples per example.
#include "core/gap.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <Eigen/LU>  // 2×2 inverse and determinant

#include "core/error.hpp"
#include "core/layers.hpp"
#include "core/objective.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {

namespace {

constexpr int kChunk = 4096;  // decoder columns per batch: bounds the output to D × 4096 floats
constexpr double kPi = 3.141592653589793;

// The plane z = z0 + U u as used, after defaults and checks.
struct Plane {
  Eigen::VectorXf z0;  // (d)
  Eigen::MatrixXf U;   // (d, 2)
};

// Checks spec against latent size d and fills in its origin and directions. An empty origin
// becomes the plane through *through (when given) or the origin of the latent space.
Plane resolve_plane(GridSpec& spec, int d, const Eigen::VectorXf* through) {
  auto fail = [](const std::string& what) { throw Error("latent grid: " + what); };
  if (d < 2) fail("needs a latent size of at least 2, this model has " + std::to_string(d));
  if (spec.resolution < 2 || spec.resolution > 4096)
    fail("resolution " + std::to_string(spec.resolution) + " is out of range: 2 to 4096 cells per side");
  if (!(spec.half_width.array() > 0).all() || !spec.half_width.allFinite())
    fail("the window's half widths must be finite and greater than 0");
  if (!spec.center.allFinite()) fail("the window's centre must be finite");
  Plane p;
  if (spec.directions.size() == 0) {
    p.U = Eigen::MatrixXf::Zero(d, 2);
    p.U(0, 0) = 1.0f;
    p.U(1, 1) = 1.0f;
  } else {
    if (spec.directions.rows() != d || spec.directions.cols() != 2)
      fail("directions must be a (" + std::to_string(d) + ", 2) matrix");
    p.U = spec.directions;
    const Eigen::Matrix2f gram = p.U.transpose() * p.U;
    // Orthonormality is what makes u a faithful coordinate: cell areas are areas in z-space.
    if (!((gram - Eigen::Matrix2f::Identity()).cwiseAbs().maxCoeff() < 1e-3f))
      fail("the two directions must be orthonormal (unit length, at right angles)");
  }
  if (spec.origin.size() == 0) {
    p.z0 = through ? Eigen::VectorXf(*through - p.U * (p.U.transpose() * *through)) : Eigen::VectorXf::Zero(d);
  } else {
    if (spec.origin.size() != d) fail("the origin must have " + std::to_string(d) + " entries, one per latent dim");
    if (!spec.origin.allFinite()) fail("the origin must be finite");
    p.z0 = spec.origin;
  }
  spec.origin = p.z0;
  spec.directions = p.U;
  return p;
}

Eigen::Vector2d cell_step(const GridSpec& s) {
  return (2.0 * s.half_width.cast<double>()) / static_cast<double>(s.resolution);
}

Eigen::Vector2d cell_center_d(const GridSpec& s, int ix, int iy) {
  const Eigen::Vector2d h = cell_step(s);
  const Eigen::Vector2d lo = s.center.cast<double>() - s.half_width.cast<double>();
  return {lo(0) + (ix + 0.5) * h(0), lo(1) + (iy + 0.5) * h(1)};
}

// The 1σ ellipse of a 2×2 covariance C centred at c, from the closed-form eigen-decomposition.
Ellipse ellipse_of(const Eigen::Vector2d& c, const Eigen::Matrix2d& C, double k) {
  const double a = C(0, 0), b = C(0, 1), e = C(1, 1);
  const double mid = 0.5 * (a + e), rad = std::sqrt(0.25 * (a - e) * (a - e) + b * b);
  Ellipse el;
  el.center = c.cast<float>();
  el.axes = Eigen::Vector2f(static_cast<float>(k * std::sqrt(std::max(0.0, mid + rad))),
                            static_cast<float>(k * std::sqrt(std::max(0.0, mid - rad))));
  el.angle = static_cast<float>(0.5 * std::atan2(2 * b, a - e));
  return el;
}

// Fills mass(i, col) with the mean density over cell i of N(m, sd²) along one axis whose n + 1
// cell edges are lo + i·h. One erfc per edge, each taken in the tail it is in, so far-out cells
// keep their relative precision instead of cancelling 1 − 1.
void cell_averages(double lo, double h, int n, double m, double sd, float* col) {
  constexpr double kInvSqrt2 = 0.7071067811865476;
  thread_local std::vector<double> tail;
  tail.resize(n + 1);
  for (int i = 0; i <= n; ++i) {
    const double t = (lo + i * h - m) / sd;
    tail[i] = 0.5 * std::erfc(std::abs(t) * kInvSqrt2);  // P(below) for t < 0, P(above) for t ≥ 0
  }
  for (int i = 0; i < n; ++i) {
    const double a = lo + i * h, b = a + h;
    double mass;
    if (b <= m)
      mass = tail[i + 1] - tail[i];
    else if (a >= m)
      mass = tail[i] - tail[i + 1];
    else
      mass = 1.0 - tail[i] - tail[i + 1];
    col[i] = static_cast<float>(std::max(0.0, mass) / h);
  }
}

}  // namespace

Eigen::Vector2f grid_cell_center(const GridSpec& spec, int ix, int iy) {
  return cell_center_d(spec, ix, iy).cast<float>();
}

// ---- posterior grid ---------------------------------------------------------------------------

PosteriorGrid posterior_grid(const Model& model, const Eigen::VectorXf& x, const GridSpec& spec, const GapOptions& opt,
                             ThreadPool* pool) {
  const int d = model.latent(), D = model.input_dim();
  if (x.size() != D)
    throw Error("posterior grid: the image has " + std::to_string(x.size()) + " pixels, the model expects " +
                std::to_string(D));
  PosteriorGrid g;
  Eigen::MatrixXf mu, lv;  // (d, 1)
  model.encode(x, mu, lv);
  g.q_mu = mu.col(0);
  g.q_sigma = (0.5f * lv.col(0).array()).exp();
  g.spec = spec;
  const Plane p = resolve_plane(g.spec, d, &g.q_mu);
  g.exact = d == 2;

  const int n = g.spec.resolution, cells = n * n;
  const Eigen::Vector2d h = cell_step(g.spec);
  g.cell_area = h(0) * h(1);
  const Likelihood lik = model.config().likelihood;
  const float dec_lv = model.decoder_logvar();

  // log p(x, z) and log q(z|x) at every cell centre; cell c = ix + n·iy.
  g.log_joint.resize(n, n);
  Eigen::MatrixXf log_q(n, n);
  const int chunks = (cells + kChunk - 1) / kChunk;
  run_tasks(pool, chunks, [&](int c) {
    const int lo = c * kChunk, k = std::min(kChunk, cells - lo);
    Eigen::MatrixXf z(d, k), out;
    for (int t = 0; t < k; ++t) {
      const int idx = lo + t;
      const Eigen::Vector2f u = cell_center_d(g.spec, idx % n, idx / n).cast<float>();
      z.col(t) = p.z0 + p.U * u;
    }
    model.decode_raw(z, out);
    const Eigen::MatrixXf xr = x.replicate(1, k);
    Eigen::Map<Eigen::VectorXf>(g.log_joint.data() + lo, k) =
        log_likelihood(lik, xr, out, dec_lv) + log_prior(model, z);
    Eigen::Map<Eigen::VectorXf>(log_q.data() + lo, k) = log_normal_diag(z, mu.replicate(1, k), lv.replicate(1, k));
  });

  // Midpoint-rule quadrature: ∫ p(x, z) dz ≈ Σ_cells p(x, z_c) · area.
  const double lse_p = log_sum_exp(g.log_joint.data(), g.log_joint.size()),
               lse_q = log_sum_exp(log_q.data(), log_q.size());
  g.log_px = lse_p + std::log(g.cell_area);

  g.density.resize(n, n);
  g.q_density.resize(n, n);
  const double inv_area = 1.0 / g.cell_area;
  double kl = 0, edge = 0;
  Eigen::Vector2d m1 = Eigen::Vector2d::Zero();
  Eigen::Matrix2d m2 = Eigen::Matrix2d::Zero();
  for (int iy = 0; iy < n; ++iy)
    for (int ix = 0; ix < n; ++ix) {
      // Cell masses in the log domain: log(q_c / p_c) stays finite where either underflows.
      const double lp = g.log_joint(ix, iy) - lse_p, lq = log_q(ix, iy) - lse_q;
      const double pc = std::exp(lp), qc = std::exp(lq);
      g.density(ix, iy) = static_cast<float>(pc * inv_area);
      g.q_density(ix, iy) = static_cast<float>(qc * inv_area);
      if (qc > 0) kl += qc * (lq - lp);
      if (ix == 0 || iy == 0 || ix == n - 1 || iy == n - 1) edge += pc;
      const Eigen::Vector2d u = cell_center_d(g.spec, ix, iy);
      m1 += pc * u;
      m2 += pc * u * u.transpose();
    }
  g.kl_grid = kl;
  g.edge_mass = edge;
  g.posterior_mean = m1;
  g.posterior_cov = m2 - m1 * m1.transpose();

  // q conditioned on the plane: precision Uᵀ Σ⁻¹ U, mean from the normal equations. For an
  // axis-aligned plane this is q's marginal on those dims.
  {
    const Eigen::MatrixXd U = p.U.cast<double>();
    const Eigen::VectorXd inv_var = (-lv.col(0).cast<double>().array()).exp();
    const Eigen::Matrix2d prec = U.transpose() * inv_var.asDiagonal() * U;
    const Eigen::Matrix2d cov = prec.inverse();
    const Eigen::VectorXd r = (g.q_mu - p.z0).cast<double>();
    const Eigen::Vector2d c = cov * (U.transpose() * inv_var.cwiseProduct(r));
    g.q_1sigma = ellipse_of(c, cov, 1.0);
    g.q_2sigma = ellipse_of(c, cov, 2.0);
  }

  // ELBO = E_q[log p(x|z)] − KL(q ‖ p(z)): Monte Carlo for the first term, closed form for the second
  // (N(0, I)); the clustering VAE's mixture prior has no closed-form KL, so it is Monte Carlo too,
  // on the same samples.
  Rng rng(opt.seed);
  const int L = std::max(1, opt.elbo_samples);
  const bool mixture = model.clusters() > 0;
  double s1 = 0, s2 = 0, kl_mc = 0;
  for (int l0 = 0; l0 < L; l0 += kChunk) {
    const int k = std::min(kChunk, L - l0);
    Eigen::MatrixXf z(d, k), out;
    for (int t = 0; t < k; ++t)
      for (int j = 0; j < d; ++j) z(j, t) = g.q_mu(j) + g.q_sigma(j) * rng.normal();
    model.decode_raw(z, out);
    const Eigen::VectorXd ll = log_likelihood(lik, x.replicate(1, k), out, dec_lv).cast<double>();
    s1 += ll.sum();
    s2 += ll.squaredNorm();
    if (mixture) kl_mc += (log_normal_diag(z, mu.replicate(1, k), lv.replicate(1, k)) - log_prior(model, z)).cast<double>().sum();
  }
  g.recon = s1 / L;
  const double var = L > 1 ? std::max(0.0, (s2 - s1 * g.recon) / (L - 1)) : 0.0;
  g.elbo_se = std::sqrt(var / L);
  g.kl_prior = mixture ? kl_mc / L : kl_elementwise(mu, lv).cast<double>().sum();
  g.elbo = g.recon - g.kl_prior;
  g.gap_check = g.log_px - g.elbo;

  g.iwae = std::numeric_limits<double>::quiet_NaN();
  if (opt.iwae_k > 0) {
    Eigen::MatrixXf eps(d, opt.iwae_k);
    for (Eigen::Index c = 0; c < eps.cols(); ++c)
      for (int j = 0; j < d; ++j) eps(j, c) = rng.normal();
    g.iwae = iwae_bound(model, x, eps, opt.iwae_k)(0);
  }
  return g;
}

GridSpec auto_grid_for(const Eigen::VectorXf& q_mean, const Eigen::VectorXf& q_sigma, const GridSpec& base) {
  if (q_sigma.size() != q_mean.size()) throw Error("auto grid: q's mean and sigma must have the same size");
  GridSpec s = base;
  const Plane p = resolve_plane(s, static_cast<int>(q_mean.size()), &q_mean);
  s.center = p.U.transpose() * (q_mean - p.z0);
  for (int k = 0; k < 2; ++k) {
    const float sd = std::sqrt((p.U.col(k).array().square() * q_sigma.array().square()).sum());
    // ±3 at least: a narrow q must not hide a broad posterior around it.
    s.half_width(k) = std::max(4.0f * sd, 3.0f);
  }
  return s;
}

// ---- active units -----------------------------------------------------------------------------

ActiveUnits active_units(const Eigen::MatrixXf& mu, float threshold) {
  ActiveUnits a;
  a.threshold = threshold;
  const int d = static_cast<int>(mu.rows());
  a.variance.assign(d, 0.0);
  a.active.assign(d, false);
  if (mu.cols() == 0) return a;
  for (int j = 0; j < d; ++j) {
    const Eigen::RowVectorXd row = mu.row(j).cast<double>();
    const double mean = row.mean();
    a.variance[j] = (row.array() - mean).square().mean();
    a.active[j] = a.variance[j] > threshold;
    a.count += a.active[j] ? 1 : 0;
  }
  return a;
}

std::vector<bool> collapsed_dims(const ActiveUnits& units, const std::vector<double>& kl_per_dim, double kl_threshold) {
  if (kl_per_dim.size() != units.variance.size())
    throw Error("collapsed dims: " + std::to_string(kl_per_dim.size()) + " KL values for " +
                std::to_string(units.variance.size()) + " latent dims");
  std::vector<bool> out(units.variance.size());
  for (std::size_t j = 0; j < out.size(); ++j)
    out[j] = units.variance[j] < units.threshold && kl_per_dim[j] < kl_threshold;
  return out;
}

// ---- aggregate posterior ----------------------------------------------------------------------

namespace {

// The density on the plane of an equal-weight mixture of diagonal Gaussians (mu, logvar: (d, N)):
// component n's marginal has mean Uᵀ(μ_n − z0) (2, N) and covariance Uᵀ diag(σ_n²) U. Exact cell
// averages when the plane is separable (see aggregate_posterior_grid), else cell-centre values.
Eigen::MatrixXf plane_mixture_density(const Eigen::MatrixXf& mu, const Eigen::MatrixXf& logvar, const Plane& p,
                                      const GridSpec& spec, ThreadPool* pool) {
  const int d = static_cast<int>(mu.rows()), N = static_cast<int>(mu.cols()), n = spec.resolution;
  const Eigen::Vector2d h = cell_step(spec);
  const Eigen::Vector2d lo = spec.center.cast<double>() - spec.half_width.cast<double>();
  const Eigen::MatrixXd U = p.U.cast<double>();
  Eigen::MatrixXf density;
  const Eigen::MatrixXd m = U.transpose() * (mu.cast<double>().colwise() - p.z0.cast<double>());  // (2, N)
  const Eigen::MatrixXd var = logvar.cast<double>().array().exp();                                // (d, N)
  bool separable = true;  // Uᵀ diag(s) U diagonal for every s: no latent dim feeds both directions
  for (int j = 0; j < d; ++j) separable = separable && U(j, 0) * U(j, 1) == 0.0;

  constexpr int kBlock = 256;  // examples (or grid rows) per task
  if (separable) {
    const Eigen::MatrixXd s = U.array().square().matrix().transpose() * var;  // (2, N) marginal variances
    // density = (1/N) Σ_n a_n b_nᵀ with a_n, b_n the cell averages along each axis: one product.
    Eigen::MatrixXf A0(n, N), A1(n, N);
    const int blocks = (N + kBlock - 1) / kBlock;
    run_tasks(pool, blocks, [&](int bi) {
      for (int c = bi * kBlock; c < std::min(N, (bi + 1) * kBlock); ++c) {
        cell_averages(lo(0), h(0), n, m(0, c), std::sqrt(s(0, c)), A0.col(c).data());
        cell_averages(lo(1), h(1), n, m(1, c), std::sqrt(s(1, c)), A1.col(c).data());
      }
    });
    density.resize(n, n);
    const int parts = pool ? std::min(n, pool->size()) : 1;
    run_tasks(pool, parts, [&](int t) {
      const int c0 = n * t / parts, c1 = n * (t + 1) / parts;
      density.middleCols(c0, c1 - c0).noalias() = A0 * A1.middleRows(c0, c1 - c0).transpose();
    });
    density /= static_cast<float>(N);
  } else {
    // General plane: 2×2 covariances with correlation, evaluated at cell centres.
    std::vector<Eigen::Matrix2d> prec(N);
    Eigen::VectorXd log_norm(N);
    for (int c = 0; c < N; ++c) {
      const Eigen::Matrix2d C = U.transpose() * var.col(c).asDiagonal() * U;
      prec[c] = C.inverse();
      log_norm(c) = -std::log(2 * kPi) - 0.5 * std::log(C.determinant());
    }
    density.resize(n, n);
    const int blocks = (n + 15) / 16;
    run_tasks(pool, blocks, [&](int bi) {
      for (int iy = bi * 16; iy < std::min(n, (bi + 1) * 16); ++iy)
        for (int ix = 0; ix < n; ++ix) {
          const Eigen::Vector2d u = cell_center_d(spec, ix, iy);
          double sum = 0;
          for (int c = 0; c < N; ++c) {
            const Eigen::Vector2d r = u - m.col(c);
            sum += std::exp(log_norm(c) - 0.5 * r.dot(prec[c] * r));
          }
          density(ix, iy) = static_cast<float>(sum / N);
        }
    });
  }

  return density;
}

}  // namespace

float aggregate_view_half_width(const Eigen::MatrixXf& mu, const Eigen::MatrixXf& logvar, const GridSpec& spec,
                                const Eigen::MatrixXf* prior_mu, const Eigen::MatrixXf* prior_logvar, float min_half) {
  const int d = static_cast<int>(mu.rows());
  if (logvar.rows() != mu.rows() || logvar.cols() != mu.cols())
    throw Error("aggregate view: mu and logvar must have the same shape (d, N)");
  GridSpec s = spec;
  const Plane p = resolve_plane(s, d, nullptr);
  const Eigen::Vector2f c = s.center;
  // How far a Gaussian N(m, diag e^lv) reaches from the window's centre along the plane's axes,
  // with k standard deviations of its marginal on each direction.
  auto reach = [&](const Eigen::VectorXf& m, const Eigen::VectorXf& lv, float k) {
    const Eigen::Vector2f u = p.U.transpose() * (m - p.z0);
    const Eigen::Vector2f sd = (p.U.array().square().matrix().transpose() * lv.array().exp().matrix()).cwiseSqrt();
    const float r = ((u - c).cwiseAbs() + k * sd).maxCoeff();
    return std::isfinite(r) ? r : std::numeric_limits<float>::infinity();  // NaN codes sort last
  };
  float need = 0;
  if (prior_mu && prior_logvar) {
    if (prior_mu->rows() != d || prior_logvar->rows() != d || prior_logvar->cols() != prior_mu->cols())
      throw Error("aggregate view: the prior's components must be (d, K) means and log variances");
    for (Eigen::Index y = 0; y < prior_mu->cols(); ++y) need = std::max(need, reach(prior_mu->col(y), prior_logvar->col(y), 3.0f));
  } else {
    need = reach(Eigen::VectorXf::Zero(d), Eigen::VectorXf::Zero(d), 3.0f);
  }
  if (mu.cols() > 0) {
    std::vector<float> r(static_cast<std::size_t>(mu.cols()));
    for (Eigen::Index n = 0; n < mu.cols(); ++n) r[static_cast<std::size_t>(n)] = reach(mu.col(n), logvar.col(n), 2.0f);
    const auto q = static_cast<std::size_t>(0.99 * static_cast<double>(r.size() - 1));
    std::nth_element(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(q), r.end());
    need = std::max(need, r[q]);
  }
  if (!std::isfinite(need)) need = 20.0f;
  return std::clamp(std::ceil(need * 2.0f) / 2.0f, min_half, 20.0f);
}

AggregateGrid aggregate_posterior_grid(const Eigen::MatrixXf& mu, const Eigen::MatrixXf& logvar, const GridSpec& spec,
                                       ThreadPool* pool, const Eigen::MatrixXf* prior_mu, const Eigen::MatrixXf* prior_logvar) {
  const int d = static_cast<int>(mu.rows()), N = static_cast<int>(mu.cols());
  if (logvar.rows() != mu.rows() || logvar.cols() != mu.cols())
    throw Error("aggregate posterior: mu and logvar must have the same shape (d, N)");
  if (N < 1) throw Error("aggregate posterior: needs at least one encoded example");
  AggregateGrid a;
  a.spec = spec;
  const Plane p = resolve_plane(a.spec, d, nullptr);
  const int n = a.spec.resolution;
  const Eigen::Vector2d h = cell_step(a.spec);
  const Eigen::Vector2d lo = a.spec.center.cast<double>() - a.spec.half_width.cast<double>();
  a.cell_area = h(0) * h(1);

  a.density = plane_mixture_density(mu, logvar, p, a.spec, pool);

  // The prior's marginal on an orthonormal plane is N(−Uᵀ z0, I): always separable. A mixture
  // prior (the clustering VAE's) is a density of the same kind as the aggregate.
  if (prior_mu && prior_logvar) {
    if (prior_mu->rows() != d || prior_logvar->rows() != d || prior_logvar->cols() != prior_mu->cols() || prior_mu->cols() < 1)
      throw Error("aggregate posterior: the prior's components must be (d, K) means and log variances");
    a.prior = plane_mixture_density(*prior_mu, *prior_logvar, p, a.spec, pool);
  } else {
    const Eigen::Vector2d pm = -(p.U.cast<double>().transpose() * p.z0.cast<double>());
    Eigen::VectorXf P0(n), P1(n);
    cell_averages(lo(0), h(0), n, pm(0), 1.0, P0.data());
    cell_averages(lo(1), h(1), n, pm(1), 1.0, P1.data());
    a.prior.noalias() = P0 * P1.transpose();
  }

  double agg = 0, prior = 0, holes = 0;
  for (Eigen::Index i = 0; i < a.prior.size(); ++i) {
    const double q = a.density.data()[i], pr = a.prior.data()[i];
    agg += q;
    prior += pr;
    if (q < 0.1 * pr) holes += pr;
  }
  a.aggregate_mass = agg * a.cell_area;
  a.prior_mass = prior * a.cell_area;
  a.hole_fraction = prior > 0 ? holes / prior : 0.0;
  return a;
}

// ---- score-function gradient ------------------------------------------------------------------

std::vector<std::size_t> encoder_parameter_indices(const Model& model) {
  std::vector<std::size_t> idx;
  for (const DenseShape& l : model.encoder()) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(l.in) * l.out; ++i) idx.push_back(l.w + i);
    for (int i = 0; i < l.out; ++i) idx.push_back(l.b + static_cast<std::size_t>(i));
  }
  return idx;
}

namespace {

// Writes the score-function estimate of d loss / dφ into g's encoder weights and biases (every
// one assigned, nothing else touched). x: (D, B), eps: (d, B·L).
void score_encoder_part(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                        const Eigen::Ref<const Eigen::MatrixXf>& eps, int L, float beta, bool baseline, float* g) {
  const int d = model.latent(), B = static_cast<int>(x.cols()), C = B * L;
  if (x.rows() != model.input_dim() || eps.rows() != d || eps.cols() != C)
    throw Error("score-function gradient: x must be (D, B) and eps (d, B·L)");
  const auto& enc = model.encoder();
  const std::size_t ne = enc.size();

  // Encoder forward, keeping each layer's output: acts[i] (out_i, B); acts.back() is the head (2d, B).
  std::vector<Eigen::MatrixXf> acts(ne);
  for (std::size_t i = 0; i < ne; ++i) {
    acts[i].resize(enc[i].out, B);
    dense_forward(model.W(enc[i]), model.b(enc[i]), i == 0 ? x : Eigen::Ref<const Eigen::MatrixXf>(acts[i - 1]),
                  acts[i]);
    if (i + 1 < ne) relu_forward(acts[i]);
  }
  const Eigen::MatrixXf& head = acts.back();
  const Eigen::MatrixXf lv = head.bottomRows(d).cwiseMax(kLogVarMin).cwiseMin(kLogVarMax);  // (d, B)
  const Eigen::MatrixXf sigma = (0.5f * lv.array()).exp();

  // f = log p(x|z) + β (log p(z) − log q(z|x)) per sample; with z = μ + σ ε,
  // log p(z) − log q(z|x) = Σ_j ½ (ε_j² − z_j² + log σ_j²) (the 2π terms cancel).
  Eigen::MatrixXf z(d, C), xr(x.rows(), C), out;
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l) {
      z.col(b * L + l) = head.col(b).head(d) + sigma.col(b).cwiseProduct(eps.col(b * L + l));
      xr.col(b * L + l) = x.col(b);
    }
  model.decode_raw(z, out);
  const Eigen::VectorXf ll = log_likelihood(model.config().likelihood, xr, out, model.decoder_logvar());
  std::vector<double> f(C);
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < L; ++l) {
      const int c = b * L + l;
      double prior_minus_q = 0;
      for (int j = 0; j < d; ++j)
        prior_minus_q +=
            0.5 * (static_cast<double>(eps(j, c)) * eps(j, c) - static_cast<double>(z(j, c)) * z(j, c) + lv(j, b));
      f[c] = ll(c) + beta * prior_minus_q;
    }

  // d loss / d head = −(1/(B L)) Σ_l (f − c) ∇ log q, with ∇_μ log q = ε/σ, ∇_{log σ²} log q = ½(ε² − 1).
  Eigen::MatrixXf dhead = Eigen::MatrixXf::Zero(2 * d, B);
  const double scale = -1.0 / (static_cast<double>(B) * L);
  const bool use_baseline = baseline && L > 1;
  for (int b = 0; b < B; ++b) {
    double total = 0;
    for (int l = 0; l < L; ++l) total += f[b * L + l];
    for (int j = 0; j < d; ++j) {
      double dmu = 0, dlv = 0;
      for (int l = 0; l < L; ++l) {
        const int c = b * L + l;
        const double w = f[c] - (use_baseline ? (total - f[c]) / (L - 1) : 0.0);
        const double e = eps(j, c);
        dmu += w * e;
        dlv += w * 0.5 * (e * e - 1.0);
      }
      dhead(j, b) = static_cast<float>(scale * dmu / sigma(j, b));
      const float raw = head(d + j, b);
      // Where log σ² is clamped the head's raw output does not move q: zero gradient, as in GradientEngine.
      dhead(d + j, b) = (raw < kLogVarMin || raw > kLogVarMax) ? 0.0f : static_cast<float>(scale * dlv);
    }
  }

  // Encoder backward, layer by layer (no gradient for the input).
  Eigen::MatrixXf dy = std::move(dhead), dx;
  for (std::size_t i = ne; i-- > 0;) {
    const DenseShape& l = enc[i];
    Eigen::Map<Eigen::MatrixXf> gW(g + l.w, l.out, l.in);
    Eigen::Map<Eigen::VectorXf> gb(g + l.b, l.out);
    if (i == 0) {
      dense_backward(model.W(l), x, dy, gW, gb, nullptr);
    } else {
      dx.resize(l.in, B);
      MatRef dxr(dx);
      dense_backward(model.W(l), acts[i - 1], dy, gW, gb, &dxr);
      relu_backward(acts[i - 1], dxr);
      dy.swap(dx);
    }
  }
}

// Running mean and sum of squared deviations (Welford), per parameter.
struct Moments {
  Eigen::VectorXd mean, m2;
  explicit Moments(Eigen::Index p) : mean(Eigen::VectorXd::Zero(p)), m2(Eigen::VectorXd::Zero(p)) {}
  void add(Eigen::Index i, double v, int count) {
    const double delta = v - mean(i);
    mean(i) += delta / count;
    m2(i) += delta * (v - mean(i));
  }
};

EstimatorStats stats_of(const Moments& mo, int draws, const Eigen::VectorXd& reference_mean) {
  EstimatorStats s;
  s.mean = mo.mean;
  s.variance = mo.m2 / (draws - 1);
  s.total_variance = s.variance.sum();
  const double ref = reference_mean.squaredNorm();
  s.relative_variance = ref > 0 ? s.total_variance / ref : std::numeric_limits<double>::infinity();
  double snr = 0;
  int counted = 0;
  for (Eigen::Index i = 0; i < s.mean.size(); ++i)
    if (s.variance(i) > 0) {
      snr += std::abs(s.mean(i)) / std::sqrt(s.variance(i));
      ++counted;
    }
  s.mean_snr = counted ? snr / counted : 0.0;
  return s;
}

}  // namespace

StepStats score_function_encoder_gradient(const Model& model, GradientEngine& engine,
                                          const Eigen::Ref<const Eigen::MatrixXf>& x,
                                          const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                          ThreadPool* pool, bool baseline) {
  const StepStats st = engine.compute(model, x, eps, beta, grad, pool);
  score_encoder_part(model, x, eps, engine.samples(), beta, baseline, grad);
  return st;
}

EstimatorComparison compare_gradient_estimators(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                                int samples, Rng& rng, int draws, bool baseline) {
  if (samples < 1 || draws < 2 || x.cols() < 1)
    throw Error("estimator comparison: needs samples ≥ 1, draws ≥ 2 and at least one example");
  const int B = static_cast<int>(x.cols()), d = model.latent(), L = samples;
  EstimatorComparison r;
  r.draws = draws;
  r.samples = L;
  r.batch = B;
  r.baseline = baseline;
  r.param_index = encoder_parameter_indices(model);
  const Eigen::Index P = static_cast<Eigen::Index>(r.param_index.size());

  GradientEngine engine(model.config(), B, L, 1);
  ParamVector g_rep(model.size(), 0.0f), g_score(model.size(), 0.0f);
  Eigen::MatrixXf eps(d, static_cast<Eigen::Index>(B) * L);
  Moments rep(P), score(P), diff(P);
  for (int t = 1; t <= draws; ++t) {
    for (Eigen::Index c = 0; c < eps.cols(); ++c)
      for (int j = 0; j < d; ++j) eps(j, c) = rng.normal();
    engine.compute(model, x, eps, 1.0f, g_rep.data(), nullptr);
    score_encoder_part(model, x, eps, L, 1.0f, baseline, g_score.data());
    for (Eigen::Index i = 0; i < P; ++i) {
      const double a = g_rep[r.param_index[i]], b = g_score[r.param_index[i]];
      rep.add(i, a, t);
      score.add(i, b, t);
      diff.add(i, b - a, t);
    }
  }
  r.reparam = stats_of(rep, draws, rep.mean);
  r.score = stats_of(score, draws, rep.mean);
  r.variance_ratio = r.reparam.total_variance > 0 ? r.score.total_variance / r.reparam.total_variance
                                                  : std::numeric_limits<double>::infinity();

  std::vector<double> log_ratio;
  for (Eigen::Index i = 0; i < P; ++i) {
    const double vd = diff.m2(i) / (draws - 1);
    if (vd > 0) {
      const double z = diff.mean(i) / std::sqrt(vd / draws);
      r.chi2 += z * z;
      r.max_abs_z = std::max(r.max_abs_z, std::abs(z));
      ++r.compared;
    }
    if (r.reparam.variance(i) > 0 && r.score.variance(i) > 0)
      log_ratio.push_back(std::log10(r.score.variance(i) / r.reparam.variance(i)));
  }
  if (!log_ratio.empty()) {
    auto mid = log_ratio.begin() + static_cast<std::ptrdiff_t>(log_ratio.size() / 2);
    std::nth_element(log_ratio.begin(), mid, log_ratio.end());
    r.median_log10_variance_ratio = *mid;
  }
  return r;
}

}  // namespace vaelab
