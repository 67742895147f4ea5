// Computations the app's panels need that involve no drawing: PCA of latent codes,
// interpolation, the manifold grid, plot ranges and ticks, smoothing and colour maps.
// Lives in core so it is unit-tested without a window. Not a plotting library.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Core>

namespace vaelab {

// ---- latent space ----
struct Pca2 {
  Eigen::VectorXf mean;        // (d)
  Eigen::MatrixXf components;  // (d, 2), orthonormal columns, largest variance first
  std::array<float, 2> explained_variance{};  // variance along each component
  float total_variance = 0;
};
// Principal plane of points (d, N). For d == 1 the second component is zero; d == 2 gives a rotation.
Pca2 pca_2d(const Eigen::Ref<const Eigen::MatrixXf>& points);
// Project points (d, N) onto the plane: (2, N).
Eigen::MatrixXf project(const Pca2& pca, const Eigen::Ref<const Eigen::MatrixXf>& points);
// Lift a plane position back to d dimensions: mean + components · p.
Eigen::VectorXf lift(const Pca2& pca, float u, float v);

Eigen::VectorXf lerp(const Eigen::VectorXf& a, const Eigen::VectorXf& b, float t);
// Spherical interpolation: the direction along the great circle from a to b (uniform in angle),
// the norm linearly from |a| to |b|, so the path never leaves the shell between the two norms
// (Shoemake's form on the raw vectors blows up for nearly opposite points). Lerp when a or b is
// zero or they are parallel; exactly opposite points go round via a fixed perpendicular axis.
Eigen::VectorXf slerp(const Eigen::VectorXf& a, const Eigen::VectorXf& b, float t);

// Φ⁻¹(p) for p in (0, 1) (Acklam's rational approximation refined by one Newton step).
double inverse_normal_cdf(double p);
double normal_cdf(double x);
// Kingma & Welling's manifold coordinates: Φ⁻¹ of n points evenly spaced in [lo, 1 − lo].
std::vector<float> manifold_coordinates(int n, double lo = 0.05);

// ---- plots ----
struct Range {
  double lo = 0, hi = 1;
  bool valid = false;  // false when no finite value was seen
};
// Min and max over the finite values (NaN and ±inf ignored); with log_scale, positives only.
Range finite_range(const float* values, std::size_t n, bool log_scale = false);
// Widen by a fraction on both sides; a zero-width range becomes ±max(1, |x|)·pad.
Range padded(Range r, double fraction = 0.05);
// "Nice" tick positions (1, 2, 5 × 10^k) covering [lo, hi], at most about max_ticks of them.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 6);
// Decades 10^k within [lo, hi] for a log axis (lo > 0).
std::vector<double> log_ticks(double lo, double hi);
// Short label for a tick value ("0.5", "1e+04", "-240").
std::string tick_label(double v);
// Ticks on an axis of counts (steps, epochs): nice_ticks without the fractional ones.
std::vector<double> integer_ticks(double lo, double hi, int max_ticks = 6);
// Label for a count, never in exponent form: "900", "10k", "250k", "12,500", "1.5M"; a value that
// is not a whole number gets tick_label's.
std::string count_label(double v);
// Exponential moving average that skips non-finite inputs (their outputs are NaN).
std::vector<float> smooth_ema(const float* values, std::size_t n, float alpha);

// ---- colour ----
struct Rgb8 {
  std::uint8_t r = 0, g = 0, b = 0;
};
// Perceptual sequential map (viridis-like) and plain grey for t in [0, 1] (clamped).
Rgb8 colormap_viridis(float t);
Rgb8 colormap_grey(float t);
// 256-entry RGB table of the map (for a shader's 1-D texture).
std::vector<std::uint8_t> colormap_table(int which /*0 grey, 1 viridis*/);
// Ten categorical colours, distinguishable for common colour-vision deficiencies (Okabe–Ito-like).
Rgb8 category_colour(int label);

// ---- image grids ----
// Images, one per column of C·h·w planar values (PyTorch's C×H×W), tiled `rows` × `cols` with `gap`
// pixels between them into one planar C × out_h × out_w image; gaps and unused cells are −1.
std::vector<float> tile_images(const Eigen::Ref<const Eigen::MatrixXf>& images, int channels, int h, int w, int rows,
                               int cols, int gap, int& out_w, int& out_h);
// A planar image (`channels` planes of h rows of w values) as interleaved RGB bytes, each pixel
// repeated scale × scale times: one channel through colormap_table(colormap), three as red,
// green and blue clamped to [0, 1]; a value < 0 in the first plane is a gap, painted gap_grey.
std::vector<std::uint8_t> image_rgb8(const std::vector<float>& values, int channels, int w, int h, int colormap,
                                     int scale, std::uint8_t gap_grey);

}  // namespace vaelab
