// The trainer thread end to end on a small synthetic data set: learning improves the test ELBO,
// runs are reproducible from a seed, the listener hears every event, and the commands (pause,
// resume, step, reset, set β/lr, rebuild, set data, save/load, import, bad input) behave while
// snapshots are read concurrently; following a run folder written by the test; the clustering
// VAE's refit and the empty clusters it leaves, in the log. Also the trainer's parts on their own: the chunked encoder pass and the adaptive thread setting.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/adaptive_threads.hpp"
#include "core/data.hpp"
#include "core/evaluation.hpp"
#include "core/rng.hpp"
#include "core/run_follow.hpp"
#include "core/safetensors.hpp"
#include "core/thread_pool.hpp"
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

// A run folder as run_writer.py writes it: weights replaced atomically, metrics lines appended.
struct RunWriterInTest {
  TempDir dir{"trainer-follow"};
  fs::path run = dir / "run";

  void weights(const Model& m, std::int64_t step, double epoch) const {
    SafetensorsFile f = export_model(m);
    f.metadata["step"] = std::to_string(step);
    f.metadata["epoch"] = std::to_string(epoch);
    write_safetensors(run / kRunWeightsFile, f);
  }
  void metrics(const std::string& lines) const {
    std::ofstream out(run / kRunMetricsFile, std::ios::binary | std::ios::app);
    out << lines;
    REQUIRE(out.good());
  }
  void garbage_weights() const {  // a complete file that is not safetensors, renamed into place
    const fs::path tmp = run / "weights.tmp";
    std::ofstream(tmp, std::ios::binary) << "not a safetensors file at all";
    fs::rename(tmp, run / kRunWeightsFile);
  }
};

Model seeded_model(ModelConfig cfg, std::uint64_t seed) {
  Model m(std::move(cfg));
  m.init(seed);
  return m;
}

Eigen::MatrixXf decoded(const Model& m) {
  Eigen::MatrixXf z = Eigen::MatrixXf::Ones(m.latent(), 3) * 0.5f, image;
  z(0, 1) = -1.0f;
  m.decode_image(z, image);
  return image;
}

bool logged(const Snapshot& s, Severity severity, const std::string& part) {
  return std::any_of(s.log.begin(), s.log.end(),
                     [&](const LogLine& l) { return l.severity == severity && has(l.text, part); });
}

}  // namespace

TEST_CASE("trainer: follow shows new weights and metrics and keeps the last good model") {
  TrainerOptions opt;
  opt.display_points = 50;
  Trainer tr(synthetic_data(), small_model(), small_train(), opt);
  tr.start();
  RunWriterInTest w;
  tr.follow(w.run);  // the folder does not exist yet
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.follow.has_value(); }));
  CHECK_FALSE(tr.snapshot()->follow->has_weights);
  CHECK_FALSE(tr.snapshot()->follow->folder_present);
  CHECK(tr.snapshot()->history.steps.empty());

  fs::create_directory(w.run);
  w.metrics(R"({"step":20,"epoch":0.5,"time":1.5,"train_elbo":-50.5,"recon":-45.25,"kl":5.25})" "\n"
            R"({"step":40,"epoch":1,"time":2.5,"train_elbo":-48,"test_elbo":-47.5,"test_recon":-43,"test_kl":4.5})" "\n");
  const Model written = seeded_model(small_model(), 11);
  w.weights(written, 40, 1);
  REQUIRE(wait_for(tr, [](const Snapshot& s) {
    return s.follow && s.follow->has_weights && s.history.steps.size() == 1 && s.history.epochs.size() == 1;
  }, 2s));
  auto s = tr.snapshot();
  CHECK(s->step == 40);
  CHECK(s->epoch == 1);
  CHECK(s->follow->step == 40);
  CHECK(s->follow->folder_present);
  CHECK(s->follow->last_change.has_value());
  CHECK(decoded(*s->model) == decoded(written));
  CHECK(s->latent_step == 40);
  CHECK(s->latent_mu.cols() == 50);
  CHECK(s->history.steps[0].step == 20);
  CHECK(s->history.steps[0].recon == -45.25f);
  const EpochRecord& epoch = s->history.epochs[0];
  CHECK(epoch.step == 40);
  CHECK(epoch.test_elbo == -47.5f);            // the run's own number
  CHECK(epoch.kl_per_dim.size() == 2);         // this trainer's evaluation of the weights
  CHECK(s->kl_per_dim == std::vector<double>(epoch.kl_per_dim.begin(), epoch.kl_per_dim.end()));

  w.garbage_weights();
  REQUIRE(wait_for(tr, [](const Snapshot& q) { return !q.follow->last_problem.empty(); }, 2s));
  CHECK(logged(*tr.snapshot(), Severity::Warning, kRunWeightsFile));
  CHECK(decoded(*tr.snapshot()->model) == decoded(written));

  ModelConfig larger = small_model();
  larger.image_h = larger.image_w = 10;  // the data's images are 8×8
  w.weights(seeded_model(larger, 3), 60, 1.5);
  REQUIRE(wait_for(tr, [](const Snapshot& q) { return has(q.follow->last_problem, "not shown"); }, 2s));
  s = tr.snapshot();
  CHECK(logged(*s, Severity::Warning, "the last good model stays"));
  CHECK(s->model_config == small_model());
  CHECK(decoded(*s->model) == decoded(written));
  CHECK(s->step == 40);

  CHECK_FALSE(s->follow->finished);
  w.metrics(R"({"step":60,"epoch":1.5,"time":3.5,"finished":true})" "\n");
  REQUIRE(wait_for(tr, [](const Snapshot& q) { return q.follow->finished; }, 2s));
  CHECK(logged(*tr.snapshot(), Severity::Info, "finished"));
}

