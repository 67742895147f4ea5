// Tests for core/autosave: when a periodic autosave is due, what the resume offer reads from a
// real trainer save, refusing a damaged autosave, moving one aside, keeping a longer run from being
// replaced by a shorter one, listing the autosaves of other instances, and that a run that diverged autosaves its restored finite weights. Not the app's modal (tests/e2e drives that).
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "core/autosave.hpp"
#include "core/checkpoint.hpp"
#include "core/trainer.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;
using namespace std::chrono_literals;

namespace {

// A trainer paused after `steps` steps and joined, so save_now may be called.
std::unique_ptr<Trainer> trained(int steps, TrainerOptions opt = {}) {
  opt.start_paused = true;
  opt.display_points = 0;
  auto tr = std::make_unique<Trainer>(synthetic_data(), small_model(), small_train(), opt);
  tr->start();
  for (int i = 0; i < steps; ++i) tr->step_once();
  REQUIRE(wait_for(*tr, [&](const Snapshot& s) { return s.step == steps; }));
  tr->request_stop();
  tr->join();
  return tr;
}

}  // namespace

TEST_CASE("autosave: due after the interval, and only when training moved since the last one") {
  AutosaveClock c(300);
  CHECK_FALSE(c.due(1000, 10));   // starts the interval
  CHECK_FALSE(c.due(1299, 500));  // not yet
  CHECK(c.due(1300, 500));
  c.saved(1300, 500);
  CHECK_FALSE(c.due(1700, 500));  // paused since: nothing new to save
  CHECK(c.due(1700, 501));
  AutosaveClock fresh(60);
  CHECK_FALSE(fresh.due(0, 0));
  CHECK_FALSE(fresh.due(100, 0));  // a run that never trained has nothing worth keeping
  CHECK(fresh.due(100, 1));
  c.set_interval(0);  // off
  CHECK_FALSE(c.due(1e9, 12345));
}

TEST_CASE("autosave: the resume offer reads a real save and never offers a damaged or missing one") {
  TempDir dir("autosave");
  const auto file = autosave_file(dir.path), aside = autosave_aside_file(dir.path);
  CHECK(file.filename() == "autosave.vaelab");
  CHECK(aside.parent_path() == dir.path);
  std::string error;
  CHECK_FALSE(inspect_autosave(file, error).has_value());
  CHECK(error.empty());  // none there: no offer, no complaint

  auto tr = trained(7);
  tr->save_now(file);
  auto info = inspect_autosave(file, error);
  REQUIRE_MESSAGE(info.has_value(), error);
  CHECK(info->step == 7);
  CHECK(info->epoch == 0);
  CHECK(info->data_name == "synthetic");
  CHECK(info->model == small_model());
  CHECK(info->model_text == "mlp 64-32-2, bernoulli");
  CHECK(info->saved_at.size() == 16);  // "YYYY-MM-DD HH:MM"
  CHECK(info->age_s >= -5);
  CHECK(info->age_s < 600);

  // Damaged: not offered, and the message names the file.
  Bytes b = read_all(file);
  write_all(file, Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(b.size() / 3)));
  CHECK_FALSE(inspect_autosave(file, error).has_value());
  CHECK_MESSAGE(has(error, file.string()), error);
  CHECK_MESSAGE(has(error, "truncated"), error);

  // "Start fresh" moves it aside; the moved file is still a good checkpoint.
  write_all(file, b);
  move_autosave_aside(file, aside);
  CHECK_FALSE(fs::exists(file));
  CHECK(inspect_autosave(aside, error).has_value());
  const std::string m = error_of([&] { move_autosave_aside(file, aside); });
  CHECK_MESSAGE(has(m, "could not move the autosave " + file.string()), m);
}

