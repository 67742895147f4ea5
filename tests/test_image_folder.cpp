// Tests of image_decode and image_folder on files the tests write themselves (PNG, JPEG, BMP, TGA
// with stb_image_write, WebP with libwebp, a GIF by hand): every format, every folder layout, the
// held-out split and its stability, the subset, bad files, cancel, memory refusal and progress.
// Not the shaping of one image (test_image_conform.cpp).
#include <turbojpeg.h>
#include <webp/encode.h>
#include <zlib.h>

#include <cmath>
#include <set>

#include "core/data_source.hpp"
#include "core/image_decode.hpp"
#include "core/image_folder.hpp"
#include "support.hpp"

// stb_image_write is compiled here: nothing else in this binary defines it.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

using namespace vaelab;
using namespace vaelab::test;

namespace {

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<Bytes*>(context);
  const auto* p = static_cast<const std::uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

enum class Format { Png, Jpeg, Bmp, Tga, WebP };

// `pixels` (w×h, c interleaved channels) encoded as `format`.
Bytes encode(Format format, const Bytes& pixels, int w, int h, int c) {
  Bytes out;
  int ok = 0;
  switch (format) {
    case Format::Png: ok = stbi_write_png_to_func(append_bytes, &out, w, h, c, pixels.data(), w * c); break;
    case Format::Jpeg: ok = stbi_write_jpg_to_func(append_bytes, &out, w, h, c, pixels.data(), 100); break;
    case Format::Bmp: ok = stbi_write_bmp_to_func(append_bytes, &out, w, h, c, pixels.data()); break;
    case Format::Tga: ok = stbi_write_tga_to_func(append_bytes, &out, w, h, c, pixels.data()); break;
    case Format::WebP: {
      std::uint8_t* webp = nullptr;
      REQUIRE((c == 3 || c == 4));
      const std::size_t n = c == 3 ? WebPEncodeLosslessRGB(pixels.data(), w, h, w * c, &webp)
                                   : WebPEncodeLosslessRGBA(pixels.data(), w, h, w * c, &webp);
      out.assign(webp, webp + n);
      WebPFree(webp);
      ok = n > 0;
      break;
    }
  }
  REQUIRE(ok);
  return out;
}

// A w×h image of one colour (c channels), with pixel 0 set to `mark` in every channel: a file's
// identity that survives the loader (no resizing when all files share the size).
Bytes solid(int w, int h, int c, std::uint8_t value, std::uint8_t mark) {
  Bytes p(std::size_t(w * h * c), value);
  for (int k = 0; k < c; ++k) p[k] = mark;
  return p;
}

void write_image(const fs::path& file, Format format, const Bytes& pixels, int w, int h, int c) {
  fs::create_directories(file.parent_path());
  write_all(file, encode(format, pixels, w, h, c));
}

// A one-component JPEG (stb_image_write always writes three), by libturbojpeg.
Bytes grey_jpeg_of(const Bytes& grey, int w, int h) {
  tjhandle tj = tjInitCompress();
  REQUIRE(tj);
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(tj, grey.data(), w, w, h, TJPF_GRAY, &jpeg, &size, TJSAMP_GRAY, 95, 0);
  Bytes out(jpeg, jpeg + (rc == 0 ? size : 0));
  tjFree(jpeg);
  tjDestroy(tj);
  REQUIRE(rc == 0);
  return out;
}

// A 1×1 GIF whose one pixel is palette entry 0, red.
const Bytes kRedGif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0xff, 0, 0, 0, 0, 0,
                       0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b};

// A PNG whose header claims w×h (its IHDR rewritten and its CRC recomputed).
Bytes png_claiming(std::uint32_t w, std::uint32_t h) {
  Bytes png = encode(Format::Png, Bytes(3, 9), 1, 1, 3);
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<std::uint8_t>(w >> (24 - 8 * i));
    png[20 + i] = static_cast<std::uint8_t>(h >> (24 - 8 * i));
  }
  const uLong crc = crc32(0, png.data() + 12, 17);  // "IHDR" and its 13 bytes
  for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<std::uint8_t>(crc >> (24 - 8 * i));
  return png;
}

// prefix, i, suffix: appended (GCC 12 warns falsely, -Wrestrict, on "literal" + std::string).
std::string named(std::string prefix, int i, const char* suffix) {
  prefix.append(std::to_string(i)).append(suffix);
  return prefix;
}

