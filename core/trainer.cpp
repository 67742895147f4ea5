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
#include <sstream>

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

}  // namespace

// A UI → trainer request, applied between steps. (Outside the anonymous namespace: Impl holds them.)
struct Command {
  enum class Kind {
    Pause, Resume, Step, Reset, SetLr, SetBeta, SetWarmup, SetEstimator, SetIwae, MeasureEstimators,
    MeasureEstimatorsNow, Rebuild, SetData, Save, Load, Export, Import
  };
  explicit Command(Kind k, double v = 0, double v2 = 0) : kind(k), value(v), value2(v2) {}
  Kind kind;
  double value = 0;
  double value2 = 0;
  ModelConfig model;
  TrainConfig train;
  std::shared_ptr<const Dataset> data;
  std::filesystem::path path;
};

struct Trainer::Impl {
  TrainerOptions opt;
  TrainerListener listener;

  std::mutex cmd_mu;
  std::condition_variable cmd_cv;
  std::vector<Command> commands;
  std::atomic<bool> stop{false};
  std::deque<Command> backlog;  // trainer thread: taken from `commands`, not yet applied

  mutable std::mutex snap_mu;
  std::shared_ptr<const Snapshot> published;

  // ---- trainer-thread state ----
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
  // of the steps at the slower setting (8/128 cost 6 % of the 2-thread rate with the batch in two
  // shards, a probe step taking twice as long), and a change is still noticed within 1,024 steps.
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

  void say(Severity sev, std::string text) {
    LogLine line{++log_serial, sev, std::move(text)};
    log.push_back(line);
    while (log.size() > kMaxLogLines) log.pop_front();
    if (listener) {
      TrainerEvent ev;
      ev.kind = EventKind::Log;
      ev.step = step;
      ev.epoch = epoch;
      ev.line = &log.back();
      listener(ev);
    }
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
    const int shown = std::min(opt.display_points, test_set->count);
    display_idx.resize(shown);
    for (int i = 0; i < shown; ++i) display_idx[i] = i;
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

  void check_image_size(const ModelConfig& m) const {
    if (m.image_h != data->train.height || m.image_w != data->train.width) {
      std::ostringstream os;
      os << "the model expects " << m.image_h << "×" << m.image_w << " images but the data set '" << data->name
         << "' has " << data->train.height << "×" << data->train.width;
      throw Error(os.str());
    }
  }

  void new_epoch_order() {
    const int n = train_count();
    order.resize(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(static_cast<std::uint64_t>(i) + 1)]);
    batch_in_epoch = 0;
    epoch_elbo_sum = 0;
    epoch_batches = 0;
    epoch_train_seconds = 0;
    epoch_samples = 0;
  }

  // Fresh weights and optimiser from the seed; history cleared.
  // The score-function path (core/gap.cpp) differentiates the plain MLP encoder with the
  // standard-normal prior only.
  static void check_estimator(const ModelConfig& m, const TrainConfig& t) {
    if (t.estimator == Estimator::ScoreFunction && m.family != ModelFamily::Mlp)
      throw Error(std::string("the score-function estimator is available for mlp models only, not ") + to_string(m.family));
  }

