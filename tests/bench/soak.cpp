// vaelab_soak: trains headless for 30 minutes (--minutes to shorten) while a reader thread takes
// a snapshot at 60 Hz and decodes from it as the app's UI does, sampling this process's RSS from
// /proc/self/status; prints a table and a verdict (flat or growing, slope in MB/min).
// A benchmark, not a test: not in CTest (it takes half an hour and depends on the machine's load).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/error.hpp"
#include "core/trainer.hpp"

using namespace vaelab;
using Clock = std::chrono::steady_clock;

namespace {

// VmRSS in MiB, or NaN when /proc is unavailable.
double rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  return std::nan("");
}

// Least-squares slope of y over x.
double slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) sx += x[i], sy += y[i], sxx += x[i] * x[i], sxy += x[i] * y[i];
  const double d = n * sxx - sx * sx;
  return d > 0 ? (n * sxy - sx * sy) / d : 0;
}

struct Sample {
  double minutes;
  std::int64_t step;
  int epoch;
  double rss;
  double history_mib;  // one copy of the step history (the trainer's; snapshots hold more)
  std::uint64_t reads;
};

int usage(const char* msg) {
  if (msg) std::fprintf(stderr, "vaelab_soak: %s\n", msg);
  std::fprintf(stderr,
               "usage: vaelab_soak [--minutes M (30)] [--sample-seconds S (10)] [--data DIR] [--threads T (1)]\n"
               "                   [--latent D (2)] [--display-points N (10000)] [--threshold MIB_PER_MIN (0.5)]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  double minutes = 30, sample_s = 10, threshold = 0.5;
  std::string data_dir;
  int threads = 1, latent = 2, display_points = 10000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage(("missing value after " + a).c_str());
    const char* v = argv[++i];
    if (a == "--minutes") minutes = std::atof(v);
    else if (a == "--sample-seconds") sample_s = std::atof(v);
    else if (a == "--threshold") threshold = std::atof(v);
    else if (a == "--data") data_dir = v;
    else if (a == "--threads") threads = std::atoi(v);
    else if (a == "--latent") latent = std::atoi(v);
    else if (a == "--display-points") display_points = std::atoi(v);
    else return usage(("unknown flag " + a).c_str());
  }
  if (!(minutes > 0) || !(sample_s > 0) || threads < 1 || latent < 1 || display_points < 0)
    return usage("values must be positive");

  try {
    auto data = std::make_shared<const Dataset>(load_dataset(data_dir.empty() ? default_data_folder() : std::filesystem::path(data_dir)));
    ModelConfig m;  // the app's default model: 784-400-2, Bernoulli
    m.image_h = data->train.height;
    m.image_w = data->train.width;
    m.latent = latent;
    TrainConfig t;
    t.threads = threads;
    TrainerOptions o;  // the app's cadence: snapshots every 50 ms, latent map re-encoded every second
    o.display_points = display_points;
    o.latent_refresh_ms = 1000;
    o.eval_limit = 2000;  // epoch-end evaluations as in the app, shorter
    Trainer trainer(data, m, t, o);
    std::atomic<int> errors{0};
    trainer.set_listener([&](const TrainerEvent& ev) {
      if (ev.kind == EventKind::Log && ev.line->severity == Severity::Error) {
        std::fprintf(stderr, "vaelab_soak: trainer error: %s\n", ev.line->text.c_str());
        ++errors;
      }
    });

    // The reader: what a frame of the app does with a snapshot, 60 times a second.
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> reads{0};
    std::thread reader([&] {
      Eigen::MatrixXf z = Eigen::MatrixXf::Zero(latent, 1), img;
      auto next = Clock::now();
      double sink = 0;
      while (!stop.load()) {
        auto snap = trainer.snapshot();
        if (snap && snap->model) {
          z(0, 0) = static_cast<float>(std::sin(0.01 * static_cast<double>(reads.load())));
          snap->model->decode_image(z, img);
          sink += img(0, 0) + static_cast<double>(snap->history.steps.size()) + snap->latent_mu.size();
        }
        ++reads;
        next += std::chrono::microseconds(16667);
        std::this_thread::sleep_until(next);
      }
      if (sink == -1) std::puts("");  // keeps the reads from being optimised away
    });

    const double rss0 = rss_mib();
    const auto t0 = Clock::now();
    trainer.start();
    std::vector<Sample> samples;
    std::printf("# vaelab_soak: %.1f min, %d trainer thread(s), latent %d, %d display points, reader at 60 Hz, "
                "RSS every %.0f s\n", minutes, threads, latent, display_points, sample_s);
    std::printf("# RSS before training: %.1f MiB\n", rss0);
    std::printf("%8s %10s %6s %10s %12s %10s\n", "minutes", "step", "epoch", "RSS_MiB", "history_MiB", "reads");
    std::fflush(stdout);
    for (int k = 1;; ++k) {
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(static_cast<long long>(k * sample_s * 1000)));
      const double mins = std::chrono::duration<double>(Clock::now() - t0).count() / 60;
      auto snap = trainer.snapshot();
      Sample s{mins,
               snap ? snap->step : 0,
               snap ? snap->epoch : 0,
               rss_mib(),
               snap ? static_cast<double>(snap->history.steps.size() * sizeof(StepRecord)) / (1 << 20) : 0,
               reads.load()};
      samples.push_back(s);
      // A row per minute (and the last), every sample kept for the fit.
      const int per_minute = std::max(1, static_cast<int>(std::lround(60 / sample_s)));
      if (k % per_minute == 0 || mins >= minutes)
        std::printf("%8.2f %10lld %6d %10.1f %12.2f %10llu\n", s.minutes, static_cast<long long>(s.step), s.epoch,
                    s.rss, s.history_mib, static_cast<unsigned long long>(s.reads));
      std::fflush(stdout);
      if (mins >= minutes || errors.load() > 0) break;
    }
    stop = true;
    reader.join();
    trainer.request_stop();
    trainer.join();

    // Fit over the samples after the first fifth (allocator pools, the latent map's first encoding
    // and the first evaluation all land early and are not a leak).
    std::vector<double> x, y, h;
    for (const auto& s : samples)
      if (s.minutes >= minutes / 5) x.push_back(s.minutes), y.push_back(s.rss), h.push_back(s.history_mib);
    if (x.size() < 3) {
      std::printf("verdict: too few samples for a slope (%zu)\n", x.size());
      return 1;
    }
    const double rss_slope = slope(x, y), hist_slope = slope(x, h);
    const double peak = std::max_element(samples.begin(), samples.end(), [](auto& a, auto& b) { return a.rss < b.rss; })->rss;
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("# %zu RSS samples; fit over minutes %.1f..%.1f; %llu snapshot reads (%.1f Hz); %lld steps\n",
                samples.size(), x.front(), x.back(), static_cast<unsigned long long>(samples.back().reads),
                static_cast<double>(samples.back().reads) / secs, static_cast<long long>(samples.back().step));
    std::printf("# RSS first %.1f, last %.1f, peak %.1f MiB; step history grows %.3f MiB/min per copy\n",
                samples.front().rss, samples.back().rss, peak, hist_slope);
    const bool flat = std::abs(rss_slope) <= threshold;
    std::printf("verdict: %s, RSS slope %+.3f MiB/min (threshold %.2f)%s\n", flat ? "FLAT" : "GROWING", rss_slope,
                threshold,
                flat ? "" : (rss_slope <= 3.5 * hist_slope + threshold ? "; within what the step history's copies explain"
                                                                      : "; more than the step history explains"));
    if (errors.load() > 0) std::printf("verdict: the trainer reported %d error(s)\n", errors.load());
    return flat && errors.load() == 0 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "vaelab_soak: %s\n", e.what());
    return 1;
  }
}
