// Tests for core/numpy_data: .npy files whose bytes are written here by hand (every layout, both
// dtypes, every header version, every refused header) and .npz archives made with libzip, stored
// and deflated, in the Keras layout with and without labels. Not a test of training on the data.
#include <doctest/doctest.h>
#include <zip.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/data_source.hpp"
#include "core/numpy_data.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// A .npy file as NumPy writes it: magic, version, little-endian header length, the dictionary
// padded with spaces and a newline to a multiple of 64 bytes, then the payload.
Bytes npy(const std::string& descr, const std::vector<std::uint64_t>& shape, const Bytes& payload, int major = 1,
          bool fortran = false) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                     ", 'shape': " + shape_text(shape) + ", }";
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(major), 0};
  const std::size_t length_bytes = prefix - 8;
  for (std::size_t i = 0; i < length_bytes; ++i) b.push_back(static_cast<std::uint8_t>(dict.size() >> (8 * i)));
  b.insert(b.end(), dict.begin(), dict.end());
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes floats(const std::vector<float>& v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Little-endian integers of `size` bytes each.
Bytes ints(const std::vector<long long>& v, int size) {
  Bytes b;
  for (long long x : v)
    for (int i = 0; i < size; ++i) b.push_back(static_cast<std::uint8_t>(static_cast<unsigned long long>(x) >> (8 * i)));
  return b;
}

Bytes iota_bytes(std::size_t n, int start = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((start + static_cast<int>(i)) % 256);
  return b;
}

// A zip archive of the given members, each stored or deflated.
void write_npz(const fs::path& file, const std::map<std::string, Bytes>& members, bool deflate) {
  int error = 0;
  zip_t* z = zip_open(file.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  REQUIRE(z != nullptr);
  for (const auto& [name, bytes] : members) {
    zip_source_t* src = zip_source_buffer(z, bytes.data(), bytes.size(), 0);
    REQUIRE(src != nullptr);
    const zip_int64_t index = zip_file_add(z, name.c_str(), src, ZIP_FL_OVERWRITE);
    REQUIRE(index >= 0);
    REQUIRE(zip_set_file_compression(z, static_cast<zip_uint64_t>(index), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) == 0);
  }
  REQUIRE(zip_close(z) == 0);
}

// "C×H×W" of a set's images.
std::string shape_of(const ImageSet& set) {
  return std::to_string(set.channels) + "×" + std::to_string(set.height) + "×" + std::to_string(set.width);
}

LoadOptions split_half() {
  LoadOptions o;
  o.test_fraction = 0.5;
  return o;
}

}  // namespace

TEST_CASE("numpy: uint8 grey N×H×W reads back exactly, the last images held out") {
  TempDir dir;
  const auto p = dir / "digits.npy";
  write_all(p, npy("|u1", {10, 2, 3}, iota_bytes(60)));
  LoadOptions o;
  o.test_fraction = 0.2;
  LoadProgress progress;
  const Dataset d = load_npy(p, o, nullptr, &progress);
  CHECK(d.name == "digits");
  CHECK(d.train.count == 8);
  CHECK(d.test.count == 2);
  CHECK(shape_of(d.train) == "1×2×3");
  CHECK(d.train.pixels == iota_bytes(48));
  CHECK(d.test.pixels == iota_bytes(12, 48));
  CHECK_FALSE(d.train.has_labels());
  CHECK(d.class_names.empty());
  CHECK(progress.total == 10);
  CHECK(progress.done == 10);
  REQUIRE(!d.notes.empty());
  CHECK_MESSAGE(has(d.notes.back(), "last 2 of 10 images are held out"), d.notes.back());
}

TEST_CASE("numpy: channels-last N×H×W×3 becomes planar C×H×W") {
  TempDir dir;
  const auto p = dir / "rgb.npy";
  // 2 images of 1×2 pixels; pixel values 10·image + 3·pixel + channel.
  Bytes payload;
  for (int i = 0; i < 2; ++i)
    for (int px = 0; px < 2; ++px)
      for (int c = 0; c < 3; ++c) payload.push_back(static_cast<std::uint8_t>(10 * i + 3 * px + c));
  write_all(p, npy("|u1", {2, 1, 2, 3}, payload));
  const Dataset d = load_npy(p, split_half());
  CHECK(shape_of(d.train) == "3×1×2");
  CHECK(d.train.pixels == Bytes{0, 3, 1, 4, 2, 5});
  CHECK(d.test.pixels == Bytes{10, 13, 11, 14, 12, 15});
}

TEST_CASE("numpy: channels-first N×3×H×W is copied as it is") {
  TempDir dir;
  const auto p = dir / "planar.npy";
  write_all(p, npy("<u1", {2, 3, 2, 2}, iota_bytes(24)));
  const Dataset d = load_npy(p, split_half());
  CHECK(shape_of(d.train) == "3×2×2");
  CHECK(d.train.pixels == iota_bytes(12));
  CHECK(d.test.pixels == iota_bytes(12, 12));
}

TEST_CASE("numpy: an ambiguous 4-axis shape is channels-last when its last axis is 1, 3 or 4") {
  TempDir dir;
  const auto p = dir / "ambiguous.npy";
  SUBCASE("N×3×4×3: 3×4 images of 3 channels") {
    write_all(p, npy("|u1", {2, 3, 4, 3}, iota_bytes(72)));
    const Dataset d = load_npy(p, split_half());
    CHECK(shape_of(d.train) == "3×3×4");
    CHECK(d.train.pixels[0] == 0);
    CHECK(d.train.pixels[1] == 3);   // the next pixel's channel 0
    CHECK(d.train.pixels[12] == 1);  // channel 1 of pixel 0
  }
  SUBCASE("N×3×5×7: the last axis is no channel count, so channels-first") {
    write_all(p, npy("|u1", {2, 3, 5, 7}, iota_bytes(210)));
    const Dataset d = load_npy(p, split_half());
    CHECK(shape_of(d.train) == "3×5×7");
    CHECK(d.train.pixels == iota_bytes(105));
  }
  SUBCASE("N×H×W×1 is grey") {
    write_all(p, npy("|u1", {2, 2, 2, 1}, iota_bytes(8)));
    const Dataset d = load_npy(p, split_half());
    CHECK(d.train.channels == 1);
    CHECK(d.train.pixels == iota_bytes(4));
  }
}

TEST_CASE("numpy: alpha is composited onto the background, giving RGB") {
  TempDir dir;
  const auto p = dir / "icons.npy";
  // 2 images of one pixel: (200, 100, 0) at alpha 0, 255 and 51.
  write_all(p, npy("|u1", {2, 1, 1, 4}, Bytes{200, 100, 0, 0, 200, 100, 0, 255}));
  LoadOptions o = split_half();
  Dataset d = load_npy(p, o);
  CHECK(d.train.channels == 3);
  CHECK(d.train.pixels == Bytes{255, 255, 255});  // transparent: the white background
  CHECK(d.test.pixels == Bytes{200, 100, 0});     // opaque: the colour itself
  o.background = Background::Black;
  d = load_npy(p, o);
  CHECK(d.train.pixels == Bytes{0, 0, 0});
  write_all(p, npy("|u1", {2, 1, 1, 4}, Bytes{200, 100, 0, 51, 0, 0, 0, 0}));
  d = load_npy(p, o);
  CHECK(d.train.pixels == Bytes{40, 20, 0});  // 20 % of the colour over black
}

TEST_CASE("numpy: float32 in [0, 1] is rounded to bytes, values outside are refused with their index") {
  TempDir dir;
  const auto p = dir / "f.npy";
  write_all(p, npy("<f4", {2, 1, 3}, floats({0.0f, 1.0f, 0.5f, 0.25f, 0.999f, 0.001f})));
  const Dataset d = load_npy(p, split_half());
  CHECK(d.train.pixels == Bytes{0, 255, 128});
  CHECK(d.test.pixels == Bytes{64, 255, 0});

  write_all(p, npy("<f4", {2, 1, 3}, floats({0.0f, 1.0f, 0.5f, 0.25f, 1.5f, 0.0f})));
  std::string m = error_of([&] { load_npy(p); });
  CHECK_MESSAGE(has(m, p.string()), m);
  CHECK_MESSAGE(has(m, "element 4 (image 1) is 1.5"), m);
  write_all(p, npy("<f4", {1, 1, 2}, floats({std::numeric_limits<float>::quiet_NaN(), 0.0f})));
  m = error_of([&] { load_npy(p); });
  CHECK_MESSAGE(has(m, "element 0 (image 0)"), m);
  write_all(p, npy("<f4", {1, 1, 2}, floats({0.0f, -0.25f})));
  m = error_of([&] { load_npy(p); });
  CHECK_MESSAGE(has(m, "element 1 (image 0) is -0.25"), m);
}

TEST_CASE("numpy: format versions 2.0 and 3.0 read as 1.0 does") {
  TempDir dir;
  const auto p = dir / "v.npy";
  for (int major : {2, 3}) {
    CAPTURE(major);
    write_all(p, npy("|u1", {4, 2, 2}, iota_bytes(16), major));
    const Dataset d = load_npy(p, split_half());
    CHECK(d.train.pixels == iota_bytes(8));
    CHECK(d.test.pixels == iota_bytes(8, 8));
  }
}

TEST_CASE("numpy: a broken or unsupported .npy is refused naming the file and the reason") {
  TempDir dir;
  const auto p = dir / "bad.npy";
  auto error_for = [&](const Bytes& b) {
    write_all(p, b);
    const std::string m = error_of([&] { load_npy(p); });
    CHECK_MESSAGE(has(m, p.string()), m);
    return m;
  };
  std::string m;
  SUBCASE("not a .npy file") {
    m = error_for(Bytes{'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK_MESSAGE(has(m, "not a .npy file"), m);
    m = error_for(Bytes{0x93, 'N', 'U'});
    CHECK_MESSAGE(has(m, "not a .npy file"), m);
  }
  SUBCASE("an unknown format version") {
    Bytes b = npy("|u1", {1, 1, 1}, Bytes{0});
    b[6] = 4;
    m = error_for(b);
    CHECK_MESSAGE(has(m, "format version 4.0 is not supported"), m);
  }
  SUBCASE("a header longer than vaelab reads, or than the file") {
    Bytes b = npy("|u1", {1, 1, 1}, Bytes{0}, 2);
    b[10] = 0x10;  // 1 MiB and more
    m = error_for(b);
    CHECK_MESSAGE(has(m, "more than the 65536 vaelab reads"), m);
    b = npy("|u1", {1, 1, 1}, Bytes{0});
    b.resize(40);
    m = error_for(b);
    CHECK_MESSAGE(has(m, "truncated"), m);
  }
  SUBCASE("a malformed dictionary") {
    Bytes b = npy("|u1", {1, 1, 1}, Bytes{0});
    b[10] = '[';
    m = error_for(b);
    CHECK_MESSAGE(has(m, "not a readable .npy header"), m);
  }
  SUBCASE("an object array (a pickle)") {
    m = error_for(npy("|O", {2}, Bytes(16)));
    CHECK_MESSAGE(has(m, "holds Python objects"), m);
  }
  SUBCASE("Fortran order") {
    m = error_for(npy("|u1", {1, 2, 2}, iota_bytes(4), 1, true));
    CHECK_MESSAGE(has(m, "Fortran order"), m);
  }
  SUBCASE("unsupported dtypes") {
    for (const char* descr : {"<f8", ">f4", "<i4", "|i1", "|b1", "<u2"}) {
      CAPTURE(descr);
      m = error_for(npy(descr, {1, 1, 1}, Bytes(8)));
      CHECK_MESSAGE(has(m, std::string("dtype '") + descr + "' are not supported"), m);
    }
  }
  SUBCASE("shapes that are not images") {
    m = error_for(npy("|u1", {6, 4}, iota_bytes(24)));
    CHECK_MESSAGE(has(m, "shape (6, 4) is not images"), m);
    m = error_for(npy("|u1", {2, 5, 6, 7}, iota_bytes(420)));
    CHECK_MESSAGE(has(m, "shape (2, 5, 6, 7) is not images"), m);
    m = error_for(npy("|u1", {0, 28, 28}, {}));
    CHECK_MESSAGE(has(m, "holds no images"), m);
  }
  SUBCASE("a side over 16384 pixels") {
    m = error_for(npy("|u1", {1, 20000, 20000}, {}));
    CHECK_MESSAGE(has(m, "larger than 16384 pixels on a side"), m);
  }
  SUBCASE("a header promising more than the file holds, refused before allocating") {
    m = error_for(npy("|u1", {1000000, 1000, 1000}, iota_bytes(10)));
    CHECK_MESSAGE(has(m, "but the file holds only 10"), m);
    m = error_for(npy("<f4", {4, 2, 2}, floats({0, 0, 0})));
    CHECK_MESSAGE(has(m, "64 bytes, but the file holds only 12"), m);
  }
  SUBCASE("bytes after the array") {
    m = error_for(npy("|u1", {1, 2, 2}, iota_bytes(5)));
    CHECK_MESSAGE(has(m, "1 bytes more than the header's"), m);
  }
  SUBCASE("a single image cannot be split") {
    m = error_for(npy("|u1", {1, 2, 2}, iota_bytes(4)));
    CHECK_MESSAGE(has(m, "at least 2 are needed"), m);
  }
}

TEST_CASE("numpy: max_images keeps the first images, the memory limit refuses before reading") {
  TempDir dir;
  const auto p = dir / "many.npy";
  write_all(p, npy("|u1", {20, 2, 2}, iota_bytes(80)));
  LoadOptions o = split_half();
  o.max_images = 6;
  const Dataset d = load_npy(p, o);
  CHECK(d.train.count + d.test.count == 6);
  CHECK(d.train.pixels == iota_bytes(12));
  CHECK(d.test.pixels == iota_bytes(12, 12));

  o.max_images = 0;
  o.memory_limit = 79;
  const std::string m = error_of([&] { load_npy(p, o); });
  CHECK_MESSAGE(has(m, "20 images of 1×2×2"), m);
  CHECK_MESSAGE(has(m, "--max-images 19"), m);
}

TEST_CASE("numpy: a cancelled read stops with a message") {
  TempDir dir;
  const auto p = dir / "c.npy";
  write_all(p, npy("|u1", {4, 2, 2}, iota_bytes(16)));
  CancelFlag cancel{true};
  const std::string m = error_of([&] { load_npy(p, {}, &cancel); });
  CHECK_MESSAGE(has(m, "cancelled"), m);
}

TEST_CASE("numpy: a Keras .npz with labels, stored and deflated, through load_dataset") {
  for (bool deflate : {false, true}) {
    CAPTURE(deflate);
    TempDir dir;
    const auto p = dir / "mnist.npz";
    write_npz(p,
              {{"x_train.npy", npy("|u1", {3, 2, 2}, iota_bytes(12))},
               {"y_train.npy", npy("<i8", {3}, ints({0, 9, 4}, 8))},
               {"x_test.npy", npy("|u1", {2, 2, 2}, iota_bytes(8, 100))},
               {"y_test.npy", npy("|u1", {2, 1}, Bytes{7, 1})}},
              deflate);
    REQUIRE(detect_data_kind(p) == DataKind::Npz);
    LoadProgress progress;
    const Dataset d = load_dataset(p, {}, nullptr, &progress);
    CHECK(d.name == "mnist");
    CHECK(d.train.count == 3);
    CHECK(d.test.count == 2);
    CHECK(d.train.pixels == iota_bytes(12));
    CHECK(d.test.pixels == iota_bytes(8, 100));
    CHECK(d.train.labels == Bytes{0, 9, 4});
    CHECK(d.test.labels == Bytes{7, 1});
    REQUIRE(d.class_names.size() == 10);
    CHECK(d.class_names[9] == "9");
    CHECK(progress.done == 5);
    CHECK(progress.total == 5);
  }
}

TEST_CASE("numpy: every integer label dtype reads, labels outside 0..255 are refused with the index") {
  TempDir dir;
  const auto p = dir / "labels.npz";
  const std::vector<std::pair<std::string, int>> dtypes = {{"|u1", 1}, {"|i1", 1}, {"<u2", 2}, {"<i2", 2},
                                                           {"<u4", 4}, {"<i4", 4}, {"<u8", 8}, {"<i8", 8}};
  for (const auto& dtype : dtypes) {
    const std::string& descr = dtype.first;  // not a structured binding: clang 14 cannot capture one in CAPTURE
    const int size = dtype.second;
    CAPTURE(descr);
    write_npz(p, {{"x_train.npy", npy("|u1", {3, 1, 1}, Bytes{1, 2, 3})}, {"y_train.npy", npy(descr, {3}, ints({5, 0, 2}, size))}},
              true);
    const Dataset d = load_npz(p);
    CHECK(d.train.labels.size() + d.test.labels.size() == 3);
    CHECK(d.train.labels[0] == 5);
  }
  // Big-endian labels are read too.
  write_npz(p, {{"x_train.npy", npy("|u1", {3, 1, 1}, Bytes{1, 2, 3})}, {"y_train.npy", npy(">i2", {3}, Bytes{0, 5, 0, 0, 0, 2})}},
            false);
  CHECK(load_npz(p).train.labels == Bytes{5, 0});

  auto label_error = [&](const Bytes& labels) {
    write_npz(p, {{"x_train.npy", npy("|u1", {3, 1, 1}, Bytes{1, 2, 3})}, {"y_train.npy", labels}}, true);
    const std::string m = error_of([&] { load_npz(p); });
    CHECK_MESSAGE(has(m, p.string()), m);
    CHECK_MESSAGE(has(m, "y_train"), m);
    return m;
  };
  std::string m = label_error(npy("<u2", {3}, ints({1, 256, 2}, 2)));
  CHECK_MESSAGE(has(m, "label 1 is 256; labels must be 0 to 255"), m);
  m = label_error(npy("<i8", {3}, ints({1, 2, -1}, 8)));
  CHECK_MESSAGE(has(m, "label 2 is -1"), m);
  m = label_error(npy("|u1", {2}, Bytes{1, 2}));
  CHECK_MESSAGE(has(m, "has 2 labels but"), m);
  m = label_error(npy("<f4", {3}, floats({0, 1, 2})));
  CHECK_MESSAGE(has(m, "labels of dtype '<f4' are not supported"), m);
  m = label_error(npy("|u1", {3, 2}, iota_bytes(6)));
  CHECK_MESSAGE(has(m, "labels of shape (3, 2)"), m);
}

TEST_CASE("numpy: a Keras .npz without labels, and one with x alone, which is split") {
  TempDir dir;
  const auto p = dir / "unlabelled.npz";
  write_npz(p, {{"x_train.npy", npy("|u1", {3, 2, 2}, iota_bytes(12))}, {"x_test.npy", npy("|u1", {1, 2, 2}, iota_bytes(4))}},
            true);
  Dataset d = load_npz(p);
  CHECK(d.train.count == 3);
  CHECK(d.test.count == 1);
  CHECK_FALSE(d.train.has_labels());
  CHECK_FALSE(d.test.has_labels());
  CHECK(d.class_names.empty());

  write_npz(p, {{"x.npy", npy("|u1", {4, 1, 1}, Bytes{1, 2, 3, 4})}, {"y.npy", npy("|u1", {4}, Bytes{0, 1, 2, 3})}}, false);
  d = load_npz(p, split_half());
  CHECK(d.train.pixels == Bytes{1, 2});
  CHECK(d.test.pixels == Bytes{3, 4});
  CHECK(d.train.labels == Bytes{0, 1});
  CHECK(d.test.labels == Bytes{2, 3});
  CHECK(d.class_names.size() == 4);

  // Members named without ".npy" are read too; others are ignored.
  write_npz(p, {{"x_train", npy("|u1", {2, 1, 1}, Bytes{1, 2})}, {"notes.txt", Bytes{'h', 'i'}}}, true);
  d = load_npz(p);
  CHECK(d.train.count + d.test.count == 2);
}

TEST_CASE("numpy: a broken or unsafe .npz is refused naming the file and the reason") {
  TempDir dir;
  const auto p = dir / "bad.npz";
  const Bytes x = npy("|u1", {2, 1, 1}, Bytes{1, 2});
  std::string m;
  SUBCASE("a member with a path outside the archive") {
    for (const char* name : {"../x_train.npy", "/tmp/x_train.npy", "a/../../x.npy", "C:\\x.npy"}) {
      CAPTURE(name);
      write_npz(p, {{"x_train.npy", x}, {name, x}}, false);
      m = error_of([&] { load_npz(p); });
      CHECK_MESSAGE(has(m, p.string()), m);
      CHECK_MESSAGE(has(m, "path outside the archive"), m);
    }
  }
  SUBCASE("no x_train nor x") {
    write_npz(p, {{"images.npy", x}}, false);
    m = error_of([&] { load_npz(p); });
    CHECK_MESSAGE(has(m, "holds no x_train"), m);
    CHECK_MESSAGE(has(m, "images.npy"), m);
  }
  SUBCASE("not a zip archive") {
    write_all(p, npy("|u1", {2, 1, 1}, Bytes{1, 2}));
    m = error_of([&] { load_npz(p); });
    CHECK_MESSAGE(has(m, "not a readable .npz (zip) archive"), m);
  }
  SUBCASE("test images of another size") {
    write_npz(p, {{"x_train.npy", x}, {"x_test.npy", npy("|u1", {1, 2, 1}, Bytes{1, 2})}}, true);
    m = error_of([&] { load_npz(p); });
    CHECK_MESSAGE(has(m, "both sets must have the same size"), m);
  }
  SUBCASE("a member whose header promises more than it holds") {
    write_npz(p, {{"x_train.npy", npy("|u1", {1000, 100, 100}, Bytes{1, 2})}}, true);
    m = error_of([&] { load_npz(p); });
    CHECK_MESSAGE(has(m, "x_train.npy"), m);
    CHECK_MESSAGE(has(m, "but the file holds only 2"), m);
  }
  SUBCASE("a damaged deflated member") {
    write_npz(p, {{"x_train.npy", npy("|u1", {64, 8, 8}, Bytes(4096, 7))}}, true);
    Bytes b = read_all(p);
    // The deflated data follows the 30-byte local header and the 11-byte name.
    for (std::size_t i = 45; i < 60; ++i) b[i] ^= 0x5A;
    write_all(p, b);
    m = error_of([&] { load_npz(p); });
    CHECK_MESSAGE(has(m, p.string()), m);
  }
}
