// A single IDX image file as the data: its header is peeked at for the memory check, then the file
// is read whole by data.cpp's reader (at most kMaxIdxBytes), with its labels and a test split.
// Not the IDX folder (load_idx_folder) nor the IDX format.
#include "core/idx_file.hpp"

#include <unistd.h>
#include <zlib.h>

#include <climits>
#include <optional>

#include "core/error.hpp"
#include "core/held_out.hpp"

namespace vaelab {

namespace {

namespace fs = std::filesystem;

struct IdxShape {
  long long count = 0;
  int height = 0;
  int width = 0;
};

// The dimensions an IDX image header promises, or nothing when the header is not readable (the
// reader then says what is wrong with it).
std::optional<IdxShape> peek_shape(const fs::path& file) {
  RegularFile in(file, "an IDX file");
  const int fd = in.release();
  gzFile f = gzdopen(fd, "rb");
  if (!f) {
    ::close(fd);
    return std::nullopt;
  }
  unsigned char h[16] = {};
  const int got = gzread(f, h, sizeof h);
  gzclose(f);
  auto be32 = [&](int at) {
    return static_cast<long long>((std::uint32_t{h[at]} << 24) | (std::uint32_t{h[at + 1]} << 16) |
                                  (std::uint32_t{h[at + 2]} << 8) | h[at + 3]);
  };
  if (got < 12 || h[0] != 0 || h[1] != 0 || h[2] != 0x08) return std::nullopt;
  const bool grey = h[3] == 3 && got == 16;
  if (!grey && h[3] != 2) return std::nullopt;
  const long long height = grey ? be32(8) : 1, width = grey ? be32(12) : be32(8);
  if (be32(4) < 1 || height < 1 || width < 1 || height > INT_MAX || width > INT_MAX) return std::nullopt;
  return IdxShape{be32(4), static_cast<int>(height), static_cast<int>(width)};
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string replace_first(std::string s, const std::string& from, const std::string& to) {
  const std::size_t at = s.find(from);
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// The same file name gzipped or not, when one exists beside `file`.
fs::path either_compression(const fs::path& folder, std::string name) {
  if (name.size() > 3 && name.compare(name.size() - 3, 3, ".gz") == 0) name.resize(name.size() - 3);
  std::error_code ec;
  for (const std::string& candidate : {name, name + ".gz"})
    if (fs::is_regular_file(folder / candidate, ec)) return folder / candidate;
  return {};
}

// The folder's name ("fashion-mnist" for …/fashion-mnist/train-images-idx3-ubyte.gz), or the file's.
std::string data_name(const fs::path& images) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(images, ec);
  if (ec) p = images.lexically_normal();
  const std::string folder = p.parent_path().filename().string();
  return folder.empty() ? images.filename().string() : folder;
}

ImageSet read_with_labels(const fs::path& images, const CancelFlag* cancel, std::vector<std::string>& notes) {
  ImageSet set = read_idx_images(images, cancel);
  const fs::path labels = idx_label_file_for(images);
  if (labels.empty()) {
    notes.push_back(images.string() + ": no label file beside it (" +
                    replace_first(replace_first(images.filename().string(), "images", "labels"), "idx3", "idx1") +
                    "); the images are unlabelled");
    return set;
  }
  std::vector<std::uint8_t> l = read_idx_labels(labels, cancel);
  if (l.size() != static_cast<std::size_t>(set.count))
    throw Error(labels.string() + ": has " + std::to_string(l.size()) + " labels but " + images.filename().string() +
                " has " + std::to_string(set.count) + " images; expected one label per image");
  set.labels = std::move(l);
  return set;
}

}  // namespace

fs::path idx_label_file_for(const fs::path& images) {
  const std::string name = images.filename().string();
  if (name.find("images") == std::string::npos) return {};
  return either_compression(images.parent_path(), replace_first(replace_first(name, "images", "labels"), "idx3", "idx1"));
}

Dataset load_idx_file(const fs::path& images, const LoadOptions& options, const CancelFlag* cancel,
                      LoadProgress* progress) {
  const std::string name = images.filename().string();
  fs::path test_images;
  if (starts_with(name, "train")) test_images = either_compression(images.parent_path(), "t10k" + name.substr(5));

  const std::optional<IdxShape> train_shape = peek_shape(images);
  const std::optional<IdxShape> test_shape = test_images.empty() ? std::nullopt : peek_shape(test_images);
  if (train_shape) {
    const KeptImages keep = images_to_keep(train_shape->count, test_shape ? test_shape->count : 0, options.max_images);
    check_data_memory(keep.train + keep.test, 1, train_shape->height, train_shape->width, options, images.string());
    if (progress) progress->total += keep.train + keep.test;
  }

  Dataset d;
  if (!test_images.empty()) {
    // The whole IDX folder: the same data set, class names included, as --data FOLDER gives.
    d = load_idx_folder(images.parent_path().empty() ? fs::path(".") : images.parent_path(), cancel);
    d.notes.push_back(images.string() + ": tested on " + test_images.filename().string() + " beside it");
    keep_first_images(d, options.max_images, images.string());
    if (progress) progress->done += static_cast<long long>(d.train.count) + d.test.count;
    return d;
  }
  d.name = data_name(images);
  d.train = read_with_labels(images, cancel, d.notes);
  keep_first_images(d, options.max_images, images.string());
  const long long held = held_out_count(d.train.count, options.test_fraction, images.string());
  d.test = split_off_last(d.train, held);
  d.notes.push_back(images.string() + ": no test file beside it; the last " + std::to_string(held) + " of " +
                    std::to_string(d.train.count + held) + " images are held out for testing");
  if (d.train.has_labels() || d.test.has_labels()) d.class_names = numbered_class_names({&d.train, &d.test});
  if (progress) progress->done += static_cast<long long>(d.train.count) + d.test.count;
  return d;
}

}  // namespace vaelab
