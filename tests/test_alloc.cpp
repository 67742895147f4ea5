// No allocation inside the training step: glibc's malloc family is interposed here and counted
// around GradientEngine::compute and Adam::step (after a warm-up step) on 1 and 2 threads.
// Test-only; not built into the count under sanitizers, which own malloc (the case then says so).
#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>

#include "core/adam.hpp"
#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/thread_pool.hpp"
#include "core/train_step.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VAELAB_NO_MALLOC_COUNT 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define VAELAB_NO_MALLOC_COUNT 1
#endif
#endif

#if !defined(VAELAB_NO_MALLOC_COUNT) && defined(__GLIBC__)
#define VAELAB_MALLOC_COUNT 1
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
inline void count() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace
// Every allocation in the process (operator new and Eigen's aligned_malloc end here) is counted
// while g_counting is set, on any thread.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t s) {
  count();
  return __libc_calloc(n, s);
}
void* realloc(void* p, std::size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  count();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  count();
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;  // ENOMEM
}
}
#endif

using namespace vaelab;

#ifdef VAELAB_MALLOC_COUNT
namespace {

// Allocations made by one training step (compute + Adam) after a warm-up step. Only where malloc
// is counted: the cases below say so instead of calling it elsewhere.
long allocations_in_step(const ModelConfig& cfg, int B, int L, int threads) {
  Model model(cfg);
  model.init(2);
  Rng rng(3);
  Eigen::MatrixXf x(cfg.input_dim(), B), eps(cfg.latent, B * L);
  for (Eigen::Index j = 0; j < x.cols(); ++j)
    for (Eigen::Index i = 0; i < x.rows(); ++i) x(i, j) = rng.uniform();
  for (Eigen::Index j = 0; j < eps.cols(); ++j)
    for (Eigen::Index i = 0; i < eps.rows(); ++i) eps(i, j) = rng.normal();
  ThreadPool pool(threads);
  GradientEngine engine(cfg, B, L, threads);
  std::vector<float> grad(model.size());
  Adam adam;
  adam.reset(model.size());
  StepStats st = engine.compute(model, x, eps, 1.0f, grad.data(), &pool);  // warm-up
  adam.step(model.data(), grad.data(), model.size(), 1e-3f, &pool);
  g_allocs = 0;
  g_counting = true;
  st = engine.compute(model, x, eps, 1.0f, grad.data(), &pool);
  adam.step(model.data(), grad.data(), model.size(), 1e-3f, &pool);
  g_counting = false;
  CHECK(st.finite);
  return g_allocs.load();
}

}  // namespace
#endif

TEST_CASE("alloc: the counter sees allocations (guards the test below)") {
#ifdef VAELAB_MALLOC_COUNT
  g_allocs = 0;
  g_counting = true;
  Eigen::MatrixXf* m = new Eigen::MatrixXf(64, 64);
  void* p = std::malloc(100);
  g_counting = false;
  std::free(p);
  delete m;
  CHECK(g_allocs.load() >= 3);  // new, Eigen's buffer, malloc
#else
  MESSAGE("malloc counting is off in this build (sanitizer or not glibc)");
#endif
}

TEST_CASE("alloc: no allocation inside the MLP training step (compute + Adam), 1 and 2 threads") {
#ifdef VAELAB_MALLOC_COUNT
  ModelConfig cfg;
  cfg.image_h = cfg.image_w = 12;
  cfg.latent = 5;
  cfg.hidden = {64, 24};
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    cfg.likelihood = Likelihood::Bernoulli;
    CHECK(allocations_in_step(cfg, 37, 1, threads) == 0);
    CHECK(allocations_in_step(cfg, 37, 3, threads) == 0);
    cfg.likelihood = Likelihood::GaussianLearned;
    CHECK(allocations_in_step(cfg, 37, 2, threads) == 0);
  }
#else
  MESSAGE("malloc counting is off in this build (sanitizer or not glibc)");
#endif
}

TEST_CASE("alloc: no allocation inside the convolutional and clustering VAE steps, 1 and 2 threads") {
#ifdef VAELAB_MALLOC_COUNT
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    ModelConfig conv;
    conv.image_h = conv.image_w = 28;  // products large enough for Eigen to take its blocks from the heap
    conv.latent = 4;
    conv.family = ModelFamily::Conv;
    CHECK(allocations_in_step(conv, 9, 1, threads) == 0);
    CHECK(allocations_in_step(conv, 9, 2, threads) == 0);
    ModelConfig gm;
    gm.image_h = gm.image_w = 10;
    gm.latent = 3;
    gm.hidden = {32};
    gm.family = ModelFamily::Gmvae;
    gm.clusters = 4;
    CHECK(allocations_in_step(gm, 11, 1, threads) == 0);
    CHECK(allocations_in_step(gm, 11, 3, threads) == 0);
  }
#else
  MESSAGE("malloc counting is off in this build (sanitizer or not glibc)");
#endif
}
