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

// inotify with a rescan too rare to matter (events alone must drive it), or fast stat() polling.
FollowOptions options_for(FollowMode mode) {
  FollowOptions o;
  o.mode = mode;
  o.poll_interval = 5ms;
  o.inotify_rescan_interval = 1h;
  return o;
}

// A run folder in a fresh temp folder, a follower on it, and what the follower has reported.
struct FollowedRun {
  TempDir dir{"follow"};
  fs::path run = dir / "run";
  RunFollower follower;
  Seen seen;

  explicit FollowedRun(FollowOptions options, bool create_folder = true) : follower(run, options) {
    if (create_folder) fs::create_directory(run);
  }
  explicit FollowedRun(FollowMode mode = FollowMode::Auto, bool create_folder = true)
      : FollowedRun(options_for(mode), create_folder) {}

  fs::path file(const char* name) const { return run / name; }

  // Polls until done() holds (true) or two seconds pass (false).
  template <class Done>
  bool until(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < deadline) {
      seen.add(follower.poll(20ms));
      if (done()) return true;
    }
    return false;
  }
  bool until_weights(std::size_t n) {
    return until([&] { return seen.weights.size() == n; });
  }

  // One poll that must report nothing.
  void expect_quiet() {
    const FollowUpdate u = follower.poll(30ms);
    CHECK(u.empty());
    for (const auto& p : u.problems) MESSAGE(p);
  }
};

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
  FollowedRun t(FollowMode::Auto, false);
  t.expect_quiet();
  CHECK_FALSE(t.follower.folder_present());
  CHECK(RunFollower(t.run.string() + "/").folder() == t.run);
  CHECK_FALSE(t.follower.seconds_since_change().has_value());

  fs::create_directory(t.run);
  REQUIRE(t.until([&] { return t.follower.folder_present(); }));
  CHECK(t.follower.using_inotify());
  t.expect_quiet();  // an empty folder: nothing to report
  CHECK(t.follower.last_weights() == nullptr);

  append_text(t.file(kRunMetricsFile), metrics_line(100, -120.5));
  const Model m = model_with(small_model(), 3);
  write_weights(t.run, m, 100, 0.5);
  REQUIRE(t.until([&] { return t.seen.metrics.size() == 1 && t.seen.weights.size() == 1; }));
  CHECK(t.seen.problems.empty());
  CHECK(t.seen.restarts == 0);
  CHECK(t.seen.metrics[0].line == 1);
  CHECK(t.seen.metrics[0].number("step") == 100);
  CHECK(t.seen.metrics[0].number("test_elbo") == -120.5);
  const FollowedWeights& w = t.seen.weights[0];
  CHECK(w.step == 100);
  CHECK(w.epoch == 0.5);
  CHECK_FALSE(w.config_changed);
  CHECK(same_params(*w.model, m));
  REQUIRE(t.follower.last_weights() != nullptr);
  CHECK(t.follower.last_weights()->step == 100);
  CHECK_FALSE(t.follower.finished());
  REQUIRE(t.follower.seconds_since_change().has_value());
  CHECK(*t.follower.seconds_since_change() < 60);
}

TEST_CASE("run follow: atomic replacement of the weights is picked up") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    FollowedRun t(mode);
    const Model first = model_with(small_model(), 1), second = model_with(small_model(), 2),
                third = model_with(small_model(), 3);
    write_weights(t.run, first, 10);
    REQUIRE(t.until_weights(1));
    CHECK(t.follower.using_inotify() == (mode == FollowMode::Auto));
    CHECK(same_params(*t.seen.weights[0].model, first));
    t.expect_quiet();  // the same file is not delivered twice

    for (const auto& [model, step] : {std::pair{&second, 20}, std::pair{&third, 30}}) {
      write_weights(t.run, *model, step);
      REQUIRE(t.until_weights(step / 10));
      CHECK(t.seen.weights.back().step == step);
      CHECK(same_params(*t.seen.weights.back().model, *model));
    }
    CHECK(t.seen.problems.empty());
    CHECK(t.follower.last_weights()->step == 30);
  }
}

