// The trainer thread: commands in, snapshots and events out (see trainer.hpp).
// Everything in Impl below the "trainer-thread state" line is touched by the trainer thread only
// (or by the *_now helpers before start()); the UI sees it solely through published snapshots.
#include "core/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <limits>
#include <numeric>
#include <sstream>
#include <variant>

#include "core/adam.hpp"
#include "core/checkpoint.hpp"
#include "core/clustering.hpp"
#include "core/error.hpp"
#include "core/gap.hpp"
#include "core/objective.hpp"
#include "core/rng.hpp"
#include "core/safetensors.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string format_float(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

constexpr std::size_t kMaxLogLines = 200;
constexpr int kEncodeChunk = 1000;  // images per encoder call outside training steps

std::vector<int> first_indices(int n) {
  std::vector<int> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  return idx;
}

// Encodes images idx[0..n) in chunks of kEncodeChunk; take(lo, mu, logvar) receives the codes of
// the images idx[lo..lo + mu.cols()). With a pool the chunks run in parallel, so take must write
// only its own chunk's outputs.
template <class Take>
void encode_in_chunks(const Model& model, const ImageSet& images, const std::vector<int>& idx, ThreadPool* pool,
                      const Take& take) {
  const int n = static_cast<int>(idx.size()), chunks = (n + kEncodeChunk - 1) / kEncodeChunk;
  auto encode_chunk = [&](int c) {
    const int lo = c * kEncodeChunk, count = std::min(kEncodeChunk, n - lo);
    Eigen::MatrixXf x(model.config().input_dim(), count), mu, logvar;
    gather_batch(images, idx.data() + lo, count, Binarize::None, nullptr, x);
    model.encode(x, mu, logvar);
    take(lo, mu, logvar);
  };
  if (pool) {
    pool->run(chunks, encode_chunk);
  } else {
    for (int c = 0; c < chunks; ++c) encode_chunk(c);
  }
}

// The score-function path (core/gap.cpp) differentiates the plain MLP encoder with the
// standard-normal prior only.
void check_estimator(const ModelConfig& m, const TrainConfig& t) {
  if (t.estimator == Estimator::ScoreFunction && m.family != ModelFamily::Mlp)
    throw Error(std::string("the score-function estimator is available for mlp models only, not ") + to_string(m.family));
}

}  // namespace

// UI → trainer requests, applied between steps in the order posted. (Outside the anonymous
// namespace: Impl holds them.)
namespace command {
struct Pause {};
struct Resume {};
struct Step {};
struct Reset {};
struct SetLr { float lr; };
struct SetBeta { float beta; };
struct SetWarmup { int steps; };
struct SetEstimator { Estimator estimator; };
struct SetIwae { int k, points; };
struct SetMeasureEstimators { bool on; };
struct MeasureEstimatorsNow {};
struct Rebuild { ModelConfig model; TrainConfig train; };
struct SetData { std::shared_ptr<const Dataset> data; };
struct Save { std::filesystem::path file; };
struct Load { std::filesystem::path file; };
struct ExportSafetensors { std::filesystem::path file; };
struct ImportSafetensors { std::filesystem::path file; };
}  // namespace command

using Command = std::variant<command::Pause, command::Resume, command::Step, command::Reset, command::SetLr,
                             command::SetBeta, command::SetWarmup, command::SetEstimator, command::SetIwae,
                             command::SetMeasureEstimators, command::MeasureEstimatorsNow, command::Rebuild,
                             command::SetData, command::Save, command::Load, command::ExportSafetensors,
                             command::ImportSafetensors>;

// Commands posted by any thread, taken by the trainer thread; also carries the stop request.
class CommandQueue {
 public:
  void post(Command c) {
    {
      std::lock_guard lock(mu_);
      posted_.push_back(std::move(c));
    }
    cv_.notify_all();
  }
  void request_stop() {
    stop_.store(true);
    cv_.notify_all();
  }
  bool stop_requested() const { return stop_.load(std::memory_order_relaxed); }

  // Moves everything posted so far to the end of `into`.
  void take_all(std::deque<Command>& into) {
    std::lock_guard lock(mu_);
    for (Command& c : posted_) into.push_back(std::move(c));
    posted_.clear();
  }
  // Returns when a command is posted, a stop is requested, or `timeout` has passed.
  void wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !posted_.empty() || stop_requested(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> posted_;
  std::atomic<bool> stop_{false};
};

struct Trainer::Impl {
  TrainerOptions opt;
  TrainerListener listener;
  CommandQueue commands;

  mutable std::mutex snap_mu;
  std::shared_ptr<const Snapshot> published;

