// Training history: the ELBO per step, the test evaluation per epoch, and markers where a
// setting changed. Kept by the trainer, shared with snapshots chunk by chunk (ChunkedLog), saved
// in checkpoints. Not a time-series database: append, read by index, start again.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace vaelab {

// An append-only sequence kept as full chunks that are sealed (immutable, behind shared_ptr)
// plus one growing tail. Copying it shares the sealed chunks and copies only the tail, so the
// trainer can put the whole history into every snapshot (~20 a second) at a cost bounded by
// `Chunk` elements however long the run: a 10⁶-step history is ~1,000 pointer copies, not 20 MB.
// Elements never move once appended (until clear/resize), so pointers to them stay valid.
template <class T, std::size_t Chunk>
class ChunkedLog {
  static_assert(Chunk > 0);

 public:
  using value_type = T;
  using size_type = std::size_t;

  class const_iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = const T*;
    using reference = const T&;
    const_iterator() = default;
    const_iterator(const ChunkedLog* log, std::size_t i) : log_(log), i_(i) {}
    reference operator*() const { return (*log_)[i_]; }
    pointer operator->() const { return &(*log_)[i_]; }
    reference operator[](difference_type k) const { return (*log_)[i_ + k]; }
    const_iterator& operator++() { return ++i_, *this; }
    const_iterator operator++(int) { const_iterator t = *this; ++i_; return t; }
    const_iterator& operator--() { return --i_, *this; }
    const_iterator operator--(int) { const_iterator t = *this; --i_; return t; }
    const_iterator& operator+=(difference_type k) { return i_ += k, *this; }
    const_iterator& operator-=(difference_type k) { return i_ -= k, *this; }
    friend const_iterator operator+(const_iterator a, difference_type k) { return a += k; }
    friend const_iterator operator+(difference_type k, const_iterator a) { return a += k; }
    friend const_iterator operator-(const_iterator a, difference_type k) { return a -= k; }
    friend difference_type operator-(const const_iterator& a, const const_iterator& b) {
      return static_cast<difference_type>(a.i_) - static_cast<difference_type>(b.i_);
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) { return a.i_ == b.i_; }
    friend auto operator<=>(const const_iterator& a, const const_iterator& b) { return a.i_ <=> b.i_; }

   private:
    const ChunkedLog* log_ = nullptr;
    std::size_t i_ = 0;
  };

  ChunkedLog() = default;
  ChunkedLog(std::initializer_list<T> items) {
    for (const T& x : items) push_back(x);
  }

  std::size_t size() const { return sealed_.size() * Chunk + tail_.size(); }
  bool empty() const { return sealed_.empty() && tail_.empty(); }
  const T& operator[](std::size_t i) const {
    const std::size_t c = i / Chunk;
    return c < sealed_.size() ? (*sealed_[c])[i % Chunk] : tail_[i - sealed_.size() * Chunk];
  }
  const T& front() const { return (*this)[0]; }
  const T& back() const { return (*this)[size() - 1]; }
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size()}; }

  void push_back(const T& x) {
    if (tail_.capacity() < Chunk) tail_.reserve(Chunk);  // once per chunk, so elements never move
    tail_.push_back(x);
    if (tail_.size() == Chunk) {
      // Moving the vector keeps its buffer: pointers into the tail stay valid after sealing.
      sealed_.push_back(std::make_shared<const std::vector<T>>(std::move(tail_)));
      tail_ = std::vector<T>();
    }
  }
  void clear() {
    sealed_.clear();
    tail_ = std::vector<T>();
  }
  // Rare (tests, loading): rebuilds, so earlier copies keep what they had.
  void resize(std::size_t n) {
    ChunkedLog out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(i < size() ? (*this)[i] : T{});
    *this = std::move(out);
  }

  // How many chunks two logs hold in common (the same shared memory, not equal values): for
  // tests and for measuring what a copy costs.
  std::size_t shared_chunks_with(const ChunkedLog& o) const {
    std::size_t k = 0;
    while (k < sealed_.size() && k < o.sealed_.size() && sealed_[k] == o.sealed_[k]) ++k;
    return k;
  }
  static constexpr std::size_t chunk_size() { return Chunk; }

  friend bool operator==(const ChunkedLog& a, const ChunkedLog& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!(a[i] == b[i])) return false;
    return true;
  }

 private:
  std::vector<std::shared_ptr<const std::vector<T>>> sealed_;  // each exactly Chunk elements
  std::vector<T> tail_;                                        // fewer than Chunk elements
};

