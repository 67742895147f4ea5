// A persistent pool that runs n tasks and waits for them: the caller takes part, the workers
// sleep on a condition variable between jobs (passive waits, so a busy second core slows us
// down gracefully instead of two spinners fighting for it). Not a general task scheduler.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vaelab {

class ThreadPool {
 public:
  // threads = total participants including the caller; 1 means everything runs inline.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Run fn(0) … fn(n−1), task i on participant i % size(); returns when all are done.
  // Which participant runs a task never changes results: tasks own their outputs.
  void run(int n, const std::function<void(int)>& fn);

 private:
  void worker_loop(int id);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int)>* job_ = nullptr;
  int job_tasks_ = 0;
  std::uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace vaelab
