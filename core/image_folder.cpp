// The image folder loader: listing the layout, assigning splits and the subset, finding the data's
// own shape from the headers, then decoding every file on a thread pool into preallocated pixels.
// Not a decoder: image_decode does the formats, image_conform the shaping of each image.
#include "core/image_folder.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "core/image_conform.hpp"
#include "core/image_decode.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {
namespace fs = std::filesystem;

namespace {

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// SplitMix64's finaliser: spreads every bit of the input over the output.
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

double split_position(const std::string& relative_path) {
  return static_cast<double>(mix(fnv1a(relative_path)) >> 11) * 0x1.0p-53;
}

std::uint64_t subset_rank(const std::string& relative_path) {
  return mix(fnv1a(relative_path) ^ 0x9e3779b97f4a7c15ull);
}

namespace {

// Files larger than this are not images vaelab would decode (16,384² RGBA is 1 GiB raw).
constexpr std::uint64_t kMaxImageFileBytes = 512ull << 20;
// Headers are read from this much of a file's start; the whole file only when that is not enough.
constexpr std::size_t kHeaderPrefixBytes = 64 << 10;
constexpr int kMaxClasses = 256;
constexpr int kReportedFailures = 5;
constexpr int kDefaultSide = 32;

bool is_hidden(const fs::path& p) { return p.filename().string().starts_with('.'); }

bool has_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".jpe", ".jfif",
                                                    ".webp", ".bmp", ".gif", ".tga"};
  return kExtensions.count(ext) > 0;
}

bool is_image_file(const fs::directory_entry& e) {
  std::error_code ec;
  return !is_hidden(e.path()) && has_image_name(e.path()) && e.is_regular_file(ec);
}

bool is_visible_folder(const fs::directory_entry& e) {
  std::error_code ec;
  return !is_hidden(e.path()) && e.is_directory(ec) && !e.is_symlink(ec);
}

std::vector<fs::directory_entry> sorted_entries(const fs::path& folder) {
  std::vector<fs::directory_entry> entries;
  std::error_code ec;
  for (fs::directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec), end; !ec && it != end;
       it.increment(ec))
    entries.push_back(*it);
  if (ec) throw Error("image folder '" + folder.string() + "' cannot be listed: " + ec.message());
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
  return entries;
}

