// .npy headers and arrays, and .npz archives through libzip. Every header is checked against the
// bytes its file (or archive member) holds, and the data set against the memory limit, before
// anything large is allocated; the data is then read in chunks of images.
// Not a NumPy implementation: no pickles, no structured or Fortran-ordered arrays.
#include "core/numpy_data.hpp"

#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "core/error.hpp"
#include "core/held_out.hpp"

namespace vaelab {

namespace {

namespace fs = std::filesystem;

// A .npy header longer than this is refused (NumPy itself refuses more than 10,000 bytes by default).
constexpr std::uint64_t kMaxHeaderBytes = 1 << 16;
// Larger sides are refused, as for image files (an image bomb).
constexpr std::uint64_t kMaxSide = 16384;
// Bytes of source data read at a time: between chunks the cancel flag and the progress are updated.
constexpr std::uint64_t kChunkBytes = std::uint64_t{4} << 20;

// ---- the header ----

// The dictionary of a .npy header: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
class HeaderDict {
 public:
  HeaderDict(std::string_view text, const std::string& name) : s_(text), name_(name) {}

  void parse(NpyHeader& h) {
    bool has_descr = false, has_order = false, has_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = quoted();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (peek() == '[') fail("the dtype is a structured (record) type; vaelab reads plain arrays");
        h.descr = quoted();
        has_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        has_order = true;
      } else if (key == "shape") {
        h.shape = tuple();
        has_shape = true;
      } else {
        fail("the header has an unknown key '" + key + "'");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail("the header dictionary is malformed at byte " + std::to_string(pos_));
    }
    if (!has_descr || !has_order || !has_shape)
      fail("the header lacks '" + std::string(!has_descr ? "descr" : !has_order ? "fortran_order" : "shape") + "'");
  }

 private:
  [[noreturn]] void fail(const std::string& why) const { throw Error(name_ + ": not a readable .npy header: " + why); }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "' at byte " + std::to_string(pos_));
    ++pos_;
  }
  std::string quoted() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string at byte " + std::to_string(pos_));
    const std::size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) fail("a string is not closed");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    for (const auto& [word, value] : {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}})
      if (s_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    fail("fortran_order is neither True nor False");
  }
  std::vector<std::uint64_t> tuple() {
    expect('(');
    std::vector<std::uint64_t> dims;
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') fail("the shape holds something other than whole numbers");
      std::uint64_t d = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (d > (std::uint64_t{1} << 40)) fail("a dimension of the shape is too large");
        d = d * 10 + static_cast<std::uint64_t>(peek() - '0');
        ++pos_;
      }
      if (peek() == 'L') ++pos_;  // Python 2 wrote long integers as 60000L
      dims.push_back(d);
      if (dims.size() > 32) fail("the shape has more than 32 axes");
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != ')') fail("the shape is malformed at byte " + std::to_string(pos_));
    }
    ++pos_;
    return dims;
  }

  std::string_view s_;
  std::string name_;
  std::size_t pos_ = 0;
};

void read_descr(NpyHeader& h, const std::string& name) {
  const std::string& d = h.descr;
  std::size_t i = 0;
  if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) {
    h.big_endian = d[0] == '>';
    i = 1;
  }
  if (i >= d.size()) throw Error(name + ": the dtype '" + d + "' is not understood");
  h.kind = d[i];
  int size = 0;
  for (std::size_t k = i + 1; k < d.size(); ++k) {
    if (d[k] < '0' || d[k] > '9' || size > 1000) throw Error(name + ": the dtype '" + d + "' is not understood");
    size = size * 10 + (d[k] - '0');
  }
  h.item_size = size;
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// ---- byte sources: a file, or a member of a zip archive ----

class ByteSource {
 public:
  ByteSource(std::string name, std::uint64_t size, const CancelFlag* cancel)
      : name_(std::move(name)), size_(size), cancel_(cancel) {}
  virtual ~ByteSource() = default;
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // Reads up to n bytes; fewer only at the end of the data.
  std::size_t read(void* dst, std::size_t n) {
    if (cancel_ && cancel_->load(std::memory_order_relaxed)) throw Error(name_ + ": reading was cancelled");
    const std::size_t got = read_some(dst, n);
    consumed_ += got;
    return got;
  }
  void read_exactly(void* dst, std::size_t n, const std::string& what) {
    const std::size_t got = read(dst, n);
    if (got < n)
      throw Error(name_ + ": the file is truncated: " + what + " needs " + std::to_string(n) + " bytes, found " +
                  std::to_string(got));
  }
  // Bytes the file (or member) says it holds beyond what has been read.
  std::uint64_t remaining() const { return size_ > consumed_ ? size_ - consumed_ : 0; }
  const std::string& name() const { return name_; }