TEST_CASE("autosave: a shorter run never replaces a longer one without keeping it") {
  TempDir dir("autosave");
  const auto file = autosave_file(dir.path), aside = autosave_aside_file(dir.path);
  CHECK(keep_longer_autosave(file, aside, 5).empty());  // none there: nothing to keep

  auto longer = trained(12);
  longer->save_now(file);
  CHECK(keep_longer_autosave(file, aside, 20).empty());  // the new one holds more: replace it
  CHECK(fs::exists(file));

  // A 5-step run would replace the 12-step autosave: the 12 steps go to autosave.previous.
  CHECK(keep_longer_autosave(file, aside, 5) == aside);
  CHECK_FALSE(fs::exists(file));
  CHECK(load_checkpoint(aside).step == 12);

  // Another short run (3 steps) after a 5-step one: the 12 steps stay in autosave.previous and the
  // 5 steps are kept beside it under their step.
  auto shorter = trained(5);
  shorter->save_now(file);
  const auto kept = keep_longer_autosave(file, aside, 3);
  CHECK(kept == dir.path / "autosave.step5.vaelab");
  CHECK(load_checkpoint(aside).step == 12);
  CHECK(load_checkpoint(kept).step == 5);

  // "Start fresh" (step −1: always keep it) over a longer autosave.previous keeps both.
  shorter->save_now(file);
  CHECK(keep_longer_autosave(file, aside, -1) == dir.path / "autosave.step5.vaelab");
  CHECK(load_checkpoint(aside).step == 12);

  // A file that cannot be read is kept too (it cannot be told to hold less).
  write_all(file, Bytes{1, 2, 3});
  CHECK(keep_longer_autosave(file, aside, 1000) == dir.path / "autosave.unreadable.vaelab");
  CHECK_FALSE(fs::exists(file));
  CHECK(load_checkpoint(aside).step == 12);
}

TEST_CASE("autosave: the offer shows the epoch as the status line does, and whether the run was paused") {
  CHECK(epoch_in_progress(0, false) == 1);  // the status line counts the epoch in progress
  CHECK(epoch_in_progress(3, false) == 4);
  CHECK(epoch_in_progress(3, true) == 3);   // a finished run shows its last one
  TempDir dir("autosave");
  const auto file = autosave_file(dir.path), aside = autosave_aside_file(dir.path);
  auto tr = trained(4);
  tr->save_now(file);
  std::string error;
  CHECK_FALSE(inspect_autosave(file, error)->paused);
  note_autosave_paused(file, true);
  CHECK(inspect_autosave(file, error)->paused);
  move_autosave_aside(file, aside);  // the marker goes with it
  CHECK(inspect_autosave(aside, error)->paused);
  CHECK_FALSE(fs::exists(autosave_paused_marker(file)));
  note_autosave_paused(aside, false);
  CHECK_FALSE(inspect_autosave(aside, error)->paused);
}

TEST_CASE("autosave: one instance owns autosave.vaelab and another autosaves beside it under its own name") {
  TempDir dir("autosave");
  {
    AutosaveLock first(dir.path);
    CHECK(first.owned());
    AutosaveLock second(dir.path);  // another open file: the flock refuses it as for another process
    CHECK_FALSE(second.owned());
    CHECK(second.held_elsewhere());
    CHECK(second.error().empty());
    CHECK(instance_autosave_file(dir.path, first.owned(), 100) == autosave_file(dir.path));
    CHECK(instance_autosave_file(dir.path, second.owned(), 4242) == dir.path / "autosave-4242.vaelab");
  }
  AutosaveLock after(dir.path);  // released with its owner
  CHECK(after.owned());
}

TEST_CASE("autosave: a lock that cannot be made says why, and is not taken for another instance") {
  TempDir dir("autosave");
  const auto not_a_folder = dir / "file";
  std::ofstream(not_a_folder) << "x";  // a file where the folder should be (root ignores permissions)
  AutosaveLock lock(not_a_folder);
  CHECK_FALSE(lock.owned());
  CHECK_FALSE(lock.held_elsewhere());
  CHECK_MESSAGE(lock.error().find("cannot open " + (not_a_folder / "autosave.lock").string()) == 0, lock.error());
}

