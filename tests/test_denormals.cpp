// Flushed subnormals (core/denormals.hpp): the guard turns subnormal results and inputs into 0 and
// restores the mode after; the pool's workers take on the caller's mode for each job, so a task
// computes alike on any thread; Adam's decaying moments end at 0 instead of lingering subnormal.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <thread>
#include <vector>

#include "core/adam.hpp"
#include "core/denormals.hpp"
#include "core/thread_pool.hpp"

namespace {

// 1e-30 · 1e-10 = 1e-40 is subnormal (the smallest normal float is 1.18e-38). volatile keeps the
// compiler from folding it at build time, in its own (non-flushing) arithmetic.
float subnormal_product() {
  volatile float a = 1e-30f, b = 1e-10f;
  return a * b;
}

float subnormal_input_times_one() {
  volatile float a = std::numeric_limits<float>::denorm_min(), one = 1.0f;
  return a * one;
}

}  // namespace

#if defined(VAELAB_HAS_MXCSR)

TEST_CASE("denormals: the guard flushes subnormal results and inputs, and restores the mode") {
  REQUIRE(subnormal_product() != 0.0f);
  REQUIRE(subnormal_input_times_one() != 0.0f);
  {
    const vaelab::FlushDenormals flush;
    CHECK(subnormal_product() == 0.0f);
    CHECK(subnormal_input_times_one() == 0.0f);
    CHECK(1e-30f * subnormal_product() == 0.0f);
    volatile float normal = 1e-37f;
    CHECK(normal * 2.0f == 2e-37f);  // normal numbers are untouched
  }
  CHECK(subnormal_product() != 0.0f);
}

TEST_CASE("denormals: pool workers compute in the caller's mode, job by job") {
  vaelab::ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  auto run = [&](std::vector<float>& out) {
    std::atomic<int> on_worker{0};
    pool.run(static_cast<int>(out.size()), [&](int i) {
      out[i] = subnormal_product();
      if (std::this_thread::get_id() != caller) on_worker.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the worker claim some
    });
    return on_worker.load();
  };
  std::vector<float> flushed(16, -1.0f), kept(16, -1.0f);
  int worker_tasks = 0;
  {
    const vaelab::FlushDenormals flush;
    worker_tasks += run(flushed);
  }
  worker_tasks += run(kept);
  for (float v : flushed) CHECK(v == 0.0f);
  for (float v : kept) CHECK(v != 0.0f);
  if (worker_tasks == 0) MESSAGE("the worker claimed no task (a very busy machine): only the caller was checked");
}

TEST_CASE("denormals: Adam's moments decay to 0, not into subnormals") {
  // g = 0 from the start: m stays 0; v decays from a tiny seed by β2 = 0.999 a step. Without the
  // flush it would pass through ~ 1e-38 … 1e-45 as subnormals; with it, it jumps to 0.
  const std::size_t n = 64;
  std::vector<float> theta(n, 0.5f), g(n, 0.0f);
  vaelab::Adam adam;
  adam.reset(n);
  std::fill(adam.v.begin(), adam.v.end(), 1.2e-38f);  // normal, just above the subnormal range
  for (int s = 0; s < 200; ++s) REQUIRE(adam.step(theta.data(), g.data(), n, 1e-3f));
  for (std::size_t i = 0; i < n; ++i) {
    CHECK(adam.v[i] == 0.0f);  // 1.2e-38 · 0.999^21 < 1.18e-38: from step 21 on, flushed to 0
    CHECK(theta[i] == 0.5f);
  }
}

#else

TEST_CASE("denormals: no MXCSR on this architecture") { MESSAGE("flush-to-zero is x86 only; nothing to check here"); }

#endif
