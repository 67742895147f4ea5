// safetensors encoding and decoding, and the mapping between vaelab's Model and PyTorch-style
// tensor names. The header parser is written for the one shape a safetensors header has (an object
// of tensor records plus "__metadata__"), not as a general JSON library, and it refuses anything else.
#include "core/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

#include "core/atomic_file.hpp"
#include "core/error.hpp"

namespace vaelab {

namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr std::uint64_t kMaxFileBytes = std::uint64_t{4} << 30;

struct DtypeInfo {
  const char* name;
  std::size_t size;
};
// Every dtype of the format with a whole-byte size, so a file's layout can be checked even when
// vaelab cannot convert one of its tensors.
constexpr DtypeInfo kDtypes[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                 {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},
                                 {"U32", 4},  {"F32", 4}, {"F64", 8},  {"I64", 8},     {"U64", 8}};

const DtypeInfo* find_dtype(const std::string& s) {
  for (const auto& d : kDtypes)
    if (s == d.name) return &d;
  return nullptr;
}

[[noreturn]] void malformed(const std::string& what) { throw Error("safetensors header is malformed: " + what); }

// ---- JSON writing ----

// JSON's two-character escapes: the character, and the letter that follows the backslash.
constexpr std::pair<char, char> kEscapes[] = {{'"', '"'},  {'\\', '\\'}, {'\n', 'n'}, {'\r', 'r'},
                                              {'\t', 't'}, {'\b', 'b'},   {'\f', 'f'}};

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    const auto* e = std::find_if(std::begin(kEscapes), std::end(kEscapes), [c](auto e) { return e.first == char(c); });
    if (e != std::end(kEscapes)) {
      out += '\\';
      out += e->second;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

// ---- JSON reading: only what a header holds ----

struct TensorRecord {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

class HeaderParser {
 public:
  HeaderParser(const char* p, std::size_t n) : begin_(p), p_(p), end_(p + n) {}

  void parse(std::vector<TensorRecord>& tensors, std::map<std::string, std::string>& metadata) {
    ws();
    std::set<std::string> seen;
    bool have_meta = false;
    members([&](const std::string& key) {
      if (key == "__metadata__") {
        if (have_meta) fail("\"__metadata__\" appears twice");
        have_meta = true;
        meta(metadata);
      } else {
        if (!seen.insert(key).second) fail("tensor '" + key + "' appears twice");
        tensors.push_back(tensor(key));
      }
    });
    ws();  // the writer pads with spaces
    if (p_ != end_) fail("unexpected text after the header object");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    malformed(what + " (at byte " + std::to_string(p_ - begin_) + " of the header)");
  }
  int peek() const { return p_ < end_ ? static_cast<unsigned char>(*p_) : -1; }
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  void expect(char c) {
    if (peek() != static_cast<unsigned char>(c)) {
      if (p_ == end_) fail(std::string("expected '") + c + "' but the header ends");
      fail(std::string("expected '") + c + "'");
    }
    ++p_;
  }

  // An object: '{', then "key": value pairs, each value read by on_member(key), then '}'.
  // Returns how many members it had.
  template <class OnMember>
  int members(OnMember&& on_member) {
    expect('{');
    ws();
    if (peek() == '}') {
      ++p_;
      return 0;
    }
    for (int n = 1;; ++n) {
      ws();
      const std::string key = string();
      ws();
      expect(':');
      ws();
      on_member(key);
      ws();
      if (peek() != ',') {
        expect('}');
        return n;
      }
      ++p_;
    }
  }

  void meta(std::map<std::string, std::string>& out) {
    members([&](const std::string& k) {
      if (peek() != '"') fail("metadata value for '" + k + "' is not a string");
      std::string v = string();
      if (out.count(k)) fail("the metadata key '" + k + "' appears twice");
      out.emplace(k, std::move(v));
    });
  }

  TensorRecord tensor(const std::string& name) {
    TensorRecord t;
    t.name = name;
    bool have_dtype = false, have_shape = false, have_offsets = false;
    if (peek() != '{') fail("tensor '" + name + "' is not an object");
    const int fields = members([&](const std::string& k) {
      if (k == "dtype") {
        if (have_dtype) fail("tensor '" + name + "' has two dtypes");
        have_dtype = true;
        if (peek() != '"') fail("tensor '" + name + "': dtype is not a string");
        t.dtype = string();
      } else if (k == "shape") {
        if (have_shape) fail("tensor '" + name + "' has two shapes");
        have_shape = true;
        t.shape = uint_array(name, "shape");
      } else if (k == "data_offsets") {
        if (have_offsets) fail("tensor '" + name + "' has two data_offsets");
        have_offsets = true;
        const auto o = uint_array(name, "data_offsets");
        if (o.size() != 2) fail("tensor '" + name + "': data_offsets must hold exactly 2 numbers");
        t.begin = o[0];
        t.end = o[1];
      } else {
        fail("tensor '" + name + "' has the unknown field '" + k + "'");
      }
    });
    if (fields == 0) fail("tensor '" + name + "' is empty");
    if (!have_dtype) fail("tensor '" + name + "' has no dtype");
    if (!have_shape) fail("tensor '" + name + "' has no shape");
    if (!have_offsets) fail("tensor '" + name + "' has no data_offsets");
    return t;
  }

  std::vector<std::uint64_t> uint_array(const std::string& name, const char* field) {
    if (peek() != '[') fail("tensor '" + name + "': " + field + " is not an array");
    ++p_;
    std::vector<std::uint64_t> v;
    ws();
    if (peek() == ']') {
      ++p_;
      return v;
    }
    for (;;) {
      ws();
      v.push_back(uint(name, field));
      // Far beyond any real tensor rank; keeps a hostile header from growing this without bound.
      if (v.size() > 64) fail("tensor '" + name + "': " + field + " has more than 64 entries");
      ws();
      if (peek() == ',') {
        ++p_;
        continue;
      }
      expect(']');
      return v;
    }
  }

  std::uint64_t uint(const std::string& name, const char* field) {
    const char* start = p_;
    if (peek() < '0' || peek() > '9') fail("tensor '" + name + "': " + field + " must hold non-negative integers");
    std::uint64_t v = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      const unsigned d = static_cast<unsigned>(*p_ - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
        fail("tensor '" + name + "': a number in " + field + " is too large");
      v = v * 10 + d;
      ++p_;
    }
    if (p_ - start > 1 && *start == '0') {
      p_ = start;
      fail("tensor '" + name + "': numbers in " + field + " must not have leading zeros");
    }
    if (peek() == '.' || peek() == 'e' || peek() == 'E')
      fail("tensor '" + name + "': " + field + " must hold integers");
    return v;
  }

  unsigned hex4() {
    if (end_ - p_ < 4) fail("a \\u escape is cut short");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else fail("a \\u escape has a non-hex digit");
    }
    return v;
  }

  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One raw UTF-8 sequence starting at p_ (already known to be ≥ 0x80), checked and copied.
  void utf8_raw(std::string& out) {
    const auto b0 = static_cast<unsigned char>(*p_);
    int len = 0;
    unsigned cp = 0, min = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) len = 2, cp = b0 & 0x1F, min = 0x80;
    else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3, cp = b0 & 0x0F, min = 0x800;
    else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4, cp = b0 & 0x07, min = 0x10000;
    else fail("the header is not valid UTF-8");
    if (end_ - p_ < len) fail("the header is not valid UTF-8");
    for (int i = 1; i < len; ++i) {
      const auto b = static_cast<unsigned char>(p_[i]);
      if ((b & 0xC0) != 0x80) fail("the header is not valid UTF-8");
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("the header is not valid UTF-8");
    out.append(p_, static_cast<std::size_t>(len));
    p_ += len;
  }

  std::string string() {
    if (peek() != '"') fail(p_ == end_ ? "expected a string but the header ends" : "expected a string");
    ++p_;
    std::string s;
    for (;;) {
      if (p_ == end_) fail("a string is not closed");
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return s;
      }
      if (c < 0x20) fail("a string contains a raw control character");
      if (c >= 0x80) {
        utf8_raw(s);
        continue;
      }
      ++p_;
      if (c != '\\') {
        s += static_cast<char>(c);
        continue;
      }
      if (p_ == end_) fail("a string is not closed");
      const char e = *p_++;
      const auto* simple =
          std::find_if(std::begin(kEscapes), std::end(kEscapes), [e](auto x) { return x.second == e; });
      if (simple != std::end(kEscapes) || e == '/') {
        s += simple != std::end(kEscapes) ? simple->first : '/';
        continue;
      }
      if (e != 'u') fail(std::string("a string has the unknown escape \\") + e);
      unsigned cp = hex4();
      if (cp >= 0xDC00 && cp <= 0xDFFF) fail("a \\u escape is a lone low surrogate");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail("a \\u escape is a lone high surrogate");
        p_ += 2;
        const unsigned lo = hex4();
        if (lo < 0xDC00 || lo > 0xDFFF) fail("a \\u escape is a lone high surrogate");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      utf8(s, cp);
    }
  }

  const char* begin_;
  const char* p_;
  const char* end_;
};

// ---- element conversion ----

std::uint64_t load_le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

float half_to_float(std::uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
  else if (exp == 31) v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  return sign ? -v : v;
}

void convert(const std::string& dtype, const std::uint8_t* src, std::size_t count, float* dst) {
  if (dtype == "F32") {
    for (std::size_t i = 0; i < count; ++i)
      dst[i] = std::bit_cast<float>(static_cast<std::uint32_t>(load_le(src + 4 * i, 4)));
  } else if (dtype == "F64") {
    for (std::size_t i = 0; i < count; ++i)
      dst[i] = static_cast<float>(std::bit_cast<double>(load_le(src + 8 * i, 8)));
  } else if (dtype == "F16") {
    for (std::size_t i = 0; i < count; ++i) dst[i] = half_to_float(static_cast<std::uint16_t>(load_le(src + 2 * i, 2)));
  } else {  // BF16: the top half of an F32
    for (std::size_t i = 0; i < count; ++i)
      dst[i] = std::bit_cast<float>(static_cast<std::uint32_t>(load_le(src + 2 * i, 2)) << 16);
  }
}

// ---- model naming ----

std::string layer_name(bool pytorch, bool encoder, std::size_t i) {
  if (pytorch) return encoder ? "fc1" : (i == 0 ? "fc3" : "fc4");
  return (encoder ? "encoder." : "decoder.") + std::to_string(i);
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

std::string float_str(float v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that reads back exactly
  return std::string(buf, r.ptr);
}

[[noreturn]] void import_fail(const std::string& what) { throw Error("cannot import the model: " + what); }

bool parse_int(const std::string& s, int& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

const std::string* metadata_of(const SafetensorsFile& f, const char* key) {
  auto it = f.metadata.find(key);
  return it == f.metadata.end() ? nullptr : &it->second;
}

// validate(cfg), its message saying that the settings come from the file.
void validate_imported(const ModelConfig& cfg) {
  try {
    validate(cfg);
  } catch (const Error& e) {
    import_fail(std::string("the model in the file is not one vaelab can use: ") + e.what());
  }
}

// The channels from the metadata's image_c into cfg: 1 or 3, and 1 (grey) when the file does not
// say (files written before colour, and grey exports, which leave it out).
void channels_from_metadata(const SafetensorsFile& f, ModelConfig& cfg) {
  const std::string* mc = metadata_of(f, "image_c");
  cfg.image_c = 1;
  if (mc && (!parse_int(*mc, cfg.image_c) || (cfg.image_c != 1 && cfg.image_c != 3)))
    import_fail("the metadata's image_c '" + *mc + "' is not 1 (grey) or 3 (colour)");
}

// The image size from the metadata's image_h and image_w into cfg; false when it gives neither.
bool image_size_from_metadata(const SafetensorsFile& f, ModelConfig& cfg) {
  const std::string* mh = metadata_of(f, "image_h");
  const std::string* mw = metadata_of(f, "image_w");
  if (!mh && !mw) return false;
  if (!mh || !mw) import_fail("the metadata gives only one of image_h and image_w");
  if (!parse_int(*mh, cfg.image_h) || !parse_int(*mw, cfg.image_w) || cfg.image_h < 1 || cfg.image_w < 1)
    import_fail("the metadata's image size '" + *mh + "' × '" + *mw + "' is not two positive integers");
  return true;
}

// The metadata's latent size, when it gives one, must be the tensors' (fc21's rows).
void check_metadata_latent(const SafetensorsFile& f, int latent) {
  const std::string* m = metadata_of(f, "latent");
  int v = 0;
  if (m && (!parse_int(*m, v) || v != latent))
    import_fail("the metadata's latent size '" + *m + "' does not match the " + std::to_string(latent) +
                " rows of 'fc21.weight'");
}

// The likelihood, σ and the learned decoder log σ² tensor (returned, or null) of an exported model.
const Tensor* read_likelihood(const SafetensorsFile& f, ModelConfig& cfg, std::set<std::string>& used) {
  const auto fail = import_fail;
  const auto meta = [&](const char* k) { return metadata_of(f, k); };
  const Tensor* logvar = f.find("decoder_logvar");
  if (const std::string* l = meta("likelihood")) {
    try {
      cfg.likelihood = parse_likelihood(*l);
    } catch (const Error& e) {
      fail(std::string("the metadata's likelihood: ") + e.what());
    }
  } else {
    cfg.likelihood = logvar ? Likelihood::GaussianLearned : Likelihood::Bernoulli;
  }
  if (const std::string* s = meta("gaussian_sigma")) {
    auto r = std::from_chars(s->data(), s->data() + s->size(), cfg.gaussian_sigma);
    if (r.ec != std::errc() || r.ptr != s->data() + s->size())
      fail("the metadata's gaussian_sigma '" + *s + "' is not a number");
  }
  if (cfg.likelihood == Likelihood::GaussianLearned) {
    if (!logvar) fail("the likelihood is gaussian-learned but the tensor 'decoder_logvar' is missing");
    if (logvar->shape != std::vector<std::int64_t>{1})
      fail("tensor 'decoder_logvar' has shape " + shape_str(logvar->shape) + ", expected [1]");
    used.insert("decoder_logvar");
  } else if (logvar) {
    fail(std::string("the file has a 'decoder_logvar' tensor but its likelihood is ") + to_string(cfg.likelihood));
  }
  return logvar;
}

// The convolutional VAE (metadata family "conv"): PyTorch-module names enc_conv1, enc_conv2 (Conv2d
// [out_c, in_c, 3, 3]), fc21 / fc22 (the μ / log σ² halves of the dense head), dec_fc (Linear),
// dec_deconv1..3 (ConvTranspose2d [in_c, out_c, 3, 3]); every shape must be the one
// conv_vae_geometries gives for the metadata's image size and fc21's latent size.
std::optional<Model> import_conv_model(const SafetensorsFile& f, bool build, ModelConfig* checked) {
  const auto fail = import_fail;
  std::set<std::string> used;
  ModelConfig cfg;
  cfg.family = ModelFamily::Conv;
  channels_from_metadata(f, cfg);
  if (!image_size_from_metadata(f, cfg))
    fail("a convolutional VAE needs the image size in the metadata (image_h and image_w)");
  const Tensor* fc21 = f.find("fc21.weight");
  if (!fc21) fail("tensor 'fc21.weight' is missing");
  if (fc21->shape.size() != 2 || fc21->shape[0] < 1 || fc21->shape[0] > 65536)
    fail("tensor 'fc21.weight' has shape " + shape_str(fc21->shape) + ", expected [latent, 64·h·w]");
  cfg.latent = static_cast<int>(fc21->shape[0]);
  check_metadata_latent(f, cfg.latent);
  ConvVaeGeometry v;
  try {
    v = conv_vae_geometries(cfg.image_c, cfg.image_h, cfg.image_w, cfg.latent);
  } catch (const Error& e) {
    fail(e.what());
  }
  // Model(cfg) allocates from the metadata's image size: check the largest tensor's shape first, so
  // its data (present in the file) bounds the allocation.
  if (fc21->shape != std::vector<std::int64_t>{cfg.latent, v.enc_dense_in})
    fail("tensor 'fc21.weight' has shape " + shape_str(fc21->shape) + ", expected " +
         shape_str({cfg.latent, v.enc_dense_in}) + " for a " + image_shape_text(cfg) + " convolutional VAE");
  const Tensor* logvar = read_likelihood(f, cfg, used);
  validate_imported(cfg);
  if (checked) *checked = cfg;
  if (!build) return std::nullopt;
  Model model(cfg);
  // Copies tensor `name` (which must have exactly `shape`) to params[offset…].
  auto take = [&](const std::string& name, const std::vector<std::int64_t>& shape, std::size_t offset) {
    const Tensor* t = f.find(name);
    if (!t) fail("tensor '" + name + "' is missing");
    if (t->shape != shape)
      fail("tensor '" + name + "' has shape " + shape_str(t->shape) + ", expected " + shape_str(shape) + " for a " +
           image_shape_text(cfg) + " convolutional VAE with latent " + std::to_string(cfg.latent));
    std::copy(t->data.begin(), t->data.end(), model.params().begin() + static_cast<std::ptrdiff_t>(offset));
    used.insert(name);
  };
  auto conv = [&](const std::string& name, const ConvLayerShape& l) {
    const std::int64_t k = l.g.kernel, a = l.g.transposed ? l.g.in_c : l.g.out_c, b = l.g.transposed ? l.g.out_c : l.g.in_c;
    take(name + ".weight", {a, b, k, k}, l.w);
    take(name + ".bias", {l.g.out_c}, l.b);
  };
  // A dense layer's rows [row0, row0 + rows): PyTorch [out, in] row-major into (out, in) column-major.
  auto dense = [&](const std::string& name, const DenseShape& l, int row0, int rows) {
    const Tensor* t = f.find(name + ".weight");
    const std::vector<std::int64_t> shape{rows, l.in};
    if (!t) fail("tensor '" + name + ".weight' is missing");
    if (t->shape != shape)
      fail("tensor '" + name + ".weight' has shape " + shape_str(t->shape) + ", expected " + shape_str(shape));
    auto W = model.W(l);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < l.in; ++c) W(row0 + r, c) = t->data[static_cast<std::size_t>(r) * l.in + c];
    used.insert(name + ".weight");
    take(name + ".bias", {rows}, l.b + static_cast<std::size_t>(row0));
  };
  conv("enc_conv1", model.conv_encoder()[0]);
  conv("enc_conv2", model.conv_encoder()[1]);
  dense("fc21", model.encoder()[0], 0, cfg.latent);
  dense("fc22", model.encoder()[0], cfg.latent, cfg.latent);
  dense("dec_fc", model.decoder()[0], 0, model.decoder()[0].out);
  conv("dec_deconv1", model.conv_decoder()[0]);
  conv("dec_deconv2", model.conv_decoder()[1]);
  conv("dec_deconv3", model.conv_decoder()[2]);
  if (logvar) model.params()[model.decoder_logvar_offset()] = logvar->data[0];
  for (const auto& t : f.tensors)
    if (!used.count(t.name)) fail("the file has the unexpected tensor '" + t.name + "'");
  if (!model.all_finite()) fail("the parameters contain NaN or Inf");
  return model;
}

// The header's length from the file's first 8 bytes, checked against the limit and the file size.
std::uint64_t header_length(const std::uint8_t* first8, std::uint64_t size) {
  if (size < 8) malformed("the file has " + std::to_string(size) + " bytes, too few for the 8-byte header length");
  const std::uint64_t n = load_le(first8, 8);
  if (n > kMaxHeaderBytes)
    malformed("the header length is " + std::to_string(n) + " bytes, more than the 100 MB allowed");
  if (n > size - 8)
    malformed("the header length is " + std::to_string(n) + " bytes but only " + std::to_string(size - 8) +
              " bytes follow the length field");
  if (n < 2) malformed("the header is " + std::to_string(n) + " bytes, too short for a JSON object");
  return n;
}

struct Header {
  std::vector<TensorRecord> recs;
  std::map<std::string, std::string> metadata;
};

// Parses the JSON header and checks every record against a data section of data_size bytes:
// known dtypes, sizes that match the shapes, tensors that tile the section exactly.
Header parse_header(const std::uint8_t* json, std::uint64_t n, std::uint64_t data_size) {
  Header h;
  HeaderParser(reinterpret_cast<const char*>(json), static_cast<std::size_t>(n)).parse(h.recs, h.metadata);
  std::vector<std::size_t> by_offset(h.recs.size());
  for (std::size_t i = 0; i < h.recs.size(); ++i) {
    const auto& r = h.recs[i];
    by_offset[i] = i;
    const DtypeInfo* dt = find_dtype(r.dtype);
    if (!dt) malformed("tensor '" + r.name + "' has the unknown dtype '" + r.dtype + "'");
    if (r.end < r.begin) malformed("tensor '" + r.name + "' has data_offsets that end before they begin");
    if (r.end > data_size)
      malformed("tensor '" + r.name + "' has data_offsets [" + std::to_string(r.begin) + ", " + std::to_string(r.end) +
                "] outside the data section of " + std::to_string(data_size) + " bytes");
    // The element count is bounded by the data section, so overflow means a wrong shape.
    std::uint64_t count = 1;
    bool overflow = false;
    for (auto d : r.shape) {
      if (d != 0 && count > std::numeric_limits<std::uint64_t>::max() / d) overflow = true;
      else count *= d;
    }
    const bool has_zero = std::find(r.shape.begin(), r.shape.end(), 0u) != r.shape.end();
    if (has_zero) count = 0, overflow = false;
    if (overflow || count > std::numeric_limits<std::uint64_t>::max() / dt->size || count * dt->size != r.end - r.begin)
      malformed("tensor '" + r.name + "' holds " + std::to_string(r.end - r.begin) + " bytes, but its shape and dtype " +
                r.dtype + " need " + (overflow ? std::string("more than 2^64") : std::to_string(count * dt->size)));
    for (auto d : r.shape)
      if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        malformed("tensor '" + r.name + "' has a dimension that is too large");
  }
  // Tensors must tile the data section exactly, as the reference reader requires.
  std::sort(by_offset.begin(), by_offset.end(), [&](std::size_t a, std::size_t b) {
    return h.recs[a].begin != h.recs[b].begin ? h.recs[a].begin < h.recs[b].begin : h.recs[a].end < h.recs[b].end;
  });
  std::uint64_t pos = 0;
  const TensorRecord* prev = nullptr;
  for (std::size_t i : by_offset) {
    const auto& r = h.recs[i];
    if (r.begin < pos) malformed("tensors '" + prev->name + "' and '" + r.name + "' overlap");
    if (r.begin > pos)
      malformed(std::to_string(r.begin - pos) + " bytes before tensor '" + r.name + "' belong to no tensor");
    pos = r.end;
    prev = &r;
  }
  if (pos != data_size)
    malformed(std::to_string(data_size - pos) + " bytes at the end of the data section belong to no tensor");

  return h;
}

// The tensors' names and shapes (no data), refusing dtypes vaelab cannot convert.
SafetensorsFile shapes_of(const Header& h) {
  SafetensorsFile out;
  out.metadata = h.metadata;
  for (const auto& r : h.recs) {
    if (r.dtype != "F32" && r.dtype != "F16" && r.dtype != "BF16" && r.dtype != "F64")
      throw Error("safetensors: tensor '" + r.name + "' has dtype " + r.dtype +
                  "; vaelab reads only F32, F16, BF16 and F64");
    Tensor t;
    t.name = r.name;
    for (auto d : r.shape) t.shape.push_back(static_cast<std::int64_t>(d));
    out.tensors.push_back(std::move(t));
  }
  return out;
}

// shapes_of(h) with every tensor's values converted from the data section.
SafetensorsFile with_data(const Header& h, const std::uint8_t* data) {
  SafetensorsFile out = shapes_of(h);
  for (std::size_t i = 0; i < h.recs.size(); ++i) {
    const auto& r = h.recs[i];
    const std::size_t count = static_cast<std::size_t>((r.end - r.begin) / find_dtype(r.dtype)->size);
    out.tensors[i].data.resize(count);
    convert(r.dtype, data + r.begin, count, out.tensors[i].data.data());
  }
  return out;
}

}  // namespace

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<std::uint8_t> encode_safetensors(const SafetensorsFile& f) {
  std::string json = "{";
  bool first = true;
  if (!f.metadata.empty()) {
    json += "\"__metadata__\":{";
    bool first_meta = true;
    for (const auto& [k, v] : f.metadata) {
      if (!first_meta) json += ',';
      first_meta = false;
      json_string(json, k);
      json += ':';
      json_string(json, v);
    }
    json += '}';
    first = false;
  }
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const auto& t : f.tensors) {
    if (t.name == "__metadata__") throw Error("safetensors: a tensor cannot be named \"__metadata__\"");
    if (!names.insert(t.name).second) throw Error("safetensors: the tensor name '" + t.name + "' is used twice");
    std::uint64_t n = 1;
    for (auto d : t.shape) {
      if (d < 0) throw Error("safetensors: tensor '" + t.name + "' has a negative dimension");
      n *= static_cast<std::uint64_t>(d);
    }
    if (n != t.data.size())
      throw Error("safetensors: tensor '" + t.name + "' has shape " + shape_str(t.shape) + " but " +
                  std::to_string(t.data.size()) + " values");
    if (!first) json += ',';
    first = false;
    json_string(json, t.name);
    json += ":{\"dtype\":\"F32\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) {
      if (i) json += ',';
      json += std::to_string(t.shape[i]);
    }
    json += "],\"data_offsets\":[" + std::to_string(offset) + ",";
    offset += 4 * n;
    json += std::to_string(offset) + "]}";
  }
  json += '}';
  // Pad with spaces so the tensor data starts 8-byte aligned, as the reference writer does.
  json.append((8 - json.size() % 8) % 8, ' ');

  std::vector<std::uint8_t> out;
  out.reserve(8 + json.size() + offset);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(json.size()) >> (8 * i)));
  out.insert(out.end(), json.begin(), json.end());
  for (const auto& t : f.tensors)
    for (float v : t.data) {
      const auto bits = std::bit_cast<std::uint32_t>(v);
      for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(bits >> (8 * i)));
    }
  return out;
}

