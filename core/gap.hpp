// The variational gap made visible: p(z|x) on a 2-D latent grid, log p(x) by quadrature and
// KL(q ‖ p(z|x)) = log p(x) − ELBO; active units; the aggregate posterior; score-function gradients.
// Analysis that allocates, for the UI and tests: not the training step, nor the losses (objective.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "core/model.hpp"
#include "core/train_step.hpp"

namespace vaelab {

class Rng;
class ThreadPool;

// ---------------------------------------------------------------------------------------------
// Grids on a plane of the latent space
// ---------------------------------------------------------------------------------------------

// A window on the plane z = z0 + U·u, u ∈ R² ("plane coordinates"), cut into n × n cells.
// Cell (ix, iy) has its centre at u = center − half_width + (ix + ½, iy + ½) ⊙ 2·half_width / n.
// Grids below are (n, n) matrices indexed (ix, iy): in memory ix + n·iy, rows of constant v
// from the lowest v up (flip vertically for a top-down image).
struct GridSpec {
  Eigen::Vector2f center = Eigen::Vector2f::Zero();              // plane coordinates
  Eigen::Vector2f half_width = Eigen::Vector2f::Constant(3.0f);  // > 0 on both axes
  int resolution = 128;                                          // n, 2 … 4096
  Eigen::VectorXf origin;                                        // (d) z0; empty: each function says what it uses
  Eigen::MatrixXf directions;  // (d, 2) U, orthonormal columns; empty: unit vectors of dims 0 and 1
};

// Centre of cell (ix, iy) in plane coordinates.
Eigen::Vector2f grid_cell_center(const GridSpec& spec, int ix, int iy);

// A Gaussian contour in plane coordinates: the 1σ ellipse {u : (u − c)ᵀ Σ⁻¹ (u − c) = 1}
// (≈ 39% of the mass inside, in 2-D), the 2σ one the same with twice the semi-axes (≈ 86%).
struct Ellipse {
  Eigen::Vector2f center = Eigen::Vector2f::Zero();
  Eigen::Vector2f axes = Eigen::Vector2f::Zero();  // semi-axes, major then minor
  float angle = 0;  // radians from the plane's first direction to the major axis, counter-clockwise
};

struct GapOptions {
  int elbo_samples = 1000;  // L for the Monte-Carlo reconstruction term of the ELBO (≥ 1)
  int iwae_k = 1000;        // K for IWAE_K; 0 skips it
  std::uint64_t seed = 1;   // for both
};

// Everything about one x on one grid. "Exact" (d == 2): log_px is log p(x) and kl_grid is
// KL(q ‖ p(z|x)) up to quadrature error, so gap_check ≈ kl_grid up to the ELBO's Monte-Carlo error.
// For d > 2 the grid is a slice through z0: log_px is log ∫ p(x, z0 + U u) du
// (= log p(x) + log p(z's off-plane part | x) for an axis-aligned plane), the densities are p(z|x)
// and q(z|x) conditioned on the plane, and kl_grid is the KL between those conditionals, so it is
// not comparable with gap_check; elbo, iwae and gap_check are always the full d-dim quantities.
struct PosteriorGrid {
  GridSpec spec;       // as used: origin and directions filled in
  bool exact = false;  // latent size 2
  double cell_area = 0;

  Eigen::MatrixXf log_joint;  // (n, n) log p(x|z) + log p(z) at cell centres
  Eigen::MatrixXf density;    // (n, n) p(z|x) normalised on the grid: Σ density · cell_area = 1
  Eigen::MatrixXf q_density;  // (n, n) q(z|x) normalised the same way
  double log_px = 0;          // logsumexp(log_joint) + log(cell_area)
  double edge_mass = 0;       // posterior mass in the outermost ring of cells: ≳ 1e-3 means the window cuts it
  Eigen::Vector2d posterior_mean = Eigen::Vector2d::Zero();  // moments of `density`, plane coordinates
  Eigen::Matrix2d posterior_cov = Eigen::Matrix2d::Zero();

  Eigen::VectorXf q_mu, q_sigma;  // (d) from Model::encode
  Ellipse q_1sigma, q_2sigma;     // q conditioned on the plane (= its marginal for an axis-aligned plane through μ)

