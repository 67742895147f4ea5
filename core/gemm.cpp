// Packed single-precision GEMM (see gemm.hpp): packing of op(A) and op(B), one register-blocked
// micro-kernel (AVX-512 32 × 12 or AVX2 + FMA 16 × 6 intrinsics, or portable C++ when the build
// has neither) and its edge and epilogue handling. Written for this project's layer shapes, not
// tuned for any others.
#include "core/gemm.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#define VAELAB_GEMM_AVX512 1

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VAELAB_GEMM_AVX2 1
#endif

namespace vaelab::gemm {

namespace {

#if defined(VAELAB_GEMM_AVX512)
// Transposes a 16 × 16 block held as 16 rows: afterwards r[c] holds what was column c. Three
// rounds of in-lane unpacks and lane shuffles (64 instructions for 256 floats), instead of 256
// strided scalar loads and stores: both packers below move data across rows this way.
static_assert(kNR <= 16 && kMR % 16 == 0, "the packers below assume a 16-lane transpose covers NR and MR");
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // per 128-bit lane L: r_i[4L], r_i+1[4L], r_i[4L+1], …
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  // … the same for 4L+2, 4L+3
  }
  __m512 u[16];  // u[4q + j], lane L: rows 4q … 4q+3 of column 4L + j
  for (int q = 0; q < 4; ++q) {
    const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 1]), d = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), y0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 x1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(x0, x1, 0x88);       // column j      (lane 0 of each u)
    r[8 + j] = _mm512_shuffle_f32x4(x0, x1, 0xDD);   // column 8 + j  (lane 2)
    r[4 + j] = _mm512_shuffle_f32x4(y0, y1, 0x88);   // column 4 + j  (lane 1)
    r[12 + j] = _mm512_shuffle_f32x4(y0, y1, 0xDD);  // column 12 + j (lane 3)
  }
}
#endif

// op(A) rows [i0, i0+mc) × K range [k0, k0+kc) into dst as ⌈mc/MR⌉ micro-panels (panel q at
// dst + q·kc·MR: kc groups of MR floats), zero past mc. mc ≤ kMC.
void pack_a(Op op_a, const float* A, std::ptrdiff_t lda, int i0, int mc, int k0, int kc, float* dst) {
  const int full = mc / kMR, rest = mc % kMR;
  const std::size_t pstride = static_cast<std::size_t>(kc) * kMR;
  if (op_a == Op::N) {
    // mc contiguous floats from each of kc columns. The column stride (3 KiB for a 784-row W)
    // crosses a page every column or two, where the hardware prefetcher stops, so the loads wait
    // for memory (perf: most of pack_a's time sat on them): prefetch 8 columns ahead.
    constexpr int kAhead = 8;
    for (int kk = 0; kk < kc; ++kk) {
      const float* src = A + i0 + static_cast<std::ptrdiff_t>(k0 + kk) * lda;
      if (kk + kAhead < kc)
        for (int i = 0; i < mc; i += 16) __builtin_prefetch(src + kAhead * lda + i);
      if (kk + kAhead < kc) __builtin_prefetch(src + kAhead * lda + mc - 1);
      float* d = dst + kk * kMR;
      for (int q = 0; q < full; ++q) std::memcpy(d + q * pstride, src + q * kMR, sizeof(float) * kMR);
      if (rest) {
        float* dr = d + full * pstride;
        for (int i = 0; i < rest; ++i) dr[i] = src[full * kMR + i];
        for (int i = rest; i < kMR; ++i) dr[i] = 0.0f;
      }
    }
  } else {
    // A stored (k × m): row i of op(A) is column i of A, contiguous in k.
    int i_vec = 0;
#if defined(VAELAB_GEMM_AVX512)
    // 16 rows × 16 k at a time: 16 contiguous loads, one transpose, 16 contiguous stores.
    for (; i_vec + 16 <= mc; i_vec += 16) {
      float* d = dst + (i_vec / kMR) * pstride + i_vec % kMR;
      const float* src = A + k0 + static_cast<std::ptrdiff_t>(i0 + i_vec) * lda;
      int kk = 0;
      for (; kk + 16 <= kc; kk += 16) {
        __m512 r[16];
        for (int t = 0; t < 16; ++t) r[t] = _mm512_loadu_ps(src + kk + t * lda);
        transpose16(r);
        for (int t = 0; t < 16; ++t) _mm512_store_ps(d + (kk + t) * kMR, r[t]);
      }
      for (; kk < kc; ++kk)
        for (int t = 0; t < 16; ++t) d[kk * kMR + t] = src[kk + t * lda];
    }
#endif
    for (int i = i_vec; i < mc; ++i) {
      const float* src = A + k0 + static_cast<std::ptrdiff_t>(i0 + i) * lda;
      float* d = dst + (i / kMR) * pstride + i % kMR;
      for (int kk = 0; kk < kc; ++kk) d[kk * kMR] = src[kk];
    }
    if (rest)
      for (int i = rest; i < kMR; ++i)
        for (int kk = 0; kk < kc; ++kk) dst[full * pstride + kk * kMR + i] = 0.0f;
  }
}