  // ---- trainer-thread state ----
  std::deque<Command> backlog;  // taken from `commands`, not yet applied
  std::shared_ptr<const Dataset> data;
  std::shared_ptr<const ImageSet> train_set, test_set;  // possibly binarized copies
  ModelConfig mcfg;
  TrainConfig tcfg;
  std::unique_ptr<Model> model;
  std::shared_ptr<const Model> last_published_model;  // finite parameters to fall back on
  Adam adam;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<GradientEngine> engine;
  ParamVector grad;
  Eigen::MatrixXf xbatch, eps;
  Rng rng;
  std::int64_t step = 0;
  int epoch = 0;
  int batch_in_epoch = 0;
  std::vector<std::int32_t> order;
  History history;
  std::vector<double> kl_running;
  double epoch_elbo_sum = 0;
  int epoch_batches = 0;
  double epoch_train_seconds = 0;
  std::int64_t epoch_samples = 0;
  TrainerState state = TrainerState::Paused;
  int pending_steps = 0;
  bool poisoned = false;  // TrainerOptions::poison_at_step fires once
  std::deque<LogLine> log;
  std::uint64_t log_serial = 0;
  std::uint64_t version = 0;

  std::vector<int> display_idx;
  Eigen::MatrixXf latent_mu;
  std::int64_t latent_step = -1;
  Clock::time_point last_latent = Clock::now();
  Clock::time_point last_publish = Clock::now();

  double rate_samples = 0, rate_seconds = 0, samples_per_s = 0;
  // Adaptive threading: at the end of every cycle the last 2·kAdaptProbe steps time the current
  // setting (all threads or the caller alone) against the other one, and the faster is kept. When
  // another process takes a core, waiting for a preempted worker can make 2 threads slower than
  // 1; the results do not depend on the thread count, only the speed does. The first comparison
  // ends at step 20. A comparison that keeps the setting doubles the cycle, up to kAdaptCycleMax
  // steps, and a switch brings it back to kAdaptCycle: on a steady machine probing costs 8/1,024
  // of the steps at the slower setting, and a change is still noticed within 1,024 steps.
  static constexpr int kAdaptCycle = 128, kAdaptCycleMax = 1024, kAdaptProbe = 8;
  int adapt_cycle = kAdaptCycle;
  int adapt_pos = kAdaptCycle - 2 * kAdaptProbe - 4;
  double adapt_cur = 0, adapt_alt = 0;

  // ------------------------------------------------------------------------------------------
  int train_count() const {
    return opt.train_limit > 0 ? std::min(opt.train_limit, train_set->count) : train_set->count;
  }
  int batches_per_epoch() const { return (train_count() + tcfg.batch - 1) / tcfg.batch; }
  float effective_beta() const {
    if (tcfg.warmup_steps <= 0) return tcfg.beta;
    return tcfg.beta * static_cast<float>(std::min<double>(1.0, static_cast<double>(step) / tcfg.warmup_steps));
  }

  // ---- events and log ----
  // Sends `ev` with the current progress filled in.
  void notify(TrainerEvent ev) const {
    if (!listener) return;
    ev.step = step;
    ev.epoch = epoch;
    ev.batch_in_epoch = batch_in_epoch;
    ev.batches_per_epoch = batches_per_epoch();
    ev.samples_per_s = samples_per_s;
    listener(ev);
  }

  void say(Severity sev, std::string text) {
    log.push_back(LogLine{++log_serial, sev, std::move(text)});
    while (log.size() > kMaxLogLines) log.pop_front();
    notify({.kind = EventKind::Log, .line = &log.back()});
  }

  // A change the curves show as a marker, logged too.
  void mark(std::string text) {
    history.markers.push_back({step, text});
    say(Severity::Info, std::move(text));
  }

  // ---- run state ----
  void check_image_size(const ModelConfig& m) const {
    if (m.image_h != data->train.height || m.image_w != data->train.width) {
      std::ostringstream os;
      os << "the model expects " << m.image_h << "×" << m.image_w << " images but the data set '" << data->name
         << "' has " << data->train.height << "×" << data->train.width;
      throw Error(os.str());
    }
  }

  // Everything a model and training configuration must satisfy to run on the current data.
  void check_configs(const ModelConfig& m, const TrainConfig& t) const {
    validate(m);
    validate(t);
    check_estimator(m, t);
    check_image_size(m);
  }

  // Data views for training and evaluation, binarized as configured.
  void prepare_data() {
    if (tcfg.binarize == Binarize::Static || tcfg.binarize == Binarize::Dynamic) {
      // Dynamic binarization resamples training pixels per batch; the test set is binarized
      // once so that evaluations are comparable across epochs.
      auto test = std::make_shared<ImageSet>(data->test);
      binarize_static(*test, tcfg.seed + 2);
      test_set = test;
      if (tcfg.binarize == Binarize::Static) {
        auto train = std::make_shared<ImageSet>(data->train);
        binarize_static(*train, tcfg.seed + 3);
        train_set = train;
      } else {
        train_set = std::shared_ptr<const ImageSet>(data, &data->train);
      }
    } else {
      train_set = std::shared_ptr<const ImageSet>(data, &data->train);
      test_set = std::shared_ptr<const ImageSet>(data, &data->test);
    }
    display_idx = first_indices(std::min(opt.display_points, test_set->count));
    latent_mu.resize(0, 0);
    latent_step = -1;
  }

