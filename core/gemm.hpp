// Single-precision GEMM on raw column-major pointers for the MLP training step:
// C (m × n) = op(A) (m × k) · op(B) (k × n), overwritten or accumulated, with an optional epilogue
// (bias per row, ReLU, or a ReLU mask) applied while the tile is in registers. op(B) is packed
// once into NR-wide panels (pack_b) so that row chunks on several threads share it; op(A) is packed
// MR rows at a time on the caller's stack. Not a general BLAS: no alpha/beta, no threading inside.
#pragma once
#include <cstddef>

namespace vaelab::gemm {

enum class Op { N, T };  // N: the matrix as stored; T: its transpose

// Register tile and K block, chosen by the instruction set the build targets (-march=native):
// - AVX-512: MR × NR = 32 × 12, two zmm registers down a column of C by twelve columns (24 of the
//   32 registers accumulate; 2 loads + 12 broadcasts feed 24 FMAs, so the two FMA ports, not the
//   loads, set the pace). A 16-wide AVX2 tile reaches at most half of such a core's peak.
// - AVX2 (and the portable fallback): 16 × 6, two ymm registers by six columns (12 accumulators;
//   2 loads + 6 broadcasts feed 12 FMAs).
// KC: an MR × KC panel of A and an NR × KC panel of B stay in L1 during a tile (44 KiB with
// AVX-512 at k = 784, which runs in K blocks of 196: 25 + 9 KiB).
#if defined(__AVX512F__)
inline constexpr int kMR = 32;
inline constexpr int kNR = 12;
#else
inline constexpr int kMR = 16;
inline constexpr int kNR = 6;
#endif
inline constexpr int kKC = 256;
// Rows of op(A) packed together per K block: longer runs down each column of W (4 cache lines)
// than one micro-panel's MR floats, for the prefetchers; 64 KiB of packed A, in L2.
inline constexpr int kMC = 64;

// Applied once per element of C after the last K block, in this order: + bias[i], max(·, 0) if
// relu (NaN stays NaN, so a broken weight still shows in the loss), then 0 where mask(i, j) ≤ 0
// or is NaN (the ReLU backward: mask is the layer's ReLU output).
struct Epilogue {
  const float* bias = nullptr;  // (m), row i of C gets bias[i]
  bool relu = false;
  const float* mask = nullptr;  // (m × n) column-major, leading dimension ldmask
  std::ptrdiff_t ldmask = 0;
};

// Number of NR-wide panels of an n-column op(B), and the floats its packed form needs.
inline int panels(int n) { return (n + kNR - 1) / kNR; }
inline std::size_t packed_b_floats(int k, int n) {
  return static_cast<std::size_t>(k) * static_cast<std::size_t>(panels(n)) * kNR;
}

// Packs panels [p0, p1) of op(B) (k × n; B stored (k × n) for Op::N, (n × k) for Op::T, leading
// dimension ldb) into dst (packed_b_floats(k, n) floats): panel p holds columns p·NR … p·NR+NR−1,
// k rows of NR floats, zero-padded past n. Ranges of panels can be packed by different threads.
void pack_b(Op op_b, const float* B, std::ptrdiff_t ldb, int k, int n, float* dst, int p0, int p1);

// C = op(A) · Bp (+ C if accumulate), then the epilogue. A stored (m × k) for Op::N, (k × m) for
// Op::T, leading dimension lda; Bp from pack_b with the same k and n. Each element of C sums its k
// products in a fixed order (K blocks in turn), so results never depend on how callers split m.
void multiply_packed(Op op_a, const float* A, std::ptrdiff_t lda, int m, int n, int k, const float* Bp, float* C,
                     std::ptrdiff_t ldc, bool accumulate, const Epilogue& epi = {});

// Both steps in one call: packs op(B) into b_work (packed_b_floats(k, n) floats), then multiplies.
void multiply(Op op_a, Op op_b, int m, int n, int k, const float* A, std::ptrdiff_t lda, const float* B,
              std::ptrdiff_t ldb, float* C, std::ptrdiff_t ldc, bool accumulate, float* b_work,
              const Epilogue& epi = {});

// Which micro-kernel this build uses ("avx512f 32x12", "avx2-fma 16x6" or "portable 16x6").
const char* kernel_name();

}  // namespace vaelab::gemm
