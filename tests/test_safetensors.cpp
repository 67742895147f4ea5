// Tests for core/safetensors: the writer against the format's reference bytes, the strict header
// parser on malformed input, dtype conversion, and Model export/import in vaelab and PyTorch layouts.
// Not a test against files written by PyTorch itself (none ship with the tests; they are built here).
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/model.hpp"
#include "core/safetensors.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

void append_u64(Bytes& b, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// A file with the given header text (used as is, no padding) and data_bytes bytes of data.
Bytes file_with(const std::string& header, std::size_t data_bytes, std::uint8_t fill = 0) {
  Bytes b;
  append_u64(b, header.size());
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data_bytes, fill);
  return b;
}

SafetensorsFile decode(const Bytes& b) { return decode_safetensors(b.data(), b.size()); }

std::string decode_error(const std::string& header, std::size_t data_bytes) {
  const Bytes b = file_with(header, data_bytes);
  return error_of([&] { decode(b); });
}

}  // namespace

TEST_CASE("safetensors: the writer produces the reference bytes") {
  // The format's documented example, {"test": zeros((2, 2), float32)}: the length N as u64 LE, the
  // compact JSON padded with spaces to a multiple of 8 (as the reference writer does), the data.
  SafetensorsFile f;
  f.tensors.push_back({"test", {2, 2}, std::vector<float>(4, 0.0f)});
  const std::string json = R"({"test":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  REQUIRE(json.size() == 60);
  Bytes expected;
  append_u64(expected, 64);
  expected.insert(expected.end(), json.begin(), json.end());
  expected.insert(expected.end(), 4, ' ');
  expected.insert(expected.end(), 16, 0);
  CHECK(encode_safetensors(f) == expected);

  // No tensors, with and without metadata: "__metadata__" comes first and padding still applies.
  SafetensorsFile empty;
  Bytes e;
  append_u64(e, 8);
  for (char c : std::string("{}      ")) e.push_back(static_cast<std::uint8_t>(c));
  CHECK(encode_safetensors(empty) == e);
  empty.metadata["framework"] = "pt";
  const std::string meta_json = R"({"__metadata__":{"framework":"pt"}})";
  Bytes m;
  append_u64(m, 40);
  m.insert(m.end(), meta_json.begin(), meta_json.end());
  m.insert(m.end(), 40 - meta_json.size(), ' ');
  CHECK(encode_safetensors(empty) == m);

  // Values are little-endian F32.
  SafetensorsFile one;
  one.tensors.push_back({"x", {1}, {1.0f}});
  const Bytes b = encode_safetensors(one);
  CHECK(Bytes(b.end() - 4, b.end()) == Bytes{0x00, 0x00, 0x80, 0x3f});
  CHECK((b.size() - 4) % 8 == 0);

  // Tensors the writer cannot describe are refused.
  SafetensorsFile bad;
  bad.tensors.push_back({"x", {2, 2}, {1.0f}});
  CHECK(has(error_of([&] { encode_safetensors(bad); }), "has shape [2, 2] but 1 values"));
  bad.tensors = {{"x", {1}, {1.0f}}, {"x", {1}, {2.0f}}};
  CHECK(has(error_of([&] { encode_safetensors(bad); }), "used twice"));
}