SafetensorsFile decode_safetensors(const std::uint8_t* bytes, std::size_t size) {
  const std::uint64_t n = header_length(bytes, size);
  return with_data(parse_header(bytes + 8, n, size - 8 - n), bytes + 8 + n);
}

void write_safetensors(const std::filesystem::path& file, const SafetensorsFile& f) {
  const auto bytes = encode_safetensors(f);
  write_file_atomically(file, bytes.data(), bytes.size());
}

SafetensorsFile read_safetensors(const std::filesystem::path& file, const ShapeCheck& check_shapes,
                                 const CancelFlag* cancel) {
  RegularFile in(file, "a safetensors file");
  // Messages about the content start with the file's name (RegularFile's own already do).
  auto about_file = [&](auto&& step) {
    try {
      return step();
    } catch (const Error& e) {
      throw Error(in.name() + ": " + e.what());
    }
  };
  auto read_exactly = [&](std::uint64_t n) {
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(n));
    if (in.read(buf.data(), buf.size(), cancel) != buf.size())
      throw Error(in.name() + ": the file became shorter while it was read");
    return buf;
  };
  if (in.size() > kMaxFileBytes)
    throw Error(in.name() + ": the file is " + std::to_string(in.size()) + " bytes, more than the 4 GiB vaelab reads");
  // The header first: its checks and the caller's run before the data is read.
  const std::vector<std::uint8_t> prefix = read_exactly(std::min<std::uint64_t>(8, in.size()));
  const std::uint64_t n = about_file([&] { return header_length(prefix.data(), in.size()); });
  const std::vector<std::uint8_t> json = read_exactly(n);
  const Header h = about_file([&] { return parse_header(json.data(), n, in.size() - 8 - n); });
  if (check_shapes) about_file([&] { check_shapes(shapes_of(h)); });
  const std::vector<std::uint8_t> data = read_exactly(in.size() - 8 - n);
  return about_file([&] { return with_data(h, data.data()); });
}

