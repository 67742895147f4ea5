// The Bernoulli decoder's reconstruction term and its gradient for a block of rows of the decoder
// output, in one vectorised pass (the MLP step's output-layer tasks call it per row chunk). Not
// the reference: objective.cpp's log_likelihood is the plain Eigen form the tests compare with.
#pragma once
#include <cstddef>

namespace vaelab {

// For each of the C columns of an n-row block of logits l (column-major, leading dimension ldl)
// and targets x (leading dimension ldx):
//   col_logp[c · ld_logp] = Σ_rows x·l − softplus(l)     (log p(x|z) of the block, summed in float)
//   l ← (sigmoid(l) − x) · scale                         (d(−log p)/dl, scaled, in place)
// softplus(l) = max(l, 0) + log1p(e) and sigmoid from the same e = exp(−|l|): one exp per pixel,
// no overflow for any l.
void bernoulli_rows(float* logits, std::ptrdiff_t ldl, const float* x, std::ptrdiff_t ldx, int n, int C, float scale,
                    float* col_logp, std::ptrdiff_t ld_logp);

// The same log p(x|z) sums without the gradient, logits left as they are. ldx = 0 scores every
// column against one target column: the IWAE bound's K samples of one image, with no copies of x.
void bernoulli_log_prob(const float* logits, std::ptrdiff_t ldl, const float* x, std::ptrdiff_t ldx, int n, int C,
                        float* col_logp, std::ptrdiff_t ld_logp);

}  // namespace vaelab
