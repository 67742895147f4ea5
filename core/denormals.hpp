// Flush-to-zero and denormals-are-zero for the training arithmetic, as a scope guard.
// Why: once training runs a while, Adam's moments of parameters whose gradient stays 0 (dead ReLU
// units, always-black pixels) decay by β each step into the subnormal range, and on Intel cores
// every operation on a subnormal takes a microcode assist, which makes the Adam pass several
// times slower once they appear (docs/performance.md). Values below 1.2e-38 change nothing a
// float VAE can see. Set where the step starts (GradientEngine::compute,
// Adam::step); the pool's workers take on the caller's mode for each job (ThreadPool::run), so
// every thread of a step computes alike.
#pragma once

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define VAELAB_HAS_MXCSR 1
#endif

namespace vaelab {

// The calling thread's floating-point control word (MXCSR on x86; 0 and a no-op elsewhere).
#if defined(VAELAB_HAS_MXCSR)
inline unsigned read_fp_mode() { return _mm_getcsr(); }
inline void set_fp_mode(unsigned mode) {
  if (_mm_getcsr() != mode) _mm_setcsr(mode);
}
#else
inline unsigned read_fp_mode() { return 0; }
inline void set_fp_mode(unsigned) {}
#endif

class FlushDenormals {
 public:
  FlushDenormals() : saved_(read_fp_mode()) { set_fp_mode(saved_ | kFtz | kDaz); }
  ~FlushDenormals() { set_fp_mode(saved_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  static constexpr unsigned kFtz = 0x8000;  // MXCSR bit 15: results that would be subnormal are 0
  static constexpr unsigned kDaz = 0x0040;  // MXCSR bit 6: subnormal inputs read as 0
  unsigned saved_;  // read_fp_mode() and set_fp_mode() do nothing where there is no MXCSR
};

}  // namespace vaelab
