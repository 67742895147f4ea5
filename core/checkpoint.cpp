// Checkpoint file format (version 2, reading 1 too): encoding, decoding and the consistency checks
// of both. Layout, all little-endian: "VAELABCK", u32 version, u64 file size, the TrainingState
// fields in declaration order, then a CRC-32 of every byte before it. Not a stable interchange format.
#include "core/checkpoint.hpp"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/memory_estimate.hpp"
#include "core/model.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

namespace {

constexpr char kMagic[8] = {'V', 'A', 'E', 'L', 'A', 'B', 'C', 'K'};
constexpr std::size_t kPrefix = 8 + 4 + 8;  // magic, version, file size
constexpr std::size_t kTrailer = 4;         // CRC-32

// ---- writing ----

class Writer {
 public:
  template <class T>
  void num(T v) {
    static_assert(std::is_arithmetic_v<T>);
    unsigned char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
    out_.insert(out_.end(), b, b + sizeof(T));
  }
  void u8(std::uint8_t v) { out_.push_back(v); }
  void i32(int v) { num(static_cast<std::int32_t>(v)); }
  void count(std::size_t n) { num(static_cast<std::uint64_t>(n)); }
  void str(const std::string& s) {
    count(s.size());
    out_.insert(out_.end(), s.begin(), s.end());
  }
  template <class T>
  void vec(const std::vector<T>& v) {
    count(v.size());
    for (const T& x : v) num(x);
  }
  // One field of a record, whatever its type (see the *_fields lists below).
  template <class T>
    requires std::is_arithmetic_v<T>
  void field(const T& v) { num(v); }
  void field(const std::string& s) { str(s); }
  template <class T>
  void field(const std::vector<T>& v) { vec(v); }
  void raw(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    out_.insert(out_.end(), c, c + n);
  }
  std::vector<std::uint8_t>& bytes() { return out_; }

 private:
  std::vector<std::uint8_t> out_;
};

// ---- reading: every read is checked against what remains, before anything is allocated ----

class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n, const std::string& file) : p_(p), end_(p + n), file_(file) {}

  template <class T>
  T num() {
    static_assert(std::is_arithmetic_v<T>);
    need(sizeof(T));
    unsigned char b[sizeof(T)];
    std::memcpy(b, p_, sizeof(T));
    if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
    p_ += sizeof(T);
    T v;
    std::memcpy(&v, b, sizeof(T));
    return v;
  }
  std::uint8_t u8() { return num<std::uint8_t>(); }
  int i32() { return num<std::int32_t>(); }
  // An element count, refused unless that many elements of elem_size bytes can still follow.
  std::size_t count(std::size_t elem_size) {
    const auto n = num<std::uint64_t>();
    if (n > remaining() / elem_size) fail("file is truncated or damaged: a list of " + std::to_string(n) +
                                          " entries does not fit in the " + std::to_string(remaining()) +
                                          " bytes left");
    return static_cast<std::size_t>(n);
  }
  std::string str() {
    const std::size_t n = count(1);
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  template <class T>
  std::vector<T> vec() {
    std::vector<T> v(count(sizeof(T)));
    for (T& x : v) x = num<T>();
    return v;
  }
  // One field of a record, whatever its type (see the *_fields lists below).
  template <class T>
    requires std::is_arithmetic_v<T>
  void field(T& v) { v = num<T>(); }
  void field(std::string& s) { s = str(); }
  template <class T>
  void field(std::vector<T>& v) { v = vec<T>(); }
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  [[noreturn]] void fail(const std::string& what) const { throw Error(file_ + ": " + what); }

 private:
  void need(std::size_t n) {
    if (remaining() < n) fail("file is truncated: it ends in the middle of the checkpoint data");
  }
  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::string file_;
};

void put(Writer& w, const ModelConfig& m) {
  w.i32(m.image_h);
  w.i32(m.image_w);
  w.i32(m.latent);
  w.count(m.hidden.size());
  for (int h : m.hidden) w.i32(h);
  w.u8(static_cast<std::uint8_t>(m.likelihood));
  w.num(m.gaussian_sigma);
  w.u8(static_cast<std::uint8_t>(m.family));
  w.i32(m.clusters);
  w.i32(m.image_c);  // from version 2
}

