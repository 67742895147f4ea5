// Tests for core/checkpoint: a full round trip, refusal of every truncation and of damaged bytes
// (also through a trainer, whose live state must not change), headers promising gigabytes, version
// and magic checks, and the atomic write's behaviour when it fails. Not resuming (test_trainer).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <sys/resource.h>

#include <chrono>
#include <thread>

#include "core/atomic_file.hpp"
#include "core/checkpoint.hpp"
#include "core/error.hpp"
#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/trainer.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

// Every field away from its default, NaNs where the format must keep them.
TrainingState sample_state() {
  TrainingState s;
  s.model.image_c = 3;
  s.model.image_h = 3;
  s.model.image_w = 4;
  s.model.latent = 2;
  s.model.hidden = {5, 3};
  s.model.likelihood = Likelihood::GaussianLearned;
  s.model.gaussian_sigma = 0.25f;
  s.model.family = ModelFamily::Gmvae;
  s.model.clusters = 3;
  s.train.batch = 7;
  s.train.lr = 3e-4f;
  s.train.beta = 0.5f;
  s.train.warmup_steps = 100;
  s.train.samples = 2;
  s.train.seed = 0xfeedfacecafebeefULL;
  s.train.threads = 3;
  s.train.binarize = Binarize::Dynamic;
  s.train.estimator = Estimator::ScoreFunction;
  Model m(s.model);
  m.init(42);
  s.params.assign(m.params().begin(), m.params().end());
  s.adam.beta1 = 0.8f;
  s.adam.beta2 = 0.99f;
  s.adam.eps = 1e-7f;
  s.adam.t = 17;
  s.adam.m.resize(s.params.size());
  s.adam.v.resize(s.params.size());
  for (std::size_t i = 0; i < s.params.size(); ++i) {
    s.adam.m[i] = 0.001f * static_cast<float>(i);
    s.adam.v[i] = 1e-6f * static_cast<float>(i * i);
  }
  Rng rng(77);
  rng.normal();  // leaves a spare
  s.rng = rng.state();
  s.step = 1234567890123LL;
  s.epoch = 4;
  s.batch_in_epoch = 9;
  s.order = {3, 1, 4, 1, 5, 9, 2, 6};
  s.history.steps = {{1, 0.1f, -200.5f, -190.0f, 10.5f}, {2, 0.2f, -180.25f, -172.0f, 8.25f}};
  EpochRecord e0;
  e0.epoch = 0;
  e0.step = 0;
  e0.test_elbo = -300.0f;
  EpochRecord e1;
  e1.epoch = 1;
  e1.step = 2;
  e1.train_elbo = -185.0f;
  e1.test_elbo = -181.0f;
  e1.test_recon = -170.0f;
  e1.test_kl = 11.0f;
  e1.samples_per_s = 12345.5f;
  e1.kl_per_dim = {3.5f, 7.5f};
  e1.test_iwae = -179.5f;
  e1.test_iwae_elbo = -180.5f;
  e1.iwae_k = 100;
  e1.cluster_acc = 0.625f;
  e1.nmi = 0.5f;
  s.history.epochs = {e0, e1};
  s.history.markers = {{1, "β 1 → 0.5 at step 1"}, {2, ""}};
  s.history.estimators = {{2, 0.5f, 40.0f, 0.25f, 0.0625f}};
  s.data_name = "fashion-mnist";
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void check_same(const TrainingState& a, const TrainingState& b) {
  CHECK(a.model == b.model);
  CHECK(a.train == b.train);
  CHECK(same_bits(a.params, b.params));
  CHECK(a.adam.beta1 == b.adam.beta1);
  CHECK(a.adam.beta2 == b.adam.beta2);
  CHECK(a.adam.eps == b.adam.eps);
  CHECK(a.adam.t == b.adam.t);
  CHECK(same_bits(a.adam.m, b.adam.m));
  CHECK(same_bits(a.adam.v, b.adam.v));
  CHECK(a.rng.s == b.rng.s);
  CHECK(a.rng.spare == b.rng.spare);
  CHECK(a.rng.has_spare == b.rng.has_spare);
  CHECK(a.step == b.step);
  CHECK(a.epoch == b.epoch);
  CHECK(a.batch_in_epoch == b.batch_in_epoch);
  CHECK(a.order == b.order);
  CHECK(a.history == b.history);
  CHECK(a.data_name == b.data_name);
}

bool no_temp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (has(e.path().filename().string(), ".tmp.")) return false;
  return true;
}

}  // namespace

