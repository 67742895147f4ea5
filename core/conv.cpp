// Convolution and transposed convolution by im2col/col2im + GEMMs (core/gemm), one sample at a time.
// Not a direct (sliding-window) convolution and not multithreaded: callers split batches over shards.
//
// Both layer kinds are one "convolution view": a large image side (conv input / transposed output,
// img_c × img_h × img_w) and a small side (conv output / transposed input, sm_c × sm_h × sm_w), with
// small pixel (sy, sx) and tap (i, j) touching large pixel (sy·s − p + i, sx·s − p + j). PyTorch's
// Conv2d weight [out_c, in_c, k, k] and ConvTranspose2d weight [in_c, out_c, k, k] are then the same
// thing, [sm_c, img_c, k, k] row-major = a column-major (K, sm_c) matrix Wm with K = img_c·k·k and
// row r = (c·k + i)·k + j. A sample's small side, (sm_c, P) NCHW with P = sm_h·sm_w, is a (P, sm_c)
// column-major matrix as it stands; cols (P, K) = im2col(large side). Then
//   conv forward          y_small = cols · Wm (+ bias)
//   transposed forward    cols = x_small · Wmᵀ, y = col2im(cols) (+ bias)
//   dWm                   Σ_samples cols(large)ᵀ · small'   (large = x, small' = dy for a conv;
//                                                           large = dy, small' = x if transposed)
//   conv dx               cols = dy_small · Wmᵀ, dx = col2im(cols)
//   transposed dx         dx_small = cols(dy) · Wm
#include "core/conv.hpp"

#include <algorithm>
#include <climits>
#include <string>

#include "core/error.hpp"
#include "core/gemm.hpp"

