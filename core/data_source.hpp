// Opening a data set from a path: which kind of data the path holds (IDX, an image folder, NumPy,
// CIFAR), the options that shape the images (channels, size, crop, background, held-out split,
// subset), the memory check made before anything large is allocated, and progress while loading.
// Not the readers themselves: each kind has its own module; this one chooses and checks.
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>

#include "core/data.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

enum class DataKind : std::uint8_t {
  IdxFolder,    // {train,t10k}-images-idx3-ubyte[.gz] and labels (MNIST, Fashion-MNIST)
  IdxFile,      // one IDX image file; its label file beside it when there is one
  ImageFolder,  // ROOT/<class>/<file>, ROOT/{train,test|val}/<class>/<file>, or flat ROOT/<file>
  Npy,          // one .npy array of images
  Npz,          // a .npz archive in the Keras layout (x_train, y_train, x_test, y_test)
  Cifar10,      // data_batch_1..5.bin, test_batch.bin, batches.meta.txt
  Cifar100,     // train.bin, test.bin (coarse and fine labels), fine_label_names.txt
};

// "an IDX folder", "a CIFAR-10 folder", … for messages.
const char* data_kind_name(DataKind kind);

// What a path holds, from the path itself (its name, and a folder's listing). Throws vaelab::Error
// naming the path and listing the kinds vaelab reads when it is none of them or does not exist.
DataKind detect_data_kind(const std::filesystem::path& path);

enum class CropMode : std::uint8_t {
  Center,  // a non-square source is cut to the target's aspect ratio around its centre, then resized
  None,    // the whole source is resized to the target (its aspect ratio changes)
};

// Alpha is composited onto this colour; icons and emoji have transparent backgrounds.
enum class Background : std::uint8_t { White, Black };

struct LoadOptions {
  int channels = 0;  // 0: the data's own (1 grey, 3 colour); 1 or 3 converts
  int height = 0;    // 0 (both): the data's own size when all images agree, otherwise 32×32
  int width = 0;
  CropMode crop = CropMode::Center;
  Background background = Background::White;
  double test_fraction = 0.1;         // held out when the data has no test split of its own
  long long max_images = 0;           // 0: every image; otherwise a deterministic subset of this many
  std::uint64_t memory_limit = 0;     // bytes the pixels may take; 0: half of the physical memory
};

// Shared with another thread while a load runs: how many of `total` images are decoded so far.
struct LoadProgress {
  std::atomic<long long> done{0};
  std::atomic<long long> total{0};
};

// Half of the physical memory, the default limit of LoadOptions::memory_limit.
std::uint64_t default_memory_limit();

// Refuses (vaelab::Error naming `what`, the bytes it needs and the flags that shrink it) a data set
// of `count` images of channels×height×width bytes when it exceeds the limit of `options`.
// Readers call it before allocating the pixels.
void check_data_memory(long long count, int channels, int height, int width, const LoadOptions& options,
                       const std::string& what);

// Opens whatever `path` holds (see DataKind) and shapes it by `options`. `cancel`, when set, stops
// the load; `progress`, when given, counts decoded images. Throws vaelab::Error with a message for
// a user: the path, what is wrong, what to do.
Dataset load_dataset(const std::filesystem::path& path, const LoadOptions& options = {},
                     const CancelFlag* cancel = nullptr, LoadProgress* progress = nullptr);

}  // namespace vaelab