TEST_CASE("run follow: half-written weights are reported and the last good model stays") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    FollowedRun t(mode);
    const Model good = model_with(small_model(), 1), later = model_with(small_model(), 2);
    write_weights(t.run, good, 10);
    REQUIRE(t.until_weights(1));

    const auto bytes = encode_safetensors(weights_file(later, 20, 1));
    write_all(t.file("weights.tmp"), Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2)));
    fs::rename(t.file("weights.tmp"), t.file(kRunWeightsFile));
    REQUIRE(t.until([&] { return !t.seen.problems.empty(); }));
    CHECK(t.seen.weights.size() == 1);
    CHECK(t.seen.problem_with("half-written or corrupt"));
    CHECK(t.seen.problem_with("the model from step 10 stays"));
    REQUIRE(t.follower.last_weights() != nullptr);
    CHECK(t.follower.last_weights()->step == 10);
    CHECK(same_params(*t.follower.last_weights()->model, good));
    t.expect_quiet();  // reported once, not at every poll

    write_weights(t.run, later, 20);
    REQUIRE(t.until_weights(2));
    CHECK(t.seen.weights[1].step == 20);
    CHECK(t.follower.last_weights()->step == 20);
  }
}

TEST_CASE("run follow: a truncated last metrics line is skipped until it is complete") {
  FollowedRun t;
  const std::string second = metrics_line(200, -101.25);
  append_text(t.file(kRunMetricsFile), metrics_line(100, -110) + second.substr(0, 25));
  REQUIRE(t.until([&] { return t.seen.metrics.size() == 1; }));
  t.expect_quiet();  // the cut line stays unread
  CHECK(t.seen.metrics.size() == 1);

  append_text(t.file(kRunMetricsFile), second.substr(25) + "{\"step\": oops}\n" + metrics_line(300, -100));
  REQUIRE(t.until([&] { return t.seen.metrics.size() == 3; }));
  CHECK(t.seen.metrics[1].line == 2);
  CHECK(t.seen.metrics[1].number("step") == 200);
  CHECK(t.seen.metrics[1].number("test_elbo") == -101.25);
  CHECK(t.seen.metrics[2].line == 4);
  CHECK(t.seen.metrics[2].number("step") == 300);
  CHECK(t.seen.problem_with("line 3 is skipped"));  // the broken complete line, reported and passed over
  CHECK(t.seen.restarts == 0);
}

TEST_CASE("run follow: a metrics line longer than the limit is skipped as it arrives") {
  FollowOptions o = options_for(FollowMode::Auto);
  o.max_metrics_line = 64;
  FollowedRun t(o);
  const fs::path metrics = t.file(kRunMetricsFile);
  const std::string long_line = "{\"note\":\"" + std::string(100, 'x') + "\"}\n";
  append_text(metrics, long_line.substr(0, 40));  // within the limit so far: waits for the rest
  t.expect_quiet();
  append_text(metrics, long_line.substr(40, 40));
  REQUIRE(t.until([&] { return !t.seen.problems.empty(); }));
  CHECK(t.seen.problem_with("line 1 is longer than 64 bytes: skipped"));
  append_text(metrics, long_line.substr(80) + "{\"step\":7}\n");
  REQUIRE(t.until([&] { return t.seen.metrics.size() == 1; }));
  CHECK(t.seen.metrics[0].line == 2);
  CHECK(t.seen.metrics[0].number("step") == 7);
  CHECK(t.seen.problems.size() == 1);
}

