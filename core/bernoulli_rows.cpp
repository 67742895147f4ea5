// Vectorised with Eigen's packet functions (pexp, plog1p: AVX, SSE or scalar, whichever this build
// targets), because the Eigen array expression of the same maths runs its select scalar.
#include "core/bernoulli_rows.hpp"

#include <algorithm>
#include <cmath>

#include "core/packet.hpp"

namespace vaelab {

using namespace packet;

namespace {

// One loop for both entry points: kGradient writes (sigmoid(l) − x)·scale over the logits.
template <bool kGradient>
void bernoulli_pass(float* logits, std::ptrdiff_t ldl, const float* x, std::ptrdiff_t ldx, int n, int C, float scale,
                    float* col_logp, std::ptrdiff_t ld_logp) {
  const Packet zero = ei::pset1<Packet>(0.0f), one = ei::pset1<Packet>(1.0f), vscale = ei::pset1<Packet>(scale);
  for (int c = 0; c < C; ++c) {
    float* l = logits + c * ldl;
    const float* t = x + c * ldx;
    Packet acc = zero;
    int r = 0;
    for (; r + kLanes <= n; r += kLanes) {
      const Packet lv = ei::ploadu<Packet>(l + r), tv = ei::ploadu<Packet>(t + r);
      const Packet e = ei::pexp(ei::pnegate(ei::pabs(lv)));
      // x·l − max(l, 0) − log1p(e)
      acc = ei::padd(acc, ei::psub(ei::psub(ei::pmul(tv, lv), ei::pmax(lv, zero)), ei::plog1p(e)));
      if constexpr (kGradient) {
        const Packet inv = ei::pdiv(one, ei::padd(one, e));  // 1 / (1 + e)
        // sigmoid(l) = 1/(1+e) where l ≥ 0, e/(1+e) where l < 0
        const Packet sig = ei::pselect(ei::pcmp_lt(lv, zero), ei::pmul(e, inv), inv);
        ei::pstoreu(l + r, ei::pmul(ei::psub(sig, tv), vscale));
      }
    }
    float sum = ei::predux(acc);
    for (; r < n; ++r) {
      const float lv = l[r], tv = t[r], e = std::exp(-std::abs(lv));
      sum += tv * lv - std::max(lv, 0.0f) - std::log1p(e);
      if constexpr (kGradient) {
        const float inv = 1.0f / (1.0f + e);
        l[r] = ((lv < 0.0f ? e * inv : inv) - tv) * scale;
      }
    }
    col_logp[c * ld_logp] = sum;
  }
}

}  // namespace

void bernoulli_rows(float* logits, std::ptrdiff_t ldl, const float* x, std::ptrdiff_t ldx, int n, int C, float scale,
                    float* col_logp, std::ptrdiff_t ld_logp) {
  bernoulli_pass<true>(logits, ldl, x, ldx, n, C, scale, col_logp, ld_logp);
}

void bernoulli_log_prob(const float* logits, std::ptrdiff_t ldl, const float* x, std::ptrdiff_t ldx, int n, int C,
                        float* col_logp, std::ptrdiff_t ld_logp) {
  // The pass without the gradient only reads the logits.
  bernoulli_pass<false>(const_cast<float*>(logits), ldl, x, ldx, n, C, 0.0f, col_logp, ld_logp);
}

}  // namespace vaelab