  // Buffers that depend on the batch, L, threads and model shape.
  void prepare_engine() {
    if (!pool || pool->size() != tcfg.threads) pool = std::make_unique<ThreadPool>(tcfg.threads);
    engine = std::make_unique<GradientEngine>(mcfg, tcfg.batch, tcfg.samples, tcfg.threads);
    grad.assign(model->size(), 0.0f);
    xbatch.resize(mcfg.input_dim(), tcfg.batch);
    eps.resize(mcfg.latent, static_cast<Eigen::Index>(tcfg.batch) * tcfg.samples);
  }

  void clear_epoch_totals() {
    epoch_elbo_sum = 0;
    epoch_batches = 0;
    epoch_train_seconds = 0;
    epoch_samples = 0;
  }

  void new_epoch_order() {
    const int n = train_count();
    order.resize(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(static_cast<std::uint64_t>(i) + 1)]);
    batch_in_epoch = 0;
    clear_epoch_totals();
  }

  // A saved place in an epoch, if it fits the current data and batch size.
  bool can_resume_epoch(const std::vector<std::int32_t>& saved_order, int saved_batch) const {
    const int n = train_count();
    return static_cast<int>(saved_order.size()) == n &&
           std::all_of(saved_order.begin(), saved_order.end(), [n](std::int32_t i) { return i >= 0 && i < n; }) &&
           saved_batch >= 0 && saved_batch < batches_per_epoch();
  }

  // After a new model, data or batch: data views and step buffers rebuilt, the epoch resumed at
  // `saved_batch` of `saved_order` when that fits (else a new shuffled order), and the fallback
  // parameters of the previous model forgotten.
  void reset_run_state(std::vector<std::int32_t> saved_order = {}, int saved_batch = 0) {
    prepare_data();
    prepare_engine();
    if (can_resume_epoch(saved_order, saved_batch)) {
      order = std::move(saved_order);
      batch_in_epoch = saved_batch;
      clear_epoch_totals();
    } else {
      new_epoch_order();
    }
    last_published_model.reset();
  }

  // Step 0 of a new run for the current model: optimiser, counters and history cleared.
  void restart_counters() {
    adam.reset(model->size());
    step = 0;
    epoch = 0;
    history = {};
    kl_running.assign(mcfg.latent, 0.0);
  }

  // Fresh weights and optimiser from the seed; history cleared.
  void fresh_start() {
    check_configs(mcfg, tcfg);
    model = std::make_unique<Model>(mcfg);
    model->init(tcfg.seed);
    rng.reseed(tcfg.seed + 1);
    restart_counters();
    reset_run_state();
  }

  TrainingState capture() const {
    TrainingState s;
    s.model = mcfg;
    s.train = tcfg;
    s.params.assign(model->params().begin(), model->params().end());
    s.adam = adam;
    s.rng = rng.state();
    s.step = step;
    s.epoch = epoch;
    s.batch_in_epoch = batch_in_epoch;
    s.order = order;
    s.history = history;
    s.data_name = data ? data->name : "";
    return s;
  }

  void save_now(const std::filesystem::path& file) {
    if (!model->all_finite()) throw Error("not saving " + file.string() + ": the parameters contain NaN or Inf");
    save_checkpoint(file, capture());
  }

  // Staged: everything is checked before the running model is touched.
  void load_now(const std::filesystem::path& file) {
    TrainingState s = load_checkpoint(file);
    check_configs(s.model, s.train);
    auto m = std::make_unique<Model>(s.model);
    if (m->size() != s.params.size()) throw Error(file.string() + ": parameter count does not match its model config");
    m->params().assign(s.params.begin(), s.params.end());
    mcfg = s.model;
    tcfg = s.train;
    if (pool) tcfg.threads = pool->size();  // threads are a property of this machine, not of the run
    model = std::move(m);
    adam = std::move(s.adam);
    rng.set_state(s.rng);
    step = s.step;
    epoch = s.epoch;
    history = std::move(s.history);
    kl_running.assign(mcfg.latent, 0.0);
    if (!history.epochs.empty() && history.epochs.back().kl_per_dim.size() == static_cast<std::size_t>(mcfg.latent))
      kl_running.assign(history.epochs.back().kl_per_dim.begin(), history.epochs.back().kl_per_dim.end());
    reset_run_state(std::move(s.order), s.batch_in_epoch);
    refresh_latents();
  }

  void import_now(const std::filesystem::path& file) {
    Model m = import_model(read_safetensors(file));
    check_configs(m.config(), tcfg);
    if (!m.all_finite()) throw Error(file.string() + ": weights contain NaN or Inf");
    mcfg = m.config();
    model = std::make_unique<Model>(std::move(m));
    restart_counters();
    reset_run_state();
    refresh_latents();
  }

