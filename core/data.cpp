// IDX (MNIST-layout) reading through zlib, which handles gzipped and raw files alike, the
// data-folder loader, and the per-batch byte → float conversion with optional binarization.
// Not a general image loader: unsigned-byte IDX only, and every header is checked before allocating.
#include "core/data.hpp"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "core/error.hpp"
#include "core/regular_file.hpp"
#include "core/rng.hpp"

namespace vaelab {

namespace {

// An open IDX file; closes itself so every error path can simply throw.
class GzFile {
 public:
  // Refuses what is not a regular file before zlib reads it (a FIFO would block, a device never ends).
  GzFile(const std::filesystem::path& file, const CancelFlag* cancel) : path_(file.string()), cancel_(cancel) {
    RegularFile in(file, "an IDX file");
    const int fd = in.release();
    errno = 0;
    f_ = gzdopen(fd, "rb");
    if (!f_) {
      const int err = errno;
      ::close(fd);
      fail(std::string("cannot open: ") + (err ? std::strerror(err) : "out of memory"));
    }
    gzbuffer(f_, 1 << 17);
  }
  ~GzFile() {
    if (f_) gzclose(f_);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to n bytes; returns how many were read (< n only at the end of the data).
  std::size_t read(void* dst, std::size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    std::size_t got = 0;
    while (got < n) {
      if (cancel_ && cancel_->load(std::memory_order_relaxed)) fail("reading was cancelled");
      // gzread takes an unsigned length and returns an int: stay well below INT_MAX.
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 24));
      const int r = gzread(f_, out + got, chunk);
      if (r < 0) {
        int errnum = 0;
        const char* msg = gzerror(f_, &errnum);
        if (errnum == Z_ERRNO) fail(std::string("cannot read: ") + std::strerror(errno));
        fail("the gzip data is damaged: " + zlib_message(msg));
      }
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

  // Why the data ended early, when zlib knows (a gzip stream cut short), else "".
  std::string end_reason() {
    int errnum = 0;
    const char* msg = gzerror(f_, &errnum);
    if (errnum != Z_OK && errnum != Z_STREAM_END && msg && *msg) return " (gzip: " + zlib_message(msg) + ")";
    return {};
  }

  // zlib prefixes its messages with the path, which our messages already start with.
  std::string zlib_message(const char* msg) const {
    std::string m = msg ? msg : "unknown error";
    if (m.rfind(path_ + ": ", 0) == 0) m.erase(0, path_.size() + 2);
    return m;
  }

  [[noreturn]] void fail(const std::string& what) const { throw Error(path_ + ": " + what); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const CancelFlag* cancel_;
  gzFile f_ = nullptr;
};

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

const char* idx_type_name(unsigned t) {
  switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
  }
}

struct IdxHeader {
  std::vector<std::uint32_t> dims;
  std::uint64_t payload = 0;  // bytes the header promises
};

// Reads and checks the magic and the dimensions; `allowed` lists the accepted dimension counts,
// `what` describes them for the message. Nothing is allocated from header values here.
IdxHeader read_header(GzFile& f, std::initializer_list<unsigned> allowed, const char* what,
                      const char* element, const char* count_name) {
  unsigned char magic[4];
  const std::size_t got = f.read(magic, 4);
  if (got == 0) f.fail("file is empty, expected an IDX header" + f.end_reason());
  if (got < 4) f.fail("file is too short for an IDX header (" + std::to_string(got) + " bytes)" + f.end_reason());
  if (magic[0] != 0 || magic[1] != 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "not an IDX file: it starts with %02X %02X, expected 00 00", magic[0], magic[1]);
    f.fail(buf);
  }
  if (magic[2] != 0x08) {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "IDX element type 0x%02X (%s) is not supported; vaelab reads unsigned bytes (type 0x08)",
                  magic[2], idx_type_name(magic[2]));
    f.fail(buf);
  }
  const unsigned ndims = magic[3];
  if (std::find(allowed.begin(), allowed.end(), ndims) == allowed.end())
    f.fail("IDX header has " + std::to_string(ndims) + " dimensions, expected " + what);