#if !defined(VAELAB_GEMM_AVX512)  // the AVX-512 kernel stores short tiles under masks instead

// Writes one MR × NR tile: C = acc (+ C), and the epilogue on the last K block. The scalar form
// does exactly the vector form's operations per element (same order), so edge tiles round alike.
inline float finish(float acc, const float* c, bool load_c, bool last, const Epilogue& e, int i, const float* mask_ij) {
  float v = load_c ? *c + acc : acc;
  if (last) {
    if (e.bias) v = v + e.bias[i];
    if (e.relu) v = 0.0f > v ? 0.0f : v;  // NaN passes (see the vector form)
    if (e.mask) v = *mask_ij > 0.0f ? v : 0.0f;
  }
  return v;
}

void store_edge(const float* tile, float* C, std::ptrdiff_t ldc, int i0, int j0, int mr, int nr, bool load_c, bool last,
                const Epilogue& e) {
  for (int j = 0; j < nr; ++j) {
    float* c = C + static_cast<std::ptrdiff_t>(j0 + j) * ldc + i0;
    const float* mk = e.mask ? e.mask + static_cast<std::ptrdiff_t>(j0 + j) * e.ldmask + i0 : nullptr;
    for (int i = 0; i < mr; ++i) c[i] = finish(tile[j * kMR + i], c + i, load_c, last, e, i0 + i, mk ? mk + i : nullptr);
  }
}

#endif

#if defined(VAELAB_GEMM_AVX2)