  // ---- one optimiser step ----
  void adapt_threads(double dt) {
    if (!pool || pool->size() <= 1) return;
    const int pos = adapt_pos++;
    if (pos >= adapt_cycle - 2 * kAdaptProbe && pos < adapt_cycle - kAdaptProbe) {
      adapt_cur += dt;
      if (pos == adapt_cycle - kAdaptProbe - 1) pool->set_solo(!pool->solo());  // probe the other setting
    } else if (pos >= adapt_cycle - kAdaptProbe) {
      adapt_alt += dt;
      if (pos == adapt_cycle - 1) {
        // Keep the probed setting only if it was clearly faster; else switch back.
        if (adapt_alt < 0.95 * adapt_cur) {
          adapt_cycle = kAdaptCycle;
        } else {
          pool->set_solo(!pool->solo());
          adapt_cycle = std::min(2 * adapt_cycle, kAdaptCycleMax);
        }
        adapt_pos = 0;
        adapt_cur = adapt_alt = 0;
      }
    }
  }

  // The next batch's images into x and its noise into e, both drawn from rng: the images first
  // (dynamic binarization draws from it), then ε.
  void draw_batch(Eigen::Ref<Eigen::MatrixXf> x, Eigen::Ref<Eigen::MatrixXf> e) {
    const bool dynamic = tcfg.binarize == Binarize::Dynamic;
    const std::int32_t* batch_order = order.data() + static_cast<std::ptrdiff_t>(batch_in_epoch) * tcfg.batch;
    auto gather = [&] {
      gather_batch(*train_set, batch_order, static_cast<int>(x.cols()), dynamic ? Binarize::Dynamic : Binarize::None,
                   &rng, x);
    };
    auto draw_eps = [&] {
      for (Eigen::Index c = 0; c < e.cols(); ++c)
        for (Eigen::Index j = 0; j < e.rows(); ++j) e(j, c) = rng.normal();
    };
    if (dynamic || !pool || pool->size() < 2) {
      gather();
      draw_eps();
      return;
    }
    // Waiting on memory (the gather) beside arithmetic (Box–Muller for ε) on the two threads;
    // only draw_eps touches rng, so the numbers are the same as one after the other.
    std::exception_ptr failure;
    pool->run(2, [&](int t) {
      try {
        t == 0 ? gather() : draw_eps();
      } catch (...) {
        failure = std::current_exception();  // only the gather throws (a bad index)
      }
    });
    if (failure) std::rethrow_exception(failure);
  }

  void poison_if_due() {
    if (opt.poison_at_step < 0 || step != opt.poison_at_step || poisoned) return;
    poisoned = true;
    model->params()[model->encoder()[0].w] = std::numeric_limits<float>::quiet_NaN();
  }

  StepStats compute_gradient(const Eigen::Ref<const Eigen::MatrixXf>& x, const Eigen::Ref<const Eigen::MatrixXf>& e) {
    const float beta = effective_beta();
    if (tcfg.estimator == Estimator::ScoreFunction)
      return score_function_encoder_gradient(*model, *engine, x, e, beta, grad.data(), pool.get());
    return engine->compute_unsummed(*model, x, e, beta, grad.data(), pool.get());
  }

  void train_step() {
    const auto t0 = Clock::now();
    const int B = std::min(tcfg.batch, train_count() - batch_in_epoch * tcfg.batch);
    auto x = xbatch.leftCols(B);
    auto e = eps.leftCols(static_cast<Eigen::Index>(B) * tcfg.samples);
    draw_batch(x, e);
    poison_if_due();
    const auto t1 = Clock::now();
    StepStats st = compute_gradient(x, e);
    const auto t2 = Clock::now();
    if (!st.finite) return diverged("the loss became NaN or Inf");
    // Adam sums the shards' gradients and checks them in the same pass as the update (no extra
    // passes over 2.6 MB each); the parameters it spoils on a NaN are replaced by diverged().
    if (!adam.step(model->data(), grad.data(), model->size(), tcfg.lr, pool.get(), engine->unsummed_gradients()))
      return diverged("the gradient became NaN or Inf");
    st.times[StepPhase::Batch] = seconds_between(t0, t1);
    st.times[StepPhase::Gradient] = seconds_between(t1, t2);
    st.times[StepPhase::Optimizer] = seconds_since(t2);
    ++step;
    if (model->clusters() > 0 && opt.cluster_fit_step > 0 && step == opt.cluster_fit_step) fit_clusters();
    ++batch_in_epoch;
    record_step(st, B, seconds_since(t0));
    notify({.kind = EventKind::Step, .stats = &st});
    if (batch_in_epoch >= batches_per_epoch()) end_epoch();
  }

