// Trainer::Impl: the state the trainer thread owns and what it does with it. An internal header of
// the trainer's sources, not part of the API (include core/trainer.hpp instead). Its functions live
// by concern: trainer_loop.cpp (the thread loop, optimiser steps, epoch ends), trainer_run_state.cpp
// (building, resetting, saving and loading a run), trainer_commands.cpp (applying commands) and
// trainer_publish.cpp (events, the log and snapshots) and trainer_follow.cpp (following a run folder).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "core/adam.hpp"
#include "core/adaptive_threads.hpp"
#include "core/checkpoint.hpp"
#include "core/evaluation.hpp"
#include "core/rng.hpp"
#include "core/run_follow.hpp"
#include "core/thread_pool.hpp"
#include "core/trainer.hpp"
#include "core/trainer_commands.hpp"

namespace vaelab {

using TrainerClock = std::chrono::steady_clock;

// The latest snapshot: stored by the trainer thread, taken by any thread under a short lock.
class SnapshotSlot {
 public:
  void store(std::shared_ptr<const Snapshot> s) {
    std::lock_guard lock(mu_);
    snapshot_ = std::move(s);
  }
  std::shared_ptr<const Snapshot> load() const {
    std::lock_guard lock(mu_);
    return snapshot_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_;
};

// The most recent log lines (kMaxLines of them), numbered over the trainer's life.
class LogBook {
 public:
  static constexpr std::size_t kMaxLines = 200;
  const LogLine& add(Severity severity, std::string text) {
    lines_.push_back(LogLine{++serial_, severity, std::move(text)});
    while (lines_.size() > kMaxLines) lines_.pop_front();
    return lines_.back();
  }
  const std::deque<LogLine>& lines() const { return lines_; }

 private:
  std::deque<LogLine> lines_;
  std::uint64_t serial_ = 0;
};

// The latent map: encoder means of the first TrainerOptions::display_points test images.
struct LatentMap {
  std::vector<int> indices;  // into the (possibly binarized) test set
  Eigen::MatrixXf mu;        // (d, indices.size())
  std::int64_t step = -1;    // the step the codes are from; −1: none yet
  TrainerClock::time_point refreshed = TrainerClock::now();
};

// The clustering VAE's clusters of the evaluated test images at the last epoch end, which the next
// epoch end compares with to log clusters that emptied or merged (cluster_events).
struct ClusterWatch {
  std::vector<int> assignment;  // empty: nothing to compare with
  int epoch = -1;               // the epoch end it is from
  std::int64_t step = -1;
  const ImageSet* images = nullptr;  // what it was computed on
};

// Totals of the current epoch's training steps, for its record.
struct EpochTotals {
  void add(double elbo, int batch_size, double seconds) {
    elbo_sum += elbo;
    ++batches;
    train_seconds += seconds;
    samples += batch_size;
  }

  double elbo_sum = 0;
  int batches = 0;
  double train_seconds = 0;
  std::int64_t samples = 0;
};

// Recent training throughput: samples per second over windows of at least half a second.
class Throughput {
 public:
  double samples_per_s() const { return samples_per_s_; }
  void add(int samples, double seconds) {
    window_samples_ += samples;
    window_seconds_ += seconds;
    if (window_seconds_ < 0.5) return;
    samples_per_s_ = window_samples_ / window_seconds_;
    window_samples_ = window_seconds_ = 0;
  }

 private:
  double samples_per_s_ = 0, window_samples_ = 0, window_seconds_ = 0;
};

// A run folder being followed (Trainer::follow): its follower, what its curves are built from, what
// is shown of it, and what the local trainer goes back to.
struct FollowedRun {
  std::unique_ptr<RunFollower> follower;
  TrainerState state_before = TrainerState::Paused;  // the local trainer's, restored when following ends
  // The local run's curves and place, restored if following ends before any weights were shown.
  History local_history;
  std::int64_t local_step = 0;
  int local_epoch = 0;

  bool has_weights = false;  // a followed weights file has replaced the local model
  std::int64_t step = -1;    // of the weights shown
  double epoch = std::numeric_limits<double>::quiet_NaN();
  std::string last_problem;
  std::set<std::string> reported;          // problems already in the log
  std::vector<EpochRecord> metric_epochs;  // the epoch lines of metrics.jsonl
  std::vector<EpochRecord> evaluations;    // this trainer's test evaluation of each weights file shown
};

struct Trainer::Impl {
  using Clock = TrainerClock;

  TrainerOptions opt;
  TrainerListener listener;
  CommandQueue commands;
  SnapshotSlot published;
  // A running IWAE evaluation's progress (read by any thread) and its cancel flag (set by any).
  std::atomic<int> iwae_done{0}, iwae_total{0};
  std::atomic<bool> iwae_cancel{false};
  EvalProgress iwae_progress;

  // ---- trainer-thread state (also the *_now helpers', before start()) ----
  std::deque<Command> backlog;  // taken from `commands`, not yet applied

  // The data, the model and its optimiser.
  std::shared_ptr<const Dataset> data;
  std::shared_ptr<const ImageSet> train_set, test_set;  // possibly binarized copies
  ModelConfig mcfg;
  TrainConfig tcfg;
  std::unique_ptr<Model> model;
  std::shared_ptr<const Model> last_published_model;  // finite parameters to fall back on
  Adam adam;
  Rng rng;

