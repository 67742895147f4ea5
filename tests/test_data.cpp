// Tests for core/data: IDX files (raw and gzipped) written here in a temporary folder, every kind
// of broken header, the folder loader, and the batch conversion. Not a test of training on the data.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

Bytes idx(std::uint8_t type, const std::vector<std::uint32_t>& dims, const Bytes& payload) {
  Bytes b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes ramp(std::size_t n, int mul = 37) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * mul);
  return b;
}

// Writes a small MNIST-layout folder: n_train and n_test images of h×w with labels 0..classes-1.
void write_set(const fs::path& folder, int n_train, int n_test, int h, int w, int classes, bool gz,
               bool labels = true) {
  fs::create_directories(folder);
  auto put = [&](const std::string& name, const Bytes& b) {
    if (gz) write_gz(folder / (name + ".gz"), b);
    else write_all(folder / name, b);
  };
  auto lab = [&](int n) {
    Bytes l(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) l[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i % classes);
    return l;
  };
  const auto H = static_cast<std::uint32_t>(h), W = static_cast<std::uint32_t>(w);
  put("train-images-idx3-ubyte", idx(0x08, {static_cast<std::uint32_t>(n_train), H, W}, ramp(std::size_t(n_train) * h * w)));
  put("t10k-images-idx3-ubyte", idx(0x08, {static_cast<std::uint32_t>(n_test), H, W}, ramp(std::size_t(n_test) * h * w, 11)));
  if (labels) {
    put("train-labels-idx1-ubyte", idx(0x08, {static_cast<std::uint32_t>(n_train)}, lab(n_train)));
    put("t10k-labels-idx1-ubyte", idx(0x08, {static_cast<std::uint32_t>(n_test)}, lab(n_test)));
  }
}

}  // namespace

TEST_CASE("data: raw and gzipped IDX files read back exactly") {
  TempDir dir;
  const Bytes pixels = ramp(3 * 2 * 4);
  const Bytes labels = {7, 0, 9};
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    const auto img = dir / (gz ? "img.gz" : "img");
    const auto lab = dir / (gz ? "lab.gz" : "lab");
    (gz ? write_gz : write_all)(img, idx(0x08, {3, 2, 4}, pixels));
    (gz ? write_gz : write_all)(lab, idx(0x08, {3}, labels));
    const ImageSet s = read_idx_images(img);
    CHECK(s.count == 3);
    CHECK(s.height == 2);
    CHECK(s.width == 4);
    CHECK(s.pixels == pixels);
    CHECK(s.values_per_image() == 8);
    CHECK(s.image(2)[0] == pixels[16]);
    CHECK_FALSE(s.has_labels());
    CHECK(read_idx_labels(lab) == labels);
  }
  // Two dimensions: N images of D pixels, read as N×1×D.
  write_all(dir / "flat", idx(0x08, {2, 5}, ramp(10)));
  const ImageSet flat = read_idx_images(dir / "flat");
  CHECK(flat.count == 2);
  CHECK(flat.height == 1);
  CHECK(flat.width == 5);
  CHECK(flat.pixels == ramp(10));
}