TEST_CASE("checkpoint: save and load keep every field") {
  TempDir dir("checkpoint");
  const TrainingState s = sample_state();
  const auto file = dir / "run.vaelab";
  save_checkpoint(file, s);
  const TrainingState back = load_checkpoint(file);
  check_same(s, back);
  CHECK(std::isnan(back.history.epochs[0].train_elbo));
  CHECK(no_temp_files(dir.path));

  // A resumed RNG continues the same stream, spare normal included.
  Rng a, b;
  a.set_state(s.rng);
  b.set_state(back.rng);
  CHECK(a.normal() == b.normal());
  CHECK(a.next_u64() == b.next_u64());

  // A fresh optimiser (no moments yet) is a valid state too; overwriting keeps one file.
  TrainingState fresh = s;
  fresh.adam = Adam{};
  fresh.history = History{};
  fresh.order.clear();
  fresh.model.likelihood = Likelihood::Bernoulli;
  fresh.params.assign(Model(fresh.model).size(), 0.5f);
  save_checkpoint(file, fresh);
  check_same(fresh, load_checkpoint(file));
  CHECK(no_temp_files(dir.path));
}

TEST_CASE("checkpoint: every truncation is refused") {
  TempDir dir("checkpoint");
  TrainingState s = sample_state();
  s.history.steps.resize(1);
  const auto good = dir / "good";
  save_checkpoint(good, s);
  const Bytes bytes = read_all(good);
  REQUIRE(bytes.size() > 100);
  const auto cut = dir / "cut";
  // Longest first, each cut a resize of the same file: the loop writes nothing (a fresh write of
  // every prefix would write size²/2 bytes).
  write_all(cut, bytes);
  for (std::size_t n = bytes.size(); n-- > 0;) {
    fs::resize_file(cut, n);
    const std::string m = error_of([&] { load_checkpoint(cut); });
    CAPTURE(n);
    CHECK_MESSAGE((has(m, "truncated") || has(m, "empty")), m);
  }
  // And extra bytes after a complete checkpoint.
  Bytes longer = bytes;
  longer.push_back(0);
  write_all(cut, longer);
  const std::string m = error_of([&] { load_checkpoint(cut); });
  CHECK_MESSAGE(has(m, "1 unexpected byte(s) after"), m);
}

TEST_CASE("checkpoint: damaged bytes are refused") {
  TempDir dir("checkpoint");
  const auto good = dir / "good";
  save_checkpoint(good, sample_state());
  const Bytes bytes = read_all(good);
  const auto bad = dir / "bad";
  int refused = 0, tried = 0;
  write_all(bad, bytes);
  for (std::size_t i = 0; i < bytes.size(); i += (i < 64 ? 1 : 7)) {
    for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
      write_byte_at(bad, i, static_cast<std::uint8_t>(bytes[i] ^ mask));  // one byte changed in place
      ++tried;
      const std::string m = error_of([&] { load_checkpoint(bad); });
      if (m != "<no vaelab::Error thrown>") ++refused;
      else FAIL_CHECK("flipping byte " << i << " with mask " << int(mask) << " was not noticed");
    }
    write_byte_at(bad, i, bytes[i]);
  }
  CHECK(read_all(bad) == bytes);  // the in-place changes were all undone: each flip was alone
  CHECK(refused == tried);
  Bytes b = bytes;
  b[bytes.size() / 2] ^= 0x10;
  write_all(bad, b);
  CHECK(has(error_of([&] { load_checkpoint(bad); }), "checksum mismatch: the file is damaged"));
}