TEST_CASE("safetensors: encode and decode round trip") {
  SafetensorsFile f;
  f.metadata["note"] = "quote \" backslash \\ newline \n tab \t ctrl \x01 unicode μσ²";
  f.metadata["empty"] = "";
  f.tensors.push_back({"a.weight", {2, 3}, {1, -2, 3.5f, 1e-30f, -0.0f, 7}});
  f.tensors.push_back({"scalar", {}, {42}});
  f.tensors.push_back({"none", {0, 5}, {}});
  f.tensors.push_back({"名前", {1}, {-1}});
  const Bytes b = encode_safetensors(f);
  const SafetensorsFile g = decode(b);
  CHECK(g.metadata == f.metadata);
  REQUIRE(g.tensors.size() == f.tensors.size());
  for (std::size_t i = 0; i < f.tensors.size(); ++i) {
    CHECK(g.tensors[i].name == f.tensors[i].name);
    CHECK(g.tensors[i].shape == f.tensors[i].shape);
    CHECK(g.tensors[i].data == f.tensors[i].data);
  }
  REQUIRE(g.find("scalar") != nullptr);
  CHECK(g.find("scalar")->data[0] == 42);
  CHECK(g.find("missing") == nullptr);

  // Through a file, written atomically.
  const fs::path dir = fs::temp_directory_path() / ("vaelab-test-safetensors-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  write_safetensors(dir / "f.safetensors", f);
  CHECK(read_safetensors(dir / "f.safetensors").tensors.size() == 4);
  CHECK(has(error_of([&] { read_safetensors(dir / "absent.safetensors"); }), "does not exist"));
  fs::remove_all(dir);
}

TEST_CASE("safetensors: F16, BF16 and F64 are read as floats") {
  Bytes data;
  // F16: 1, -2.5, 65504 (largest), 2^-24 (smallest subnormal), +inf
  for (std::uint16_t h : {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x7C00}) {
    data.push_back(static_cast<std::uint8_t>(h));
    data.push_back(static_cast<std::uint8_t>(h >> 8));
  }
  // BF16: 1, -3
  for (std::uint16_t h : {0x3F80, 0xC040}) {
    data.push_back(static_cast<std::uint8_t>(h));
    data.push_back(static_cast<std::uint8_t>(h >> 8));
  }
  // F64: 0.1
  append_u64(data, std::bit_cast<std::uint64_t>(0.1));
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},)"
      R"( "b" : { "shape" : [ 2 ] , "dtype" : "BF16" , "data_offsets" : [ 10 , 14 ] },)"
      "\n"
      R"("d":{"dtype":"F64","shape":[1,1],"data_offsets":[14,22]}}  )";
  Bytes file;
  append_u64(file, header.size());
  file.insert(file.end(), header.begin(), header.end());
  file.insert(file.end(), data.begin(), data.end());
  const SafetensorsFile f = decode(file);
  const Tensor* h = f.find("h");
  REQUIRE(h);
  CHECK(h->data == std::vector<float>{1.0f, -2.5f, 65504.0f, 0x1.0p-24f, std::numeric_limits<float>::infinity()});
  REQUIRE(f.find("b"));
  CHECK(f.find("b")->data == std::vector<float>{1.0f, -3.0f});
  REQUIRE(f.find("d"));
  CHECK(f.find("d")->data[0] == static_cast<float>(0.1));
  CHECK(f.find("d")->shape == std::vector<std::int64_t>{1, 1});
}

