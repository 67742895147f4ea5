// Tests for core/cifar and core/idx_file: CIFAR-10 and CIFAR-100 folders and single IDX image
// files written here (records and headers by hand), missing batches, held-out splits, refused
// files. Not a test of training on the data.
#include <doctest/doctest.h>
#include <zlib.h>

#include <string>
#include <vector>

#include "core/cifar.hpp"
#include "core/data_source.hpp"
#include "core/idx_file.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

// One CIFAR record: label bytes, then 3072 pixel bytes (value = seed + index, mod 256).
Bytes record(const Bytes& labels, int seed) {
  Bytes r = labels;
  for (int i = 0; i < kCifarImageBytes; ++i) r.push_back(static_cast<std::uint8_t>((seed + i) % 256));
  return r;
}

Bytes batch(const std::vector<Bytes>& records) {
  Bytes b;
  for (const Bytes& r : records) b.insert(b.end(), r.begin(), r.end());
  return b;
}

// The pixels of a record made with `seed`.
Bytes image_of(int seed) { return record({}, seed); }

// The last note of a data set, or "" when it has none.
std::string last_note(const Dataset& d) { return d.notes.empty() ? std::string() : d.notes.back(); }

void write_text(const fs::path& p, const std::string& text) { write_all(p, Bytes(text.begin(), text.end())); }

Bytes idx_images(std::uint32_t n, std::uint32_t h, std::uint32_t w, int seed) {
  Bytes b = {0, 0, 8, 3};
  for (std::uint32_t d : {n, h, w})
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  for (std::uint32_t i = 0; i < n * h * w; ++i) b.push_back(static_cast<std::uint8_t>(seed + i));
  return b;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes b = {0, 0, 8, 1};
  const auto n = static_cast<std::uint32_t>(labels.size());
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(n >> s));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

}  // namespace