  // What an optimiser step runs on.
  std::unique_ptr<ThreadPool> pool;
  AdaptiveThreads adaptive_threads;
  std::unique_ptr<GradientEngine> engine;
  ParamVector grad;
  Eigen::MatrixXf xbatch, eps;

  // Where the run is.
  TrainerState state = TrainerState::Paused;
  int pending_steps = 0;
  bool poisoned = false;  // TrainerOptions::poison_at_step fires once
  std::int64_t step = 0;
  int epoch = 0;
  int batch_in_epoch = 0;
  std::vector<std::int32_t> order;  // this epoch's shuffled training images
  EpochTotals epoch_totals;
  Throughput throughput;
  History history;
  std::vector<double> kl_running;

  // What is published besides the above.
  LogBook log;
  LatentMap latents;
  ClusterWatch cluster_watch;
  std::uint64_t version = 0;  // of the last snapshot
  Clock::time_point last_publish = Clock::now();

  std::optional<FollowedRun> following;  // set while following a run folder

  int train_count() const {
    return opt.train_limit > 0 ? std::min(opt.train_limit, train_set->count) : train_set->count;
  }
  int batches_per_epoch() const { return (train_count() + tcfg.batch - 1) / tcfg.batch; }
  // The step at which the clustering families fit their clusters (TrainerOptions::cluster_fit_step
  // with the family's default resolved); 0 = never.
  std::int64_t cluster_fit_at() const {
    if (opt.cluster_fit_step != TrainerOptions::kFamilyFitStep) return opt.cluster_fit_step;
    if (mcfg.family == ModelFamily::Vade)
      return static_cast<std::int64_t>(TrainerOptions::kVadePretrainEpochs) * batches_per_epoch();
    return TrainerOptions::kGmvaeFitStep;
  }
  bool all_epochs_done() const { return opt.max_epochs >= 0 && epoch >= opt.max_epochs; }
  float effective_beta() const {
    if (tcfg.warmup_steps <= 0) return tcfg.beta;
    return tcfg.beta * static_cast<float>(std::min<double>(1.0, static_cast<double>(step) / tcfg.warmup_steps));
  }

  // ---- trainer_loop.cpp ----
  void run();
  void run_one_step();
  void train_step();
  void draw_batch(Eigen::Ref<Eigen::MatrixXf> x, Eigen::Ref<Eigen::MatrixXf> e);
  void poison_if_due();
  StepStats compute_gradient(const Eigen::Ref<const Eigen::MatrixXf>& x, const Eigen::Ref<const Eigen::MatrixXf>& e);
  void record_step(const StepStats& st, int batch_size, double seconds);
  void fit_clusters();
  void diverged(const std::string& why);
  void end_epoch();
  EpochRecord epoch_record(int epoch_number);
  TestEvaluation test_evaluation(int epoch_number) const;
  void evaluate_test(int epoch_number, EpochRecord& rec);
  void measure_estimators();

  // ---- trainer_run_state.cpp ----
  static void check_estimator(const ModelConfig& m, const TrainConfig& t);
  void check_image_size(const ModelConfig& m) const;
  void check_configs(const ModelConfig& m, const TrainConfig& t) const;
  void check_memory_for(const std::filesystem::path& file, const ModelConfig& m, TrainConfig t) const;
  void prepare_data();
  void prepare_engine();
  void new_epoch_order();
  bool can_resume_epoch(const std::vector<std::int32_t>& saved_order, int saved_batch) const;
  void reset_run_state(std::vector<std::int32_t> saved_order = {}, int saved_batch = 0);
  void restart_counters();
  void fresh_start();
  TrainingState capture() const;
  void save_now(const std::filesystem::path& file);
  void load_now(const std::filesystem::path& file);
  void import_now(const std::filesystem::path& file);
  void take_model(std::unique_ptr<Model> m);

  // ---- trainer_commands.cpp ----
  void drain_commands();
  void handle(const command::Pause&);
  void handle(const command::Resume&);
  void handle(const command::Step&);
  void handle(const command::Reset&);
  void handle(const command::SetLr& c);
  void handle(const command::SetBeta& c);
  void handle(const command::SetWarmup& c);
  void handle(const command::SetEstimator& c);
  void handle(const command::SetIwae& c);
  void handle(const command::SetMeasureEstimators& c);
  void handle(const command::MeasureEstimatorsNow&);
  void handle(const command::Rebuild& c);
  void handle(command::SetData& c);
  void handle(const command::Save& c);
  void handle(const command::Load& c);
  void handle(const command::ExportSafetensors& c);
  void handle(const command::ImportSafetensors& c);
  void handle(const command::Follow& c);
  void handle(const command::ContinueHere&);
  template <class T>
  void change(T TrainConfig::*field, T value, const char* name);

  // ---- trainer_publish.cpp ----
  static std::string format_number(double v);
  void notify(TrainerEvent ev) const;
  void say(Severity sev, std::string text);
  void mark(std::string text);
  void refresh_latents();
  void watch_clusters();
  void publish();

  // ---- trainer_follow.cpp ----
  void follow_once();
  void take_metrics(const MetricsRecord& r);
  void show_followed_weights(const FollowedWeights& w);
  void evaluate_followed_weights();
  void rebuild_followed_epochs();
  void report_follow_problem(std::string text);
  void end_following(const std::string& because);
  FollowStatus follow_status() const;
};

}  // namespace vaelab