// a: kc × MR packed, b: kc × NR packed (of which the first NC columns are used). Computes the
// MR × NC tile and stores it (full-height tiles directly, short ones through a stack tile). NC < NR
// serves a panel cut short by n (n = 128 = 21·6 + 2): only its columns are computed, and stored
// with vector stores, instead of a whole 6-wide tile (a third of its FMAs used) stored element by
// element.
template <int NC>
void kernel(int kc, const float* a, const float* b, float* C, std::ptrdiff_t ldc, int i0, int j0, int mr, bool load_c,
            bool last, const Epilogue& e) {
  __m256 acc[2 * NC];
#pragma GCC unroll 12
  for (int r = 0; r < 2 * NC; ++r) acc[r] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int kk = 0; kk < kc; ++kk) {
    const __m256 a0 = _mm256_load_ps(a), a1 = _mm256_load_ps(a + 8);
#pragma GCC unroll 6
    for (int j = 0; j < NC; ++j) {
      const __m256 bv = _mm256_broadcast_ss(b + j);
      acc[2 * j] = _mm256_fmadd_ps(a0, bv, acc[2 * j]);
      acc[2 * j + 1] = _mm256_fmadd_ps(a1, bv, acc[2 * j + 1]);
    }
    a += kMR;
    b += kNR;
  }
  if (mr < kMR) {
    alignas(32) float tile[kMR * kNR];
#pragma GCC unroll 12
    for (int r = 0; r < 2 * NC; ++r) _mm256_store_ps(tile + 8 * r, acc[r]);
    store_edge(tile, C, ldc, i0, j0, mr, NC, load_c, last, e);
    return;
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int j = 0; j < NC; ++j) {
    float* c = C + static_cast<std::ptrdiff_t>(j0 + j) * ldc + i0;
    __m256 lo = acc[2 * j], hi = acc[2 * j + 1];
    if (load_c) {
      lo = _mm256_add_ps(_mm256_loadu_ps(c), lo);
      hi = _mm256_add_ps(_mm256_loadu_ps(c + 8), hi);
    }
    if (last) {
      if (e.bias) {
        lo = _mm256_add_ps(lo, _mm256_loadu_ps(e.bias + i0));
        hi = _mm256_add_ps(hi, _mm256_loadu_ps(e.bias + i0 + 8));
      }
      if (e.relu) {
        // max_ps(0, v) returns v when v is NaN: a NaN weight must reach the loss, where the trainer
        // notices divergence, not vanish in a ReLU. Same as the scalar 0 > v ? 0 : v, −0 included.
        lo = _mm256_max_ps(zero, lo);
        hi = _mm256_max_ps(zero, hi);
      }
      if (e.mask) {
        const float* mk = e.mask + static_cast<std::ptrdiff_t>(j0 + j) * e.ldmask + i0;
        lo = _mm256_and_ps(lo, _mm256_cmp_ps(_mm256_loadu_ps(mk), zero, _CMP_GT_OQ));
        hi = _mm256_and_ps(hi, _mm256_cmp_ps(_mm256_loadu_ps(mk + 8), zero, _CMP_GT_OQ));
      }
    }
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
  }
}

void kernel(int kc, const float* a, const float* b, float* C, std::ptrdiff_t ldc, int i0, int j0, int mr, int nr,
            bool load_c, bool last, const Epilogue& e) {
  switch (nr) {
    case 6: kernel<6>(kc, a, b, C, ldc, i0, j0, mr, load_c, last, e); break;
    case 5: kernel<5>(kc, a, b, C, ldc, i0, j0, mr, load_c, last, e); break;
    case 4: kernel<4>(kc, a, b, C, ldc, i0, j0, mr, load_c, last, e); break;
    case 3: kernel<3>(kc, a, b, C, ldc, i0, j0, mr, load_c, last, e); break;
    case 2: kernel<2>(kc, a, b, C, ldc, i0, j0, mr, load_c, last, e); break;
    default: kernel<1>(kc, a, b, C, ldc, i0, j0, mr, load_c, last, e); break;
  }
}

#elif defined(VAELAB_GEMM_AVX512)

// a: kc × MR packed, b: kc × NR packed (its first NC columns used). Computes an MV·16 × NC tile:
// MV = 1 when the tile has at most 16 rows (a layer's last chunk of 400 rows is 16 tall), so no
// FMAs go to padding. Short tiles load and store C under a row mask, with no scalar path, so every
// element takes the same vector operations in the same order whatever its tile.
template <int MV, int NC>
void kernel512(int kc, const float* a, const float* b, float* C, std::ptrdiff_t ldc, int i0, int j0, int mr,
               bool load_c, bool last, const Epilogue& e) {
  __m512 acc[MV * NC];
#pragma GCC unroll 24
  for (int r = 0; r < MV * NC; ++r) acc[r] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int kk = 0; kk < kc; ++kk) {
    const __m512 a0 = _mm512_load_ps(a);
    const __m512 a1 = MV > 1 ? _mm512_load_ps(a + 16) : a0;
#pragma GCC unroll 12
    for (int j = 0; j < NC; ++j) {
      const __m512 bv = _mm512_set1_ps(b[j]);  // folded into the FMA as an embedded broadcast
      acc[MV * j] = _mm512_fmadd_ps(a0, bv, acc[MV * j]);
      if constexpr (MV > 1) acc[MV * j + 1] = _mm512_fmadd_ps(a1, bv, acc[MV * j + 1]);
    }
    a += kMR;
    b += kNR;
  }
  // Rows of the tile in each of its (up to) two 16-row vectors.
  const __mmask16 row_masks[2] = {static_cast<__mmask16>((1u << std::clamp(mr, 0, 16)) - 1u),
                                  static_cast<__mmask16>((1u << std::clamp(mr - 16, 0, 16)) - 1u)};
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int j = 0; j < NC; ++j) {
#pragma GCC unroll 2
    for (int v = 0; v < MV; ++v) {
      const __mmask16 rows = row_masks[v];
      const std::ptrdiff_t i = i0 + 16 * v;
      float* c = C + static_cast<std::ptrdiff_t>(j0 + j) * ldc + i;
      __m512 x = acc[MV * j + v];
      if (load_c) x = _mm512_add_ps(_mm512_maskz_loadu_ps(rows, c), x);
      if (last) {
        if (e.bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(rows, e.bias + i));
        if (e.relu) x = _mm512_max_ps(zero, x);  // v when v is NaN, as in the AVX2 form
        if (e.mask) {
          const float* mk = e.mask + static_cast<std::ptrdiff_t>(j0 + j) * e.ldmask + i;
          x = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(rows, mk), zero, _CMP_GT_OQ), x);
        }
      }
      _mm512_mask_storeu_ps(c, rows, x);
    }
  }
}