TEST_CASE("trainer: follow restarts its curves with the metrics file and takes a new shape that fits") {
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 20;
  opt.evaluate_each_epoch = false;
  Trainer tr(synthetic_data(), small_model(), small_train(), opt);
  tr.start();
  RunWriterInTest w;
  fs::create_directory(w.run);
  tr.follow(w.run);
  w.metrics(R"({"step":10,"epoch":0.25,"train_elbo":-60})" "\n" R"({"step":20,"epoch":0.5,"train_elbo":-55})" "\n");
  w.weights(seeded_model(small_model(), 5), 20, 0);
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.follow && s.follow->has_weights && s.history.steps.size() == 2; }, 2s));

  ModelConfig wider = small_model();
  wider.latent = 3;
  const Model reshaped = seeded_model(wider, 6);
  const fs::path fresh = w.run / "fresh.jsonl";  // a fresh start writes a new metrics file
  std::ofstream(fresh, std::ios::binary) << R"({"step":5,"epoch":0.1,"train_elbo":-70})" "\n";
  fs::rename(fresh, w.run / kRunMetricsFile);
  w.weights(reshaped, 5, 0);
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.model_config.latent == 3 && s.history.steps.size() == 1; }, 2s));
  const auto s = tr.snapshot();
  CHECK(s->history.steps[0].step == 5);
  CHECK(s->step == 5);
  CHECK(s->latent_mu.rows() == 3);
  CHECK(s->kl_per_dim.size() == 3);
  CHECK(s->model->params() == reshaped.params());
  CHECK(logged(*s, Severity::Warning, "changed shape"));
}

TEST_CASE("trainer: follow takes no local steps and continue_here trains from the followed weights") {
  TrainerOptions opt;
  opt.display_points = 0;
  opt.evaluate_each_epoch = false;
  Trainer tr(synthetic_data(), small_model(), small_train(), opt);  // running
  tr.start();
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.step >= 3; }));
  RunWriterInTest w;
  fs::create_directory(w.run);
  tr.follow(w.run);
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.follow.has_value(); }));
  const std::int64_t at_follow = tr.snapshot()->step;
  std::this_thread::sleep_for(200ms);
  CHECK(tr.snapshot()->step == at_follow);  // the local trainer is idle
  CHECK(tr.snapshot()->state == TrainerState::Paused);

  const Model written = seeded_model(small_model(), 21);
  w.weights(written, 500, 10);
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.follow->has_weights; }, 2s));
  std::this_thread::sleep_for(100ms);
  CHECK(tr.snapshot()->step == 500);
  CHECK(tr.snapshot()->model->params() == written.params());

  tr.continue_here();  // it was running before following, so it runs again
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return !s.follow && s.step > 505; }, 2s));
  const auto s = tr.snapshot();
  CHECK(s->state == TrainerState::Running);
  CHECK(s->model->params() != written.params());
  CHECK(s->model->all_finite());
  CHECK(logged(*s, Severity::Info, "stopped following"));
  REQUIRE_FALSE(s->history.markers.empty());
  CHECK(s->history.markers.back().step == 500);
}

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

