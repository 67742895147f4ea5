// One IDX image file given as the data path (e.g. train-images-idx3-ubyte.gz): its labels from
// the file beside it when there is one, and a test split. Not the IDX format itself (data.cpp).
#pragma once
#include <filesystem>

#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

// The label file for an image file: the same name with "images" → "labels" and "idx3" → "idx1",
// gzipped or not; empty when there is none beside it.
std::filesystem::path idx_label_file_for(const std::filesystem::path& images);

// Loads one IDX image file and its labels. A training file ("train-…") with its t10k image file
// beside it is read as its folder is (load_idx_folder, class names included); otherwise the last
// round(N · options.test_fraction) images are held out and the classes are named by their numbers.
// options.max_images keeps the first images. Throws vaelab::Error naming the file.
Dataset load_idx_file(const std::filesystem::path& images, const LoadOptions& options = {},
                      const CancelFlag* cancel = nullptr, LoadProgress* progress = nullptr);

}  // namespace vaelab
