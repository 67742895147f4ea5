// Tests of core/conv: sizes against PyTorch's formulas, forward passes against the direct convolution
// and the transposed convolution's scatter-add definition, backward passes against finite differences
// and a direct reference, and the convolutional VAE's layer sizes. Not a benchmark.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <tuple>
#include <vector>

#include "core/conv.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"

using namespace vaelab;

namespace {

ConvGeometry geo(int in_c, int h, int w, int out_c, int k, int s, int p, bool transposed = false, int oph = 0,
                 int opw = 0) {
  ConvGeometry g;
  g.in_c = in_c;
  g.in_h = h;
  g.in_w = w;
  g.out_c = out_c;
  g.kernel = k;
  g.stride = s;
  g.pad = p;
  g.output_pad_h = oph;
  g.output_pad_w = opw;
  g.transposed = transposed;
  return g;
}

Eigen::MatrixXf random_matrix(Eigen::Index r, Eigen::Index c, Rng& rng, float scale = 1.0f) {
  Eigen::MatrixXf m(r, c);
  for (Eigen::Index j = 0; j < c; ++j)
    for (Eigen::Index i = 0; i < r; ++i) m(i, j) = scale * rng.normal();
  return m;
}

// Every (input element, output element, weight element) triple the layer multiplies, straight from
// the definitions:
//   Conv2d:          y[o, oy, ox] += w[o, c, i, j] · x[c, oy·s − p + i, ox·s − p + j]   (gather)
//   ConvTranspose2d: y[o, iy·s − p + i, ix·s − p + j] += w[c, o, i, j] · x[c, iy, ix]   (scatter-add)
// with row-major NCHW / [out, in, k, k] / [in, out, k, k] indices; out-of-range terms are dropped.
void for_each_term(const ConvGeometry& g, const std::function<void(int xi, int yi, int wi)>& f) {
  const int k = g.kernel, s = g.stride, p = g.pad, OH = g.out_h(), OW = g.out_w();
  if (!g.transposed) {
    for (int o = 0; o < g.out_c; ++o)
      for (int oy = 0; oy < OH; ++oy)
        for (int ox = 0; ox < OW; ++ox)
          for (int c = 0; c < g.in_c; ++c)
            for (int i = 0; i < k; ++i)
              for (int j = 0; j < k; ++j) {
                const int iy = oy * s - p + i, ix = ox * s - p + j;
                if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
                f((c * g.in_h + iy) * g.in_w + ix, (o * OH + oy) * OW + ox, ((o * g.in_c + c) * k + i) * k + j);
              }
  } else {
    for (int c = 0; c < g.in_c; ++c)
      for (int iy = 0; iy < g.in_h; ++iy)
        for (int ix = 0; ix < g.in_w; ++ix)
          for (int o = 0; o < g.out_c; ++o)
            for (int i = 0; i < k; ++i)
              for (int j = 0; j < k; ++j) {
                const int oy = iy * s - p + i, ox = ix * s - p + j;
                if (oy < 0 || oy >= OH || ox < 0 || ox >= OW) continue;
                f((c * g.in_h + iy) * g.in_w + ix, (o * OH + oy) * OW + ox, ((c * g.out_c + o) * k + i) * k + j);
              }
  }
}

// Reference forward in double: y = b + Σ terms.
Eigen::MatrixXd reference_forward(const ConvGeometry& g, const std::vector<float>& W, const std::vector<float>& b,
                                  const Eigen::MatrixXf& x) {
  const int P = g.out_h() * g.out_w();
  Eigen::MatrixXd y(g.out_size(), x.cols());
  for (Eigen::Index n = 0; n < x.cols(); ++n)
    for (int o = 0; o < g.out_c; ++o) y.col(n).segment(o * P, P).setConstant(b[o]);
  for_each_term(g, [&](int xi, int yi, int wi) {
    for (Eigen::Index n = 0; n < x.cols(); ++n) y(yi, n) += static_cast<double>(W[wi]) * x(xi, n);
  });
  return y;
}

// Reference backward in double (the adjoint of each term).
void reference_backward(const ConvGeometry& g, const std::vector<float>& W, const Eigen::MatrixXf& x,
                        const Eigen::MatrixXf& dy, std::vector<double>& dW, std::vector<double>& db,
                        Eigen::MatrixXd& dx) {
  const int P = g.out_h() * g.out_w();
  dW.assign(g.weight_size(), 0.0);
  db.assign(g.out_c, 0.0);
  dx.setZero(x.rows(), x.cols());
  for (int o = 0; o < g.out_c; ++o) db[o] = dy.middleRows(o * P, P).cast<double>().sum();
  for_each_term(g, [&](int xi, int yi, int wi) {
    for (Eigen::Index n = 0; n < x.cols(); ++n) {
      dW[wi] += static_cast<double>(dy(yi, n)) * x(xi, n);
      dx(xi, n) += static_cast<double>(W[wi]) * dy(yi, n);
    }
  });
}

// max |a − ref| / max(1, max |ref|): a relative error on the scale of the whole tensor.
double rel_error(const float* a, const double* ref, std::size_t n) {
  double err = 0, scale = 1;
  for (std::size_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(a[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / scale;
}
double rel_error(const Eigen::MatrixXf& a, const Eigen::MatrixXd& ref) {
  REQUIRE(a.rows() == ref.rows());
  REQUIRE(a.cols() == ref.cols());
  return rel_error(a.data(), ref.data(), static_cast<std::size_t>(a.size()));
}

// Max over elements of |a − b| / (atol + rtol·|b|): ≤ 1 means every element agrees.
double worst_ratio(const float* a, const double* b, std::size_t n, double atol, double rtol) {
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / (atol + rtol * std::abs(b[i])));
  return worst;
}

struct Params {
  std::vector<float> W, b;
};
Params random_params(const ConvGeometry& g, Rng& rng) {
  Params p;
  const float scale = 1.0f / std::sqrt(static_cast<float>(g.in_c * g.kernel * g.kernel));
  for (int i = 0; i < g.weight_size(); ++i) p.W.push_back(scale * rng.normal());
  for (int i = 0; i < g.out_c; ++i) p.b.push_back(rng.normal());
  return p;
}

void check_forward(const ConvGeometry& g, int B) {
  CAPTURE(g.transposed);
  CAPTURE(g.in_c);
  CAPTURE(g.in_h);
  CAPTURE(g.in_w);
  CAPTURE(g.out_c);
  CAPTURE(g.kernel);
  CAPTURE(g.stride);
  CAPTURE(g.pad);
  CAPTURE(g.output_pad_h);
  CAPTURE(g.output_pad_w);
  REQUIRE_NOTHROW(validate(g));
  Rng rng(static_cast<std::uint64_t>(g.in_h * 131 + g.out_c * 7 + g.stride));
  const Params p = random_params(g, rng);
  const Eigen::MatrixXf x = random_matrix(g.in_size(), B, rng);
  const Eigen::MatrixXd ref = reference_forward(g, p.W, p.b, x);
  ConvWorkspace ws(g);
  Eigen::MatrixXf y(g.out_size(), B);
  y.setConstant(NAN);  // every element must be written
  conv_forward(p.W.data(), p.b.data(), g, x, y, ws);
  CHECK(rel_error(y, ref) < 1e-5);

  // Strided views in and out: x as the top rows of a taller matrix, y as a block of a larger one.
  Eigen::MatrixXf tall(g.in_size() + 3, B);
  tall.setConstant(NAN);
  tall.topRows(g.in_size()) = x;
  Eigen::MatrixXf big = Eigen::MatrixXf::Constant(g.out_size() + 5, B + 2, -7.0f);
  MatRef yb(big.block(2, 1, g.out_size(), B));
  conv_forward(p.W.data(), p.b.data(), g, tall.topRows(g.in_size()), yb, ws);
  CHECK(rel_error(Eigen::MatrixXf(big.block(2, 1, g.out_size(), B)), ref) < 1e-5);
  CHECK(big.topRows(2).cwiseEqual(-7.0f).all());
  CHECK(big.bottomRows(3).cwiseEqual(-7.0f).all());
  CHECK(big.col(0).cwiseEqual(-7.0f).all());
  CHECK(big.col(B + 1).cwiseEqual(-7.0f).all());

  // Without bias.
  std::vector<float> zero_b(g.out_c, 0.0f);
  const Eigen::MatrixXd ref0 = reference_forward(g, p.W, zero_b, x);
  conv_forward(p.W.data(), nullptr, g, x, y, ws);
  CHECK(rel_error(y, ref0) < 1e-5);
}

// f = Σ R ⊙ y (so dy = R), accumulated in double.
void check_gradients_fd(const ConvGeometry& g, int B) {
  CAPTURE(g.transposed);
  CAPTURE(g.in_h);
  CAPTURE(g.in_w);
  CAPTURE(g.stride);
  CAPTURE(g.pad);
  CAPTURE(g.output_pad_h);
  REQUIRE_NOTHROW(validate(g));
  Rng rng(29);
  Params p = random_params(g, rng);
  Eigen::MatrixXf x = random_matrix(g.in_size(), B, rng);
  const Eigen::MatrixXf R = random_matrix(g.out_size(), B, rng);
  ConvWorkspace ws(g);
  Eigen::MatrixXf y(g.out_size(), B);
  auto f = [&] {
    conv_forward(p.W.data(), p.b.data(), g, x, y, ws);
    return (R.cast<double>().array() * y.cast<double>().array()).sum();
  };
  std::vector<float> dW(g.weight_size(), NAN), db(g.out_c, NAN);
  Eigen::MatrixXf dx = Eigen::MatrixXf::Constant(g.in_size(), B, NAN);
  MatRef dxr(dx);
  conv_backward(p.W.data(), g, x, R, dW.data(), db.data(), &dxr, ws);

  // Central differences in float. The layer is linear in each of W, b, x, so the step only trades
  // rounding error; tolerance as in test_gradients: 2e-3 absolute + 2 % relative.
  const float h = 1e-2f;
  auto fd = [&](float& v) {
    const float keep = v;
    v = keep + h;
    const double up = f();
    v = keep - h;
    const double down = f();
    v = keep;
    return (up - down) / (2.0 * h);
  };
  std::vector<double> fW, fb, fx;
  for (float& v : p.W) fW.push_back(fd(v));
  for (float& v : p.b) fb.push_back(fd(v));
  for (Eigen::Index i = 0; i < x.size(); ++i) fx.push_back(fd(x.data()[i]));
  CHECK(worst_ratio(dW.data(), fW.data(), dW.size(), 2e-3, 2e-2) <= 1.0);
  CHECK(worst_ratio(db.data(), fb.data(), db.size(), 2e-3, 2e-2) <= 1.0);
  CHECK(worst_ratio(dx.data(), fx.data(), fx.size(), 2e-3, 2e-2) <= 1.0);
}

}  // namespace

TEST_CASE("conv: output sizes follow PyTorch's formulas and bad geometries are rejected") {
  CHECK(geo(1, 28, 28, 32, 3, 2, 1).out_h() == 14);
  CHECK(geo(1, 27, 28, 32, 3, 2, 1).out_h() == 14);
  CHECK(geo(1, 10, 9, 4, 5, 1, 0).out_h() == 6);
  CHECK(geo(1, 10, 9, 4, 5, 1, 0).out_w() == 5);
  CHECK(geo(1, 10, 10, 4, 3, 3, 0).out_h() == 3);  // ⌊(10 − 3)/3⌋ + 1
  CHECK(geo(2, 7, 7, 3, 3, 2, 1, true, 1, 1).out_h() == 14);
  CHECK(geo(2, 7, 7, 3, 3, 2, 1, true, 0, 0).out_h() == 13);
  CHECK(geo(2, 7, 7, 3, 4, 2, 1, true).out_w() == 14);
  CHECK(geo(2, 5, 4, 3, 3, 3, 0, true, 2, 1).out_h() == 17);
  CHECK(geo(2, 5, 4, 3, 3, 3, 0, true, 2, 1).out_w() == 13);
  const ConvGeometry t = geo(2, 5, 4, 3, 3, 2, 1, true, 1, 0);
  CHECK(t.in_size() == 2 * 5 * 4);
  CHECK(t.out_size() == 3 * 10 * 7);
  CHECK(t.weight_size() == 2 * 3 * 9);
  CHECK(t.bias_size() == 3);

  CHECK_NOTHROW(validate(geo(1, 1, 1, 1, 3, 2, 1)));
  CHECK_THROWS_AS(validate(geo(0, 5, 5, 1, 3, 1, 1)), Error);
  CHECK_THROWS_AS(validate(geo(1, 5, 5, 1, 3, 0, 1)), Error);
  CHECK_THROWS_AS(validate(geo(1, 5, 5, 1, 3, 1, -1)), Error);
  CHECK_THROWS_AS(validate(geo(1, 2, 2, 1, 5, 1, 1)), Error);               // kernel larger than padded input
  CHECK_THROWS_AS(validate(geo(1, 5, 5, 1, 3, 2, 1, false, 1, 0)), Error);  // output padding on a conv
  CHECK_THROWS_AS(validate(geo(1, 5, 5, 1, 3, 2, 1, true, 2, 0)), Error);   // output padding ≥ stride
  CHECK_THROWS_AS(validate(geo(1, 1, 1, 1, 1, 1, 1, true)), Error);         // empty output
}

TEST_CASE("conv: hand-computed values pin PyTorch's cross-correlation and weight layouts") {
  // Conv2d(1, 1, 3, stride 2, padding 1) is a cross-correlation (no kernel flip):
  // y[oy, ox] = w[0,0]·x[2oy−1, 2ox−1] + w[2,2]·x[2oy+1, 2ox+1] with this w.
  const std::vector<float> w = {1, 0, 0, 0, 0, 0, 0, 0, 2};
  const float bias = 0.5f;
  Eigen::MatrixXf x(9, 1), y(4, 1);
  x << 1, 2, 3, 4, 5, 6, 7, 8, 9;
  ConvGeometry g = geo(1, 3, 3, 1, 3, 2, 1);
  ConvWorkspace ws(g);
  conv_forward(w.data(), &bias, g, x, y, ws);
  CHECK(y(0) == 10.5f);
  CHECK(y(1) == 0.5f);
  CHECK(y(2) == 0.5f);
  CHECK(y(3) == 5.5f);

  // ConvTranspose2d(1, 1, 3, stride 2, padding 1, output_padding 1): 2×2 → 4×4, input (iy, ix) and
  // tap (i, j) land on (2iy − 1 + i, 2ix − 1 + j).
  Eigen::MatrixXf xt(4, 1), yt(16, 1);
  xt << 1, 2, 3, 4;
  g = geo(1, 2, 2, 1, 3, 2, 1, true, 1, 1);
  conv_forward(w.data(), nullptr, g, xt, yt, ws);
  Eigen::MatrixXf expect = Eigen::MatrixXf::Zero(16, 1);
  expect(1 * 4 + 1) = 4 + 2;  // w[0,0]·x[1,1] + w[2,2]·x[0,0]
  expect(1 * 4 + 3) = 4;
  expect(3 * 4 + 1) = 6;
  expect(3 * 4 + 3) = 8;
  CHECK(yt == expect);

  // 1×1 kernels on one pixel make the layouts plain: Conv2d weight [out, in], ConvTranspose2d [in, out].
  const std::vector<float> w6 = {1, 2, 3, 4, 5, 6};
  Eigen::MatrixXf x2(2, 1), y3(3, 1);
  x2 << 1, 10;
  g = geo(2, 1, 1, 3, 1, 1, 0);  // weight [3, 2]: y_o = Σ_c w[o·2 + c] x_c
  conv_forward(w6.data(), nullptr, g, x2, y3, ws);
  CHECK(y3(0) == 21.0f);
  CHECK(y3(1) == 43.0f);
  CHECK(y3(2) == 65.0f);
  g = geo(2, 1, 1, 3, 1, 1, 0, true);  // weight [2, 3]: y_o = Σ_c w[c·3 + o] x_c
  conv_forward(w6.data(), nullptr, g, x2, y3, ws);
  CHECK(y3(0) == 41.0f);
  CHECK(y3(1) == 52.0f);
  CHECK(y3(2) == 63.0f);
}

TEST_CASE("conv: forward matches the direct convolution") {
  check_forward(geo(2, 5, 6, 3, 3, 1, 0), 3);
  check_forward(geo(3, 7, 7, 4, 3, 2, 1), 2);
  check_forward(geo(1, 8, 5, 2, 3, 2, 0), 4);
  check_forward(geo(2, 6, 6, 5, 1, 1, 0), 2);   // 1×1
  check_forward(geo(2, 9, 8, 3, 5, 1, 2), 3);   // 5×5 'same'
  check_forward(geo(3, 11, 10, 2, 3, 3, 1), 2); // stride 3
  check_forward(geo(1, 27, 27, 4, 3, 2, 1), 2); // odd, VAE-like
  check_forward(geo(2, 4, 4, 2, 3, 1, 3), 1);   // padding larger than the image: bias-only border
  check_forward(geo(1, 1, 1, 3, 3, 2, 1), 5);   // 1×1 image
}

TEST_CASE("conv: transposed forward matches the scatter-add definition") {
  check_forward(geo(2, 4, 5, 3, 3, 1, 0, true), 3);
  check_forward(geo(3, 4, 4, 2, 3, 2, 1, true, 1, 1), 2);   // 4 → 8
  check_forward(geo(3, 4, 4, 2, 3, 2, 1, true, 0, 0), 2);   // 4 → 7
  check_forward(geo(2, 5, 3, 4, 3, 2, 1, true, 1, 0), 3);   // per-axis output padding
  check_forward(geo(2, 5, 5, 3, 4, 2, 1, true), 2);         // 4×4 kernel, 5 → 10
  check_forward(geo(1, 3, 4, 2, 3, 3, 0, true, 2, 1), 2);   // stride 3, output padding 2
  check_forward(geo(2, 6, 7, 1, 3, 1, 1, true), 4);         // stride 1 'same', one output channel
  check_forward(geo(2, 5, 5, 2, 1, 2, 0, true, 1, 1), 2);   // 1×1 kernel stride 2: gaps get the bias
  check_forward(geo(2, 7, 7, 3, 3, 2, 1, true, 1, 1), 3);   // VAE-like 7 → 14
}

TEST_CASE("conv: backward matches finite differences (convolution)") {
  check_gradients_fd(geo(2, 5, 4, 3, 3, 1, 1), 2);
  check_gradients_fd(geo(2, 6, 5, 2, 3, 2, 1), 3);
  check_gradients_fd(geo(1, 7, 7, 2, 3, 2, 0), 2);
  check_gradients_fd(geo(2, 5, 5, 2, 2, 3, 1), 2);
}

TEST_CASE("conv: backward matches finite differences (transposed convolution)") {
  check_gradients_fd(geo(2, 3, 4, 3, 3, 1, 1, true), 2);
  check_gradients_fd(geo(2, 3, 3, 2, 3, 2, 1, true, 1, 1), 3);
  check_gradients_fd(geo(3, 3, 2, 2, 3, 2, 1, true, 0, 1), 2);
  check_gradients_fd(geo(1, 2, 3, 2, 3, 3, 0, true, 2, 1), 2);
}

TEST_CASE("conv: backward without dx or bias gives the same dW and db") {
  for (const ConvGeometry& g : {geo(3, 9, 8, 4, 3, 2, 1), geo(4, 5, 4, 3, 3, 2, 1, true, 1, 0)}) {
    CAPTURE(g.transposed);
    Rng rng(5);
    const Params p = random_params(g, rng);
    const int B = 4;
    const Eigen::MatrixXf x = random_matrix(g.in_size(), B, rng), dy = random_matrix(g.out_size(), B, rng);
    ConvWorkspace ws(g);
    std::vector<float> dW1(g.weight_size()), db1(g.out_c), dW2(g.weight_size(), NAN), db2(g.out_c, NAN);
    std::vector<float> dW3(g.weight_size(), NAN);
    Eigen::MatrixXf dx(g.in_size(), B);
    MatRef dxr(dx);
    conv_backward(p.W.data(), g, x, dy, dW1.data(), db1.data(), &dxr, ws);
    conv_backward(p.W.data(), g, x, dy, dW2.data(), db2.data(), nullptr, ws);
    conv_backward(p.W.data(), g, x, dy, dW3.data(), nullptr, nullptr, ws);
    CHECK(dW1 == dW2);
    CHECK(db1 == db2);
    CHECK(dW1 == dW3);
    // Strided inputs (x and dy as the top rows of taller matrices) and dx as a block.
    Eigen::MatrixXf xt = Eigen::MatrixXf::Constant(g.in_size() + 2, B, NAN), dyt(g.out_size() + 3, B);
    xt.topRows(g.in_size()) = x;
    dyt.setConstant(NAN);
    dyt.topRows(g.out_size()) = dy;
    Eigen::MatrixXf big = Eigen::MatrixXf::Constant(g.in_size() + 4, B + 1, -3.0f);
    MatRef dxb(big.block(1, 1, g.in_size(), B));
    conv_backward(p.W.data(), g, xt.topRows(g.in_size()), dyt.topRows(g.out_size()), dW2.data(), db2.data(), &dxb,
                  ws);
    // Eigen's vectorised sums peel by alignment, so db may differ in the last bits here.
    CHECK(dW1 == dW2);
    for (int o = 0; o < g.out_c; ++o) CHECK(db2[o] == doctest::Approx(db1[o]).epsilon(1e-5));
    CHECK(Eigen::MatrixXf(big.block(1, 1, g.in_size(), B)) == dx);
    CHECK(big.col(0).cwiseEqual(-3.0f).all());
    CHECK(big.row(0).cwiseEqual(-3.0f).all());
    CHECK(big.bottomRows(3).cwiseEqual(-3.0f).all());
    // Assigned, not accumulated: a second call gives the same numbers, and B = 0 gives zeros.
    conv_backward(p.W.data(), g, x, dy, dW2.data(), db2.data(), nullptr, ws);
    CHECK(dW1 == dW2);
    CHECK(db1 == db2);
    conv_backward(p.W.data(), g, x.leftCols(0), dy.leftCols(0), dW2.data(), db2.data(), nullptr, ws);
    CHECK(std::all_of(dW2.begin(), dW2.end(), [](float v) { return v == 0.0f; }));
    CHECK(std::all_of(db2.begin(), db2.end(), [](float v) { return v == 0.0f; }));
  }
}

TEST_CASE("conv: shape mismatches throw") {
  const ConvGeometry g = geo(2, 5, 5, 3, 3, 1, 1);
  Rng rng(2);
  const Params p = random_params(g, rng);
  ConvWorkspace ws(g);
  Eigen::MatrixXf x(g.in_size(), 2), y(g.out_size() + 1, 2), y2(g.out_size(), 3);
  x.setZero();
  CHECK_THROWS_AS(conv_forward(p.W.data(), p.b.data(), g, x, y, ws), Error);
  CHECK_THROWS_AS(conv_forward(p.W.data(), p.b.data(), g, x, y2, ws), Error);
}

TEST_CASE("conv: VAE geometries go 28 → 14 → 7 and back 7 → 14 → 28 → 28") {
  const ConvVaeGeometry v = conv_vae_geometries(1, 28, 28, 16);
  CHECK(v.enc1 == geo(1, 28, 28, 32, 3, 2, 1));
  CHECK(v.enc1.out_h() == 14);
  CHECK(v.enc1.out_w() == 14);
  CHECK(v.enc2 == geo(32, 14, 14, 64, 3, 2, 1));
  CHECK(v.enc2.out_h() == 7);
  CHECK(v.enc2.out_size() == 64 * 7 * 7);
  CHECK(v.enc_dense_in == 64 * 7 * 7);
  CHECK(v.enc_dense_out == 32);
  CHECK(v.dec_dense_in == 16);
  CHECK(v.dec_dense_out == 32 * 7 * 7);
  CHECK(v.dec1 == geo(32, 7, 7, 64, 3, 2, 1, true, 1, 1));
  CHECK(v.dec1.out_h() == 14);
  CHECK(v.dec2 == geo(64, 14, 14, 32, 3, 2, 1, true, 1, 1));
  CHECK(v.dec2.out_h() == 28);
  CHECK(v.dec3 == geo(32, 28, 28, 1, 3, 1, 1, true));
  CHECK(v.dec3.out_h() == 28);
  CHECK(v.dec3.out_w() == 28);
  CHECK(v.dec3.out_size() == 784);

  const ConvVaeGeometry odd = conv_vae_geometries(1, 27, 20, 2);  // 27 → 14 → 7 → 14 → 27; 20 → 10 → 5 → 10 → 20
  CHECK(odd.enc2.out_h() == 7);
  CHECK(odd.enc2.out_w() == 5);
  CHECK(odd.dec1.output_pad_h == 1);
  CHECK(odd.dec1.output_pad_w == 1);
  CHECK(odd.dec2.output_pad_h == 0);
  CHECK(odd.dec2.output_pad_w == 1);
  CHECK(odd.dec2.out_h() == 27);
  CHECK(odd.dec2.out_w() == 20);

  // Every size round-trips, each axis on its own.
  for (int H = 1; H <= 40; ++H)
    for (int W = 1; W <= 40; ++W) {
      CAPTURE(H);
      CAPTURE(W);
      const ConvVaeGeometry s = conv_vae_geometries(1, H, W, 3);
      REQUIRE(s.enc1.in_size() == H * W);
      REQUIRE(s.enc1.out_size() == s.enc2.in_size());
      REQUIRE(s.enc2.out_size() == s.enc_dense_in);
      REQUIRE(s.dec1.in_size() == s.dec_dense_out);
      REQUIRE(s.dec1.out_h() == s.enc2.in_h);
      REQUIRE(s.dec1.out_w() == s.enc2.in_w);
      REQUIRE(s.dec1.out_size() == s.dec2.in_size());
      REQUIRE(s.dec2.out_h() == H);
      REQUIRE(s.dec2.out_w() == W);
      REQUIRE(s.dec2.out_size() == s.dec3.in_size());
      REQUIRE(s.dec3.out_size() == H * W);
    }
  CHECK(conv_vae_geometries(1, 32, 32, 8).enc2.out_h() == 8);
  CHECK(conv_vae_geometries(1, 32, 32, 8).dec2.out_h() == 32);
  CHECK_THROWS_AS(conv_vae_geometries(1, 0, 28, 2), Error);
  CHECK_THROWS_AS(conv_vae_geometries(1, 28, 5000, 2), Error);
  CHECK_THROWS_AS(conv_vae_geometries(1, 28, 28, 0), Error);
}

TEST_CASE("conv: a colour VAE's first convolution takes 3 channels and its last gives 3") {
  const ConvVaeGeometry grey = conv_vae_geometries(1, 32, 32, 8), colour = conv_vae_geometries(3, 32, 32, 8);
  CHECK(colour.enc1 == geo(3, 32, 32, 32, 3, 2, 1));
  CHECK(colour.enc1.in_size() == 3 * 32 * 32);
  CHECK(colour.dec3 == geo(32, 32, 32, 3, 3, 1, 1, true));
  CHECK(colour.dec3.out_size() == 3 * 32 * 32);
  // Everything between the first and the last layer is the grey model's.
  CHECK(colour.enc2 == grey.enc2);
  CHECK(colour.enc_dense_in == grey.enc_dense_in);
  CHECK(colour.dec_dense_out == grey.dec_dense_out);
  CHECK(colour.dec1 == grey.dec1);
  CHECK(colour.dec2 == grey.dec2);
  CHECK_THROWS_AS(conv_vae_geometries(2, 28, 28, 2), Error);
  CHECK_THROWS_AS(conv_vae_geometries(0, 28, 28, 2), Error);
}

TEST_CASE("conv: the VAE's layers at full size, with a shared workspace, match the direct reference") {
  for (const auto& shape : {std::tuple{1, 28, 28, 9}, std::tuple{1, 27, 20, 5}, std::tuple{3, 17, 12, 3}}) {
    // Plain ints, not a structured binding: clang 14 cannot capture bindings in CAPTURE's lambda.
    const int C = std::get<0>(shape), H = std::get<1>(shape), W = std::get<2>(shape), B = std::get<3>(shape);
    CAPTURE(C);
    CAPTURE(H);
    CAPTURE(W);
    const ConvVaeGeometry v = conv_vae_geometries(C, H, W, 4);
    const ConvGeometry layers[] = {v.enc1, v.enc2, v.dec1, v.dec2, v.dec3};
    ConvWorkspace ws;
    for (const ConvGeometry& g : layers) ws.reserve(g);
    const std::size_t reserved = ws.floats();
    const float* cols_at = ws.cols.data();
    Rng rng(static_cast<std::uint64_t>(H * W));
    for (const ConvGeometry& g : layers) {
      CAPTURE(g.transposed);
      CAPTURE(g.in_c);
      CAPTURE(g.out_c);
      const Params p = random_params(g, rng);
      const Eigen::MatrixXf x = random_matrix(g.in_size(), B, rng), dy = random_matrix(g.out_size(), B, rng);
      Eigen::MatrixXf y(g.out_size(), B), dx(g.in_size(), B);
      conv_forward(p.W.data(), p.b.data(), g, x, y, ws);
      CHECK(rel_error(y, reference_forward(g, p.W, p.b, x)) < 1e-5);
      std::vector<float> dW(g.weight_size()), db(g.out_c);
      MatRef dxr(dx);
      conv_backward(p.W.data(), g, x, dy, dW.data(), db.data(), &dxr, ws);
      std::vector<double> rW, rb;
      Eigen::MatrixXd rx;
      reference_backward(g, p.W, x, dy, rW, rb, rx);
      CHECK(rel_error(dW.data(), rW.data(), rW.size()) < 1e-5);
      CHECK(rel_error(db.data(), rb.data(), rb.size()) < 1e-5);
      CHECK(rel_error(dx, rx) < 1e-5);
    }
    CHECK(ws.floats() == reserved);  // no allocation once reserved
    CHECK(ws.cols.data() == cols_at);
  }
}