TEST_CASE("checkpoint: wrong magic, newer version and missing files are refused") {
  TempDir dir("checkpoint");
  const auto file = dir / "ck";
  save_checkpoint(file, sample_state());
  const Bytes bytes = read_all(file);

  Bytes b = bytes;
  std::memcpy(b.data(), "PK\x03\x04", 4);
  write_all(file, b);
  CHECK(has(error_of([&] { load_checkpoint(file); }), file.string() + ": not a vaelab checkpoint"));

  b = bytes;
  b[8] = 3;  // version 3, little-endian
  write_all(file, b);
  CHECK(error_of([&] { load_checkpoint(file); }) ==
        file.string() + ": written by a newer vaelab (version 3); this build reads version 2");
  b[8] = 0;
  write_all(file, b);
  CHECK(error_of([&] { load_checkpoint(file); }) == file.string() + ": unknown checkpoint version 0");

  CHECK(has(error_of([&] { load_checkpoint(dir / "absent"); }), "does not exist"));
  CHECK(has(error_of([&] { load_checkpoint(dir.path); }), "is a folder"));
}

TEST_CASE("checkpoint: a version 1 file written before colour loads as a grey model") {
  // tests/data/grey-v1.vaelab: written by vaelab-train before checkpoints recorded channels
  // (Fashion-MNIST, 784-8-2, one short epoch).
  const TrainingState s = load_checkpoint(fs::path(VAELAB_TEST_DATA_DIR) / "grey-v1.vaelab");
  CHECK(s.model.image_c == 1);
  CHECK(s.model.image_h == 28);
  CHECK(s.model.image_w == 28);
  CHECK(s.model.latent == 2);
  CHECK(s.model.hidden == std::vector<int>{8});
  CHECK(s.model.family == ModelFamily::Mlp);
  CHECK(s.data_name == "fashion-mnist");
  CHECK(s.step > 0);
  REQUIRE(s.params.size() == Model(s.model).size());
  Model m(s.model);
  std::copy(s.params.begin(), s.params.end(), m.params().begin());
  CHECK(m.all_finite());
  // Saved again, it is a current-version file that gives back the same state.
  TempDir dir("checkpoint");
  save_checkpoint(dir / "again", s);
  const Bytes again = read_all(dir / "again");
  CHECK(again[8] == kCheckpointVersion);
  check_same(load_checkpoint(dir / "again"), s);
}

TEST_CASE("checkpoint: colour models keep their channels") {
  TempDir dir("checkpoint");
  for (ModelFamily family : {ModelFamily::Mlp, ModelFamily::Conv}) {
    TrainingState s;
    s.model.family = family;
    s.model.image_c = 3;
    s.model.image_h = 6;
    s.model.image_w = 5;
    s.model.hidden = {7};
    Model m(s.model);
    m.init(4);
    s.params.assign(m.params().begin(), m.params().end());
    save_checkpoint(dir / "colour", s);
    const TrainingState back = load_checkpoint(dir / "colour");
    CHECK(back.model.image_c == 3);
    CHECK(back.model == s.model);
    CHECK(back.params == s.params);
    // The same parameters do not make a grey model: the sizes are checked against the channels.
    s.model.image_c = 1;
    CHECK(has(error_of([&] { save_checkpoint(dir / "grey", s); }), "parameters, but its model settings need"));
  }
}

TEST_CASE("checkpoint: inconsistent sizes are refused on load and save") {
  TempDir dir("checkpoint");
  const auto file = dir / "ck";
  save_checkpoint(file, sample_state());
  Bytes b = read_all(file);
  // The latent size sits after the magic, version, file size, image_h and image_w. Change it and
  // recompute the CRC, so only the consistency check can notice.
  const std::size_t latent_at = 8 + 4 + 8 + 4 + 4;
  REQUIRE(b[latent_at] == 2);
  b[latent_at] = 3;
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), b.data(), static_cast<uInt>(b.size() - 4));
  for (int i = 0; i < 4; ++i) b[b.size() - 4 + i] = static_cast<std::uint8_t>(crc >> (8 * i));
  write_all(file, b);
  const std::string m = error_of([&] { load_checkpoint(file); });
  CHECK_MESSAGE(has(m, "parameters, but its model settings need"), m);

  TrainingState s = sample_state();
  s.params.pop_back();
  CHECK(has(error_of([&] { save_checkpoint(dir / "x", s); }), "parameters, but its model settings need"));
  s = sample_state();
  s.adam.v.pop_back();
  CHECK(has(error_of([&] { save_checkpoint(dir / "x", s); }), "optimiser state"));
  CHECK_FALSE(fs::exists(dir / "x"));
}

