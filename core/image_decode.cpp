// Decoding one image file's bytes with the decoder its magic number names. stb_image is compiled
// here, static and with BMP, GIF and TGA only (PNG and JPEG go to libspng and libturbojpeg).
// Not a reader of files or folders: see image_folder.cpp.
#include "core/image_decode.hpp"

#include <spng.h>
#include <turbojpeg.h>
#include <webp/decode.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.hpp"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_TGA
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS 16384  // kMaxImageSide (a macro cannot name the constant before it is read)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace vaelab {

static_assert(STBI_MAX_DIMENSIONS == kMaxImageSide);

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::WebP: return "WebP";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Gif: return "GIF";
    case ImageFormat::Tga: return "TGA";
    case ImageFormat::Unknown: break;
  }
  return "unknown";
}

namespace {

using Bytes = std::span<const std::uint8_t>;

bool starts_with(Bytes bytes, const char* magic, std::size_t n, std::size_t at = 0) {
  return bytes.size() >= at + n && std::memcmp(bytes.data() + at, magic, n) == 0;
}

int stb_length(Bytes bytes, const std::string& name) {
  if (bytes.size() > 0x7fffffffu) throw Error(name + ": the file is larger than 2 GiB");
  return static_cast<int>(bytes.size());
}

[[noreturn]] void refuse(const std::string& name, const std::string& reason) { throw Error(name + ": " + reason); }

void check_sides(const ImageHeader& h, const std::string& name) {
  if (h.width <= 0 || h.height <= 0) refuse(name, std::string(image_format_name(h.format)) + " header with no pixels");
  if (h.width > kMaxImageSide || h.height > kMaxImageSide)
    refuse(name, std::string(image_format_name(h.format)) + " header promises " + std::to_string(h.width) + "×" +
                     std::to_string(h.height) + " pixels, more than the " + std::to_string(kMaxImageSide) +
                     " per side vaelab decodes");
}

std::uint32_t le16(Bytes b, std::size_t at) { return b[at] | (b[at + 1] << 8); }
std::uint32_t le32(Bytes b, std::size_t at) {
  return b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (std::uint32_t(b[at + 3]) << 24);
}

// ---- PNG (libspng) ----

struct SpngDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};
using SpngContext = std::unique_ptr<spng_ctx, SpngDeleter>;

SpngContext open_png(Bytes bytes, const std::string& name, spng_ihdr& ihdr) {
  SpngContext ctx(spng_ctx_new(0));
  if (!ctx) refuse(name, "out of memory starting the PNG decoder");
  spng_set_image_limits(ctx.get(), kMaxImageSide, kMaxImageSide);
  spng_set_chunk_limits(ctx.get(), 64u << 20, 64u << 20);  // no metadata chunk may claim more
  spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());
  if (const int rc = spng_get_ihdr(ctx.get(), &ihdr)) {
    if (rc == SPNG_EWIDTH || rc == SPNG_EHEIGHT || rc == SPNG_EUSER_WIDTH || rc == SPNG_EUSER_HEIGHT) {
      // Read the sides from the IHDR chunk itself (bytes 16..23) for the message.
      ImageHeader h{ImageFormat::Png, 0, 0, false};
      if (bytes.size() >= 24) {
        h.width = static_cast<int>(std::min<std::uint32_t>(0x7fffffffu, (bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19]));
        h.height = static_cast<int>(std::min<std::uint32_t>(0x7fffffffu, (bytes[20] << 24) | (bytes[21] << 16) | (bytes[22] << 8) | bytes[23]));
      }
      check_sides(h, name);
    }
    refuse(name, std::string("broken PNG header (") + spng_strerror(rc) + ")");
  }
  return ctx;
}

bool png_is_grey(const spng_ihdr& ihdr) {
  return ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE || ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
}

ImageHeader png_header(Bytes bytes, ImageFormat, const std::string& name) {
  spng_ihdr ihdr{};
  open_png(bytes, name, ihdr);
  return {ImageFormat::Png, static_cast<int>(ihdr.width), static_cast<int>(ihdr.height), !png_is_grey(ihdr)};
}