TEST_CASE("trainer: colour images train the MLP and the conv VAE on all three channels") {
  const auto data = synthetic_colour_data();
  REQUIRE(data->train.values_per_image() == 3 * 64);
  for (ModelFamily family : {ModelFamily::Mlp, ModelFamily::Conv}) {
    CAPTURE(static_cast<int>(family));
    TrainerOptions opt;
    opt.max_epochs = 5;  // 12 batches per epoch
    opt.evaluate_before_training = true;
    opt.display_points = 0;
    ModelConfig m = small_model();
    m.image_c = 3;
    m.family = family;
    Trainer tr(data, m, small_train(2), opt);
    check_training_improves(tr, 6, 10.0f);
    const auto snap = tr.snapshot();
    CHECK(snap->model->input_dim() == 3 * 64);
    CHECK(snap->model->all_finite());
    // The decoder gives three different planes: the colour is learned, not one grey copied thrice.
    Eigen::MatrixXf img;
    snap->model->decode_image(Eigen::MatrixXf::Zero(2, 1), img);
    REQUIRE(img.rows() == 3 * 64);
    CHECK((img.block(0, 0, 64, 1) - img.block(64, 0, 64, 1)).cwiseAbs().maxCoeff() > 0.05f);
  }
}

TEST_CASE("trainer: a model with other channels than the data is refused with both shapes, new data brings its channels") {
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 0;
  ModelConfig grey = small_model();
  CHECK(has(error_of([&] { Trainer(synthetic_colour_data(50, 10), grey, small_train(), opt); }),
            "the model expects 1×8×8 images but the data set 'synthetic colour' has 3×8×8"));

  Trainer tr(synthetic_data(100, 20), grey, small_train(), opt);
  tr.start();
  tr.set_data(synthetic_colour_data(100, 20));  // same height and width, other channels: a fresh colour model
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.model_config.image_c == 3; }));
  CHECK(tr.snapshot()->model->input_dim() == 3 * 64);
  tr.step_once();
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.step == 1; }));
  CHECK(tr.snapshot()->model->all_finite());
  ModelConfig colour_rebuild = grey;
  colour_rebuild.image_c = 1;
  colour_rebuild.latent = 3;
  tr.rebuild(colour_rebuild, small_train());  // a grey model for colour data
  REQUIRE(wait_for(tr, [](const Snapshot& s) {
    return !s.log.empty() && s.log.back().severity == Severity::Error;
  }));
  CHECK(has(tr.snapshot()->log.back().text, "expects 1×8×8 images"));
  CHECK(tr.snapshot()->model_config.image_c == 3);
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

TEST_CASE("trainer: after the cluster refit, the next epoch end warns of each cluster no test image is in") {
  // One test image: it is in one of the 3 clusters, so 2 are empty at every epoch end. 4 steps an
  // epoch; the refit at step 6 falls in epoch 2, whose end (step 8) lists the 2 empty clusters.
  // Epoch 1 (before: nothing to compare with) and epoch 3 (the one image can only empty a
  // cluster by moving to an empty one, and never merge) say nothing of the refit.
  ModelConfig m = small_model();
  m.family = ModelFamily::Gmvae;
  m.clusters = 3;
  TrainerOptions opt;
  opt.max_epochs = 3;
  opt.display_points = 0;
  opt.cluster_fit_step = 6;
  opt.cluster_fit_points = 200;
  Trainer tr(synthetic_data(200, 1), m, small_train(1), opt);
  tr.start();
  tr.join();
  std::vector<std::string> refit_lines, other_cluster_lines;
  for (const LogLine& line : tr.snapshot()->log) {
    if (line.text.rfind("step ", 0) != 0 || !has(line.text, ": cluster ")) continue;  // not the refit's own line
    CHECK(line.severity == Severity::Warning);
    (has(line.text, "after the cluster refit") ? refit_lines : other_cluster_lines).push_back(line.text);
  }
  REQUIRE(refit_lines.size() == 2);
  for (const std::string& text : refit_lines) CHECK(has(text, "step 8: cluster "));
  CHECK(refit_lines[0] != refit_lines[1]);
  CHECK(has(refit_lines[0], " emptied after the cluster refit at step 6"));
  for (const std::string& text : other_cluster_lines) {
    CHECK(has(text, "step 12: cluster "));
    CHECK(has(text, " emptied (it held 1 point)"));
  }
  CHECK(other_cluster_lines.size() <= 1);
}