  // The step's timing, its point on the curves and the running per-dimension KL.
  void record_step(const StepStats& st, int batch_size, double seconds) {
    adapt_threads(seconds / batch_size);
    epoch_train_seconds += seconds;
    epoch_samples += batch_size;
    rate_samples += batch_size;
    rate_seconds += seconds;
    if (rate_seconds >= 0.5) {
      samples_per_s = rate_samples / rate_seconds;
      rate_samples = rate_seconds = 0;
    }
    epoch_elbo_sum += st.elbo;
    ++epoch_batches;
    const float epoch_pos = static_cast<float>(epoch) + static_cast<float>(batch_in_epoch) / batches_per_epoch();
    history.steps.push_back({step, epoch_pos, static_cast<float>(st.elbo), static_cast<float>(st.recon),
                             static_cast<float>(st.kl)});
    // A running mean over roughly the last 50 batches keeps the per-dimension KL bars steady.
    const double a = step == 1 ? 1.0 : 0.02;
    for (int j = 0; j < mcfg.latent; ++j) kl_running[j] += a * (st.kl_per_dim[j] - kl_running[j]);
  }

  // Clustering VAE, once at TrainerOptions::cluster_fit_step: the cluster Gaussians moved onto
  // k-means of the current codes, their Adam moments cleared (they belonged to the old values).
  // Between two steps, so the step itself still allocates nothing.
  void fit_clusters() {
    const int n = std::min(train_count(), std::max(opt.cluster_fit_points, model->clusters()));
    if (n < model->clusters()) return;
    Eigen::MatrixXf mu(mcfg.latent, n), lv(mcfg.latent, n);
    encode_in_chunks(*model, *train_set, first_indices(n), nullptr,
                     [&](int lo, const Eigen::MatrixXf& m, const Eigen::MatrixXf& v) {
                       mu.middleCols(lo, m.cols()) = m;
                       lv.middleCols(lo, v.cols()) = v;
                     });
    fit_clusters_to_codes(*model, mu, lv, tcfg.seed);
    // The classifier's old outputs name the old clusters, and where it says p(y|z) ≈ 0 its
    // softmax passes no gradient to raise it: zeroing its last layer restarts it at uniform.
    const DenseShape& out = model->classifier().back();
    model->W(out).setZero();
    model->b(out).setZero();
    const std::size_t dk = static_cast<std::size_t>(mcfg.latent) * model->clusters();
    auto clear_moments = [&](std::size_t o, std::size_t len) {
      std::fill_n(adam.m.begin() + static_cast<std::ptrdiff_t>(o), len, 0.0f);
      std::fill_n(adam.v.begin() + static_cast<std::ptrdiff_t>(o), len, 0.0f);
    };
    clear_moments(model->cluster_mean_offset(), dk);
    clear_moments(model->cluster_logvar_offset(), dk);
    clear_moments(out.w, static_cast<std::size_t>(out.in) * out.out);
    clear_moments(out.b, static_cast<std::size_t>(out.out));
    say(Severity::Info, "clustering VAE: cluster Gaussians fitted to k-means of " + std::to_string(n) +
                            " training codes at step " + std::to_string(step));
  }

  void diverged(const std::string& why) {
    // Fall back to the last published (finite) parameters, forget Adam's moments, and pause.
    if (last_published_model && last_published_model->all_finite())
      model->params() = last_published_model->params();
    else
      model->init(tcfg.seed);
    adam.reset(model->size());
    state = TrainerState::Paused;
    pending_steps = 0;
    say(Severity::Error, "training diverged at step " + std::to_string(step) + ": " + why +
                             ". Paused and restored the last finite parameters; lower the learning rate "
                             "(now " + format_float(tcfg.lr) + ") and resume.");
  }

