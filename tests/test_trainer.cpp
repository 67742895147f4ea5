// The trainer thread end to end on a small synthetic data set: learning improves the test ELBO,
// runs are reproducible from a seed, and the commands (pause, resume, step, reset, set β/lr,
// save/load, bad input) behave while snapshots are read concurrently.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/data.hpp"
#include "core/rng.hpp"
#include "core/train_step.hpp"
#include "core/trainer.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;
using namespace std::chrono_literals;

namespace {

History run_epochs(int epochs, int threads, int batch = small_train().batch) {
  TrainerOptions opt;
  opt.max_epochs = epochs;
  opt.display_points = 0;
  TrainConfig train = small_train(threads);
  train.batch = batch;
  Trainer tr(synthetic_data(), small_model(), train, opt);
  tr.start();
  tr.join();
  History h = tr.snapshot()->history;
  decltype(h.epochs) records;
  for (EpochRecord e : h.epochs) {
    e.samples_per_s = 0;  // a timing, not a result
    records.push_back(e);
  }
  h.epochs = records;
  return h;
}

}  // namespace

TEST_CASE("trainer: a few hundred steps improve the test ELBO") {
  TrainerOptions opt;
  opt.max_epochs = 15;  // 20 batches per epoch: 300 steps
  opt.evaluate_before_training = true;
  opt.display_points = 100;
  Trainer tr(synthetic_data(), small_model(), small_train(2), opt);
  tr.start();
  tr.join();
  const auto snap = tr.snapshot();
  REQUIRE(snap->history.epochs.size() == 16);
  const float before = snap->history.epochs.front().test_elbo, after = snap->history.epochs.back().test_elbo;
  CHECK(after > before + 10.0f);  // nats per example
  CHECK(snap->step == 300);
  CHECK(snap->state == TrainerState::Finished);
  CHECK(snap->latent_mu.cols() == 100);
  CHECK(snap->latent_mu.rows() == 2);
  CHECK(snap->model->all_finite());
}

TEST_CASE("trainer: the same seed gives the same numbers, whatever the thread count (MLP)") {
  const History a = run_epochs(2, 2), b = run_epochs(2, 2);
  CHECK(a == b);
  REQUIRE(!a.steps.empty());
  // The MLP step splits each layer into chunks fixed by the layer sizes, not by the threads.
  const History c = run_epochs(2, 1);
  CHECK(c == a);
  // Batches of 3K (K = kMlpShardExamples) run as two column slices side by side on 2 threads,
  // as one on 1; the epoch's last batch of the 1,000 (under 2K) as a single slice, split by rows.
  const int B = 3 * GradientEngine::kMlpShardExamples;
  REQUIRE(1000 % B < 2 * GradientEngine::kMlpShardExamples);
  const History d2 = run_epochs(2, 2, B), d1 = run_epochs(2, 1, B);
  REQUIRE(!d2.steps.empty());
  CHECK(d1 == d2);
}

TEST_CASE("trainer: snapshots share the history's sealed chunks instead of copying them") {
  TrainerOptions opt;
  opt.max_epochs = 120;  // 20 batches per epoch: 2,400 steps, two sealed chunks of 1,024
  opt.display_points = 0;
  opt.evaluate_each_epoch = false;
  opt.publish_interval_ms = 0;  // a snapshot after every step
  Trainer tr(synthetic_data(), small_model(), small_train(1), opt);
  std::vector<std::shared_ptr<const Snapshot>> kept;
  // On the trainer thread, before step k is published: snapshot() holds step k − 1.
  tr.set_listener([&](const TrainerEvent& ev) {
    if (ev.kind == EventKind::Step && (ev.step == 1500 || ev.step == 2200)) kept.push_back(tr.snapshot());
  });
  tr.start();
  tr.join();
  const auto last = tr.snapshot();
  REQUIRE(kept.size() == 2);
  REQUIRE(last->step == 2400);
  const auto& a = kept[0]->history.steps;
  const auto& b = kept[1]->history.steps;
  const auto& z = last->history.steps;
  CHECK(kept[0]->step == 1499);
  CHECK(a.size() == 1499);  // an older snapshot keeps what it had
  CHECK(b.size() == 2199);
  CHECK(z.size() == 2400);
  CHECK(z.shared_chunks_with(a) == 1);
  CHECK(z.shared_chunks_with(b) == 2);
  CHECK(&z[0] == &a[0]);
  CHECK(&z[2047] == &b[2047]);
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == z[i]) continue;
    FAIL("step record " << i << " differs between snapshots");
  }
  CHECK(a.back().step == 1499);
}

