// Shaping images for a model: one decoded image (any size, 1 to 4 interleaved channels) into the
// target C×H×W planar bytes, and a whole loaded data set into other channels or another size.
// Not a decoder (image_decode) and not a loader (image_folder, data_source).
#pragma once
#include <cstdint>

#include "core/data.hpp"
#include "core/data_source.hpp"

namespace vaelab {

// An image in memory, row by row, channels interleaved: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
struct ImageView {
  const std::uint8_t* pixels = nullptr;
  int width = 0;
  int height = 0;
  int channels = 0;
};

// What conform_image makes: `channels` (1 or 3) planes of height×width bytes.
struct ImageShape {
  int channels = 1;
  int height = 0;
  int width = 0;
  int values() const { return channels * height * width; }
};

// The part of a width×height source that is kept: for CropMode::Center the largest rectangle of
// the target's aspect ratio around the source's centre; for CropMode::None all of it.
struct CropRect {
  int x = 0, y = 0, width = 0, height = 0;
};
CropRect crop_rect(int width, int height, const ImageShape& target, CropMode crop);

// Writes `src` as `target` (planar, target.values() bytes) to `out`, in this order:
//  - alpha is composited onto the background (white 255 or black 0): v·a + bg·(1 − a), rounded;
//  - grey becomes RGB by copying it to the three planes; RGB becomes grey by the luma weights of
//    ITU-R BT.601 (0.299 R + 0.587 G + 0.114 B, rounded), as PIL's convert("L") does;
//  - the crop rectangle (crop_rect) is cut out;
//  - it is resized, each axis on its own: area averaging (a box filter) on an axis that shrinks,
//    linear interpolation (a triangle filter) on one that grows, edges clamped, on the byte values
//    as they are (no gamma conversion, like torchvision with PIL), rounded to the nearest byte.
// Throws vaelab::Error when the resizer cannot allocate its buffers.
void conform_image(const ImageView& src, const ImageShape& target, CropMode crop, Background background,
                   std::uint8_t* out);

// The shape `options` asks for, given the data's own: each of channels, height and width that the
// options leave at 0 keeps its own value (height and width are given together).
ImageShape requested_shape(const ImageShape& own, const LoadOptions& options);

// Reshapes an already-loaded data set (e.g. IDX, CIFAR or NumPy, planar C×H×W) to the shape the
// options ask for (requested_shape), train and test alike, on all available cores; leaves it
// untouched when that is its own. check_data_memory refuses the result before it is allocated.
void conform_dataset(Dataset& data, const LoadOptions& options);

// CPUs this process may run on (its affinity mask, so `taskset` limits it), at least 1.
int available_cores();

}  // namespace vaelab
