// Compositing, channel conversion, centre crop and resizing of one image, and reshaping a loaded
// data set. stb_image_resize is compiled here (static, so it cannot clash with Debian's libstb).
// Not a decoder: the pixels come already decoded.
#include "core/image_conform.hpp"

#include <sched.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "core/thread_pool.hpp"

#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#endif
#include <stb_image_resize.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace vaelab {

CropRect crop_rect(int width, int height, const ImageShape& target, CropMode crop) {
  CropRect r{0, 0, width, height};
  if (crop == CropMode::None) return r;
  const long long wide = static_cast<long long>(width) * target.height;  // compare width/height with the target's
  const long long tall = static_cast<long long>(height) * target.width;
  if (wide > tall) {
    r.width = std::max(1, static_cast<int>((tall + target.height / 2) / target.height));
    r.x = (width - r.width) / 2;
  } else if (tall > wide) {
    r.height = std::max(1, static_cast<int>((wide + target.width / 2) / target.width));
    r.y = (height - r.height) / 2;
  }
  return r;
}

namespace {

// v·a + bg·(1 − a) in bytes, rounded.
std::uint8_t composite(int value, int alpha, int background) {
  return static_cast<std::uint8_t>((value * alpha + background * (255 - alpha) + 127) / 255);
}

// 0.299 R + 0.587 G + 0.114 B, rounded.
std::uint8_t luma(int r, int g, int b) { return static_cast<std::uint8_t>((299 * r + 587 * g + 114 * b + 500) / 1000); }

// The crop rectangle of `src`, alpha composited, as `channels` (1 or 3) interleaved channels.
std::vector<std::uint8_t> flatten(const ImageView& src, const CropRect& r, int channels, int background) {
  std::vector<std::uint8_t> out(std::size_t(r.width) * r.height * channels);
  const bool colour = src.channels >= 3;
  const bool alpha = src.channels == 2 || src.channels == 4;
  std::uint8_t* dst = out.data();
  for (int y = r.y; y < r.y + r.height; ++y) {
    const std::uint8_t* p = src.pixels + (std::size_t(y) * src.width + r.x) * src.channels;
    for (int x = 0; x < r.width; ++x, p += src.channels) {
      const int a = alpha ? p[src.channels - 1] : 255;
      const std::uint8_t v0 = composite(p[0], a, background);
      if (!colour) {
        *dst++ = v0;
        continue;
      }
      const std::uint8_t v1 = composite(p[1], a, background), v2 = composite(p[2], a, background);
      if (channels == 1) {
        *dst++ = luma(v0, v1, v2);
      } else {
        *dst++ = v0, *dst++ = v1, *dst++ = v2;
      }
    }
  }
  return out;
}

stbir_filter filter_for(int from, int to) { return to < from ? STBIR_FILTER_BOX : STBIR_FILTER_TRIANGLE; }

}  // namespace

void conform_image(const ImageView& src, const ImageShape& target, CropMode crop, Background background,
                   std::uint8_t* out) {
  const CropRect r = crop_rect(src.width, src.height, target, crop);
  // Grey sources stay one channel until the planes are written (resizing one plane, not three).
  const int channels = target.channels == 3 && src.channels >= 3 ? 3 : 1;
  const std::vector<std::uint8_t> flat = flatten(src, r, channels, background == Background::White ? 255 : 0);

  std::vector<std::uint8_t> resized;
  const std::vector<std::uint8_t>* sized = &flat;
  if (r.width != target.width || r.height != target.height) {
    resized.resize(std::size_t(target.width) * target.height * channels);
    if (!stbir_resize(flat.data(), r.width, r.height, 0, resized.data(), target.width, target.height, 0, STBIR_TYPE_UINT8,
                      channels, STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP,
                      filter_for(r.width, target.width), filter_for(r.height, target.height), STBIR_COLORSPACE_LINEAR,
                      nullptr))
      throw Error("out of memory resizing a " + std::to_string(src.width) + "×" + std::to_string(src.height) + " image");
    sized = &resized;
  }

  const std::size_t plane = std::size_t(target.height) * target.width;
  for (int c = 0; c < target.channels; ++c) {
    const std::uint8_t* from = sized->data() + (channels == 3 ? c : 0);
    std::uint8_t* to = out + c * plane;
    for (std::size_t i = 0; i < plane; ++i) to[i] = from[i * channels];
  }
}

ImageShape requested_shape(const ImageShape& own, const LoadOptions& options) {
  ImageShape shape = own;
  if (options.channels) shape.channels = options.channels;
  if (options.height && options.width) shape.height = options.height, shape.width = options.width;
  return shape;
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

namespace {

void conform_set(ImageSet& set, const ImageShape& target, const LoadOptions& options, ThreadPool& pool) {
  const int own_channels = set.channels, own_values = set.values_per_image();
  const std::size_t plane = std::size_t(set.height) * set.width;
  std::vector<std::uint8_t> pixels(std::size_t(set.count) * target.values());
  run_tasks(&pool, pool.size(), [&](int part) {
    std::vector<std::uint8_t> interleaved(static_cast<std::size_t>(own_values));
    for (int i = part; i < set.count; i += pool.size()) {
      const std::uint8_t* planar = set.image(i);
      for (std::size_t p = 0; p < plane; ++p)
        for (int c = 0; c < own_channels; ++c) interleaved[p * own_channels + c] = planar[c * plane + p];
      conform_image({interleaved.data(), set.width, set.height, own_channels}, target, options.crop, options.background,
                    pixels.data() + std::size_t(i) * target.values());
    }
  });
  set.pixels = std::move(pixels);
  set.channels = target.channels;
  set.height = target.height;
  set.width = target.width;
}

}  // namespace

void conform_dataset(Dataset& data, const LoadOptions& options) {
  const ImageShape own{data.train.channels, data.train.height, data.train.width};
  const ImageShape target = requested_shape(own, options);
  if (target.channels == own.channels && target.height == own.height && target.width == own.width) return;
  check_data_memory(static_cast<long long>(data.train.count) + data.test.count, target.channels, target.height,
                    target.width, options, "data '" + data.name + "'");
  ThreadPool pool(available_cores());
  conform_set(data.train, target, options, pool);
  if (data.test.count > 0 || data.test.height > 0) conform_set(data.test, target, options, pool);
}

}  // namespace vaelab