TEST_CASE("trainer: pause, step, resume and stop while snapshots are read") {
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 50;
  opt.latent_refresh_ms = 10;
  Trainer tr(synthetic_data(), small_model(), small_train(2), opt);
  tr.start();
  // A reader thread hammers snapshot() the whole time, as the UI does.
  std::atomic<bool> done{false};
  std::int64_t reads = 0, inconsistent = 0;
  std::thread reader([&] {
    while (!done) {
      // Every snapshot must be internally consistent: one history record per step taken.
      auto s = tr.snapshot();
      if (s->history.steps.size() != static_cast<std::size_t>(s->step)) ++inconsistent;
      ++reads;
    }
  });
  std::this_thread::sleep_for(50ms);
  CHECK(tr.snapshot()->step == 0);
  CHECK(tr.snapshot()->state == TrainerState::Paused);
  tr.step_once();
  tr.step_once();
  CHECK(wait_for(tr, [](const Snapshot& s) { return s.step == 2; }));
  std::this_thread::sleep_for(50ms);
  CHECK(tr.snapshot()->step == 2);  // still paused after the single steps
  tr.resume();
  CHECK(wait_for(tr, [](const Snapshot& s) { return s.step > 40 && s.state == TrainerState::Running; }));
  tr.pause();
  CHECK(wait_for(tr, [](const Snapshot& s) { return s.state == TrainerState::Paused; }));
  const auto paused_at = tr.snapshot()->step;
  std::this_thread::sleep_for(50ms);
  CHECK(tr.snapshot()->step == paused_at);
  tr.request_stop();
  tr.join();
  done = true;
  reader.join();
  CHECK(reads > 0);
  CHECK(inconsistent == 0);
  CHECK(tr.finished());
}

TEST_CASE("trainer: live settings are recorded as markers and bad values are refused") {
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 0;
  Trainer tr(synthetic_data(), small_model(), small_train(), opt);
  tr.start();
  tr.set_beta(0.5f);
  tr.set_lr(1e-4f);
  tr.set_lr(-1.0f);  // refused with a message
  tr.step_once();
  CHECK(wait_for(tr, [](const Snapshot& s) { return s.step == 1; }));
  const auto s = tr.snapshot();
  CHECK(s->train_config.beta == 0.5f);
  CHECK(s->train_config.lr == 1e-4f);
  REQUIRE(s->history.markers.size() == 2);
  bool refused = false;
  for (const auto& line : s->log)
    if (line.severity == Severity::Error && line.text.find("learning rate") != std::string::npos) refused = true;
  CHECK(refused);
}

