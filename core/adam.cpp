// Adam update over the flat parameter buffer, split in contiguous chunks claimed by the pool's
// threads (elementwise, so the chunking never changes results).
#include "core/adam.hpp"

#include <algorithm>
#include <cmath>

#include <Eigen/Core>

#include "core/thread_pool.hpp"

namespace vaelab {

void Adam::step(float* params, const float* grad, std::size_t n, float lr, ThreadPool* pool) {
  ++t;
  const float c1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(t)));
  const float c2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(t)));
  const float step = lr / c1;
  const float inv_sqrt_c2 = 1.0f / std::sqrt(c2);
  // Eigen arrays so that the square root and division vectorise (a plain loop over four
  // pointers that may alias does not).
  // In blocks of 1,024 floats, so that m, v and the parameters are still in L1 between the three
  // statements (one pass over memory instead of three).
  auto update = [&](std::size_t lo, std::size_t hi) {
    for (std::size_t b0 = lo; b0 < hi; b0 += 1024) {
      const auto n_part = static_cast<Eigen::Index>(std::min<std::size_t>(1024, hi - b0));
      Eigen::Map<Eigen::ArrayXf> p(params + b0, n_part), mm(m.data() + b0, n_part), vv(v.data() + b0, n_part);
      Eigen::Map<const Eigen::ArrayXf> g(grad + b0, n_part);
      mm = beta1 * mm + (1.0f - beta1) * g;
      vv = beta2 * vv + (1.0f - beta2) * g.square();
      // PyTorch's form: θ −= lr/c1 · m / (√v/√c2 + eps)
      p -= step * mm / (vv.sqrt() * inv_sqrt_c2 + eps);
    }
  };
  // Chunks of at least 16 K floats, several per thread, so that a thread that loses its core to
  // another process leaves only a small piece for the others.
  const std::size_t chunk = std::max<std::size_t>(16384, (n / 16 + 15) / 16 * 16);
  const int parts = static_cast<int>((n + chunk - 1) / chunk);
  if (!pool || pool->size() <= 1 || parts <= 1) {
    update(0, n);
    return;
  }
  pool->run(parts, [&](int p) { update(chunk * p, std::min(n, chunk * (p + 1))); });
}

}  // namespace vaelab