// Image files anywhere below `folder` (hidden folders and folder symlinks not entered), sorted.
std::vector<fs::path> images_below(const fs::path& folder) {
  std::vector<fs::path> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (is_hidden(it->path())) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (is_image_file(*it)) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

struct ImageFile {
  fs::path path;
  std::string relative;  // to the data's root, '/'-separated: what the hashes read
  int label = -1;        // index into the class names; -1 without labels
};

// One split's folder: its class subfolders, or its files when no subfolder holds an image.
struct SplitListing {
  std::vector<std::string> classes;  // sorted; empty for a flat folder
  std::vector<std::vector<fs::path>> files_by_class;
  std::vector<fs::path> flat_files;
  std::vector<std::string> ignored;  // notes: files beside class folders, class folders without images
};

SplitListing list_split(const fs::path& folder) {
  SplitListing listing;
  std::vector<fs::path> loose_files;
  std::vector<std::string> empty_folders;
  for (const auto& e : sorted_entries(folder)) {
    if (is_visible_folder(e)) {
      std::vector<fs::path> files = images_below(e.path());
      if (files.empty()) {
        empty_folders.push_back(e.path().filename().string());
        continue;
      }
      listing.classes.push_back(e.path().filename().string());
      listing.files_by_class.push_back(std::move(files));
    } else if (is_image_file(e)) {
      loose_files.push_back(e.path());
    }
  }
  if (listing.classes.empty()) {
    listing.flat_files = std::move(loose_files);
    return listing;
  }
  if (!loose_files.empty())
    listing.ignored.push_back(std::to_string(loose_files.size()) + " image files directly in '" + folder.string() +
                              "' are ignored: its subfolders are the classes");
  if (!empty_folders.empty())
    listing.ignored.push_back(std::to_string(empty_folders.size()) + " subfolders of '" + folder.string() +
                              "' hold no image and are not classes (e.g. '" + empty_folders.front() + "')");
  return listing;
}

std::string relative_name(const fs::path& file, const fs::path& root) {
  return file.lexically_relative(root).generic_string();
}

struct FolderPlan {
  std::vector<ImageFile> train, test;
  std::vector<std::string> class_names;
  std::vector<std::string> notes;
  bool test_given = false;  // the folder has its own test split
};

std::optional<fs::path> test_folder(const fs::path& root) {
  std::error_code ec;
  for (const char* name : {"test", "val"})
    if (fs::is_directory(root / name, ec)) return root / name;
  return std::nullopt;
}

FolderPlan plan_folder(const fs::path& root, const LoadOptions& options) {
  std::error_code ec;
  const bool split_given = fs::is_directory(root / "train", ec);
  const fs::path train_root = split_given ? root / "train" : root;
  const std::optional<fs::path> test_root = split_given ? test_folder(root) : std::nullopt;

  std::vector<std::pair<fs::path, SplitListing>> listings;
  listings.emplace_back(train_root, list_split(train_root));
  if (test_root) listings.emplace_back(*test_root, list_split(*test_root));

  FolderPlan plan;
  plan.test_given = test_root.has_value();
  const bool labelled = !listings.front().second.classes.empty();
  std::set<std::string> class_set;
  for (const auto& [folder, listing] : listings) {
    if (listing.classes.empty() == labelled && !(listing.classes.empty() && listing.flat_files.empty()))
      throw Error("image folder '" + root.string() + "': '" + train_root.string() + "' and '" + folder.string() +
                  "' must both have class subfolders, or both hold their images directly");
    class_set.insert(listing.classes.begin(), listing.classes.end());
    plan.notes.insert(plan.notes.end(), listing.ignored.begin(), listing.ignored.end());
  }
  if (class_set.size() > std::size_t(kMaxClasses))
    throw Error("image folder '" + root.string() + "' has " + std::to_string(class_set.size()) +
                " class subfolders; vaelab's labels are one byte, so at most " + std::to_string(kMaxClasses));
  plan.class_names.assign(class_set.begin(), class_set.end());

  for (std::size_t s = 0; s < listings.size(); ++s) {
    const auto& [folder, listing] = listings[s];
    auto add = [&](const fs::path& file, int label) {
      ImageFile f{file, relative_name(file, root), label};
      const bool held_out = s == 1 || (!test_root && split_position(f.relative) < options.test_fraction);
      (held_out ? plan.test : plan.train).push_back(std::move(f));
    };
    for (const fs::path& file : listing.flat_files) add(file, -1);
    for (std::size_t c = 0; c < listing.classes.size(); ++c) {
      const int label = static_cast<int>(std::lower_bound(plan.class_names.begin(), plan.class_names.end(),
                                                          listing.classes[c]) - plan.class_names.begin());
      for (const fs::path& file : listing.files_by_class[c]) add(file, label);
    }
  }
  return plan;
}

// Keeps the `max_images` files of both splits with the smallest subset_rank, in their order.
void take_subset(FolderPlan& plan, long long max_images) {
  const std::size_t total = plan.train.size() + plan.test.size();
  if (max_images <= 0 || std::size_t(max_images) >= total) return;
  std::vector<std::uint64_t> ranks;
  for (const auto* split : {&plan.train, &plan.test})
    for (const ImageFile& f : *split) ranks.push_back(subset_rank(f.relative));
  std::nth_element(ranks.begin(), ranks.begin() + (max_images - 1), ranks.end());
  const std::uint64_t last_kept = ranks[std::size_t(max_images - 1)];
  for (auto* split : {&plan.train, &plan.test})
    std::erase_if(*split, [&](const ImageFile& f) { return subset_rank(f.relative) > last_kept; });
}

// The header of `file`, from its first bytes or, when they do not hold it, the whole file.
ImageHeader file_header(const fs::path& file) {
  const std::string name = file.string();
  std::vector<std::uint8_t> prefix(kHeaderPrefixBytes);
  std::uint64_t size = 0;
  {
    RegularFile f(file, "an image file");
    size = f.size();
    prefix.resize(f.read(prefix.data(), prefix.size()));
  }
  try {
    return read_image_header(prefix, name);
  } catch (const Error&) {
    if (size <= prefix.size()) throw;
  }
  return read_image_header(read_regular_file(file, "an image file", kMaxImageFileBytes), name);
}

std::string side_text(int h, int w) { return std::to_string(h) + "×" + std::to_string(w); }

// The data's own shape: colour when any header says so, the common size when all agree.
ImageShape own_shape(const std::vector<const ImageFile*>& files, ThreadPool& pool, const LoadOptions& options,
                     const CancelFlag* cancel, std::vector<std::string>& notes) {
  std::vector<ImageHeader> headers(files.size());
  run_tasks(&pool, static_cast<int>(files.size()), [&](int i) {
    if (cancel && cancel->load(std::memory_order_relaxed)) return;
    try {
      headers[i] = file_header(files[i]->path);
    } catch (const std::exception&) {
      // Unreadable: the decoding pass reports it with its reason.
    }
  });
  bool colour = false;
  std::map<std::pair<int, int>, long long> sizes;
  for (const ImageHeader& h : headers) {
    if (h.format == ImageFormat::Unknown) continue;
    colour |= h.colour;
    ++sizes[{h.height, h.width}];
  }
  ImageShape shape{colour ? 3 : 1, kDefaultSide, kDefaultSide};
  if (sizes.size() == 1) {
    shape.height = sizes.begin()->first.first;
    shape.width = sizes.begin()->first.second;
  } else if (sizes.size() > 1 && !(options.height && options.width)) {
    const auto common = std::max_element(sizes.begin(), sizes.end(),
                                         [](const auto& a, const auto& b) { return a.second < b.second; });
    notes.push_back("the images differ in size (" + std::to_string(sizes.size()) + " sizes, most often " +
                    side_text(common->first.first, common->first.second) + "): all are resized to " +
                    side_text(kDefaultSide, kDefaultSide) + "; choose another size with --image-size");
  }
  return shape;
}

struct Outcome {
  bool ok = false;
  std::string reason;
};

// Moves the decoded images of `set` to the front, in order, dropping the failed ones.
void drop_failed(ImageSet& set, const std::vector<Outcome>& outcomes, std::size_t first) {
  const std::size_t values = std::size_t(set.values_per_image());
  int kept = 0;
  for (int i = 0; i < set.count; ++i) {
    if (!outcomes[first + i].ok) continue;
    if (kept != i) {
      std::copy_n(set.pixels.begin() + std::ptrdiff_t(i * values), values, set.pixels.begin() + std::ptrdiff_t(kept * values));
      if (set.has_labels()) set.labels[kept] = set.labels[i];
    }
    ++kept;
  }
  set.count = kept;
  set.pixels.resize(std::size_t(kept) * values);
  set.pixels.shrink_to_fit();
  if (set.has_labels()) set.labels.resize(std::size_t(kept));
}

ImageSet empty_set(const ImageShape& shape, const std::vector<ImageFile>& files) {
  ImageSet set;
  set.count = static_cast<int>(files.size());
  set.channels = shape.channels;
  set.height = shape.height;
  set.width = shape.width;
  set.pixels.resize(files.size() * std::size_t(shape.values()));
  if (!files.empty() && files.front().label >= 0)
    for (const ImageFile& f : files) set.labels.push_back(static_cast<std::uint8_t>(f.label));
  return set;
}

std::string data_name(const fs::path& root) {
  const fs::path p = root.lexically_normal();
  const std::string name = p.filename().string();
  return name.empty() ? p.parent_path().filename().string() : name;
}

}  // namespace

