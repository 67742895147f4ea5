// vaelab-train: the headless trainer. Loads a data set, trains with the same core Trainer the app
// uses, reports progress on stderr and (with --json) one JSON object per epoch on stdout.
// Not a second training loop: everything here is argument handling and reporting.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <future>
#include <iostream>
#include <string>
#include <optional>
#include <thread>

#include "app/image_export.hpp"
#include "core/atomic_file.hpp"
#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/error.hpp"
#include "core/memory_estimate.hpp"
#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/safetensors.hpp"
#include "core/trainer.hpp"
#include "core/view_math.hpp"
#include "app/flags/flags.hpp"
#include "app/train/json_number.hpp"
#include "app/train/follow_eval.hpp"
#include "app/train/load_progress_line.hpp"

using namespace vaelab;
using flags::CommandLine;

namespace {

void print_epoch_json(const EpochRecord& r, bool with_iwae) {
  std::string s = "{\"epoch\":" + std::to_string(r.epoch) + ",\"step\":" + std::to_string(r.step);
  if (r.epoch > 0) s += ",\"train_elbo\":" + json_number(r.train_elbo);
  s += ",\"test_elbo\":" + json_number(r.test_elbo) + ",\"test_recon\":" + json_number(r.test_recon) +
       ",\"test_kl\":" + json_number(r.test_kl);
  if (r.epoch > 0) s += ",\"samples_per_s\":" + json_number(r.samples_per_s);
  if (with_iwae) s += ",\"test_iwae\":" + json_number(r.test_iwae);
  if (std::isfinite(r.cluster_acc)) s += ",\"cluster_acc\":" + json_number(r.cluster_acc) + ",\"nmi\":" + json_number(r.nmi);
  s += "}";
  std::printf("%s\n", s.c_str());
  std::fflush(stdout);
}

// Progress on stderr: a redrawn bar on a terminal, one line per epoch otherwise.
class Progress {
 public:
  Progress(int epochs, bool tty) : epochs_(epochs), tty_(tty) {}

  void on_step(const TrainerEvent& ev) {
    if (!tty_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const int width = 30;
    const int filled = ev.batches_per_epoch ? width * ev.batch_in_epoch / ev.batches_per_epoch : 0;
    std::fprintf(stderr, "\repoch %d/%d [%.*s%*s] %d/%d  %.0f samples/s  ELBO %.1f   ", ev.epoch + 1, epochs_, filled,
                 "==============================", width - filled, "", ev.batch_in_epoch, ev.batches_per_epoch,
                 ev.samples_per_s, ev.stats ? ev.stats->elbo : 0.0);
  }

  void on_epoch(const EpochRecord& r) {
    if (tty_) std::fprintf(stderr, "\r%*s\r", 100, "");
    if (r.epoch == 0)
      std::fprintf(stderr, "evaluation: test ELBO %.2f (recon %.2f, KL %.2f)", r.test_elbo, r.test_recon, r.test_kl);
    else
      std::fprintf(stderr, "epoch %d/%d: train ELBO %.2f, test ELBO %.2f (recon %.2f, KL %.2f), %.0f samples/s",
                   r.epoch, epochs_, r.train_elbo, r.test_elbo, r.test_recon, r.test_kl, r.samples_per_s);
    if (std::isfinite(r.test_iwae)) std::fprintf(stderr, ", IWAE %.2f", r.test_iwae);
    if (std::isfinite(r.cluster_acc)) std::fprintf(stderr, ", cluster accuracy %.3f, NMI %.3f", r.cluster_acc, r.nmi);
    std::fprintf(stderr, "\n");
  }

 private:
  int epochs_;
  bool tty_;
  std::chrono::steady_clock::time_point last_{};
};

// "IWAE_5000: 48 of 10000 test images, 1.6 images/s, about 1 h 43 min left" on stderr, at most
// once a second while an IWAE evaluation runs: with a large K it takes hours, and says so.
class IwaeProgressLine {
 public:
  explicit IwaeProgressLine(int k) : k_(k) {}

  void operator()(int done, int total) {
    const auto now = std::chrono::steady_clock::now();
    if (done < last_done_ || last_done_ < 0) {  // a new evaluation: its rate counts from here
      start_ = last_line_ = now;
      start_done_ = done;
    }
    last_done_ = done;
    if (now - last_line_ < std::chrono::seconds(1)) return;
    last_line_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double rate = seconds > 0 ? (done - start_done_) / seconds : 0.0;
    std::fprintf(stderr, "IWAE_%d: %d of %d test images, %.2g images/s, %s\n", k_, done, total, rate,
                 rate > 0 ? time_left_text((total - done) / rate).c_str() : "time left unknown");
  }

