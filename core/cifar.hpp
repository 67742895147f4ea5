// CIFAR-10 and CIFAR-100 in their binary versions as distributed (cifar-10-batches-bin/,
// cifar-100-binary/), read into vaelab's images: each record is already 3×32×32 planar RGB.
// Not the Python (pickle) or MATLAB versions of CIFAR.
#pragma once
#include <filesystem>

#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

// Bytes of one CIFAR image: 3 planes of 32×32.
inline constexpr int kCifarImageBytes = 3 * 32 * 32;

// A CIFAR-10 folder: data_batch_1.bin … data_batch_5.bin (training), test_batch.bin, and
// batches.meta.txt (class names; the label numbers without it). Each record is 1 label byte and
// kCifarImageBytes. Missing training batches: the others are used and a note says so; none at all
// is an error. Without test_batch.bin the last images are held out (options.test_fraction).
// `cancel` stops the read; `progress` counts images. Throws vaelab::Error naming the file.
Dataset load_cifar10(const std::filesystem::path& folder, const LoadOptions& options = {},
                     const CancelFlag* cancel = nullptr, LoadProgress* progress = nullptr);

// A CIFAR-100 folder: train.bin and test.bin, records of a coarse and a fine label byte and
// kCifarImageBytes; the fine labels are used, named by fine_label_names.txt when present. Without
// test.bin the last images are held out, as for CIFAR-10.
Dataset load_cifar100(const std::filesystem::path& folder, const LoadOptions& options = {},
                      const CancelFlag* cancel = nullptr, LoadProgress* progress = nullptr);

// One CIFAR batch file with `label_bytes` (1 or 2) label bytes per record, the last of which is
// kept: the images and labels. Throws when its size is not a whole number of records.
ImageSet read_cifar_batch(const std::filesystem::path& file, int label_bytes, const CancelFlag* cancel = nullptr);

}  // namespace vaelab
