// Tests for core/run_follow: the flat JSON reader, and a RunFollower driven by a writer in the
// test that does what run_writer.py does (atomic weights, appended metrics lines, a replaced
// metrics file, a finished line), plus the ways a run folder goes wrong. Not the app's UI.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <string>

#include "core/objective.hpp"
#include "core/run_follow.hpp"
#include "core/safetensors.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;
using namespace std::chrono_literals;

namespace {

// Everything a follower reported over several polls, as a caller would keep it.
struct Seen {
  std::vector<MetricsRecord> metrics;
  std::vector<FollowedWeights> weights;
  std::vector<std::string> problems;
  int restarts = 0;
  bool finished = false;

  void add(FollowUpdate u) {
    if (u.metrics_restarted) {
      ++restarts;
      metrics.clear();
      finished = false;
    }
    for (auto& r : u.metrics) metrics.push_back(std::move(r));
    if (u.weights) weights.push_back(std::move(*u.weights));
    for (auto& p : u.problems) problems.push_back(std::move(p));
    finished = finished || u.finished;
  }
  bool problem_with(const std::string& part) const {
    for (const auto& p : problems)
      if (has(p, part)) return true;
    return false;
  }
};

// Polls until done() holds (true) or two seconds pass (false).
template <class Done>
bool follow_until(RunFollower& follower, Seen& seen, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (std::chrono::steady_clock::now() < deadline) {
    seen.add(follower.poll(20ms));
    if (done()) return true;
  }
  return false;
}

// One poll that must report nothing.
void expect_quiet(RunFollower& follower) {
  const FollowUpdate u = follower.poll(30ms);
  CHECK(u.empty());
  for (const auto& p : u.problems) MESSAGE(p);
}

// inotify with a rescan too rare to matter (events alone must drive it), or fast stat() polling.
FollowOptions options_for(FollowMode mode) {
  FollowOptions o;
  o.mode = mode;
  o.poll_interval = 5ms;
  o.inotify_rescan_interval = 1h;
  return o;
}

Model model_with(ModelConfig cfg, std::uint64_t seed) {
  Model m(std::move(cfg));
  m.init(seed);
  return m;
}

SafetensorsFile weights_file(const Model& m, std::int64_t step, double epoch) {
  SafetensorsFile f = export_model(m);
  f.metadata["step"] = std::to_string(step);
  f.metadata["epoch"] = std::to_string(epoch);
  return f;
}

// As run_writer.py does: temp file, fsync, rename over weights.safetensors.
void write_weights(const fs::path& run, const Model& m, std::int64_t step, double epoch = 1) {
  write_safetensors(run / kRunWeightsFile, weights_file(m, step, epoch));
}

void append_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary | std::ios::app);
  out << text;
  out.flush();
  REQUIRE(out.good());
}

// A new file renamed over `file`: another inode, as a fresh start or a resume writes it.
void replace_text(const fs::path& file, const std::string& text) {
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  fs::rename(tmp, file);
}

std::string metrics_line(int step, double test_elbo) {
  return "{\"step\":" + std::to_string(step) + ",\"epoch\":1,\"time\":1700000000.5,\"train_elbo\":-90.5,\"test_elbo\":" +
         std::to_string(test_elbo) + ",\"recon\":-80,\"kl\":null}\n";
}

bool same_params(const Model& a, const Model& b) {
  return a.config() == b.config() && std::equal(a.params().begin(), a.params().end(), b.params().begin());
}

}  // namespace