 private:
  int k_;
  int last_done_ = -1, start_done_ = 0;
  std::chrono::steady_clock::time_point start_, last_line_;
};

// --export-images, as PyTorch's examples/vae writes them after each epoch: samples_E.png, the
// decoder's means for an 8×8 grid of z ~ N(0, I) (the same z every epoch, so the files show the
// model changing), and reconstructions_E.png, the first 8 test images on top and below them the
// decoder's means at their codes' means. Grey data through the grey map, colour as it is.
class EpochImages {
 public:
  explicit EpochImages(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec || !std::filesystem::is_directory(dir_))
      throw Error("cannot create the image folder " + dir_.string() + (ec ? ": " + ec.message() : std::string()));
  }

  void write(int epoch, const Model& model, const ImageSet& test) const {
    const ModelConfig& m = model.config();
    Eigen::MatrixXf z(m.latent, kSide * kSide), images;
    Rng rng(kPriorSeed);
    for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = rng.normal();
    model.decode_image(z, images);
    write_grid("samples_" + std::to_string(epoch) + ".png", images, m, kSide, kSide);

    const int n = std::min(kSide, test.count);
    if (n == 0) return;
    Eigen::MatrixXf x(test.values_per_image(), n), mu, logvar, recon;
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < x.rows(); ++k) x(k, j) = test.image(j)[k] * (1.0f / 255.0f);
    model.encode(x, mu, logvar);
    model.decode_image(mu, recon);
    Eigen::MatrixXf both(x.rows(), 2 * n);
    both << x, recon;
    write_grid("reconstructions_" + std::to_string(epoch) + ".png", both, m, 2, n);
  }

 private:
  static constexpr int kSide = 8;
  static constexpr std::uint64_t kPriorSeed = 20131220;  // any fixed seed: the same z every epoch

  void write_grid(const std::string& name, const Eigen::MatrixXf& images, const ModelConfig& m, int rows, int cols) const {
    int w = 0, h = 0;
    const std::vector<float> grid = tile_images(images, m.image_c, m.image_h, m.image_w, rows, cols, 0, w, h);
    app::write_image_png(dir_ / name, grid, m.image_c, w, h, 0 /* grey map */, 0);
  }

  std::filesystem::path dir_;
};

// load_dataset on a second thread while this one reports its progress on stderr (LoadProgressLine:
// silent for a load under a second). The load's exception, if any, is rethrown here.
Dataset load_with_progress(const std::filesystem::path& folder, const LoadOptions& options) {
  LoadProgress progress;
  std::future<Dataset> loading =
      std::async(std::launch::async, [&] { return load_dataset(folder, options, nullptr, &progress); });
  LoadProgressLine line(isatty(STDERR_FILENO));
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  while (loading.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready)
    if (auto text = line.poll(progress.done.load(), progress.total.load(), seconds())) std::fputs(text->c_str(), stderr);
  if (auto text = line.finish(progress.done.load(), seconds())) std::fputs(text->c_str(), stderr);
  return loading.get();
}

