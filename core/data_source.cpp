// Choosing the reader for a path, and the memory check every reader makes before allocating.
// Not a reader: IDX lives in data.cpp; the other kinds each in their own module.
#include "core/data_source.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "core/cifar.hpp"
#include "core/error.hpp"
#include "core/held_out.hpp"
#include "core/idx_file.hpp"
#include "core/image_conform.hpp"
#include "core/image_folder.hpp"
#include "core/numpy_data.hpp"

namespace vaelab {

const char* data_kind_name(DataKind kind) {
  switch (kind) {
    case DataKind::IdxFolder: return "an IDX folder";
    case DataKind::IdxFile: return "an IDX image file";
    case DataKind::ImageFolder: return "an image folder";
    case DataKind::Npy: return "a NumPy .npy file";
    case DataKind::Npz: return "a NumPy .npz archive";
    case DataKind::Cifar10: return "a CIFAR-10 folder";
    case DataKind::Cifar100: return "a CIFAR-100 folder";
  }
  return "data";
}

namespace {

constexpr const char* kKindsVaelabReads =
    "vaelab reads: an IDX folder (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and their "
    "labels), one IDX image file, a folder of images (PNG, JPEG, WebP, BMP, GIF, TGA; one subfolder per "
    "class, optionally under train/ and test/), a .npy array, a .npz archive (x_train, y_train, x_test, "
    "y_test), or a CIFAR-10 or CIFAR-100 binary folder";

bool is_file_named(const std::filesystem::path& folder, const char* name) {
  std::error_code ec;
  return std::filesystem::is_regular_file(folder / name, ec);
}

bool is_idx_folder(const std::filesystem::path& folder) {
  for (const char* name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte",
                           "train-images.idx3-ubyte.gz"})
    if (is_file_named(folder, name)) return true;
  return false;
}

}  // namespace

DataKind detect_data_kind(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    throw Error("data '" + path.string() + "' does not exist. " + kKindsVaelabReads);
  if (std::filesystem::is_directory(status)) {
    if (is_idx_folder(path)) return DataKind::IdxFolder;
    for (const char* name : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                             "data_batch_5.bin", "test_batch.bin", "batches.meta.txt"})
      if (is_file_named(path, name)) return DataKind::Cifar10;
    for (const char* name : {"train.bin", "fine_label_names.txt", "coarse_label_names.txt"})
      if (is_file_named(path, name)) return DataKind::Cifar100;
    return DataKind::ImageFolder;
  }
  const std::string name = path.filename().string();
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with(".npy")) return DataKind::Npy;
  if (ends_with(".npz")) return DataKind::Npz;
  if (name.find("idx3-ubyte") != std::string::npos || name.find("idx3") != std::string::npos) return DataKind::IdxFile;
  throw Error("data '" + path.string() + "' is not something vaelab can open. " + kKindsVaelabReads);
}

std::uint64_t default_memory_limit() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 4ull << 30;  // unknown: a modest 4 GiB
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size) / 2;
}

namespace {

std::string gibibytes(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / double(1ull << 30));
  return buf;
}

}  // namespace

void check_data_memory(long long count, int channels, int height, int width, const LoadOptions& options,
                       const std::string& what) {
  const std::uint64_t limit = options.memory_limit ? options.memory_limit : default_memory_limit();
  const double needed = double(std::max(0LL, count)) * channels * height * width;
  if (needed <= double(limit)) return;
  const double per_image = double(channels) * height * width;
  const long long fits = per_image > 0 ? static_cast<long long>(double(limit) / per_image) : 0;
  throw Error(what + ": " + std::to_string(count) + " images of " + std::to_string(channels) + "×" +
              std::to_string(height) + "×" + std::to_string(width) + " need " + gibibytes(needed) +
              ", more than the " + gibibytes(double(limit)) +
              " allowed (half of this machine's memory). Take a subset with --max-images " + std::to_string(fits) +
              " or smaller images with --image-size.");
}

Dataset load_dataset(const std::filesystem::path& path, const LoadOptions& options, const CancelFlag* cancel,
                     LoadProgress* progress) {
  const DataKind kind = detect_data_kind(path);
  Dataset data;
  switch (kind) {
    // An image folder shapes each image as it decodes it, never holding full-size images.
    case DataKind::ImageFolder: return load_image_folder(path, options, cancel, progress);
    case DataKind::IdxFolder:
      data = load_idx_folder(path, cancel);
      keep_first_images(data, options.max_images, path.string());
      break;
    case DataKind::IdxFile: data = load_idx_file(path, options, cancel, progress); break;
    case DataKind::Npy: data = load_npy(path, options, cancel, progress); break;
    case DataKind::Npz: data = load_npz(path, options, cancel, progress); break;
    case DataKind::Cifar10: data = load_cifar10(path, options, cancel, progress); break;
    case DataKind::Cifar100: data = load_cifar100(path, options, cancel, progress); break;
  }
  conform_dataset(data, options);
  return data;
}

}  // namespace vaelab