namespace vaelab {

namespace {

using Index = Eigen::Index;
using MapM = Eigen::Map<Eigen::MatrixXf>;
using CMapM = Eigen::Map<const Eigen::MatrixXf>;
using MapV = Eigen::Map<Eigen::VectorXf>;
using CMapV = Eigen::Map<const Eigen::VectorXf>;

int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

struct View {
  int img_c, img_h, img_w;  // large side
  int sm_c, sm_h, sm_w;     // small side
  int k, s, p;
  Index K() const { return static_cast<Index>(img_c) * k * k; }
  Index P() const { return static_cast<Index>(sm_h) * sm_w; }
  Index img_px() const { return static_cast<Index>(img_h) * img_w; }
};

View view_of(const ConvGeometry& g) {
  if (!g.transposed) return {g.in_c, g.in_h, g.in_w, g.out_c, g.out_h(), g.out_w(), g.kernel, g.stride, g.pad};
  return {g.out_c, g.out_h(), g.out_w(), g.in_c, g.in_h, g.in_w, g.kernel, g.stride, g.pad};
}

// Small-side indices o in [lo, hi) with 0 ≤ o·s + off < len on the large side (o < n).
struct Range {
  int lo, hi;
};
Range valid_range(int n, int len, int s, int off) {
  const int lo = off >= 0 ? 0 : (-off + s - 1) / s;
  const int hi = len - off <= 0 ? 0 : (len - off - 1) / s + 1;
  const int h = std::min(hi, n);
  return {std::min(lo, h), h};
}

// Phase planes. With stride s, tap t = i − p of small row sy lands on large row sy·s + t, i.e. row
// sy + ⌊t/s⌋ of the rows ≡ t (mod s). So channel c's image is split into s·s planes, plane (a, b)
// holding pixels (u·s + a, v·s + b) for u < ph(a) = ⌈(H − a)/s⌉, v < pw(b) = ⌈(W − b)/s⌉, stored
// a-major then b (together exactly H·W floats). On the planes every tap is a stride-1 shift, so
// im2col and col2im are contiguous row copies and adds, and one (de)interleaving pass per image
// replaces s-strided scalar accesses in every tap. With s = 1 the plane is the image itself.
struct Phases {
  int s, H, W;
  int ph(int a) const { return (H - a + s - 1) / s; }
  int pw(int b) const { return (W - b + s - 1) / s; }
  Index offset(int a, int b) const {  // of plane (a, b) within a channel
    Index rows = 0, cols = 0;
    for (int q = 0; q < a; ++q) rows += ph(q);
    for (int q = 0; q < b; ++q) cols += pw(q);
    return rows * W + Index{ph(a)} * cols;
  }
};

// img (C, H, W) → planes (C, H·W) in phase order, and back. S: the stride if known at compile time.
template <int S>
void deinterleave(const View& v, const float* img, float* planes) {
  const int s = S ? S : v.s, W = v.img_w;
  const Phases ph{s, v.img_h, W};
  for (int c = 0; c < v.img_c; ++c)
    for (int a = 0; a < s; ++a)
      for (int b = 0; b < s; ++b) {
        float* dst = planes + c * v.img_px() + ph.offset(a, b);
        const int n = ph.pw(b);
        for (int u = 0; u < ph.ph(a); ++u, dst += n) {
          const float* row = img + c * v.img_px() + static_cast<Index>(u * s + a) * W + b;
          for (int q = 0; q < n; ++q) dst[q] = row[q * s];
        }
      }
}
template <int S>
void interleave(const View& v, const float* planes, float* img) {
  const int s = S ? S : v.s, W = v.img_w;
  const Phases ph{s, v.img_h, W};
  for (int c = 0; c < v.img_c; ++c)
    for (int a = 0; a < s; ++a)
      for (int b = 0; b < s; ++b) {
        const float* src = planes + c * v.img_px() + ph.offset(a, b);
        const int n = ph.pw(b);
        for (int u = 0; u < ph.ph(a); ++u, src += n) {
          float* row = img + c * v.img_px() + static_cast<Index>(u * s + a) * W + b;
          for (int q = 0; q < n; ++q) row[q * s] = src[q];
        }
      }
}

// Calls f(r, plane, pw, dy, dx, ry, rx) for each column r = (c·k + i)·k + j of cols: the tap's plane
// (row-major, pw wide) among the planes at base, its shift (small pixel (sy, sx) ↔ plane pixel
// (sy + dy, sx + dx)) and the small rows ry / columns rx where it falls inside the image (elsewhere
// it is in the zero padding).
template <class Plane, class F>
void for_each_tap(const View& v, Plane* base, F&& f) {
  const Phases ph{v.s, v.img_h, v.img_w};
  for (int c = 0; c < v.img_c; ++c)
    for (int i = 0; i < v.k; ++i) {
      const int dy = floor_div(i - v.p, v.s), a = i - v.p - dy * v.s;  // tap row i − p = dy·s + a
      const Range ry = valid_range(v.sm_h, ph.ph(a), 1, dy);
      for (int j = 0; j < v.k; ++j) {
        const int dx = floor_div(j - v.p, v.s), b = j - v.p - dx * v.s;
        const Range rx = valid_range(v.sm_w, ph.pw(b), 1, dx);
        f((c * v.k + i) * v.k + j, base + c * v.img_px() + ph.offset(a, b), ph.pw(b), dy, dx, ry, rx);
      }
    }
}

// One sample: large image img (img_c, img_h, img_w) → cols (P, K) column-major (ld P): column
// r = (c·k + i)·k + j is tap (i, j) of channel c at every small pixel, zero in the padding.
// planes: img_c·img_h·img_w floats of scratch when the stride is > 1.
void im2col(const View& v, const float* img, float* cols, float* planes) {
  const float* base = img;
  if (v.s > 1) {
    if (v.s == 2)
      deinterleave<2>(v, img, planes);
    else
      deinterleave<0>(v, img, planes);
    base = planes;
  }
  const int OW = v.sm_w;
  const Index P = v.P();
  for_each_tap(v, base, [&](Index r, const float* pl, int pw, int dy, int dx, Range ry, Range rx) {
    float* dst = cols + r * P;  // (sm_h, sm_w) row-major
    std::fill(dst, dst + Index{ry.lo} * OW, 0.0f);
    if (rx.lo == 0 && rx.hi == OW && pw == OW) {  // dx = 0 and whole rows: one block
      std::copy(pl + Index{ry.lo + dy} * pw, pl + Index{ry.hi + dy} * pw, dst + Index{ry.lo} * OW);
    } else {
      for (int oy = ry.lo; oy < ry.hi; ++oy) {
        float* d = dst + Index{oy} * OW;
        const float* src = pl + Index{oy + dy} * pw;  // the plane row; ox reads column ox + dx
        int ox = 0;
        for (; ox < rx.lo; ++ox) d[ox] = 0.0f;
        for (; ox < rx.hi; ++ox) d[ox] = src[ox + dx];
        for (; ox < OW; ++ox) d[ox] = 0.0f;
      }
    }
    std::fill(dst + Index{ry.hi} * OW, dst + P, 0.0f);
  });
}

// The adjoint of im2col, assigned: img (img_c, img_h, img_w) = col2im(cols) + bias (per channel,
// nullptr: none). planes: img_c·img_h·img_w floats of scratch when the stride is > 1.
void col2im(const View& v, const float* cols, const float* bias, float* img, float* planes) {
  float* base = v.s > 1 ? planes : img;
  for (int c = 0; c < v.img_c; ++c) MapV(base + c * v.img_px(), v.img_px()).setConstant(bias ? bias[c] : 0.0f);
  const int OW = v.sm_w;
  const Index P = v.P();
  for_each_tap(v, base, [&](Index r, float* pl, int pw, int dy, int dx, Range ry, Range rx) {
    const float* src = cols + r * P;
    if (rx.lo == 0 && rx.hi == OW && pw == OW) {
      const Index n = Index{ry.hi - ry.lo} * OW;
      MapV(pl + Index{ry.lo + dy} * pw, n) += CMapV(src + Index{ry.lo} * OW, n);
    } else {
      for (int oy = ry.lo; oy < ry.hi; ++oy) {
        const float* sr = src + Index{oy} * OW;
        float* d = pl + Index{oy + dy} * pw;
        for (int ox = rx.lo; ox < rx.hi; ++ox) d[ox + dx] += sr[ox];
      }
    }
  });
  if (v.s == 2)
    interleave<2>(v, planes, img);
  else if (v.s > 2)
    interleave<0>(v, planes, img);
}

// Grow the workspace for this geometry (allocates only when it is too small).
void ensure(ConvWorkspace& ws, const View& v) {
  const auto need_cols = static_cast<std::size_t>(v.P() * v.K());
  const auto need_planes = v.s > 1 ? static_cast<std::size_t>(v.img_c * v.img_px()) : std::size_t{0};
  const int K = static_cast<int>(v.K()), P = static_cast<int>(v.P());
  const std::size_t need_w = std::max(gemm::packed_b_floats(K, v.sm_c), gemm::packed_b_floats(v.sm_c, K));
  const std::size_t need_b = gemm::packed_b_floats(P, v.sm_c);
  if (ws.cols.size() < need_cols) ws.cols.resize(need_cols);
  if (ws.planes.size() < need_planes) ws.planes.resize(need_planes);
  if (ws.w_pack.size() < need_w) ws.w_pack.resize(need_w);
  if (ws.b_pack.size() < need_b) ws.b_pack.resize(need_b);
}

// The weights as the right-hand side of every sample's product, packed once per call: Wm (K, sm_c)
// for y_small = cols · Wm, or Wmᵀ (sm_c, K) for cols = small · Wmᵀ.
void pack_weights(const View& v, const float* W, bool transpose, ConvWorkspace& ws) {
  const int K = static_cast<int>(v.K());
  if (!transpose)
    gemm::pack_b(gemm::Op::N, W, K, K, v.sm_c, ws.w_pack.data(), 0, gemm::panels(v.sm_c));
  else
    gemm::pack_b(gemm::Op::T, W, K, v.sm_c, K, ws.w_pack.data(), 0, gemm::panels(K));
}

// out (P, n) = a (P, k) · the packed weights (k = K, n = sm_c, or k = sm_c, n = K if transposed).
void times_weights(const View& v, const float* a, bool transposed_weights, const ConvWorkspace& ws, float* out) {
  const int K = static_cast<int>(v.K()), P = static_cast<int>(v.P());
  const int n = transposed_weights ? K : v.sm_c, k = transposed_weights ? v.sm_c : K;
  gemm::multiply_packed(gemm::Op::N, a, P, P, n, k, ws.w_pack.data(), out, P, false);
}

// dWm (K, sm_c) += cols (P, K)ᵀ · small (P, sm_c), one sample's share of the weight gradient.
void add_weight_gradient(const View& v, const float* cols, const float* small, float* dW, ConvWorkspace& ws) {
  const int K = static_cast<int>(v.K()), P = static_cast<int>(v.P());
  gemm::pack_b(gemm::Op::N, small, P, P, v.sm_c, ws.b_pack.data(), 0, gemm::panels(v.sm_c));
  gemm::multiply_packed(gemm::Op::T, cols, P, K, v.sm_c, P, ws.b_pack.data(), dW, K, true);
}

void check_shapes(const char* who, const ConvGeometry& g, const char* xname, Index xr, const char* yname, Index yr,
                  Index xc, Index yc) {
  if (xr != g.in_size() || yr != g.out_size() || xc != yc)
    throw Error(std::string(who) + ": " + xname + " is (" + std::to_string(xr) + ", " + std::to_string(xc) + ") and " +
                yname + " is (" + std::to_string(yr) + ", " + std::to_string(yc) + "), but the geometry needs (" +
                std::to_string(g.in_size()) + ", B) and (" + std::to_string(g.out_size()) + ", B)");
}

}  // namespace

int ConvGeometry::out_h() const {
  return transposed ? (in_h - 1) * stride - 2 * pad + kernel + output_pad_h
                    : floor_div(in_h + 2 * pad - kernel, stride) + 1;
}
int ConvGeometry::out_w() const {
  return transposed ? (in_w - 1) * stride - 2 * pad + kernel + output_pad_w
                    : floor_div(in_w + 2 * pad - kernel, stride) + 1;
}

void validate(const ConvGeometry& g) {
  auto fail = [&](const std::string& what) {
    throw Error(std::string(g.transposed ? "transposed convolution" : "convolution") + ": " + what);
  };
  auto positive = [&](const char* name, int v) {
    if (v < 1) fail(std::string(name) + " must be at least 1 (got " + std::to_string(v) + ")");
  };
  positive("in_c", g.in_c);
  positive("in_h", g.in_h);
  positive("in_w", g.in_w);
  positive("out_c", g.out_c);
  positive("kernel", g.kernel);
  positive("stride", g.stride);
  if (g.pad < 0) fail("pad must be at least 0 (got " + std::to_string(g.pad) + ")");
  const long long lim = INT_MAX;
  if (g.in_h > 1 << 16 || g.in_w > 1 << 16 || g.kernel > 1 << 10 || g.stride > 1 << 10 || g.pad > 1 << 10)
    fail("sizes too large (height, width ≤ 65536; kernel, stride, pad ≤ 1024)");
  long long oh, ow;
  if (g.transposed) {
    if (g.output_pad_h < 0 || g.output_pad_h >= g.stride || g.output_pad_w < 0 || g.output_pad_w >= g.stride)
      fail("output padding must be in [0, stride) (got " + std::to_string(g.output_pad_h) + ", " +
           std::to_string(g.output_pad_w) + " with stride " + std::to_string(g.stride) + ")");
    oh = (g.in_h - 1LL) * g.stride - 2LL * g.pad + g.kernel + g.output_pad_h;
    ow = (g.in_w - 1LL) * g.stride - 2LL * g.pad + g.kernel + g.output_pad_w;
  } else {
    if (g.output_pad_h != 0 || g.output_pad_w != 0) fail("output padding is for transposed convolutions only");
    if (g.in_h + 2LL * g.pad < g.kernel || g.in_w + 2LL * g.pad < g.kernel)
      fail("the " + std::to_string(g.kernel) + "×" + std::to_string(g.kernel) + " kernel is larger than the padded " +
           std::to_string(g.in_h) + "×" + std::to_string(g.in_w) + " input");
    oh = (g.in_h + 2LL * g.pad - g.kernel) / g.stride + 1;
    ow = (g.in_w + 2LL * g.pad - g.kernel) / g.stride + 1;
  }
  if (oh < 1 || ow < 1) fail("the output would be empty (" + std::to_string(oh) + "×" + std::to_string(ow) + ")");
  const long long big_c = g.transposed ? g.out_c : g.in_c, big_px = g.transposed ? oh * ow : 1LL * g.in_h * g.in_w;
  const long long sm_c = g.transposed ? g.in_c : g.out_c, sm_px = g.transposed ? 1LL * g.in_h * g.in_w : oh * ow;
  const long long kk = 1LL * g.kernel * g.kernel;
  if (big_c * big_px > lim || sm_c * sm_px > lim || 1LL * g.in_c * g.out_c * kk > lim || sm_px * big_c * kk > lim)
    fail("sizes overflow 32-bit counts");
}

ConvVaeGeometry conv_vae_geometries(int C, int H, int W, int latent) {
  if (C != 1 && C != 3)
    throw Error("convolutional VAE: images with " + std::to_string(C) + " channels are not supported; use 1 or 3");
  if (H < 1 || W < 1 || H > 4096 || W > 4096)
    throw Error("convolutional VAE: " + std::to_string(H) + "×" + std::to_string(W) +
                " images are not supported; height and width must be between 1 and 4096 pixels");
  if (latent < 1) throw Error("convolutional VAE: latent must be at least 1 (got " + std::to_string(latent) + ")");
  auto geo = [](int in_c, int h, int w, int out_c, int stride, int oph, int opw, bool transposed) {
    ConvGeometry g;
    g.in_c = in_c;
    g.in_h = h;
    g.in_w = w;
    g.out_c = out_c;
    g.kernel = 3;
    g.stride = stride;
    g.pad = 1;
    g.output_pad_h = oph;
    g.output_pad_w = opw;
    g.transposed = transposed;
    return g;
  };
  // Stride 2, pad 1 halves rounding up; the transposed layer gives 2h − 1 + output_pad.
  auto half = [](int n) { return (n + 1) / 2; };
  auto op = [](int target) { return target % 2 == 0 ? 1 : 0; };
  const int h1 = half(H), w1 = half(W), h2 = half(h1), w2 = half(w1);
  ConvVaeGeometry v;
  v.enc1 = geo(C, H, W, 32, 2, 0, 0, false);
  v.enc2 = geo(32, h1, w1, 64, 2, 0, 0, false);
  v.enc_dense_in = 64 * h2 * w2;
  v.enc_dense_out = 2 * latent;
  v.dec_dense_in = latent;
  v.dec_dense_out = 32 * h2 * w2;
  v.dec1 = geo(32, h2, w2, 64, 2, op(h1), op(w1), true);
  v.dec2 = geo(64, h1, w1, 32, 2, op(H), op(W), true);
  v.dec3 = geo(32, H, W, C, 1, 0, 0, true);
  for (const ConvGeometry* g : {&v.enc1, &v.enc2, &v.dec1, &v.dec2, &v.dec3}) validate(*g);
  if (v.enc2.out_size() != v.enc_dense_in || v.dec1.in_size() != v.dec_dense_out || v.dec1.out_h() != h1 ||
      v.dec1.out_w() != w1 || v.dec2.out_h() != H || v.dec2.out_w() != W || v.dec3.out_size() != C * H * W)
    throw Error("convolutional VAE: internal error, " + std::to_string(H) + "×" + std::to_string(W) +
                " does not round-trip");
  return v;
}

void ConvWorkspace::reserve(const ConvGeometry& g) { ensure(*this, view_of(g)); }

// One sample at a time: a sample's small side, (sm_c, P) in NCHW order, already is a column-major
// (P, sm_c) matrix, so every GEMM reads and writes the activations in place and only the im2col
// matrix (P, K) is scratch. The weights are packed once per call for all samples; the products
// (P ≥ 49 rows) run as fast one sample at a time as batched, and the workspace holds every buffer,
// so a reserved workspace never allocates.
void conv_forward(const float* W, const float* b, const ConvGeometry& g, ConstMatRef x, MatRef y, ConvWorkspace& ws) {
  check_shapes("conv_forward", g, "x", x.rows(), "y", y.rows(), x.cols(), y.cols());
  const View v = view_of(g);
  const Index P = v.P();
  ensure(ws, v);
  pack_weights(v, W, g.transposed, ws);
  for (Index n = 0; n < x.cols(); ++n) {
    const float* xc = x.data() + n * x.outerStride();
    float* yc = y.data() + n * y.outerStride();
    if (!g.transposed) {
      im2col(v, xc, ws.cols.data(), ws.planes.data());
      times_weights(v, ws.cols.data(), false, ws, yc);  // (P, out_c)
      if (b) MapM(yc, P, v.sm_c).rowwise() += CMapV(b, v.sm_c).transpose();
    } else {
      times_weights(v, xc, true, ws, ws.cols.data());  // (P, K)
      col2im(v, ws.cols.data(), b, yc, ws.planes.data());
    }
  }
}

void conv_backward(const float* W, const ConvGeometry& g, ConstMatRef x, ConstMatRef dy, float* dW, float* db,
                   MatRef* dx, ConvWorkspace& ws) {
  check_shapes("conv_backward", g, "x", x.rows(), "dy", dy.rows(), x.cols(), dy.cols());
  if (dx && (dx->rows() != x.rows() || dx->cols() != x.cols()))
    throw Error("conv_backward: dx is (" + std::to_string(dx->rows()) + ", " + std::to_string(dx->cols()) +
                "), x is (" + std::to_string(x.rows()) + ", " + std::to_string(x.cols()) + ")");
  const View v = view_of(g);
  const Index P = v.P(), K = v.K();
  ensure(ws, v);
  // dx of a conv is col2im(dy_small · Wmᵀ); of a transposed conv, cols(dy) · Wm.
  if (dx) pack_weights(v, W, !g.transposed, ws);
  MapM(dW, K, v.sm_c).setZero();
  if (db) MapV(db, g.out_c).setZero();
  float* cols = ws.cols.data();  // (P, K): im2col of the large side (x for a conv, dy if transposed)
  for (Index n = 0; n < x.cols(); ++n) {
    const float* xc = x.data() + n * x.outerStride();
    const float* dyc = dy.data() + n * dy.outerStride();
    float* dxc = dx ? dx->data() + n * dx->outerStride() : nullptr;
    if (!g.transposed) {
      im2col(v, xc, cols, ws.planes.data());
      add_weight_gradient(v, cols, dyc, dW, ws);
      if (db) MapV(db, g.out_c) += CMapM(dyc, P, v.sm_c).colwise().sum().transpose();
      if (dxc) {
        times_weights(v, dyc, true, ws, cols);  // d cols (P, K)
        col2im(v, cols, nullptr, dxc, ws.planes.data());
      }
    } else {
      im2col(v, dyc, cols, ws.planes.data());
      add_weight_gradient(v, cols, xc, dW, ws);
      if (db) MapV(db, g.out_c) += CMapM(dyc, v.img_px(), v.img_c).colwise().sum().transpose();
      if (dxc) times_weights(v, cols, false, ws, dxc);  // (P, in_c)
    }
  }
}

}  // namespace vaelab
