// Shaping a data set read from arrays (NumPy, CIFAR, a single IDX file): how many images a
// --max-images cap keeps, a held-out test split for data that has none, and numbered class names.
// Not a reader, and not the image folder's split (that one hashes file names so files can be added).
#pragma once
#include <initializer_list>
#include <string>
#include <vector>

#include "core/data.hpp"

namespace vaelab {

struct KeptImages {
  long long train = 0;
  long long test = 0;
};

// The first images of each split that a cap of `max_images` keeps (0: no cap, all of them). Over
// the cap, the splits keep their proportions: the test split keeps round(max_images · test / all),
// the training split the rest, each at least 1 when it had any (a cap of 1 with a test split is
// refused: vaelab::Error).
KeptImages images_to_keep(long long train, long long test, long long max_images);

// Keeps the first images of each split of an already-loaded data set as images_to_keep says, and
// notes it (naming `what`) when images were dropped.
void keep_first_images(Dataset& d, long long max_images, const std::string& what);

// Images held out of `count` when the data has no test split: round(count · fraction), at least 1
// and at most count − 1. Throws vaelab::Error naming `what` when count < 2.
long long held_out_count(long long count, double fraction, const std::string& what);

// Moves the last `test_count` images (and their labels) of `all` into a new set, the test split,
// as Keras's validation_split does; `all` keeps the first ones.
ImageSet split_off_last(ImageSet& all, long long test_count);

// "0", "1", … up to the largest label of the sets: the class names of data that names no classes.
// Empty when no set has labels.
std::vector<std::string> numbered_class_names(std::initializer_list<const ImageSet*> sets);

}  // namespace vaelab
