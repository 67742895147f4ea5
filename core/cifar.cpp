// Reading CIFAR binary batches: every file's size is checked to be whole records and the data set
// against the memory limit before the pixels are allocated, then records are copied a chunk at a
// time (the label byte or bytes stripped). Not a detector: data_source.cpp says which folder is CIFAR.
#include "core/cifar.hpp"

#include <algorithm>
#include <cctype>
#include <memory>

#include "core/error.hpp"
#include "core/held_out.hpp"

namespace vaelab {

namespace {

namespace fs = std::filesystem;

// Records read at a time: between chunks the cancel flag and the progress are updated.
constexpr long long kChunkRecords = 1024;

// One batch file, open, with its size checked to be a whole number of records.
struct Batch {
  std::unique_ptr<RegularFile> file;
  int label_bytes = 1;
  long long records = 0;

  Batch(const fs::path& path, int label_bytes_per_record)
      : file(std::make_unique<RegularFile>(path, "a CIFAR batch file")), label_bytes(label_bytes_per_record) {
    const std::uint64_t record = static_cast<std::uint64_t>(label_bytes + kCifarImageBytes);
    const std::uint64_t size = file->size();
    if (size == 0) throw Error(file->name() + ": the file is empty");
    if (size % record != 0)
      throw Error(file->name() + ": " + std::to_string(size) + " bytes is not a whole number of " +
                  std::to_string(record) + "-byte CIFAR records (" + std::to_string(size / record) + " records and " +
                  std::to_string(size % record) + " bytes over); truncated or not a CIFAR" +
                  (label_bytes == 1 ? "-10" : "-100") + " batch?");
    records = static_cast<long long>(size / record);
  }

  // Copies the next `n` records into images [first, first + n) of `set` (keeping the last label
  // byte of each record).
  void read_into(ImageSet& set, long long first, long long n, const CancelFlag* cancel, LoadProgress* progress) {
    const std::size_t record = static_cast<std::size_t>(label_bytes + kCifarImageBytes);
    std::vector<std::uint8_t> chunk(static_cast<std::size_t>(std::min(n, kChunkRecords)) * record);
    for (long long done = 0; done < n;) {
      const long long k = std::min(kChunkRecords, n - done);
      const std::size_t want = static_cast<std::size_t>(k) * record;
      const std::size_t got = file->read(chunk.data(), want, cancel);
      if (got < want) throw Error(file->name() + ": the file was cut short while being read");
      for (long long i = 0; i < k; ++i) {
        const std::uint8_t* r = chunk.data() + static_cast<std::size_t>(i) * record;
        const std::size_t image = static_cast<std::size_t>(first + done + i);
        set.labels[image] = r[label_bytes - 1];
        std::copy(r + label_bytes, r + record, set.pixels.begin() + static_cast<std::ptrdiff_t>(image * kCifarImageBytes));
      }
      done += k;
      if (progress) progress->done += k;
    }
  }
};

ImageSet empty_set(long long count) {
  ImageSet set;
  set.count = static_cast<int>(count);
  set.channels = 3;
  set.height = 32;
  set.width = 32;
  set.pixels.resize(static_cast<std::size_t>(count) * kCifarImageBytes);
  set.labels.resize(static_cast<std::size_t>(count));
  return set;
}

// Fills a set of `count` images from the batches in order (the first `count` records).
ImageSet read_batches(std::vector<Batch>& batches, long long count, const CancelFlag* cancel, LoadProgress* progress) {
  ImageSet set = empty_set(count);
  long long filled = 0;
  for (Batch& b : batches) {
    const long long n = std::min(b.records, count - filled);
    if (n <= 0) break;
    b.read_into(set, filled, n, cancel, progress);
    filled += n;
  }
  return set;
}

void check_labels(const ImageSet& set, int classes, const std::vector<Batch>& batches) {
  long long first = 0;
  for (const Batch& b : batches) {
    for (long long i = 0; i < b.records && first + i < set.count; ++i)
      if (set.labels[static_cast<std::size_t>(first + i)] >= classes)
        throw Error(b.file->name() + ": the label of record " + std::to_string(i) + " is " +
                    std::to_string(set.labels[static_cast<std::size_t>(first + i)]) + "; the classes are 0 to " +
                    std::to_string(classes - 1));
    first += b.records;
  }
}

// The non-empty lines of a class-name file, or nothing when it is absent or names another count.
std::vector<std::string> read_class_names(const fs::path& file, int classes, std::vector<std::string>& notes) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return {};
  const std::vector<std::uint8_t> bytes = read_regular_file(file, "a class-name file", 1 << 20);
  std::vector<std::string> names;
  std::string line;
  auto finish = [&] {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    std::size_t start = 0;
    while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start]))) ++start;
    if (start < line.size()) names.push_back(line.substr(start));
    line.clear();
  };
  for (std::uint8_t c : bytes) {
    if (c == '\n') finish();
    else line.push_back(static_cast<char>(c));
  }
  finish();
  if (static_cast<int>(names.size()) != classes) {
    notes.push_back(file.string() + " names " + std::to_string(names.size()) + " classes, not " +
                    std::to_string(classes) + ": the classes are shown by number");
    return {};
  }
  return names;
}