TEST_CASE("data: broken IDX files are refused with messages that say what is wrong") {
  TempDir dir;
  const auto p = dir / "train-images-idx3-ubyte";
  auto images_error = [&](const Bytes& b, bool gz = false) {
    (gz ? write_gz : write_all)(p, b);
    return error_of([&] { read_idx_images(p); });
  };
  auto labels_error = [&](const Bytes& b) {
    write_all(p, b);
    return error_of([&] { read_idx_labels(p); });
  };
  std::string m;

  SUBCASE("bad magic") {
    Bytes b = idx(0x08, {1, 2, 2}, ramp(4));
    b[0] = 0x1f;
    m = images_error(b);
    CHECK_MESSAGE(has(m, "not an IDX file"), m);
    CHECK_MESSAGE(has(m, p.string()), m);
  }
  SUBCASE("element type other than unsigned byte") {
    m = images_error(idx(0x0D, {1, 2, 2}, Bytes(16)));
    CHECK_MESSAGE(has(m, "0x0D (float) is not supported"), m);
  }
  SUBCASE("wrong number of dimensions") {
    m = images_error(idx(0x08, {1, 2, 2, 1}, ramp(4)));
    CHECK_MESSAGE(has(m, "has 4 dimensions, expected 3"), m);
    m = labels_error(idx(0x08, {2, 1}, ramp(2)));
    CHECK_MESSAGE(has(m, "has 2 dimensions, expected 1"), m);
  }
  SUBCASE("a zero dimension") {
    m = images_error(idx(0x08, {0, 28, 28}, {}));
    CHECK_MESSAGE(has(m, "holds 0 images"), m);
    m = images_error(idx(0x08, {5, 0, 28}, {}));
    CHECK_MESSAGE(has(m, "dimension 2 is 0"), m);
    m = labels_error(idx(0x08, {0}, {}));
    CHECK_MESSAGE(has(m, "holds 0 labels"), m);
  }
  SUBCASE("dimensions whose product overflows 64 bits") {
    m = images_error(idx(0x08, {0x40000000u, 0x40000000u, 0x40000000u}, ramp(4)));
    CHECK_MESSAGE(has(m, "more than the 2147483648"), m);
  }
  SUBCASE("a dimension beyond int range") {
    m = images_error(idx(0x08, {0x80000000u, 1, 1}, ramp(4)));
    CHECK_MESSAGE(has(m, "dimension 1 is 2147483648"), m);
  }
  SUBCASE("a header promising more than the cap") {
    m = images_error(idx(0x08, {65536, 256, 256}, ramp(4)));
    CHECK_MESSAGE(has(m, "65536 × 256 × 256 pixel bytes, more than"), m);
  }
  SUBCASE("truncated payload, raw and gzipped") {
    for (bool gz : {false, true}) {
      m = images_error(idx(0x08, {3, 2, 4}, ramp(10)), gz);
      CHECK_MESSAGE(has(m, p.string() + ": file is truncated: header promises 24 pixel bytes, found 10"), m);
    }
  }
  SUBCASE("truncated gzip stream") {
    // Compress a valid file, then cut the compressed bytes short.
    const auto gz = dir / "cut.gz";
    write_gz(gz, idx(0x08, {50, 10, 10}, ramp(5000, 131)));
    std::ifstream in(gz, std::ios::binary);
    Bytes whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const Bytes complete = whole;
    whole.resize(whole.size() / 2);
    write_all(gz, whole);
    m = error_of([&] { read_idx_images(gz); });
    CHECK_MESSAGE((has(m, "truncated") || has(m, "damaged")), m);
    // Cut inside the gzip trailer only: every pixel is there but the stream is incomplete.
    write_all(gz, Bytes(complete.begin(), complete.end() - 3));
    m = error_of([&] { read_idx_images(gz); });
    CHECK_MESSAGE(has(m, "file is truncated: the gzip stream ends early"), m);
    // A flipped byte in the compressed data is caught by zlib's checks.
    Bytes flipped = complete;
    flipped[flipped.size() / 2] ^= 0x55;
    write_all(gz, flipped);
    m = error_of([&] { read_idx_images(gz); });
    CHECK_MESSAGE(m != "<no vaelab::Error thrown>", m);
  }
  SUBCASE("truncated header") {
    m = images_error({0, 0, 8, 3, 0, 0});
    CHECK_MESSAGE(has(m, "file is truncated: the IDX header needs 12 bytes"), m);
    m = images_error({0, 0});
    CHECK_MESSAGE(has(m, "too short for an IDX header"), m);
    m = images_error({});
    CHECK_MESSAGE(has(m, "file is empty"), m);
  }
  SUBCASE("trailing bytes, raw and gzipped") {
    for (bool gz : {false, true}) {
      m = images_error(idx(0x08, {1, 2, 2}, ramp(7)), gz);
      CHECK_MESSAGE(has(m, "file has 3 trailing bytes after the 4 pixel bytes"), m);
    }
  }
  SUBCASE("missing file and folder in place of a file") {
    m = error_of([&] { read_idx_images(dir / "nope"); });
    CHECK_MESSAGE(has(m, "does not exist"), m);
    m = error_of([&] { read_idx_images(dir.path); });
    CHECK_MESSAGE(has(m, "is a folder"), m);
  }
}