TEST_CASE("checkpoint: non-finite parameters are not saved") {
  TempDir dir("checkpoint");
  TrainingState s = sample_state();
  s.params[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(has(error_of([&] { save_checkpoint(dir / "nan", s); }), "parameters contain NaN or Inf; not saving"));
  s.params[3] = std::numeric_limits<float>::infinity();
  CHECK(has(error_of([&] { save_checkpoint(dir / "nan", s); }), "parameters contain NaN or Inf; not saving"));
  CHECK_FALSE(fs::exists(dir / "nan"));
  CHECK(no_temp_files(dir.path));
}

TEST_CASE("checkpoint: a failed atomic write leaves no temp file and the old file intact") {
  TempDir dir("checkpoint");
  const Bytes old_bytes = {'o', 'l', 'd'};
  const Bytes new_bytes = {'n', 'e', 'w', '!'};

  SUBCASE("success replaces the file") {
    write_all(dir / "f", old_bytes);
    write_file_atomically(dir / "f", new_bytes.data(), new_bytes.size());
    CHECK(read_all(dir / "f") == new_bytes);
    write_file_atomically(dir / "empty", nullptr, 0);
    CHECK(fs::file_size(dir / "empty") == 0);
    CHECK(no_temp_files(dir.path));
  }
  SUBCASE("the target is a folder") {
    fs::create_directories(dir / "sub" / "inner");
    const std::string m = error_of([&] { write_file_atomically(dir / "sub", new_bytes.data(), new_bytes.size()); });
    CHECK_MESSAGE(has(m, "cannot write '" + (dir / "sub").string() + "'"), m);
    CHECK(fs::is_directory(dir / "sub" / "inner"));
    CHECK(no_temp_files(dir.path));
  }
  SUBCASE("the folder does not exist") {
    const std::string m =
        error_of([&] { write_file_atomically(dir / "no" / "f", new_bytes.data(), new_bytes.size()); });
    CHECK_MESSAGE(has(m, "No such file or directory"), m);
  }
  SUBCASE("the temporary file cannot be created") {
    write_all(dir / "f", old_bytes);
    // Occupy the temp file's name with a folder: creating the temp fails, the target must not change.
    const auto blocker = dir / ("f.tmp." + std::to_string(::getpid()));
    fs::create_directories(blocker);
    const std::string m = error_of([&] { write_file_atomically(dir / "f", new_bytes.data(), new_bytes.size()); });
    CHECK_MESSAGE(has(m, "cannot create the temporary file"), m);
    CHECK(read_all(dir / "f") == old_bytes);
    CHECK(fs::is_directory(blocker));  // not ours to remove
  }
  SUBCASE("the folder is not writable") {
    if (::geteuid() == 0) {
      MESSAGE("running as root, which may write anywhere; skipped");
      return;
    }
    write_all(dir / "f", old_bytes);
    fs::permissions(dir.path, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                    fs::perm_options::remove);
    const std::string m = error_of([&] { write_file_atomically(dir / "f", new_bytes.data(), new_bytes.size()); });
    CHECK_MESSAGE(has(m, "Permission denied"), m);
    CHECK(read_all(dir / "f") == old_bytes);
    CHECK(no_temp_files(dir.path));
  }
}

TEST_CASE("checkpoint: parse_checkpoint reads bytes in memory like load_checkpoint reads the file") {
  TempDir dir("checkpoint");
  const TrainingState s = sample_state();
  save_checkpoint(dir / "ck", s);
  const Bytes bytes = read_all(dir / "ck");
  check_same(s, parse_checkpoint(bytes.data(), bytes.size(), "<memory>"));
  CHECK(encode_checkpoint(s, "<memory>") == bytes);  // what save_checkpoint writes
  TrainingState bad = s;
  bad.params[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(error_of([&] { encode_checkpoint(bad, "<memory>"); }) ==
        "cannot save '<memory>': parameters contain NaN or Inf; not saving");
  CHECK(error_of([&] { parse_checkpoint(bytes.data(), 5, "<memory>"); }) ==
        "<memory>: file is truncated: 5 bytes is too short for a checkpoint");
  CHECK(error_of([&] { parse_checkpoint(nullptr, 0, "<memory>"); }) == "<memory>: file is empty, not a vaelab checkpoint");
}

TEST_CASE("checkpoint: a save removes the temp files of writers that were killed mid-write") {
  TempDir dir("checkpoint");
  const Bytes junk = {'p', 'a', 'r', 't'};
  // Abandoned temps (no writer holds their lock) go, whichever file of the folder they were for; a
  // live writer's locked temp, a FIFO with a temp's name and names outside the pattern stay.
  for (const std::string& name : std::vector<std::string>{"f.tmp.12345", "g.tmp.12345", "f.tmp.777", "f.tmp.abc", "f.tmp"})
    write_all(dir / name, junk);
  REQUIRE(::mkfifo((dir / "h.tmp.999").c_str(), 0600) == 0);
  // A live writer: its lock is on another open file description, so it conflicts with the
  // cleaner's even inside this process.
  const int live = ::open((dir / "f.tmp.777").c_str(), O_RDONLY);
  REQUIRE(live >= 0);
  REQUIRE(::flock(live, LOCK_EX) == 0);
  const TrainingState s = sample_state();
  save_checkpoint(dir / "f", s);
  check_same(s, load_checkpoint(dir / "f"));
  CHECK_FALSE(fs::exists(dir / "f.tmp.12345"));
  CHECK_FALSE(fs::exists(dir / "g.tmp.12345"));
  for (const std::string& kept : std::vector<std::string>{"f.tmp.777", "f.tmp.abc", "f.tmp", "h.tmp.999"})
    CHECK_MESSAGE(fs::exists(dir / kept), kept);
  ::close(live);
  const std::string dead = "12345";

  // A failed save removes nothing (the cleanup runs only after a successful rename).
  write_all(dir / ("f.tmp." + dead), junk);
  TrainingState bad = s;
  bad.params.pop_back();
  CHECK(has(error_of([&] { save_checkpoint(dir / "f", bad); }), "parameters, but its model settings need"));
  CHECK(fs::exists(dir / ("f.tmp." + dead)));
  // The safetensors export shares the atomic write, and with it the cleanup.
  write_file_atomically(dir / "f", junk.data(), junk.size());
  CHECK_FALSE(fs::exists(dir / ("f.tmp." + dead)));
}

TEST_CASE("checkpoint: huge model settings in a small file are refused before allocating") {
  // Valid settings (1024×1024 images, 8192 hidden units) with a repaired CRC must be refused by
  // their parameter count, not by building a 64 GiB model to compare counts.
  TempDir dir("checkpoint");
  const auto file = dir / "ck";
  save_checkpoint(file, sample_state());
  Bytes b = read_all(file);
  auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
  };
  const std::size_t model_at = 8 + 4 + 8;  // image_h, image_w, latent, u64 hidden count, hidden…
  put32(model_at, 1024);
  put32(model_at + 4, 1024);
  put32(model_at + 12 + 8, 8192);
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), b.data(), static_cast<uInt>(b.size() - 4));
  put32(b.size() - 4, static_cast<std::uint32_t>(crc));
  write_all(file, b);
  const std::string m = error_of([&] { load_checkpoint(file); });
  CHECK_MESSAGE(has(m, "parameters, but its model settings need at least"), m);
}