Dataset load_image_folder(const fs::path& root, const LoadOptions& options, const CancelFlag* cancel,
                          LoadProgress* progress) {
  const std::string where = "image folder '" + root.string() + "'";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw Error(where + " is not a folder");
  FolderPlan plan = plan_folder(root, options);
  if (plan.train.empty() && plan.test.empty())
    throw Error(where + " holds no image file (PNG, JPEG, WebP, BMP, GIF or TGA), neither directly nor in subfolders");
  take_subset(plan, options.max_images);

  std::vector<const ImageFile*> files;
  for (const auto* split : {&plan.train, &plan.test})
    for (const ImageFile& f : *split) files.push_back(&f);
  if (progress) {
    progress->done = 0;
    progress->total = static_cast<long long>(files.size());
  }
  ThreadPool pool(available_cores());
  auto check_cancel = [&] {
    if (cancel && cancel->load()) throw Error(where + ": loading was cancelled");
  };

  const bool shape_given = options.channels && options.height && options.width;
  const ImageShape own = shape_given ? ImageShape{} : own_shape(files, pool, options, cancel, plan.notes);
  check_cancel();
  const ImageShape shape = requested_shape(own, options);
  check_data_memory(static_cast<long long>(files.size()), shape.channels, shape.height, shape.width, options, where);

  Dataset data;
  data.name = data_name(root);
  data.class_names = plan.class_names;
  data.train = empty_set(shape, plan.train);
  data.test = empty_set(shape, plan.test);

  std::vector<Outcome> outcomes(files.size());
  const std::size_t values = std::size_t(shape.values());
  run_tasks(&pool, static_cast<int>(files.size()), [&](int i) {
    if (cancel && cancel->load(std::memory_order_relaxed)) return;
    const bool in_train = std::size_t(i) < plan.train.size();
    const std::size_t index = in_train ? std::size_t(i) : i - plan.train.size();
    std::uint8_t* out = (in_train ? data.train : data.test).pixels.data() + index * values;
    try {
      const std::vector<std::uint8_t> bytes = read_regular_file(files[i]->path, "an image file", kMaxImageFileBytes);
      const DecodedImage img = decode_image(bytes, files[i]->path.string());
      conform_image({img.pixels.data(), img.width, img.height, img.channels}, shape, options.crop, options.background, out);
      outcomes[i].ok = true;
    } catch (const std::exception& e) {
      outcomes[i].reason = e.what();
    }
    if (progress) progress->done.fetch_add(1, std::memory_order_relaxed);
  });
  check_cancel();

  std::vector<std::string> failures;
  for (const Outcome& o : outcomes)
    if (!o.ok) failures.push_back(o.reason);
  drop_failed(data.train, outcomes, 0);
  drop_failed(data.test, outcomes, plan.train.size());
  if (!failures.empty()) {
    std::string note = std::to_string(failures.size()) + " of " + std::to_string(files.size()) +
                       " images could not be read and are left out:";
    for (std::size_t i = 0; i < failures.size() && i < std::size_t(kReportedFailures); ++i) note += "\n  " + failures[i];
    if (failures.size() > std::size_t(kReportedFailures)) note += "\n  …";
    plan.notes.push_back(note);
  }
  if (data.train.count == 0 && data.test.count == 0)
    throw Error(where + " has no readable image: " + std::to_string(failures.size()) + " files failed, the first: " +
                failures.front());
  if (data.train.count == 0) throw Error(where + ": the training split has no readable image");
  if (data.test.count == 0 && (plan.test_given || options.test_fraction > 0))
    throw Error(where + ": the test split has no readable image" +
                (plan.test_given ? std::string() : "; hold out more with a larger --test-fraction, or add images"));
  data.notes = std::move(plan.notes);
  return data;
}

}  // namespace vaelab