TEST_CASE("data: load_idx_folder reads MNIST-layout folders") {
  TempDir dir;
  SUBCASE("gzipped, with labels, Fashion names") {
    const auto folder = dir / "My-Fashion-Set";
    write_set(folder, 12, 5, 3, 4, 10, true);
    const Dataset d = load_idx_folder(folder.string() + "/");  // a trailing slash keeps the name
    CHECK(d.name == "My-Fashion-Set");
    CHECK(d.train.count == 12);
    CHECK(d.test.count == 5);
    CHECK(d.train.height == 3);
    CHECK(d.test.width == 4);
    CHECK(d.train.labels.size() == 12);
    CHECK(d.test.labels[4] == 4);
    REQUIRE(d.class_names.size() == 10);
    CHECK(d.class_names[0] == "T-shirt/top");
    CHECK(d.class_names[9] == "Ankle boot");
  }
  SUBCASE("raw, labels numbered 0..max") {
    const auto folder = dir / "digits";
    write_set(folder, 8, 4, 2, 2, 4, false);
    const Dataset d = load_idx_folder(folder);
    CHECK(d.name == "digits");
    CHECK(d.class_names == std::vector<std::string>{"0", "1", "2", "3"});
    CHECK(d.train.pixels == ramp(32));
  }
  SUBCASE("no labels and the train-images.idx3-ubyte spelling") {
    const auto folder = dir / "plain";
    write_set(folder, 4, 2, 2, 2, 1, false, false);
    fs::rename(folder / "train-images-idx3-ubyte", folder / "train-images.idx3-ubyte");
    const Dataset d = load_idx_folder(folder);
    CHECK(d.train.count == 4);
    CHECK_FALSE(d.train.has_labels());
    CHECK_FALSE(d.test.has_labels());
    CHECK(d.class_names.empty());
  }
}

TEST_CASE("data: load_idx_folder refuses missing and inconsistent folders") {
  TempDir dir;
  std::string m;
  SUBCASE("missing folder") {
    m = error_of([&] { load_idx_folder(dir / "absent"); });
    CHECK(m == "data folder '" + (dir / "absent").string() + "' does not exist");
  }
  SUBCASE("missing image files") {
    fs::create_directories(dir / "empty");
    m = error_of([&] { load_idx_folder(dir / "empty"); });
    CHECK_MESSAGE(has(m, "has no training images: expected train-images-idx3-ubyte or train-images-idx3-ubyte.gz"), m);
    write_set(dir / "notest", 4, 2, 2, 2, 2, false);
    fs::remove(dir / "notest" / "t10k-images-idx3-ubyte");
    m = error_of([&] { load_idx_folder(dir / "notest"); });
    CHECK_MESSAGE(has(m, "has no test images"), m);
  }
  SUBCASE("label count differs from image count") {
    write_set(dir / "s", 4, 2, 2, 2, 2, false);
    write_all(dir / "s" / "train-labels-idx1-ubyte", idx(0x08, {3}, {0, 1, 0}));
    m = error_of([&] { load_idx_folder(dir / "s"); });
    CHECK_MESSAGE(has(m, "train-labels-idx1-ubyte: has 3 labels but train-images-idx3-ubyte has 4 images"), m);
  }
  SUBCASE("labels number the classes densely from 0") {
    write_set(dir / "s", 4, 2, 2, 2, 2, false);
    write_all(dir / "s" / "t10k-labels-idx1-ubyte", idx(0x08, {2}, {9, 200}));
    m = error_of([&] { load_idx_folder(dir / "s"); });
    CHECK_MESSAGE(has(m, (dir / "s" / "t10k-labels-idx1-ubyte").string() + ": label 1 is 200, but only"), m);
    CHECK_MESSAGE(has(m, "labels must number the classes from 0"), m);
    write_all(dir / "s" / "t10k-labels-idx1-ubyte", idx(0x08, {2}, {9, 1}));
    CHECK(load_idx_folder(dir / "s").class_names.size() == 10);
    // More than ten classes, as in EMNIST letters: the names are the numbers.
    write_all(dir / "s" / "train-labels-idx1-ubyte", idx(0x08, {4}, {6, 7, 8, 11}));
    write_all(dir / "s" / "t10k-labels-idx1-ubyte", idx(0x08, {2}, {9, 10}));
    const Dataset wide = load_idx_folder(dir / "s");
    REQUIRE(wide.class_names.size() == 12);
    CHECK(wide.class_names[11] == "11");
  }
  SUBCASE("a Fashion-MNIST folder has ten classes") {
    write_set(dir / "fashion-s", 4, 2, 2, 2, 2, false);
    write_all(dir / "fashion-s" / "t10k-labels-idx1-ubyte", idx(0x08, {2}, {9, 10}));
    m = error_of([&] { load_idx_folder(dir / "fashion-s"); });
    CHECK(m == (dir / "fashion-s" / "t10k-labels-idx1-ubyte").string() + ": label 1 is 10; the classes are 0 to 9");
  }
  SUBCASE("train and test image sizes differ") {
    write_set(dir / "s", 4, 2, 2, 2, 2, false);
    write_all(dir / "s" / "t10k-images-idx3-ubyte", idx(0x08, {2, 3, 2}, ramp(12)));
    m = error_of([&] { load_idx_folder(dir / "s"); });
    CHECK_MESSAGE(has(m, "images are 3×2 but the training images"), m);
  }
  SUBCASE("a broken file inside the folder names that file") {
    write_set(dir / "s", 4, 2, 2, 2, 2, true);
    write_gz(dir / "s" / "train-images-idx3-ubyte.gz", idx(0x08, {4, 2, 2}, ramp(5)));
    m = error_of([&] { load_idx_folder(dir / "s"); });
    CHECK_MESSAGE(has(m, "train-images-idx3-ubyte.gz: file is truncated: header promises 16 pixel bytes, found 5"), m);
  }
}

