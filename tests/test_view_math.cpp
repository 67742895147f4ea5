// Unit tests for core/view_math: PCA, interpolation, normal quantiles, axis ranges and ticks,
// smoothing and colour maps. Pure maths checks; nothing here draws or opens a window.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/view_math.hpp"

using namespace vaelab;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// |cos| of the angle between two vectors: 1 when they span the same line.
double abs_cos(const Eigen::VectorXf& a, const Eigen::VectorXf& b) {
  return std::abs(a.cast<double>().dot(b.cast<double>())) /
         (a.cast<double>().norm() * b.cast<double>().norm());
}

// Largest-magnitude entry is positive (the first one when several are within 1e-4 of it, i.e.
// tied up to round-off): the sign convention pca_2d promises.
bool sign_normalised(const Eigen::VectorXf& v) {
  const float top = v.cwiseAbs().maxCoeff();
  for (Eigen::Index i = 0; i < v.size(); ++i)
    if (std::abs(v[i]) >= top * (1.0f - 1e-4f)) return v[i] > 0;
  return false;
}

// Relative luminance of an sRGB colour (linearised channels).
double luminance(const Rgb8& c) {
  auto lin = [](std::uint8_t u) {
    const double s = u / 255.0;
    return s <= 0.04045 ? s / 12.92 : std::pow((s + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
}

bool same(const Rgb8& a, const Rgb8& b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

}  // namespace

// ---- PCA ----

TEST_CASE("view_math: pca recovers known directions and variances") {
  // Points m + u·s + w·t on a grid of (s, t): s and t are exactly uncorrelated, with population
  // variances 20 and 1, so the principal axes are u and w.
  const int d = 5;
  Eigen::VectorXf m(d), u(d), w(d);
  m << 1, -2, 0.5f, 3, 0;
  u << 1, 2, 0, -2, 0;  // |u| = 3
  w << 0, 1, 0, 1, -1;  // orthogonal to u, |w| = √3
  u /= u.norm();
  w /= w.norm();
  std::vector<float> s_vals = {-6, -2, 2, 6}, t_vals = {-1, 1};
  Eigen::MatrixXf pts(d, 8 * 3);
  int col = 0;
  for (int rep = 0; rep < 3; ++rep)
    for (float s : s_vals)
      for (float t : t_vals) pts.col(col++) = m + u * s + w * t;

  const Pca2 p = pca_2d(pts);
  REQUIRE(p.mean.size() == d);
  REQUIRE(p.components.rows() == d);
  REQUIRE(p.components.cols() == 2);
  CHECK((p.mean - m).norm() < 1e-5);
  CHECK(abs_cos(p.components.col(0), u) > 1 - 1e-6);
  CHECK(abs_cos(p.components.col(1), w) > 1 - 1e-6);
  CHECK(p.explained_variance[0] == doctest::Approx(20.0).epsilon(1e-5));
  CHECK(p.explained_variance[1] == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(p.total_variance == doctest::Approx(21.0).epsilon(1e-5));
  // Orthonormal columns.
  const Eigen::Matrix2f g = p.components.transpose() * p.components;
  CHECK((g - Eigen::Matrix2f::Identity()).norm() < 1e-5);
  // u = (1, 2, 0, −2, 0)/3 has a ±tie for the largest entry: the first one (index 1) decides.
  CHECK(sign_normalised(p.components.col(0)));
  CHECK(p.components(1, 0) > 0.6f);
  CHECK(sign_normalised(p.components.col(1)));
}

TEST_CASE("view_math: pca first component maximises projected variance") {
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int d = 8, n = 2000;
  // Anisotropic Gaussian with a random mixing matrix.
  Eigen::MatrixXf a(d, d);
  for (int i = 0; i < d * d; ++i) a.data()[i] = g(rng);
  Eigen::MatrixXf z(d, n);
  for (int i = 0; i < d * n; ++i) z.data()[i] = g(rng);
  const Eigen::MatrixXf pts = a * z;
  const Pca2 p = pca_2d(pts);

  const Eigen::MatrixXf proj = project(p, pts);
  REQUIRE(proj.rows() == 2);
  REQUIRE(proj.cols() == n);
  // Variance of the projections equals the reported explained variance.
  for (int k = 0; k < 2; ++k) {
    const double var = proj.row(k).cast<double>().squaredNorm() / n;
    CHECK(var == doctest::Approx(p.explained_variance[static_cast<std::size_t>(k)]).epsilon(1e-3));
    CHECK(std::abs(proj.row(k).cast<double>().mean()) < 1e-3 * std::sqrt(var) + 1e-4);
  }
  CHECK(p.explained_variance[0] >= p.explained_variance[1]);
  CHECK(p.explained_variance[0] + p.explained_variance[1] <= p.total_variance * (1 + 1e-5));
  // No random direction captures more variance than the first component.
  const Eigen::MatrixXd c = pts.cast<double>().colwise() - p.mean.cast<double>();
  for (int trial = 0; trial < 200; ++trial) {
    Eigen::VectorXd v(d);
    for (int i = 0; i < d; ++i) v[i] = g(rng);
    v.normalize();
    const double var = (v.transpose() * c).squaredNorm() / n;
    CHECK(var <= p.explained_variance[0] * (1 + 1e-4));
  }
}

TEST_CASE("view_math: pca is deterministic under point order and reflection") {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int d = 6, n = 300;
  Eigen::MatrixXf pts(d, n);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < d; ++i) pts(i, j) = g(rng) * static_cast<float>(d - i);
  const Pca2 a = pca_2d(pts);

  // Reversed column order and points reflected through the mean have the same covariance; the
  // components must come out with the same signs, not mirrored.
  Eigen::MatrixXf reversed = pts.rowwise().reverse();
  Eigen::MatrixXf reflected = (-(pts.colwise() - a.mean)).colwise() + a.mean;
  for (const Eigen::MatrixXf* q : {&reversed, &reflected}) {
    const Pca2 b = pca_2d(*q);
    CHECK((a.components - b.components).norm() < 1e-4);
    CHECK(b.explained_variance[0] == doctest::Approx(a.explained_variance[0]).epsilon(1e-5));
  }
  CHECK(sign_normalised(a.components.col(0)));
  CHECK(sign_normalised(a.components.col(1)));
}

TEST_CASE("view_math: pca degenerate shapes") {
  SUBCASE("d = 1") {
    Eigen::MatrixXf pts(1, 4);
    pts << 1, 2, 3, 6;
    const Pca2 p = pca_2d(pts);
    CHECK(p.mean[0] == doctest::Approx(3.0));
    CHECK(p.components(0, 0) == doctest::Approx(1.0));
    CHECK(p.components(0, 1) == 0.0f);
    CHECK(p.explained_variance[0] == doctest::Approx(3.5));  // (4 + 1 + 0 + 9) / 4
    CHECK(p.explained_variance[1] == 0.0f);
    const Eigen::MatrixXf pr = project(p, pts);
    CHECK(pr(0, 3) == doctest::Approx(3.0));
    CHECK(pr(1, 3) == 0.0f);
    CHECK(lift(p, -2.0f, 5.0f)[0] == doctest::Approx(1.0));
  }
  SUBCASE("d = 2 is a rotation") {
    Eigen::MatrixXf pts(2, 4);
    pts << 0, 2, 0, 2,  //
        0, 2, 1, 3;
    const Pca2 p = pca_2d(pts);
    const Eigen::Matrix2f r = p.components;
    const float det = r(0, 0) * r(1, 1) - r(0, 1) * r(1, 0);
    CHECK(std::abs(std::abs(det) - 1.0f) < 1e-5);
    // Lengths are preserved: projection is a rigid motion.
    const Eigen::MatrixXf pr = project(p, pts);
    const Eigen::MatrixXf centred = pts.colwise() - p.mean;
    for (int j = 0; j < 4; ++j) CHECK(pr.col(j).norm() == doctest::Approx(centred.col(j).norm()));
    CHECK(p.explained_variance[0] + p.explained_variance[1] == doctest::Approx(p.total_variance));
  }
  SUBCASE("N = 0") {
    const Eigen::MatrixXf pts(3, 0);
    const Pca2 p = pca_2d(pts);
    CHECK(p.mean.size() == 3);
    CHECK(p.mean.isZero());
    CHECK((p.components.transpose() * p.components - Eigen::Matrix2f::Identity()).norm() < 1e-6);
    CHECK(p.total_variance == 0.0f);
    CHECK(project(p, pts).cols() == 0);
  }
  SUBCASE("N = 1 and identical points") {
    Eigen::VectorXf x(3);
    x << 1, 2, 3;
    const Eigen::MatrixXf pts = x.replicate(1, 5);
    for (int n : {1, 5}) {
      const Pca2 p = pca_2d(pts.leftCols(n));
      CHECK((p.mean - x).norm() < 1e-6);
      CHECK(p.total_variance == 0.0f);
      CHECK(p.explained_variance[0] == 0.0f);
      CHECK((p.components.transpose() * p.components - Eigen::Matrix2f::Identity()).norm() < 1e-6);
      CHECK(project(p, pts.leftCols(n)).isZero());
    }
  }
}

TEST_CASE("view_math: project and lift round trip") {
  // Points exactly in a 2-D affine plane of R^7 survive project → lift.
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int d = 7, n = 50;
  Eigen::VectorXf m(d), u(d), w(d);
  for (int i = 0; i < d; ++i) {
    m[i] = g(rng);
    u[i] = g(rng);
    w[i] = g(rng);
  }
  Eigen::MatrixXf pts(d, n);
  for (int j = 0; j < n; ++j) pts.col(j) = m + 2.0f * g(rng) * u + g(rng) * w;
  const Pca2 p = pca_2d(pts);
  const Eigen::MatrixXf pr = project(p, pts);
  for (int j = 0; j < n; ++j) {
    const Eigen::VectorXf back = lift(p, pr(0, j), pr(1, j));
    CHECK((back - pts.col(j)).norm() < 1e-4f * (1.0f + pts.col(j).norm()));
  }
  CHECK((lift(p, 0, 0) - p.mean).norm() == 0.0f);
  // And the other way: lift then project returns the plane coordinates.
  const Eigen::VectorXf q = lift(p, 1.5f, -0.25f);
  const Eigen::MatrixXf back = project(p, q);
  CHECK(back(0, 0) == doctest::Approx(1.5).epsilon(1e-5));
  CHECK(back(1, 0) == doctest::Approx(-0.25).epsilon(1e-4));
}

// ---- interpolation ----

TEST_CASE("view_math: lerp endpoints and midpoint") {
  Eigen::VectorXf a(3), b(3);
  a << 1, -2, 4;
  b << 3, 2, -4;
  CHECK((lerp(a, b, 0.0f) - a).norm() == 0.0f);
  CHECK((lerp(a, b, 1.0f) - b).norm() < 1e-6f);
  Eigen::VectorXf mid(3);
  mid << 2, 0, 0;
  CHECK((lerp(a, b, 0.5f) - mid).norm() < 1e-6f);
}

TEST_CASE("view_math: slerp keeps norm, is uniform in angle and hits endpoints") {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int d = 16;
  for (int trial = 0; trial < 20; ++trial) {
    Eigen::VectorXf a(d), b(d);
    for (int i = 0; i < d; ++i) {
      a[i] = g(rng);
      b[i] = g(rng);
    }
    b *= a.norm() / b.norm();  // equal norms
    const double omega = std::acos(a.normalized().dot(b.normalized()));
    CHECK((slerp(a, b, 0.0f) - a).norm() < 1e-5f * a.norm());
    CHECK((slerp(a, b, 1.0f) - b).norm() < 1e-5f * a.norm());
    for (float t : {0.1f, 0.25f, 0.5f, 0.8f}) {
      const Eigen::VectorXf s = slerp(a, b, t);
      CHECK(s.norm() == doctest::Approx(a.norm()).epsilon(1e-5));
      const double ang = std::acos(std::clamp(s.normalized().dot(a.normalized()), -1.0f, 1.0f));
      CHECK(ang == doctest::Approx(t * omega).epsilon(1e-3));
    }
  }
  // Unequal norms: endpoints still exact, the direction uniform in angle, the norm linear.
  Eigen::VectorXf a(2), b(2);
  a << 2, 0;
  b << 0, 1;
  CHECK((slerp(a, b, 0.0f) - a).norm() < 1e-6f);
  CHECK((slerp(a, b, 1.0f) - b).norm() < 1e-6f);
  Eigen::VectorXf half(2);
  half << 1.5f * std::sqrt(0.5f), 1.5f * std::sqrt(0.5f);  // 45°, norm (2 + 1) / 2
  CHECK((slerp(a, b, 0.5f) - half).norm() < 1e-6f);
  const Eigen::VectorXf q = slerp(a, b, 0.25f);
  CHECK(q.norm() == doctest::Approx(1.75).epsilon(1e-6));
  CHECK(std::atan2(q[1], q[0]) == doctest::Approx(std::numbers::pi / 8).epsilon(1e-6));
}

TEST_CASE("view_math: slerp between nearly opposite points stays on the data's shell") {
  // The regression: Shoemake's weights sin((1−t)ω)/sin ω grow like 1/(π − ω), so points ~1e-4
  // rad from opposite were sent ~10⁴ times further out than the data; exactly opposite points
  // fell back to lerp through the origin. Now |slerp(a, b, t)| = (1 − t)|a| + t|b| and the
  // direction turns by t·ω.
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (int d : {2, 3, 16}) {
    for (double gap : {1e-2, 1e-4, 1e-6, 0.0}) {
      Eigen::VectorXf a(d), perp(d);
      for (int i = 0; i < d; ++i) {
        a[i] = g(rng);
        perp[i] = g(rng);
      }
      a *= 2.5f / a.norm();
      perp -= perp.dot(a) / a.squaredNorm() * a;
      perp.normalize();
      // b at angle π − gap from a, with a different norm.
      const Eigen::VectorXf b =
          (1.5 * (-std::cos(gap) * a.normalized().cast<double>() + std::sin(gap) * perp.cast<double>())).cast<float>();
      const double omega = std::numbers::pi - gap;
      CAPTURE(d);
      CAPTURE(gap);
      for (float t : {0.0f, 0.1f, 0.3f, 0.5f, 0.7f, 0.9f, 1.0f}) {
        const Eigen::VectorXf s = slerp(a, b, t);
        REQUIRE(s.allFinite());
        CHECK(s.norm() == doctest::Approx((1 - t) * 2.5 + t * 1.5).epsilon(1e-4));
        const double ang = std::acos(std::clamp(static_cast<double>(s.normalized().dot(a.normalized())), -1.0, 1.0));
        CHECK(ang == doctest::Approx(t * omega).epsilon(1e-3));
      }
      CHECK((slerp(a, b, 1.0f) - b).norm() < 1e-5f);
    }
  }
}

TEST_CASE("view_math: slerp falls back to lerp for zero and parallel inputs") {
  Eigen::VectorXf zero = Eigen::VectorXf::Zero(3), a(3), par(3), near(3);
  a << 1, 2, 3;
  par = 2.5f * a;
  near = a;
  near[0] += 1e-7f;
  for (const Eigen::VectorXf* b : {&zero, &par, &near}) {
    for (float t : {0.0f, 0.3f, 1.0f}) {
      const Eigen::VectorXf s = slerp(a, *b, t);
      CHECK(s.allFinite());
      CHECK((s - lerp(a, *b, t)).norm() < 1e-5f);
    }
  }
  const Eigen::VectorXf s = slerp(zero, a, 0.5f);
  CHECK((s - 0.5f * a).norm() < 1e-6f);
  // Exactly opposite: a half circle (not through the origin), the same path every call.
  const Eigen::VectorXf anti = -a;
  const Eigen::VectorXf mid = slerp(a, anti, 0.5f);
  CHECK(mid.norm() == doctest::Approx(a.norm()).epsilon(1e-6));
  CHECK(std::abs(mid.dot(a)) < 1e-5f);
  CHECK(mid == slerp(a, anti, 0.5f));
  // In 1-D there is no way round: through 0.
  Eigen::VectorXf p1(1), m1(1);
  p1 << 2;
  m1 << -1;
  CHECK(slerp(p1, m1, 0.5f)[0] == doctest::Approx(0.5));
}

// ---- normal quantiles and the manifold grid ----

TEST_CASE("view_math: inverse_normal_cdf known quantiles, symmetry and round trip") {
  CHECK(std::abs(inverse_normal_cdf(0.975) - 1.959963984540054) < 1e-9);
  CHECK(std::abs(inverse_normal_cdf(0.05) - -1.6448536269514722) < 1e-9);
  CHECK(std::abs(inverse_normal_cdf(0.5)) < 1e-12);
  CHECK(std::abs(inverse_normal_cdf(0.8413447460685429) - 1.0) < 1e-9);   // Φ(1)
  CHECK(std::abs(inverse_normal_cdf(1.3498980316301e-3) - -3.0) < 1e-9);  // Φ(−3)
  CHECK(std::abs(normal_cdf(1.959963984540054) - 0.975) < 1e-12);

  // Both branches of Acklam's approximation (central and tails) and deep tails.
  std::vector<double> ps = {1e-300, 1e-100, 1e-12, 1e-6, 1e-3, 0.01, 0.02, 0.02425, 0.03, 0.1,
                            0.25,   0.4,    0.49,  0.5,  0.51, 0.6,  0.9,  0.97,    0.999, 1 - 1e-9};
  for (int i = 1; i < 200; ++i) ps.push_back(i / 200.0);
  for (double p : ps) {
    const double x = inverse_normal_cdf(p);
    REQUIRE(std::isfinite(x));
    // Round trip in the tail that keeps precision: Φ(−|x|) = min(p, 1 − p).
    const double lower = std::min(p, 1.0 - p);
    CHECK(std::abs(normal_cdf(-std::abs(x)) - lower) <= 1e-9 * lower);
    // Symmetry where 1 − p is exact (p ≥ 0.5); elsewhere 1 − p is itself rounded.
    if (p >= 0.5) CHECK(inverse_normal_cdf(1.0 - p) == -x);
    else if (p >= 1e-6) CHECK(inverse_normal_cdf(1.0 - p) == doctest::Approx(-x).epsilon(1e-9));
  }
  // Strictly increasing.
  double prev = -std::numeric_limits<double>::infinity();
  for (int i = 1; i < 1000; ++i) {
    const double x = inverse_normal_cdf(i / 1000.0);
    CHECK(x > prev);
    prev = x;
  }
  CHECK(inverse_normal_cdf(0.0) == -std::numeric_limits<double>::infinity());
  CHECK(inverse_normal_cdf(1.0) == std::numeric_limits<double>::infinity());
  CHECK(std::isnan(inverse_normal_cdf(std::nan(""))));
}

TEST_CASE("view_math: manifold_coordinates") {
  CHECK(manifold_coordinates(0).empty());
  CHECK(manifold_coordinates(-3).empty());
  REQUIRE(manifold_coordinates(1).size() == 1);
  CHECK(manifold_coordinates(1)[0] == 0.0f);

  const auto two = manifold_coordinates(2);
  REQUIRE(two.size() == 2);
  CHECK(two[0] == doctest::Approx(-1.6448536269514722));
  CHECK(two[1] == doctest::Approx(1.6448536269514722));

  for (int n : {3, 10, 15, 20}) {
    const auto z = manifold_coordinates(n, 0.05);
    REQUIRE(z.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const double p = 0.05 + 0.9 * i / (n - 1.0);
      CHECK(z[static_cast<std::size_t>(i)] == doctest::Approx(inverse_normal_cdf(p)).epsilon(1e-6));
      CHECK(z[static_cast<std::size_t>(i)] == -z[static_cast<std::size_t>(n - 1 - i)]);
      if (i > 0) CHECK(z[static_cast<std::size_t>(i)] > z[static_cast<std::size_t>(i - 1)]);
    }
    if (n % 2 == 1) CHECK(z[static_cast<std::size_t>(n / 2)] == 0.0f);
  }
  const auto wide = manifold_coordinates(5, 0.01);
  CHECK(wide.front() == doctest::Approx(inverse_normal_cdf(0.01)));
  // lo = 0 would give ±inf; it is clamped to something finite.
  for (float v : manifold_coordinates(4, 0.0)) CHECK(std::isfinite(v));
}

// ---- plot ranges ----

TEST_CASE("view_math: finite_range ignores non-finite values") {
  const std::vector<float> v = {kNaN, 3.0f, -kInf, -2.5f, kInf, 7.0f, kNaN, 0.0f};
  const Range r = finite_range(v.data(), v.size());
  CHECK(r.valid);
  CHECK(r.lo == -2.5);
  CHECK(r.hi == 7.0);

  const Range lr = finite_range(v.data(), v.size(), true);
  CHECK(lr.valid);
  CHECK(lr.lo == 3.0);
  CHECK(lr.hi == 7.0);

  const std::vector<float> bad = {kNaN, kInf, -kInf};
  CHECK_FALSE(finite_range(bad.data(), bad.size()).valid);
  CHECK_FALSE(finite_range(v.data(), 0).valid);
  CHECK_FALSE(finite_range(nullptr, 0).valid);
  const std::vector<float> nonpos = {0.0f, -1.0f, kNaN};
  CHECK_FALSE(finite_range(nonpos.data(), nonpos.size(), true).valid);
  const float one = 4.0f;
  const Range single = finite_range(&one, 1);
  CHECK((single.valid && single.lo == 4.0 && single.hi == 4.0));
}

TEST_CASE("view_math: padded") {
  Range r{2.0, 12.0, true};
  const Range p = padded(r, 0.1);
  CHECK(p.lo == doctest::Approx(1.0));
  CHECK(p.hi == doctest::Approx(13.0));
  const Range z = padded(Range{0.0, 0.0, true}, 0.05);
  CHECK(z.lo == doctest::Approx(-0.05));
  CHECK(z.hi == doctest::Approx(0.05));
  const Range big = padded(Range{-300.0, -300.0, true}, 0.05);
  CHECK(big.lo == doctest::Approx(-315.0));
  CHECK(big.hi == doctest::Approx(-285.0));
  const Range invalid = padded(Range{}, 0.05);
  CHECK_FALSE(invalid.valid);
}

TEST_CASE("view_math: nice_ticks properties on random ranges") {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (int trial = 0; trial < 20000; ++trial) {
    // Log-uniform magnitudes from 1e-30 to 1e30, centres anywhere from 0 to 1e3 spans away.
    const double span = std::pow(10.0, -30.0 + 60.0 * u01(rng));
    const double centre = (u01(rng) - 0.5) * span * std::pow(10.0, 3.0 * u01(rng));
    const double lo = centre - span * u01(rng);
    const double hi = lo + span;
    const int max_ticks = 1 + static_cast<int>(u01(rng) * 12);
    const auto t = nice_ticks(lo, hi, max_ticks);
    CAPTURE(lo);
    CAPTURE(hi);
    CAPTURE(max_ticks);
    REQUIRE(!t.empty());
    CHECK(t.size() <= static_cast<std::size_t>(max_ticks) + 1);
    // step ≤ 2.5 × span / max_ticks, so the axis is not left nearly bare.
    CHECK(t.size() >= static_cast<std::size_t>(max_ticks / 2.5));
    for (double v : t) CHECK((v >= lo && v <= hi));
    if (t.size() >= 2) {
      const double step = t[1] - t[0];
      REQUIRE(step > 0);
      const double e = std::floor(std::log10(step) + 1e-9);
      const double mant = step / std::pow(10.0, e);
      const bool nice = std::abs(mant - 1) < 1e-6 || std::abs(mant - 2) < 1e-6 ||
                        std::abs(mant - 5) < 1e-6 || std::abs(mant - 10) < 1e-5;
      CHECK(nice);
      for (std::size_t i = 1; i < t.size(); ++i) {
        CHECK((t[i] - t[i - 1]) == doctest::Approx(step).epsilon(1e-6));
        // Ticks are integer multiples of the step.
        const double k = t[i] / step;
        CHECK(std::abs(k - std::round(k)) < 1e-6 * std::max(1.0, std::abs(k)));
      }
      // Labels of neighbouring ticks differ.
      for (std::size_t i = 1; i < t.size(); ++i) CHECK(tick_label(t[i]) != tick_label(t[i - 1]));
    }
  }
}

TEST_CASE("view_math: count axes have whole-number ticks labelled without exponents") {
  CHECK(integer_ticks(0.0, 3.0, 8) == std::vector<double>{0, 1, 2, 3});  // nice_ticks alone steps by 0.5
  CHECK(integer_ticks(1.0, 1.6, 6) == std::vector<double>{1});
  CHECK(integer_ticks(0.0, 20000.0, 4) == nice_ticks(0.0, 20000.0, 4));
  CHECK(count_label(0) == "0");
  CHECK(count_label(900) == "900");
  CHECK(count_label(1000) == "1k");
  CHECK(count_label(10000) == "10k");
  CHECK(count_label(250000) == "250k");
  CHECK(count_label(12500) == "12,500");
  CHECK(count_label(1234567) == "1,234,567");
  CHECK(count_label(1500000) == "1.5M");
  CHECK(count_label(2000000) == "2M");
  CHECK(count_label(-15000) == "-15k");
  CHECK(count_label(-12500) == "-12,500");
  CHECK(count_label(2.5) == tick_label(2.5));
  for (double v = 0; v < 2e6; v += 2500) CHECK(count_label(v).find('e') == std::string::npos);
}

TEST_CASE("view_math: nice_ticks specific ranges") {
  const std::vector<double> unit = nice_ticks(0.0, 1.0, 5);
  const std::vector<double> unit_expected = {0.0, 0.2, 0.4, 0.6, 0.8, 1.0};
  REQUIRE(unit.size() == unit_expected.size());
  // Decimal steps come out as the nearest doubles, so labels and comparisons are clean.
  for (std::size_t i = 0; i < unit.size(); ++i) CHECK(unit[i] == unit_expected[i]);

  const auto neg = nice_ticks(-240.0, -10.0, 6);
  CHECK(neg == std::vector<double>{-200, -150, -100, -50});

  CHECK(nice_ticks(3.5, 3.5) == std::vector<double>{3.5});  // lo == hi: the value itself
  CHECK(nice_ticks(10.0, 0.0, 5) == nice_ticks(0.0, 10.0, 5));  // reversed arguments
  CHECK(nice_ticks(std::nan(""), 1.0).empty());
  CHECK(nice_ticks(0.0, std::numeric_limits<double>::infinity()).empty());

  const auto tiny = nice_ticks(1e-12, 5e-12, 4);
  CHECK(tiny == std::vector<double>{1e-12, 2e-12, 3e-12, 4e-12, 5e-12});
  const auto huge = nice_ticks(-1e300, 1e300, 4);
  CHECK(huge == std::vector<double>{-1e300, -5e299, 0, 5e299, 1e300});
  const double big = std::numeric_limits<double>::max();
  const auto extreme = nice_ticks(-big, big, 6);
  CHECK(!extreme.empty());
  CHECK(extreme.size() <= 7);
  for (double v : extreme) CHECK(std::isfinite(v));

  // A span below double resolution at its magnitude degenerates to one tick.
  CHECK(nice_ticks(1e9, 1e9 + 1e-7, 6).size() == 1);
  // max_ticks = 1 with no multiple of the coarse step inside: one round value is still found.
  const auto one = nice_ticks(0.51, 0.99, 1);
  REQUIRE(one.size() == 1);
  CHECK((one[0] >= 0.51 && one[0] <= 0.99));
}

TEST_CASE("view_math: log_ticks") {
  CHECK(log_ticks(1.0, 1000.0) == std::vector<double>{1, 10, 100, 1000});
  CHECK(log_ticks(0.5, 50.0) == std::vector<double>{1, 10});
  CHECK(log_ticks(1e-3, 2e-3) == std::vector<double>{1e-3});
  CHECK(log_ticks(2e-3, 5e-3).empty());
  CHECK(log_ticks(0.0, 10.0).empty());
  CHECK(log_ticks(-1.0, 10.0).empty());
  CHECK(log_ticks(1000.0, 1.0) == log_ticks(1.0, 1000.0));
  const auto many = log_ticks(1e-100, 1e100);
  CHECK(many.size() <= 11);
  CHECK(many.size() >= 5);
  for (double v : many) CHECK((v >= 1e-100 && v <= 1e100));
  CHECK(std::find(many.begin(), many.end(), 1.0) != many.end());
}

TEST_CASE("view_math: tick_label") {
  CHECK(tick_label(0.5) == "0.5");
  CHECK(tick_label(1e4) == "1e+04");
  CHECK(tick_label(-240) == "-240");
  CHECK(tick_label(0.0) == "0");
  CHECK(tick_label(-0.0) == "0");
  CHECK(tick_label(0.1 + 0.2) == "0.3");
  CHECK(tick_label(1e-5) == "1e-05");
  CHECK(tick_label(2.5e-7) == "2.5e-07");
  CHECK(tick_label(1234) == "1234");
  CHECK(tick_label(12345) == "12345");  // not collapsed to 1.234e+04
  CHECK(tick_label(3.14159265) == "3.14159");
  for (double v : nice_ticks(-1.0, 1.0, 10)) CHECK(tick_label(v) != "-0");
}

TEST_CASE("view_math: smooth_ema") {
  const std::vector<float> v = {1, 3, kNaN, 5, kInf, 5};
  const auto s = smooth_ema(v.data(), v.size(), 0.5f);
  REQUIRE(s.size() == v.size());
  CHECK(s[0] == 1.0f);  // seeded by the first value, no bias towards 0
  CHECK(s[1] == 2.0f);
  CHECK(std::isnan(s[2]));
  CHECK(s[3] == 3.5f);  // the NaN did not touch the state
  CHECK(std::isnan(s[4]));
  CHECK(s[5] == 4.25f);

  const auto id = smooth_ema(v.data(), v.size(), 1.0f);
  CHECK(id[1] == 3.0f);
  CHECK(id[5] == 5.0f);

  const std::vector<float> lead = {kNaN, -kInf, 2, 2, 2};
  const auto l = smooth_ema(lead.data(), lead.size(), 0.1f);
  CHECK(std::isnan(l[0]));
  CHECK(std::isnan(l[1]));
  CHECK(l[2] == 2.0f);
  CHECK(l[4] == doctest::Approx(2.0));
  CHECK(smooth_ema(v.data(), 0, 0.5f).empty());
}

// ---- colour ----

TEST_CASE("view_math: viridis endpoints, clamping and monotone luminance") {
  const Rgb8 lo = colormap_viridis(0.0f), hi = colormap_viridis(1.0f);
  CHECK((lo.r == 68 && lo.g == 1 && lo.b == 84));
  CHECK((hi.r == 253 && hi.g == 231 && hi.b == 37));
  const Rgb8 mid = colormap_viridis(0.5f);
  CHECK((mid.r == 33 && mid.g == 145 && mid.b == 140));
  CHECK(same(colormap_viridis(-3.0f), lo));
  CHECK(same(colormap_viridis(7.0f), hi));
  CHECK(same(colormap_viridis(kNaN), lo));

  const auto table = colormap_table(1);
  REQUIRE(table.size() == 256 * 3);
  std::vector<double> y(256);
  for (int i = 0; i < 256; ++i) {
    const Rgb8 c{table[3 * i], table[3 * i + 1], table[3 * i + 2]};
    CHECK(same(c, colormap_viridis(i / 255.0f)));
    y[static_cast<std::size_t>(i)] = luminance(c);
  }
  // Monotone up to 8-bit rounding (one channel stepping down a level between neighbours),
  // and strictly increasing over any 8 entries.
  for (std::size_t i = 1; i < 256; ++i) CHECK(y[i] >= y[i - 1] - 1e-3);
  for (std::size_t i = 8; i < 256; ++i) CHECK(y[i] > y[i - 8]);
  CHECK(luminance(hi) > 10 * luminance(lo));
}

TEST_CASE("view_math: grey map and table") {
  CHECK(same(colormap_grey(0.0f), Rgb8{0, 0, 0}));
  CHECK(same(colormap_grey(1.0f), Rgb8{255, 255, 255}));
  CHECK(same(colormap_grey(2.0f), Rgb8{255, 255, 255}));
  CHECK(same(colormap_grey(-1.0f), Rgb8{0, 0, 0}));
  const auto table = colormap_table(0);
  REQUIRE(table.size() == 256 * 3);
  for (int i = 0; i < 256; ++i)
    for (int c = 0; c < 3; ++c) CHECK(table[static_cast<std::size_t>(3 * i + c)] == i);
}

TEST_CASE("view_math: category colours") {
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 10; ++i) {
    const Rgb8 c = category_colour(i);
    seen.insert(static_cast<std::uint32_t>(c.r << 16 | c.g << 8 | c.b));
    // Pairwise clearly apart in RGB (Euclidean distance in 8-bit units).
    for (int j = 0; j < i; ++j) {
      const Rgb8 o = category_colour(j);
      const double dist = std::hypot(c.r - o.r, c.g - o.g, c.b - o.b);
      CHECK(dist > 60);
    }
  }
  CHECK(seen.size() == 10);
  CHECK(same(category_colour(0), Rgb8{0xE6, 0x9F, 0x00}));  // Okabe–Ito orange
  CHECK(same(category_colour(10), category_colour(0)));
  CHECK(same(category_colour(23), category_colour(3)));
  const Rgb8 neutral = category_colour(-1);
  CHECK(same(neutral, category_colour(-42)));
  for (int i = 0; i < 10; ++i) CHECK_FALSE(same(neutral, category_colour(i)));
}

TEST_CASE("view_math: tile_images lays planar colour images out plane by plane, and image_rgb8 shows them as RGB") {
  // Two 3×1×2 images (planar: red plane, green plane, blue plane), side by side with a gap of 1.
  Eigen::MatrixXf images(6, 2);
  images.col(0) << 1.0f, 0.5f, 0.0f, 0.25f, 0.0f, 1.0f;   // pixel 0 (1, 0, 0), pixel 1 (0.5, 0.25, 1)
  images.col(1) << 0.0f, 0.0f, 1.0f, 1.0f, 0.2f, 0.2f;    // pixel 0 (0, 1, 0.2), pixel 1 (0, 1, 0.2)
  int w = 0, h = 0;
  const std::vector<float> grid = tile_images(images, 3, 1, 2, 1, 2, 1, w, h);
  REQUIRE(w == 5);
  REQUIRE(h == 1);
  REQUIRE(grid.size() == 15u);
  const std::vector<float> red(grid.begin(), grid.begin() + 5), green(grid.begin() + 5, grid.begin() + 10);
  CHECK(red == std::vector<float>{1.0f, 0.5f, -1.0f, 0.0f, 0.0f});
  CHECK(green == std::vector<float>{0.0f, 0.25f, -1.0f, 1.0f, 1.0f});
  const std::vector<std::uint8_t> rgb = image_rgb8(grid, 3, w, h, 0, 2, 32);
  REQUIRE(rgb.size() == static_cast<std::size_t>(10 * 2 * 3));
  auto px = [&](int x, int y) { return std::vector<int>(rgb.begin() + (y * 10 + x) * 3, rgb.begin() + (y * 10 + x) * 3 + 3); };
  CHECK(px(0, 0) == std::vector<int>{255, 0, 0});
  CHECK(px(1, 1) == std::vector<int>{255, 0, 0});  // scaled 2×: each pixel is a 2×2 block
  CHECK(px(2, 0) == std::vector<int>{128, 64, 255});
  CHECK(px(4, 0) == std::vector<int>{32, 32, 32});  // the gap
  CHECK(px(6, 0) == std::vector<int>{0, 255, 51});

  // One channel goes through the colormap, as before.
  const std::vector<float> grey = {0.0f, 1.0f, -1.0f};
  const std::vector<std::uint8_t> g = image_rgb8(grey, 1, 3, 1, 0, 1, 7);
  CHECK(std::vector<int>(g.begin(), g.end()) == std::vector<int>{0, 0, 0, 255, 255, 255, 7, 7, 7});
  const std::vector<std::uint8_t> table = colormap_table(1);
  const std::vector<std::uint8_t> v = image_rgb8(grey, 1, 3, 1, 1, 1, 7);
  CHECK(std::equal(v.begin() + 3, v.begin() + 6, table.begin() + 255 * 3));
}