  double recon = 0;      // E_q[log p(x|z)], Monte Carlo with GapOptions::elbo_samples
  double kl_prior = 0;   // KL(q ‖ p(z)): analytic for N(0, I), Monte Carlo for the clustering VAE's mixture
  double elbo = 0;       // recon − kl_prior
  double elbo_se = 0;    // Monte-Carlo standard error of elbo
  double iwae = 0;       // IWAE_K (one estimate); NaN when iwae_k == 0
  double kl_grid = 0;    // Σ_cells q_c log(q_c / p_c) over normalised cell masses
  double gap_check = 0;  // log_px − elbo
};

// The true posterior of model at x (D) on spec. When spec.origin is empty the plane passes
// through q's mean: z0 = μ − U Uᵀ μ. Decodes at most 4096 cells at a time, chunks spread over pool.
// Throws Error for a bad spec (wrong sizes, non-orthonormal directions, latent size 1).
PosteriorGrid posterior_grid(const Model& model, const Eigen::VectorXf& x, const GridSpec& spec,
                             const GapOptions& opt = {}, ThreadPool* pool = nullptr);

// A window of ±max(4σ, 3) around q's mean on base's plane (resolution and directions from base;
// origin from base, or, when empty, the plane through q_mean as in posterior_grid). σ along each
// direction is q's marginal standard deviation. q_mean, q_sigma: (d).
GridSpec auto_grid_for(const Eigen::VectorXf& q_mean, const Eigen::VectorXf& q_sigma, const GridSpec& base = {});

// ---------------------------------------------------------------------------------------------
// Active units (Burda et al., 2016): A_u = Var_x(E_q[z_u]); a unit is active when A_u > threshold.
// ---------------------------------------------------------------------------------------------

struct ActiveUnits {
  std::vector<double> variance;  // (d) variance over examples (1/N) of the encoder mean μ_u(x)
  std::vector<bool> active;      // (d) variance > threshold
  int count = 0;
  float threshold = 0.01f;
};

// mu: (d, N) encoder means of N examples.
ActiveUnits active_units(const Eigen::MatrixXf& mu, float threshold = 0.01f);

// Dims "collapsed to the prior": inactive (variance < threshold) and with mean KL(q ‖ p(z)) below
// kl_threshold nats. An inactive dim with a larger KL carries a constant code, not the prior.
std::vector<bool> collapsed_dims(const ActiveUnits& units, const std::vector<double>& kl_per_dim,
                                 double kl_threshold = 0.01);

// ---------------------------------------------------------------------------------------------
// Aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) against the prior, on a plane
// ---------------------------------------------------------------------------------------------

struct AggregateGrid {
  GridSpec spec;  // as used (origin defaults to 0)
  double cell_area = 0;
  Eigen::MatrixXf density;    // (n, n) q(z)'s marginal on the plane
  Eigen::MatrixXf prior;      // (n, n) N(0, I)'s marginal on the plane
  double aggregate_mass = 0;  // Σ density · cell_area: the part of q(z) inside the window
  double prior_mass = 0;      // the same for the prior
  double hole_fraction = 0;   // of the window's prior mass, the share in cells where density < 0.1 · prior
};

// mu, logvar: (d, N). Each q_n contributes its exact marginal on the plane, N(Uᵀ(μ_n − z0), Uᵀ Σ_n U).
// When every latent dim feeds at most one direction (the default plane of dims 0 and 1, or any
// axis-aligned one) both grids hold exact cell averages (a sum of products of erf differences, one
// matrix product); otherwise the aggregate is sampled at cell centres, so a q much narrower than a
// cell is under-resolved there.
// prior_mu, prior_logvar (d, K), when given: the prior is the equal-weight mixture of those
// Gaussians (the clustering VAE's), on the plane as exactly as the aggregate; else N(0, I).
AggregateGrid aggregate_posterior_grid(const Eigen::MatrixXf& mu, const Eigen::MatrixXf& logvar, const GridSpec& spec,
                                       ThreadPool* pool = nullptr, const Eigen::MatrixXf* prior_mu = nullptr,
                                       const Eigen::MatrixXf* prior_logvar = nullptr);

// A half-width for aggregate_posterior_grid's square window about spec's centre (spec's plane,
// origin and directions; its half_width is ignored) that shows both densities: ±3 standard
// deviations of every prior component's marginal on the plane (N(0, I) when prior_mu is null) and
// 99 % of the codes' means with 2 of their own standard deviations. Rounded up to a multiple of
// 0.5, at least min_half, at most 20 (a diverged encoder must not shrink everything to a dot).
float aggregate_view_half_width(const Eigen::MatrixXf& mu, const Eigen::MatrixXf& logvar, const GridSpec& spec,
                                const Eigen::MatrixXf* prior_mu = nullptr, const Eigen::MatrixXf* prior_logvar = nullptr,
                                float min_half = 3.5f);

// ---------------------------------------------------------------------------------------------
// Score-function (REINFORCE) vs reparameterised gradients of the encoder
// ---------------------------------------------------------------------------------------------
// Both estimate ∇_φ of loss = mean_b [ −E_q[log p(x_b|z)] + β KL(q ‖ p(z)) ]:
//  reparameterised: GradientEngine (z = μ + σ ⊙ ε, analytic KL) — what the trainer uses;
//  score function:  −(1/B) Σ_b (1/L) Σ_l (f_bl − c_bl) ∇_φ log q(z_bl|x_b), with
//    f = log p(x|z) + β (log p(z) − log q(z|x)), whose expectation is −loss. The pathwise term
//    −β E_q[∇_φ log q] is dropped: it is zero in expectation.
//  Baseline c_bl (when on and L ≥ 2): the mean of f over the example's other L − 1 samples.
//    Leaving sample l out keeps the estimator unbiased (the plain mean over all L would scale the
//    gradient by (L − 1)/L). With L = 1 or the baseline off, c = 0.

// The encoder's weights and biases as positions in Model::params() (padding excluded), in layer
// order, W column-major then b.
std::vector<std::size_t> encoder_parameter_indices(const Model& model);

// The full gradient with the encoder part from the score-function estimator: runs engine (the
// usual gradient: the decoder part is estimator-independent, as z does not depend on the decoder),
// then overwrites the encoder part. x: (D, B), eps: (d, B·L) with L = engine.samples(), column
// b·L + l for sample l of example b. Allocates (unlike GradientEngine::compute).
StepStats score_function_encoder_gradient(const Model& model, GradientEngine& engine,
                                          const Eigen::Ref<const Eigen::MatrixXf>& x,
                                          const Eigen::Ref<const Eigen::MatrixXf>& eps, float beta, float* grad,
                                          ThreadPool* pool = nullptr, bool baseline = true);

struct EstimatorStats {
  Eigen::VectorXd mean;          // (P) mean encoder gradient over the draws
  Eigen::VectorXd variance;      // (P) per-parameter variance across draws (1/(R − 1))
  double total_variance = 0;     // Σ_p variance_p
  double relative_variance = 0;  // total_variance / ‖reparameterised mean‖² (same reference for both)
  double mean_snr = 0;           // mean over parameters of |mean_p| / sd_p (one draw's signal-to-noise)
};

struct EstimatorComparison {
  int draws = 0, samples = 0, batch = 0;
  bool baseline = false;
  std::vector<std::size_t> param_index;  // (P) encoder_parameter_indices(model)
  EstimatorStats reparam, score;
  // Agreement of the means, from per-draw differences (both estimators use the same ε in a draw),
  // over the `compared` parameters whose difference is not identically zero:
  int compared = 0;
  double max_abs_z = 0;                    // max_p |mean difference_p| / its standard error
  double chi2 = 0;                         // Σ_p z_p²: ≈ compared ± √(2·compared) when the means agree
  double variance_ratio = 0;               // score.total_variance / reparam.total_variance
  double median_log10_variance_ratio = 0;  // per-parameter log10(var_score / var_reparam), median
};

// For the same batch x (D, B): `draws` independent draws of ε (d, B·samples) from rng, each fed to
// both estimators (β = 1). draws ≥ 2.
EstimatorComparison compare_gradient_estimators(const Model& model, const Eigen::Ref<const Eigen::MatrixXf>& x,
                                                int samples, Rng& rng, int draws = 200, bool baseline = true);

}  // namespace vaelab