TEST_CASE("run follow: a metrics file replaced by a shorter one is read again from its start") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    FollowedRun t(mode);
    const fs::path metrics = t.file(kRunMetricsFile);
    replace_text(metrics, metrics_line(100, -110) + metrics_line(200, -105) + metrics_line(300, -101));
    REQUIRE(t.until([&] { return t.seen.metrics.size() == 3; }));
    CHECK(t.seen.restarts == 0);

    replace_text(metrics, metrics_line(100, -110));  // a resume from step 100
    REQUIRE(t.until([&] { return t.seen.restarts == 1; }));
    REQUIRE(t.seen.metrics.size() == 1);
    CHECK(t.seen.metrics[0].line == 1);
    CHECK(t.seen.metrics[0].number("step") == 100);

    append_text(metrics, metrics_line(150, -108));  // and the resumed run goes on
    REQUIRE(t.until([&] { return t.seen.metrics.size() == 2; }));
    CHECK(t.seen.metrics[1].number("step") == 150);
    CHECK(t.seen.restarts == 1);

    // A fresh start whose writer got ahead before the next look: longer than the old file, yet new.
    std::string fresh;
    for (int step = 1; step <= 4; ++step) fresh += metrics_line(step, -200 + step);
    replace_text(metrics, fresh);
    REQUIRE(t.until([&] { return t.seen.restarts == 2 && t.seen.metrics.size() == 4; }));
    CHECK(t.seen.metrics[0].number("step") == 1);
    CHECK(t.seen.metrics[3].number("step") == 4);
    CHECK(t.seen.problems.empty());
  }
}

TEST_CASE("run follow: the finished line ends the run after its final weights") {
  FollowedRun t;
  const fs::path metrics = t.file(kRunMetricsFile);
  append_text(metrics, metrics_line(100, -110));
  REQUIRE(t.until([&] { return t.seen.metrics.size() == 1; }));
  CHECK_FALSE(t.follower.finished());

  const Model final_model = model_with(small_model(), 9);
  write_weights(t.run, final_model, 500, 5);  // as RunWriter.finish: the weights, then the line
  append_text(metrics, "{\"step\":500,\"epoch\":5,\"time\":1700000100,\"finished\":true,\"test_elbo\":-99}\n");
  REQUIRE(t.until([&] { return t.seen.finished; }));
  CHECK(t.follower.finished());
  REQUIRE_FALSE(t.seen.weights.empty());
  CHECK(t.seen.weights.back().step == 500);  // read no later than the poll that saw the line
  CHECK(same_params(*t.seen.weights.back().model, final_model));
  CHECK(t.seen.metrics.back().finished());

  replace_text(metrics, "");  // a fresh start in the same folder: not finished any more
  REQUIRE(t.until([&] { return t.seen.restarts == 1; }));
  CHECK_FALSE(t.follower.finished());
  CHECK(t.seen.metrics.empty());
}

TEST_CASE("run follow: a deleted folder is reported and then waited for") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    FollowedRun t(mode);
    write_weights(t.run, model_with(small_model(), 1), 10);
    append_text(t.file(kRunMetricsFile), metrics_line(10, -120));
    REQUIRE(t.until([&] { return t.seen.weights.size() == 1 && t.seen.metrics.size() == 1; }));

    fs::remove_all(t.run);
    REQUIRE(t.until([&] { return !t.follower.folder_present(); }));
    CHECK(t.seen.problem_with("was deleted"));
    CHECK(t.seen.problem_with("the last model stays"));
    REQUIRE(t.follower.last_weights() != nullptr);
    CHECK(t.follower.last_weights()->step == 10);
    const std::size_t problems = t.seen.problems.size();
    t.expect_quiet();  // said once

    fs::create_directory(t.run);  // the run starts again in a new folder of the same name
    append_text(t.file(kRunMetricsFile), metrics_line(5, -150));
    write_weights(t.run, model_with(small_model(), 2), 5);
    REQUIRE(t.until([&] { return t.seen.restarts == 1 && t.seen.weights.size() == 2; }));
    CHECK(t.follower.folder_present());
    REQUIRE(t.until([&] { return t.seen.metrics.size() == 1; }));
    CHECK(t.seen.metrics[0].number("step") == 5);
    CHECK(t.seen.weights[1].step == 5);
    CHECK(t.seen.problems.size() == problems);
  }
}