SafetensorsFile export_model(const Model& model) {
  const ModelConfig& cfg = model.config();
  const bool pytorch = cfg.hidden.size() == 1;
  const int d = cfg.latent;
  SafetensorsFile f;
  f.metadata["format"] = "vaelab-vae";
  // Grey files leave image_c out (a file without it is grey), so they stay the bytes earlier
  // versions wrote.
  if (cfg.image_c != 1) f.metadata["image_c"] = std::to_string(cfg.image_c);
  f.metadata["image_h"] = std::to_string(cfg.image_h);
  f.metadata["image_w"] = std::to_string(cfg.image_w);
  f.metadata["latent"] = std::to_string(d);
  f.metadata["likelihood"] = to_string(cfg.likelihood);
  f.metadata["gaussian_sigma"] = float_str(cfg.gaussian_sigma);

  if (model.is_conv()) f.metadata["family"] = "conv";

  // Rows [row0, row0 + rows) of a layer, as PyTorch's row-major [out, in] weight and [out] bias.
  auto add = [&](const std::string& name, const DenseShape& l, int row0, int rows) {
    const auto W = model.W(l);
    const auto b = model.b(l);
    Tensor w{name + ".weight", {rows, l.in}, std::vector<float>(static_cast<std::size_t>(rows) * l.in)};
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < l.in; ++c) w.data[static_cast<std::size_t>(r) * l.in + c] = W(row0 + r, c);
    Tensor bias{name + ".bias", {rows}, std::vector<float>(b.data() + row0, b.data() + row0 + rows)};
    f.tensors.push_back(std::move(w));
    f.tensors.push_back(std::move(bias));
  };
  const auto& enc = model.encoder();
  const auto& dec = model.decoder();
  if (model.is_conv()) {
    // Conv2d [out_c, in_c, k, k] / ConvTranspose2d [in_c, out_c, k, k]: stored in that layout already.
    auto conv = [&](const std::string& name, const ConvLayerShape& l) {
      const int k = l.g.kernel, a = l.g.transposed ? l.g.in_c : l.g.out_c, b = l.g.transposed ? l.g.out_c : l.g.in_c;
      const float* w = model.data() + l.w;
      const float* bias = model.data() + l.b;
      f.tensors.push_back({name + ".weight", {a, b, k, k}, std::vector<float>(w, w + l.g.weight_size())});
      f.tensors.push_back({name + ".bias", {l.g.out_c}, std::vector<float>(bias, bias + l.g.bias_size())});
    };
    conv("enc_conv1", model.conv_encoder()[0]);
    conv("enc_conv2", model.conv_encoder()[1]);
    add("fc21", enc[0], 0, d);  // μ rows
    add("fc22", enc[0], d, d);  // log σ² rows
    add("dec_fc", dec[0], 0, dec[0].out);
    conv("dec_deconv1", model.conv_decoder()[0]);
    conv("dec_deconv2", model.conv_decoder()[1]);
    conv("dec_deconv3", model.conv_decoder()[2]);
    if (model.decoder_logvar_offset() != Model::npos)
      f.tensors.push_back({"decoder_logvar", {1}, {model.params()[model.decoder_logvar_offset()]}});
    return f;
  }
  for (std::size_t i = 0; i + 1 < enc.size(); ++i) add(layer_name(pytorch, true, i), enc[i], 0, enc[i].out);
  add("fc21", enc.back(), 0, d);  // μ rows
  add("fc22", enc.back(), d, d);  // log σ² rows
  for (std::size_t i = 0; i < dec.size(); ++i) add(layer_name(pytorch, false, i), dec[i], 0, dec[i].out);
  if (model.decoder_logvar_offset() != Model::npos)
    f.tensors.push_back({"decoder_logvar", {1}, {model.params()[model.decoder_logvar_offset()]}});
  if (const int K = model.clusters(); K > 0) {
    // Clustering families: gmvae's classifier p(y|z) (vade has none) and the cluster Gaussians,
    // one row per cluster.
    f.metadata["family"] = to_string(model.config().family);
    f.metadata["clusters"] = std::to_string(K);
    if (!model.classifier().empty()) {
      add("classifier.0", model.classifier()[0], 0, model.classifier()[0].out);
      add("classifier.1", model.classifier()[1], 0, model.classifier()[1].out);
    }
    for (const auto& [name, offset] : {std::pair{"cluster_means", model.cluster_mean_offset()},
                                       std::pair{"cluster_logvars", model.cluster_logvar_offset()}}) {
      // Stored (d, K) column-major = [K, d] row-major: the bytes are already in PyTorch's order.
      const float* p = model.data() + offset;
      f.tensors.push_back({name, {K, d}, std::vector<float>(p, p + static_cast<std::size_t>(K) * d)});
    }
  }
  return f;
}

