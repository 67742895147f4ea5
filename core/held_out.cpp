// The --max-images cap, the held-out split by position and numbered class names shared by the
// array readers (numpy_data.cpp, cifar.cpp, idx_file.cpp). Not a reader itself.
#include "core/held_out.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace vaelab {

KeptImages images_to_keep(long long train, long long test, long long max_images) {
  const long long all = train + test;
  if (max_images <= 0 || all <= max_images) return {train, test};
  if (max_images < 2 && test > 0)
    throw Error("a subset of " + std::to_string(max_images) +
                " image cannot hold both training and test images; ask for at least 2 (--max-images)");
  const long long kept_test = std::clamp(std::llround(double(max_images) * double(test) / double(all)),
                                         test > 0 ? 1LL : 0LL, max_images - 1);
  return {max_images - kept_test, kept_test};
}

namespace {

void keep_first(ImageSet& set, long long keep) {
  if (keep >= set.count) return;
  set.count = static_cast<int>(keep);
  set.pixels.resize(static_cast<std::size_t>(keep) * static_cast<std::size_t>(set.values_per_image()));
  set.pixels.shrink_to_fit();
  if (set.has_labels()) set.labels.resize(static_cast<std::size_t>(keep));
}

}  // namespace

void keep_first_images(Dataset& d, long long max_images, const std::string& what) {
  const long long all = static_cast<long long>(d.train.count) + d.test.count;
  const KeptImages keep = images_to_keep(d.train.count, d.test.count, max_images);
  keep_first(d.train, keep.train);
  keep_first(d.test, keep.test);
  if (keep.train + keep.test < all)
    d.notes.push_back(what + ": " + std::to_string(keep.train + keep.test) + " of its " + std::to_string(all) +
                      " images are used (--max-images " + std::to_string(max_images) + ")");
}

long long held_out_count(long long count, double fraction, const std::string& what) {
  if (count < 2)
    throw Error(what + ": " + std::to_string(count) +
                " image cannot be split into training and test images; at least 2 are needed");
  return std::clamp(std::llround(double(count) * fraction), 1LL, count - 1);
}

ImageSet split_off_last(ImageSet& all, long long test_count) {
  const long long train_count = all.count - test_count;
  const std::size_t per_image = static_cast<std::size_t>(all.values_per_image());
  const std::size_t cut = static_cast<std::size_t>(train_count) * per_image;
  ImageSet test;
  test.count = static_cast<int>(test_count);
  test.channels = all.channels;
  test.height = all.height;
  test.width = all.width;
  test.pixels.assign(all.pixels.begin() + static_cast<std::ptrdiff_t>(cut), all.pixels.end());
  all.pixels.resize(cut);
  all.pixels.shrink_to_fit();
  if (all.has_labels()) {
    test.labels.assign(all.labels.begin() + static_cast<std::ptrdiff_t>(train_count), all.labels.end());
    all.labels.resize(static_cast<std::size_t>(train_count));
  }
  all.count = static_cast<int>(train_count);
  return test;
}

std::vector<std::string> numbered_class_names(std::initializer_list<const ImageSet*> sets) {
  int max_label = -1;
  for (const ImageSet* set : sets)
    for (std::uint8_t label : set->labels) max_label = std::max(max_label, int(label));
  std::vector<std::string> names;
  for (int v = 0; v <= max_label; ++v) names.push_back(std::to_string(v));
  return names;
}

}  // namespace vaelab