TEST_CASE("autosave: the offer lists the autosaves other instances left beside the main one, newest first") {
  TempDir dir("autosave");
  CHECK(resumable_autosaves(dir.path).empty());
  auto tr = trained(5);
  // 999999999 is above any pid_max: no process runs under it. This process's own pid is running.
  const fs::path gone_old = dir / "autosave-999999998.vaelab", gone_new = dir / "autosave-999999999.vaelab";
  const fs::path running = instance_autosave_file(dir.path, false, static_cast<long>(::getpid()));
  for (const fs::path& f : {gone_old, gone_new, running}) tr->save_now(f);
  fs::last_write_time(gone_old, fs::last_write_time(gone_new) - 1h);
  write_all(dir / "autosave-12x.vaelab", Bytes{1});       // not an instance's name
  write_all(dir / "autosave-999999997.previous.vaelab", Bytes{1});  // a kept one: not offered
  CHECK(resumable_autosaves(dir.path) == std::vector<fs::path>{gone_new, gone_old});
  tr->save_now(autosave_file(dir.path));
  CHECK(resumable_autosaves(dir.path) == std::vector<fs::path>{autosave_file(dir.path), gone_new, gone_old});

  CHECK(autosave_instance_pid(gone_new) == 999999999);
  CHECK(autosave_instance_pid(autosave_file(dir.path)) == 0);
  CHECK(autosave_instance_pid(dir / "autosave-.vaelab") == 0);
  CHECK(autosave_instance_pid(dir / "autosave-1.previous.vaelab") == 0);
  CHECK(instance_autosave_aside(gone_new) == dir / "autosave-999999999.previous.vaelab");

  // Each offer names its file and what it holds; resuming either is a load of that file.
  std::string error;
  for (const fs::path& f : resumable_autosaves(dir.path)) {
    const auto info = inspect_autosave(f, error);
    REQUIRE_MESSAGE(info.has_value(), error);
    CHECK(info->file == f);
    CHECK(info->step == 5);
    CHECK(info->saved_at.size() == 16);
  }
  auto other = trained(2);
  other->load_now(gone_new);
  CHECK(other->snapshot()->step == 5);
  // Once resumed or declined, an instance's autosave is kept aside and not offered again.
  move_autosave_aside(gone_new, instance_autosave_aside(gone_new));
  CHECK(resumable_autosaves(dir.path) == std::vector<fs::path>{autosave_file(dir.path), gone_old});
}

TEST_CASE("autosave: after a divergence the autosave holds the restored finite weights") {
  TrainerOptions opt;
  opt.poison_at_step = 4;
  opt.publish_interval_ms = 0;  // publish every step, so finite weights from step 3 exist
  opt.display_points = 0;
  auto tr = std::make_unique<Trainer>(synthetic_data(), small_model(), small_train(), opt);
  tr->start();
  REQUIRE(wait_for(*tr, [](const Snapshot& s) {
    for (const auto& l : s.log)
      if (l.severity == Severity::Error && has(l.text, "diverged")) return s.state == TrainerState::Paused;
    return false;
  }));
  tr->request_stop();
  tr->join();
  TempDir dir("autosave");
  const auto file = autosave_file(dir.path);
  tr->save_now(file);
  const TrainingState s = load_checkpoint(file);
  CHECK(std::all_of(s.params.begin(), s.params.end(), [](float v) { return std::isfinite(v); }));
  CHECK(s.step == 4);
}

TEST_CASE("autosave: descriptions for the offer") {
  ModelConfig m;
  m.hidden = {512, 256};
  m.latent = 20;
  CHECK(describe_model(m) == "mlp 784-512-256-20, bernoulli");
  m.family = ModelFamily::Conv;
  m.likelihood = Likelihood::GaussianFixed;
  CHECK(describe_model(m) == "conv 28×28 → 20, gaussian");
  m.family = ModelFamily::Gmvae;
  m.hidden = {400};
  m.latent = 10;
  m.likelihood = Likelihood::Bernoulli;
  CHECK(describe_model(m) == "gmvae 784-400-10 (K 10), bernoulli");
  CHECK(describe_age(5) == "just now");
  CHECK(describe_age(60) == "1 minute ago");
  CHECK(describe_age(3 * 60 + 59) == "3 minutes ago");
  CHECK(describe_age(2 * 3600) == "2 hours ago");
  CHECK(describe_age(3 * 86400) == "3 days ago");
}
