// The convolutional VAE (ModelFamily::Conv) end to end: parameter layout and initialisation, the
// 28×28 encode/decode shapes, the whole ELBO backward against finite differences, the safetensors
// and checkpoint round trips, and a short training run. The layers themselves are tested in test_conv.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "core/checkpoint.hpp"
#include "core/data.hpp"
#include "core/error.hpp"
#include "core/model.hpp"
#include "core/rng.hpp"
#include "core/safetensors.hpp"
#include "core/trainer.hpp"
#include "gradient_check.hpp"
#include "support.hpp"

using namespace vaelab;
using vaelab::test::error_of;
using vaelab::test::synthetic_data;

namespace {

// Finite-difference checks visit at most this many entries of each convolution's weight (and every
// entry of the smaller tensors): a conv VAE has tens of thousands of parameters.
constexpr std::size_t kConvChecked = 120;

ModelConfig conv_config(int h, int w, int latent = 2, int channels = 1) {
  ModelConfig m;
  m.family = ModelFamily::Conv;
  m.image_c = channels;
  m.image_h = h;
  m.image_w = w;
  m.latent = latent;
  return m;
}

}  // namespace

TEST_CASE("conv_vae: parameter layout, PyTorch-like init and 28×28 encode/decode shapes") {
  Model m(conv_config(28, 28, 2));
  REQUIRE(m.conv_encoder().size() == 2);
  REQUIRE(m.conv_decoder().size() == 3);
  REQUIRE(m.encoder().size() == 1);
  REQUIRE(m.decoder().size() == 1);
  CHECK(m.encoder()[0].in == 64 * 7 * 7);
  CHECK(m.encoder()[0].out == 4);
  CHECK(m.decoder()[0].in == 2);
  CHECK(m.decoder()[0].out == 32 * 7 * 7);
  CHECK(m.conv_decoder().back().g.out_size() == 784);
  // Every tensor aligned, in buffer order, not overlapping; the total is PyTorch's parameter count.
  std::vector<std::pair<std::size_t, std::size_t>> spans;  // (offset, floats)
  for (const auto& l : m.conv_encoder()) spans.push_back({l.w, l.g.weight_size()}), spans.push_back({l.b, l.g.bias_size()});
  for (const auto& l : m.encoder()) spans.push_back({l.w, std::size_t(l.in) * l.out}), spans.push_back({l.b, l.out});
  for (const auto& l : m.decoder()) spans.push_back({l.w, std::size_t(l.in) * l.out}), spans.push_back({l.b, l.out});
  for (const auto& l : m.conv_decoder()) spans.push_back({l.w, l.g.weight_size()}), spans.push_back({l.b, l.g.bias_size()});
  std::size_t total = 0, end = 0;
  for (const auto& [o, n] : spans) {
    CHECK(o % kParamAlign == 0);
    CHECK(o >= end);
    end = o + n;
    total += n;
  }
  CHECK(end <= m.size());
  CHECK(total == 320 + 18496 + (3136 * 4 + 4) + (2 * 1568 + 1568) + (32 * 64 * 9 + 64) + (64 * 32 * 9 + 32) + (32 * 9 + 1));

  m.init(1);
  // U(−1/√fan_in, 1/√fan_in): conv1 fan_in 9, deconv3 (ConvTranspose2d [32, 1, 3, 3]) fan_in 1·9 = 9,
  // deconv1 ([32, 64, 3, 3]) fan_in 64·9.
  auto max_abs = [&](std::size_t o, std::size_t n) {
    float a = 0;
    for (std::size_t i = 0; i < n; ++i) a = std::max(a, std::abs(m.params()[o + i]));
    return a;
  };
  const auto& c1 = m.conv_encoder()[0];
  const auto& d1 = m.conv_decoder()[0];
  const auto& d3 = m.conv_decoder()[2];
  CHECK(max_abs(c1.w, c1.g.weight_size()) <= 1.0f / 3.0f);
  CHECK(max_abs(c1.w, c1.g.weight_size()) > 0.3f);
  CHECK(max_abs(d3.w, d3.g.weight_size()) > 0.3f);
  CHECK(max_abs(d1.w, d1.g.weight_size()) <= 1.0f / 24.0f);
  CHECK(max_abs(d1.w, d1.g.weight_size()) > 0.04f);
  CHECK(m.all_finite());

  Rng rng(5);
  Eigen::MatrixXf x = test::random_matrix(784, 3, rng).cwiseAbs().cwiseMin(1.0f), mu, lv, img, raw;
  m.encode(x, mu, lv);
  CHECK(mu.rows() == 2);
  CHECK(mu.cols() == 3);
  CHECK(lv.rows() == 2);
  CHECK(lv.cols() == 3);
  m.decode_raw(mu, raw);
  m.decode_image(mu, img);
  CHECK(raw.rows() == 784);
  CHECK(img.cols() == 3);
  CHECK(img.minCoeff() >= 0.0f);
  CHECK(img.maxCoeff() <= 1.0f);
  // A sample's output does not depend on the rest of the batch.
  Eigen::MatrixXf mu1, lv1, raw1;
  m.encode(x.col(1), mu1, lv1);
  CHECK((mu1.col(0) - mu.col(1)).cwiseAbs().maxCoeff() < 1e-5f);
  m.decode_raw(mu.col(2), raw1);
  CHECK((raw1.col(0) - raw.col(2)).cwiseAbs().maxCoeff() < 1e-5f);
}