TEST_CASE("checkpoint: convolutional models save and load, and huge convolutional settings are refused") {
  // The lower bound used before building the model must follow the family: a Conv model ignores
  // `hidden`, and an MLP bound on it refused every Conv save (regression).
  TempDir dir("checkpoint");
  TrainingState s;
  s.model.family = ModelFamily::Conv;
  s.model.image_h = 8;
  s.model.image_w = 6;
  s.model.latent = 2;
  s.model.hidden = {4000};  // far more than the Conv model has, were it an MLP
  Model m(s.model);
  m.init(3);
  s.params.assign(m.params().begin(), m.params().end());
  const auto file = dir / "conv";
  save_checkpoint(file, s);
  const TrainingState back = load_checkpoint(file);
  CHECK(back.model == s.model);
  CHECK(back.params == s.params);

  // 1024×1024 images and 1024 latents: its two dense layers alone would be 8.6 G parameters.
  Bytes b = read_all(file);
  auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
  };
  const std::size_t model_at = 8 + 4 + 8;  // image_h, image_w, latent, …
  put32(model_at, 1024);
  put32(model_at + 4, 1024);
  put32(model_at + 8, 1024);
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), b.data(), static_cast<uInt>(b.size() - 4));
  put32(b.size() - 4, static_cast<std::uint32_t>(crc));
  write_all(file, b);
  const std::string msg = error_of([&] { load_checkpoint(file); });
  CHECK_MESSAGE(has(msg, "parameters, but its model settings need at least"), msg);
}