std::string folder_name(const fs::path& folder) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(folder, ec);
  if (ec) p = folder.lexically_normal();
  while (p.has_relative_path() && p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

struct CifarLayout {
  std::vector<std::string> train_files;
  std::string test_file;
  int label_bytes;
  int classes;
  std::string names_file;
};

Dataset load_cifar(const fs::path& folder, const CifarLayout& layout, const LoadOptions& options,
                   const CancelFlag* cancel, LoadProgress* progress) {
  Dataset d;
  d.name = folder_name(folder);
  std::error_code ec;
  std::vector<Batch> train;
  std::vector<std::string> missing;
  for (const std::string& name : layout.train_files) {
    if (fs::exists(folder / name, ec)) train.emplace_back(folder / name, layout.label_bytes);
    else missing.push_back(name);
  }
  if (train.empty())
    throw Error("CIFAR folder '" + folder.string() + "' has no training batch: expected " + layout.train_files.front() +
                (layout.train_files.size() > 1 ? " … " + layout.train_files.back() : std::string()));
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    d.notes.push_back(folder.string() + ": " + list + (missing.size() == 1 ? " is" : " are") +
                      " missing; training on the other " + std::to_string(train.size()) + " batches");
  }
  std::vector<Batch> test;
  if (fs::exists(folder / layout.test_file, ec)) test.emplace_back(folder / layout.test_file, layout.label_bytes);

  long long train_records = 0, test_records = 0;
  for (const Batch& b : train) train_records += b.records;
  for (const Batch& b : test) test_records += b.records;
  const KeptImages keep = images_to_keep(train_records, test_records, options.max_images);
  check_data_memory(keep.train + keep.test, 3, 32, 32, options, "CIFAR folder '" + folder.string() + "'");
  if (progress) progress->total += keep.train + keep.test;

  d.train = read_batches(train, keep.train, cancel, progress);
  check_labels(d.train, layout.classes, train);
  if (!test.empty()) {
    d.test = read_batches(test, keep.test, cancel, progress);
    check_labels(d.test, layout.classes, test);
  }
  if (keep.train + keep.test < train_records + test_records)
    d.notes.push_back(folder.string() + ": " + std::to_string(keep.train + keep.test) + " of its " +
                      std::to_string(train_records + test_records) + " images are used (--max-images " +
                      std::to_string(options.max_images) + ")");
  if (test.empty()) {
    const long long held = held_out_count(d.train.count, options.test_fraction, folder.string());
    d.test = split_off_last(d.train, held);
    d.notes.push_back(folder.string() + ": " + layout.test_file + " is missing; the last " + std::to_string(held) +
                      " training images are held out for testing");
  }
  d.class_names = read_class_names(folder / layout.names_file, layout.classes, d.notes);
  if (d.class_names.empty())
    for (int c = 0; c < layout.classes; ++c) d.class_names.push_back(std::to_string(c));
  return d;
}

}  // namespace

Dataset load_cifar10(const fs::path& folder, const LoadOptions& options, const CancelFlag* cancel,
                     LoadProgress* progress) {
  const CifarLayout layout{{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                            "data_batch_5.bin"},
                           "test_batch.bin", 1, 10, "batches.meta.txt"};
  return load_cifar(folder, layout, options, cancel, progress);
}

Dataset load_cifar100(const fs::path& folder, const LoadOptions& options, const CancelFlag* cancel,
                      LoadProgress* progress) {
  const CifarLayout layout{{"train.bin"}, "test.bin", 2, 100, "fine_label_names.txt"};
  return load_cifar(folder, layout, options, cancel, progress);
}

ImageSet read_cifar_batch(const fs::path& file, int label_bytes, const CancelFlag* cancel) {
  if (label_bytes != 1 && label_bytes != 2) throw Error("read_cifar_batch: a record has 1 or 2 label bytes");
  std::vector<Batch> batch;
  batch.emplace_back(file, label_bytes);
  return read_batches(batch, batch.front().records, cancel, nullptr);
}

}  // namespace vaelab