void put(Writer& w, const TrainConfig& t) {
  w.i32(t.batch);
  w.num(t.lr);
  w.num(t.beta);
  w.i32(t.warmup_steps);
  w.i32(t.samples);
  w.num(t.seed);
  w.i32(t.threads);
  w.u8(static_cast<std::uint8_t>(t.binarize));
  w.u8(static_cast<std::uint8_t>(t.estimator));
}

// Each history record's fields in file order. `io` is a Writer or a Reader, so one list serves both.
constexpr auto step_fields = [](auto& io, auto& s) {
  io.field(s.step);
  for (auto* f : {&s.epoch, &s.elbo, &s.recon, &s.kl}) io.field(*f);
};
constexpr auto epoch_fields = [](auto& io, auto& e) {
  io.field(e.epoch);
  io.field(e.step);
  for (auto* f : {&e.train_elbo, &e.test_elbo, &e.test_recon, &e.test_kl, &e.test_iwae, &e.test_iwae_elbo,
                  &e.samples_per_s, &e.cluster_acc, &e.nmi})
    io.field(*f);
  io.field(e.iwae_k);
  io.field(e.kl_per_dim);
};
constexpr auto marker_fields = [](auto& io, auto& m) {
  io.field(m.step);
  io.field(m.text);
};
constexpr auto estimator_fields = [](auto& io, auto& e) {
  io.field(e.step);
  for (auto* f : {&e.reparam_variance, &e.score_variance, &e.reparam_snr, &e.score_snr}) io.field(*f);
};

// A list: its length, then each entry's fields.
template <class List, class Fields>
void put_list(Writer& w, const List& list, Fields fields) {
  w.count(list.size());
  for (const auto& x : list) fields(w, x);
}

void put(Writer& w, const History& h) {
  put_list(w, h.steps, step_fields);
  put_list(w, h.epochs, epoch_fields);
  put_list(w, h.markers, marker_fields);
  put_list(w, h.estimators, estimator_fields);
}

// Smallest encoded sizes of one list entry, so a count can be checked before allocating.
constexpr std::size_t kStepBytes = 8 + 4 * 4;
constexpr std::size_t kEpochBytes = 4 + 8 + 9 * 4 + 4 + 8;
constexpr std::size_t kMarkerBytes = 8 + 8;
constexpr std::size_t kEstimatorBytes = 8 + 4 * 4;

template <class E>
E get_enum(Reader& r, std::uint8_t max, const char* what) {
  const std::uint8_t v = r.u8();
  if (v > max) r.fail("file is damaged: " + std::string(what) + " has the unknown value " + std::to_string(v));
  return static_cast<E>(v);
}

// Version 1 has no image_c: its models are all grey (C = 1, ModelConfig's default).
ModelConfig get_model(Reader& r, std::uint32_t version) {
  ModelConfig m;
  m.image_h = r.i32();
  m.image_w = r.i32();
  m.latent = r.i32();
  m.hidden.resize(r.count(4));
  for (int& h : m.hidden) h = r.i32();
  m.likelihood = get_enum<Likelihood>(r, static_cast<std::uint8_t>(Likelihood::GaussianLearned), "likelihood");
  m.gaussian_sigma = r.num<float>();
  m.family = get_enum<ModelFamily>(r, static_cast<std::uint8_t>(ModelFamily::Vade), "model family");
  m.clusters = r.i32();
  if (version >= 2) m.image_c = r.i32();
  return m;
}

TrainConfig get_train(Reader& r) {
  TrainConfig t;
  t.batch = r.i32();
  t.lr = r.num<float>();
  t.beta = r.num<float>();
  t.warmup_steps = r.i32();
  t.samples = r.i32();
  t.seed = r.num<std::uint64_t>();
  t.threads = r.i32();
  t.binarize = get_enum<Binarize>(r, static_cast<std::uint8_t>(Binarize::Dynamic), "binarization");
  t.estimator = get_enum<Estimator>(r, static_cast<std::uint8_t>(Estimator::ScoreFunction), "gradient estimator");
  return t;
}

