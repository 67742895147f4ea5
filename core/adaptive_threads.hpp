// Adaptive threading for the training step: now and then it times the thread pool's two settings
// (all threads, or the caller alone) against each other and keeps the faster. Not a scheduler, and
// never a change of results: those do not depend on the thread count, only the speed does.
#pragma once

namespace vaelab {

class ThreadPool;

// At the end of every cycle the last 2·kProbe steps time the current setting against the other
// one. When another process takes a core, waiting for a preempted worker can make 2 threads slower
// than 1. The first comparison ends at step 20. A comparison that keeps the setting doubles the
// cycle, up to kCycleMax steps, and a switch brings it back to kCycle: on a steady machine probing
// costs 8/1,024 of the steps at the slower setting, and a change is still noticed within 1,024
// steps.
class AdaptiveThreads {
 public:
  // After each training step, with its time per example; a pool of one thread is left alone.
  void after_step(ThreadPool* pool, double seconds_per_example);

 private:
  static constexpr int kCycle = 128, kCycleMax = 1024, kProbe = 8;
  int cycle_ = kCycle;
  int pos_ = kCycle - 2 * kProbe - 4;
  double current_seconds_ = 0, probed_seconds_ = 0;
};

}  // namespace vaelab