  void fresh_start() {
    validate(mcfg);
    validate(tcfg);
    check_estimator(mcfg, tcfg);
    check_image_size(mcfg);
    model = std::make_unique<Model>(mcfg);
    model->init(tcfg.seed);
    adam.reset(model->size());
    rng.reseed(tcfg.seed + 1);
    step = 0;
    epoch = 0;
    history = {};
    kl_running.assign(mcfg.latent, 0.0);
    prepare_data();
    prepare_engine();
    new_epoch_order();
    last_published_model.reset();
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

  void train_step() {
    const auto t0 = Clock::now();
    const int n = train_count();
    const int lo = batch_in_epoch * tcfg.batch;
    const int B = std::min(tcfg.batch, n - lo);
    const int L = tcfg.samples, d = mcfg.latent;
    auto x = xbatch.leftCols(B);
    auto e = eps.leftCols(static_cast<Eigen::Index>(B) * L);
    const bool dynamic = tcfg.binarize == Binarize::Dynamic;
    auto gather = [&] { gather_batch(*train_set, order.data() + lo, B, dynamic ? Binarize::Dynamic : Binarize::None, &rng, x); };
    auto draw_eps = [&] {
      for (Eigen::Index c = 0; c < e.cols(); ++c)
        for (int j = 0; j < d; ++j) e(j, c) = rng.normal();
    };
    if (dynamic || !pool || pool->size() < 2) {
      gather();  // dynamic binarisation draws from rng too: the stream's order is gather, then ε
      draw_eps();
    } else {
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
    if (opt.poison_at_step >= 0 && step == opt.poison_at_step && !poisoned) {
      poisoned = true;
      model->params()[model->encoder()[0].w] = std::numeric_limits<float>::quiet_NaN();
    }
    const float beta = effective_beta();
    const auto t1 = Clock::now();
    StepStats st = tcfg.estimator == Estimator::ScoreFunction
                       ? score_function_encoder_gradient(*model, *engine, x, e, beta, grad.data(), pool.get())
                       : engine->compute_unsummed(*model, x, e, beta, grad.data(), pool.get());
    const auto t2 = Clock::now();
    if (!st.finite) {
      diverged("the loss became NaN or Inf");
      return;
    }
    // Adam sums the shards' gradients and checks them in the same pass as the update (no extra
    // passes over 2.6 MB each); the parameters it spoils on a NaN are replaced by diverged().
    if (!adam.step(model->data(), grad.data(), model->size(), tcfg.lr, pool.get(), engine->unsummed_gradients())) {
      diverged("the gradient became NaN or Inf");
      return;
    }
    st.times[StepPhase::Batch] = seconds_between(t0, t1);
    st.times[StepPhase::Gradient] = seconds_between(t1, t2);
    st.times[StepPhase::Optimizer] = seconds_since(t2);
    ++step;
    if (model->clusters() > 0 && opt.cluster_fit_step > 0 && step == opt.cluster_fit_step) fit_clusters();
    ++batch_in_epoch;
    const double dt = seconds_since(t0);
    adapt_threads(dt / B);
    epoch_train_seconds += dt;
    epoch_samples += B;
    rate_samples += B;
    rate_seconds += dt;
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
    for (int j = 0; j < d; ++j) kl_running[j] += a * (st.kl_per_dim[j] - kl_running[j]);
    if (listener) {
      TrainerEvent ev;
      ev.kind = EventKind::Step;
      fill_progress(ev);
      ev.stats = &st;
      listener(ev);
    }
    if (batch_in_epoch >= batches_per_epoch()) end_epoch();
  }

  // Clustering VAE, once at TrainerOptions::cluster_fit_step: the cluster Gaussians moved onto
  // k-means of the current codes, their Adam moments cleared (they belonged to the old values).
  // Between two steps, so the step itself still allocates nothing.
  void fit_clusters() {
    const int n = std::min(train_count(), std::max(opt.cluster_fit_points, model->clusters()));
    if (n < model->clusters()) return;
    std::vector<int> idx(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = i;
    Eigen::MatrixXf mu(mcfg.latent, n), lv(mcfg.latent, n);
    const int chunk = 1000;
    for (int lo = 0; lo < n; lo += chunk) {
      const int B = std::min(chunk, n - lo);
      Eigen::MatrixXf x(mcfg.input_dim(), B), m, v;
      gather_batch(*train_set, idx.data() + lo, B, Binarize::None, nullptr, x);
      model->encode(x, m, v);
      mu.middleCols(lo, B) = m;
      lv.middleCols(lo, B) = v;
    }
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

  void fill_progress(TrainerEvent& ev) const {
    ev.step = step;
    ev.epoch = epoch;
    ev.batch_in_epoch = batch_in_epoch;
    ev.batches_per_epoch = batches_per_epoch();
    ev.samples_per_s = samples_per_s;
  }

  EpochRecord evaluate_now(int epoch_number) {
    EpochRecord rec;
    rec.epoch = epoch_number;
    rec.step = step;
    if (epoch_batches > 0) rec.train_elbo = static_cast<float>(epoch_elbo_sum / epoch_batches);
    if (epoch_train_seconds > 0) rec.samples_per_s = static_cast<float>(epoch_samples / epoch_train_seconds);
    if (opt.evaluate_each_epoch && test_set->count > 0) {
      std::vector<int> idx;
      if (opt.eval_limit > 0 && opt.eval_limit < test_set->count) {
        idx.resize(opt.eval_limit);
        for (int i = 0; i < opt.eval_limit; ++i) idx[i] = i;
      }
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
    std::vector<int> idx = idx_in;
    if (idx.empty()) {
      idx.resize(test_set->count);
      for (int i = 0; i < test_set->count; ++i) idx[i] = i;
    }
    const int n = static_cast<int>(idx.size()), chunk = 1000;
    std::vector<int> pred(n), labels(n);
    int n_classes = 0;
    for (int i = 0; i < n; ++i) {
      labels[i] = test_set->labels[idx[i]];
      n_classes = std::max(n_classes, labels[i] + 1);
    }
    for (int lo = 0; lo < n; lo += chunk) {
      const int B = std::min(chunk, n - lo);
      Eigen::MatrixXf x(mcfg.input_dim(), B), mu, lv, probs;
      gather_batch(*test_set, idx.data() + lo, B, Binarize::None, nullptr, x);
      model->encode(x, mu, lv);
      model->classify(mu, probs);
      for (int b = 0; b < B; ++b) probs.col(b).maxCoeff(&pred[lo + b]);
    }
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
    const EpochRecord rec = evaluate_now(epoch);
    history.epochs.push_back(rec);
    if (opt.measure_estimators) measure_estimators();
    refresh_latents();
    if (listener) {
      TrainerEvent ev;
      ev.kind = EventKind::EpochEnd;
      fill_progress(ev);
      ev.record = &history.epochs.back();
      listener(ev);
    }
    new_epoch_order();
    if (opt.max_epochs >= 0 && epoch >= opt.max_epochs) state = TrainerState::Finished;
  }

  void refresh_latents() {
    last_latent = Clock::now();
    if (display_idx.empty()) return;
    const int n = static_cast<int>(display_idx.size()), d = mcfg.latent;
    latent_mu.resize(d, n);
    const int chunk = 1000, parts = (n + chunk - 1) / chunk;
    auto encode_part = [&](int p) {
      const int lo = p * chunk, B = std::min(chunk, n - lo);
      Eigen::MatrixXf x(mcfg.input_dim(), B), mu, lv;
      gather_batch(*test_set, display_idx.data() + lo, B, Binarize::None, nullptr, x);
      model->encode(x, mu, lv);
      latent_mu.middleCols(lo, B) = mu;
    };
    pool->run(parts, encode_part);
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
  void apply(Command& c) {
    switch (c.kind) {
      case Command::Kind::Pause:
        if (state == TrainerState::Running) state = TrainerState::Paused;
        pending_steps = 0;
        break;
      case Command::Kind::Resume:
        state = TrainerState::Running;
        break;
      case Command::Kind::Step:
        state = TrainerState::Paused;
        ++pending_steps;
        break;
      case Command::Kind::Reset:
        fresh_start();
        say(Severity::Info, "reset: fresh weights from seed " + std::to_string(tcfg.seed));
        break;
      case Command::Kind::SetLr:
        change(&TrainConfig::lr, static_cast<float>(c.value), "lr");
        break;
      case Command::Kind::SetBeta:
        change(&TrainConfig::beta, static_cast<float>(c.value), "β");
        break;
      case Command::Kind::SetWarmup:
        change(&TrainConfig::warmup_steps, static_cast<int>(c.value), "warm-up");
        break;
      case Command::Kind::SetEstimator: {
        const auto e = static_cast<Estimator>(static_cast<int>(c.value));
        TrainConfig t = tcfg;
        t.estimator = e;
        check_estimator(mcfg, t);
        if (e != tcfg.estimator) mark(std::string("estimator ") + to_string(tcfg.estimator) + " → " + to_string(e));
        tcfg.estimator = e;
        break;
      }
      case Command::Kind::SetIwae:
        if (c.value < 0 || c.value > 100000 || c.value2 < 0) throw Error("IWAE samples must be 0 to 100000");
        opt.eval_iwae_k = static_cast<int>(c.value);
        opt.iwae_points = static_cast<int>(c.value2);
        break;
      case Command::Kind::MeasureEstimators:
        opt.measure_estimators = c.value != 0;
        break;
      case Command::Kind::MeasureEstimatorsNow:
        measure_estimators();
        break;
      case Command::Kind::Rebuild: {
        validate(c.model);
        validate(c.train);
        check_image_size(c.model);
        mcfg = c.model;
        tcfg = c.train;
        fresh_start();
        say(Severity::Info, std::string("rebuilt the model: ") + to_string(mcfg.family) + ", latent " +
                                std::to_string(mcfg.latent) + ", " + to_string(mcfg.likelihood) + ", batch " +
                                std::to_string(tcfg.batch));
        break;
      }
      case Command::Kind::SetData: {
        auto old = data;
        data = c.data;
        const bool same_size = mcfg.image_h == data->train.height && mcfg.image_w == data->train.width;
        if (!same_size) {
          mcfg.image_h = data->train.height;
          mcfg.image_w = data->train.width;
        }
        try {
          if (same_size) {
            prepare_data();
            new_epoch_order();
          } else {
            fresh_start();
          }
        } catch (...) {
          data = old;
          throw;
        }
        say(Severity::Info, "data set '" + data->name + "': " + std::to_string(data->train.count) + " training and " +
                                std::to_string(data->test.count) + " test images" +
                                (same_size ? "" : " (new image size: fresh model)"));
        break;
      }
      case Command::Kind::Save:
        save_now(c.path);
        say(Severity::Info, "saved checkpoint " + c.path.string());
        break;
      case Command::Kind::Load:
        load_now(c.path);
        say(Severity::Info, "loaded checkpoint " + c.path.string() + " (step " + std::to_string(step) + ")");
        break;
      case Command::Kind::Export:
        write_safetensors(c.path, export_model(*model));
        say(Severity::Info, "exported weights to " + c.path.string());
        break;
      case Command::Kind::Import:
        import_now(c.path);
        say(Severity::Info, "imported weights from " + c.path.string());
        break;
    }
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

  void mark(std::string text) {
    history.markers.push_back({step, text});
    say(Severity::Info, std::move(text));
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
    validate(s.model);
    validate(s.train);
    check_estimator(s.model, s.train);
    check_image_size(s.model);
    auto m = std::make_unique<Model>(s.model);
    if (m->size() != s.params.size()) throw Error(file.string() + ": parameter count does not match its model config");
    const int n = opt.train_limit > 0 ? std::min(opt.train_limit, data->train.count) : data->train.count;
    const bool order_fits = static_cast<int>(s.order.size()) == n &&
                            std::all_of(s.order.begin(), s.order.end(), [n](std::int32_t i) { return i >= 0 && i < n; });
    m->params().assign(s.params.begin(), s.params.end());
    mcfg = s.model;
    tcfg.batch = s.train.batch;  // the data order and history follow the saved batch size
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
    prepare_data();
    prepare_engine();
    if (order_fits && s.batch_in_epoch >= 0 && s.batch_in_epoch < batches_per_epoch()) {
      order = std::move(s.order);
      batch_in_epoch = s.batch_in_epoch;
      epoch_elbo_sum = 0;
      epoch_batches = 0;
      epoch_train_seconds = 0;
      epoch_samples = 0;
    } else {
      new_epoch_order();
    }
    last_published_model.reset();
    refresh_latents();
  }

  void import_now(const std::filesystem::path& file) {
    Model m = import_model(read_safetensors(file));
    check_image_size(m.config());
    if (!m.all_finite()) throw Error(file.string() + ": weights contain NaN or Inf");
    mcfg = m.config();
    model = std::make_unique<Model>(std::move(m));
    adam.reset(model->size());
    step = 0;
    epoch = 0;
    history = {};
    kl_running.assign(mcfg.latent, 0.0);
    prepare_data();
    prepare_engine();
    new_epoch_order();
    last_published_model.reset();
    refresh_latents();
  }

  // Commands apply in the order given: after a Step, later commands wait until it has run.
  void drain_commands() {
    {
      std::lock_guard lock(cmd_mu);
      for (Command& c : commands) backlog.push_back(std::move(c));
      commands.clear();
    }
    while (!backlog.empty() && pending_steps == 0) {
      Command c = std::move(backlog.front());
      backlog.pop_front();
      try {
        apply(c);
      } catch (const std::exception& e) {
        say(Severity::Error, e.what());
      }
    }
  }

  void run() {
    if (opt.evaluate_before_training) {
      history.epochs.push_back(evaluate_now(0));
      if (listener) {
        TrainerEvent ev;
        ev.kind = EventKind::EpochEnd;
        fill_progress(ev);
        ev.record = &history.epochs.back();
        listener(ev);
      }
    }
    if (opt.max_epochs >= 0 && epoch >= opt.max_epochs) state = TrainerState::Finished;
    if (opt.display_points > 0) refresh_latents();
    publish();
    while (!stop.load(std::memory_order_relaxed) && state != TrainerState::Finished) {
      drain_commands();
      const bool work = state == TrainerState::Running || pending_steps > 0;
      if (work) {
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
        if (seconds_since(last_publish) * 1000 >= opt.publish_interval_ms || state != TrainerState::Running)
          publish();
      } else {
        publish();
        std::unique_lock lock(cmd_mu);
        cmd_cv.wait_for(lock, std::chrono::milliseconds(100),
                        [&] { return !commands.empty() || stop.load(std::memory_order_relaxed); });
      }
    }
    if (state != TrainerState::Finished) state = TrainerState::Paused;
    if (state == TrainerState::Finished && opt.display_points > 0 && latent_step != step) refresh_latents();
    publish();
    if (listener) {
      TrainerEvent ev;
      ev.kind = EventKind::Finished;
      fill_progress(ev);
      listener(ev);
    }
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

void Trainer::request_stop() {
  impl_->stop.store(true);
  impl_->cmd_cv.notify_all();
}

void Trainer::join() {
  if (thread_.joinable()) thread_.join();
}

namespace {
void post(Trainer::Impl& impl, Command c) {
  {
    std::lock_guard lock(impl.cmd_mu);
    impl.commands.push_back(std::move(c));
  }
  impl.cmd_cv.notify_all();
}
}  // namespace

void Trainer::pause() { post(*impl_, Command{Command::Kind::Pause}); }
void Trainer::resume() { post(*impl_, Command{Command::Kind::Resume}); }
void Trainer::step_once() { post(*impl_, Command{Command::Kind::Step}); }
void Trainer::reset() { post(*impl_, Command{Command::Kind::Reset}); }
void Trainer::set_lr(float lr) { post(*impl_, Command{Command::Kind::SetLr, lr}); }
void Trainer::set_beta(float beta) { post(*impl_, Command{Command::Kind::SetBeta, beta}); }
void Trainer::set_warmup(int steps) { post(*impl_, Command{Command::Kind::SetWarmup, static_cast<double>(steps)}); }
void Trainer::set_estimator(Estimator e) { post(*impl_, Command{Command::Kind::SetEstimator, static_cast<double>(e)}); }
void Trainer::set_iwae(int k, int points) { post(*impl_, Command{Command::Kind::SetIwae, static_cast<double>(k), static_cast<double>(points)}); }
void Trainer::set_measure_estimators(bool on) { post(*impl_, Command{Command::Kind::MeasureEstimators, on ? 1.0 : 0.0}); }
void Trainer::measure_estimators_now() { post(*impl_, Command{Command::Kind::MeasureEstimatorsNow}); }
void Trainer::rebuild(ModelConfig model, TrainConfig train) {
  Command c(Command::Kind::Rebuild);
  c.model = std::move(model);
  c.train = train;
  post(*impl_, std::move(c));
}
void Trainer::set_data(std::shared_ptr<const Dataset> data) {
  Command c(Command::Kind::SetData);
  c.data = std::move(data);
  post(*impl_, std::move(c));
}
void Trainer::save(std::filesystem::path file) {
  Command c(Command::Kind::Save);
  c.path = std::move(file);
  post(*impl_, std::move(c));
}
void Trainer::load(std::filesystem::path file) {
  Command c(Command::Kind::Load);
  c.path = std::move(file);
  post(*impl_, std::move(c));
}
void Trainer::export_safetensors(std::filesystem::path file) {
  Command c(Command::Kind::Export);
  c.path = std::move(file);
  post(*impl_, std::move(c));
}
void Trainer::import_safetensors(std::filesystem::path file) {
  Command c(Command::Kind::Import);
  c.path = std::move(file);
  post(*impl_, std::move(c));
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
