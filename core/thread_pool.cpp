// Persistent worker pool with dynamic task claiming and spin-then-sleep waits (see thread_pool.hpp).
#include "core/thread_pool.hpp"

#include <algorithm>
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

namespace {

constexpr std::uint64_t pack_ticket(std::uint32_t job, int tasks, int next) {
  return (static_cast<std::uint64_t>(job) << 32) | (static_cast<std::uint64_t>(tasks) << 16) |
         static_cast<std::uint64_t>(next);
}

}  // namespace

void ThreadPool::claim_tasks(std::uint32_t job) {
  bool first = true;
  std::uint64_t t = ticket_.load(std::memory_order_acquire);
  for (;;) {
    const int tasks = static_cast<int>((t >> 16) & 0xffff), next = static_cast<int>(t & 0xffff);
    if (static_cast<std::uint32_t>(t >> 32) != job || next >= tasks) return;
    // acquire: a successful claim reads the ticket the caller published (or a later claim of the
    // same job), so job_, job_offset_ and fp_mode_ are that job's.
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acquire, std::memory_order_acquire)) continue;
    if (first) {
      set_fp_mode(fp_mode_);
      first = false;
    }
    (*job_)(job_offset_ + next);
    // seq_cst here and in run_slice's sleep: "count done, then look for a sleeper" against "say I
    // sleep, then look at the count" must not both see the old value (a lost wake-up).
    if (done_tasks_.fetch_add(1, std::memory_order_seq_cst) + 1 == tasks &&
        caller_asleep_.load(std::memory_order_seq_cst)) {
      std::lock_guard lock(mu_);  // pairs with the caller's predicate check under the same mutex
      done_.notify_one();
    }
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(int n, TaskRef fn) {
  if (workers_.empty() || n <= 1 || solo_) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  job_ = &fn;
  for (int offset = 0; offset < n; offset += kMaxTasks) run_slice(offset, std::min(kMaxTasks, n - offset));
  job_ = nullptr;  // fn ends with this call; every task that could read it is done
}

void ThreadPool::run_slice(int offset, int n) {
  // No participant is inside a task here (the previous slice waited for all of its tasks), and a
  // worker reads these fields only after claiming a task of the ticket published below.
  job_offset_ = offset;
  fp_mode_ = read_fp_mode();
  done_tasks_.store(0, std::memory_order_relaxed);
  std::uint64_t gen;
  {
    // Under the mutex so that a worker between its predicate check and its sleep cannot miss it.
    std::lock_guard lock(mu_);
    gen = generation_.load(std::memory_order_relaxed) + 1;
    ticket_.store(pack_ticket(static_cast<std::uint32_t>(gen), n, 0), std::memory_order_release);
    generation_.store(gen, std::memory_order_release);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
  claim_tasks(static_cast<std::uint32_t>(gen));  // the caller takes part
  auto all_done = [&] { return done_tasks_.load(std::memory_order_seq_cst) == n; };
  if (!spin_until(all_done)) {
    std::unique_lock lock(mu_);
    caller_asleep_.store(true, std::memory_order_seq_cst);
    done_.wait(lock, all_done);
    caller_asleep_.store(false, std::memory_order_relaxed);
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
    // The newest job: one that began and ended while this worker was away is never seen.
    seen = generation_.load(std::memory_order_acquire);
    claim_tasks(static_cast<std::uint32_t>(seen));
  }
}

}  // namespace vaelab
