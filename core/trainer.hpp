// The trainer: owns model, optimiser, data order and RNG, and runs them on its own thread.
// Loop: take commands → batch → forward/backward → Adam → record → publish a snapshot (every
// ~50 ms) → notify the listener. Commands come in through a queue swapped out under a mutex
// between steps; stop is an atomic flag. The app, the headless CLI and the tests all use this.
// Not a UI: it knows nothing of who listens.
#pragma once
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/config.hpp"
#include "core/data.hpp"
#include "core/history.hpp"
#include "core/snapshot.hpp"
#include "core/train_step.hpp"

namespace vaelab {

struct TrainerOptions {
  bool start_paused = false;
  int max_epochs = -1;           // stop (state Finished) after this many epochs; −1 = never, 0 = at once
  bool evaluate_each_epoch = true;
  bool evaluate_before_training = false;  // an epoch-0 record (used by --epochs 0)
  int eval_iwae_k = 0;           // IWAE_K on the test set at each epoch end; 0 = skip
  int iwae_points = 0;           // IWAE on the first N evaluated images only; 0 = all of them
  bool measure_estimators = false;  // each epoch: gradient variance of both encoder estimators
  int estimator_batch = 32;      // …on this many training images
  int estimator_draws = 30;      // …over this many independent draws of ε
  int eval_limit = 0;            // evaluate on the first N test images; 0 = all
  int display_points = 10000;    // test points whose latent means are published; 0 = none
  int latent_refresh_ms = 1000;  // how often to re-encode them while running; 0 = epoch ends only
  int publish_interval_ms = 50;  // snapshot cadence while running
  int train_limit = 0;           // train on the first N images only; 0 = all (tests, demos)
  // Clustering families: after this many steps, fit the cluster Gaussians to the codes of up to
  // cluster_fit_points training images (see fit_clusters_to_codes); 0 = never; kFamilyFitStep =
  // the family's own: gmvae refits its randomly started clusters at step 500 (they leave clusters
  // that never win a point, docs/models.md, "The cluster refit"); vade trains as a plain VAE for
  // kVadePretrainEpochs epochs, then splits its one Gaussian into K.
  static constexpr int kFamilyFitStep = -1;
  static constexpr int kGmvaeFitStep = 500;
  static constexpr int kVadePretrainEpochs = 5;
  int cluster_fit_step = kFamilyFitStep;
  int cluster_fit_points = 10000;
  std::int64_t poison_at_step = -1;  // tests: write a NaN into a weight before this step
  // During an IWAE evaluation, after each batch: images done and the total (from a trainer or pool
  // thread, never two calls at once; keep it short).
  std::function<void(int done, int total)> on_iwae_progress;
};

// How far a running IWAE evaluation is; total 0 when none runs.
struct IwaeProgress {
  int done = 0, total = 0;
};

enum class EventKind : std::uint8_t { Step, EpochEnd, Log, Finished };

struct TrainerEvent {
  EventKind kind = EventKind::Step;
  std::int64_t step = 0;
  int epoch = 0;                 // completed epochs
  int batch_in_epoch = 0;
  int batches_per_epoch = 0;
  double samples_per_s = 0;
  const StepStats* stats = nullptr;     // Step
  const EpochRecord* record = nullptr;  // EpochEnd
  const Model* model = nullptr;         // EpochEnd: the model as the epoch left it (valid during the call)
  const LogLine* line = nullptr;        // Log
};
// Called on the trainer thread; keep it short.
using TrainerListener = std::function<void(const TrainerEvent&)>;

class Trainer {
 public:
  // Validates the configs (throws vaelab::Error) and builds a fresh model; does not start a thread.
  Trainer(std::shared_ptr<const Dataset> data, ModelConfig model, TrainConfig train, TrainerOptions opt = {});
  ~Trainer();  // stops and joins
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  void set_listener(TrainerListener fn);  // call before start()
  void start();
  void request_stop();                    // returns at once
  void join();                            // waits for the thread (after Finished or stop)
  bool finished() const { return finished_.load(); }

  // ---- commands (queued, applied in order between steps) ----
  void pause();
  void resume();
  void step_once();                       // one step, then stay paused
  void reset();                           // fresh weights from the seed, history cleared
  void set_lr(float lr);
  void set_beta(float beta);
  void set_warmup(int steps);
  void set_estimator(Estimator e);                     // the encoder's gradient estimator, live
  void set_iwae(int k, int points);                    // IWAE_K at epoch ends (k = 0: off), live
  void set_measure_estimators(bool on);
  void measure_estimators_now();                       // one estimator comparison at once
  void rebuild(ModelConfig model, TrainConfig train);  // validated on the trainer thread
  void set_data(std::shared_ptr<const Dataset> data);  // keeps the model if image sizes match
  void save(std::filesystem::path file);
  void load(std::filesystem::path file);               // staged: a bad file leaves the model alone
  void export_safetensors(std::filesystem::path file);
  void import_safetensors(std::filesystem::path file);
  // Follow a run folder another program trains into (core/run_follow.hpp): no local steps; each
  // new weights file is swapped in as an import would, evaluated like an epoch end and published,
  // and the curves come from its metrics.jsonl. Snapshot::follow says how it goes. Following stops
  // at continue_here, and at a rebuild, load, import or reset (which then replace the model).
  void follow(std::filesystem::path run_folder);
  // Stop following and train locally from the followed weights and step, with a fresh optimiser,
  // running or paused as the local trainer was before following.
  void continue_here();

  std::shared_ptr<const Snapshot> snapshot() const;

  // The IWAE evaluation of an epoch end (or of followed weights) as it goes, from any thread; and
  // stopping it: the epoch's record then has the ELBO without the IWAE, and the log says so.
  // request_stop stops a running one too.
  IwaeProgress iwae_progress() const;
  void cancel_iwae();

  // Synchronous helpers for the CLI, only while the thread is not running (before start() or
  // after join()): throw vaelab::Error.
  void load_now(const std::filesystem::path& file);
  void import_safetensors_now(const std::filesystem::path& file);
  void save_now(const std::filesystem::path& file);
  void export_safetensors_now(const std::filesystem::path& file);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
};

}  // namespace vaelab