namespace {

// A real small checkpoint: a trainer (64-4-2 on 8×8 images, 120 training images) after 6 steps,
// paused and joined so load_now / save_now may be called.
std::unique_ptr<Trainer> small_trainer() {
  TrainerOptions opt;
  opt.start_paused = true;
  opt.display_points = 0;
  ModelConfig m = small_model();
  m.hidden = {4};
  auto tr = std::make_unique<Trainer>(synthetic_data(120, 20), m, small_train(), opt);
  tr->start();
  for (int i = 0; i < 6; ++i) tr->step_once();
  REQUIRE(wait_for(*tr, [](const Snapshot& s) { return s.step == 6; }));
  tr->request_stop();
  tr->join();
  return tr;
}

}  // namespace

TEST_CASE("checkpoint: every truncation and sampled byte flips of a trainer's save leave the live model untouched") {
  TempDir dir("checkpoint");
  auto tr = small_trainer();
  const auto good = dir / "good.vaelab", bad = dir / "bad.vaelab";
  tr->save_now(good);
  const Bytes bytes = read_all(good);
  REQUIRE(bytes.size() > 1000);
  // Each refusal must be a vaelab::Error that starts with the file's name.
  auto refusal = [&](const Bytes& b) {
    write_all(bad, b);
    return error_of([&] { tr->load_now(bad); });
  };
  int truncations = 0;
  write_all(bad, bytes);
  for (std::size_t n = bytes.size(); n-- > 0;) {  // longest first, by resizing one file
    fs::resize_file(bad, n);
    const std::string m = error_of([&] { tr->load_now(bad); });
    const bool clear = m.rfind(bad.string() + ": ", 0) == 0 && (has(m, "truncated") || has(m, "empty"));
    if (!clear) FAIL_CHECK("truncated to " << n << " of " << bytes.size() << " bytes: " << m);
    truncations += clear;
  }
  CHECK(truncations == static_cast<int>(bytes.size()));
  Rng rng(20261201);  // fixed seed: the same 500 flips every run
  int flips = 0;
  for (int k = 0; k < 500; ++k) {
    Bytes b = bytes;
    const std::size_t at = rng.below(b.size());
    b[at] ^= static_cast<std::uint8_t>(1 + rng.below(255));  // never 0: the byte really changes
    const std::string m = refusal(b);
    const bool clear = m.rfind(bad.string() + ": ", 0) == 0;
    if (!clear) FAIL_CHECK("byte " << at << " flipped: " << m);
    flips += clear;
  }
  CHECK(flips == 500);
  // The live state (parameters, Adam, RNG, data order, history, step) is what it was: saving it
  // again gives the very same bytes.
  const auto after = dir / "after.vaelab";
  tr->save_now(after);
  CHECK(read_all(after) == bytes);
  tr->load_now(good);  // and the good file still loads
}