DecodedImage decode(const Bytes& b) { return decode_image(b, "test image"); }

// Marks (pixel 0 of channel 0) of every image of a set: which files it holds.
std::multiset<int> marks(const ImageSet& s) {
  std::multiset<int> m;
  for (int i = 0; i < s.count; ++i) m.insert(s.image(i)[0]);
  return m;
}

}  // namespace

TEST_CASE("image_folder: every format decodes, chosen by its magic number") {
  const int w = 4, h = 3;
  Bytes rgb(w * h * 3);
  for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<std::uint8_t>(17 * i);
  for (Format f : {Format::Png, Format::Bmp, Format::Tga, Format::WebP}) {
    const Bytes file = encode(f, rgb, w, h, 3);
    const DecodedImage img = decode(file);
    CHECK((img.width == w && img.height == h && img.channels == 3));
    CHECK(img.pixels == rgb);
    const ImageHeader header = read_image_header(file, "x");
    CHECK((header.width == w && header.height == h && header.colour));
  }
  CHECK(sniff_image_format(encode(Format::Tga, rgb, w, h, 3)) == ImageFormat::Tga);
  CHECK(sniff_image_format(encode(Format::WebP, rgb, w, h, 3)) == ImageFormat::WebP);

  // JPEG is lossy: a flat colour comes back within a few levels.
  const DecodedImage jpeg = decode(encode(Format::Jpeg, Bytes(8 * 8 * 3, 150), 8, 8, 3));
  CHECK((jpeg.channels == 3 && jpeg.width == 8));
  for (std::uint8_t v : jpeg.pixels) CHECK(std::abs(int(v) - 150) <= 3);
  const Bytes grey_jpeg = grey_jpeg_of(Bytes(64, 90), 8, 8);
  CHECK(decode(grey_jpeg).channels == 1);
  CHECK_FALSE(read_image_header(grey_jpeg, "x").colour);

  // Grey PNG, grey+alpha PNG, RGBA PNG keep their channels; GIF's first frame comes as RGBA.
  const Bytes grey = {0, 50, 100, 150, 200, 250};
  CHECK(decode(encode(Format::Png, grey, 3, 2, 1)).pixels == grey);
  CHECK(decode(encode(Format::Png, grey, 3, 1, 2)).channels == 2);
  const Bytes rgba = {255, 0, 0, 0, 0, 255, 0, 128};
  const DecodedImage with_alpha = decode(encode(Format::Png, rgba, 2, 1, 4));
  CHECK((with_alpha.channels == 4 && with_alpha.pixels == rgba));
  CHECK_FALSE(read_image_header(encode(Format::Png, grey, 3, 2, 1), "x").colour);
  const DecodedImage gif = decode(kRedGif);
  CHECK((gif.width == 1 && gif.height == 1 && gif.channels == 4));
  CHECK(gif.pixels == Bytes{255, 0, 0, 255});
}

TEST_CASE("image_folder: broken images are refused with the file and the reason") {
  const Bytes png = encode(Format::Png, solid(16, 16, 3, 80, 1), 16, 16, 3);
  Bytes corrupt = png;
  corrupt[corrupt.size() / 2] ^= 0xff;  // inside the image data: its CRC no longer matches
  CHECK(has(error_of([&] { decode_image(corrupt, "corrupt.png"); }), "corrupt.png: "));
  const Bytes truncated(png.begin(), png.begin() + std::ptrdiff_t(png.size() / 2));
  CHECK(has(error_of([&] { decode_image(truncated, "half.png"); }), "half.png: "));

  Bytes jpeg = encode(Format::Jpeg, solid(32, 32, 3, 80, 200), 32, 32, 3);
  jpeg.resize(jpeg.size() * 9 / 10);  // the last scan lines are missing
  CHECK(has(error_of([&] { decode_image(jpeg, "cut.jpg"); }), "cut.jpg: corrupt or truncated JPEG"));
  jpeg.resize(jpeg.size() / 2);  // into the header's tables
  CHECK(has(error_of([&] { decode_image(jpeg, "cut.jpg"); }), "cut.jpg: broken JPEG header"));

  Bytes bmp = encode(Format::Bmp, solid(8, 8, 3, 80, 1), 8, 8, 3);
  bmp.resize(bmp.size() - 10);
  CHECK(has(error_of([&] { decode_image(bmp, "cut.bmp"); }), "cut.bmp: truncated BMP"));

  // Image bombs: refused from the header, naming the sides.
  const std::string bomb = error_of([&] { decode_image(png_claiming(20000, 20000), "bomb.png"); });
  CHECK(has(bomb, "bomb.png"));
  CHECK(has(bomb, "20000×20000"));
  CHECK(has(bomb, "16384"));
  CHECK(has(error_of([&] { read_image_header(png_claiming(16385, 1), "wide.png"); }), "16385×1"));
  Bytes big_bmp = encode(Format::Bmp, solid(2, 2, 3, 0, 0), 2, 2, 3);
  big_bmp[18] = 0x20, big_bmp[19] = 0x4e;  // width 20000
  CHECK(has(error_of([&] { decode_image(big_bmp, "bomb.bmp"); }), "20000×2"));

  CHECK(has(error_of([&] { decode_image(Bytes{'h', 'e', 'l', 'l', 'o'}, "a.png"); }), "a.png: not an image"));
  CHECK(has(error_of([&] { decode_image(Bytes{}, "empty.png"); }), "empty file"));
}