  IdxHeader h;
  unsigned char raw[4 * 255];
  const std::size_t want = 4u * ndims;
  const std::size_t have = f.read(raw, want);
  if (have < want)
    f.fail("file is truncated: the IDX header needs " + std::to_string(want) + " bytes of dimensions, found " +
           std::to_string(have) + f.end_reason());
  std::uint64_t product = 1;
  bool too_big = false;
  for (unsigned i = 0; i < ndims; ++i) {
    const std::uint32_t d = be32(raw + 4 * i);
    h.dims.push_back(d);
    if (d == 0 && i == 0) f.fail(std::string("IDX header says the file holds 0 ") + count_name + "; expected at least 1");
    if (d == 0) f.fail("IDX dimension " + std::to_string(i + 1) + " is 0; every dimension must be at least 1");
    if (d > static_cast<std::uint32_t>(INT_MAX))
      f.fail("IDX dimension " + std::to_string(i + 1) + " is " + std::to_string(d) + ", more than vaelab allows (" +
             std::to_string(INT_MAX) + ")");
    // Stop multiplying once past the cap: cap (2^31) × one dimension (< 2^31) cannot overflow 64 bits.
    if (!too_big) {
      product *= d;
      too_big = product > kMaxIdxBytes;
    }
  }
  if (too_big) {
    std::string dims;
    for (std::size_t i = 0; i < h.dims.size(); ++i) {
      if (i) dims += " × ";
      dims += std::to_string(h.dims[i]);
    }
    f.fail("IDX header promises " + dims + " " + element + " bytes, more than the " + std::to_string(kMaxIdxBytes) +
           " vaelab will read");
  }
  h.payload = product;
  return h;
}

// Reads exactly h.payload bytes and checks nothing follows. Grows the buffer as data arrives,
// so a lying header on a short file costs no more memory than the file holds.
std::vector<std::uint8_t> read_payload(GzFile& f, const IdxHeader& h, const char* element) {
  std::vector<std::uint8_t> out;
  constexpr std::size_t kChunk = std::size_t{16} << 20;
  std::size_t got = 0;
  while (got < h.payload) {
    const std::size_t want = std::min<std::size_t>(kChunk, h.payload - got);
    out.resize(got + want);
    const std::size_t r = f.read(out.data() + got, want);
    got += r;
    if (r < want) break;
  }
  if (got < h.payload)
    f.fail("file is truncated: header promises " + std::to_string(h.payload) + " " + element + " bytes, found " +
           std::to_string(got) + f.end_reason());
  out.shrink_to_fit();

  // Count what follows (bounded, so a gzip bomb appended to a file cannot keep us reading forever).
  unsigned char buf[65536];
  std::uint64_t extra = 0;
  constexpr std::uint64_t kCountLimit = std::uint64_t{64} << 20;
  while (extra < kCountLimit) {
    const std::size_t r = f.read(buf, sizeof buf);
    if (r == 0) break;
    extra += r;
  }
  if (extra > 0)
    f.fail("file has " + std::string(extra >= kCountLimit ? "at least " : "") + std::to_string(extra) +
           " trailing bytes after the " + std::to_string(h.payload) + " " + element + " bytes the header promises");
  // zlib reports a gzip stream cut inside its trailer only as a soft error once the data has ended.
  const std::string reason = f.end_reason();
  if (!reason.empty()) f.fail("file is truncated: the gzip stream ends early" + reason);
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// First existing file among the spellings of one MNIST file, or empty.
std::filesystem::path find_file(const std::filesystem::path& folder, const std::vector<std::string>& names) {
  std::error_code ec;
  for (const auto& n : names) {
    for (const char* ext : {"", ".gz"}) {
      auto p = folder / (n + ext);
      if (std::filesystem::is_regular_file(p, ec)) return p;
    }
  }
  return {};
}

std::vector<std::string> spellings(const std::string& prefix, const std::string& kind, int idx_dims) {
  // "train-images-idx3-ubyte" (the published name) and "train-images.idx3-ubyte" (a common rename).
  const std::string tail = "idx" + std::to_string(idx_dims) + "-ubyte";
  return {prefix + "-" + kind + "-" + tail, prefix + "-" + kind + "." + tail};
}

std::string folder_name(const std::filesystem::path& folder) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::weakly_canonical(folder, ec);
  if (ec) p = folder.lexically_normal();
  while (p.has_relative_path() && p.filename().empty()) p = p.parent_path();  // "a/b/" → "a/b"
  return p.filename().string();
}

const char* const kFashionNames[kClassCount] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

}  // namespace

