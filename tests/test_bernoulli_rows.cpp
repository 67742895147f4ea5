// The vectorised Bernoulli loss rows (core/bernoulli_rows.hpp) against the same maths in double:
// log p(x|l) = x·l − softplus(l) summed per column, and d(−log p)/dl = sigmoid(l) − x, on logits
// from −100 to 100 (both saturations and 0), targets in [0, 1] and {0, 1}, row counts that are
// and are not a multiple of the vector width, and padded leading dimensions that must not be touched.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/bernoulli_rows.hpp"
#include "core/rng.hpp"

namespace {

double softplus(double l) { return std::max(l, 0.0) + std::log1p(std::exp(-std::abs(l))); }
double sigmoid(double l) { return l >= 0 ? 1.0 / (1.0 + std::exp(-l)) : std::exp(l) / (1.0 + std::exp(l)); }

}  // namespace

TEST_CASE("bernoulli_rows matches log p(x|l) and its gradient in double") {
  vaelab::Rng rng(7);
  for (int n : {1, 3, 7, 8, 9, 16, 31, 64, 67}) {
    const int C = 5, pad = 3, ldl = n + pad, ldx = n + 1;
    std::vector<float> logits(static_cast<std::size_t>(ldl) * C), x(static_cast<std::size_t>(ldx) * C);
    for (int c = 0; c < C; ++c)
      for (int r = 0; r < ldl; ++r) {
        float v;
        if (r >= n) v = 12345.0f;                 // padding: must stay as it is
        else if ((r + c) % 11 == 0) v = (c % 2 ? 100.0f : -100.0f);  // saturated either way
        else if ((r + c) % 13 == 0) v = 0.0f;
        else v = 16.0f * static_cast<float>(rng.uniform()) - 8.0f;
        logits[static_cast<std::size_t>(c) * ldl + r] = v;
      }
    for (int c = 0; c < C; ++c)
      for (int r = 0; r < ldx; ++r)
        x[static_cast<std::size_t>(c) * ldx + r] = c == 0 ? static_cast<float>((r % 2)) : static_cast<float>(rng.uniform());
    const std::vector<float> l0 = logits;
    const float scale = 0.25f;
    std::vector<float> logp(static_cast<std::size_t>(2 * C), -7.0f);
    vaelab::bernoulli_rows(logits.data(), ldl, x.data(), ldx, n, C, scale, logp.data(), 2);
    for (int c = 0; c < C; ++c) {
      double want = 0, mag = 0;
      for (int r = 0; r < n; ++r) {
        const double l = l0[static_cast<std::size_t>(c) * ldl + r], t = x[static_cast<std::size_t>(c) * ldx + r];
        want += t * l - softplus(l);
        mag += std::abs(t * l) + softplus(l);
        const double g = (sigmoid(l) - t) * scale;
        // sigmoid(l) and x are at most 1: a few float roundings of 1, times scale (the
        // difference cancels where sigmoid(l) ≈ x, so a relative bound would be wrong).
        CHECK(std::abs(logits[static_cast<std::size_t>(c) * ldl + r] - g) <= 4e-7 * scale);
      }
      for (int r = n; r < ldl; ++r) CHECK(logits[static_cast<std::size_t>(c) * ldl + r] == 12345.0f);
      // A float sum of n terms: a few roundings of the largest magnitudes.
      CHECK(std::abs(logp[static_cast<std::size_t>(2 * c)] - want) <= 1e-6 * mag + 1e-6);
      CHECK(logp[static_cast<std::size_t>(2 * c + 1)] == -7.0f);  // between the strided outputs
    }
  }
}