 protected:
  virtual std::size_t read_some(void* dst, std::size_t n) = 0;

 private:
  std::string name_;
  std::uint64_t size_;
  const CancelFlag* cancel_;
  std::uint64_t consumed_ = 0;
};

class FileSource final : public ByteSource {
 public:
  FileSource(RegularFile& file, const CancelFlag* cancel) : ByteSource(file.name(), file.size(), cancel), file_(file) {}

 private:
  std::size_t read_some(void* dst, std::size_t n) override { return file_.read(dst, n); }
  RegularFile& file_;
};

// An open zip archive; closes itself.
class ZipArchive {
 public:
  explicit ZipArchive(const fs::path& file) : name_(file.string()) {
    RegularFile in(file, "a .npz archive");  // refuses a FIFO or a device before libzip opens it
    const int fd = in.release();
    int error = 0;
    zip_ = zip_fdopen(fd, ZIP_RDONLY, &error);
    if (!zip_) {
      ::close(fd);
      zip_error_t ze;
      zip_error_init_with_code(&ze, error);
      const std::string why = zip_error_strerror(&ze);
      zip_error_fini(&ze);
      throw Error(name_ + ": not a readable .npz (zip) archive: " + why);
    }
  }
  ~ZipArchive() {
    if (zip_) zip_discard(zip_);
  }
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;
  zip_t* get() const { return zip_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  zip_t* zip_ = nullptr;
};

class ZipMemberSource final : public ByteSource {
 public:
  ZipMemberSource(const ZipArchive& archive, zip_uint64_t index, const std::string& member, std::uint64_t size,
                  const CancelFlag* cancel)
      : ByteSource(archive.name() + " (member " + member + ")", size, cancel) {
    file_ = zip_fopen_index(archive.get(), index, 0);
    if (!file_) throw Error(name() + ": cannot open: " + zip_strerror(archive.get()));
  }
  ~ZipMemberSource() override { zip_fclose(file_); }