namespace {

// A clustering model of `family` on the synthetic data, stepped to a cluster fit at step 5: the
// models published at steps 4 and 5, and the trainer's log lines.
struct AroundTheFit {
  ModelConfig config;
  std::shared_ptr<const Model> before, after;
  std::vector<std::string> said;
};

AroundTheFit step_across_the_fit(ModelFamily family) {
  AroundTheFit r;
  r.config = small_model();
  r.config.family = family;
  r.config.clusters = 10;
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 0;
  opt.cluster_fit_step = 5;
  opt.cluster_fit_points = 500;
  Trainer tr(synthetic_data(), r.config, small_train(1), opt);
  std::mutex lock;
  tr.set_listener([&](const TrainerEvent& ev) {
    if (ev.kind != EventKind::Log) return;
    const std::lock_guard<std::mutex> hold(lock);
    r.said.push_back(ev.line->text);
  });
  tr.start();
  for (int i = 0; i < 4; ++i) tr.step_once();
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.step == 4; }));
  r.before = tr.snapshot()->model;
  tr.step_once();
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.step == 5; }));
  r.after = tr.snapshot()->model;
  tr.request_stop();
  tr.join();
  return r;
}

}  // namespace

TEST_CASE("trainer: the clustering VAE refits its cluster Gaussians once, at the chosen step") {
  const AroundTheFit r = step_across_the_fit(ModelFamily::Gmvae);
  const auto& before = r.before;
  const auto& after = r.after;
  const int d = r.config.latent, K = r.config.clusters;
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

TEST_CASE("trainer: vade splits its one-Gaussian prior into K clusters at the fit step, and says so") {
  const AroundTheFit r = step_across_the_fit(ModelFamily::Vade);
  const auto& before = r.before;
  const auto& after = r.after;
  const auto& said = r.said;
  const int d = r.config.latent, K = r.config.clusters;
  const Eigen::Map<const Eigen::MatrixXf> mu4(before->data() + before->cluster_mean_offset(), d, K);
  const Eigen::Map<const Eigen::MatrixXf> mu5(after->data() + after->cluster_mean_offset(), d, K);
  // Before: one Gaussian (all clusters equal, moved by training together: their gradients are the
  // same, but the optimiser's vector loop may round columns at different offsets differently);
  // after: K distinct ones.
  const float scale = 1.0f + mu4.col(0).cwiseAbs().maxCoeff();
  for (int y = 1; y < K; ++y) CHECK((mu4.col(y) - mu4.col(0)).cwiseAbs().maxCoeff() <= 1e-5f * scale);
  int distinct = 0;
  for (int y = 1; y < K; ++y) distinct += (mu5.col(y) - mu5.col(0)).norm() > 1e-3f ? 1 : 0;
  CHECK(distinct == K - 1);
  const bool logged = std::any_of(said.begin(), said.end(), [](const std::string& s) {
    return s.find("vade: the mixture prior split into 10 clusters") != std::string::npos &&
           s.find("at step 5") != std::string::npos;
  });
  CHECK(logged);
}

TEST_CASE("trainer: the listener hears each step, each epoch end and the finish, in order, with the progress") {
  TrainerOptions opt;
  opt.max_epochs = 2;  // 20 batches per epoch
  opt.display_points = 0;
  opt.evaluate_before_training = true;
  Trainer tr(synthetic_data(), small_model(), small_train(), opt);
  struct Heard {
    EventKind kind;
    std::int64_t step;
    int epoch, batch_in_epoch, batches_per_epoch;
    int record_epoch;  // −1: no record
    bool has_stats;
  };
  std::vector<Heard> heard;
  tr.set_listener([&](const TrainerEvent& ev) {
    heard.push_back({ev.kind, ev.step, ev.epoch, ev.batch_in_epoch, ev.batches_per_epoch,
                     ev.record ? ev.record->epoch : -1, ev.stats != nullptr});
  });
  tr.start();
  tr.join();
  REQUIRE(heard.size() == 1 + 20 + 1 + 20 + 1 + 1);
  CHECK(heard.front().kind == EventKind::EpochEnd);
  CHECK(heard.front().record_epoch == 0);
  std::size_t i = 1;
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (int b = 1; b <= 20; ++b, ++i) {
      const Heard& h = heard[i];
      CHECK(h.kind == EventKind::Step);
      CHECK(h.step == epoch * 20 + b);
      CHECK(h.epoch == epoch);
      CHECK(h.batch_in_epoch == b);
      CHECK(h.batches_per_epoch == 20);
      CHECK(h.has_stats);
    }
    CHECK(heard[i].kind == EventKind::EpochEnd);
    CHECK(heard[i].record_epoch == epoch + 1);
    CHECK(heard[i].step == (epoch + 1) * 20);
    ++i;
  }
  CHECK(heard.back().kind == EventKind::Finished);
  CHECK(heard.back().step == 40);
  CHECK(heard.back().epoch == 2);
}

