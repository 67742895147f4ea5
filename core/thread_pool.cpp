// Persistent worker pool with dynamic task claiming and spin-then-sleep waits (see thread_pool.hpp).
#include "core/thread_pool.hpp"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VAELAB_CPU_RELAX() _mm_pause()
#else
#define VAELAB_CPU_RELAX() std::this_thread::yield()
#endif

#include "core/denormals.hpp"

namespace vaelab {

namespace {

// Spins until pred() or about kSpinMicroseconds have passed; true if pred() held.
template <class Pred>
bool spin_until(Pred pred) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::microseconds(ThreadPool::kSpinMicroseconds);
  for (int i = 0;; ++i) {
    if (pred()) return true;
    VAELAB_CPU_RELAX();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > limit) return pred();
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::claim_tasks() {
  const int n = job_tasks_;
  for (int i = next_task_.fetch_add(1, std::memory_order_relaxed); i < n;
       i = next_task_.fetch_add(1, std::memory_order_relaxed))
    (*job_)(i);
}

void ThreadPool::run(int n, TaskRef fn) {
  if (workers_.empty() || n <= 1 || solo_) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  // No worker is inside a job here (the previous run() waited for all of them), so these plain
  // writes are published by the release increment of generation_.
  job_ = &fn;
  job_tasks_ = n;
  fp_mode_ = read_fp_mode();
  next_task_.store(0, std::memory_order_relaxed);
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // Under the mutex so that a worker between its predicate check and its sleep cannot miss it.
    std::lock_guard lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
  claim_tasks();  // the caller takes part
  auto all_done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(all_done)) {
    std::unique_lock lock(mu_);
    done_.wait(lock, all_done);
  }
}

void ThreadPool::worker_loop() {
  std::uint64_t seen = 0;
  for (;;) {
    auto has_job = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(has_job)) {
      std::unique_lock lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_acq_rel);
      wake_.wait(lock, [&] { return stop_ || has_job(); });
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    set_fp_mode(fp_mode_);  // the caller's (e.g. flushed subnormals, core/denormals.hpp)
    claim_tasks();
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mu_);  // pairs with the caller's predicate check under the same mutex
      done_.notify_one();
    }
  }
}

}  // namespace vaelab
