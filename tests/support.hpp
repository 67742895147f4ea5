// Scaffolding shared by the doctest files: a small synthetic data set and model that train in
// milliseconds, waiting on a trainer's snapshot, a linear-Gaussian VAE with a closed-form posterior,
// a self-removing temp folder, whole-file read/write, a vaelab::Error's message. Not a test itself.
#pragma once
#include <doctest/doctest.h>
#include <Eigen/Dense>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
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
#include "core/model.hpp"
#include "core/objective.hpp"
#include "core/rng.hpp"
#include "core/trainer.hpp"

namespace vaelab::test {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

// Ten classes of 8×8 images with `channels` planes: for each image, a label drawn from rng, then
// draw(label, pixels) appends its channels·64 bytes. Labels are named "0" … "9".
template <class Draw>
std::shared_ptr<const Dataset> labelled_8x8(std::string name, int channels, int train_n, int test_n, Rng& rng, Draw&& draw) {
  auto ds = std::make_shared<Dataset>();
  ds->name = std::move(name);
  auto fill = [&](ImageSet& s, int n) {
    s.count = n;
    s.channels = channels;
    s.height = s.width = 8;
    for (int i = 0; i < n; ++i) {
      const int label = static_cast<int>(rng.below(10));
      s.labels.push_back(static_cast<std::uint8_t>(label));
      draw(label, s.pixels);
    }
  };
  fill(ds->train, train_n);
  fill(ds->test, test_n);
  for (int i = 0; i < 10; ++i) ds->class_names.push_back(std::to_string(i));
  return ds;
}

// Ten 8×8 prototypes (random blobs, seed 42) with pixel noise: easy to learn, quick to train.
inline std::shared_ptr<const Dataset> synthetic_data(int train_n = 1000, int test_n = 200) {
  Rng rng(42);
  std::vector<std::vector<float>> proto(10, std::vector<float>(64));
  for (auto& p : proto)
    for (float& v : p) v = rng.uniform() < 0.35f ? 0.9f : 0.05f;
  return labelled_8x8("synthetic", 1, train_n, test_n, rng, [&](int label, std::vector<std::uint8_t>& pixels) {
    for (float v : proto[static_cast<std::size_t>(label)]) {
      const float noisy = std::clamp(v + 0.1f * rng.normal(), 0.0f, 1.0f);
      pixels.push_back(static_cast<std::uint8_t>(noisy * 255));
    }
  });
}

// Colour 3×8×8 images, planar (all red, then green, then blue): class k is a bright square in
// one quadrant (k mod 4) on a background of one colour (red, green or blue, k mod 3), with pixel
// noise. The classes differ in colour, not only in shape, so a model must use the channels.
inline std::shared_ptr<const Dataset> synthetic_colour_data(int train_n = 600, int test_n = 100) {
  Rng rng(43);
  return labelled_8x8("synthetic colour", 3, train_n, test_n, rng, [&](int label, std::vector<std::uint8_t>& pixels) {
    const int quadrant = label % 4, background = label % 3;
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 64; ++p) {
        const int y = p / 8, x = p % 8;
        const bool square = (y < 4) == (quadrant < 2) && (x < 4) == (quadrant % 2 == 0);
        const float v = square ? 0.95f : c == background ? 0.7f : 0.05f;
        const float noisy = std::clamp(v + 0.05f * rng.normal(), 0.0f, 1.0f);
        pixels.push_back(static_cast<std::uint8_t>(noisy * 255));
      }
  });
}