ImageSet read_idx_images(const std::filesystem::path& file, const CancelFlag* cancel) {
  GzFile f(file, cancel);
  const IdxHeader h =
      read_header(f, {2, 3}, "3 (count, height, width) or 2 (count, pixels) for images", "pixel", "images");
  if (h.payload / h.dims[0] > static_cast<std::uint64_t>(INT_MAX))
    f.fail("images of " + std::to_string(h.payload / h.dims[0]) + " pixels are too large for vaelab");
  ImageSet set;
  set.count = static_cast<int>(h.dims[0]);
  if (h.dims.size() == 3) {
    set.height = static_cast<int>(h.dims[1]);
    set.width = static_cast<int>(h.dims[2]);
  } else {
    set.height = 1;
    set.width = static_cast<int>(h.dims[1]);
  }
  set.pixels = read_payload(f, h, "pixel");
  return set;
}

namespace {

// The classes the labels number: 0 … max. Fashion-MNIST's ten names for a Fashion-MNIST folder (a
// label of 10 or more is refused there), the numbers otherwise. Beyond ten classes the labels must
// number them densely from 0: a value that leaves most of 0 … max unused (a stray 200 among digits,
// which would make a legend of 201 classes) is refused, naming the file and the image.
std::vector<std::string> class_names_for_labels(
    std::initializer_list<std::pair<const ImageSet*, const std::filesystem::path*>> sets, bool fashion) {
  const int limit = fashion ? kClassCount : 256;
  std::array<bool, 256> used{};
  int max_label = 0;
  for (const auto& [set, file] : sets)
    for (std::size_t i = 0; i < set->labels.size(); ++i) {
      const int label = set->labels[i];
      if (label >= limit)
        throw Error(file->string() + ": label " + std::to_string(i) + " is " + std::to_string(label) +
                    "; the classes are 0 to " + std::to_string(limit - 1));
      used[static_cast<std::size_t>(label)] = true;
      max_label = std::max(max_label, label);
    }
  const int in_use = static_cast<int>(std::count(used.begin(), used.end(), true));
  if (max_label >= kClassCount && max_label + 1 > 2 * in_use)
    for (const auto& [set, file] : sets)
      for (std::size_t i = 0; i < set->labels.size(); ++i)
        if (set->labels[i] == max_label)
          throw Error(file->string() + ": label " + std::to_string(i) + " is " + std::to_string(max_label) + ", but only " +
                      std::to_string(in_use) + " different labels appear: labels must number the classes from 0");
  std::vector<std::string> names;
  for (int v = 0; v <= max_label; ++v) names.push_back(fashion ? kFashionNames[v] : std::to_string(v));
  return names;
}

}  // namespace

std::vector<std::uint8_t> read_idx_labels(const std::filesystem::path& file, const CancelFlag* cancel) {
  GzFile f(file, cancel);
  const IdxHeader h = read_header(f, {1}, "1 (count) for labels", "label", "labels");
  return read_payload(f, h, "label");
}