TEST_CASE("cifar: a CIFAR-10 folder with missing batches reads what is there and says so") {
  TempDir dir;
  write_all(dir / "data_batch_1.bin", batch({record({3}, 0), record({9}, 1)}));
  write_all(dir / "data_batch_2.bin", batch({record({0}, 2)}));
  write_all(dir / "test_batch.bin", batch({record({5}, 3)}));
  write_text(dir / "batches.meta.txt", "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
  REQUIRE(detect_data_kind(dir.path) == DataKind::Cifar10);
  LoadProgress progress;
  const Dataset d = load_dataset(dir.path, {}, nullptr, &progress);
  CHECK(d.train.count == 3);
  CHECK(d.test.count == 1);
  CHECK(d.train.channels == 3);
  CHECK(d.train.height == 32);
  CHECK(d.train.width == 32);
  CHECK(d.train.labels == Bytes{3, 9, 0});
  CHECK(d.test.labels == Bytes{5});
  CHECK(Bytes(d.train.image(1), d.train.image(1) + kCifarImageBytes) == image_of(1));
  CHECK(Bytes(d.train.image(2), d.train.image(2) + kCifarImageBytes) == image_of(2));
  CHECK(Bytes(d.test.image(0), d.test.image(0) + kCifarImageBytes) == image_of(3));
  REQUIRE(d.class_names.size() == 10);
  CHECK(d.class_names[9] == "truck");
  CHECK(progress.total == 4);
  CHECK(progress.done == 4);
  REQUIRE(d.notes.size() == 1);
  CHECK_MESSAGE(has(d.notes[0], "data_batch_3.bin, data_batch_4.bin, data_batch_5.bin are missing"), d.notes[0]);
}

TEST_CASE("cifar: CIFAR-100 uses the fine labels and their names") {
  TempDir dir;
  write_all(dir / "train.bin", batch({record({1, 42}, 0), record({19, 99}, 1)}));
  write_all(dir / "test.bin", batch({record({0, 7}, 2)}));
  std::string names;
  for (int i = 0; i < 100; ++i) names += "fine" + std::to_string(i) + "\n";
  write_text(dir / "fine_label_names.txt", names);
  REQUIRE(detect_data_kind(dir.path) == DataKind::Cifar100);
  Dataset d = load_dataset(dir.path);
  CHECK(d.train.labels == Bytes{42, 99});
  CHECK(d.test.labels == Bytes{7});
  CHECK(Bytes(d.train.image(1), d.train.image(1) + kCifarImageBytes) == image_of(1));
  REQUIRE(d.class_names.size() == 100);
  CHECK(d.class_names[42] == "fine42");
  CHECK(d.notes.empty());

  fs::remove(dir / "fine_label_names.txt");
  d = load_cifar100(dir.path);
  REQUIRE(d.class_names.size() == 100);
  CHECK(d.class_names[42] == "42");
}

TEST_CASE("cifar: without a test batch the last images are held out") {
  TempDir dir;
  write_all(dir / "train.bin", batch({record({0, 1}, 0), record({0, 2}, 1), record({0, 3}, 2), record({0, 4}, 3)}));
  LoadOptions o;
  o.test_fraction = 0.25;
  const Dataset d = load_cifar100(dir.path, o);
  CHECK(d.train.labels == Bytes{1, 2, 3});
  CHECK(d.test.labels == Bytes{4});
  CHECK_MESSAGE(has(last_note(d), "test.bin is missing"), last_note(d));
}

TEST_CASE("cifar: max_images keeps the first records of each split in proportion") {
  TempDir dir;
  std::vector<Bytes> train, test;
  for (int i = 0; i < 8; ++i) train.push_back(record({static_cast<std::uint8_t>(i)}, i));
  for (int i = 0; i < 2; ++i) test.push_back(record({static_cast<std::uint8_t>(i)}, 100 + i));
  write_all(dir / "data_batch_1.bin", batch(train));
  write_all(dir / "test_batch.bin", batch(test));
  LoadOptions o;
  o.max_images = 5;
  const Dataset d = load_cifar10(dir.path, o);
  CHECK(d.train.labels == Bytes{0, 1, 2, 3});
  CHECK(d.test.labels == Bytes{0});
  o.max_images = 0;
  o.memory_limit = 9 * kCifarImageBytes;
  const std::string m = error_of([&] { load_cifar10(dir.path, o); });
  CHECK_MESSAGE(has(m, "10 images of 3×32×32"), m);
}

TEST_CASE("cifar: broken CIFAR folders are refused naming the file and the reason") {
  TempDir dir;
  std::string m;
  SUBCASE("a file that is not whole records") {
    Bytes b = batch({record({1}, 0), record({2}, 1)});
    b.resize(b.size() - 100);
    write_all(dir / "data_batch_1.bin", b);
    m = error_of([&] { load_cifar10(dir.path); });
    CHECK_MESSAGE(has(m, (dir / "data_batch_1.bin").string()), m);
    CHECK_MESSAGE(has(m, "6046 bytes is not a whole number of 3073-byte CIFAR records (1 records and 2973 bytes over)"), m);
  }
  SUBCASE("no training batch") {
    write_all(dir / "test_batch.bin", batch({record({1}, 0)}));
    m = error_of([&] { load_dataset(dir.path); });
    CHECK_MESSAGE(has(m, "has no training batch"), m);
    CHECK_MESSAGE(has(m, dir.path.string()), m);
  }
  SUBCASE("a label beyond the classes") {
    write_all(dir / "data_batch_1.bin", batch({record({1}, 0), record({10}, 1)}));
    m = error_of([&] { load_cifar10(dir.path); });
    CHECK_MESSAGE(has(m, "the label of record 1 is 10; the classes are 0 to 9"), m);
  }
  SUBCASE("an empty file") {
    write_all(dir / "train.bin", {});
    m = error_of([&] { load_cifar100(dir.path); });
    CHECK_MESSAGE(has(m, "the file is empty"), m);
  }
  SUBCASE("a class-name file that names another number of classes") {
    write_all(dir / "data_batch_1.bin", batch({record({1}, 0), record({2}, 1)}));
    write_text(dir / "batches.meta.txt", "cat\ndog\n");
    const Dataset d = load_cifar10(dir.path);
    CHECK(d.class_names[1] == "1");
    bool noted = false;
    for (const auto& n : d.notes) noted = noted || has(n, "names 2 classes, not 10");
    CHECK(noted);
  }
}

TEST_CASE("idx file: a single image file with its labels beside it, held out by test_fraction") {
  TempDir dir;
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx_images(4, 2, 2, 0));
  write_all(dir / "t10k-labels-idx1-ubyte", idx_labels({3, 1, 4, 1}));
  const auto images = dir / "t10k-images-idx3-ubyte.gz";
  REQUIRE(detect_data_kind(images) == DataKind::IdxFile);
  CHECK(idx_label_file_for(images) == dir / "t10k-labels-idx1-ubyte");
  LoadOptions o;
  o.test_fraction = 0.25;
  LoadProgress progress;
  const Dataset d = load_dataset(images, o, nullptr, &progress);
  CHECK(d.train.count == 3);
  CHECK(d.test.count == 1);
  CHECK(d.train.labels == Bytes{3, 1, 4});
  CHECK(d.test.labels == Bytes{1});
  CHECK(d.test.pixels == Bytes{12, 13, 14, 15});
  CHECK(d.class_names.size() == 5);
  CHECK(progress.done == 4);
  CHECK(progress.total == 4);
}