TEST_CASE("run follow: the flat JSON reader takes scalars and refuses the rest") {
  const FlatJsonObject o = parse_flat_json_object(
      " {\"step\": 120, \"elbo\": -93.25e0, \"kl\": null, \"finished\": true, \"ok\": false,"
      " \"name\": \"a\\\"b\\u00e9\\ud83d\\ude00\\n\", \"tiny\": -0.5E-3} \r\n");
  REQUIRE(o.size() == 7);
  CHECK(o.at("step").kind == JsonScalar::Kind::Number);
  CHECK(o.at("step").number == 120);
  CHECK(o.at("elbo").number == -93.25);
  CHECK(o.at("tiny").number == -0.0005);
  CHECK(o.at("kl").kind == JsonScalar::Kind::Null);
  CHECK(o.at("finished").kind == JsonScalar::Kind::Bool);
  CHECK(o.at("finished").boolean);
  CHECK_FALSE(o.at("ok").boolean);
  CHECK(o.at("name").text == "a\"b\xc3\xa9\xf0\x9f\x98\x80\n");
  CHECK(parse_flat_json_object("{}").empty());

  MetricsRecord rec;
  rec.fields = o;
  CHECK(rec.number("step") == 120);
  CHECK(std::isnan(rec.number("kl")));       // null: a NaN the writer could not put in JSON
  CHECK(std::isnan(rec.number("name")));     // not a number
  CHECK(std::isnan(rec.number("missing")));
  CHECK(rec.finished());

  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":1,\"a\":2}"); }), "appears twice"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":[1]}"); }), "object or array"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":{}}"); }), "object or array"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":NaN}"); }), "not a JSON value"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":1e999}"); }), "range"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"step\":12,\"te"); }), "not closed"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":1} x"); }), "text follows"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":1,}"); }), "expected a string"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":\"\\ud800\"}"); }), "surrogate"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":\"\\q\"}"); }), "escape"));
  CHECK(has(error_of([] { parse_flat_json_object("{\"a\":\"x\ty\"}"); }), "control character"));
  for (const char* bad : {"", "[]", "{\"a\":01}", "{\"a\":+1}", "{\"a\":.5}", "{\"a\":1.}", "{\"a\":1e}", "{\"a\":tru}",
                          "{a:1}", "{\"a\" 1}"})
    CHECK_THROWS_AS(parse_flat_json_object(bad), Error);
}

TEST_CASE("run follow: a missing then empty folder is waited for until files appear") {
  TempDir dir("follow");
  const fs::path run = dir / "run";
  RunFollower follower(run, options_for(FollowMode::Auto));
  expect_quiet(follower);
  CHECK_FALSE(follower.folder_present());
  CHECK_FALSE(follower.seconds_since_change().has_value());

  fs::create_directory(run);
  Seen seen;
  REQUIRE(follow_until(follower, seen, [&] { return follower.folder_present(); }));
  CHECK(follower.using_inotify());
  expect_quiet(follower);  // an empty folder: nothing to report
  CHECK(follower.last_weights() == nullptr);

  append_text(run / kRunMetricsFile, metrics_line(100, -120.5));
  const Model m = model_with(small_model(), 3);
  write_weights(run, m, 100, 0.5);
  REQUIRE(follow_until(follower, seen, [&] { return seen.metrics.size() == 1 && seen.weights.size() == 1; }));
  CHECK(seen.problems.empty());
  CHECK(seen.restarts == 0);
  CHECK(seen.metrics[0].line == 1);
  CHECK(seen.metrics[0].number("step") == 100);
  CHECK(seen.metrics[0].number("test_elbo") == -120.5);
  const FollowedWeights& w = seen.weights[0];
  CHECK(w.step == 100);
  CHECK(w.epoch == 0.5);
  CHECK_FALSE(w.config_changed);
  CHECK(same_params(*w.model, m));
  REQUIRE(follower.last_weights() != nullptr);
  CHECK(follower.last_weights()->step == 100);
  CHECK_FALSE(follower.finished());
  REQUIRE(follower.seconds_since_change().has_value());
  CHECK(*follower.seconds_since_change() < 60);
}

TEST_CASE("run follow: atomic replacement of the weights is picked up") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    TempDir dir("follow");
    const fs::path run = dir / "run";
    fs::create_directory(run);
    const Model first = model_with(small_model(), 1), second = model_with(small_model(), 2),
                third = model_with(small_model(), 3);
    write_weights(run, first, 10);
    RunFollower follower(run, options_for(mode));
    Seen seen;
    REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 1; }));
    CHECK(follower.using_inotify() == (mode == FollowMode::Auto));
    CHECK(same_params(*seen.weights[0].model, first));
    expect_quiet(follower);  // the same file is not delivered twice

    for (const auto& [model, step] : {std::pair{&second, 20}, std::pair{&third, 30}}) {
      write_weights(run, *model, step);
      const std::size_t before = seen.weights.size();
      REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == before + 1; }));
      CHECK(seen.weights.back().step == step);
      CHECK(same_params(*seen.weights.back().model, *model));
    }
    CHECK(seen.problems.empty());
    CHECK(follower.last_weights()->step == 30);
  }
}

