// Drawing-free maths behind the app's panels: latent PCA, interpolation, manifold grid,
// axis ranges and ticks, loss smoothing and colour maps (see view_math.hpp).
// Not a plotting library: nothing here knows about windows, GL or pixels.
#include "core/view_math.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numbers>
#include <string>

#include <Eigen/Eigenvalues>

namespace vaelab {

// ---------------------------------------------------------------------------------------------
// latent space
// ---------------------------------------------------------------------------------------------

namespace {

// Eigenvectors are only defined up to sign; fixing the sign (largest-magnitude entry positive)
// keeps the scatter from mirroring between refreshes. Entries within a relative 1e-4 of the
// largest count as tied and the first of them decides: with an exact rule, symmetric data
// (two entries ±equal) would let round-off pick the sign.
void normalise_sign(Eigen::Ref<Eigen::VectorXd> v) {
  if (v.size() == 0) return;
  const double top = v.cwiseAbs().maxCoeff();
  for (Eigen::Index i = 0; i < v.size(); ++i) {
    if (std::abs(v[i]) >= top * (1.0 - 1e-4)) {
      if (v[i] < 0) v = -v;
      return;
    }
  }
}

}  // namespace

Pca2 pca_2d(const Eigen::Ref<const Eigen::MatrixXf>& points) {
  const Eigen::Index d = points.rows();
  const Eigen::Index n = points.cols();
  Pca2 out;
  out.mean = Eigen::VectorXf::Zero(d);
  out.components = Eigen::MatrixXf::Zero(d, 2);
  // Defaults for degenerate input (no points, or all identical): the first two axes.
  for (Eigen::Index k = 0; k < std::min<Eigen::Index>(d, 2); ++k) out.components(k, k) = 1.0f;
  if (d == 0 || n == 0) return out;

  // Accumulate in double: latent codes are float, but a covariance summed over tens of
  // thousands of points loses the small eigenvalues in single precision.
  const Eigen::MatrixXd x = points.cast<double>();
  const Eigen::VectorXd mean = x.rowwise().mean();
  out.mean = mean.cast<float>();
  const Eigen::MatrixXd centred = x.colwise() - mean;
  // Population covariance (1/N): defined for N = 1 and it is what "variance along the
  // component" of the displayed points means.
  const Eigen::MatrixXd cov = (centred * centred.transpose()) / static_cast<double>(n);
  out.total_variance = static_cast<float>(cov.trace());
  if (!(cov.trace() > 0.0)) return out;  // all points equal (or non-finite input)

  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(cov);
  if (eig.info() != Eigen::Success) return out;
  // Eigen sorts eigenvalues ascending, so the principal ones are at the end.
  const Eigen::Index m = std::min<Eigen::Index>(d, 2);
  for (Eigen::Index k = 0; k < m; ++k) {
    const Eigen::Index src = d - 1 - k;
    Eigen::VectorXd v = eig.eigenvectors().col(src);
    normalise_sign(v);
    out.components.col(k) = v.cast<float>();
    // Round-off can make a zero eigenvalue slightly negative.
    out.explained_variance[static_cast<std::size_t>(k)] =
        static_cast<float>(std::max(0.0, eig.eigenvalues()[src]));
  }
  return out;
}

Eigen::MatrixXf project(const Pca2& pca, const Eigen::Ref<const Eigen::MatrixXf>& points) {
  return pca.components.transpose() * (points.colwise() - pca.mean);
}

Eigen::VectorXf lift(const Pca2& pca, float u, float v) {
  return pca.mean + pca.components.col(0) * u + pca.components.col(1) * v;
}

Eigen::VectorXf lerp(const Eigen::VectorXf& a, const Eigen::VectorXf& b, float t) {
  return a + t * (b - a);
}

Eigen::VectorXf slerp(const Eigen::VectorXf& a, const Eigen::VectorXf& b, float t) {
  const Eigen::VectorXd ad = a.cast<double>(), bd = b.cast<double>();
  const double na = ad.norm(), nb = bd.norm();
  if (!(na > 1e-12) || !(nb > 1e-12)) return lerp(a, b, t);
  if (t == 0.0f) return a;
  if (t == 1.0f) return b;
  // The direction moves along the great circle from a to b, the norm linearly from |a| to |b|.
  // Shoemake's weights sin((1−t)ω)/sin ω on the raw vectors grow without bound as ω → π (and
  // leave the shell the data lives on when the norms differ); this form stays between the norms.
  const Eigen::VectorXd ua = ad / na, ub = bd / nb;
  // Angle from the chord lengths of the unit vectors: unlike acos of the dot product it stays
  // accurate for nearly (anti)parallel inputs.
  const double omega = 2.0 * std::atan2((ua - ub).norm(), (ua + ub).norm());
  // Unit vector orthogonal to ua in the plane of a and b, taken from ub's rejection.
  Eigen::VectorXd w = ub - ua.dot(ub) * ua;
  double nw = w.norm();
  if (nw < 1e-9) {
    if (omega < 1.0) return lerp(a, b, t);  // parallel: one direction, only the norm moves
    // Opposite: every half great circle is as short. Take the one towards the coordinate axis
    // least aligned with a, so the path is deterministic. In 1-D there is none: go through 0.
    if (ad.size() < 2) return lerp(a, b, t);
    Eigen::Index axis = 0;
    ua.cwiseAbs().minCoeff(&axis);
    w = -ua[axis] * ua;
    w[axis] += 1.0;
    nw = w.norm();
  }
  w /= nw;
  const double td = t;
  const Eigen::VectorXd u = std::cos(td * omega) * ua + std::sin(td * omega) * w;
  return (((1.0 - td) * na + td * nb) / u.norm() * u).cast<float>();
}

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

double inverse_normal_cdf(double p) {
  if (std::isnan(p)) return std::numeric_limits<double>::quiet_NaN();
  if (p <= 0.0) return -std::numeric_limits<double>::infinity();
  if (p >= 1.0) return std::numeric_limits<double>::infinity();
  // Work in the lower half only: for p > 0.5, 1 − p is exact (Sterbenz) while Φ(x) − p near
  // 1 would cancel; it also makes the function exactly odd about 0.5.
  if (p > 0.5) return -inverse_normal_cdf(1.0 - p);

  // Acklam's rational approximation (relative error ~1.2e-9), published coefficients.
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double p_low = 0.02425;

  double x;
  if (p < p_low) {  // lower tail
    const double q = std::sqrt(-2.0 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else {  // central region
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  }
  // One Halley step (Newton with the curvature term) on Φ(x) − p brings it to ~double precision.
  const double e = normal_cdf(x) - p;
  const double u = e * std::sqrt(2.0 * std::numbers::pi) * std::exp(0.5 * x * x);
  if (std::isfinite(u)) x -= u / (1.0 + 0.5 * x * u);
  return x;
}

std::vector<float> manifold_coordinates(int n, double lo) {
  if (n <= 0) return {};
  if (n == 1) return {0.0f};
  // lo = 0 would put the outer rows at ±inf; lo > 0.5 would reverse the grid.
  if (!(lo >= 1e-9)) lo = 1e-9;
  if (lo > 0.5) lo = 0.5;
  std::vector<float> z(static_cast<std::size_t>(n));
  const int last = n - 1;
  for (int i = 0; i <= last / 2; ++i) {
    const double p = lo + (1.0 - 2.0 * lo) * static_cast<double>(i) / static_cast<double>(last);
    const auto v = static_cast<float>(inverse_normal_cdf(p));
    // Mirror the lower half so the grid is exactly symmetric and the centre is exactly 0.
    z[static_cast<std::size_t>(i)] = v;
    z[static_cast<std::size_t>(last - i)] = -v;
  }
  if (n % 2 == 1) z[static_cast<std::size_t>(last / 2)] = 0.0f;
  return z;
}

// ---------------------------------------------------------------------------------------------
// plots
// ---------------------------------------------------------------------------------------------

Range finite_range(const float* values, std::size_t n, bool log_scale) {
  Range r;
  if (values == nullptr) return r;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = values[i];
    if (!std::isfinite(v)) continue;
    if (log_scale && !(v > 0.0)) continue;
    if (!r.valid) {
      r.lo = r.hi = v;
      r.valid = true;
    } else {
      r.lo = std::min(r.lo, v);
      r.hi = std::max(r.hi, v);
    }
  }
  return r;
}

Range padded(Range r, double fraction) {
  if (!r.valid) return r;
  if (r.hi < r.lo) std::swap(r.lo, r.hi);
  const double w = r.hi - r.lo;
  const double pad = w > 0.0 ? w * fraction : std::max(1.0, std::abs(r.lo)) * fraction;
  r.lo -= pad;
  r.hi += pad;
  return r;
}

namespace {

// m · 10^e computed so that decimal steps come out as the nearest double (3 · 0.1 would
// give 0.30000000000000004; 3 / 10 gives 0.3).
double scaled(double m, int e) {
  if (e < 0 && e >= -300) return m / std::pow(10.0, -e);
  return m * std::pow(10.0, e);
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  // The cap keeps the multiples k below 2^53, where k += 1 would stop advancing.
  max_ticks = std::clamp(max_ticks, 1, 1000);
  // A range narrower than double resolution at its magnitude has no distinct nice ticks.
  const double scale = std::max(std::abs(lo), std::abs(hi));
  if (hi == lo || hi - lo <= scale * 1e-12) return {lo};

  // Halve before subtracting so that [-DBL_MAX, DBL_MAX] does not overflow.
  const double raw = (0.5 * hi - 0.5 * lo) / max_ticks * 2.0;
  int e = static_cast<int>(std::floor(std::log10(raw)));
  static constexpr double mantissas[] = {1.0, 2.0, 5.0, 10.0};
  int mi = 0;
  while (mi < 3 && scaled(mantissas[mi], e) < raw) ++mi;
  if (mi == 3) {  // 10 · 10^e: carry into the exponent
    mi = 0;
    ++e;
  }
  // Guard against log10 rounding that chose a decade one too low.
  while (scaled(mantissas[mi], e) < raw) {
    if (++mi == 3) {
      mi = 0;
      ++e;
    }
  }

  // Ticks at every integer multiple of the step inside [lo, hi]. step ≥ raw, so there are at
  // most max_ticks + 1 of them.
  auto collect = [&](double m, int ex) {
    std::vector<double> ticks;
    const double step = scaled(m, ex);
    if (!(step > 0.0) || !std::isfinite(step)) return ticks;
    double k = std::ceil(lo / step);
    const double k_end = std::floor(hi / step);
    for (; k <= k_end + 1.0; k += 1.0) {
      const double v = k == 0.0 ? 0.0 : scaled(k * m, ex);
      if (v < lo) continue;  // division rounding put the first multiple just outside
      if (v > hi) break;
      ticks.push_back(v);
      if (ticks.size() > static_cast<std::size_t>(max_ticks) + 1) break;  // paranoia
    }
    return ticks;
  };
  std::vector<double> ticks = collect(mantissas[mi], e);
  if (!ticks.empty()) return ticks;

  // Only possible for max_ticks == 1 (step may exceed the span): fall back to finer nice steps
  // and keep the single roundest value in range.
  for (int guard = 0; guard < 40; ++guard) {
    if (--mi < 0) {
      mi = 2;
      --e;
    }
    ticks = collect(mantissas[mi], e);
    if (!ticks.empty()) return {ticks.front()};
  }
  return {lo};
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  if (!(lo > 0.0)) return {};
  int k0 = static_cast<int>(std::ceil(std::log10(lo)));
  int k1 = static_cast<int>(std::floor(std::log10(hi)));
  // log10 of a value just above a power of ten can round down onto it and vice versa.
  while (std::pow(10.0, k0) < lo) ++k0;
  while (k0 > -400 && std::pow(10.0, k0 - 1) >= lo) --k0;
  while (std::pow(10.0, k1) > hi) --k1;
  while (k1 < 400 && std::pow(10.0, k1 + 1) <= hi) ++k1;
  if (k1 < k0) return {};
  // Over many decades keep every 2nd, 5th, 10th... so labels don't collide.
  const int count = k1 - k0 + 1;
  int stride = 1;
  for (int s : {1, 2, 5, 10, 20, 50, 100, 200, 500}) {
    stride = s;
    if ((count + s - 1) / s <= 10) break;
  }
  std::vector<double> ticks;
  // Start on a multiple of the stride so the labels are round exponents (10^0, 10^5, ...).
  int k = k0;
  while (((k % stride) + stride) % stride != 0) ++k;
  for (; k <= k1; k += stride) ticks.push_back(std::pow(10.0, k));
  return ticks;
}

std::string tick_label(double v) {
  if (v == 0.0) return "0";  // also catches −0
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Compact like %.4g, but with as many significant digits as the value needs (up to 6) so
  // neighbouring ticks such as 12345 and 12350 don't print the same label.
  int digits = 6;
  char buf[40];
  for (int p = 1; p <= 6; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, v);
    if (std::abs(std::strtod(buf, nullptr) - v) <= 1e-9 * std::abs(v)) {
      digits = p;
      break;
    }
  }
  std::snprintf(buf, sizeof buf, "%.*g", std::max(4, digits), v);
  return buf;
}

std::vector<double> integer_ticks(double lo, double hi, int max_ticks) {
  std::vector<double> ticks = nice_ticks(lo, hi, max_ticks);
  std::erase_if(ticks, [](double t) { return t != std::round(t); });
  return ticks;
}

std::string count_label(double v) {
  if (!std::isfinite(v) || v != std::round(v) || std::abs(v) >= 1e15) return tick_label(v);
  const long long n = std::llround(v);
  const long long mag = n < 0 ? -n : n;
  char buf[40];
  if (mag >= 1000000 && mag % 100000 == 0) {  // 1M, 1.5M
    std::snprintf(buf, sizeof buf, mag % 1000000 == 0 ? "%.0fM" : "%.1fM", static_cast<double>(n) / 1e6);
    return buf;
  }
  if (mag >= 1000 && mag % 1000 == 0 && mag < 1000000) {  // 10k, 250k
    std::snprintf(buf, sizeof buf, "%lldk", n / 1000);
    return buf;
  }
  // Thousands separated by commas: 12,500.
  std::string digits = std::to_string(mag), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::vector<float> smooth_ema(const float* values, std::size_t n, float alpha) {
  // alpha is the weight of the newest sample: 1 = no smoothing, towards 0 = heavier smoothing.
  const float a = std::clamp(std::isfinite(alpha) ? alpha : 1.0f, 0.0f, 1.0f);
  std::vector<float> out(values ? n : 0, std::numeric_limits<float>::quiet_NaN());
  bool started = false;
  float s = 0.0f;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const float x = values[i];
    if (!std::isfinite(x)) continue;  // a diverged step must not poison the rest of the curve
    // Seeding with the first finite value avoids the start-up bias towards 0.
    s = started ? s + a * (x - s) : x;
    started = true;
    out[i] = s;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// colour
// ---------------------------------------------------------------------------------------------

namespace {

// Viridis sampled at 17 evenly spaced points (sRGB, 8 bit). Linear interpolation between them
// stays within a couple of levels of the full 256-entry map.
constexpr std::uint8_t kViridis[17][3] = {
    {0x44, 0x01, 0x54}, {0x48, 0x18, 0x6a}, {0x47, 0x2d, 0x7b}, {0x42, 0x40, 0x86},
    {0x3b, 0x52, 0x8b}, {0x33, 0x63, 0x8d}, {0x2c, 0x72, 0x8e}, {0x26, 0x82, 0x8e},
    {0x21, 0x91, 0x8c}, {0x1f, 0xa0, 0x88}, {0x28, 0xae, 0x80}, {0x3f, 0xbc, 0x73},
    {0x5e, 0xc9, 0x62}, {0x84, 0xd4, 0x4b}, {0xad, 0xdc, 0x30}, {0xd8, 0xe2, 0x19},
    {0xfd, 0xe7, 0x25}};

float clamp01(float t) { return std::isnan(t) ? 0.0f : std::clamp(t, 0.0f, 1.0f); }

std::uint8_t to_byte(float x) {
  return static_cast<std::uint8_t>(std::lround(std::clamp(x, 0.0f, 255.0f)));
}

}  // namespace

Rgb8 colormap_viridis(float t) {
  const float x = clamp01(t) * 16.0f;
  const int i = std::min(static_cast<int>(x), 15);
  const float f = x - static_cast<float>(i);
  auto mix = [&](int c) {
    return to_byte(static_cast<float>(kViridis[i][c]) * (1.0f - f) +
                   static_cast<float>(kViridis[i + 1][c]) * f);
  };
  return {mix(0), mix(1), mix(2)};
}

Rgb8 colormap_grey(float t) {
  const std::uint8_t v = to_byte(clamp01(t) * 255.0f);
  return {v, v, v};
}

std::vector<std::uint8_t> colormap_table(int which) {
  std::vector<std::uint8_t> table(256 * 3);
  for (int i = 0; i < 256; ++i) {
    const float t = static_cast<float>(i) / 255.0f;
    const Rgb8 c = which == 1 ? colormap_viridis(t) : colormap_grey(t);  // unknown → grey
    table[static_cast<std::size_t>(3 * i)] = c.r;
    table[static_cast<std::size_t>(3 * i + 1)] = c.g;
    table[static_cast<std::size_t>(3 * i + 2)] = c.b;
  }
  return table;
}

std::vector<float> tile_images(const Eigen::Ref<const Eigen::MatrixXf>& images, int channels, int h, int w, int rows,
                               int cols, int gap, int& out_w, int& out_h) {
  out_w = cols * w + (cols - 1) * gap;
  out_h = rows * h + (rows - 1) * gap;
  const std::size_t plane = static_cast<std::size_t>(std::max(out_w, 0)) * static_cast<std::size_t>(std::max(out_h, 0));
  std::vector<float> out(plane * static_cast<std::size_t>(channels), -1.0f);
  const Eigen::Index n = images.cols();
  for (Eigen::Index k = 0; k < n && k < static_cast<Eigen::Index>(rows) * cols; ++k) {
    const int r = static_cast<int>(k) / cols, c = static_cast<int>(k) % cols;
    for (int ch = 0; ch < channels; ++ch)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          out[static_cast<std::size_t>(ch) * plane + static_cast<std::size_t>(r * (h + gap) + y) * out_w + c * (w + gap) + x] =
              images((ch * h + y) * w + x, k);
  }
  return out;
}

std::vector<std::uint8_t> image_rgb8(const std::vector<float>& values, int channels, int w, int h, int colormap,
                                     int scale, std::uint8_t gap_grey) {
  const std::size_t plane = static_cast<std::size_t>(w) * static_cast<std::size_t>(h);
  const std::size_t W = static_cast<std::size_t>(w) * scale, H = static_cast<std::size_t>(h) * scale;
  const std::vector<std::uint8_t> table = colormap_table(colormap == 1 ? 1 : 0);
  auto byte_of = [](float v) { return static_cast<std::uint8_t>(std::clamp(static_cast<int>(std::lround(v * 255.0f)), 0, 255)); };
  std::vector<std::uint8_t> rgb(W * H * 3);
  for (std::size_t y = 0; y < H; ++y)
    for (std::size_t x = 0; x < W; ++x) {
      const std::size_t at = y / scale * static_cast<std::size_t>(w) + x / scale;
      const float v = values[at];
      std::uint8_t* px = &rgb[(y * W + x) * 3];
      if (!(v >= 0)) {
        px[0] = px[1] = px[2] = gap_grey;
      } else if (channels == 3) {
        for (std::size_t c = 0; c < 3; ++c) px[c] = byte_of(values[c * plane + at]);
      } else {
        const std::size_t i = byte_of(v);
        px[0] = table[i * 3];
        px[1] = table[i * 3 + 1];
        px[2] = table[i * 3 + 2];
      }
    }
  return rgb;
}

Rgb8 category_colour(int label) {
  // Okabe–Ito's colours (its black swapped for a light grey so it shows on a dark plot),
  // plus a dark wine and an olive, which differ from their nearest neighbours in lightness
  // and so stay apart under common colour-vision deficiencies.
  static constexpr Rgb8 palette[10] = {
      {0xE6, 0x9F, 0x00},  // orange
      {0x56, 0xB4, 0xE9},  // sky blue
      {0x00, 0x9E, 0x73},  // bluish green
      {0xF0, 0xE4, 0x42},  // yellow
      {0x00, 0x72, 0xB2},  // blue
      {0xD5, 0x5E, 0x00},  // vermillion
      {0xCC, 0x79, 0xA7},  // reddish purple
      {0xDD, 0xDD, 0xDD},  // light grey (Okabe–Ito's black)
      {0x88, 0x22, 0x55},  // wine
      {0x99, 0x99, 0x33},  // olive
  };
  if (label < 0) return {0x80, 0x80, 0x80};  // unlabelled / unknown: neutral mid grey
  return palette[label % 10];
}

}  // namespace vaelab