TEST_CASE("checkpoint: counts promising gigabytes are refused before allocating") {
  // At every offset of a real checkpoint, write a count of 2^33 (or 2^31 − 1) and repair the CRC,
  // so only the length checks stand between the header and an allocation of gigabytes. Outside the
  // sanitizers the address space is capped 1 GiB above its current size while this runs: an
  // allocation it cannot back throws std::bad_alloc, which fails the test.
  TempDir dir("checkpoint");
  auto tr = small_trainer();
  const auto file = dir / "ck.vaelab";
  tr->save_now(file);
  const Bytes bytes = read_all(file);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const bool capped = false;  // sanitizers reserve terabytes of address space for their shadow
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
  const bool capped = false;
#else
  const bool capped = true;
#endif
#else
  const bool capped = true;
#endif
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_AS, &old) == 0);
  if (capped) {
    std::uint64_t vm_kb = 0;
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmSize:", 0) == 0) vm_kb = std::stoull(line.substr(7));
    REQUIRE(vm_kb > 0);
    rlimit cap = old;
    cap.rlim_cur = static_cast<rlim_t>((vm_kb << 10) + (1ull << 30));
    if (old.rlim_cur == RLIM_INFINITY || cap.rlim_cur < old.rlim_cur) REQUIRE(setrlimit(RLIMIT_AS, &cap) == 0);
  }
  int refused = 0, loaded = 0, escaped = 0;
  for (std::uint64_t value : {std::uint64_t{1} << 33, std::uint64_t{0x7fffffff}}) {
    for (std::size_t at = 0; at + 8 + 4 <= bytes.size(); ++at) {
      Bytes b = bytes;
      for (int i = 0; i < 8; ++i) b[at + i] = static_cast<std::uint8_t>(value >> (8 * i));
      const uLong crc = crc32(crc32(0L, Z_NULL, 0), b.data(), static_cast<uInt>(b.size() - 4));
      for (int i = 0; i < 4; ++i) b[b.size() - 4 + i] = static_cast<std::uint8_t>(crc >> (8 * i));
      try {
        parse_checkpoint(b.data(), b.size(), "<memory>");
        ++loaded;  // e.g. inside the parameters: new finite weights are a valid checkpoint
      } catch (const Error&) {
        ++refused;
      } catch (const std::exception& e) {
        ++escaped;
        if (escaped < 5) FAIL_CHECK("offset " << at << ", count " << value << ": " << e.what());
      }
    }
  }
  if (capped) setrlimit(RLIMIT_AS, &old);
  CHECK(escaped == 0);
  CHECK(refused > 100);  // the header and the counts are all in there
  MESSAGE("planted " << refused + loaded + escaped << " counts: " << refused << " refused, " << loaded
                     << " still valid (inside the data), address space capped: " << capped);
}

TEST_CASE("checkpoint: settings that need more memory than there is are refused before the file is read") {
  // A real checkpoint whose head is changed to a hidden layer of 8192, a batch of 65,536 and 1,000
  // samples (about 2 TB of workspaces), its checksum left as it was: the refusal names the memory,
  // not the checksum, so it came from the head before the whole file was read and the model built.
  TempDir dir("checkpoint");
  auto tr = small_trainer();
  const auto good = dir / "good.vaelab", big = dir / "big.vaelab";
  tr->save_now(good);
  Bytes b = read_all(good);
  auto put_i32 = [&](std::size_t at, std::int32_t v) {
    for (int i = 0; i < 4; ++i) b[at + i] = static_cast<std::uint8_t>(static_cast<std::uint32_t>(v) >> (8 * i));
  };
  // Prefix 20 bytes; image_h, image_w, latent; the hidden count (8 bytes) and its one width at 40;
  // likelihood, σ, family, clusters, channels; then the training settings: batch at 58, samples at 74.
  REQUIRE(b[32] == 1);
  put_i32(40, 8192);
  put_i32(58, 65536);
  put_i32(74, 1000);
  write_all(big, b);
  REQUIRE(read_checkpoint_settings(big).has_value());
  CHECK(read_checkpoint_settings(big)->train.batch == 65536);
  const std::string m = error_of([&] { tr->load_now(big); });
  CHECK_MESSAGE(m.rfind(big.string() + ": the model it holds does not fit: training needs about ", 0) == 0, m);
  CHECK_MESSAGE(has(m, "--batch"), m);
  // The running state is untouched, and a checkpoint that fits still loads.
  const auto after = dir / "after.vaelab";
  tr->save_now(after);
  CHECK(read_all(after) == read_all(good));
  tr->load_now(good);
  // A head that cannot be read leaves the message to load_checkpoint.
  write_all(big, Bytes(b.begin(), b.begin() + 30));
  CHECK_FALSE(read_checkpoint_settings(big).has_value());
  CHECK(has(error_of([&] { tr->load_now(big); }), "truncated"));
}
