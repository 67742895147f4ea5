// The thread pool's solo switch, driven by step timings (see adaptive_threads.hpp). Not the pool.
#include "core/adaptive_threads.hpp"

#include <algorithm>

#include "core/thread_pool.hpp"

namespace vaelab {

void AdaptiveThreads::after_step(ThreadPool* pool, double seconds_per_example) {
  if (!pool || pool->size() <= 1) return;
  const int pos = pos_++;
  const int probe_begins = cycle_ - kProbe;
  if (pos >= probe_begins - kProbe && pos < probe_begins) {
    current_seconds_ += seconds_per_example;
    if (pos == probe_begins - 1) pool->set_solo(!pool->solo());  // probe the other setting
    return;
  }
  if (pos < probe_begins) return;
  probed_seconds_ += seconds_per_example;
  if (pos < cycle_ - 1) return;
  // Keep the probed setting only if it was clearly faster; else switch back.
  if (probed_seconds_ < 0.95 * current_seconds_) {
    cycle_ = kCycle;
  } else {
    pool->set_solo(!pool->solo());
    cycle_ = std::min(2 * cycle_, kCycleMax);
  }
  pos_ = 0;
  current_seconds_ = probed_seconds_ = 0;
}

}  // namespace vaelab