TEST_CASE("run follow: half-written weights are reported and the last good model stays") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    TempDir dir("follow");
    const fs::path run = dir / "run";
    fs::create_directory(run);
    const Model good = model_with(small_model(), 1), later = model_with(small_model(), 2);
    write_weights(run, good, 10);
    RunFollower follower(run, options_for(mode));
    Seen seen;
    REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 1; }));

    const auto bytes = encode_safetensors(weights_file(later, 20, 1));
    write_all(run / "weights.tmp", Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2)));
    fs::rename(run / "weights.tmp", run / kRunWeightsFile);
    REQUIRE(follow_until(follower, seen, [&] { return !seen.problems.empty(); }));
    CHECK(seen.weights.size() == 1);
    CHECK(seen.problem_with("half-written or corrupt"));
    CHECK(seen.problem_with("the model from step 10 stays"));
    REQUIRE(follower.last_weights() != nullptr);
    CHECK(follower.last_weights()->step == 10);
    CHECK(same_params(*follower.last_weights()->model, good));
    expect_quiet(follower);  // reported once, not at every poll

    write_weights(run, later, 20);
    REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 2; }));
    CHECK(seen.weights[1].step == 20);
    CHECK(follower.last_weights()->step == 20);
  }
}

TEST_CASE("run follow: a truncated last metrics line is skipped until it is complete") {
  TempDir dir("follow");
  const fs::path run = dir / "run";
  fs::create_directory(run);
  const fs::path metrics = run / kRunMetricsFile;
  const std::string second = metrics_line(200, -101.25);
  append_text(metrics, metrics_line(100, -110) + second.substr(0, 25));
  RunFollower follower(run, options_for(FollowMode::Auto));
  Seen seen;
  REQUIRE(follow_until(follower, seen, [&] { return seen.metrics.size() == 1; }));
  expect_quiet(follower);  // the cut line stays unread
  CHECK(seen.metrics.size() == 1);

  append_text(metrics, second.substr(25) + "{\"step\": oops}\n" + metrics_line(300, -100));
  REQUIRE(follow_until(follower, seen, [&] { return seen.metrics.size() == 3; }));
  CHECK(seen.metrics[1].line == 2);
  CHECK(seen.metrics[1].number("step") == 200);
  CHECK(seen.metrics[1].number("test_elbo") == -101.25);
  CHECK(seen.metrics[2].line == 4);
  CHECK(seen.metrics[2].number("step") == 300);
  CHECK(seen.problem_with("line 3 is skipped"));  // the broken complete line, reported and passed over
  CHECK(seen.restarts == 0);
}

TEST_CASE("run follow: a metrics file replaced by a shorter one is read again from its start") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    TempDir dir("follow");
    const fs::path run = dir / "run";
    fs::create_directory(run);
    const fs::path metrics = run / kRunMetricsFile;
    replace_text(metrics, metrics_line(100, -110) + metrics_line(200, -105) + metrics_line(300, -101));
    RunFollower follower(run, options_for(mode));
    Seen seen;
    REQUIRE(follow_until(follower, seen, [&] { return seen.metrics.size() == 3; }));
    CHECK(seen.restarts == 0);

    replace_text(metrics, metrics_line(100, -110));  // a resume from step 100
    REQUIRE(follow_until(follower, seen, [&] { return seen.restarts == 1; }));
    REQUIRE(seen.metrics.size() == 1);
    CHECK(seen.metrics[0].line == 1);
    CHECK(seen.metrics[0].number("step") == 100);

    append_text(metrics, metrics_line(150, -108));  // and the resumed run goes on
    REQUIRE(follow_until(follower, seen, [&] { return seen.metrics.size() == 2; }));
    CHECK(seen.metrics[1].number("step") == 150);
    CHECK(seen.restarts == 1);
    CHECK(seen.problems.empty());
  }
}