TEST_CASE("trainer: a rebuild, data set or import the run cannot take is refused and changes nothing") {
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 0;
  TrainConfig score = small_train();
  score.estimator = Estimator::ScoreFunction;
  score.samples = 2;
  Trainer tr(synthetic_data(), small_model(), score, opt);
  tr.start();
  const auto errors = [](const Snapshot& s) {
    return std::count_if(s.log.begin(), s.log.end(), [](const LogLine& l) { return l.severity == Severity::Error; });
  };
  const auto before = tr.snapshot();

  ModelConfig gmvae = small_model();
  gmvae.family = ModelFamily::Gmvae;
  tr.rebuild(gmvae, score);  // the score-function estimator is for the plain MLP only
  REQUIRE(wait_for(tr, [&](const Snapshot& s) { return errors(s) == 1; }));
  CHECK(has(tr.snapshot()->log.back().text, "score-function"));

  auto wide = std::make_shared<Dataset>();  // 1×5000 images: wider than a model may be
  wide->name = "wide";
  for (ImageSet* set : {&wide->train, &wide->test}) {
    set->count = 2;
    set->height = 1;
    set->width = 5000;
    set->pixels.assign(2 * 5000, 128);
  }
  tr.set_data(wide);
  REQUIRE(wait_for(tr, [&](const Snapshot& s) { return errors(s) == 2; }));
  CHECK(has(tr.snapshot()->log.back().text, "image width"));

  TempDir dir("trainer-import");
  Model gmvae_model(gmvae);
  gmvae_model.init(1);
  write_safetensors(dir / "gmvae.safetensors", export_model(gmvae_model));
  tr.import_safetensors(dir / "gmvae.safetensors");
  REQUIRE(wait_for(tr, [&](const Snapshot& s) { return errors(s) == 3; }));
  CHECK(has(tr.snapshot()->log.back().text, "score-function"));

  tr.step_once();  // and the run goes on as it was
  REQUIRE(wait_for(tr, [](const Snapshot& s) { return s.step == 1; }));
  const auto after = tr.snapshot();
  CHECK(after->model_config.family == ModelFamily::Mlp);
  CHECK(after->model_config.image_w == 8);
  CHECK(after->data == before->data);
  CHECK(after->train_config.estimator == Estimator::ScoreFunction);
  CHECK(after->model->all_finite());
}

TEST_CASE("trainer: encode_in_chunks hands over every image's codes once, the same with or without a pool") {
  const auto data = synthetic_data(2 * kEncodeChunk + 500, 10);
  const int n = data->train.count;
  Model model(small_model());
  model.init(3);
  const std::vector<int> idx = first_indices(n);
  Eigen::MatrixXf serial(2, n), parallel(2, n);
  std::vector<int> handed(static_cast<std::size_t>(n), 0);
  encode_in_chunks(model, data->train, idx, nullptr, [&](int lo, const Eigen::MatrixXf& mu, const Eigen::MatrixXf&) {
    serial.middleCols(lo, mu.cols()) = mu;
    for (Eigen::Index c = 0; c < mu.cols(); ++c) ++handed[static_cast<std::size_t>(lo + c)];
  });
  ThreadPool pool(2);
  encode_in_chunks(model, data->train, idx, &pool, [&](int lo, const Eigen::MatrixXf& mu, const Eigen::MatrixXf&) {
    parallel.middleCols(lo, mu.cols()) = mu;
  });
  CHECK(std::all_of(handed.begin(), handed.end(), [](int h) { return h == 1; }));
  CHECK(serial == parallel);
  // The short last chunk holds the codes of its own images.
  Eigen::MatrixXf x(64, 500), mu, logvar;
  gather_batch(data->train, idx.data() + 2 * kEncodeChunk, 500, Binarize::None, nullptr, x);
  model.encode(x, mu, logvar);
  CHECK(serial.rightCols(500) == mu);
}

TEST_CASE("trainer: adaptive threading keeps the probed thread setting only when it is clearly faster") {
  ThreadPool pool(2);
  AdaptiveThreads adapt;
  const auto steps = [&](int count, double seconds) {
    for (int i = 0; i < count; ++i) adapt.after_step(&pool, seconds);
  };
  // The first comparison: 4 steps, 8 timing the current setting, 8 timing the other one.
  steps(12, 1.0);
  CHECK(pool.solo());  // probing the caller alone
  steps(8, 0.5);
  CHECK(pool.solo());  // clearly faster: kept
  // The next cycle (128 steps) probes both threads again; no faster, so back to the caller alone.
  steps(120, 1.0);
  CHECK(!pool.solo());
  steps(8, 0.97);
  CHECK(pool.solo());

  ThreadPool one(1);
  AdaptiveThreads single;
  for (int i = 0; i < 300; ++i) single.after_step(&one, 1.0);
  CHECK(!one.solo());  // nothing to compare
}