namespace {

// Checks that the names, shapes and metadata make a model vaelab can build (the tensors' data is
// not read), then, when `build`, builds it from the data.
std::optional<Model> import_any(const SafetensorsFile& f, bool build, ModelConfig* checked = nullptr) {
  if (const std::string* fam = metadata_of(f, "family"); fam && *fam == "conv") return import_conv_model(f, build, checked);
  const auto fail = import_fail;
  std::set<std::string> used;

  struct Dense {
    std::string name;
    int in = 0, out = 0;
    const Tensor* w = nullptr;
    const Tensor* b = nullptr;
  };
  auto dense = [&](const std::string& name) {
    Dense l;
    l.name = name;
    l.w = f.find(name + ".weight");
    l.b = f.find(name + ".bias");
    if (!l.w) fail("tensor '" + name + ".weight' is missing");
    if (!l.b) fail("tensor '" + name + ".bias' is missing");
    const auto& ws = l.w->shape;
    if (ws.size() != 2 || ws[0] < 1 || ws[1] < 1 || ws[0] > std::numeric_limits<int>::max() ||
        ws[1] > std::numeric_limits<int>::max())
      fail("tensor '" + name + ".weight' has shape " + shape_str(ws) + ", expected [out, in]");
    l.out = static_cast<int>(ws[0]);
    l.in = static_cast<int>(ws[1]);
    if (l.b->shape == std::vector<std::int64_t>{ws[1]} && ws[0] != ws[1])
      fail("tensor '" + name + ".weight' has shape " + shape_str(ws) + " but '" + name + ".bias' has " +
           std::to_string(ws[1]) + " entries: the weight looks transposed (PyTorch stores a layer's weight as " +
           "[out, in], here " + shape_str({ws[1], ws[0]}) + ")");
    if (l.b->shape != std::vector<std::int64_t>{ws[0]})
      fail("tensor '" + name + ".bias' has shape " + shape_str(l.b->shape) + ", expected [" + std::to_string(l.out) + "]");
    used.insert(name + ".weight");
    used.insert(name + ".bias");
    return l;
  };

  // Which naming: PyTorch's examples/vae (fc1 … fc4) or vaelab's encoder.{i} / decoder.{i}.
  const bool pytorch = f.find("fc1.weight") != nullptr;
  std::vector<Dense> enc, dec;
  if (pytorch) {
    enc.push_back(dense("fc1"));
    dec.push_back(dense("fc3"));
    dec.push_back(dense("fc4"));
  } else {
    for (std::size_t i = 0; f.find(layer_name(false, true, i) + ".weight"); ++i) enc.push_back(dense(layer_name(false, true, i)));
    for (std::size_t i = 0; f.find(layer_name(false, false, i) + ".weight"); ++i) dec.push_back(dense(layer_name(false, false, i)));
    if (enc.empty()) fail("no encoder layers: expected fc1 (PyTorch examples/vae names) or encoder.0, encoder.1, …");
    if (dec.empty()) fail("no decoder layers: expected fc3 and fc4, or decoder.0, decoder.1, …");
  }
  const Dense mu = dense("fc21");
  const Dense lv = dense("fc22");

  auto chain = [&](const Dense& l, int in, const std::string& from) {
    if (l.in != in)
      fail("'" + l.name + ".weight' takes " + std::to_string(l.in) + " inputs but " + from + " gives " +
           std::to_string(in));
  };
  const int D = enc[0].in;
  std::vector<int> hidden;
  for (std::size_t i = 0; i < enc.size(); ++i) {
    if (i > 0) chain(enc[i], enc[i - 1].out, "'" + enc[i - 1].name + "'");
    hidden.push_back(enc[i].out);
  }
  chain(mu, enc.back().out, "'" + enc.back().name + "'");
  if (lv.in != mu.in || lv.out != mu.out)
    fail("'fc22.weight' is " + shape_str(lv.w->shape) + " but 'fc21.weight' is " + shape_str(mu.w->shape) +
         "; the μ and log σ² heads must have the same shape");
  const int latent = mu.out;
  if (dec.size() != enc.size() + 1)
    fail("the decoder has " + std::to_string(dec.size()) + " layers but the encoder has " + std::to_string(enc.size()) +
         " hidden layers; vaelab's decoder mirrors the encoder (" + std::to_string(enc.size() + 1) + " layers)");
  chain(dec[0], latent, "the latent (" + std::to_string(latent) + ")");
  for (std::size_t i = 0; i < dec.size(); ++i) {
    if (i > 0) chain(dec[i], dec[i - 1].out, "'" + dec[i - 1].name + "'");
    const int want = i + 1 < dec.size() ? hidden[hidden.size() - 1 - i] : D;
    if (dec[i].out != want)
      fail("'" + dec[i].name + ".weight' has " + std::to_string(dec[i].out) + " outputs, expected " +
           std::to_string(want) +
           (i + 1 < dec.size() ? " (vaelab's decoder mirrors the encoder's widths)" : " (the image size)"));
  }

  ModelConfig cfg;
  cfg.latent = latent;
  cfg.hidden = hidden;
  check_metadata_latent(f, latent);
  channels_from_metadata(f, cfg);
  if (image_size_from_metadata(f, cfg)) {
    if (static_cast<long long>(cfg.image_c) * cfg.image_h * cfg.image_w != D)
      fail("the metadata's image size " + image_shape_text(cfg) + " does not match the " + std::to_string(D) +
           " inputs of '" + enc[0].name + ".weight'");
  } else {
    const int pixels = D / cfg.image_c;
    const int side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(pixels))));
    if (pixels * cfg.image_c != D || static_cast<long long>(side) * side != pixels)
      fail("the input size " + std::to_string(D) + (cfg.image_c == 1 ? "" : " / " + std::to_string(cfg.image_c) + " channels") +
           " is not a square and the file has no image_h/image_w metadata to say the image size");
    cfg.image_h = cfg.image_w = side;
  }
  const Tensor* logvar = read_likelihood(f, cfg, used);
  Dense cls0, cls1;
  const Tensor *cmeans = nullptr, *clogvars = nullptr;
  const std::string* fam = metadata_of(f, "family");
  if (fam && (*fam == "gmvae" || *fam == "vade")) {
    cmeans = f.find("cluster_means");
    clogvars = f.find("cluster_logvars");
    if (!cmeans || !clogvars) fail("a clustering VAE needs the tensors 'cluster_means' and 'cluster_logvars'");
    if (*fam == "gmvae") {
      cfg.family = ModelFamily::Gmvae;
      cls0 = dense("classifier.0");
      cls1 = dense("classifier.1");
      cfg.clusters = cls1.out;
      if (cls0.in != latent || cls0.out != kClassifierHidden || cls1.in != kClassifierHidden)
        fail("the classifier's shapes do not fit: expected " + std::to_string(latent) + " → " +
             std::to_string(kClassifierHidden) + " → K");
    } else {
      cfg.family = ModelFamily::Vade;
      if (cmeans->shape.size() != 2 || cmeans->shape[0] < limits::kClusters.lo || cmeans->shape[0] > limits::kClusters.hi)
        fail("'cluster_means' has shape " + shape_str(cmeans->shape) + "; expected [K, " + std::to_string(latent) +
             "] with K " + limits::kClusters.describe());
      cfg.clusters = static_cast<int>(cmeans->shape[0]);
    }
    const std::vector<std::int64_t> shape{cfg.clusters, latent};
    if (cmeans->shape != shape || clogvars->shape != shape)
      fail("the cluster tensors must have shape " + shape_str(shape));
    used.insert("cluster_means");
    used.insert("cluster_logvars");
  } else if (fam && *fam != "mlp") {
    fail("the metadata's family '" + *fam + "' is not one this build can import (mlp, conv, gmvae or vade)");
  }
  for (const auto& t : f.tensors)
    if (!used.count(t.name)) fail("the file has the unexpected tensor '" + t.name + "'");
  validate_imported(cfg);

  if (checked) *checked = cfg;
  if (!build) return std::nullopt;
  Model model(cfg);
  auto fill = [&](const DenseShape& l, const Dense& src, int row0) {
    auto W = model.W(l);
    auto b = model.b(l);
    for (int r = 0; r < src.out; ++r) {
      for (int c = 0; c < src.in; ++c) W(row0 + r, c) = src.w->data[static_cast<std::size_t>(r) * src.in + c];
      b(row0 + r) = src.b->data[static_cast<std::size_t>(r)];
    }
  };
  for (std::size_t i = 0; i < enc.size(); ++i) fill(model.encoder()[i], enc[i], 0);
  fill(model.encoder().back(), mu, 0);
  fill(model.encoder().back(), lv, latent);
  for (std::size_t i = 0; i < dec.size(); ++i) fill(model.decoder()[i], dec[i], 0);
  if (logvar) model.params()[model.decoder_logvar_offset()] = logvar->data[0];
  if (cfg.family == ModelFamily::Gmvae) {
    fill(model.classifier()[0], cls0, 0);
    fill(model.classifier()[1], cls1, 0);
  }
  if (is_clustering(cfg.family)) {
    std::copy(cmeans->data.begin(), cmeans->data.end(), model.params().begin() + model.cluster_mean_offset());
    std::copy(clogvars->data.begin(), clogvars->data.end(), model.params().begin() + model.cluster_logvar_offset());
  }
  if (!model.all_finite()) fail("the parameters contain NaN or Inf");
  return model;
}

}  // namespace

Model import_model(const SafetensorsFile& f) { return *import_any(f, true); }

ModelConfig importable_config(const SafetensorsFile& shapes) {
  ModelConfig cfg;
  import_any(shapes, false, &cfg);
  return cfg;
}

void check_importable(const SafetensorsFile& shapes) { importable_config(shapes); }

Model import_model_file(const std::filesystem::path& file, const CancelFlag* cancel) {
  return import_model(read_safetensors(file, check_importable, cancel));
}

}  // namespace vaelab