  // ---- epoch ends ----
  EpochRecord evaluate_now(int epoch_number) {
    EpochRecord rec;
    rec.epoch = epoch_number;
    rec.step = step;
    if (epoch_batches > 0) rec.train_elbo = static_cast<float>(epoch_elbo_sum / epoch_batches);
    if (epoch_train_seconds > 0) rec.samples_per_s = static_cast<float>(epoch_samples / epoch_train_seconds);
    if (opt.evaluate_each_epoch && test_set->count > 0) {
      std::vector<int> idx;
      if (opt.eval_limit > 0 && opt.eval_limit < test_set->count) idx = first_indices(opt.eval_limit);
      EvalOptions eo;
      eo.samples = 1;
      eo.seed = tcfg.seed + 1000 + static_cast<std::uint64_t>(epoch_number);
      const int n_eval = idx.empty() ? test_set->count : static_cast<int>(idx.size());
      const bool iwae_subset = opt.iwae_points > 0 && opt.iwae_points < n_eval;
      if (!iwae_subset) eo.iwae_k = opt.eval_iwae_k;
      const Evaluation ev = evaluate(*model, *test_set, idx, eo, pool.get());
      rec.test_elbo = static_cast<float>(ev.elbo);
      rec.test_recon = static_cast<float>(ev.recon);
      rec.test_kl = static_cast<float>(ev.kl);
      if (opt.eval_iwae_k > 0) {
        rec.iwae_k = opt.eval_iwae_k;
        if (iwae_subset) {
          // The bound on a subset, with the ELBO on the same images for the gap.
          std::vector<int> sub(opt.iwae_points);
          for (int i = 0; i < opt.iwae_points; ++i) sub[i] = idx.empty() ? i : idx[i];
          EvalOptions io = eo;
          io.iwae_k = opt.eval_iwae_k;
          const Evaluation iv = evaluate(*model, *test_set, sub, io, pool.get());
          rec.test_iwae = static_cast<float>(iv.iwae);
          rec.test_iwae_elbo = static_cast<float>(iv.elbo);
        } else {
          rec.test_iwae = static_cast<float>(ev.iwae);
          rec.test_iwae_elbo = rec.test_elbo;
        }
      }
      rec.kl_per_dim.assign(ev.kl_per_dim.begin(), ev.kl_per_dim.end());
      if (model->clusters() > 0 && test_set->has_labels()) score_clusters(idx, rec);
    }
    return rec;
  }

  // Cluster of each evaluated test image = argmax_y p(y | z = μ(x)), scored against the labels.
  void score_clusters(const std::vector<int>& idx_in, EpochRecord& rec) const {
    const std::vector<int> idx = idx_in.empty() ? first_indices(test_set->count) : idx_in;
    const int n = static_cast<int>(idx.size());
    std::vector<int> pred(n), labels(n);
    int n_classes = 0;
    for (int i = 0; i < n; ++i) {
      labels[i] = test_set->labels[idx[i]];
      n_classes = std::max(n_classes, labels[i] + 1);
    }
    encode_in_chunks(*model, *test_set, idx, nullptr, [&](int lo, const Eigen::MatrixXf& mu, const Eigen::MatrixXf&) {
      Eigen::MatrixXf probs;
      model->classify(mu, probs);
      for (Eigen::Index b = 0; b < probs.cols(); ++b) probs.col(b).maxCoeff(&pred[lo + b]);
    });
    rec.cluster_acc = static_cast<float>(cluster_accuracy(pred, labels, model->clusters(), n_classes));
    rec.nmi = static_cast<float>(normalized_mutual_information(pred, labels));
  }

  // Variance of the reparameterised and score-function encoder gradients on one fixed-size batch.
  void measure_estimators() {
    if (mcfg.family != ModelFamily::Mlp) return;  // the score-function path covers the plain MLP VAE only
    const int B = std::min(opt.estimator_batch, train_count());
    if (B < 1) return;
    std::vector<int> idx(B);
    for (int i = 0; i < B; ++i) idx[i] = order[(static_cast<std::size_t>(batch_in_epoch) * tcfg.batch + i) % order.size()];
    Eigen::MatrixXf x(mcfg.input_dim(), B);
    gather_batch(*train_set, idx.data(), B, Binarize::None, nullptr, x);
    Rng r(tcfg.seed + 7 + static_cast<std::uint64_t>(step));
    const EstimatorComparison cmp = compare_gradient_estimators(*model, x, std::max(2, tcfg.samples), r, opt.estimator_draws);
    history.estimators.push_back({step, static_cast<float>(cmp.reparam.total_variance),
                                  static_cast<float>(cmp.score.total_variance), static_cast<float>(cmp.reparam.mean_snr),
                                  static_cast<float>(cmp.score.mean_snr)});
  }

  void end_epoch() {
    ++epoch;
    history.epochs.push_back(evaluate_now(epoch));
    if (opt.measure_estimators) measure_estimators();
    refresh_latents();
    notify({.kind = EventKind::EpochEnd, .record = &history.epochs.back()});
    new_epoch_order();
    if (opt.max_epochs >= 0 && epoch >= opt.max_epochs) state = TrainerState::Finished;
  }

  // ---- snapshots ----
  void refresh_latents() {
    last_latent = Clock::now();
    if (display_idx.empty()) return;
    latent_mu.resize(mcfg.latent, static_cast<Eigen::Index>(display_idx.size()));
    encode_in_chunks(*model, *test_set, display_idx, pool.get(),
                     [&](int lo, const Eigen::MatrixXf& mu, const Eigen::MatrixXf&) { latent_mu.middleCols(lo, mu.cols()) = mu; });
    latent_step = step;
  }

