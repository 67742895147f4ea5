// The packed GEMM (core/gemm.hpp) against a naive double-precision product: all four op(A)·op(B)
// variants over odd and edge shapes (1…37, MR/NR ± 1, K = 1, K across KC), leading dimensions
// larger than the rows, overwrite vs accumulate, the epilogues, and bit-equality under row splits.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/gemm.hpp"
#include "core/rng.hpp"

namespace {

using vaelab::gemm::Epilogue;
using vaelab::gemm::Op;

struct Mat {
  int rows, cols, ld;
  std::vector<float> v;
  Mat(int r, int c, int pad) : rows(r), cols(c), ld(r + pad), v(static_cast<std::size_t>(ld) * c) {}
  float& at(int i, int j) { return v[static_cast<std::size_t>(j) * ld + i]; }
  float at(int i, int j) const { return v[static_cast<std::size_t>(j) * ld + i]; }
};

// Uniform in [−1, 1), fixed seed; the padding rows get a sentinel the product must not read.
void fill(Mat& m, std::uint64_t seed) {
  vaelab::Rng rng(seed);
  for (int j = 0; j < m.cols; ++j)
    for (int i = 0; i < m.ld; ++i) m.at(i, j) = i < m.rows ? 2.0f * rng.uniform() - 1.0f : 1e30f;
}

// op(X)(i, j) for X stored as in gemm.hpp.
float op_at(const Mat& x, Op op, int i, int j) { return op == Op::N ? x.at(i, j) : x.at(j, i); }

// Checks C (m × n) against c0 + op(A)·op(B) in double, within a bound of a few float roundings per
// term of the dot product (a missing or doubled term is far larger); returns the cells checked.
int check(const Mat& C, const Mat* c0, const Mat& A, Op oa, const Mat& B, Op ob, int m, int n, int k) {
  int bad = 0;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double ref = c0 ? c0->at(i, j) : 0.0, mag = c0 ? std::fabs(c0->at(i, j)) : 0.0;
      for (int p = 0; p < k; ++p) {
        const double t = static_cast<double>(op_at(A, oa, i, p)) * op_at(B, ob, p, j);
        ref += t;
        mag += std::fabs(t);
      }
      const double tol = (k + 2) * 1.2e-7 * mag + 1e-30;
      if (!(std::fabs(C.at(i, j) - ref) <= tol) && bad++ < 3)
        MESSAGE("m=" << m << " n=" << n << " k=" << k << " (" << i << "," << j << "): " << C.at(i, j) << " vs " << ref);
    }
  return bad;
}

}  // namespace

#ifdef VAELAB_EXPECT_GEMM_KERNEL
// The second build of this file (tests/CMakeLists.txt: AVX-512 off) must test the kernel it names.
TEST_CASE("gemm: this build runs the expected micro-kernel") {
  CHECK(std::string(vaelab::gemm::kernel_name()) == VAELAB_EXPECT_GEMM_KERNEL);
}
#endif

TEST_CASE("gemm: all four variants match a double-precision product over edge shapes") {
  const int ms[] = {1, 2, 7, 15, 16, 17, 31, 33, 37};
  const int ns[] = {1, 5, 6, 7, 11, 12, 13, 37};
  const int ks[] = {1, 3, 17, 255, 256, 257, 600};
  const Op ops[] = {Op::N, Op::T};
  int products = 0, failures = 0;
  std::uint64_t seed = 11;
  for (Op oa : ops)
    for (Op ob : ops)
      for (int m : ms)
        for (int n : ns)
          for (int k : ks) {
            // Stored shapes: A (m × k) or (k × m); B (k × n) or (n × k); padded leading dimensions.
            Mat A = oa == Op::N ? Mat(m, k, 3) : Mat(k, m, 5);
            Mat B = ob == Op::N ? Mat(k, n, 1) : Mat(n, k, 4);
            fill(A, seed++);
            fill(B, seed++);
            Mat C(m, n, 2);
            // Overwrite must not read C: start from NaN (the padding sentinel must survive).
            for (int j = 0; j < n; ++j)
              for (int i = 0; i < C.ld; ++i) C.at(i, j) = i < m ? std::numeric_limits<float>::quiet_NaN() : -7.0f;
            std::vector<float> work(vaelab::gemm::packed_b_floats(k, n));
            vaelab::gemm::multiply(oa, ob, m, n, k, A.v.data(), A.ld, B.v.data(), B.ld, C.v.data(), C.ld, false,
                                   work.data());
            int bad = check(C, nullptr, A, oa, B, ob, m, n, k);
            for (int j = 0; j < n; ++j)
              for (int i = m; i < C.ld; ++i) bad += C.at(i, j) != -7.0f;
            // Accumulate: C ← C0 + op(A)·op(B), C0 random.
            Mat C0(m, n, 2);
            fill(C0, seed++);
            Mat C1 = C0;
            vaelab::gemm::multiply(oa, ob, m, n, k, A.v.data(), A.ld, B.v.data(), B.ld, C1.v.data(), C1.ld, true,
                                   work.data());
            bad += check(C1, &C0, A, oa, B, ob, m, n, k);
            ++products;
            if (bad) {
              ++failures;
              MESSAGE("variant " << (oa == Op::N ? "N" : "T") << (ob == Op::N ? "N" : "T") << " m=" << m << " n=" << n
                                 << " k=" << k << ": " << bad << " bad cells");
            }
          }
  CHECK(products == 4 * 9 * 8 * 7);
  CHECK(failures == 0);
}