TEST_CASE("idx file: a training file with the t10k file beside it is tested on that, unlabelled files read") {
  TempDir dir;
  write_all(dir / "train-images-idx3-ubyte", idx_images(5, 2, 2, 0));
  write_all(dir / "t10k-images-idx3-ubyte", idx_images(2, 2, 2, 100));
  Dataset d = load_idx_file(dir / "train-images-idx3-ubyte");
  CHECK(d.train.count == 5);
  CHECK(d.test.count == 2);
  CHECK(d.test.pixels[0] == 100);
  CHECK_FALSE(d.train.has_labels());
  CHECK(d.class_names.empty());

  LoadOptions o;
  o.max_images = 4;
  d = load_idx_file(dir / "train-images-idx3-ubyte", o);
  CHECK(d.train.count == 3);
  CHECK(d.test.count == 1);

  write_all(dir / "t10k-images-idx3-ubyte", idx_images(2, 3, 3, 100));
  const std::string m = error_of([&] { load_idx_file(dir / "train-images-idx3-ubyte"); });
  CHECK_MESSAGE(has(m, "both sets must have the same size"), m);

  write_all(dir / "t10k-images-idx3-ubyte", idx_images(2, 2, 2, 100));
  write_all(dir / "train-labels-idx1-ubyte", idx_labels({1, 2}));
  const std::string m2 = error_of([&] { load_idx_file(dir / "train-images-idx3-ubyte"); });
  CHECK_MESSAGE(has(m2, "has 2 labels but train-images-idx3-ubyte has 5 images"), m2);
}

TEST_CASE("idx file: a training file in a Fashion-MNIST folder reads as the folder does, the folder takes max_images") {
  TempDir dir;
  const fs::path folder = dir / "fashion-small";
  fs::create_directories(folder);
  write_gz(folder / "train-images-idx3-ubyte.gz", idx_images(6, 2, 2, 0));
  write_gz(folder / "train-labels-idx1-ubyte.gz", idx_labels({0, 1, 2, 3, 4, 9}));
  write_gz(folder / "t10k-images-idx3-ubyte.gz", idx_images(2, 2, 2, 50));
  write_gz(folder / "t10k-labels-idx1-ubyte.gz", idx_labels({5, 6}));
  const Dataset d = load_dataset(folder / "train-images-idx3-ubyte.gz");
  CHECK(d.name == "fashion-small");
  CHECK(d.train.count == 6);
  CHECK(d.test.labels == Bytes{5, 6});
  REQUIRE(d.class_names.size() == 10);
  CHECK(d.class_names[9] == "Ankle boot");

  LoadOptions o;
  o.max_images = 4;
  const Dataset capped = load_dataset(folder, o);
  CHECK(capped.train.labels == Bytes{0, 1, 2});
  CHECK(capped.test.labels == Bytes{5});
  CHECK_MESSAGE(has(last_note(capped), "4 of its 8 images are used"), last_note(capped));
}

TEST_CASE("data source: an unrecognised path lists the kinds vaelab reads") {
  TempDir dir;
  write_all(dir / "notes.txt", Bytes{'x'});
  const std::string m = error_of([&] { load_dataset(dir / "notes.txt"); });
  CHECK_MESSAGE(has(m, "is not something vaelab can open"), m);
  CHECK_MESSAGE(has(m, "a .npy array"), m);
  CHECK_MESSAGE(has(m, "CIFAR-10"), m);
}