TEST_CASE("data: gather_batch makes [0, 1] columns and binarizes") {
  ImageSet s;
  s.count = 3;
  s.height = 1;
  s.width = 4;
  s.pixels = {0, 255, 51, 128, 1, 2, 3, 4, 255, 255, 0, 0};
  const int idx[2] = {2, 0};
  Eigen::MatrixXf out(4, 2);
  gather_batch(s, idx, 2, Binarize::None, nullptr, out);
  CHECK(out(0, 0) == 1.0f);
  CHECK(out(2, 0) == 0.0f);
  CHECK(out(1, 1) == 1.0f);
  CHECK(out(2, 1) == 51.0f / 255.0f);
  CHECK(out(3, 1) == 128.0f / 255.0f);

  // Dynamic: 0 and 255 are certain; others follow Bernoulli(p), the same for the same stream.
  Rng a(9), b(9);
  Eigen::MatrixXf x(4, 2), y(4, 2);
  gather_batch(s, idx, 2, Binarize::Dynamic, &a, x);
  gather_batch(s, idx, 2, Binarize::Dynamic, &b, y);
  CHECK(x == y);
  CHECK(x(0, 0) == 1.0f);
  CHECK(x(2, 0) == 0.0f);
  CHECK(x(0, 1) == 0.0f);
  CHECK(x(1, 1) == 1.0f);
  ImageSet grey;
  grey.count = 1;
  grey.height = 100;
  grey.width = 100;
  grey.pixels.assign(10000, 64);
  const int zero = 0;
  Eigen::MatrixXf g(10000, 1);
  gather_batch(grey, &zero, 1, Binarize::Dynamic, &a, g);
  CHECK(((g.array() == 0.0f) || (g.array() == 1.0f)).all());
  CHECK(g.mean() == doctest::Approx(64.0 / 255.0).epsilon(0.1));

  CHECK(has(error_of([&] { gather_batch(s, idx, 2, Binarize::Dynamic, nullptr, x); }), "random generator"));
  const int bad = 3;
  CHECK(has(error_of([&] { gather_batch(s, &bad, 1, Binarize::None, nullptr, x); }), "outside 0..2"));

  ImageSet st = grey, st2 = grey;
  binarize_static(st, 5);
  binarize_static(st2, 5);
  CHECK(st.pixels == st2.pixels);
  int ones = 0;
  for (auto v : st.pixels) {
    CHECK((v == 0 || v == 255));
    ones += v == 255;
  }
  CHECK(ones / 10000.0 == doctest::Approx(64.0 / 255.0).epsilon(0.1));
  ImageSet ends = s;
  binarize_static(ends, 1);
  CHECK(ends.pixels[0] == 0);
  CHECK(ends.pixels[1] == 255);
}

TEST_CASE("data: the installed Fashion-MNIST folder loads") {
  const auto folder = default_data_folder();
  CHECK(folder == fs::path("/usr/share/datasets/fashion-mnist"));
  if (!fs::exists(folder / "train-images-idx3-ubyte.gz")) {
    MESSAGE("Fashion-MNIST is not installed at " << folder << "; skipped");
    return;
  }
  const Dataset d = load_idx_folder(folder);
  CHECK(d.name == "fashion-mnist");
  CHECK(d.train.count == 60000);
  CHECK(d.test.count == 10000);
  CHECK(d.train.height == 28);
  CHECK(d.train.width == 28);
  CHECK(d.train.labels.size() == 60000);
  REQUIRE(d.class_names.size() == 10);
  CHECK(d.class_names[7] == "Sneaker");
}