 private:
  std::size_t read_some(void* dst, std::size_t n) override {
    auto* out = static_cast<std::uint8_t*>(dst);
    std::size_t got = 0;
    while (got < n) {
      const zip_int64_t r = zip_fread(file_, out + got, n - got);
      if (r < 0) throw Error(name() + ": the archive member is damaged: " + zip_file_strerror(file_));
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }
  zip_file_t* file_ = nullptr;
};

// Reads the header's bytes (no more) and parses them; what cannot be a header is refused by
// parse_npy_header, which sees the bytes read so far.
NpyHeader read_header(ByteSource& src) {
  std::vector<std::uint8_t> bytes(12);
  const std::size_t got = src.read(bytes.data(), 10);
  const int major = bytes[6];
  if (got < 10 || major < 1 || major > 3) return parse_npy_header(bytes.data(), got, src.name());
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  if (length_bytes == 4) src.read_exactly(bytes.data() + 10, 2, "the header length");
  std::uint64_t length = 0;
  for (std::size_t i = 0; i < length_bytes; ++i) length |= std::uint64_t{bytes[8 + i]} << (8 * i);
  if (length > kMaxHeaderBytes) return parse_npy_header(bytes.data(), 8 + length_bytes, src.name());
  bytes.resize(8 + length_bytes + length);
  src.read_exactly(bytes.data() + 8 + length_bytes, length, "the header");
  return parse_npy_header(bytes.data(), bytes.size(), src.name());
}

// The header promises more bytes than there are, or fewer: refused before anything is allocated.
void check_payload(const ByteSource& src, const NpyHeader& h) {
  if (h.payload > src.remaining())
    throw Error(src.name() + ": the header promises " + shape_text(h.shape) + " of " + h.descr + ", " +
                std::to_string(h.payload) + " bytes, but the file holds only " + std::to_string(src.remaining()) +
                " after the header (truncated?)");
  if (h.payload < src.remaining())
    throw Error(src.name() + ": the file holds " + std::to_string(src.remaining() - h.payload) +
                " bytes more than the header's " + shape_text(h.shape) + " of " + h.descr + " (damaged?)");
}

// ---- images ----

struct ImageLayout {
  long long count = 0;
  int channels = 1;  // in the file: 1, 3 or 4
  int height = 0;
  int width = 0;
  bool channels_last = false;
  int out_channels() const { return channels == 4 ? 3 : channels; }
};

ImageLayout image_layout(const NpyHeader& h, const std::string& name) {
  if (h.fortran_order)
    throw Error(name + ": the array is in Fortran order; vaelab reads C order (save np.ascontiguousarray(x))");
  const bool byte = h.kind == 'u' && h.item_size == 1;
  const bool float32 = h.kind == 'f' && h.item_size == 4 && !h.big_endian;
  if (!byte && !float32)
    throw Error(name + ": images of dtype '" + h.descr +
                "' are not supported; vaelab reads uint8 (0..255) or little-endian float32 (0..1), e.g. "
                "x.astype(np.float32)");
  const auto& s = h.shape;
  ImageLayout l;
  if (s.size() == 3) {
    l.channels = 1;
    l.height = static_cast<int>(std::min<std::uint64_t>(s[1], kMaxSide + 1));
    l.width = static_cast<int>(std::min<std::uint64_t>(s[2], kMaxSide + 1));
  } else if (s.size() == 4 && (s[3] == 1 || s[3] == 3 || s[3] == 4)) {
    l.channels_last = true;
    l.channels = static_cast<int>(s[3]);
    l.height = static_cast<int>(std::min<std::uint64_t>(s[1], kMaxSide + 1));
    l.width = static_cast<int>(std::min<std::uint64_t>(s[2], kMaxSide + 1));
  } else if (s.size() == 4 && (s[1] == 1 || s[1] == 3 || s[1] == 4)) {
    l.channels = static_cast<int>(s[1]);
    l.height = static_cast<int>(std::min<std::uint64_t>(s[2], kMaxSide + 1));
    l.width = static_cast<int>(std::min<std::uint64_t>(s[3], kMaxSide + 1));
  } else {
    throw Error(name + ": an array of shape " + shape_text(s) +
                " is not images; vaelab reads N×H×W, N×H×W×C or N×C×H×W with C = 1, 3 or 4");
  }
  l.count = static_cast<long long>(s[0]);
  if (l.count == 0) throw Error(name + ": the array " + shape_text(s) + " holds no images");
  if (l.count > INT_MAX)
    throw Error(name + ": the array " + shape_text(s) + " holds more images than vaelab reads (" +
                std::to_string(INT_MAX) + ")");
  if (l.height == 0 || l.width == 0) throw Error(name + ": the images of " + shape_text(s) + " are empty");
  if (l.height > int(kMaxSide) || l.width > int(kMaxSide))
    throw Error(name + ": images of " + shape_text(s) + " are larger than " + std::to_string(kMaxSide) +
                " pixels on a side");
  return l;
}

std::string number_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
  return buf;
}

std::uint8_t composite(std::uint8_t value, std::uint8_t alpha, int background) {
  return static_cast<std::uint8_t>((int(value) * alpha + background * (255 - int(alpha)) + 127) / 255);
}

// Reads the first `keep` images of an array whose header (h, l) has been read from src; the rest
// of the data is left unread.
ImageSet read_images(ByteSource& src, const NpyHeader& h, const ImageLayout& l, long long keep,
                     const LoadOptions& options, LoadProgress* progress) {
  ImageSet set;
  set.count = static_cast<int>(keep);
  set.channels = l.out_channels();
  set.height = l.height;
  set.width = l.width;
  const std::size_t plane = static_cast<std::size_t>(l.height) * static_cast<std::size_t>(l.width);
  const std::size_t values = plane * static_cast<std::size_t>(l.channels);  // per image in the file
  const std::size_t source_bytes = values * static_cast<std::size_t>(h.item_size);
  const std::size_t out_values = plane * static_cast<std::size_t>(set.channels);
  set.pixels.resize(static_cast<std::size_t>(keep) * out_values);
  const int background = options.background == Background::White ? 255 : 0;

  const std::size_t chunk_images = std::max<std::size_t>(1, kChunkBytes / source_bytes);
  std::vector<std::uint8_t> chunk(std::min<std::size_t>(chunk_images, static_cast<std::size_t>(keep)) * source_bytes);
  std::vector<std::uint8_t> bytes(values);  // one image as bytes, in the file's order
  for (long long first = 0; first < keep;) {
    const long long n = std::min<long long>(static_cast<long long>(chunk_images), keep - first);
    src.read_exactly(chunk.data(), static_cast<std::size_t>(n) * source_bytes,
                     "image " + std::to_string(first));
    for (long long i = 0; i < n; ++i) {
      const std::uint8_t* in = chunk.data() + static_cast<std::size_t>(i) * source_bytes;
      if (h.kind == 'u') {
        std::memcpy(bytes.data(), in, values);
      } else {
        for (std::size_t k = 0; k < values; ++k) {
          float v;
          std::memcpy(&v, in + 4 * k, 4);
          if (!(v >= 0.0f && v <= 1.0f))
            throw Error(src.name() + ": float32 images must hold values in [0, 1], but element " +
                        std::to_string(static_cast<std::uint64_t>(first + i) * values + k) + " (image " +
                        std::to_string(first + i) + ") is " + number_text(v));
          bytes[k] = static_cast<std::uint8_t>(v * 255.0f + 0.5f);
        }
      }
      std::uint8_t* out = set.pixels.data() + static_cast<std::size_t>(first + i) * out_values;
      // value of channel c at pixel p, in the file's order
      auto at = [&](int c, std::size_t p) {
        return l.channels_last ? bytes[p * static_cast<std::size_t>(l.channels) + static_cast<std::size_t>(c)]
                               : bytes[static_cast<std::size_t>(c) * plane + p];
      };
      for (int c = 0; c < set.channels; ++c)
        for (std::size_t p = 0; p < plane; ++p)
          out[static_cast<std::size_t>(c) * plane + p] = l.channels == 4 ? composite(at(c, p), at(3, p), background) : at(c, p);
    }
    first += n;
    if (progress) progress->done += n;
  }
  return set;
}

// ---- labels ----

// Reads `keep` of `count` labels (any integer dtype, values 0..255, shape N or N×1).
std::vector<std::uint8_t> read_labels(ByteSource& src, const NpyHeader& h, long long count, long long keep,
                                      const std::string& images_name) {
  const bool integer = (h.kind == 'u' || h.kind == 'i') &&
                       (h.item_size == 1 || h.item_size == 2 || h.item_size == 4 || h.item_size == 8);
  if (!integer)
    throw Error(src.name() + ": labels of dtype '" + h.descr + "' are not supported; vaelab reads integer labels");
  if (!(h.shape.size() == 1 || (h.shape.size() == 2 && h.shape[1] == 1)))
    throw Error(src.name() + ": labels of shape " + shape_text(h.shape) + " are not one per image; expected (N,) or (N, 1)");
  if (static_cast<long long>(h.shape[0]) != count)
    throw Error(src.name() + ": has " + std::to_string(h.shape[0]) + " labels but " + images_name + " has " +
                std::to_string(count) + " images; expected one label per image");
  check_payload(src, h);
  std::vector<std::uint8_t> labels(static_cast<std::size_t>(keep));
  const std::size_t item = static_cast<std::size_t>(h.item_size);
  std::vector<std::uint8_t> chunk(std::size_t{1} << 16);
  const std::size_t per_chunk = chunk.size() / item;
  for (std::size_t first = 0; first < labels.size();) {
    const std::size_t n = std::min(per_chunk, labels.size() - first);
    src.read_exactly(chunk.data(), n * item, "label " + std::to_string(first));
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint8_t* p = chunk.data() + i * item;
      std::uint64_t raw = 0;
      for (std::size_t b = 0; b < item; ++b) raw |= std::uint64_t{p[h.big_endian ? item - 1 - b : b]} << (8 * b);
      const bool negative = h.kind == 'i' && (raw >> (8 * item - 1)) != 0;
      if (negative || raw > 255) {
        const long long shown = negative ? static_cast<long long>(raw | (item < 8 ? ~std::uint64_t{0} << (8 * item) : 0))
                                         : static_cast<long long>(std::min<std::uint64_t>(raw, LLONG_MAX));
        throw Error(src.name() + ": label " + std::to_string(first + i) + " is " + std::to_string(shown) +
                    "; labels must be 0 to 255");
      }
      labels[first + i] = static_cast<std::uint8_t>(raw);
    }
    first += n;
  }
  return labels;
}