TEST_CASE("image_folder: class subfolders give sorted class names and labels") {
  TempDir dir("imgfolder-classes");
  // cat: red PNGs; dog: blue JPEGs (one named .png: the magic number decides); mark = file number.
  auto red = [](int mark) {
    Bytes p = solid(6, 6, 3, 0, static_cast<std::uint8_t>(mark));
    for (int k = 1; k < 36; ++k) p[k * 3] = 255;
    return p;
  };
  for (int i = 0; i < 30; ++i) {
    write_image(dir / named("cat/c", i, ".png"), Format::Png, red(i), 6, 6, 3);
    write_image(dir / named("dog/d", i, i == 0 ? ".png" : ".JPG"), Format::Jpeg,
                solid(6, 6, 3, 0, 0), 6, 6, 3);
  }
  write_image(dir / "cat/deeper/c99.bmp", Format::Bmp, red(99), 6, 6, 3);
  write_image(dir / "cat/.hidden.png", Format::Png, red(177), 6, 6, 3);
  write_image(dir / ".thumbnails/cat/t.png", Format::Png, red(177), 6, 6, 3);
  write_all(dir / "dog/notes.txt", Bytes{'h', 'i'});
  write_all(dir / "README.md", Bytes{'h', 'i'});
  fs::create_directories(dir / "empty");

  const Dataset d = load_image_folder(dir.path, LoadOptions{.test_fraction = 0.25});
  CHECK(d.class_names == std::vector<std::string>{"cat", "dog"});
  CHECK(d.train.count + d.test.count == 61);
  CHECK(d.test.count > 0);
  CHECK((d.train.channels == 3 && d.train.height == 6 && d.train.width == 6));
  for (const ImageSet* s : {&d.train, &d.test}) {
    REQUIRE(s->labels.size() == std::size_t(s->count));
    const std::size_t plane = 36;
    for (int i = 0; i < s->count; ++i) {
      const std::uint8_t red = s->image(i)[1], blue = s->image(i)[2 * plane + 1];
      if (s->labels[i] == 0) CHECK((red == 255 && blue == 0));
      if (s->labels[i] == 1) CHECK((red < 10 && blue < 10));  // JPEG of black
    }
  }
  std::multiset<int> all = marks(d.train);
  all.merge(marks(d.test));
  CHECK(all.count(99) == 1);  // the deeper subfolder counts for its class
  CHECK(all.count(177) == 0);  // hidden file, hidden folder
  bool told_empty = false;
  for (const std::string& note : d.notes) told_empty |= has(note, "hold no image");
  CHECK(told_empty);
}