  void publish() {
    auto s = std::make_shared<Snapshot>();
    s->version = ++version;
    s->state = state;
    s->step = step;
    s->epoch = epoch;
    s->batch_in_epoch = batch_in_epoch;
    s->batches_per_epoch = batches_per_epoch();
    s->samples_per_s = samples_per_s;
    s->effective_beta = effective_beta();
    s->model_config = mcfg;
    s->train_config = tcfg;
    s->history = history;
    s->kl_per_dim = kl_running;
    if (!last_published_model || last_published_model->params() != model->params()) {
      if (model->all_finite()) last_published_model = std::make_shared<const Model>(*model);
    }
    s->model = last_published_model;
    s->data = data;
    s->display_indices = display_idx;
    s->latent_mu = latent_mu;
    s->latent_step = latent_step;
    s->log.assign(log.begin(), log.end());
    {
      std::lock_guard lock(snap_mu);
      published = std::move(s);
    }
    last_publish = Clock::now();
  }

  // ---- commands ----
  void handle(const command::Pause&) {
    if (state == TrainerState::Running) state = TrainerState::Paused;
    pending_steps = 0;
  }
  void handle(const command::Resume&) { state = TrainerState::Running; }
  void handle(const command::Step&) {
    state = TrainerState::Paused;
    ++pending_steps;
  }
  void handle(const command::Reset&) {
    fresh_start();
    say(Severity::Info, "reset: fresh weights from seed " + std::to_string(tcfg.seed));
  }
  void handle(const command::SetLr& c) { change(&TrainConfig::lr, c.lr, "lr"); }
  void handle(const command::SetBeta& c) { change(&TrainConfig::beta, c.beta, "β"); }
  void handle(const command::SetWarmup& c) { change(&TrainConfig::warmup_steps, c.steps, "warm-up"); }
  void handle(const command::SetEstimator& c) {
    TrainConfig t = tcfg;
    t.estimator = c.estimator;
    check_estimator(mcfg, t);
    if (c.estimator != tcfg.estimator)
      mark(std::string("estimator ") + to_string(tcfg.estimator) + " → " + to_string(c.estimator));
    tcfg.estimator = c.estimator;
  }
  void handle(const command::SetIwae& c) {
    if (c.k < 0 || c.k > 100000 || c.points < 0) throw Error("IWAE samples must be 0 to 100000");
    opt.eval_iwae_k = c.k;
    opt.iwae_points = c.points;
  }
  void handle(const command::SetMeasureEstimators& c) { opt.measure_estimators = c.on; }
  void handle(const command::MeasureEstimatorsNow&) { measure_estimators(); }
  void handle(const command::Rebuild& c) {
    check_configs(c.model, c.train);
    mcfg = c.model;
    tcfg = c.train;
    fresh_start();
    say(Severity::Info, "rebuilt the model: latent " + std::to_string(mcfg.latent) + ", " +
                            to_string(mcfg.likelihood) + ", batch " + std::to_string(tcfg.batch));
  }
  void handle(command::SetData& c) {
    const auto old_data = data;
    const ModelConfig old_model = mcfg;
    data = std::move(c.data);
    const bool same_size = mcfg.image_h == data->train.height && mcfg.image_w == data->train.width;
    mcfg.image_h = data->train.height;
    mcfg.image_w = data->train.width;
    try {
      if (same_size) {
        prepare_data();
        new_epoch_order();
      } else {
        fresh_start();
      }
    } catch (...) {
      data = old_data;
      mcfg = old_model;
      throw;
    }
    say(Severity::Info, "data set '" + data->name + "': " + std::to_string(data->train.count) + " training and " +
                            std::to_string(data->test.count) + " test images" +
                            (same_size ? "" : " (new image size: fresh model)"));
  }
  void handle(const command::Save& c) {
    save_now(c.file);
    say(Severity::Info, "saved checkpoint " + c.file.string());
  }
  void handle(const command::Load& c) {
    load_now(c.file);
    say(Severity::Info, "loaded checkpoint " + c.file.string() + " (step " + std::to_string(step) + ")");
  }
  void handle(const command::ExportSafetensors& c) {
    write_safetensors(c.file, export_model(*model));
    say(Severity::Info, "exported weights to " + c.file.string());
  }
  void handle(const command::ImportSafetensors& c) {
    import_now(c.file);
    say(Severity::Info, "imported weights from " + c.file.string());
  }

  // A live change of one training setting: validated on a copy, then marked on the curves.
  template <class T>
  void change(T TrainConfig::*field, T value, const char* name) {
    TrainConfig t = tcfg;
    t.*field = value;
    validate(t);
    mark(std::string(name) + " " + format_float(tcfg.*field) + " → " + format_float(value));
    tcfg = t;
  }

  // Commands apply in the order given: after a Step, later commands wait until it has run.
  void drain_commands() {
    commands.take_all(backlog);
    while (!backlog.empty() && pending_steps == 0) {
      Command c = std::move(backlog.front());
      backlog.pop_front();
      try {
        std::visit([this](auto& cmd) { handle(cmd); }, c);
      } catch (const std::exception& e) {
        say(Severity::Error, e.what());
      }
    }
  }

