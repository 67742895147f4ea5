// What leaves the trainer thread: events to the listener, log lines (cluster events among them),
// markers, the latent map's codes and the snapshots the UI reads. Not the reading side:
// Trainer::snapshot() (trainer.cpp).
#include <algorithm>
#include <sstream>

#include "core/clustering.hpp"
#include "core/evaluation.hpp"
#include "core/trainer_impl.hpp"

namespace vaelab {

std::string Trainer::Impl::format_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Sends `ev` with the current progress filled in.
void Trainer::Impl::notify(TrainerEvent ev) const {
  if (!listener) return;
  ev.step = step;
  ev.epoch = epoch;
  ev.batch_in_epoch = batch_in_epoch;
  ev.batches_per_epoch = batches_per_epoch();
  ev.samples_per_s = throughput.samples_per_s();
  listener(ev);
}

void Trainer::Impl::say(Severity sev, std::string text) {
  notify({.kind = EventKind::Log, .line = &log.add(sev, std::move(text))});
}

// A change the curves show as a marker, logged too.
void Trainer::Impl::mark(std::string text) {
  history.markers.push_back({step, text});
  say(Severity::Info, std::move(text));
}

// Codes of the latent map's test images at the current step, and at an epoch end the cluster watch.
void Trainer::Impl::refresh_latents() {
  latents.refreshed = Clock::now();
  if (epoch != cluster_watch.epoch) watch_clusters();
  if (latents.indices.empty()) return;
  latents.mu.resize(mcfg.latent, static_cast<Eigen::Index>(latents.indices.size()));
  const auto keep_codes = [&](int lo, const Eigen::MatrixXf& mu, const Eigen::MatrixXf&) {
    latents.mu.middleCols(lo, mu.cols()) = mu;
  };
  encode_in_chunks(*model, *test_set, latents.indices, pool.get(), keep_codes);
  latents.step = step;
}

// At the first refresh of a new epoch: the clustering VAE's clusters of the test images the epoch
// evaluates, and a warning for each cluster that emptied or merged since the previous epoch end.
// Only consecutive epoch ends of one run are compared: not across a reset, load, rebuild, new data,
// followed weights, or the cluster refit (which renames the clusters).
void Trainer::Impl::watch_clusters() {
  const int K = model->clusters();
  if (K == 0 || following || epoch < 1 || test_set->count == 0) {
    cluster_watch = {};
    return;
  }
  const int n = opt.eval_limit > 0 ? std::min(opt.eval_limit, test_set->count) : test_set->count;
  std::vector<int> now = assign_clusters(*model, *test_set, first_indices(n), pool.get());
  const ClusterWatch& before = cluster_watch;
  const bool refit_between = opt.cluster_fit_step > before.step && opt.cluster_fit_step <= step;
  const bool previous_record = history.epochs.size() >= 2 && history.epochs[history.epochs.size() - 2].step == before.step;
  const bool comparable = epoch == before.epoch + 1 && step > before.step && before.images == test_set.get() &&
                          before.assignment.size() == now.size() && !refit_between && previous_record &&
                          *std::max_element(before.assignment.begin(), before.assignment.end()) < K;
  if (comparable)
    for (const ClusterEvent& e : cluster_events(before.assignment, now, K))
      say(Severity::Warning, "step " + std::to_string(step) + ": " + describe(e));
  cluster_watch = {std::move(now), epoch, step, test_set.get()};
}

void Trainer::Impl::publish() {
  auto s = std::make_shared<Snapshot>();
  s->version = ++version;
  s->state = state;
  s->step = step;
  s->epoch = epoch;
  s->batch_in_epoch = batch_in_epoch;
  s->batches_per_epoch = batches_per_epoch();
  s->samples_per_s = throughput.samples_per_s();
  s->effective_beta = effective_beta();
  s->model_config = mcfg;
  s->train_config = tcfg;
  s->history = history;
  s->kl_per_dim = kl_running;
  // A model whose parameters went non-finite is not published: the last finite copy stays the
  // fallback that diverged() restores.
  if (!last_published_model || last_published_model->params() != model->params()) {
    if (model->all_finite()) last_published_model = std::make_shared<const Model>(*model);
  }
  s->model = last_published_model;
  s->data = data;
  s->display_indices = latents.indices;
  s->latent_mu = latents.mu;
  s->latent_step = latents.step;
  s->log.assign(log.lines().begin(), log.lines().end());
  if (following) s->follow = follow_status();
  published.store(std::move(s));
  last_publish = Clock::now();
}

}  // namespace vaelab
