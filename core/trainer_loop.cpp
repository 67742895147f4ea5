// The trainer thread's loop and what it does between commands: optimiser steps, the clustering
// VAE's refit, recovery from divergence, and epoch ends with their evaluation. Not commands
// (trainer_commands.cpp) or snapshots (trainer_publish.cpp).
#include <algorithm>
#include <exception>
#include <limits>

#include "core/clustering.hpp"
#include "core/evaluation.hpp"
#include "core/gap.hpp"
#include "core/objective.hpp"
#include "core/trainer_impl.hpp"

namespace vaelab {

namespace {

using Clock = TrainerClock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

// The thread: an optional epoch-0 record, then commands and steps until the last epoch or a stop
// request, then a last snapshot and the Finished event.
void Trainer::Impl::run() {
  if (opt.evaluate_before_training) {
    history.epochs.push_back(epoch_record(0));
    notify({.kind = EventKind::EpochEnd, .record = &history.epochs.back(), .model = model.get()});
  }
  if (all_epochs_done()) state = TrainerState::Finished;
  if (opt.display_points > 0) refresh_latents();
  publish();
  while (!commands.stop_requested() && state != TrainerState::Finished) {
    drain_commands();
    if (following) {
      follow_once();
    } else if (state == TrainerState::Running || pending_steps > 0) {
      run_one_step();
    } else {
      publish();
      commands.wait(std::chrono::milliseconds(100));
    }
  }
  if (state != TrainerState::Finished) state = TrainerState::Paused;
  if (state == TrainerState::Finished && opt.display_points > 0 && latents.step != step) refresh_latents();
  publish();
  notify({.kind = EventKind::Finished});
}

// One step (a failure pauses), with the latent map and the snapshot refreshed when due.
void Trainer::Impl::run_one_step() {
  if (pending_steps > 0) --pending_steps;
  try {
    train_step();
  } catch (const std::exception& e) {
    state = TrainerState::Paused;
    say(Severity::Error, std::string("training stopped: ") + e.what());
  }
  if (opt.latent_refresh_ms > 0 && state == TrainerState::Running &&
      seconds_since(latents.refreshed) * 1000 >= opt.latent_refresh_ms)
    refresh_latents();
  if (seconds_since(last_publish) * 1000 >= opt.publish_interval_ms || state != TrainerState::Running) publish();
}

void Trainer::Impl::train_step() {
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
  if (model->clusters() > 0 && cluster_fit_at() > 0 && step == cluster_fit_at()) fit_clusters();
  ++batch_in_epoch;
  record_step(st, B, seconds_since(t0));
  notify({.kind = EventKind::Step, .stats = &st});
  if (batch_in_epoch >= batches_per_epoch()) end_epoch();
}

// The next batch's images into x and its noise into e, both drawn from rng: the images first
// (dynamic binarization draws from it), then ε.
void Trainer::Impl::draw_batch(Eigen::Ref<Eigen::MatrixXf> x, Eigen::Ref<Eigen::MatrixXf> e) {
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

// Tests: TrainerOptions::poison_at_step writes a NaN into a weight, once.
void Trainer::Impl::poison_if_due() {
  if (opt.poison_at_step < 0 || step != opt.poison_at_step || poisoned) return;
  poisoned = true;
  model->params()[model->encoder()[0].w] = std::numeric_limits<float>::quiet_NaN();
}

StepStats Trainer::Impl::compute_gradient(const Eigen::Ref<const Eigen::MatrixXf>& x,
                                          const Eigen::Ref<const Eigen::MatrixXf>& e) {
  const float beta = effective_beta();
  if (tcfg.estimator == Estimator::ScoreFunction)
    return score_function_encoder_gradient(*model, *engine, x, e, beta, grad.data(), pool.get());
  return engine->compute_unsummed(*model, x, e, beta, grad.data(), pool.get());
}

// The step's timing, its point on the curves and the running per-dimension KL.
void Trainer::Impl::record_step(const StepStats& st, int batch_size, double seconds) {
  adaptive_threads.after_step(pool.get(), seconds / batch_size);
  epoch_totals.add(st.elbo, batch_size, seconds);
  throughput.add(batch_size, seconds);
  const float epoch_pos = static_cast<float>(epoch) + static_cast<float>(batch_in_epoch) / batches_per_epoch();
  history.steps.push_back({step, epoch_pos, static_cast<float>(st.elbo), static_cast<float>(st.recon),
                           static_cast<float>(st.kl)});
  // A running mean over roughly the last 50 batches keeps the per-dimension KL bars steady.
  const double a = step == 1 ? 1.0 : 0.02;
  for (int j = 0; j < mcfg.latent; ++j) kl_running[j] += a * (st.kl_per_dim[j] - kl_running[j]);
}

// Clustering families, once at cluster_fit_at(): the cluster Gaussians moved onto
// k-means of the current codes, their Adam moments cleared (they belonged to the old values).
// Between two steps, so the step itself still allocates nothing.
void Trainer::Impl::fit_clusters() {
  const int n = std::min(train_count(), std::max(opt.cluster_fit_points, model->clusters()));
  if (n < model->clusters()) return;
  Eigen::MatrixXf mu(mcfg.latent, n), logvar(mcfg.latent, n);
  encode_in_chunks(*model, *train_set, first_indices(n), nullptr,
                   [&](int lo, const Eigen::MatrixXf& m, const Eigen::MatrixXf& v) {
                     mu.middleCols(lo, m.cols()) = m;
                     logvar.middleCols(lo, v.cols()) = v;
                   });
  fit_clusters_to_codes(*model, mu, logvar, tcfg.seed);
  const std::size_t dk = static_cast<std::size_t>(mcfg.latent) * model->clusters();
  auto clear_moments = [&](std::size_t o, std::size_t len) {
    std::fill_n(adam.m.begin() + static_cast<std::ptrdiff_t>(o), len, 0.0f);
    std::fill_n(adam.v.begin() + static_cast<std::ptrdiff_t>(o), len, 0.0f);
  };
  clear_moments(model->cluster_mean_offset(), dk);
  clear_moments(model->cluster_logvar_offset(), dk);
  if (mcfg.family == ModelFamily::Vade) {
    say(Severity::Info, "vade: the mixture prior split into " + std::to_string(model->clusters()) +
                            " clusters, fitted by k-means and " + std::to_string(kMixtureEmSteps) + " EM steps to " +
                            std::to_string(n) + " training codes at step " + std::to_string(step) +
                            " (until now it was one Gaussian, the plain VAE's)");
    return;
  }
  // The classifier's old outputs name the old clusters, and where it says p(y|z) ≈ 0 its
  // softmax passes no gradient to raise it: zeroing its last layer restarts it at uniform.
  const DenseShape& out = model->classifier().back();
  model->W(out).setZero();
  model->b(out).setZero();
  clear_moments(out.w, static_cast<std::size_t>(out.in) * out.out);
  clear_moments(out.b, static_cast<std::size_t>(out.out));
  say(Severity::Info, "clustering VAE: cluster Gaussians fitted to k-means of " + std::to_string(n) +
                          " training codes at step " + std::to_string(step));
}

// Falls back to the last published (finite) parameters, forgets Adam's moments, and pauses.
void Trainer::Impl::diverged(const std::string& why) {
  if (last_published_model && last_published_model->all_finite())
    model->params() = last_published_model->params();
  else
    model->init(tcfg.seed);
  adam.reset(model->size());
  state = TrainerState::Paused;
  pending_steps = 0;
  say(Severity::Error, "training diverged at step " + std::to_string(step) + ": " + why +
                           ". Paused and restored the last finite parameters; lower the learning rate "
                           "(now " + format_number(tcfg.lr) + ") and resume.");
}

void Trainer::Impl::end_epoch() {
  ++epoch;
  history.epochs.push_back(epoch_record(epoch));
  if (opt.measure_estimators) measure_estimators();
  refresh_latents();
  notify({.kind = EventKind::EpochEnd, .record = &history.epochs.back(), .model = model.get()});
  new_epoch_order();
  if (all_epochs_done()) state = TrainerState::Finished;
}

// The epoch's training totals and, when TrainerOptions::evaluate_each_epoch, its test numbers.
EpochRecord Trainer::Impl::epoch_record(int epoch_number) {
  EpochRecord rec;
  rec.epoch = epoch_number;
  rec.step = step;
  if (epoch_totals.batches > 0) rec.train_elbo = static_cast<float>(epoch_totals.elbo_sum / epoch_totals.batches);
  if (epoch_totals.train_seconds > 0)
    rec.samples_per_s = static_cast<float>(epoch_totals.samples / epoch_totals.train_seconds);
  if (!opt.evaluate_each_epoch) return rec;
  evaluate_test(epoch_number, rec);
  return rec;
}

// The test evaluation into rec, its IWAE reporting progress and cancellable (Trainer::cancel_iwae,
// request_stop); a cancelled IWAE is said in the log.
void Trainer::Impl::evaluate_test(int epoch_number, EpochRecord& rec) {
  iwae_cancel = commands.stop_requested();
  iwae_done = 0;
  iwae_total = 0;
  iwae_progress.cancel = &iwae_cancel;
  iwae_progress.report = [this](int done, int total) {
    iwae_done = done;
    iwae_total = total;
    if (opt.on_iwae_progress) opt.on_iwae_progress(done, total);
  };
  const bool complete = evaluate_test_set(*model, *test_set, test_evaluation(epoch_number), pool.get(), rec);
  iwae_total = 0;
  if (!complete)
    say(Severity::Warning, "IWAE_" + std::to_string(opt.eval_iwae_k) + " cancelled after " + std::to_string(iwae_done.load()) +
                               " test images; this evaluation has the ELBO only");
}

// The test evaluation an epoch end runs, as TrainerOptions and the seed say.
TestEvaluation Trainer::Impl::test_evaluation(int epoch_number) const {
  TestEvaluation how;
  how.limit = opt.eval_limit;
  how.iwae_k = opt.eval_iwae_k;
  how.iwae_points = opt.iwae_points;
  how.seed = tcfg.seed + 1000 + static_cast<std::uint64_t>(epoch_number);
  how.iwae_progress = &iwae_progress;
  return how;
}

// Variance of the reparameterised and score-function encoder gradients on one fixed-size batch.
void Trainer::Impl::measure_estimators() {
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

}  // namespace vaelab
