// Decoding one image file's bytes into 8-bit interleaved pixels (1 to 4 channels) with Debian's
// decoders: libspng (PNG), libturbojpeg (JPEG), libwebp (WebP), stb_image (BMP, GIF's first frame, TGA).
// Not a codec, not a file reader and not a resizer: the bytes come from the caller, and shaping the
// pixels for a model is image_conform's work.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vaelab {

// An image larger than this on either side is refused from its header, before anything is
// decoded or allocated (a small file can promise gigabytes: an image bomb).
inline constexpr int kMaxImageSide = 16384;

enum class ImageFormat : std::uint8_t { Unknown, Png, Jpeg, WebP, Bmp, Gif, Tga };

// "PNG", "JPEG", … for messages.
const char* image_format_name(ImageFormat format);

// The format the bytes hold, from their magic numbers (never from a file name). TGA has no magic
// number: bytes that are none of the others and whose header stb_image accepts as TGA are TGA.
ImageFormat sniff_image_format(std::span<const std::uint8_t> bytes);

// What the header says, without decoding the pixels.
struct ImageHeader {
  ImageFormat format = ImageFormat::Unknown;
  int width = 0;
  int height = 0;
  bool colour = false;  // RGB or palette (GIF, WebP: always); false for grey
};

// Pixels row by row, channels interleaved: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
struct DecodedImage {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<std::uint8_t> pixels;  // width * height * channels
};

// The header of `bytes`; `name` (the file) is for messages. Throws vaelab::Error "<name>: <reason>"
// when the format is unknown, the header is broken, or a side exceeds kMaxImageSide.
ImageHeader read_image_header(std::span<const std::uint8_t> bytes, const std::string& name);

// The first image (frame) of `bytes`, after the header checks of read_image_header. Refuses, as
// vaelab::Error "<name>: <reason>", corrupt and truncated data: libspng checks CRCs and lengths,
// a JPEG with any decoder warning (a truncated or damaged stream) is refused, and uncompressed BMP
// and TGA must hold every pixel their header promises. Truncation inside run-length coded BMP or
// TGA, or inside a GIF, cannot be told from the data and is not detected.
DecodedImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name);

}  // namespace vaelab
