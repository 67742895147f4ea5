// NumPy data: one .npy array of images, or a .npz archive in the Keras layout (x_train, y_train,
// x_test, y_test; or x and y), read into vaelab's 8-bit planar images.
// Not a general NumPy reader: uint8 or float32 images, integer labels, C order, no pickles.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

// What a .npy header promises (format 1.0, 2.0 or 3.0).
struct NpyHeader {
  std::string descr;            // as written: "|u1", "<f4", "<i8", …
  char kind = 0;                // 'u' unsigned, 'i' signed, 'f' float, 'b' bool, …
  int item_size = 0;            // bytes per element
  bool big_endian = false;
  bool fortran_order = false;
  std::vector<std::uint64_t> shape;
  std::uint64_t header_bytes = 0;  // bytes before the array's data
  std::uint64_t payload = 0;       // bytes of data the shape and dtype promise
};

// Parses a .npy header at the start of `bytes` (at least the whole header; more is ignored).
// Throws vaelab::Error "<name>: …" saying what is wrong.
NpyHeader parse_npy_header(const std::uint8_t* bytes, std::size_t size, const std::string& name);

// One .npy file of images: uint8 (0..255) or float32 in [0, 1] (rounded to the nearest of 0..255;
// a value outside is refused with its index), C order, shaped N×H×W (grey), N×H×W×C or N×C×H×W
// with C in {1, 3, 4}. A 4-axis shape is read channels-last when its last axis is 1, 3 or 4 and
// channels-first otherwise (so N×3×32×3 is 3×32 images of 3 channels). Alpha (C = 4) is composited
// onto options.background, giving 3 channels. The file has no test split: the last
// round(N · options.test_fraction) images are held out (as Keras's validation_split). No labels.
// `cancel` stops the read; `progress` counts images. Throws vaelab::Error naming the file.
Dataset load_npy(const std::filesystem::path& file, const LoadOptions& options = {}, const CancelFlag* cancel = nullptr,
                 LoadProgress* progress = nullptr);

// A .npz archive (stored or deflated members) in the Keras layout: x_train and x_test images as in
// load_npy, y_train and y_test labels (optional; any integer dtype, values 0..255, shaped N or N×1;
// the class names are the label numbers). An archive with x (and y) only is split as load_npy
// splits. A member whose name leaves the archive (an absolute path, a ".." part) is refused.
Dataset load_npz(const std::filesystem::path& file, const LoadOptions& options = {}, const CancelFlag* cancel = nullptr,
                 LoadProgress* progress = nullptr);

}  // namespace vaelab