Dataset load_idx_folder(const std::filesystem::path& folder, const CancelFlag* cancel) {
  std::error_code ec;
  if (!std::filesystem::exists(folder, ec)) throw Error("data folder '" + folder.string() + "' does not exist");
  if (!std::filesystem::is_directory(folder, ec))
    throw Error("data folder '" + folder.string() + "' is not a folder");

  auto require = [&](const char* prefix, const char* what) {
    auto names = spellings(prefix, "images", 3);
    auto p = find_file(folder, names);
    if (p.empty())
      throw Error("data folder '" + folder.string() + "' has no " + what + ": expected " + names[0] + " or " +
                  names[0] + ".gz");
    return p;
  };
  const auto train_images = require("train", "training images");
  const auto test_images = require("t10k", "test images");
  const auto train_labels = find_file(folder, spellings("train", "labels", 1));
  const auto test_labels = find_file(folder, spellings("t10k", "labels", 1));

  Dataset d;
  d.name = folder_name(folder);
  d.train = read_idx_images(train_images, cancel);
  d.test = read_idx_images(test_images, cancel);
  if (d.train.height != d.test.height || d.train.width != d.test.width)
    throw Error(test_images.string() + ": images are " + std::to_string(d.test.height) + "×" +
                std::to_string(d.test.width) + " but the training images (" + train_images.filename().string() +
                ") are " + std::to_string(d.train.height) + "×" + std::to_string(d.train.width) +
                "; both sets must have the same size");

  auto attach = [&](ImageSet& set, const std::filesystem::path& labels, const std::filesystem::path& images) {
    if (labels.empty()) return;
    auto l = read_idx_labels(labels, cancel);
    if (l.size() != static_cast<std::size_t>(set.count))
      throw Error(labels.string() + ": has " + std::to_string(l.size()) + " labels but " +
                  images.filename().string() + " has " + std::to_string(set.count) +
                  " images; expected one label per image");
    set.labels = std::move(l);
  };
  attach(d.train, train_labels, train_images);
  attach(d.test, test_labels, test_images);

  if (d.train.has_labels() || d.test.has_labels()) {
    const bool fashion = lower(d.name).find("fashion") != std::string::npos;
    d.class_names = class_names_for_labels({{&d.train, &train_labels}, {&d.test, &test_labels}}, fashion);
  }
  return d;
}

std::filesystem::path default_data_folder() { return "/usr/share/datasets/fashion-mnist"; }

void gather_batch(const ImageSet& set, const int* idx, int n, Binarize mode, Rng* rng,
                  Eigen::Ref<Eigen::MatrixXf> out) {
  const int D = set.values_per_image();
  if (out.rows() != D || out.cols() < n)
    throw Error("gather_batch: output is " + std::to_string(out.rows()) + "×" + std::to_string(out.cols()) +
                ", expected " + std::to_string(D) + "×" + std::to_string(n));
  if (mode == Binarize::Dynamic && !rng) throw Error("gather_batch: dynamic binarization needs a random generator");
  // The images are scattered over the whole set, so each one starts with a wait on memory that
  // the hardware prefetcher only cuts after a few lines; asking for every line of the batch first
  // lets those waits overlap.
  for (int j = 0; j < n; ++j) {
    if (idx[j] < 0 || idx[j] >= set.count)
      throw Error("gather_batch: image index " + std::to_string(idx[j]) + " is outside 0.." +
                  std::to_string(set.count - 1));
    const std::uint8_t* src = set.image(idx[j]);
    for (int i = 0; i < D; i += 64) __builtin_prefetch(src + i, 0, 2);
    __builtin_prefetch(src + D - 1, 0, 2);
  }
  for (int j = 0; j < n; ++j) {
    const std::uint8_t* src = set.image(idx[j]);
    float* dst = out.col(j).data();
    // v / 255 exactly (as PyTorch's ToTensor), as a loop the compiler vectorises (a table lookup
    // per pixel would be a scalar gather).
    for (int i = 0; i < D; ++i) dst[i] = static_cast<float>(src[i]) / 255.0f;
    if (mode == Binarize::Dynamic)
      for (int i = 0; i < D; ++i) dst[i] = rng->uniform() < dst[i] ? 1.0f : 0.0f;
  }
}

void binarize_static(ImageSet& set, std::uint64_t seed) {
  Rng rng(seed);
  for (auto& p : set.pixels) p = rng.uniform() < static_cast<float>(p) / 255.0f ? 255 : 0;
}

}  // namespace vaelab