struct StepRecord {
  std::int64_t step = 0;
  float epoch = 0;  // fractional epoch at this step
  float elbo = 0;   // nats per example on the training batch
  float recon = 0;
  float kl = 0;
};

struct EpochRecord {
  int epoch = 0;  // 1-based: the epoch just finished (0: evaluation before training)
  std::int64_t step = 0;
  float train_elbo = std::numeric_limits<float>::quiet_NaN();  // mean over the epoch's batches
  float test_elbo = std::numeric_limits<float>::quiet_NaN();
  float test_recon = std::numeric_limits<float>::quiet_NaN();
  float test_kl = std::numeric_limits<float>::quiet_NaN();
  float test_iwae = std::numeric_limits<float>::quiet_NaN();  // NaN when not computed
  // The ELBO on the same images as test_iwae (a subset when TrainerOptions::iwae_points > 0), so
  // that test_iwae − test_iwae_elbo is the measured part of the variational gap.
  float test_iwae_elbo = std::numeric_limits<float>::quiet_NaN();
  int iwae_k = 0;
  float samples_per_s = 0;
  std::vector<float> kl_per_dim;  // on the test set
  // Clustering VAE with labels: accuracy of the best one-to-one cluster→label matching and
  // normalised mutual information, on the evaluated test images (NaN otherwise).
  float cluster_acc = std::numeric_limits<float>::quiet_NaN();
  float nmi = std::numeric_limits<float>::quiet_NaN();
};

// Gradient variance of the two encoder estimators on one batch (sum of per-parameter variances).
struct EstimatorRecord {
  std::int64_t step = 0;
  float reparam_variance = 0;
  float score_variance = 0;
  float reparam_snr = 0;  // mean |mean| / sd over encoder parameters
  float score_snr = 0;
};

// "β 1 → 0.5 at step 1200": drawn as a vertical marker on the curves.
struct ChangeMarker {
  std::int64_t step = 0;
  std::string text;
};

inline bool operator==(const StepRecord& a, const StepRecord& b) {
  return a.step == b.step && a.epoch == b.epoch && a.elbo == b.elbo && a.recon == b.recon && a.kl == b.kl;
}
inline bool same_float(float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); }
inline bool operator==(const EpochRecord& a, const EpochRecord& b) {
  return a.epoch == b.epoch && a.step == b.step && same_float(a.train_elbo, b.train_elbo) &&
         same_float(a.test_elbo, b.test_elbo) && same_float(a.test_recon, b.test_recon) &&
         same_float(a.test_kl, b.test_kl) && same_float(a.test_iwae, b.test_iwae) &&
         same_float(a.test_iwae_elbo, b.test_iwae_elbo) && a.iwae_k == b.iwae_k &&
         same_float(a.samples_per_s, b.samples_per_s) && a.kl_per_dim == b.kl_per_dim &&
         same_float(a.cluster_acc, b.cluster_acc) && same_float(a.nmi, b.nmi);
}
inline bool operator==(const EstimatorRecord& a, const EstimatorRecord& b) {
  return a.step == b.step && a.reparam_variance == b.reparam_variance && a.score_variance == b.score_variance &&
         a.reparam_snr == b.reparam_snr && a.score_snr == b.score_snr;
}
inline bool operator==(const ChangeMarker& a, const ChangeMarker& b) { return a.step == b.step && a.text == b.text; }

// Copying a History (into each snapshot) shares every sealed chunk. Steps grow ~300 a second
// while training, so their chunks are large; the others grow once per epoch or setting change,
// and small chunks keep the copied tail (an epoch carries its per-dimension KL) short.
struct History {
  ChunkedLog<StepRecord, 1024> steps;
  ChunkedLog<EpochRecord, 8> epochs;
  ChunkedLog<ChangeMarker, 8> markers;
  ChunkedLog<EstimatorRecord, 8> estimators;
  bool operator==(const History&) const = default;
};

}  // namespace vaelab
