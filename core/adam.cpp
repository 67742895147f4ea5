// Adam update over the flat parameter buffer, split in contiguous chunks claimed by the pool's
// threads (elementwise, so the chunking never changes results).
#include "core/adam.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "core/denormals.hpp"
#include "core/packet.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {

using namespace packet;

bool Adam::step(float* params, const float* grad, std::size_t n, float lr, ThreadPool* pool,
                std::span<const float* const> more) {
  // The moments of parameters whose gradient stays 0 decay into subnormals, which cost Intel
  // cores a microcode assist per operation (core/denormals.hpp).
  const FlushDenormals flush;
  ++t;
  const float c1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(t)));
  const float c2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(t)));
  const float step = lr / c1;
  const float inv_sqrt_c2 = 1.0f / std::sqrt(c2);
  // One pass that loads g (and its parts), m, v and θ once and stores m, v and θ once: the update
  // is bound by memory (28 bytes a parameter; 4 more per part, where a pass of their own would
  // cost 12). Finiteness rides along: g²·0 is 0
  // for finite g² and NaN where g is NaN or ±Inf or |g| > 1.8e19 (g² overflows and would freeze
  // v at Inf: divergence too), so the trainer needs no separate pass over g.
  auto update = [&](std::size_t lo, std::size_t hi) {
    const Packet b1 = ei::pset1<Packet>(beta1), a1 = ei::pset1<Packet>(1.0f - beta1);
    const Packet b2 = ei::pset1<Packet>(beta2), a2 = ei::pset1<Packet>(1.0f - beta2);
    const Packet vstep = ei::pset1<Packet>(step), vinv = ei::pset1<Packet>(inv_sqrt_c2), veps = ei::pset1<Packet>(eps);
    const Packet zero = ei::pset1<Packet>(0.0f);
    Packet probe = zero;
    std::size_t i = lo;
    for (; i + static_cast<std::size_t>(kLanes) <= hi; i += kLanes) {
      Packet g = ei::ploadu<Packet>(grad + i);
      for (const float* part : more) g = ei::padd(g, ei::ploadu<Packet>(part + i));
      const Packet gg = ei::pmul(g, g);
      probe = ei::padd(probe, ei::pmul(gg, zero));
      const Packet mv = ei::pmadd(b1, ei::ploadu<Packet>(m.data() + i), ei::pmul(a1, g));
      const Packet vv = ei::pmadd(b2, ei::ploadu<Packet>(v.data() + i), ei::pmul(a2, gg));
      ei::pstoreu(m.data() + i, mv);
      ei::pstoreu(v.data() + i, vv);
      // PyTorch's form: θ −= lr/c1 · m / (√v/√c2 + eps)
      const Packet den = ei::pmadd(ei::psqrt(vv), vinv, veps);
      ei::pstoreu(params + i, ei::psub(ei::ploadu<Packet>(params + i), ei::pdiv(ei::pmul(vstep, mv), den)));
    }
    float tail_probe = 0.0f;
    for (; i < hi; ++i) {
      float g = grad[i];
      for (const float* part : more) g += part[i];
      tail_probe += g * g * 0.0f;
      m[i] = beta1 * m[i] + (1.0f - beta1) * g;
      v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
      params[i] -= step * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + eps);
    }
    return ei::predux(probe) + tail_probe == 0.0f;
  };
  // Chunks of at least 16 K floats, several per thread, so that a thread that loses its core to
  // another process leaves only a small piece for the others.
  const std::size_t chunk = std::max<std::size_t>(16384, (n / 16 + 15) / 16 * 16);
  const int parts = static_cast<int>((n + chunk - 1) / chunk);
  if (!pool || pool->size() <= 1 || parts <= 1) return update(0, n);
  std::atomic<bool> finite{true};
  pool->run(parts, [&](int p) {
    if (!update(chunk * p, std::min(n, chunk * (p + 1)))) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

}  // namespace vaelab