DecodedImage decode_png(Bytes bytes, ImageFormat, const std::string& name) {
  spng_ihdr ihdr{};
  SpngContext ctx = open_png(bytes, name, ihdr);
  check_sides({ImageFormat::Png, static_cast<int>(ihdr.width), static_cast<int>(ihdr.height), false}, name);
  spng_trns trns{};
  const bool has_trns = spng_get_trns(ctx.get(), &trns) == 0;
  const bool grey = png_is_grey(ihdr);
  const bool alpha = has_trns || ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ||
                     ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
  // libspng gives G8 for plain grey up to 8 bits; everything else as RGBA8, reduced below.
  const bool direct_grey = grey && !alpha && ihdr.bit_depth <= 8;
  const int fmt = direct_grey ? SPNG_FMT_G8 : SPNG_FMT_RGBA8;
  std::size_t size = 0;
  if (const int rc = spng_decoded_image_size(ctx.get(), fmt, &size)) refuse(name, std::string("PNG: ") + spng_strerror(rc));
  std::vector<std::uint8_t> decoded(size);
  if (const int rc = spng_decode_image(ctx.get(), decoded.data(), size, fmt, SPNG_DECODE_TRNS))
    refuse(name, std::string("corrupt or truncated PNG (") + spng_strerror(rc) + ")");

  DecodedImage img{static_cast<int>(ihdr.width), static_cast<int>(ihdr.height), 0, {}};
  if (direct_grey) {
    img.channels = 1;
    img.pixels = std::move(decoded);
    return img;
  }
  img.channels = (grey ? 1 : 3) + (alpha ? 1 : 0);
  if (img.channels == 4) {
    img.pixels = std::move(decoded);
    return img;
  }
  // Keep R (grey), or RGB, and the alpha when there is one.
  const std::size_t n = std::size_t(img.width) * img.height;
  img.pixels.resize(n * img.channels);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* src = decoded.data() + 4 * i;
    std::uint8_t* dst = img.pixels.data() + img.channels * i;
    if (grey) {
      dst[0] = src[0];
      if (alpha) dst[1] = src[3];
    } else {
      dst[0] = src[0], dst[1] = src[1], dst[2] = src[2];
    }
  }
  return img;
}

// ---- JPEG (libturbojpeg) ----

struct TjDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDeleter>;

struct JpegInfo {
  ImageHeader header;
  int colourspace = 0;
};

JpegInfo jpeg_info(tjhandle handle, Bytes bytes, const std::string& name) {
  int w = 0, h = 0, subsamp = 0, colourspace = 0;
  if (tjDecompressHeader3(handle, bytes.data(), static_cast<unsigned long>(bytes.size()), &w, &h, &subsamp, &colourspace))
    refuse(name, std::string("broken JPEG header (") + tjGetErrorStr2(handle) + ")");
  JpegInfo info{{ImageFormat::Jpeg, w, h, colourspace != TJCS_GRAY}, colourspace};
  check_sides(info.header, name);
  return info;
}

TjHandle open_jpeg(const std::string& name) {
  TjHandle handle(tjInitDecompress());
  if (!handle) refuse(name, "cannot start the JPEG decoder");
  return handle;
}

ImageHeader jpeg_header(Bytes bytes, ImageFormat, const std::string& name) {
  TjHandle handle = open_jpeg(name);
  return jpeg_info(handle.get(), bytes, name).header;
}

