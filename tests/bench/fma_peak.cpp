// The machine's fp32 peak, measured: independent FMA chains in registers on 1 and N threads,
// printed as one JSON line (GFLOP/s by wall clock and per CPU-second). A benchmark helper for
// tests/bench/throughput.py, not part of the test suite; it knows nothing about vaelab.
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec set1(float v) { return _mm512_set1_ps(v); }
inline float lane0(Vec v) { return _mm512_cvtss_f32(v); }
const char* kIsa = "avx512f";
#elif defined(__FMA__)
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec set1(float v) { return _mm256_set1_ps(v); }
inline float lane0(Vec v) { return _mm256_cvtss_f32(v); }
const char* kIsa = "avx2+fma";
#else
#error "fma_peak needs FMA (build with -march=native on an FMA machine)"
#endif

// 12 independent accumulators: enough to cover FMA latency × issue width (4 cycles × 2 pipes on
// Zen 3 and Skylake-X) without spilling the 16 ymm registers.
constexpr int kChains = 12;

// Runs `iters` rounds of kChains FMAs; returns a value that depends on all of them. The chains
// are named variables, not an array, so that they stay in registers at -O2.
float fma_loop(long iters, float seed) {
  Vec c0 = set1(seed), c1 = set1(seed + 0.01f), c2 = set1(seed + 0.02f), c3 = set1(seed + 0.03f),
      c4 = set1(seed + 0.04f), c5 = set1(seed + 0.05f), c6 = set1(seed + 0.06f), c7 = set1(seed + 0.07f),
      c8 = set1(seed + 0.08f), c9 = set1(seed + 0.09f), c10 = set1(seed + 0.10f), c11 = set1(seed + 0.11f);
  const Vec a = set1(0.999999f), b = set1(1e-7f);
  for (long n = 0; n < iters; ++n) {
    c0 = fma(c0, a, b); c1 = fma(c1, a, b); c2 = fma(c2, a, b); c3 = fma(c3, a, b);
    c4 = fma(c4, a, b); c5 = fma(c5, a, b); c6 = fma(c6, a, b); c7 = fma(c7, a, b);
    c8 = fma(c8, a, b); c9 = fma(c9, a, b); c10 = fma(c10, a, b); c11 = fma(c11, a, b);
  }
  return lane0(c0) + lane0(c1) + lane0(c2) + lane0(c3) + lane0(c4) + lane0(c5) + lane0(c6) + lane0(c7) +
         lane0(c8) + lane0(c9) + lane0(c10) + lane0(c11);
}

constexpr double kFlopsPerIter = 2.0 * kLanes * kChains;

struct Result {
  double wall_gflops = 0, cpu_gflops = 0;
};

// threads run the loop together for about `seconds`; best of `reps` runs.
Result measure(int threads, double seconds, int reps) {
  // Calibrate the iteration count on one thread.
  long iters = 1 << 20;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile float sink = fma_loop(iters, 1.0f);
    (void)sink;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.05) {
      iters = static_cast<long>(static_cast<double>(iters) * seconds / s);
      break;
    }
    iters *= 2;
  }
  Result best;
  for (int r = 0; r < reps; ++r) {
    std::atomic<int> ready{0};
    std::vector<double> cpu(threads);
    std::vector<std::thread> pool;
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        ready.fetch_add(1);
        const double c0 = thread_cpu_seconds();
        volatile float sink = fma_loop(iters, 1.0f + static_cast<float>(t));
        (void)sink;
        cpu[t] = thread_cpu_seconds() - c0;
      });
    for (auto& th : pool) th.join();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double flops = kFlopsPerIter * static_cast<double>(iters) * threads;
    double cpu_total = 0;
    for (double c : cpu) cpu_total += c;
    Result res{flops / wall * 1e-9, flops / cpu_total * 1e-9};
    if (res.wall_gflops > best.wall_gflops) best.wall_gflops = res.wall_gflops;
    if (res.cpu_gflops > best.cpu_gflops) best.cpu_gflops = res.cpu_gflops;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int max_threads = static_cast<int>(std::thread::hardware_concurrency());
  double seconds = 0.5;
  int reps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      max_threads = std::atoi(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--repeat" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: fma_peak [--threads N (all cores)] [--seconds S (0.5)] [--repeat R (3)]\n");
      return 2;
    }
  }
  if (max_threads < 1 || seconds <= 0 || reps < 1) {
    std::fprintf(stderr, "fma_peak: --threads, --seconds and --repeat must be positive\n");
    return 2;
  }
  // One JSON line: per thread count, the best wall-clock rate (what the machine gave us) and the
  // rate per CPU-second our threads actually ran (what a core does when it is ours).
  std::printf("{\"isa\":\"%s\",\"lanes\":%d,\"chains\":%d", kIsa, kLanes, kChains);
  for (int t = 1; t <= max_threads; ++t) {
    const Result r = measure(t, seconds, reps);
    std::printf(",\"peak_gflops_%d\":%.2f,\"peak_gflops_per_cpu_s_%d\":%.2f", t, r.wall_gflops, t, r.cpu_gflops);
  }
  std::printf("}\n");
  return 0;
}