TEST_CASE("run follow: a model whose shape changes is delivered flagged") {
  FollowedRun t;
  write_weights(t.run, model_with(small_model(), 1), 10);
  REQUIRE(t.until_weights(1));
  CHECK_FALSE(t.seen.weights[0].config_changed);

  ModelConfig wider = small_model();
  wider.latent = 3;
  write_weights(t.run, model_with(wider, 2), 20);
  REQUIRE(t.until_weights(2));
  CHECK(t.seen.weights[1].config_changed);
  CHECK(t.seen.weights[1].model->latent() == 3);
  CHECK(t.seen.problem_with("changed from mlp 8×8, hidden 32, latent 2, bernoulli to mlp 8×8, hidden 32, latent 3"));

  write_weights(t.run, model_with(wider, 3), 30);  // later files are compared with the new shape
  REQUIRE(t.until_weights(3));
  CHECK_FALSE(t.seen.weights[2].config_changed);
  CHECK(t.seen.problems.size() == 1);
}

TEST_CASE("run follow: a FIFO named weights.safetensors is refused without blocking") {
  for (const FollowMode mode : {FollowMode::Auto, FollowMode::Polling}) {
    CAPTURE(static_cast<int>(mode));
    FollowedRun t(mode);
    t.expect_quiet();
    REQUIRE(::mkfifo(t.file(kRunWeightsFile).c_str(), 0600) == 0);
    REQUIRE(::mkfifo(t.file(kRunMetricsFile).c_str(), 0600) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(t.until([&] { return t.seen.problems.size() == 2; }));
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    CHECK(t.seen.problem_with("weights.safetensors is a FIFO, not a regular file: not opened"));
    CHECK(t.seen.problem_with("metrics.jsonl is a FIFO, not a regular file: not read"));
    CHECK(t.follower.last_weights() == nullptr);
    t.expect_quiet();

    fs::remove(t.file(kRunWeightsFile));  // a real file in its place is read
    write_weights(t.run, model_with(small_model(), 1), 7);
    REQUIRE(t.until_weights(1));
    CHECK(t.seen.weights[0].step == 7);
  }
}

TEST_CASE("run follow: weights larger than the limit are refused unread") {
  FollowOptions o = options_for(FollowMode::Polling);
  o.max_weights_bytes = 1000;  // the 64-32-2 model takes about 21 kB
  FollowedRun t(o);
  write_weights(t.run, model_with(small_model(), 1), 10);
  REQUIRE(t.until([&] { return !t.seen.problems.empty(); }));
  CHECK(t.seen.problem_with("more than the 1000 allowed: not read"));
  CHECK(t.seen.weights.empty());
}

TEST_CASE("run follow: the time since the last change comes from the files") {
  FollowedRun t(FollowMode::Polling);
  append_text(t.file(kRunMetricsFile), metrics_line(10, -120));
  write_weights(t.run, model_with(small_model(), 1), 10);
  const std::time_t hour_ago = std::time(nullptr) - 3600;
  const struct timespec times[2] = {{hour_ago, 0}, {hour_ago, 0}};
  for (const char* name : {kRunMetricsFile, kRunWeightsFile})
    REQUIRE(::utimensat(AT_FDCWD, t.file(name).c_str(), times, 0) == 0);
  REQUIRE(t.until_weights(1));
  const auto now = std::chrono::system_clock::from_time_t(hour_ago + 3600);
  REQUIRE(t.follower.seconds_since_change(now).has_value());
  CHECK(*t.follower.seconds_since_change(now) == doctest::Approx(3600).epsilon(0.001));
  CHECK(*t.follower.seconds_since_change(std::chrono::system_clock::from_time_t(hour_ago - 10)) == 0);  // clock skew
}

TEST_CASE("run follow: a followed model evaluates as vaelab-train prints it") {
  FollowedRun t;
  const auto data = synthetic_data(10, 40);
  const Model m = model_with(small_model(), 4);
  write_weights(t.run, m, 10);
  REQUIRE(t.until_weights(1));
  const Model& followed = *t.seen.weights[0].model;
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