std::string stem_of(const fs::path& file) { return file.stem().string(); }

// Holds out the last images when the data has no test split, and says so in a note.
void hold_out(Dataset& d, const LoadOptions& options, const std::string& name) {
  const long long test = held_out_count(d.train.count, options.test_fraction, name);
  d.test = split_off_last(d.train, test);
  d.notes.push_back(name + " has no test split: its last " + std::to_string(test) + " of " +
                    std::to_string(d.train.count + test) + " images are held out for testing");
}

void note_cap(Dataset& d, long long all, const LoadOptions& options, const std::string& name) {
  const long long kept = static_cast<long long>(d.train.count) + d.test.count;
  if (kept < all)
    d.notes.push_back(name + ": " + std::to_string(kept) + " of its " + std::to_string(all) +
                      " images are used (--max-images " + std::to_string(options.max_images) + ")");
}

}  // namespace

NpyHeader parse_npy_header(const std::uint8_t* bytes, std::size_t size, const std::string& name) {
  static constexpr std::uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(bytes, kMagic, 6) != 0)
    throw Error(name + ": not a .npy file (it does not start with \\x93NUMPY)");
  const int major = bytes[6];
  if (major < 1 || major > 3)
    throw Error(name + ": .npy format version " + std::to_string(major) + "." + std::to_string(bytes[7]) +
                " is not supported; vaelab reads 1.0, 2.0 and 3.0");
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  if (size < 8 + length_bytes) throw Error(name + ": the .npy header is cut short");
  std::uint64_t length = 0;
  for (std::size_t i = 0; i < length_bytes; ++i) length |= std::uint64_t{bytes[8 + i]} << (8 * i);
  if (length > kMaxHeaderBytes)
    throw Error(name + ": the .npy header says it is " + std::to_string(length) + " bytes long, more than the " +
                std::to_string(kMaxHeaderBytes) + " vaelab reads");
  if (8 + length_bytes + length > size)
    throw Error(name + ": the .npy header says it is " + std::to_string(length) + " bytes long, but " +
                std::to_string(size - 8 - length_bytes) + " follow");
  NpyHeader h;
  h.header_bytes = 8 + length_bytes + length;
  HeaderDict(std::string_view(reinterpret_cast<const char*>(bytes) + 8 + length_bytes, length), name).parse(h);
  read_descr(h, name);
  if (h.kind == 'O')
    throw Error(name + ": the array holds Python objects (a pickle), which vaelab does not read; save numbers");
  if (h.item_size <= 0) throw Error(name + ": the dtype '" + h.descr + "' has no size");
  // Bytes the data takes, refused past what any file could hold (no overflow: each factor ≤ 2^40).
  constexpr std::uint64_t kMaxPayload = std::uint64_t{1} << 50;
  std::uint64_t payload = static_cast<std::uint64_t>(h.item_size);
  for (std::uint64_t d : h.shape) {
    if (d != 0 && payload > kMaxPayload / d)
      throw Error(name + ": the header promises an array of " + shape_text(h.shape) + ", more than any file holds");
    payload *= d;
  }
  h.payload = payload;
  return h;
}