TEST_CASE("safetensors: malformed files are refused") {
  const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_NOTHROW(decode(file_with(ok, 8)));
  std::string m;

  SUBCASE("bad header length") {
    m = error_of([] { decode(Bytes{1, 0, 0}); });
    CHECK_MESSAGE(has(m, "too few for the 8-byte header length"), m);
    Bytes b = file_with(ok, 8);
    b[0] = static_cast<std::uint8_t>(ok.size() + 9);  // one past the end of the file
    m = error_of([&] { decode(b); });
    CHECK_MESSAGE(has(m, "bytes follow the length field"), m);
    b[0] = 0;
    b[4] = 0x10;  // 2^36: beyond the 100 MB limit
    m = error_of([&] { decode(b); });
    CHECK_MESSAGE(has(m, "more than the 100 MB allowed"), m);
    b = file_with(ok, 8);
    b[7] = 0x80;  // a length with the top bit set must not wrap around
    m = error_of([&] { decode(b); });
    CHECK_MESSAGE(has(m, "more than the 100 MB allowed"), m);
  }
  SUBCASE("offsets out of range, overlapping, gaps, left-over bytes") {
    m = decode_error(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4);
    CHECK_MESSAGE(has(m, "outside the data section of 4 bytes"), m);
    m = decode_error(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8);
    CHECK_MESSAGE(has(m, "end before they begin"), m);
    m = decode_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     12);
    CHECK_MESSAGE(has(m, "tensors 'a' and 'b' overlap"), m);
    m = decode_error(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12);
    CHECK_MESSAGE(has(m, "4 bytes before tensor 't' belong to no tensor"), m);
    m = decode_error(ok, 12);
    CHECK_MESSAGE(has(m, "4 bytes at the end of the data section belong to no tensor"), m);
  }
  SUBCASE("size that does not match shape and dtype") {
    m = decode_error(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
    CHECK_MESSAGE(has(m, "holds 8 bytes, but its shape and dtype F32 need 12"), m);
    m = decode_error(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})", 8);
    CHECK_MESSAGE(has(m, "need more than 2^64"), m);
  }
  SUBCASE("dtypes") {
    m = decode_error(R"({"t":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8);
    CHECK_MESSAGE(has(m, "unknown dtype 'F31'"), m);
    m = decode_error(R"({"t":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})", 8);
    CHECK_MESSAGE(has(m, "has dtype I32; vaelab reads only F32, F16, BF16 and F64"), m);
    m = decode_error(R"({"t":{"dtype":5,"shape":[2],"data_offsets":[0,8]}})", 8);
    CHECK_MESSAGE(has(m, "dtype is not a string"), m);
  }
  SUBCASE("garbage and almost-JSON") {
    const char* bad[] = {
        "not json at all",
        "[1,2]",
        R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})",             // unclosed
        R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})",           // trailing comma
        R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}x)",           // text after
        R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}{})",          // two objects
        R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})",      // unknown field
        R"({"t":{"dtype":"F32","shape":[2]}})",                                 // no offsets
        R"({"t":{"dtype":"F32","data_offsets":[0,8]}})",                        // no shape
        R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})",          // three offsets
        R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",           // negative
        R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",          // not an integer
        R"({"t":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}})",           // leading zero
        R"({"t":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})",  // too big
        R"({"t":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}})",  // field twice
        R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
        R"({"__metadata__":{"a":1},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",  // non-string value
        R"({"__metadata__":{"a":"x","a":"y"},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
        R"({"t\q":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",          // bad escape
        R"({"t\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",      // lone surrogate
        "{\"t\x01\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",  // raw control char
        "{\"t\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",  // invalid UTF-8
        "{\"t\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",  // overlong UTF-8
        R"({"t":[1,2]})",
        R"({"t":{}})",
        R"({"t")",
        "",
    };
    for (const std::string h : bad) {
      CAPTURE(h);
      m = decode_error(h, 8);
      CHECK_MESSAGE(has(m, "safetensors header is malformed"), m);
    }
  }
  SUBCASE("escapes that are valid") {
    const SafetensorsFile f =
        decode(file_with(R"({"\u00b5\/\ud83d\ude00":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
    REQUIRE(f.tensors.size() == 1);
    CHECK(f.tensors[0].name == "\xc2\xb5/\xf0\x9f\x98\x80");
  }
}

namespace {

Model make_model(ModelConfig cfg, std::uint64_t seed) {
  Model m(std::move(cfg));
  m.init(seed);
  if (m.decoder_logvar_offset() != Model::npos) m.params()[m.decoder_logvar_offset()] = -1.25f;
  return m;
}

// 2×3 images, one hidden layer of 4, latent 2: every tensor small enough to edit by hand.
ModelConfig small_import_config() { return {.image_h = 2, .image_w = 3, .latent = 2, .hidden = {4}}; }

}  // namespace

TEST_CASE("safetensors: export and import keep the model exactly") {
  ModelConfig one;
  one.image_h = 4;
  one.image_w = 5;
  one.latent = 3;
  one.hidden = {6};
  one.likelihood = Likelihood::Bernoulli;
  ModelConfig deep = one;
  deep.hidden = {7, 5};
  deep.likelihood = Likelihood::GaussianLearned;
  ModelConfig fixed = one;
  fixed.likelihood = Likelihood::GaussianFixed;
  fixed.gaussian_sigma = 0.3f;
  ModelConfig clustering = one;
  clustering.family = ModelFamily::Gmvae;
  clustering.clusters = 4;
  ModelConfig vade = clustering;
  vade.family = ModelFamily::Vade;

  for (const ModelConfig& cfg : {one, deep, fixed, clustering, vade}) {
    CAPTURE(cfg.hidden.size());
    const Model a = make_model(cfg, 11);
    const SafetensorsFile f = export_model(a);
    if (cfg.hidden.size() == 1) {
      for (const char* n : {"fc1.weight", "fc1.bias", "fc21.weight", "fc22.bias", "fc3.weight", "fc4.bias"})
        CHECK_MESSAGE(f.find(n) != nullptr, n);
      CHECK(f.find("fc1.weight")->shape == std::vector<std::int64_t>{6, 20});
      CHECK(f.find("fc4.weight")->shape == std::vector<std::int64_t>{20, 6});
    } else {
      for (const char* n : {"encoder.0.weight", "encoder.1.bias", "fc21.weight", "fc22.weight", "decoder.0.weight",
                            "decoder.2.bias", "decoder_logvar"})
        CHECK_MESSAGE(f.find(n) != nullptr, n);
      CHECK(f.find("decoder.2.weight")->shape == std::vector<std::int64_t>{20, 7});
    }
    CHECK(f.metadata.at("format") == "vaelab-vae");
    CHECK(f.metadata.at("image_h") == "4");
    CHECK(f.metadata.at("image_w") == "5");
    CHECK(f.metadata.at("latent") == "3");

    // Through the bytes, as a file would go.
    const Bytes bytes = encode_safetensors(f);
    const Model b = import_model(decode(bytes));
    CHECK(b.config() == a.config());
    CHECK(b.params() == a.params());

    Eigen::MatrixXf z = Eigen::MatrixXf::Random(cfg.latent, 4);
    Eigen::MatrixXf ya, yb;
    a.decode_raw(z, ya);
    b.decode_raw(z, yb);
    CHECK(ya == yb);
    Eigen::MatrixXf x = Eigen::MatrixXf::Random(cfg.input_dim(), 3).cwiseAbs();
    Eigen::MatrixXf mua, lva, mub, lvb;
    a.encode(x, mua, lva);
    b.encode(x, mub, lvb);
    CHECK(mua == mub);
    CHECK(lva == lvb);
    if (is_clustering(cfg.family)) {
      CHECK(f.metadata.at("family") == to_string(cfg.family));
      CHECK((f.find("classifier.0.weight") != nullptr) == (cfg.family == ModelFamily::Gmvae));
      CHECK(f.find("cluster_means")->shape == std::vector<std::int64_t>{4, 3});
      Eigen::MatrixXf pa, pb;
      a.classify(z, pa);
      b.classify(z, pb);
      CHECK(pa == pb);
    }
  }
}

TEST_CASE("safetensors: colour models record image_c = 3 and come back in colour, grey files leave it out") {
  const ModelConfig mlp{.image_c = 3, .image_h = 4, .image_w = 5, .latent = 3, .hidden = {6}};
  ModelConfig conv = mlp;
  conv.family = ModelFamily::Conv;
  conv.hidden = ModelConfig{}.hidden;  // unused by the conv family, which imports with the default
  ModelConfig clustering = mlp;
  clustering.family = ModelFamily::Gmvae;
  clustering.clusters = 3;
  for (const ModelConfig& cfg : {mlp, conv, clustering}) {
    CAPTURE(static_cast<int>(cfg.family));
    const Model a = make_model(cfg, 5);
    const SafetensorsFile f = export_model(a);
    CHECK(f.metadata.at("image_c") == "3");
    const Model b = import_model(decode(encode_safetensors(f)));
    CHECK(b.config() == cfg);
    CHECK(b.params() == a.params());
    // Without image_c the same tensors are a grey model of three times the pixels, which they do not fit.
    SafetensorsFile grey = f;
    grey.metadata.erase("image_c");
    CHECK_THROWS_AS(import_model(grey), Error);
    SafetensorsFile bad = f;
    bad.metadata["image_c"] = "4";
    CHECK(has(error_of([&] { import_model(bad); }), "image_c '4' is not 1 (grey) or 3 (colour)"));
  }
  ModelConfig grey = mlp;
  grey.image_c = 1;
  CHECK(export_model(make_model(grey, 5)).metadata.count("image_c") == 0);
  // A colour MLP without image_h/image_w: the size is the square root of D / 3.
  SafetensorsFile square = export_model(make_model({.image_c = 3, .image_h = 4, .image_w = 4, .latent = 2, .hidden = {5}}, 2));
  square.metadata.erase("image_h");
  square.metadata.erase("image_w");
  const Model sq = import_model(square);
  CHECK(sq.config().image_c == 3);
  CHECK(sq.config().image_h == 4);
  CHECK(sq.config().image_w == 4);
}

TEST_CASE("safetensors: an export written before colour imports as a grey model") {
  // tests/data/grey-v1.safetensors: written by vaelab-train before safetensors recorded channels.
  const Model m = import_model_file(fs::path(VAELAB_TEST_DATA_DIR) / "grey-v1.safetensors");
  CHECK(m.config().image_c == 1);
  CHECK(m.config().image_h == 28);
  CHECK(m.config().image_w == 28);
  CHECK(m.config().latent == 2);
  CHECK(m.config().hidden == std::vector<int>{8});
  CHECK(m.all_finite());
  // Written again it is the very same bytes: grey exports have not changed.
  const Bytes old_bytes = read_all(fs::path(VAELAB_TEST_DATA_DIR) / "grey-v1.safetensors");
  CHECK(encode_safetensors(export_model(m)) == old_bytes);
}

TEST_CASE("safetensors: a PyTorch examples/vae layout imports with the right transposition") {
  // PyTorch nn.Linear: weight [out, in] row-major, so element (r, c) is at r * in + c.
  const int D = 9, H = 4, L = 2;  // a 3×3 image; no metadata, so the size comes from √9
  auto linear = [](const std::string& name, int out, int in, float base) {
    std::vector<Tensor> t(2);
    t[0] = {name + ".weight", {out, in}, std::vector<float>(static_cast<std::size_t>(out) * in)};
    for (int i = 0; i < out * in; ++i) t[0].data[static_cast<std::size_t>(i)] = base + 0.01f * static_cast<float>(i);
    t[1] = {name + ".bias", {out}, std::vector<float>(static_cast<std::size_t>(out))};
    for (int i = 0; i < out; ++i) t[1].data[static_cast<std::size_t>(i)] = -base - 0.5f * static_cast<float>(i);
    return t;
  };
  SafetensorsFile f;
  for (auto& v : {linear("fc1", H, D, 1), linear("fc21", L, H, 2), linear("fc22", L, H, 3), linear("fc3", H, L, 4),
                  linear("fc4", D, H, 5)})
    f.tensors.insert(f.tensors.end(), v.begin(), v.end());

  const Model m = import_model(decode(encode_safetensors(f)));
  CHECK(m.config().image_h == 3);
  CHECK(m.config().image_w == 3);
  CHECK(m.config().latent == L);
  CHECK(m.config().hidden == std::vector<int>{H});
  CHECK(m.config().likelihood == Likelihood::Bernoulli);

  const auto& enc = m.encoder();
  const auto& dec = m.decoder();
  // fc1.weight[2][5] is element 2 * 9 + 5 = 23.
  CHECK(m.W(enc[0])(2, 5) == doctest::Approx(1 + 0.01 * 23));
  CHECK(m.b(enc[0])(3) == doctest::Approx(-1 - 0.5 * 3));
  // The head stacks fc21 (μ) over fc22 (log σ²): fc22.weight[1][3] is row L + 1 of the head.
  CHECK(m.W(enc[1])(0, 1) == doctest::Approx(2 + 0.01 * 1));
  CHECK(m.W(enc[1])(L + 1, 3) == doctest::Approx(3 + 0.01 * (1 * H + 3)));
  CHECK(m.b(enc[1])(L + 0) == doctest::Approx(-3));
  // fc4.weight[8][1] is element 8 * 4 + 1 = 33.
  CHECK(m.W(dec[1])(8, 1) == doctest::Approx(5 + 0.01 * 33));

  // And the encoder computes μ = fc21(relu(fc1 x)) by PyTorch's conventions.
  Eigen::VectorXf x(D);
  for (int i = 0; i < D; ++i) x(i) = 0.1f * static_cast<float>(i);
  std::vector<float> h(static_cast<std::size_t>(H));
  for (int r = 0; r < H; ++r) {
    float s = f.find("fc1.bias")->data[static_cast<std::size_t>(r)];
    for (int c = 0; c < D; ++c) s += f.find("fc1.weight")->data[static_cast<std::size_t>(r * D + c)] * x(c);
    h[static_cast<std::size_t>(r)] = std::max(s, 0.0f);
  }
  float mu1 = f.find("fc21.bias")->data[1];
  for (int c = 0; c < H; ++c) mu1 += f.find("fc21.weight")->data[static_cast<std::size_t>(H + c)] * h[static_cast<std::size_t>(c)];
  Eigen::MatrixXf mu, lv;
  m.encode(x, mu, lv);
  CHECK(mu(1, 0) == doctest::Approx(mu1).epsilon(1e-5));

  // Exporting gives the same tensors back.
  const SafetensorsFile back = export_model(m);
  for (const auto& t : f.tensors) {
    CAPTURE(t.name);
    REQUIRE(back.find(t.name));
    CHECK(back.find(t.name)->shape == t.shape);
    CHECK(back.find(t.name)->data == t.data);
  }
}

TEST_CASE("safetensors: import refuses files that do not describe a vaelab model") {
  const SafetensorsFile good = export_model(make_model(small_import_config(), 3));
  CHECK_NOTHROW(import_model(good));
  auto without = [&](const std::string& name) {
    SafetensorsFile f = good;
    std::erase_if(f.tensors, [&](const Tensor& t) { return t.name == name; });
    return f;
  };
  std::string m = error_of([&] { import_model(without("fc22.weight")); });
  CHECK_MESSAGE(has(m, "tensor 'fc22.weight' is missing"), m);

  SafetensorsFile f = good;
  f.metadata.clear();  // 6 inputs is not a square
  m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(has(m, "the input size 6 is not a square"), m);

  f = good;
  f.tensors.push_back({"extra", {1}, {0}});
  m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(has(m, "unexpected tensor 'extra'"), m);

  f = good;
  f.metadata["image_h"] = "3";
  m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(has(m, "does not match the 6 inputs"), m);

  f = good;
  for (auto& t : f.tensors)
    if (t.name == "fc3.weight") t = {"fc3.weight", {5, 2}, std::vector<float>(10)};
  m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(has(m, "fc3"), m);

  f = good;
  f.metadata["likelihood"] = "gaussian-learned";
  m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(has(m, "'decoder_logvar' is missing"), m);

  f = good;
  f.tensors[0].data[0] = std::numeric_limits<float>::quiet_NaN();
  m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(has(m, "NaN or Inf"), m);

  m = error_of([] { import_model(SafetensorsFile{}); });
  CHECK_MESSAGE(has(m, "no encoder layers"), m);
}

TEST_CASE("safetensors: a convolutional file's image size is checked against its tensors before allocating") {
  // Metadata asking for 1024×1024 images with a 4 KB 'fc21.weight' of shape [1024, 1] must be refused
  // by its shape, not by building a 40 GB model first.
  SafetensorsFile f;
  f.metadata = {{"family", "conv"}, {"image_h", "1024"}, {"image_w", "1024"}};
  f.tensors.push_back({"fc21.weight", {1024, 1}, std::vector<float>(1024, 0.0f)});
  const std::string m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(has(m, "tensor 'fc21.weight' has shape [1024, 1], expected [1024, 4194304]"), m);

  // A real convolutional model still exports and imports exactly.
  ModelConfig c;
  c.family = ModelFamily::Conv;
  c.image_h = 9;
  c.image_w = 7;
  c.latent = 3;
  Model model(c);
  model.init(5);
  const Model back = import_model(export_model(model));
  CHECK(back.config().family == ModelFamily::Conv);
  CHECK(back.params() == model.params());
}

TEST_CASE("safetensors: a transposed weight and a metadata latent size that does not fit are named") {
  const SafetensorsFile good = export_model(make_model(small_import_config(), 3));
  SafetensorsFile f = good;
  for (auto& t : f.tensors)
    if (t.name == "fc1.weight") t.shape = {6, 4};  // [in, out]: stored transposed
  std::string m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(m == "cannot import the model: tensor 'fc1.weight' has shape [6, 4] but 'fc1.bias' has 4 entries: the "
                     "weight looks transposed (PyTorch stores a layer's weight as [out, in], here [4, 6])",
                m);

  f = good;
  f.metadata["latent"] = "99999999";
  m = error_of([&] { import_model(f); });
  CHECK_MESSAGE(m == "cannot import the model: the metadata's latent size '99999999' does not match the 2 rows of "
                     "'fc21.weight'",
                m);
  f.metadata["latent"] = "2";
  CHECK_NOTHROW(import_model(f));
}

TEST_CASE("safetensors: a header that describes no importable model is refused before the data is read") {
  // A 2.24 GB file (sparse here) whose header declares a 350,000-wide first layer and nothing else.
  TempDir dir("safetensors");
  const std::uint64_t weight_bytes = 4ull * 1600 * 350000;
  std::string header = "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[1600,350000],\"data_offsets\":[0," +
                       std::to_string(weight_bytes) + "]},\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[1600]," +
                       "\"data_offsets\":[" + std::to_string(weight_bytes) + "," + std::to_string(weight_bytes + 6400) +
                       "]}}";
  Bytes head;
  append_u64(head, header.size());
  head.insert(head.end(), header.begin(), header.end());
  const fs::path file = dir / "wide.safetensors";
  write_all(file, head);
  fs::resize_file(file, head.size() + weight_bytes + 6400);

  // Bytes this process has read through read(2) so far.
  auto bytes_read = [] {
    std::ifstream io("/proc/self/io");
    for (std::string key; io >> key;) {
      std::uint64_t v = 0;
      io >> v;
      if (key == "rchar:") return v;
    }
    return std::uint64_t{0};
  };
  const std::uint64_t before = bytes_read();
  const std::string m = error_of([&] { import_model_file(file); });
  const std::uint64_t read = bytes_read() - before;
  CHECK_MESSAGE(m == file.string() + ": cannot import the model: tensor 'fc3.weight' is missing", m);
  CHECK_MESSAGE(read < (1u << 20), "bytes read: " << read);
}