DecodedImage decode_jpeg(Bytes bytes, ImageFormat, const std::string& name) {
  TjHandle handle = open_jpeg(name);
  const JpegInfo info = jpeg_info(handle.get(), bytes, name);
  if (info.colourspace == TJCS_CMYK || info.colourspace == TJCS_YCCK)
    refuse(name, "CMYK JPEG, which vaelab does not convert (save it as RGB)");
  DecodedImage img{info.header.width, info.header.height, info.header.colour ? 3 : 1, {}};
  img.pixels.resize(std::size_t(img.width) * img.height * img.channels);
  // Any warning (a truncated stream, damaged data) refuses the image: its pixels would not be the file's.
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  if (tjDecompress2(handle.get(), bytes.data(), static_cast<unsigned long>(bytes.size()), img.pixels.data(), img.width,
                    0, img.height, img.channels == 3 ? TJPF_RGB : TJPF_GRAY, flags))
    refuse(name, std::string("corrupt or truncated JPEG (") + tjGetErrorStr2(handle.get()) + ")");
  return img;
}

// ---- WebP (libwebp) ----

WebPBitstreamFeatures webp_features(Bytes bytes, const std::string& name) {
  WebPBitstreamFeatures features{};
  if (WebPGetFeatures(bytes.data(), bytes.size(), &features) != VP8_STATUS_OK) refuse(name, "broken WebP header");
  check_sides({ImageFormat::WebP, features.width, features.height, true}, name);
  return features;
}

ImageHeader webp_header(Bytes bytes, ImageFormat, const std::string& name) {
  const WebPBitstreamFeatures f = webp_features(bytes, name);
  return {ImageFormat::WebP, f.width, f.height, true};
}

DecodedImage decode_webp(Bytes bytes, ImageFormat, const std::string& name) {
  const WebPBitstreamFeatures f = webp_features(bytes, name);
  if (f.has_animation) refuse(name, "animated WebP, which vaelab does not read");
  DecodedImage img{f.width, f.height, f.has_alpha ? 4 : 3, {}};
  img.pixels.resize(std::size_t(img.width) * img.height * img.channels);
  const int stride = img.width * img.channels;
  const std::uint8_t* ok = f.has_alpha
                               ? WebPDecodeRGBAInto(bytes.data(), bytes.size(), img.pixels.data(), img.pixels.size(), stride)
                               : WebPDecodeRGBInto(bytes.data(), bytes.size(), img.pixels.data(), img.pixels.size(), stride);
  if (!ok) refuse(name, "corrupt or truncated WebP");
  return img;
}

// ---- BMP, GIF, TGA (stb_image) ----

ImageHeader stb_header(Bytes bytes, ImageFormat format, const std::string& name) {
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(bytes.data(), stb_length(bytes, name), &w, &h, &comp)) {
    // stb_image refuses sides above STBI_MAX_DIMENSIONS without saying which: read them for the message.
    if (format == ImageFormat::Bmp && bytes.size() >= 26) {
      const auto sw = static_cast<std::int32_t>(le32(bytes, 18)), sh = static_cast<std::int32_t>(le32(bytes, 22));
      check_sides({format, sw < 0 ? -sw : sw, sh < 0 ? -sh : sh, true}, name);
    }
    if (format == ImageFormat::Gif && bytes.size() >= 10)
      check_sides({format, int(le16(bytes, 6)), int(le16(bytes, 8)), true}, name);
    if (format == ImageFormat::Tga && bytes.size() >= 18)
      check_sides({format, int(le16(bytes, 12)), int(le16(bytes, 14)), true}, name);
    refuse(name, std::string("broken ") + image_format_name(format) + " header (" + stbi_failure_reason() + ")");
  }
  ImageHeader header{format, w, h, format == ImageFormat::Gif || comp >= 3};
  check_sides(header, name);
  return header;
}