Dataset load_npy(const fs::path& file, const LoadOptions& options, const CancelFlag* cancel, LoadProgress* progress) {
  RegularFile in(file, "a .npy file");
  FileSource src(in, cancel);
  const NpyHeader h = read_header(src);
  const ImageLayout l = image_layout(h, src.name());
  check_payload(src, h);
  const long long keep = images_to_keep(l.count, 0, options.max_images).train;
  check_data_memory(keep, l.out_channels(), l.height, l.width, options, src.name());
  if (progress) progress->total += keep;

  Dataset d;
  d.name = stem_of(file);
  d.train = read_images(src, h, l, keep, options, progress);
  note_cap(d, l.count, options, src.name());
  hold_out(d, options, src.name());
  if (l.channels == 4)
    d.notes.push_back(src.name() + ": alpha is composited onto " +
                      (options.background == Background::White ? "white" : "black"));
  return d;
}

namespace {

// A member name that would leave the archive if extracted: absolute, a drive, or a ".." part.
bool leaves_archive(const std::string& member) {
  if (member.empty() || member[0] == '/' || member[0] == '\\') return true;
  if (member.size() >= 2 && member[1] == ':') return true;
  std::size_t start = 0;
  while (start <= member.size()) {
    const std::size_t end = member.find_first_of("/\\", start);
    const std::string part = member.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (part == "..") return true;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return false;
}

struct Member {
  zip_uint64_t index = 0;
  std::string name;
  std::uint64_t size = 0;
};

// The archive's members by array name ("x_train" for "x_train.npy"); refuses unsafe names.
std::map<std::string, Member> list_members(const ZipArchive& archive) {
  const zip_int64_t entries = zip_get_num_entries(archive.get(), 0);
  std::map<std::string, Member> members;
  for (zip_int64_t i = 0; i < entries; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive.get(), static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME))
      throw Error(archive.name() + ": member " + std::to_string(i) + " cannot be read: " + zip_strerror(archive.get()));
    const std::string name = st.name;
    if (leaves_archive(name))
      throw Error(archive.name() + ": the member '" + name +
                  "' has a path outside the archive (absolute, or with '..'); refused");
    if (!(st.valid & ZIP_STAT_SIZE)) throw Error(archive.name() + ": the member '" + name + "' has no size");
    std::string key = name;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    members[key] = Member{static_cast<zip_uint64_t>(i), name, st.size};
  }
  return members;
}