TEST_CASE("gemm: k = 0 overwrites C with zeros (and the bias), and the epilogue matches its definition") {
  const int m = 37, n = 13, k = 300;  // k > KC: the epilogue must wait for the last K block
  Mat A(m, k, 0), B(k, n, 0), mask(m, n, 1);
  fill(A, 5);
  fill(B, 6);
  fill(mask, 7);
  std::vector<float> bias(m);
  vaelab::Rng rng(8);
  for (float& b : bias) b = 2.0f * rng.uniform() - 1.0f;
  std::vector<float> work(vaelab::gemm::packed_b_floats(k, n));

  Mat plain(m, n, 0), fused(m, n, 0), masked(m, n, 0);
  vaelab::gemm::multiply(Op::N, Op::N, m, n, k, A.v.data(), A.ld, B.v.data(), B.ld, plain.v.data(), plain.ld, false,
                         work.data());
  Epilogue br;
  br.bias = bias.data();
  br.relu = true;
  vaelab::gemm::multiply(Op::N, Op::N, m, n, k, A.v.data(), A.ld, B.v.data(), B.ld, fused.v.data(), fused.ld, false,
                         work.data(), br);
  Epilogue mk;
  mk.mask = mask.v.data();
  mk.ldmask = mask.ld;
  vaelab::gemm::multiply(Op::N, Op::N, m, n, k, A.v.data(), A.ld, B.v.data(), B.ld, masked.v.data(), masked.ld,
                         false, work.data(), mk);
  int zeros = 0, bad = 0;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const float want = std::max(plain.at(i, j) + bias[i], 0.0f);
      bad += fused.at(i, j) != want;
      zeros += want == 0.0f;
      bad += masked.at(i, j) != (mask.at(i, j) > 0.0f ? plain.at(i, j) : 0.0f);
    }
  CHECK(bad == 0);
  CHECK(zeros > 0);          // the ReLU did cut something
  CHECK(zeros < m * n);      // and not everything

  // A NaN in A reaches C through the ReLU, in a full tile (row 0) and an edge tile (row 36):
  // the trainer's divergence check relies on it.
  A.at(0, 5) = std::numeric_limits<float>::quiet_NaN();
  A.at(36, 5) = std::numeric_limits<float>::quiet_NaN();
  vaelab::gemm::multiply(Op::N, Op::N, m, n, k, A.v.data(), A.ld, B.v.data(), B.ld, fused.v.data(), fused.ld, false,
                         work.data(), br);
  for (int j = 0; j < n; ++j) {
    CHECK(std::isnan(fused.at(0, j)));
    CHECK(std::isnan(fused.at(36, j)));
    CHECK(std::isfinite(fused.at(1, j)));
  }

  Mat C(m, n, 0);
  for (float& v : C.v) v = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> w0(1);
  vaelab::gemm::multiply(Op::N, Op::N, m, n, 0, A.v.data(), A.ld, B.v.data(), B.ld, C.v.data(), C.ld, false, w0.data(),
                         br);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) bad += C.at(i, j) != std::max(bias[i], 0.0f);
  CHECK(bad == 0);
}

TEST_CASE("gemm: splitting the rows of C over calls gives the same bits (the step's row chunks)") {
  const int m = 100, n = 29, k = 700;
  for (Op oa : {Op::N, Op::T})
    for (Op ob : {Op::N, Op::T}) {
      Mat A = oa == Op::N ? Mat(m, k, 0) : Mat(k, m, 0);
      Mat B = ob == Op::N ? Mat(k, n, 0) : Mat(n, k, 0);
      fill(A, 21);
      fill(B, 22);
      std::vector<float> work(vaelab::gemm::packed_b_floats(k, n));
      // Packed by two ranges of panels, as two threads would.
      const int np = vaelab::gemm::panels(n);
      vaelab::gemm::pack_b(ob, B.v.data(), B.ld, k, n, work.data(), 0, np / 2);
      vaelab::gemm::pack_b(ob, B.v.data(), B.ld, k, n, work.data(), np / 2, np);
      Mat whole(m, n, 0), split(m, n, 0);
      vaelab::gemm::multiply_packed(oa, A.v.data(), A.ld, m, n, k, work.data(), whole.v.data(), whole.ld, false);
      for (int lo = 0; lo < m;) {
        const int rows = std::min(m - lo, lo % 3 == 0 ? 24 : 19);  // chunks not multiples of MR
        const float* a = oa == Op::N ? A.v.data() + lo : A.v.data() + static_cast<std::size_t>(lo) * A.ld;
        vaelab::gemm::multiply_packed(oa, a, A.ld, rows, n, k, work.data(), split.v.data() + lo, split.ld, false);
        lo += rows;
      }
      CHECK(whole.v == split.v);
      CHECK(check(whole, nullptr, A, oa, B, ob, m, n, k) == 0);
    }
}