int run(const CommandLine& args) {
  const auto folder = args.data.empty() ? default_data_folder() : std::filesystem::path(args.data);
  auto data = std::make_shared<const Dataset>(load_with_progress(folder, args.data_options));
  for (const std::string& note : data->notes) std::fprintf(stderr, "vaelab-train: note: %s\n", note.c_str());

  ModelConfig model = args.model;
  model.image_c = data->train.channels;
  model.image_h = data->train.height;
  model.image_w = data->train.width;
  const TrainConfig& train = args.train;

  TrainerOptions opt;
  opt.max_epochs = args.epochs;
  opt.evaluate_before_training = args.epochs == 0;
  opt.eval_iwae_k = args.iwae_k;
  if (args.iwae_k > 0) opt.on_iwae_progress = IwaeProgressLine(args.iwae_k);
  opt.eval_limit = args.eval_limit;
  opt.train_limit = args.train_limit;
  opt.display_points = 0;  // nobody looks at the latent map here
  opt.latent_refresh_ms = 0;
  if (args.bench_steps > 0) {
    opt.max_epochs = -1;
    opt.evaluate_each_epoch = false;
  }

  // Refuse before training what would only fail after it: a model or batch the memory cannot hold,
  // a save target that cannot be written.
  if (args.load.empty() && args.import_safetensors.empty())
    check_training_memory(estimate_training_memory(model, train, dataset_bytes(*data, train)), available_memory());
  for (const std::string& target : {args.save, args.export_safetensors})
    if (!target.empty()) check_save_target(target);

  std::optional<EpochImages> epoch_images;
  if (!args.export_images.empty()) epoch_images.emplace(args.export_images);

  Trainer trainer(data, model, train, opt);
  if (!args.load.empty()) trainer.load_now(args.load);
  if (!args.import_safetensors.empty()) trainer.import_safetensors_now(args.import_safetensors);

  Progress progress(args.epochs, isatty(STDERR_FILENO));
  std::atomic<bool> failed{false};
  std::int64_t bench_start_step = -1, bench_end_step = -1;
  std::chrono::steady_clock::time_point bench_t0, bench_t1;
  double bench_cpu0 = 0, bench_cpu1 = 0;  // process CPU time: the rate per CPU-second survives a busy machine
  auto process_cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  const int bench_warmup = 20;
  StepTimes bench_times;  // summed over the timed steps: where the time goes

  trainer.set_listener([&](const TrainerEvent& ev) {
    switch (ev.kind) {
      case EventKind::Step:
        if (args.bench_steps > 0) {
          if (ev.step == bench_warmup) {
            bench_start_step = ev.step;
            bench_t0 = std::chrono::steady_clock::now();
            bench_cpu0 = process_cpu_seconds();
            return;
          }
          if (bench_start_step >= 0 && bench_end_step < 0) bench_times += ev.stats->times;
          if (bench_start_step >= 0 && ev.step == bench_start_step + args.bench_steps) {
            bench_t1 = std::chrono::steady_clock::now();
            bench_cpu1 = process_cpu_seconds();
            bench_end_step = ev.step;
            trainer.request_stop();
          }
          return;
        }
        progress.on_step(ev);
        break;
      case EventKind::EpochEnd:
        if (args.bench_steps > 0) return;  // no evaluation in benchmark mode: nothing to report
        progress.on_epoch(*ev.record);
        if (args.json) print_epoch_json(*ev.record, args.iwae_k > 0);
        if (epoch_images) {
          try {
            epoch_images->write(ev.record->epoch, *ev.model, data->test);
          } catch (const std::exception& e) {
            std::fprintf(stderr, "vaelab-train: error: %s\n", e.what());
            failed = true;
            trainer.request_stop();
          }
        }
        break;
      case EventKind::Log:
        if (ev.line->severity == Severity::Error) {
          std::fprintf(stderr, "vaelab-train: error: %s\n", ev.line->text.c_str());
          failed = true;
          trainer.request_stop();
        } else if (ev.line->severity == Severity::Warning) {
          std::fprintf(stderr, "vaelab-train: warning: %s\n", ev.line->text.c_str());
        }
        break;
      case EventKind::Finished:
        break;
    }
  });
  trainer.start();
  trainer.join();
  if (failed) return 1;

  if (args.bench_steps > 0) {
    const double secs = std::chrono::duration<double>(bench_t1 - bench_t0).count();
    if (bench_end_step < 0 || secs <= 0) throw Error("benchmark did not complete");
    const double sps = static_cast<double>(args.bench_steps) * train.batch / secs;
    std::printf("{\"samples_per_s\":%.1f,\"steps\":%d,\"batch\":%d,\"threads\":%d,\"latent\":%d,\"hidden\":\"", sps,
                args.bench_steps, train.batch, train.threads, model.latent);
    for (std::size_t i = 0; i < model.hidden.size(); ++i) std::printf("%s%d", i ? "," : "", model.hidden[i]);
    std::printf("\",\"seconds\":%.6f,\"cpu_seconds\":%.6f,\"phase_us\":{", secs, bench_cpu1 - bench_cpu0);
    for (int p = 0; p < static_cast<int>(StepPhase::Count); ++p)
      std::printf("%s\"%s\":%.2f", p ? "," : "", step_phase_name(static_cast<StepPhase>(p)),
                  1e6 * bench_times.seconds[p] / args.bench_steps);
    std::printf("}}\n");
    return 0;
  }

  if (!args.save.empty()) {
    trainer.save_now(args.save);
    std::fprintf(stderr, "saved checkpoint %s\n", args.save.c_str());
  }
  if (!args.export_safetensors.empty()) {
    trainer.export_safetensors_now(args.export_safetensors);
    std::fprintf(stderr, "exported weights to %s\n", args.export_safetensors.c_str());
  }
  return 0;
}

// Reads the flags (the table's defaults, then argv) and checks the settings they make together.
// Throws flags::UsageError or vaelab::Error (both: exit code 2).
CommandLine parse_command_line(const std::vector<std::string>& argv_list) {
  CommandLine args = flags::parse(flags::Program::Train, argv_list);
  if (!args.load.empty() && !args.import_safetensors.empty())
    throw flags::UsageError("--load and --import-safetensors both give starting weights; use one");
  if (!args.follow.empty())
    for (const char* other : {"--load", "--import-safetensors", "--save", "--export-safetensors", "--export-images", "--bench-steps"})
      if (args.was_given(other)) throw flags::UsageError(std::string("--follow evaluates another program's run; it does not take ") + other);
  if (!args.was_given("--threads"))
    args.train.threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1,
                                    static_cast<int>(limits::kThreads.hi));
  validate(args.model);
  validate(args.train);
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine args;
  try {
    args = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab-train: %s\n", e.what());
    return 2;
  }
  if (args.help) {
    std::fputs(flags::usage(flags::Program::Train, flags::developer_flags_wanted()).c_str(), stdout);
    return 0;
  }
  try {
    return args.follow.empty() ? run(args) : follow_and_evaluate(args);
  } catch (const Error& e) {
    std::fprintf(stderr, "vaelab-train: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab-train: unexpected error: %s\n", e.what());
    return 1;
  }
}