  // ---- the thread ----
  void run() {
    if (opt.evaluate_before_training) {
      history.epochs.push_back(evaluate_now(0));
      notify({.kind = EventKind::EpochEnd, .record = &history.epochs.back()});
    }
    if (opt.max_epochs >= 0 && epoch >= opt.max_epochs) state = TrainerState::Finished;
    if (opt.display_points > 0) refresh_latents();
    publish();
    while (!commands.stop_requested() && state != TrainerState::Finished) {
      drain_commands();
      if (state == TrainerState::Running || pending_steps > 0) {
        run_one_step();
      } else {
        publish();
        commands.wait(std::chrono::milliseconds(100));
      }
    }
    if (state != TrainerState::Finished) state = TrainerState::Paused;
    if (state == TrainerState::Finished && opt.display_points > 0 && latent_step != step) refresh_latents();
    publish();
    notify({.kind = EventKind::Finished});
  }

  // One step (a failure pauses), with the latent map and the snapshot refreshed when due.
  void run_one_step() {
    if (pending_steps > 0) --pending_steps;
    try {
      train_step();
    } catch (const std::exception& e) {
      state = TrainerState::Paused;
      say(Severity::Error, std::string("training stopped: ") + e.what());
    }
    if (opt.latent_refresh_ms > 0 && state == TrainerState::Running &&
        seconds_since(last_latent) * 1000 >= opt.latent_refresh_ms)
      refresh_latents();
    if (seconds_since(last_publish) * 1000 >= opt.publish_interval_ms || state != TrainerState::Running) publish();
  }
};

Trainer::Trainer(std::shared_ptr<const Dataset> data, ModelConfig model, TrainConfig train, TrainerOptions opt)
    : impl_(std::make_unique<Impl>()) {
  if (!data) throw Error("no data set given");
  impl_->opt = opt;
  impl_->data = std::move(data);
  impl_->mcfg = std::move(model);
  impl_->tcfg = train;
  impl_->state = opt.start_paused ? TrainerState::Paused : TrainerState::Running;
  impl_->fresh_start();
  impl_->publish();
}

Trainer::~Trainer() {
  request_stop();
  join();
}

void Trainer::set_listener(TrainerListener fn) { impl_->listener = std::move(fn); }

void Trainer::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    impl_->run();
    finished_.store(true);
  });
}

void Trainer::request_stop() { impl_->commands.request_stop(); }

void Trainer::join() {
  if (thread_.joinable()) thread_.join();
}

void Trainer::pause() { impl_->commands.post(command::Pause{}); }
void Trainer::resume() { impl_->commands.post(command::Resume{}); }
void Trainer::step_once() { impl_->commands.post(command::Step{}); }
void Trainer::reset() { impl_->commands.post(command::Reset{}); }
void Trainer::set_lr(float lr) { impl_->commands.post(command::SetLr{lr}); }
void Trainer::set_beta(float beta) { impl_->commands.post(command::SetBeta{beta}); }
void Trainer::set_warmup(int steps) { impl_->commands.post(command::SetWarmup{steps}); }
void Trainer::set_estimator(Estimator e) { impl_->commands.post(command::SetEstimator{e}); }
void Trainer::set_iwae(int k, int points) { impl_->commands.post(command::SetIwae{k, points}); }
void Trainer::set_measure_estimators(bool on) { impl_->commands.post(command::SetMeasureEstimators{on}); }
void Trainer::measure_estimators_now() { impl_->commands.post(command::MeasureEstimatorsNow{}); }
void Trainer::rebuild(ModelConfig model, TrainConfig train) { impl_->commands.post(command::Rebuild{std::move(model), train}); }
void Trainer::set_data(std::shared_ptr<const Dataset> data) { impl_->commands.post(command::SetData{std::move(data)}); }
void Trainer::save(std::filesystem::path file) { impl_->commands.post(command::Save{std::move(file)}); }
void Trainer::load(std::filesystem::path file) { impl_->commands.post(command::Load{std::move(file)}); }
void Trainer::export_safetensors(std::filesystem::path file) {
  impl_->commands.post(command::ExportSafetensors{std::move(file)});
}
void Trainer::import_safetensors(std::filesystem::path file) {
  impl_->commands.post(command::ImportSafetensors{std::move(file)});
}

std::shared_ptr<const Snapshot> Trainer::snapshot() const {
  std::lock_guard lock(impl_->snap_mu);
  return impl_->published;
}

void Trainer::load_now(const std::filesystem::path& file) {
  impl_->load_now(file);
  impl_->publish();
}

void Trainer::import_safetensors_now(const std::filesystem::path& file) {
  impl_->import_now(file);
  impl_->publish();
}

void Trainer::save_now(const std::filesystem::path& file) { impl_->save_now(file); }

void Trainer::export_safetensors_now(const std::filesystem::path& file) {
  write_safetensors(file, export_model(*impl_->model));
}

}  // namespace vaelab