TEST_CASE("conv_vae: whole ELBO backward matches finite differences") {
  // Every entry of the small tensors and 120 spread over each big one (kConvChecked) keeps the check
  // to seconds, under the sanitizers too; thousands of ReLU units put a few parameters next to a
  // kink (see check_elbo_gradient), so up to 0.5 % may disagree (0.02–0.2 % do).
  ModelConfig cfg = conv_config(6, 5, 2);
  test::check_elbo_gradient(cfg, 3, 1, 1.0f, 1, 1, 0.005, kConvChecked);
  test::check_elbo_gradient(cfg, 3, 2, 0.5f, 2, 1, 0.005, kConvChecked);  // L = 2, two shards summed
  cfg = conv_config(8, 8, 2);
  test::check_elbo_gradient(cfg, 3, 2, 1.0f, 1, 1, 0.005, kConvChecked);
  cfg.likelihood = Likelihood::GaussianLearned;
  test::check_elbo_gradient(cfg, 3, 1, 1.0f, 2, 1, 0.005, kConvChecked);
}

TEST_CASE("conv_vae: a colour model's whole ELBO backward matches finite differences") {
  ModelConfig cfg = conv_config(6, 5, 2, 3);
  REQUIRE(cfg.input_dim() == 3 * 6 * 5);
  test::check_elbo_gradient(cfg, 3, 1, 1.0f, 1, 1, 0.005, kConvChecked);
  test::check_elbo_gradient(cfg, 3, 2, 0.5f, 2, 1, 0.005, kConvChecked);
  cfg.likelihood = Likelihood::GaussianLearned;
  test::check_elbo_gradient(cfg, 3, 1, 1.0f, 2, 1, 0.005, kConvChecked);
  cfg.likelihood = Likelihood::GaussianFixed;
  cfg.gaussian_sigma = 0.5f;
  test::check_elbo_gradient(cfg, 2, 1, 1.0f, 1, 1, 0.005, kConvChecked);
}

TEST_CASE("conv_vae: a colour model's first convolution takes 3 channels and its output is 3×H×W") {
  Model m(conv_config(8, 6, 2, 3));
  CHECK(m.input_dim() == 3 * 8 * 6);
  CHECK(m.conv_encoder().front().g.in_c == 3);
  CHECK(m.conv_decoder().back().g.out_c == 3);
  m.init(2);
  Rng rng(3);
  const Eigen::MatrixXf x = test::random_matrix(m.input_dim(), 2, rng).cwiseAbs().cwiseMin(1.0f);
  Eigen::MatrixXf mu, lv, img;
  m.encode(x, mu, lv);
  m.decode_image(mu, img);
  CHECK(img.rows() == 3 * 8 * 6);
  CHECK(img.cols() == 2);
}

TEST_CASE("conv_vae: gradients do not depend on which thread runs a shard") {
  const ModelConfig cfg = conv_config(8, 7, 3);
  Model model(cfg);
  model.init(5);
  Rng rng(1);
  Eigen::MatrixXf x = test::random_matrix(56, 9, rng).cwiseAbs().cwiseMin(1.0f);
  Eigen::MatrixXf eps = test::random_matrix(3, 9, rng);
  std::vector<float> a(model.size()), b(model.size());
  GradientEngine e1(cfg, 9, 1, 2), e2(cfg, 9, 1, 2);
  ThreadPool pool(2);
  e1.compute(model, x, eps, 1.0f, a.data(), nullptr);
  e2.compute(model, x, eps, 1.0f, b.data(), &pool);
  CHECK(a == b);
}