template <int MV, int... N>
constexpr auto kernel512_table(std::integer_sequence<int, N...>) {
  using Fn = void (*)(int, const float*, const float*, float*, std::ptrdiff_t, int, int, int, bool, bool,
                      const Epilogue&);
  return std::array<Fn, sizeof...(N)>{&kernel512<MV, N + 1>...};
}

void kernel(int kc, const float* a, const float* b, float* C, std::ptrdiff_t ldc, int i0, int j0, int mr, int nr,
            bool load_c, bool last, const Epilogue& e) {
  static constexpr auto one = kernel512_table<1>(std::make_integer_sequence<int, kNR>{});
  static constexpr auto two = kernel512_table<2>(std::make_integer_sequence<int, kNR>{});
  (mr > 16 ? two : one)[nr - 1](kc, a, b, C, ldc, i0, j0, mr, load_c, last, e);
}

#else

// Portable form of the same kernel: the compiler vectorises the inner loop over MR if it can.
void kernel(int kc, const float* a, const float* b, float* C, std::ptrdiff_t ldc, int i0, int j0, int mr, int nr,
            bool load_c, bool last, const Epilogue& e) {
  alignas(32) float tile[kMR * kNR] = {};
  for (int kk = 0; kk < kc; ++kk) {
    for (int j = 0; j < kNR; ++j) {
      const float bj = b[j];
      for (int i = 0; i < kMR; ++i) tile[j * kMR + i] += a[i] * bj;
    }
    a += kMR;
    b += kNR;
  }
  store_edge(tile, C, ldc, i0, j0, mr, nr, load_c, last, e);
}

#endif

}  // namespace