// Bytes the pixels of an uncompressed BMP or TGA take, as its header says; 0 when it is compressed.
std::uint64_t uncompressed_pixel_end(Bytes bytes, ImageFormat format) {
  if (format == ImageFormat::Bmp && bytes.size() >= 34) {
    const std::uint32_t compression = le32(bytes, 30);
    if (compression != 0 && compression != 3) return 0;  // BI_RGB and BI_BITFIELDS only
    const std::uint64_t w = static_cast<std::uint32_t>(std::abs(static_cast<std::int64_t>(static_cast<std::int32_t>(le32(bytes, 18)))));
    const std::uint64_t h = static_cast<std::uint32_t>(std::abs(static_cast<std::int64_t>(static_cast<std::int32_t>(le32(bytes, 22)))));
    const std::uint64_t bits = le16(bytes, 28);
    return le32(bytes, 10) + (w * bits + 31) / 32 * 4 * h;
  }
  if (format == ImageFormat::Tga && bytes.size() >= 18) {
    const std::uint32_t type = bytes[2];
    if (type != 1 && type != 2 && type != 3) return 0;  // the run-length coded types 9, 10, 11
    const std::uint64_t palette = bytes[1] ? std::uint64_t(le16(bytes, 5)) * ((bytes[7] + 7) / 8) : 0;
    return 18 + bytes[0] + palette + std::uint64_t(le16(bytes, 12)) * le16(bytes, 14) * ((bytes[16] + 7) / 8);
  }
  return 0;
}

DecodedImage decode_stb(Bytes bytes, ImageFormat format, const std::string& name) {
  stb_header(bytes, format, name);
  const std::uint64_t end = uncompressed_pixel_end(bytes, format);
  if (end > bytes.size())
    refuse(name, std::string("truncated ") + image_format_name(format) + ": the header promises " + std::to_string(end) +
                     " bytes, the file holds " + std::to_string(bytes.size()));
  DecodedImage img;
  stbi_uc* pixels = stbi_load_from_memory(bytes.data(), stb_length(bytes, name), &img.width, &img.height, &img.channels, 0);
  if (!pixels) refuse(name, std::string("corrupt ") + image_format_name(format) + " (" + stbi_failure_reason() + ")");
  img.pixels.assign(pixels, pixels + std::size_t(img.width) * img.height * img.channels);
  stbi_image_free(pixels);
  return img;
}

ImageFormat known_format(Bytes bytes, const std::string& name) {
  const ImageFormat format = sniff_image_format(bytes);
  if (format == ImageFormat::Unknown)
    refuse(name, bytes.empty() ? "empty file" : "not an image vaelab reads (PNG, JPEG, WebP, BMP, GIF, TGA)");
  return format;
}

// The header reader and decoder of a format.
struct Codec {
  ImageHeader (*header)(Bytes, ImageFormat, const std::string&);
  DecodedImage (*decode)(Bytes, ImageFormat, const std::string&);
};

Codec codec_for(ImageFormat format) {
  switch (format) {
    case ImageFormat::Png: return {png_header, decode_png};
    case ImageFormat::Jpeg: return {jpeg_header, decode_jpeg};
    case ImageFormat::WebP: return {webp_header, decode_webp};
    default: return {stb_header, decode_stb};  // BMP, GIF, TGA
  }
}

}  // namespace

ImageFormat sniff_image_format(Bytes bytes) {
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n", 8)) return ImageFormat::Png;
  if (starts_with(bytes, "\xff\xd8\xff", 3)) return ImageFormat::Jpeg;
  if (starts_with(bytes, "RIFF", 4) && starts_with(bytes, "WEBP", 4, 8)) return ImageFormat::WebP;
  if (starts_with(bytes, "GIF87a", 6) || starts_with(bytes, "GIF89a", 6)) return ImageFormat::Gif;
  if (starts_with(bytes, "BM", 2)) return ImageFormat::Bmp;
  if (bytes.size() >= 18 && bytes.size() <= 0x7fffffffu) {
    int w = 0, h = 0, comp = 0;  // only TGA is left among stb_image's formats
    if (stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp)) return ImageFormat::Tga;
  }
  return ImageFormat::Unknown;
}

ImageHeader read_image_header(Bytes bytes, const std::string& name) {
  const ImageFormat format = known_format(bytes, name);
  return codec_for(format).header(bytes, format, name);
}

DecodedImage decode_image(Bytes bytes, const std::string& name) {
  const ImageFormat format = known_format(bytes, name);
  return codec_for(format).decode(bytes, format, name);
}

}  // namespace vaelab