TEST_CASE("image_folder: train and test or val folders give the split, flat folders no labels") {
  for (const char* held_out : {"test", "val"}) {
    TempDir dir("imgfolder-split");
    for (int i = 0; i < 5; ++i) {
      write_image(dir / named("train/a/", i, ".png"), Format::Png, solid(4, 4, 1, 10, 1), 4, 4, 1);
      write_image(dir / named("train/b/", i, ".png"), Format::Png, solid(4, 4, 1, 10, 2), 4, 4, 1);
    }
    write_image(dir / (std::string(held_out).append("/b/x.png")), Format::Png, solid(4, 4, 1, 10, 3), 4, 4, 1);
    write_image(dir / (std::string(held_out).append("/c/y.png")), Format::Png, solid(4, 4, 1, 10, 4), 4, 4, 1);
    const Dataset d = load_image_folder(dir.path, LoadOptions{.test_fraction = 0.5});
    CHECK(d.class_names == std::vector<std::string>{"a", "b", "c"});
    CHECK(d.train.count == 10);  // the given split: nothing held out of train
    CHECK(d.test.count == 2);
    CHECK(d.test.labels == Bytes{1, 2});
    CHECK(marks(d.test) == std::multiset<int>{3, 4});
    CHECK(d.train.channels == 1);
  }
  {
    TempDir dir("imgfolder-flat");
    for (int i = 0; i < 40; ++i)
      write_image(dir / named("img", i, ".webp"), Format::WebP, solid(5, 3, 3, 60, std::uint8_t(i)), 5, 3, 3);
    const Dataset d = load_image_folder(dir.path, LoadOptions{.test_fraction = 0.3});
    CHECK(d.class_names.empty());
    CHECK_FALSE(d.train.has_labels());
    CHECK_FALSE(d.test.has_labels());
    CHECK(d.train.count + d.test.count == 40);
    CHECK((d.train.height == 3 && d.train.width == 5 && d.train.channels == 3));
  }
  {
    TempDir dir("imgfolder-trainonly");
    for (int i = 0; i < 40; ++i)
      write_image(dir / named("train/k/", i, ".tga"), Format::Tga, solid(2, 2, 1, 0, std::uint8_t(i)), 2, 2, 1);
    const Dataset d = load_image_folder(dir.path, LoadOptions{.test_fraction = 0.3});
    CHECK(d.train.count + d.test.count == 40);
    CHECK(d.test.count > 0);
    CHECK(d.train.count > d.test.count);
  }
  {
    TempDir dir("imgfolder-mixed");
    write_image(dir / "train/a/1.png", Format::Png, solid(2, 2, 1, 0, 0), 2, 2, 1);
    write_image(dir / "test/1.png", Format::Png, solid(2, 2, 1, 0, 0), 2, 2, 1);
    CHECK(has(error_of([&] { load_image_folder(dir.path); }), "must both have class subfolders"));
  }
}

TEST_CASE("image_folder: the held-out split is stratified and stable when files are added") {
  TempDir dir("imgfolder-stable");
  // File k of class c has mark k (0…249 fits a byte); one byte more (the class) tells them apart.
  auto add_files = [&](int from, int to) {
    for (int c = 0; c < 2; ++c)
      for (int k = from; k < to; ++k) {
        Bytes p = solid(2, 1, 1, static_cast<std::uint8_t>(c), static_cast<std::uint8_t>(k));
        write_image(dir / named(named("class", c, "/f"), k, ".png"), Format::Png, p, 2, 1, 1);
      }
  };
  auto test_files = [&](const Dataset& d) {
    std::set<std::pair<int, int>> files;
    for (int i = 0; i < d.test.count; ++i) files.insert({d.test.image(i)[1], d.test.image(i)[0]});
    return files;
  };
  add_files(0, 150);
  const LoadOptions options{.test_fraction = 0.3};
  const Dataset before = load_image_folder(dir.path, options);
  const auto held_before = test_files(before);
  for (int c = 0; c < 2; ++c) {
    const auto in_class = std::count_if(held_before.begin(), held_before.end(), [&](auto f) { return f.first == c; });
    CHECK(in_class >= 25);  // 150 × 0.3 = 45 expected in each class
    CHECK(in_class <= 65);
  }
  add_files(150, 250);
  const Dataset after = load_image_folder(dir.path, options);
  const auto held_after = test_files(after);
  for (const auto& f : held_after)
    if (f.second < 150) CHECK(held_before.count(f) == 1);  // no old file moved into test…
  for (const auto& f : held_before) CHECK(held_after.count(f) == 1);  // …or out of it
  CHECK(held_after.size() > held_before.size());

  // split_position alone decides: the same path, the same place.
  CHECK(split_position("class0/f1.png") == split_position("class0/f1.png"));
  CHECK(split_position("class0/f1.png") != split_position("class1/f1.png"));
}

