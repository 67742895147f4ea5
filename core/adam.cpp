// Adam update over the flat parameter buffer, split in contiguous chunks across the pool.
#include "core/adam.hpp"

#include <algorithm>
#include <cmath>

#include "core/thread_pool.hpp"

namespace vaelab {

void Adam::step(float* params, const float* grad, std::size_t n, float lr, ThreadPool* pool) {
  ++t;
  const float c1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(t)));
  const float c2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(t)));
  const float step = lr / c1;
  const float inv_sqrt_c2 = 1.0f / std::sqrt(c2);
  const float b1 = beta1, b2 = beta2, e = eps;
  float* mm = m.data();
  float* vv = v.data();
  auto update = [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) {
      const float g = grad[i];
      mm[i] = b1 * mm[i] + (1.0f - b1) * g;
      vv[i] = b2 * vv[i] + (1.0f - b2) * g * g;
      // PyTorch's form: θ −= lr/c1 · m / (√v/√c2 + eps)
      params[i] -= step * mm[i] / (std::sqrt(vv[i]) * inv_sqrt_c2 + e);
    }
  };
  const int parts = pool ? pool->size() : 1;
  if (parts <= 1) {
    update(0, n);
    return;
  }
  pool->run(parts, [&](int p) {
    const std::size_t chunk = (n + parts - 1) / parts;
    update(std::min(n, chunk * p), std::min(n, chunk * (p + 1)));
  });
}

}  // namespace vaelab