// Runs the trainer to its end and checks that training raised the test ELBO by more than
// `gain` nats; its epoch records (the first one the evaluation before training) must number
// `records`.
inline void check_training_improves(Trainer& tr, std::size_t records, float gain) {
  tr.start();
  tr.join();
  const auto snap = tr.snapshot();
  REQUIRE(snap->history.epochs.size() == records);
  const float before = snap->history.epochs.front().test_elbo, after = snap->history.epochs.back().test_elbo;
  CAPTURE(before);
  CAPTURE(after);
  CHECK(after > before + gain);
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

// p(z) = N(0, I_d), p(x|z) = N(A z + c, s² I_D). A's columns are orthogonal, so p(z|x) is a
// diagonal Gaussian that the encoder's (μ, log σ²) head can hold exactly.
struct LinearGaussianVae {  // test_gap, test_objective
  int D, d;
  Eigen::MatrixXd A;  // (D, d)
  Eigen::VectorXd c;  // (D)
  double s = 0.3;
  // Added before every ReLU and taken off after it, so each ReLU sees positive inputs and the
  // whole MLP is affine.
  static constexpr double kLift = 50.0;

  LinearGaussianVae(int latent, int pixels, std::uint64_t seed) : D(pixels), d(latent), A(pixels, latent), c(pixels) {
    Rng rng(seed);
    for (int j = 0; j < d; ++j)
      for (int i = 0; i < D; ++i) A(i, j) = 0.6 * rng.normal();
    for (int j = 0; j < d; ++j)  // Gram–Schmidt without normalising: AᵀA diagonal
      for (int k = 0; k < j; ++k) A.col(j) -= A.col(k) * (A.col(k).dot(A.col(j)) / A.col(k).squaredNorm());
    for (int i = 0; i < D; ++i) c(i) = 0.3 + 0.4 * rng.uniform();
  }

  Eigen::VectorXd post_var() const { return (1.0 + (A.transpose() * A).diagonal().array() / (s * s)).inverse(); }
  Eigen::VectorXd post_mean(const Eigen::VectorXd& x) const {
    return post_var().asDiagonal() * (A.transpose() * (x - c)) / (s * s);
  }
  double log_px(const Eigen::VectorXd& x) const {
    const Eigen::MatrixXd C = A * A.transpose() + s * s * Eigen::MatrixXd::Identity(D, D);
    const Eigen::LDLT<Eigen::MatrixXd> ldlt(C);
    const Eigen::VectorXd r = x - c;
    return -0.5 * (r.dot(ldlt.solve(r)) + ldlt.vectorD().array().log().sum() + D * kLog2Pi);
  }
  // KL(N(qm, diag qv) ‖ p(z|x)).
  double kl_to_posterior(const Eigen::VectorXd& qm, const Eigen::VectorXd& qv, const Eigen::VectorXd& x) const {
    const Eigen::VectorXd pm = post_mean(x), pv = post_var();
    return 0.5 *
           (qv.array() / pv.array() + (qm - pm).array().square() / pv.array() - 1.0 + (pv.array() / qv.array()).log())
               .sum();
  }

  // Encoder: q = N(k_m · post_mean(x) + shift, k_v · post_var); decoder: exactly A z + c.
  Model model(double k_m = 1.0, double shift = 0.0, double k_v = 1.0) const {
    ModelConfig cfg;
    cfg.image_h = 1;
    cfg.image_w = D;
    cfg.latent = d;
    cfg.hidden = {D};  // encoder D → D → 2d, decoder d → D → D
    cfg.likelihood = Likelihood::GaussianFixed;
    cfg.gaussian_sigma = static_cast<float>(s);
    Model m(cfg);
    const auto& enc = m.encoder();
    const auto& dec = m.decoder();
    const Eigen::VectorXd lift = Eigen::VectorXd::Constant(D, kLift);
    m.W(enc[0]).setIdentity();  // h = x + lift
    m.b(enc[0]) = lift.cast<float>();
    const Eigen::MatrixXd M = k_m * post_var().asDiagonal() * A.transpose() / (s * s);  // μ = M (h − lift − c) + shift
    m.W(enc[1]).setZero();
    m.W(enc[1]).topRows(d) = M.cast<float>();
    m.b(enc[1]).head(d) = (Eigen::VectorXd::Constant(d, shift) - M * (c + lift)).cast<float>();
    m.b(enc[1]).tail(d) = (k_v * post_var()).array().log().matrix().cast<float>();
    m.W(dec[0]).setZero();  // g = (z + lift, lift, …)
    m.W(dec[0]).topRows(d).setIdentity();
    m.b(dec[0]) = lift.cast<float>();
    m.W(dec[1]).setZero();  // out = A (g − lift) + c
    m.W(dec[1]).leftCols(d) = A.cast<float>();
    m.b(dec[1]) = (c - A * Eigen::VectorXd::Constant(d, kLift)).cast<float>();
    return m;
  }
};

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

// Writes b gzip-compressed (IDX and CIFAR files are often shipped as .gz).
inline void write_gz(const fs::path& p, const Bytes& b) {
  gzFile f = gzopen(p.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!b.empty()) REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

// Overwrites one byte of an existing file in place (damage tests: no rewrite of the whole file).
inline void write_byte_at(const fs::path& p, std::size_t at, std::uint8_t value) {
  std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(at));
  f.put(static_cast<char>(value));
  REQUIRE(f.good());
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

// log N(z; m, diag e^lv) in double precision, written out (test_clustering, test_vade).
inline double log_gauss(const Eigen::VectorXd& z, const Eigen::VectorXd& m, const Eigen::VectorXd& lv) {
  double s = 0;
  for (Eigen::Index j = 0; j < z.size(); ++j)
    s += -0.5 * ((z(j) - m(j)) * (z(j) - m(j)) * std::exp(-lv(j)) + lv(j) + std::log(2 * M_PI));
  return s;
}

}  // namespace vaelab::test