TEST_CASE("run follow: the finished line ends the run after its final weights") {
  TempDir dir("follow");
  const fs::path run = dir / "run";
  fs::create_directory(run);
  const fs::path metrics = run / kRunMetricsFile;
  append_text(metrics, metrics_line(100, -110));
  RunFollower follower(run, options_for(FollowMode::Auto));
  Seen seen;
  REQUIRE(follow_until(follower, seen, [&] { return seen.metrics.size() == 1; }));
  CHECK_FALSE(follower.finished());

  const Model final_model = model_with(small_model(), 9);
  write_weights(run, final_model, 500, 5);  // as RunWriter.finish: the weights, then the line
  append_text(metrics, "{\"step\":500,\"epoch\":5,\"time\":1700000100,\"finished\":true,\"test_elbo\":-99}\n");
  REQUIRE(follow_until(follower, seen, [&] { return seen.finished; }));
  CHECK(follower.finished());
  REQUIRE_FALSE(seen.weights.empty());
  CHECK(seen.weights.back().step == 500);  // read no later than the poll that saw the line
  CHECK(same_params(*seen.weights.back().model, final_model));
  CHECK(seen.metrics.back().finished());

  replace_text(metrics, "");  // a fresh start in the same folder: not finished any more
  REQUIRE(follow_until(follower, seen, [&] { return seen.restarts == 1; }));
  CHECK_FALSE(follower.finished());
  CHECK(seen.metrics.empty());
}

TEST_CASE("run follow: a deleted folder is reported and then waited for") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    TempDir dir("follow");
    const fs::path run = dir / "run";
    fs::create_directory(run);
    const Model m = model_with(small_model(), 1);
    write_weights(run, m, 10);
    append_text(run / kRunMetricsFile, metrics_line(10, -120));
    RunFollower follower(run, options_for(mode));
    Seen seen;
    REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 1 && seen.metrics.size() == 1; }));

    fs::remove_all(run);
    REQUIRE(follow_until(follower, seen, [&] { return !follower.folder_present(); }));
    CHECK(seen.problem_with("was deleted"));
    CHECK(seen.problem_with("the last model stays"));
    REQUIRE(follower.last_weights() != nullptr);
    CHECK(follower.last_weights()->step == 10);
    const std::size_t problems = seen.problems.size();
    expect_quiet(follower);  // said once

    fs::create_directory(run);  // the run starts again in a new folder of the same name
    append_text(run / kRunMetricsFile, metrics_line(5, -150));
    write_weights(run, model_with(small_model(), 2), 5);
    REQUIRE(follow_until(follower, seen, [&] { return seen.restarts == 1 && seen.weights.size() == 2; }));
    CHECK(follower.folder_present());
    REQUIRE(follow_until(follower, seen, [&] { return seen.metrics.size() == 1; }));
    CHECK(seen.metrics[0].number("step") == 5);
    CHECK(seen.weights[1].step == 5);
    CHECK(seen.problems.size() == problems);
  }
}

TEST_CASE("run follow: a model whose shape changes is delivered flagged") {
  TempDir dir("follow");
  const fs::path run = dir / "run";
  fs::create_directory(run);
  write_weights(run, model_with(small_model(), 1), 10);
  RunFollower follower(run, options_for(FollowMode::Auto));
  Seen seen;
  REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 1; }));
  CHECK_FALSE(seen.weights[0].config_changed);

  ModelConfig wider = small_model();
  wider.latent = 3;
  const Model changed = model_with(wider, 2);
  write_weights(run, changed, 20);
  REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 2; }));
  CHECK(seen.weights[1].config_changed);
  CHECK(seen.weights[1].model->latent() == 3);
  CHECK(seen.problem_with("changed from mlp 8×8, hidden 32, latent 2, bernoulli to mlp 8×8, hidden 32, latent 3"));

  write_weights(run, model_with(wider, 3), 30);  // later files are compared with the new shape
  REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 3; }));
  CHECK_FALSE(seen.weights[2].config_changed);
  CHECK(seen.problems.size() == 1);
}