TEST_CASE("trainer: save and load round trip, and a broken file leaves the model running") {
  const auto dir = std::filesystem::temp_directory_path() / ("vaelab_trainer_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "run.vaelab";
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 0;
  Trainer a(synthetic_data(), small_model(), small_train(), opt);
  a.start();
  for (int i = 0; i < 5; ++i) a.step_once();
  CHECK(wait_for(a, [](const Snapshot& s) { return s.step == 5; }));
  a.save(file);
  CHECK(wait_for(a, [](const Snapshot& s) { return !s.log.empty() && s.log.back().text.find("saved") != std::string::npos; }));
  // Continue a for 3 steps; a fresh trainer loaded from the file must follow the same path.
  for (int i = 0; i < 3; ++i) a.step_once();
  CHECK(wait_for(a, [](const Snapshot& s) { return s.step == 8; }));

  Trainer b(synthetic_data(), small_model(), small_train(), opt);
  b.start();
  b.load(file);
  CHECK(wait_for(b, [](const Snapshot& s) { return s.step == 5; }));
  for (int i = 0; i < 3; ++i) b.step_once();
  CHECK(wait_for(b, [](const Snapshot& s) { return s.step == 8; }));
  CHECK(a.snapshot()->model->params() == b.snapshot()->model->params());

  // A truncated copy is refused; b keeps its parameters and its step.
  const auto broken = dir / "broken.vaelab";
  {
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream out(broken, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  const auto before = b.snapshot()->model->params();
  b.load(broken);
  CHECK(wait_for(b, [](const Snapshot& s) { return !s.log.empty() && s.log.back().severity == Severity::Error; }));
  CHECK(b.snapshot()->model->params() == before);
  CHECK(b.snapshot()->step == 8);
  b.load(dir / "does-not-exist.vaelab");
  CHECK(wait_for(b, [](const Snapshot& s) { return s.log.back().text.find("does-not-exist") != std::string::npos; }));
  std::filesystem::remove_all(dir);
}

TEST_CASE("trainer: a NaN in the weights pauses training and restores finite parameters") {
  TrainerOptions opt;
  opt.display_points = 0;
  opt.poison_at_step = 30;
  opt.publish_interval_ms = 0;  // publish every step, so a finite copy from step 29 exists
  Trainer tr(synthetic_data(), small_model(), small_train(), opt);
  tr.start();
  CHECK(wait_for(tr, [](const Snapshot& s) {
    for (const auto& l : s.log)
      if (l.severity == Severity::Error && l.text.find("diverged") != std::string::npos) return s.state == TrainerState::Paused;
    return false;
  }));
  const auto s = tr.snapshot();
  CHECK(s->step == 30);
  CHECK(s->model->all_finite());
  // Resuming continues from the restored parameters.
  tr.resume();
  CHECK(wait_for(tr, [](const Snapshot& s) { return s.step > 40; }));
  CHECK(tr.snapshot()->model->all_finite());
}

TEST_CASE("trainer: IWAE at epoch ends sits above the ELBO on the same images") {
  TrainerOptions opt;
  opt.max_epochs = 3;
  opt.display_points = 0;
  opt.eval_iwae_k = 50;
  opt.iwae_points = 64;
  opt.measure_estimators = true;
  Trainer tr(synthetic_data(), small_model(), small_train(2), opt);
  tr.start();
  tr.join();
  const auto s = tr.snapshot();
  REQUIRE(s->history.epochs.size() == 3);
  for (const auto& e : s->history.epochs) {
    CHECK(e.iwae_k == 50);
    CHECK(std::isfinite(e.test_iwae));
    CHECK(e.test_iwae >= e.test_iwae_elbo - 0.5f);  // IWAE_50 ≥ ELBO in expectation
  }
  // One estimator comparison per epoch; REINFORCE is the noisier one.
  REQUIRE(s->history.estimators.size() == 3);
  for (const auto& r : s->history.estimators) CHECK(r.score_variance > r.reparam_variance);
}

TEST_CASE("trainer: the score-function estimator trains the encoder too") {
  TrainerOptions opt;
  opt.max_epochs = 6;
  opt.display_points = 0;
  opt.evaluate_before_training = true;
  TrainConfig t = small_train();
  t.estimator = Estimator::ScoreFunction;
  t.samples = 4;  // the leave-one-out baseline needs L ≥ 2
  Trainer tr(synthetic_data(), small_model(), t, opt);
  tr.start();
  tr.join();
  const auto& ep = tr.snapshot()->history.epochs;
  REQUIRE(ep.size() == 7);
  CHECK(ep.back().test_elbo > ep.front().test_elbo + 5.0f);
}

TEST_CASE("trainer: the clustering VAE refits its cluster Gaussians once, at the chosen step") {
  ModelConfig m = small_model();
  m.family = ModelFamily::Gmvae;
  m.clusters = 10;
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 0;
  opt.cluster_fit_step = 5;
  opt.cluster_fit_points = 500;
  Trainer tr(synthetic_data(), m, small_train(1), opt);
  tr.start();
  for (int i = 0; i < 4; ++i) tr.step_once();
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.step == 4; }));
  const auto before = tr.snapshot()->model;
  tr.step_once();
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.step == 5; }));
  const auto after = tr.snapshot()->model;
  tr.request_stop();
  tr.join();
  const int d = m.latent, K = m.clusters;
  const Eigen::Map<const Eigen::MatrixXf> mu4(before->data() + before->cluster_mean_offset(), d, K);
  const Eigen::Map<const Eigen::MatrixXf> mu5(after->data() + after->cluster_mean_offset(), d, K);
  const DenseShape& out = after->classifier().back();
  // Before: prior-like random means and a random classifier; after: means on the codes and a
  // classifier restarted at uniform.
  CHECK(before->W(out).cwiseAbs().maxCoeff() > 0.01f);
  CHECK(after->W(out).cwiseAbs().maxCoeff() == 0.0f);
  CHECK(after->b(out).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((mu5 - mu4).cwiseAbs().maxCoeff() > 0.1f);
  // The new means lie inside the codes' bounding box (they are means of groups of codes).
  std::vector<int> idx(500);
  for (int i = 0; i < 500; ++i) idx[static_cast<std::size_t>(i)] = i;
  Eigen::MatrixXf x(64, 500), mu, lv;
  gather_batch(synthetic_data()->train, idx.data(), 500, Binarize::None, nullptr, x);
  after->encode(x, mu, lv);
  for (int j = 0; j < d; ++j) {
    CHECK(mu5.row(j).minCoeff() >= mu.row(j).minCoeff() - 0.05f);
    CHECK(mu5.row(j).maxCoeff() <= mu.row(j).maxCoeff() + 0.05f);
  }
}