// One array of the archive, open, with its header read.
struct OpenArray {
  std::unique_ptr<ZipMemberSource> source;
  NpyHeader header;
};

std::optional<OpenArray> open_array(const ZipArchive& archive, const std::map<std::string, Member>& members,
                                    const std::string& key, const CancelFlag* cancel) {
  const auto it = members.find(key);
  if (it == members.end()) return std::nullopt;
  OpenArray a;
  a.source = std::make_unique<ZipMemberSource>(archive, it->second.index, it->second.name, it->second.size, cancel);
  a.header = read_header(*a.source);
  return a;
}

}  // namespace

Dataset load_npz(const fs::path& file, const LoadOptions& options, const CancelFlag* cancel, LoadProgress* progress) {
  const ZipArchive archive(file);
  const auto members = list_members(archive);
  const bool keras = members.count("x_train") != 0;
  if (!keras && members.count("x") == 0) {
    std::string names;
    for (const auto& [key, m] : members) names += (names.empty() ? "" : ", ") + m.name;
    throw Error(archive.name() + ": holds no x_train (nor x) array; vaelab reads the Keras layout x_train, y_train, "
                "x_test, y_test. Members: " + (names.empty() ? "none" : names));
  }
  auto x_train = open_array(archive, members, keras ? "x_train" : "x", cancel);
  auto y_train = open_array(archive, members, keras ? "y_train" : "y", cancel);
  auto x_test = keras ? open_array(archive, members, "x_test", cancel) : std::nullopt;
  auto y_test = keras ? open_array(archive, members, "y_test", cancel) : std::nullopt;
  if (y_test && !x_test) throw Error(archive.name() + ": has y_test but no x_test");

  const ImageLayout train_layout = image_layout(x_train->header, x_train->source->name());
  check_payload(*x_train->source, x_train->header);
  ImageLayout test_layout;
  if (x_test) {
    test_layout = image_layout(x_test->header, x_test->source->name());
    check_payload(*x_test->source, x_test->header);
    if (test_layout.out_channels() != train_layout.out_channels() || test_layout.height != train_layout.height ||
        test_layout.width != train_layout.width)
      throw Error(x_test->source->name() + ": images are " + std::to_string(test_layout.out_channels()) + "×" +
                  std::to_string(test_layout.height) + "×" + std::to_string(test_layout.width) +
                  " but x_train's are " + std::to_string(train_layout.out_channels()) + "×" +
                  std::to_string(train_layout.height) + "×" + std::to_string(train_layout.width) +
                  "; both sets must have the same size");
  }
  const KeptImages keep = images_to_keep(train_layout.count, x_test ? test_layout.count : 0, options.max_images);
  check_data_memory(keep.train + keep.test, train_layout.out_channels(), train_layout.height, train_layout.width,
                    options, archive.name());
  if (progress) progress->total += keep.train + keep.test;

  Dataset d;
  d.name = stem_of(file);
  d.train = read_images(*x_train->source, x_train->header, train_layout, keep.train, options, progress);
  if (y_train)
    d.train.labels = read_labels(*y_train->source, y_train->header, train_layout.count, keep.train,
                                 x_train->source->name());
  if (x_test) {
    d.test = read_images(*x_test->source, x_test->header, test_layout, keep.test, options, progress);
    if (y_test)
      d.test.labels = read_labels(*y_test->source, y_test->header, test_layout.count, keep.test,
                                  x_test->source->name());
  }
  note_cap(d, train_layout.count + (x_test ? test_layout.count : 0), options, archive.name());
  if (!x_test) hold_out(d, options, archive.name());
  if (d.train.has_labels() || d.test.has_labels()) d.class_names = numbered_class_names({&d.train, &d.test});
  if (train_layout.channels == 4)
    d.notes.push_back(archive.name() + ": alpha is composited onto " +
                      (options.background == Background::White ? "white" : "black"));
  return d;
}

}  // namespace vaelab