// A list written by put_list; `min_bytes` is one entry's smallest encoded size.
template <class List, class Fields>
void get_list(Reader& r, List& list, std::size_t min_bytes, Fields fields) {
  for (std::size_t n = r.count(min_bytes); n > 0; --n) {
    typename List::value_type x;
    fields(r, x);
    list.push_back(x);
  }
}

History get_history(Reader& r) {
  History h;
  get_list(r, h.steps, kStepBytes, step_fields);
  get_list(r, h.epochs, kEpochBytes, epoch_fields);
  get_list(r, h.markers, kMarkerBytes, marker_fields);
  get_list(r, h.estimators, kEstimatorBytes, estimator_fields);
  return h;
}

std::uint32_t crc_of(const std::uint8_t* p, std::size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // crc32 takes a uInt length: feed large buffers in pieces.
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

std::uint32_t le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[3]} << 24);
}
std::uint64_t le64(const std::uint8_t* p) {
  return std::uint64_t{le32(p)} | (std::uint64_t{le32(p + 4)} << 32);
}

// Checks that the sizes fit together, so a loaded state can be used without further checks.
void check_consistent(const TrainingState& s, const std::function<void(const std::string&)>& fail) {
  try {
    validate(s.model);
  } catch (const Error& e) {
    fail(std::string("model settings are invalid: ") + e.what());
  }
  // Model(s.model) allocates every parameter the settings ask for, and settings that validate can
  // ask for tens of GiB: refuse a count that cannot match before building the model, so a small
  // damaged or hostile file cannot make a load allocate more than its own size (plus padding).
  const std::uint64_t least = parameter_count(s.model);  // Model(m).size() less its padding
  if (s.params.size() < least)
    fail("holds " + std::to_string(s.params.size()) + " parameters, but its model settings need at least " +
         std::to_string(least));
  const std::size_t n = Model(s.model).size();
  if (s.params.size() != n)
    fail("holds " + std::to_string(s.params.size()) + " parameters, but its model settings need " + std::to_string(n));
  const bool fresh = s.adam.m.empty() && s.adam.v.empty() && s.adam.t == 0;
  if (!fresh && (s.adam.m.size() != n || s.adam.v.size() != n))
    fail("optimiser state has " + std::to_string(s.adam.m.size()) + " and " + std::to_string(s.adam.v.size()) +
         " moments for " + std::to_string(n) + " parameters");
  if (s.step < 0 || s.epoch < 0 || s.batch_in_epoch < 0 || s.adam.t < 0) fail("progress counters are negative");
  for (std::int32_t i : s.order)
    if (i < 0) fail("example order contains the negative index " + std::to_string(i));
}

}  // namespace

void save_checkpoint(const std::filesystem::path& file, const TrainingState& state) {
  const std::vector<std::uint8_t> bytes = encode_checkpoint(state, file.string());
  write_file_atomically(file, bytes.data(), bytes.size());
}

std::vector<std::uint8_t> encode_checkpoint(const TrainingState& state, const std::string& name) {
  for (float p : state.params)
    if (!std::isfinite(p)) throw Error("cannot save '" + name + "': parameters contain NaN or Inf; not saving");
  check_consistent(state, [&](const std::string& what) {
    throw Error("cannot save '" + name + "': the training state " + what);
  });

  Writer w;
  w.raw(kMagic, sizeof kMagic);
  w.num(kCheckpointVersion);
  w.num(std::uint64_t{0});  // file size, patched below
  put(w, state.model);
  put(w, state.train);
  w.vec(state.params);
  w.num(state.adam.beta1);
  w.num(state.adam.beta2);
  w.num(state.adam.eps);
  w.num(state.adam.t);
  w.vec(state.adam.m);
  w.vec(state.adam.v);
  for (std::uint64_t s : state.rng.s) w.num(s);
  w.num(state.rng.spare);
  w.u8(state.rng.has_spare ? 1 : 0);
  w.num(state.step);
  w.i32(state.epoch);
  w.i32(state.batch_in_epoch);
  w.vec(state.order);
  put(w, state.history);
  w.str(state.data_name);

  auto& bytes = w.bytes();
  const std::uint64_t total = bytes.size() + kTrailer;
  for (int i = 0; i < 8; ++i) bytes[12 + i] = static_cast<std::uint8_t>(total >> (8 * i));
  w.num(crc_of(bytes.data(), bytes.size()));
  return std::move(bytes);
}