void pack_b(Op op_b, const float* B, std::ptrdiff_t ldb, int k, int n, float* dst, int p0, int p1) {
  for (int p = p0; p < p1; ++p) {
    const int j0 = p * kNR, nr = std::min(kNR, n - j0);
    float* d = dst + static_cast<std::size_t>(p) * static_cast<std::size_t>(k) * kNR;
    if (op_b == Op::N && nr == kNR) {
      // B stored (k × n): NR columns read side by side, one contiguous row of the panel per k.
      const float* s0 = B + static_cast<std::ptrdiff_t>(j0) * ldb;
      int kk = 0;
#if defined(VAELAB_GEMM_AVX512)
      // 16 k at a time: the 12 columns' runs (and 4 spare rows) transposed into 16 panel rows.
      for (; kk + 16 <= k; kk += 16) {
        __m512 r[16];
        for (int j = 0; j < kNR; ++j) r[j] = _mm512_loadu_ps(s0 + j * ldb + kk);
        for (int j = kNR; j < 16; ++j) r[j] = _mm512_setzero_ps();
        transpose16(r);
        for (int t = 0; t < 16; ++t) _mm512_mask_storeu_ps(d + (kk + t) * kNR, (1u << kNR) - 1u, r[t]);
      }
#endif
      for (; kk < k; ++kk) {
        float* dk = d + kk * kNR;
#pragma GCC unroll 12
        for (int j = 0; j < kNR; ++j) dk[j] = s0[j * ldb + kk];
      }
    } else if (op_b == Op::N) {
      // The last, narrower panel: column by column, zero past n.
      for (int j = 0; j < nr; ++j) {
        const float* src = B + static_cast<std::ptrdiff_t>(j0 + j) * ldb;
        for (int kk = 0; kk < k; ++kk) d[kk * kNR + j] = src[kk];
      }
      for (int j = nr; j < kNR; ++j)
        for (int kk = 0; kk < k; ++kk) d[kk * kNR + j] = 0.0f;
    } else {
      // B stored (n × k): row kk of the panel is nr contiguous floats of column kk of B.
      for (int kk = 0; kk < k; ++kk) {
        const float* src = B + static_cast<std::ptrdiff_t>(kk) * ldb + j0;
        float* dk = d + kk * kNR;
        if (nr == kNR) {
          std::memcpy(dk, src, sizeof(float) * kNR);
        } else {
          for (int j = 0; j < nr; ++j) dk[j] = src[j];
          for (int j = nr; j < kNR; ++j) dk[j] = 0.0f;
        }
      }
    }
  }
}

void multiply_packed(Op op_a, const float* A, std::ptrdiff_t lda, int m, int n, int k, const float* Bp, float* C,
                     std::ptrdiff_t ldc, bool accumulate, const Epilogue& epi) {
  if (m <= 0 || n <= 0) return;
  alignas(64) float apack[kKC * kMC];  // 64 KiB: an MC × KC block of op(A), in L2
  const int np = panels(n);
  const std::size_t panel_stride = static_cast<std::size_t>(k) * kNR;
  // K blocks of equal size, at most KC (784 = 4 × 196, not 3 × 256 + 16: a short last block
  // pays a whole pass of C loads and stores for a few FMAs). Fixed by k alone, so every element
  // still sums in the same order however the caller splits the rows.
  const int blocks = std::max(1, (k + kKC - 1) / kKC), kb = (k + blocks - 1) / blocks;
  // k = 0 still runs one (empty) block so that C gets its overwrite and epilogue.
  int k0 = 0;
  do {
    const int kc = std::min(kb, k - k0);
    const bool load_c = accumulate || k0 > 0, last = k0 + kc >= k;
    for (int ib = 0; ib < m; ib += kMC) {
      const int mc = std::min(kMC, m - ib);
      pack_a(op_a, A, lda, ib, mc, k0, kc, apack);
      for (int i0 = ib; i0 < ib + mc; i0 += kMR) {
        const float* ap = apack + static_cast<std::size_t>((i0 - ib) / kMR) * kc * kMR;
        const int mr = std::min(kMR, ib + mc - i0);
        for (int p = 0; p < np; ++p) {
          const int j0 = p * kNR;
          kernel(kc, ap, Bp + p * panel_stride + static_cast<std::size_t>(k0) * kNR, C, ldc, i0, j0, mr,
                 std::min(kNR, n - j0), load_c, last, epi);
        }
      }
    }
    k0 += kc;
  } while (k0 < k);
}

void multiply(Op op_a, Op op_b, int m, int n, int k, const float* A, std::ptrdiff_t lda, const float* B,
              std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc, bool accumulate, float* b_work, const Epilogue& epi) {
  pack_b(op_b, B, ldb, k, n, b_work, 0, panels(n));
  multiply_packed(op_a, A, lda, m, n, k, b_work, C, ldc, accumulate, epi);
}

const char* kernel_name() {
#if defined(VAELAB_GEMM_AVX512)
  return "avx512f 32x12";
#elif defined(VAELAB_GEMM_AVX2)
  return "avx2-fma 16x6";
#else
  return "portable 16x6";
#endif
}

}  // namespace vaelab::gemm