TEST_CASE("image_folder: max_images keeps the same deterministic subset") {
  TempDir dir("imgfolder-subset");
  for (int i = 0; i < 60; ++i)
    write_image(dir / named("p", i, ".png"), Format::Png, solid(2, 2, 1, 0, std::uint8_t(i)), 2, 2, 1);
  const LoadOptions options{.test_fraction = 0.2, .max_images = 25};
  const Dataset a = load_image_folder(dir.path, options);
  const Dataset b = load_image_folder(dir.path, options);
  CHECK(a.train.count + a.test.count == 25);
  CHECK(marks(a.train) == marks(b.train));
  CHECK(marks(a.test) == marks(b.test));
}

TEST_CASE("image_folder: the size is the data's own when all agree, otherwise 32x32 with a note") {
  TempDir dir("imgfolder-sizes");
  for (int i = 0; i < 10; ++i) {
    const int side = i % 2 ? 8 : 12;
    write_image(dir / named("a/", i, ".png"), Format::Png, solid(side, side, 1, 200, 200), side, side, 1);
  }
  const LoadOptions all_in_train{.test_fraction = 0};
  const Dataset mixed = load_image_folder(dir.path, all_in_train);
  CHECK((mixed.train.height == 32 && mixed.train.width == 32 && mixed.train.channels == 1));
  CHECK(mixed.test.count == 0);
  REQUIRE(mixed.notes.size() == 1);
  CHECK(has(mixed.notes[0], "32×32"));
  CHECK(has(mixed.notes[0], "--image-size"));
  for (int i = 0; i < mixed.train.count; ++i)
    CHECK(Bytes(mixed.train.image(i), mixed.train.image(i) + 1024) == Bytes(1024, 200));

  LoadOptions sized = all_in_train;
  sized.channels = 3, sized.height = 4, sized.width = 6;
  const Dataset chosen = load_image_folder(dir.path, sized);
  CHECK((chosen.train.channels == 3 && chosen.train.height == 4 && chosen.train.width == 6));
  CHECK(chosen.notes.empty());
  CHECK(chosen.train.count == 10);
}

TEST_CASE("image_folder: bad files among good ones are skipped and named") {
  TempDir dir("imgfolder-bad");
  const Bytes good = encode(Format::Png, solid(4, 4, 3, 100, 100), 4, 4, 3);
  fs::create_directories(dir / "c");
  for (int i = 0; i < 12; ++i) write_all(dir / named("c/good", i, ".png"), good);
  for (int i = 0; i < 7; ++i)
    write_all(dir / named("c/bad", i, ".png"), Bytes(good.begin(), good.begin() + 40));
  write_all(dir / "c/bomb.png", png_claiming(20000, 20000));
  const Dataset d = load_image_folder(dir.path, LoadOptions{.test_fraction = 0});
  CHECK(d.train.count == 12);
  REQUIRE(d.notes.size() == 1);
  CHECK(has(d.notes[0], "8 of 20 images could not be read"));
  CHECK(has(d.notes[0], "bad0.png"));
  CHECK(has(d.notes[0], "bad4.png"));
  CHECK_FALSE(has(d.notes[0], "bad6.png"));  // the first five only
  for (int i = 0; i < d.train.count; ++i) CHECK(d.train.image(i)[0] == 100);

  fs::remove_all(dir / "c");
  fs::create_directories(dir / "c");
  write_all(dir / "c/bomb.png", png_claiming(20000, 20000));
  const std::string none = error_of([&] { load_image_folder(dir.path, LoadOptions{.test_fraction = 0}); });
  CHECK(has(none, "no readable image"));
  CHECK(has(none, "20000×20000"));

  TempDir empty("imgfolder-empty");
  write_all(empty / "notes.txt", Bytes{'x'});
  CHECK(has(error_of([&] { load_image_folder(empty.path); }), "holds no image file"));

  TempDir bad_test("imgfolder-badtest");
  fs::create_directories(bad_test / "train/a");
  write_all(bad_test / "train/a/1.png", good);
  fs::create_directories(bad_test / "test/a");
  write_all(bad_test / "test/a/1.png", Bytes(good.begin(), good.begin() + 30));
  CHECK(has(error_of([&] { load_image_folder(bad_test.path); }), "the test split has no readable image"));
}

