// GFLOP/s of core/gemm.hpp on the MLP step's product shapes (784-400-20 and 784-512-256-2 at a
// given batch), one thread, beside Eigen's product on the same operands in the same run. A
// benchmark, not a test: it checks nothing but prints a table (and --peak turns rates into % of it).
#include <Eigen/Core>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "core/gemm.hpp"

namespace {

using vaelab::gemm::Op;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs f repeatedly for about `seconds` of CPU time; returns the best of 3 rounds in GFLOP per
// CPU-second (the thread's own CPU time, so other processes' load does not count against it).
template <class F>
double rate(double flops, double seconds, const F& f) {
  f();
  int reps = 1;
  for (;;) {
    const double t0 = cpu_seconds();
    for (int r = 0; r < reps; ++r) f();
    const double s = cpu_seconds() - t0;
    if (s > 0.02) {
      reps = std::max(1, static_cast<int>(reps * seconds / 3 / s));
      break;
    }
    reps *= 2;
  }
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    const double t0 = cpu_seconds();
    for (int r = 0; r < reps; ++r) f();
    best = std::max(best, flops * reps / (cpu_seconds() - t0) * 1e-9);
  }
  return best;
}

struct Shape {
  const char* what;
  Op oa, ob;
  int m, n, k;
};

}  // namespace

int main(int argc, char** argv) {
  int batch = 128;
  double seconds = 0.6, peak = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--batch" && i + 1 < argc)
      batch = std::atoi(argv[++i]);
    else if (a == "--seconds" && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (a == "--peak" && i + 1 < argc)
      peak = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "usage: vaelab_gemm_bench [--batch B (128)] [--seconds S (0.6)] [--peak GFLOP/s of one core]\n");
      return 2;
    }
  }
  const int C = batch;
  // y = W x (NN: W (out × in), x (in × C)); dW = dy xᵀ (NT); dx = Wᵀ dy (TN).
  const Shape shapes[] = {
      {"enc 784->400 fwd  W x", Op::N, Op::N, 400, C, 784},  {"enc 784->400 dW dy xT", Op::N, Op::T, 400, 784, C},
      {"enc 400->40  fwd", Op::N, Op::N, 40, C, 400},         {"enc 400->40  dW", Op::N, Op::T, 40, 400, C},
      {"enc 400->40  dx WT dy", Op::T, Op::N, 400, C, 40},    {"dec 20->400  fwd", Op::N, Op::N, 400, C, 20},
      {"dec 20->400  dW", Op::N, Op::T, 400, 20, C},          {"dec 400->784 fwd", Op::N, Op::N, 784, C, 400},
      {"dec 400->784 dW", Op::N, Op::T, 784, 400, C},         {"dec 400->784 dx", Op::T, Op::N, 400, C, 784},
      {"512->256 fwd", Op::N, Op::N, 256, C, 512},            {"512->256 dW", Op::N, Op::T, 256, 512, C},
      {"512->256 dx", Op::T, Op::N, 512, C, 256},
  };
  std::printf("kernel %s, batch %d, 1 thread, GFLOP per CPU-second (best of 3 rounds of ~%.2f s)\n",
              vaelab::gemm::kernel_name(), batch, seconds / 3);
  std::printf("%-24s %5s %5s %5s %9s %9s %7s%s\n", "product", "m", "n", "k", "gemm", "Eigen", "ratio",
              peak > 0 ? "  gemm % peak  Eigen % peak" : "");
  double tot_flops = 0, tot_g = 0, tot_e = 0;
  for (const Shape& s : shapes) {
    const int ar = s.oa == Op::N ? s.m : s.k, ac = s.oa == Op::N ? s.k : s.m;
    const int br = s.ob == Op::N ? s.k : s.n, bc = s.ob == Op::N ? s.n : s.k;
    Eigen::MatrixXf A = Eigen::MatrixXf::Random(ar, ac), B = Eigen::MatrixXf::Random(br, bc), Cm(s.m, s.n), Ce(s.m, s.n);
    std::vector<float> work(vaelab::gemm::packed_b_floats(s.k, s.n));
    const double flops = 2.0 * s.m * s.n * s.k;
    const double g = rate(flops, seconds, [&] {
      vaelab::gemm::multiply(s.oa, s.ob, s.m, s.n, s.k, A.data(), A.rows(), B.data(), B.rows(), Cm.data(), Cm.rows(),
                             false, work.data());
    });
    const double e = rate(flops, seconds, [&] {
      if (s.oa == Op::N && s.ob == Op::N)
        Ce.noalias() = A * B;
      else if (s.oa == Op::N)
        Ce.noalias() = A * B.transpose();
      else
        Ce.noalias() = A.transpose() * B;
    });
    tot_flops += flops;
    tot_g += flops / g;
    tot_e += flops / e;
    std::printf("%-24s %5d %5d %5d %9.1f %9.1f %7.2f", s.what, s.m, s.n, s.k, g, e, g / e);
    if (peak > 0) std::printf("  %11.0f%%  %11.0f%%", 100 * g / peak, 100 * e / peak);
    std::printf("   max|diff| %.1e\n", static_cast<double>((Cm - Ce).cwiseAbs().maxCoeff()));
  }
  std::printf("%-24s %5s %5s %5s %9.1f %9.1f %7.2f\n", "all (time-weighted)", "", "", "", tot_flops / tot_g,
              tot_flops / tot_e, tot_e / tot_g);
  return 0;
}
