// Tests of image_conform: compositing, grey↔RGB, centre crop and resizing of one image against
// values worked out by hand, and reshaping a loaded data set. Not the decoders or the folder loader
// (test_image_folder.cpp).
#include <cstdint>
#include <vector>

#include "core/data_source.hpp"
#include "core/image_conform.hpp"
#include "support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

Bytes conform(const Bytes& pixels, int w, int h, int c, ImageShape target, CropMode crop = CropMode::Center,
              Background bg = Background::White) {
  REQUIRE(pixels.size() == std::size_t(w * h * c));
  Bytes out(std::size_t(target.values()), 0xab);
  conform_image({pixels.data(), w, h, c}, target, crop, bg, out.data());
  return out;
}

}  // namespace

TEST_CASE("image_conform: shrinking averages areas") {
  // 4×4 → 2×2: each output pixel is the mean of one 2×2 block.
  const Bytes square = {10, 20, 30, 40,  //
                        50, 60, 70, 80,  //
                        0,  0,  100, 100,  //
                        0,  4,  200, 200};
  CHECK(conform(square, 4, 4, 1, {1, 2, 2}) == Bytes{35, 55, 1, 150});
  // 3 → 2 across: each output pixel covers one and a half input pixels, (30 + 90/2)/1.5 and (90/2 + 150)/1.5.
  CHECK(conform({30, 90, 150}, 3, 1, 1, {1, 1, 2}, CropMode::None) == Bytes{50, 130});
  // 5 → 3: the middle output pixel covers [5/3, 10/3), of which the bright pixel is 3/5.
  CHECK(conform({0, 0, 250, 0, 0}, 5, 1, 1, {1, 1, 3}, CropMode::None) == Bytes{0, 150, 0});
  // A constant image stays constant at any ratio.
  CHECK(conform(Bytes(7 * 5, 77), 7, 5, 1, {1, 3, 2}, CropMode::None) == Bytes(6, 77));
}

TEST_CASE("image_conform: enlarging interpolates linearly with clamped edges") {
  // 2 → 4 across: output centres fall at input positions −0.25, 0.25, 0.75, 1.25.
  CHECK(conform({0, 200}, 2, 1, 1, {1, 1, 4}) == Bytes{0, 50, 150, 200});
  // 1 → 3 down, same width: a single row is copied.
  CHECK(conform({9, 99}, 2, 1, 1, {1, 3, 2}, CropMode::None) == Bytes{9, 99, 9, 99, 9, 99});
}

TEST_CASE("image_conform: alpha is composited onto the background") {
  // grey+alpha: transparent, opaque, half (100·128/255 + 255·127/255 = 177.2 on white, 50.2 on black).
  const Bytes ga = {200, 0, 200, 255, 100, 128};
  CHECK(conform(ga, 3, 1, 2, {1, 1, 3}, CropMode::None, Background::White) == Bytes{255, 200, 177});
  CHECK(conform(ga, 3, 1, 2, {1, 1, 3}, CropMode::None, Background::Black) == Bytes{0, 200, 50});
  // RGBA half-transparent red on white: R stays 255, G and B become 255·127/255 = 127. Planar output.
  CHECK(conform({255, 0, 0, 128}, 1, 1, 4, {3, 1, 1}) == Bytes{255, 127, 127});
}

TEST_CASE("image_conform: grey and RGB convert both ways") {
  // Luma 0.299 R + 0.587 G + 0.114 B: red 76.2, green 149.7, blue 29.1, white 255.
  const Bytes rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
  CHECK(conform(rgb, 4, 1, 3, {1, 1, 4}) == Bytes{76, 150, 29, 255});
  // RGB stays RGB, as three planes.
  CHECK(conform(rgb, 4, 1, 3, {3, 1, 4}) == Bytes{255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255});
  // Grey becomes three equal planes.
  CHECK(conform({5, 250}, 2, 1, 1, {3, 1, 2}) == Bytes{5, 250, 5, 250, 5, 250});
}