TEST_CASE("conv_vae: safetensors export and import round trip, PyTorch names and shapes") {
  ModelConfig cfg = conv_config(9, 6, 3);
  cfg.likelihood = Likelihood::GaussianLearned;
  Model m(cfg);
  m.init(4);
  m.params()[m.decoder_logvar_offset()] = -2.5f;
  const SafetensorsFile f = export_model(m);
  CHECK(f.metadata.at("family") == "conv");
  // 9×6 → 5×3 → 3×2
  auto shape_of = [&](const char* name) {
    const Tensor* t = f.find(name);
    REQUIRE(t != nullptr);
    return t->shape;
  };
  using S = std::vector<std::int64_t>;
  CHECK(shape_of("enc_conv1.weight") == S{32, 1, 3, 3});
  CHECK(shape_of("enc_conv2.weight") == S{64, 32, 3, 3});
  CHECK(shape_of("enc_conv2.bias") == S{64});
  CHECK(shape_of("fc21.weight") == S{3, 64 * 3 * 2});
  CHECK(shape_of("fc22.bias") == S{3});
  CHECK(shape_of("dec_fc.weight") == S{32 * 3 * 2, 3});
  CHECK(shape_of("dec_deconv1.weight") == S{32, 64, 3, 3});
  CHECK(shape_of("dec_deconv2.weight") == S{64, 32, 3, 3});
  CHECK(shape_of("dec_deconv3.weight") == S{32, 1, 3, 3});
  CHECK(shape_of("dec_deconv3.bias") == S{1});
  // PyTorch's fc21.weight[r][c] is W(r, c) of the dense head.
  CHECK(f.find("fc22.weight")->data[1 * 384 + 5] == m.W(m.encoder()[0])(3 + 1, 5));

  const auto bytes = encode_safetensors(f);
  const Model back = import_model(decode_safetensors(bytes.data(), bytes.size()));
  CHECK(back.config() == cfg);
  REQUIRE(back.size() == m.size());
  CHECK(std::memcmp(back.data(), m.data(), m.size() * sizeof(float)) == 0);

  // Shapes are checked, with a message naming the tensor.
  SafetensorsFile bad = f;
  for (auto& t : bad.tensors)
    if (t.name == "dec_deconv2.weight") t.shape = {32, 64, 3, 3};
  CHECK(error_of([&] { import_model(bad); }).find("'dec_deconv2.weight' has shape [32, 64, 3, 3], expected [64, 32, 3, 3]") !=
        std::string::npos);
  bad = f;
  bad.metadata["image_w"] = "7";  // 9×7 → 3×2 still, but the decoder's output padding differs: same shapes
  CHECK_NOTHROW(import_model(bad));
  bad.metadata["image_w"] = "20";
  CHECK(error_of([&] { import_model(bad); }).find("fc21.weight") != std::string::npos);
  bad = f;
  bad.metadata.erase("image_h");
  CHECK(error_of([&] { import_model(bad); }).find("image_h") != std::string::npos);
  bad = f;
  bad.tensors.push_back({"extra", {1}, {0.0f}});
  CHECK(error_of([&] { import_model(bad); }).find("unexpected tensor 'extra'") != std::string::npos);
  bad = f;
  bad.tensors.erase(std::remove_if(bad.tensors.begin(), bad.tensors.end(), [](const Tensor& t) { return t.name == "enc_conv1.bias"; }),
                    bad.tensors.end());
  CHECK(error_of([&] { import_model(bad); }).find("'enc_conv1.bias' is missing") != std::string::npos);
}

TEST_CASE("conv_vae: a checkpoint keeps the family and every parameter") {
  TrainingState s;
  s.model = conv_config(8, 8, 2);
  Model m(s.model);
  m.init(9);
  s.params.assign(m.params().begin(), m.params().end());
  const auto file = std::filesystem::temp_directory_path() / ("vaelab-test-conv-" + std::to_string(::getpid()) + ".vaelab");
  save_checkpoint(file, s);
  const TrainingState back = load_checkpoint(file);
  std::filesystem::remove(file);
  CHECK(back.model == s.model);
  CHECK(back.model.family == ModelFamily::Conv);
  CHECK(back.params == s.params);
  CHECK(Model(back.model).size() == back.params.size());
}

TEST_CASE("conv_vae: a short training run improves the test ELBO") {
  TrainerOptions opt;
  opt.max_epochs = 6;  // 10 batches per epoch
  opt.evaluate_before_training = true;
  opt.display_points = 50;
  TrainConfig t;
  t.batch = 50;
  t.lr = 3e-3f;
  t.seed = 7;
  t.threads = 2;
  Trainer tr(synthetic_data(500, 100), conv_config(8, 8, 2), t, opt);
  test::check_training_improves(tr, 7, 10.0f);
  const auto snap = tr.snapshot();
  CHECK(snap->model->all_finite());
  CHECK(snap->model->config().family == ModelFamily::Conv);
}
