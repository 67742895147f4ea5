// A persistent pool that runs n tasks and waits for them. Tasks are claimed from an atomic counter
// by whichever participant (the caller included) is free, so a thread that loses its core to
// another process simply claims fewer tasks, and run() waits for the tasks, not for the workers:
// a worker that has not woken yet when the others have finished is not waited for. Waits spin
// briefly, then sleep on a condition variable (passive), so a busy second core is not fought
// over. Not a general task scheduler.
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
  // Chosen, not tuned.
  static constexpr int kSpinMicroseconds = 50;

 private:
  void worker_loop();
  // Claims and runs tasks of job `job` (a generation's low 32 bits) until none is left or another
  // job has begun; the caller passes its own job.
  void claim_tasks(std::uint32_t job);
  void run_slice(int offset, int n);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // The job's fields, written by the caller before it publishes the job's ticket and read by a
  // worker only after it has claimed one of the job's tasks: the caller cannot return, or start
  // the next job, until that task is done.
  const TaskRef* job_ = nullptr;
  int job_offset_ = 0;    // run() cuts n above kMaxTasks into slices: task i is fn(offset + i)
  unsigned fp_mode_ = 0;  // the caller's floating-point control word, taken on by the workers:
                          // a task's results must not depend on the thread that ran it
  // One word holds everything a claim checks, so that a worker that wakes late can never take a
  // task of a job it did not see begin: [job:32][tasks:16][next task:16].
  static constexpr int kMaxTasks = 0xffff;
  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<int> done_tasks_{0};  // tasks of the current job that have finished
  std::atomic<bool> caller_asleep_{false};
  std::atomic<std::uint64_t> generation_{0};  // bumped for every job: what sleeping workers wait on
  std::atomic<int> sleepers_{0};  // workers asleep on wake_ (so that run() skips the notify when none)
  std::atomic<bool> stop_{false};
  bool solo_ = false;  // only the caller's thread reads it
};

// fn(0) … fn(n−1): on the pool when there is one with more than one thread and more than one task,
// else in order on the caller (inline, without run()'s indirect call). Tasks own their outputs, so
// either way gives the same results.
template <class F>
void run_tasks(ThreadPool* pool, int n, const F& fn) {
  if (pool && pool->size() > 1 && n > 1)
    pool->run(n, fn);
  else
    for (int i = 0; i < n; ++i) fn(i);
}

}  // namespace vaelab