TEST_CASE("image_folder: more than 256 classes are refused") {
  TempDir dir("imgfolder-classes257");
  const Bytes tiny = encode(Format::Png, Bytes{1}, 1, 1, 1);
  for (int c = 0; c < 257; ++c) {
    fs::create_directories(dir / named("k", c, ""));
    write_all(dir / named("k", c, "/x.png"), tiny);
  }
  CHECK(has(error_of([&] { load_image_folder(dir.path); }), "at most 256"));
}

TEST_CASE("image_folder: progress reaches the total, cancel and the memory limit stop the load") {
  TempDir dir("imgfolder-progress");
  for (int i = 0; i < 30; ++i)
    write_image(dir / named("a/", i, ".png"), Format::Png, solid(8, 8, 3, 5, 5), 8, 8, 3);
  LoadProgress progress;
  const Dataset d = load_dataset(dir.path, LoadOptions{.test_fraction = 0.2}, nullptr, &progress);
  CHECK(progress.total == 30);
  CHECK(progress.done == 30);
  CHECK(d.train.count + d.test.count == 30);

  CancelFlag cancel{true};
  LoadProgress stopped;
  CHECK(has(error_of([&] { load_image_folder(dir.path, LoadOptions{}, &cancel, &stopped); }), "cancelled"));
  CHECK(stopped.done == 0);

  LoadProgress refused;
  const std::string message = error_of(
      [&] { load_image_folder(dir.path, LoadOptions{.memory_limit = 30 * 192 - 1}, nullptr, &refused); });
  CHECK(has(message, "30 images of 3×8×8"));
  CHECK(has(message, "--max-images 29"));
  CHECK(refused.done == 0);  // refused before decoding
}

TEST_CASE("image_folder: cancel stops a load that is under way") {
  TempDir dir("imgfolder-cancel");
  const Bytes png = encode(Format::Png, solid(16, 16, 3, 40, 40), 16, 16, 3);
  fs::create_directories(dir / "a");
  for (int i = 0; i < 1000; ++i) write_all(dir / named("a/", i, ".png"), png);
  // The canceller needs a core while the load runs; on a loaded machine the load of these small
  // files can finish first. So: up to five loads, and one of them must stop part-way.
  bool stopped_part_way = false;
  for (int attempt = 0; attempt < 5 && !stopped_part_way; ++attempt) {
    CancelFlag cancel{false};
    LoadProgress progress;
    std::atomic<bool> returned{false};
    std::thread canceller([&] {  // cancels once the first image is decoded
      while (progress.done.load() == 0 && !returned.load()) std::this_thread::yield();
      cancel = true;
    });
    const std::string message = error_of([&] { load_image_folder(dir.path, LoadOptions{}, &cancel, &progress); });
    returned = true;
    canceller.join();
    if (message == "<no vaelab::Error thrown>") continue;  // finished before the flag was seen
    CHECK(has(message, "loading was cancelled"));
    CHECK(progress.done < progress.total);  // the files after the flag were not decoded
    stopped_part_way = true;
  }
  CHECK(stopped_part_way);
}

TEST_CASE("image_folder: a colour folder loaded as grey trains") {
  TempDir dir("imgfolder-train");
  Rng rng(3);
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < 60; ++i) {
      Bytes p(8 * 8 * 4);
      for (std::size_t k = 0; k < p.size(); ++k)
        p[k] = k % 4 == 3 ? 255 : static_cast<std::uint8_t>(c ? 200 + rng.below(50) : rng.below(50));
      write_image(dir / named(named("c", c, "/"), i, ".png"), Format::Png, p, 8, 8, 4);
    }
  auto data = std::make_shared<const Dataset>(load_dataset(dir.path, LoadOptions{.channels = 1}));
  REQUIRE(data->train.channels == 1);
  TrainerOptions opt;
  opt.max_epochs = 2;
  opt.display_points = 0;
  TrainConfig train = small_train();
  train.batch = 20;
  Trainer tr(data, small_model(), train, opt);
  tr.start();
  tr.join();
  const auto snapshot = tr.snapshot();
  REQUIRE(snapshot->history.epochs.size() == 2);
  CHECK(std::isfinite(snapshot->history.epochs.back().test_elbo));
  CHECK(snapshot->history.epochs.back().train_elbo > snapshot->history.epochs.front().train_elbo);
}
