// Adam with bias correction over one flat parameter buffer. The learning rate is passed per
// step so it can change while training. Not a general optimiser framework.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace vaelab {

class ThreadPool;

struct Adam {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  std::int64_t t = 0;      // steps taken
  std::vector<float> m;    // first moment, one per parameter
  std::vector<float> v;    // second moment

  void reset(std::size_t n) {
    t = 0;
    m.assign(n, 0.0f);
    v.assign(n, 0.0f);
  }
  // params -= lr · m̂ / (√v̂ + eps), with m̂, v̂ bias-corrected. Returns false if any gradient was
  // NaN or ±Inf (or its square overflows): then the parameters and moments are spoiled and the
  // caller must restore them (the trainer falls back to its last finite parameters, resets Adam).
  // The gradient is grad + more[0] + more[1] + … (n floats each), added in that order in the same
  // pass: the parts GradientEngine::compute_unsummed leaves, with the bits of summing them first.
  bool step(float* params, const float* grad, std::size_t n, float lr, ThreadPool* pool = nullptr,
            std::span<const float* const> more = {});
};

}  // namespace vaelab