TEST_CASE("image_conform: centre crop keeps the middle at the target's aspect") {
  const CropRect wide = crop_rect(6, 2, {1, 2, 2}, CropMode::Center);
  CHECK((wide.x == 2 && wide.y == 0 && wide.width == 2 && wide.height == 2));
  const CropRect tall = crop_rect(3, 9, {1, 2, 2}, CropMode::Center);
  CHECK((tall.x == 0 && tall.y == 3 && tall.width == 3 && tall.height == 3));
  const CropRect whole = crop_rect(6, 2, {1, 2, 2}, CropMode::None);
  CHECK((whole.x == 0 && whole.width == 6 && whole.height == 2));
  const CropRect same_aspect = crop_rect(8, 4, {1, 2, 4}, CropMode::Center);
  CHECK((same_aspect.x == 0 && same_aspect.width == 8 && same_aspect.height == 4));

  // 6×2 → 2×2: centre crop keeps columns 2 and 3; without crop each output column averages three.
  const Bytes stripes = {0, 30, 60, 90, 120, 150,  //
                         0, 30, 60, 90, 120, 150};
  CHECK(conform(stripes, 6, 2, 1, {1, 2, 2}, CropMode::Center) == Bytes{60, 90, 60, 90});
  CHECK(conform(stripes, 6, 2, 1, {1, 2, 2}, CropMode::None) == Bytes{30, 120, 30, 120});
}

TEST_CASE("image_conform: requested_shape keeps what the options leave open") {
  const ImageShape own{1, 28, 28};
  const ImageShape same = requested_shape(own, LoadOptions{});
  CHECK((same.channels == 1 && same.height == 28 && same.width == 28));
  const ImageShape colour = requested_shape(own, LoadOptions{.channels = 3});
  CHECK((colour.channels == 3 && colour.height == 28));
  const ImageShape sized = requested_shape(own, LoadOptions{.height = 16, .width = 8});
  CHECK((sized.channels == 1 && sized.height == 16 && sized.width == 8));
}

TEST_CASE("image_conform: conform_dataset reshapes train and test, or leaves them") {
  auto make = [] {
    Dataset d;
    d.name = "blocks";
    d.train.count = 2;
    d.train.height = d.train.width = 4;
    d.train.pixels = Bytes(32, 0);
    for (int i = 0; i < 16; ++i) d.train.pixels[16 + i] = static_cast<std::uint8_t>(i < 8 ? 40 : 200);  // top half, bottom half
    d.train.labels = {3, 7};
    d.test.count = 1;
    d.test.height = d.test.width = 4;
    d.test.pixels = Bytes(16, 90);
    return d;
  };
  Dataset untouched = make();
  conform_dataset(untouched, LoadOptions{});
  CHECK(untouched.train.pixels == make().train.pixels);
  CHECK(untouched.train.channels == 1);

  Dataset d = make();
  conform_dataset(d, LoadOptions{.channels = 3, .height = 2, .width = 2});
  CHECK((d.train.channels == 3 && d.train.height == 2 && d.train.width == 2 && d.train.count == 2));
  CHECK(d.train.values_per_image() == 12);
  const Bytes second_plane = {40, 40, 200, 200};
  Bytes second(d.train.image(1), d.train.image(1) + 12);
  CHECK(second == Bytes{40, 40, 200, 200, 40, 40, 200, 200, 40, 40, 200, 200});
  CHECK(Bytes(d.train.image(0), d.train.image(0) + 12) == Bytes(12, 0));
  CHECK(d.train.labels == Bytes{3, 7});
  CHECK((d.test.channels == 3 && d.test.height == 2 && d.test.pixels == Bytes(12, 90)));

  // Back to grey: the planes were equal, so luma gives the same values.
  conform_dataset(d, LoadOptions{.channels = 1});
  CHECK(Bytes(d.train.image(1), d.train.image(1) + 4) == second_plane);

  Dataset big = make();
  const std::string message =
      error_of([&] { conform_dataset(big, LoadOptions{.height = 64, .width = 64, .memory_limit = 1000}); });
  CHECK(has(message, "blocks"));
  CHECK(has(message, "--max-images"));
  CHECK(big.train.height == 4);  // refused before anything changed
}
