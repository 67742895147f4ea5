// The trainer's follow mode: instead of taking steps, it polls a RunFollower (core/run_follow.hpp)
// on a run folder another program trains into, shows each new weights file as an import would,
// evaluates it like an epoch end and builds the curves from metrics.jsonl; "Continue here" forks the
// followed weights into local training. Not the follower itself, nor the snapshot it publishes
// (trainer_publish.cpp).
#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/trainer_impl.hpp"

namespace vaelab {

namespace {

// How long a poll waits for the run folder to change: short, so that commands and a stop request
// are taken within it.
constexpr std::chrono::milliseconds kFollowPoll{75};

// The metrics number under key as a float (NaN when missing or null).
float metric(const MetricsRecord& r, const char* key) { return static_cast<float>(r.number(key)); }

// What this trainer's evaluation knows and a metrics epoch line lacks, added to that line.
void fill_missing(EpochRecord& line, const EpochRecord& evaluation) {
  for (auto field : {&EpochRecord::test_elbo, &EpochRecord::test_recon, &EpochRecord::test_kl, &EpochRecord::test_iwae,
                     &EpochRecord::test_iwae_elbo, &EpochRecord::cluster_acc, &EpochRecord::nmi})
    if (std::isnan(line.*field)) line.*field = evaluation.*field;
  if (line.iwae_k == 0) line.iwae_k = evaluation.iwae_k;
  if (line.kl_per_dim.empty()) line.kl_per_dim = evaluation.kl_per_dim;
}

}  // namespace

// Starts following (or follows another folder instead): the local trainer goes idle and its curves
// make way for the followed run's; its model stays shown until the first weights file arrives.
void Trainer::Impl::handle(const command::Follow& c) {
  auto follower = std::make_unique<RunFollower>(c.folder);
  if (!following) {
    FollowedRun run;
    run.state_before = state;
    run.local_history = std::move(history);
    run.local_step = step;
    run.local_epoch = epoch;
    following = std::move(run);
  } else {
    FollowedRun run;
    run.state_before = following->state_before;
    run.local_history = std::move(following->local_history);
    run.local_step = following->local_step;
    run.local_epoch = following->local_epoch;
    run.has_weights = following->has_weights;  // the previous folder's model is still shown
    following = std::move(run);
  }
  following->follower = std::move(follower);
  history = {};
  state = TrainerState::Paused;
  pending_steps = 0;
  say(Severity::Info, "following " + c.folder.string() + ": the local trainer is idle; Continue here trains from its weights");
}

// Training goes on here from the followed weights and step, with a fresh optimiser.
void Trainer::Impl::handle(const command::ContinueHere&) {
  if (!following) throw Error("Continue here: no run is being followed");
  if (!following->has_weights) {
    history = std::move(following->local_history);
    step = following->local_step;
    epoch = following->local_epoch;
    end_following("Continue here before any weights arrived: the local run goes on");
    return;
  }
  const std::string folder = following->follower->folder().string();
  adam.reset(model->size());
  new_epoch_order();
  end_following("Continue here");
  mark("continued from " + folder + " at step " + std::to_string(step));
  if (all_epochs_done()) state = TrainerState::Finished;
}

// One poll of the run folder and what it brought, then a snapshot.
void Trainer::Impl::follow_once() {
  FollowUpdate u = following->follower->poll(kFollowPoll);
  bool epochs_changed = false;
  if (u.metrics_restarted) {
    history.steps.clear();
    following->metric_epochs.clear();
    following->evaluations.clear();
    epochs_changed = true;
  }
  for (const MetricsRecord& r : u.metrics) {
    const std::size_t before = following->metric_epochs.size();
    take_metrics(r);
    epochs_changed = epochs_changed || following->metric_epochs.size() != before;
  }
  for (std::string& p : u.problems) report_follow_problem(std::move(p));
  if (u.weights) {
    const std::size_t before = following->evaluations.size();
    show_followed_weights(*u.weights);
    epochs_changed = epochs_changed || following->evaluations.size() != before;
  }
  if (u.finished)
    say(Severity::Info, "the followed run " + following->follower->folder().string() + " finished at step " +
                            std::to_string(following->step));
  if (epochs_changed) rebuild_followed_epochs();
  publish();
}

// A metrics line onto the curves: a line with test numbers is an epoch record, one with a training
// ELBO a step record; others (the finished line, settings) are not drawn.
void Trainer::Impl::take_metrics(const MetricsRecord& r) {
  const double line_step = r.number("step");
  if (r.finished() || !std::isfinite(line_step)) return;
  const double line_epoch = r.number("epoch");
  if (r.fields.contains("test_elbo")) {
    EpochRecord e;
    e.epoch = std::isfinite(line_epoch) ? static_cast<int>(std::floor(line_epoch)) : 0;
    e.step = static_cast<std::int64_t>(line_step);
    e.train_elbo = metric(r, "train_elbo");
    e.test_elbo = metric(r, "test_elbo");
    e.test_recon = metric(r, "test_recon");
    e.test_kl = metric(r, "test_kl");
    e.test_iwae = metric(r, "test_iwae");
    const float rate = metric(r, "samples_per_s");
    if (std::isfinite(rate)) e.samples_per_s = rate;
    following->metric_epochs.push_back(std::move(e));
  } else if (r.fields.contains("train_elbo")) {
    history.steps.push_back({static_cast<std::int64_t>(line_step),
                             std::isfinite(line_epoch) ? static_cast<float>(line_epoch) : 0.0f, metric(r, "train_elbo"),
                             metric(r, "recon"), metric(r, "kl")});
  }
}

// A new weights file replaces the shown model as an import would: one the data cannot take (or
// with non-finite weights) is refused with a message and the last good model stays.
void Trainer::Impl::show_followed_weights(const FollowedWeights& w) {
  const std::string what = "the weights of step " + std::to_string(w.step);
  try {
    check_configs(w.model->config(), tcfg);
    if (!w.model->all_finite()) throw Error("they contain NaN or Inf");
  } catch (const Error& e) {
    report_follow_problem(what + " are not shown: " + e.what() + "; the last good model stays");
    return;
  }
  if (w.model->config() == mcfg) {
    model->params() = w.model->params();
  } else {
    if (following->has_weights)
      report_follow_problem("the followed model changed shape at step " + std::to_string(w.step) + " (latent " +
                            std::to_string(w.model->config().latent) + ", " + to_string(w.model->config().family) +
                            "): shown, the curves go on");
    History kept = std::move(history);
    take_model(std::make_unique<Model>(*w.model));
    history = std::move(kept);
  }
  following->has_weights = true;
  following->step = w.step;
  following->epoch = w.epoch;
  if (w.step >= 0) step = w.step;
  if (std::isfinite(w.epoch) && w.epoch >= 0) epoch = static_cast<int>(std::floor(w.epoch));
  refresh_latents();
  evaluate_followed_weights();
}

// What an epoch end refreshes for the panels, for the shown weights: the test evaluation (when the
// trainer evaluates at all) with its per-dimension KL and cluster scores.
void Trainer::Impl::evaluate_followed_weights() {
  if (!opt.evaluate_each_epoch) return;
  EpochRecord rec;
  rec.epoch = epoch;
  rec.step = step;
  evaluate_test(epoch, rec);
  if (rec.kl_per_dim.size() == static_cast<std::size_t>(mcfg.latent))
    kl_running.assign(rec.kl_per_dim.begin(), rec.kl_per_dim.end());
  auto& evaluations = following->evaluations;
  std::erase_if(evaluations, [&](const EpochRecord& e) { return e.step == rec.step; });
  evaluations.push_back(std::move(rec));
}

// The curves' epoch records: the metrics' epoch lines and this trainer's evaluations of the shown
// weights, in step order; at a step that has both, one record with what each knows.
void Trainer::Impl::rebuild_followed_epochs() {
  std::vector<EpochRecord> all = following->metric_epochs;
  for (const EpochRecord& evaluation : following->evaluations) {
    auto line = std::find_if(all.begin(), all.end(), [&](const EpochRecord& e) { return e.step == evaluation.step; });
    if (line == all.end())
      all.push_back(evaluation);
    else
      fill_missing(*line, evaluation);
  }
  std::stable_sort(all.begin(), all.end(), [](const EpochRecord& a, const EpochRecord& b) { return a.step < b.step; });
  history.epochs.clear();
  for (const EpochRecord& e : all) history.epochs.push_back(e);
}

// A problem goes into the status and, the first time it comes, into the log.
void Trainer::Impl::report_follow_problem(std::string text) {
  following->last_problem = text;
  if (following->reported.insert(text).second) say(Severity::Warning, std::move(text));
}

// Back to local training, running or paused as before following; the model and curves stay.
void Trainer::Impl::end_following(const std::string& because) {
  const std::string folder = following->follower->folder().string();
  state = following->state_before;
  following.reset();
  say(Severity::Info, "stopped following " + folder + " (" + because + "); the local trainer is " +
                          (state == TrainerState::Running ? "running" : "paused"));
}

FollowStatus Trainer::Impl::follow_status() const {
  const RunFollower& f = *following->follower;
  FollowStatus s;
  s.folder = f.folder();
  s.folder_present = f.folder_present();
  s.inotify = f.using_inotify();
  s.has_weights = following->has_weights;
  s.step = following->step;
  s.epoch = following->epoch;
  s.finished = f.finished();
  const auto now = std::chrono::system_clock::now();
  if (const auto ago = f.seconds_since_change(now))
    s.last_change = now - std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(*ago));
  s.last_problem = following->last_problem;
  return s;
}

}  // namespace vaelab
