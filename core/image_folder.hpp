// Loading a folder of image files in torchvision's ImageFolder layouts into a Dataset: which files
// belong to which class and split, the data's own shape, and decoding on all cores.
// Not a decoder (image_decode) and not the shaping of one image (image_conform).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

#include "core/data.hpp"
#include "core/data_source.hpp"

namespace vaelab {

// Where a file falls in [0, 1), from a hash of its path relative to the folder given as the data
// ('/'-separated): it is held out for testing when this is below LoadOptions::test_fraction. A
// file's own path alone decides, so adding or removing other files never moves it between splits.
double split_position(const std::string& relative_path);

// The order in which --max-images keeps files (smallest first), from the same hash of the relative
// path, mixed differently so that the subset is not the held-out split.
std::uint64_t subset_rank(const std::string& relative_path);

// Loads `root`, one of:
//   ROOT/<class>/<file>                      classes are the sorted subfolder names (files in
//                                            deeper subfolders belong to their top folder's class)
//   ROOT/train/<class>/<file> and ROOT/test/<class>/<file> (or val/): the split as given; with
//                                            train/ alone, the held-out split below
//   ROOT/<file>                              no labels (when no subfolder holds an image)
// Image files are PNG, JPEG, WebP, BMP, GIF (first frame) and TGA, recognised by their name's
// ending and decoded by their magic number; hidden files and folders, other files and folder
// symlinks are ignored. Labels are one byte, so at most 256 classes.
// Without a test folder, files whose split_position is below options.test_fraction are the test
// split: each file by its own hash, so every class is held out in about that proportion (stratified
// in expectation; a split by rank within each class would move files when others are added).
// options.max_images keeps that many files, the smallest subset_rank first.
// The shape: options' channels and size, else the data's own from the headers (colour when any image is; the common size when all agree, otherwise
// 32×32 with a note). Every image is decoded, composited, cropped and resized (conform_image) on
// all available cores straight into the data set, which check_data_memory has admitted first.
// A corrupt, truncated or unreadable image is skipped; data.notes gives the count and the first
// five names with their reasons. Throws vaelab::Error when no image can be read, when a split has
// no image, when the data would need too much memory, or when `cancel` is set (checked between
// files). `progress`, when given, counts decoded (or skipped) files up to its total.
Dataset load_image_folder(const std::filesystem::path& root, const LoadOptions& options = {},
                          const CancelFlag* cancel = nullptr, LoadProgress* progress = nullptr);

}  // namespace vaelab
