// The pool's contract (core/thread_pool.hpp): every task of a run() exactly once, and run()
// returning only when all of them are done, whether the workers are spinning, asleep, or woken
// late; counts above one ticket's 65,535 tasks included. (The floating-point mode the workers take
// on is checked in test_denormals.cpp.)
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/thread_pool.hpp"

using vaelab::ThreadPool;

TEST_CASE("thread pool: each task runs exactly once and is done when run() returns") {
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    ThreadPool pool(threads);
    for (int n : {0, 1, 2, 3, 17, 1000, 70000}) {
      CAPTURE(n);
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      pool.run(n, [&](int i) { hits[static_cast<std::size_t>(i)].fetch_add(1, std::memory_order_relaxed); });
      int wrong = 0;
      for (const auto& h : hits) wrong += h.load() != 1;
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("thread pool: back-to-back runs with workers spinning, asleep and between the two") {
  ThreadPool pool(2);
  long total = 0;
  for (int round = 0; round < 400; ++round) {
    // Pauses before a run that straddle the workers' spin limit, so that they are sometimes spinning,
    // sometimes asleep and sometimes going to sleep when the next job is published.
    if (round % 7 == 3) std::this_thread::sleep_for(std::chrono::microseconds(20 + 37 * (round % 5)));
    const int n = 2 + round % 13;
    std::vector<int> out(static_cast<std::size_t>(n), 0);
    pool.run(n, [&](int i) {
      if ((i + round) % 5 == 0) std::this_thread::sleep_for(std::chrono::microseconds(30));
      out[static_cast<std::size_t>(i)] = i + 1;
    });
    for (int i = 0; i < n; ++i) total += out[static_cast<std::size_t>(i)] == i + 1;
    total -= n;
  }
  CHECK(total == 0);
}

TEST_CASE("thread pool: a slow task on one thread does not lose the others' tasks") {
  // One long task holds whichever thread took it while the rest finish on the other; the next
  // run starts while the pool has just been idle.
  ThreadPool pool(2);
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> sum{0};
    pool.run(8, [&](int i) {
      if (i == round % 8) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      sum.fetch_add(i, std::memory_order_relaxed);
    });
    CHECK(sum.load() == 28);
  }
}
