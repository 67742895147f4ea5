// Scaffolding shared by the doctest files: a small synthetic data set and model that train in
// milliseconds, waiting on a trainer's snapshot, a self-removing temporary folder, whole-file
// read/write, a vaelab::Error's message. Not a test itself; every random draw has a fixed seed.
#pragma once
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/config.hpp"
#include "core/data.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "core/trainer.hpp"

namespace vaelab::test {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

// Ten 8×8 prototypes (random blobs, seed 42) with pixel noise: easy to learn, quick to train.
inline std::shared_ptr<const Dataset> synthetic_data(int train_n = 1000, int test_n = 200) {
  auto ds = std::make_shared<Dataset>();
  ds->name = "synthetic";
  Rng rng(42);
  std::vector<std::vector<float>> proto(10, std::vector<float>(64));
  for (auto& p : proto)
    for (float& v : p) v = rng.uniform() < 0.35f ? 0.9f : 0.05f;
  auto fill = [&](ImageSet& s, int n) {
    s.count = n;
    s.height = s.width = 8;
    for (int i = 0; i < n; ++i) {
      const int label = static_cast<int>(rng.below(10));
      s.labels.push_back(static_cast<std::uint8_t>(label));
      for (float v : proto[label]) {
        const float noisy = std::clamp(v + 0.1f * rng.normal(), 0.0f, 1.0f);
        s.pixels.push_back(static_cast<std::uint8_t>(noisy * 255));
      }
    }
  };
  fill(ds->train, train_n);
  fill(ds->test, test_n);
  for (int i = 0; i < 10; ++i) ds->class_names.push_back(std::to_string(i));
  return ds;
}

// 64-32-2, Bernoulli: matches synthetic_data's 8×8 images.
inline ModelConfig small_model() {
  ModelConfig m;
  m.image_h = m.image_w = 8;
  m.latent = 2;
  m.hidden = {32};
  return m;
}

inline TrainConfig small_train(int threads = 1) {
  TrainConfig t;
  t.batch = 50;
  t.lr = 3e-3f;
  t.seed = 7;
  t.threads = threads;
  return t;
}

// Polls the trainer's snapshot until pred holds (true) or `limit` passes (false).
template <class Pred>
bool wait_for(const Trainer& tr, Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < limit) {
    if (auto s = tr.snapshot(); s && pred(*s)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// A fresh folder under the system temp dir, removed (with everything in it) on destruction.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag = "test") {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("vaelab-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path operator/(const std::string& name) const { return path / name; }
};

inline Bytes read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_all(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(out.good());
}

// The message of the vaelab::Error that f throws, or a marker no check accepts.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no vaelab::Error thrown>";
}

inline bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace vaelab::test
