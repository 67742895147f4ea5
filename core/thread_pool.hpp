// A persistent pool that runs n tasks and waits for them. Tasks are claimed from an atomic counter
// by whichever participant (the caller included) is free, so a thread that loses its core to
// another process simply claims fewer tasks. Waits spin briefly, then sleep on a condition
// variable (passive), so a busy second core is not fought over. Not a general task scheduler.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace vaelab {

// A non-owning reference to a callable void(int): unlike std::function it never allocates (a
// lambda capturing a few references would), so run() can be called inside the training step.
class TaskRef {
 public:
  template <class F>
  TaskRef(const F& f) : obj_(&f), call_([](const void* o, int i) { (*static_cast<const F*>(o))(i); }) {}  // NOLINT
  void operator()(int i) const { call_(obj_, i); }

 private:
  const void* obj_;
  void (*call_)(const void*, int);
};

class ThreadPool {
 public:
  // threads = total participants including the caller; 1 means everything runs inline.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // With solo set, run() executes every task on the caller and leaves the workers asleep. Results
  // are the same either way (tasks own their outputs); the trainer uses it when the other core is
  // so busy that waiting for a preempted worker costs more than the second thread gains.
  void set_solo(bool solo) { solo_ = solo; }
  bool solo() const { return solo_; }

  // Run fn(0) … fn(n−1), each exactly once, on whichever participant claims it first; returns when
  // all are done. Which participant runs a task must never change results: tasks own their outputs.
  void run(int n, TaskRef fn);

  // How long a waiting thread spins before it sleeps: longer than the gap between the layers of
  // one training step (a few microseconds), short enough not to hold a core another process wants.
  // Chosen, not tuned: spin against no-spin was not measured on a quiet machine.
  static constexpr int kSpinMicroseconds = 50;

 private:
  void worker_loop();
  void claim_tasks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const TaskRef* job_ = nullptr;  // written before generation_ is bumped
  int job_tasks_ = 0;
  unsigned fp_mode_ = 0;  // the caller's floating-point control word, taken on by the workers:
                          // a task's results must not depend on the thread that ran it
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> next_task_{0};
  std::atomic<int> pending_{0};  // workers that have not finished the current job
  std::atomic<int> sleepers_{0};  // workers asleep on wake_ (so that run() skips the notify when none)
  std::atomic<bool> stop_{false};
  bool solo_ = false;  // only the caller's thread reads it
};

}  // namespace vaelab