TEST_CASE("run follow: a FIFO named weights.safetensors is refused without blocking") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    TempDir dir("follow");
    const fs::path run = dir / "run";
    fs::create_directory(run);
    RunFollower follower(run, options_for(mode));
    expect_quiet(follower);
    REQUIRE(::mkfifo((run / kRunWeightsFile).c_str(), 0600) == 0);
    REQUIRE(::mkfifo((run / kRunMetricsFile).c_str(), 0600) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    Seen seen;
    REQUIRE(follow_until(follower, seen, [&] { return seen.problems.size() == 2; }));
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    CHECK(seen.problem_with("weights.safetensors is a FIFO, not a regular file: not opened"));
    CHECK(seen.problem_with("metrics.jsonl is a FIFO, not a regular file: not read"));
    CHECK(follower.last_weights() == nullptr);
    expect_quiet(follower);

    fs::remove(run / kRunWeightsFile);  // a real file in its place is read
    write_weights(run, model_with(small_model(), 1), 7);
    REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 1; }));
    CHECK(seen.weights[0].step == 7);
  }
}

TEST_CASE("run follow: weights larger than the limit are refused unread") {
  TempDir dir("follow");
  const fs::path run = dir / "run";
  fs::create_directory(run);
  write_weights(run, model_with(small_model(), 1), 10);
  FollowOptions o = options_for(FollowMode::Polling);
  o.max_weights_bytes = 1000;  // the 64-32-2 model takes about 21 kB
  RunFollower follower(run, o);
  Seen seen;
  REQUIRE(follow_until(follower, seen, [&] { return !seen.problems.empty(); }));
  CHECK(seen.problem_with("more than the 1000 allowed: not read"));
  CHECK(seen.weights.empty());
}

TEST_CASE("run follow: the time since the last change comes from the files") {
  TempDir dir("follow");
  const fs::path run = dir / "run";
  fs::create_directory(run);
  append_text(run / kRunMetricsFile, metrics_line(10, -120));
  write_weights(run, model_with(small_model(), 1), 10);
  const std::time_t hour_ago = std::time(nullptr) - 3600;
  const struct timespec times[2] = {{hour_ago, 0}, {hour_ago, 0}};
  for (const char* name : {kRunMetricsFile, kRunWeightsFile})
    REQUIRE(::utimensat(AT_FDCWD, (run / name).c_str(), times, 0) == 0);
  RunFollower follower(run, options_for(FollowMode::Polling));
  Seen seen;
  REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 1; }));
  const auto now = std::chrono::system_clock::from_time_t(hour_ago + 3600);
  REQUIRE(follower.seconds_since_change(now).has_value());
  CHECK(*follower.seconds_since_change(now) == doctest::Approx(3600).epsilon(0.001));
  CHECK(*follower.seconds_since_change(std::chrono::system_clock::from_time_t(hour_ago - 10)) == 0);  // clock skew
}

TEST_CASE("run follow: a followed model evaluates as vaelab-train prints it") {
  TempDir dir("follow");
  const fs::path run = dir / "run";
  fs::create_directory(run);
  const auto data = synthetic_data(10, 40);
  const Model m = model_with(small_model(), 4);
  write_weights(run, m, 10);
  RunFollower follower(run, options_for(FollowMode::Auto));
  Seen seen;
  REQUIRE(follow_until(follower, seen, [&] { return seen.weights.size() == 1; }));
  const Model& followed = *seen.weights[0].model;
  REQUIRE(followed.config().image_h == data->test.height);
  REQUIRE(followed.config().image_w == data->test.width);
  EvalOptions eo;
  eo.iwae_k = 8;
  const Evaluation got = evaluate(followed, data->test, {}, eo);
  const Evaluation want = evaluate(m, data->test, {}, eo);
  CHECK(got.count == 40);
  CHECK(got.elbo == want.elbo);
  CHECK(got.recon == want.recon);
  CHECK(got.kl == want.kl);
  CHECK(got.iwae == want.iwae);
  CHECK(got.elbo == doctest::Approx(got.recon - got.kl));
  CHECK(got.iwae >= got.elbo - 1.0);
}
