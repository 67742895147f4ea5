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
// Only consecutive epoch ends of one run are compared: not across a reset, load, rebuild, new data
// or followed weights. Across the cluster refit, which renames the clusters and starts each with
// points, the clusters that hold none have emptied since it.
void Trainer::Impl::watch_clusters() {
  const int K = model->clusters();
  if (K == 0 || following || epoch < 1 || test_set->count == 0) {
    cluster_watch = {};
    return;
  }
  const int n = opt.eval_limit > 0 ? std::min(opt.eval_limit, test_set->count) : test_set->count;
  std::vector<int> now = assign_clusters(*model, *test_set, first_indices(n), pool.get());
  const ClusterWatch& before = cluster_watch;
  const bool previous_record = history.epochs.size() >= 2 && history.epochs[history.epochs.size() - 2].step == before.step;
  const bool same_run = epoch == before.epoch + 1 && step > before.step && before.images == test_set.get() &&
                        before.assignment.size() == now.size() && previous_record &&
                        *std::max_element(before.assignment.begin(), before.assignment.end()) < K;
  // A refit at the baseline's own step may have come before its evaluation: it counts as between.
  const std::int64_t refit = cluster_fit_at();
  const bool refit_between = refit > 0 && refit >= before.step && refit <= step;
  const std::string at = "step " + std::to_string(step) + ": ";
  if (same_run && !refit_between) {
    for (const ClusterEvent& e : cluster_events(before.assignment, now, K)) say(Severity::Warning, at + describe(e));
  } else if (same_run && step > refit) {
    std::vector<int> sizes(static_cast<std::size_t>(K), 0);
    for (const int k : now) ++sizes[static_cast<std::size_t>(k)];
    for (int k = 0; k < K; ++k)
      if (sizes[static_cast<std::size_t>(k)] == 0)
        say(Severity::Warning, at + "cluster " + std::to_string(k + 1) + " emptied after the cluster refit at step " +
                                   std::to_string(refit));
  }
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