TrainingState load_checkpoint(const std::filesystem::path& file, const CancelFlag* cancel) {
  const std::vector<std::uint8_t> bytes =
      read_regular_file(file, "a checkpoint file", std::numeric_limits<std::uint64_t>::max(), cancel);
  return parse_checkpoint(bytes.data(), bytes.size(), file.string());
}

std::optional<CheckpointSettings> read_checkpoint_settings(const std::filesystem::path& file) {
  try {
    // The settings come right after the prefix; a few KB hold them whatever the hidden layers.
    RegularFile in(file, "a checkpoint file");
    std::vector<std::uint8_t> head(static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), 64 * 1024)));
    head.resize(in.read(head.data(), head.size()));
    if (head.size() < kPrefix || std::memcmp(head.data(), kMagic, sizeof kMagic) != 0) return std::nullopt;
    const std::uint32_t version = le32(head.data() + 8);
    if (version < kOldestCheckpointVersion || version > kCheckpointVersion) return std::nullopt;
    Reader r(head.data() + kPrefix, head.size() - kPrefix, file.string());
    CheckpointSettings s;
    s.model = get_model(r, version);
    s.train = get_train(r);
    validate(s.model);
    validate(s.train);
    return s;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

TrainingState parse_checkpoint(const std::uint8_t* bytes, std::size_t n, const std::string& name) {
  auto fail = [&](const std::string& what) -> void { throw Error(name + ": " + what); };
  auto too_short = [&] { fail("file is truncated: " + std::to_string(n) + " bytes is too short for a checkpoint"); };
  if (n == 0) fail("file is empty, not a vaelab checkpoint");
  if (std::memcmp(bytes, kMagic, std::min(n, sizeof kMagic)) != 0)
    fail("not a vaelab checkpoint (it does not start with VAELABCK)");
  if (n < sizeof kMagic + 4) too_short();
  const std::uint32_t version = le32(bytes + 8);
  if (version > kCheckpointVersion)
    fail("written by a newer vaelab (version " + std::to_string(version) + "); this build reads version " +
         std::to_string(kCheckpointVersion));
  if (version < kOldestCheckpointVersion) fail("unknown checkpoint version " + std::to_string(version));
  if (n < kPrefix + kTrailer) too_short();
  const std::uint64_t declared = le64(bytes + 12);
  if (declared > n)
    fail("file is truncated: it should be " + std::to_string(declared) + " bytes, found " + std::to_string(n));
  if (declared < n)
    fail("file has " + std::to_string(n - declared) + " unexpected byte(s) after the " + std::to_string(declared) +
         "-byte checkpoint");
  if (crc_of(bytes, n - kTrailer) != le32(bytes + n - kTrailer))
    fail("checksum mismatch: the file is damaged");

  Reader r(bytes + kPrefix, n - kPrefix - kTrailer, name);
  TrainingState s;
  s.model = get_model(r, version);
  s.train = get_train(r);
  s.params = r.vec<float>();
  s.adam.beta1 = r.num<float>();
  s.adam.beta2 = r.num<float>();
  s.adam.eps = r.num<float>();
  s.adam.t = r.num<std::int64_t>();
  s.adam.m = r.vec<float>();
  s.adam.v = r.vec<float>();
  for (auto& w : s.rng.s) w = r.num<std::uint64_t>();
  s.rng.spare = r.num<float>();
  const std::uint8_t spare = r.u8();
  if (spare > 1) r.fail("file is damaged: a flag has the value " + std::to_string(spare));
  s.rng.has_spare = spare == 1;
  s.step = r.num<std::int64_t>();
  s.epoch = r.i32();
  s.batch_in_epoch = r.i32();
  s.order = r.vec<std::int32_t>();
  s.history = get_history(r);
  s.data_name = r.str();
  if (r.remaining() != 0)
    r.fail("file is damaged: " + std::to_string(r.remaining()) + " bytes are left over after the checkpoint data");
  check_consistent(s, [&](const std::string& what) { fail("checkpoint " + what); });
  return s;
}

}  // namespace vaelab
