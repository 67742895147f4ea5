// Image data sets: IDX files (MNIST layout) read into bytes, and per-batch conversion to floats.
// Not a general image loader: only unsigned-byte IDX (magic 00 00 08 0N), gzipped or raw.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "core/config.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

// N images of C×H×W bytes, image after image; within an image the channels are planes (all of
// channel 0 row by row, then channel 1, …), as PyTorch's N×C×H×W. C is 1 (grey) or 3 (RGB).
// Labels are empty when the set has none.
struct ImageSet {
  int count = 0;
  int channels = 1;
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> pixels;  // count * channels * height * width
  std::vector<std::uint8_t> labels;  // empty, or count entries

  // The model's input dimension D = C·H·W: bytes per image.
  int values_per_image() const { return channels * height * width; }
  bool has_labels() const { return !labels.empty(); }
  const std::uint8_t* image(int i) const { return pixels.data() + static_cast<std::size_t>(i) * values_per_image(); }
};

struct Dataset {
  std::string name;                      // e.g. "fashion-mnist" (the folder's name)
  ImageSet train;
  ImageSet test;
  std::vector<std::string> class_names;  // one per label value; empty when there are no labels
  std::vector<std::string> notes;        // what the loader wants a user to know (vaelab-train prints, the app logs)
};

// Upper bound on pixels in one IDX file (a header asking for more is refused before allocating).
inline constexpr std::uint64_t kMaxIdxBytes = 1ull << 31;

// Fashion-MNIST's classes: label values of a Fashion-MNIST folder are below this.
inline constexpr int kClassCount = 10;

// Read an IDX image file (3 dims: N, H, W; or 2 dims: N, D treated as N×1×D). Only regular files
// are read (a FIFO or a device is refused unopened); `cancel`, when set, stops the read. Throws
// vaelab::Error.
ImageSet read_idx_images(const std::filesystem::path& file, const CancelFlag* cancel = nullptr);
// Read an IDX label file (1 dim: N), as read_idx_images. Throws vaelab::Error.
std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& file, const CancelFlag* cancel = nullptr);

// Load a folder in the MNIST layout: {train,t10k}-images-idx3-ubyte[.gz] and optional
// {train,t10k}-labels-idx1-ubyte[.gz] (also accepts the "train-images.idx3-ubyte" spelling).
// Class names: Fashion-MNIST's when the folder name contains "fashion" (a label of kClassCount or
// more is refused there), the label numbers otherwise; beyond ten classes the labels must number
// them densely from 0 (a value that leaves most of 0 … max unused is refused). `cancel`, when set,
// stops the reading.
// Throws vaelab::Error naming what is missing or broken.
Dataset load_idx_folder(const std::filesystem::path& folder, const CancelFlag* cancel = nullptr);

// The Debian location of Fashion-MNIST (package dataset-fashion-mnist).
std::filesystem::path default_data_folder();

// Convert images idx[0..n) of set into columns of out (D, n) as floats in [0, 1].
// Dynamic binarization draws each pixel from Bernoulli(intensity) with rng.
class Rng;
void gather_batch(const ImageSet& set, const int* idx, int n, Binarize mode, Rng* rng,
                  Eigen::Ref<Eigen::MatrixXf> out);

// Static binarization: replace every pixel by 0 or 255 drawn once from Bernoulli(pixel/255).
void binarize_static(ImageSet& set, std::uint64_t seed);

}  // namespace vaelab
