// The trainer's evaluations on fixed images (see evaluation.hpp). Not the ELBO and IWAE estimators
// themselves: those are core/objective.cpp's evaluate().
#include "core/evaluation.hpp"

#include <algorithm>
#include <numeric>

#include "core/clustering.hpp"
#include "core/objective.hpp"
#include "core/thread_pool.hpp"

namespace vaelab {

namespace {

// The cluster of each image idx, scored against the labels.
void score_clusters(const Model& model, const ImageSet& test, const std::vector<int>& idx, EpochRecord& rec) {
  const int n = static_cast<int>(idx.size());
  std::vector<int> labels(n);
  int n_classes = 0;
  for (int i = 0; i < n; ++i) {
    labels[i] = test.labels[idx[i]];
    n_classes = std::max(n_classes, labels[i] + 1);
  }
  const std::vector<int> pred = assign_clusters(model, test, idx, nullptr);
  rec.cluster_acc = static_cast<float>(cluster_accuracy(pred, labels, model.clusters(), n_classes));
  rec.nmi = static_cast<float>(normalized_mutual_information(pred, labels));
}

// IWAE on the first `points` of the evaluated images, with the ELBO on the same images for the gap.
void evaluate_iwae_subset(const Model& model, const ImageSet& test, const std::vector<int>& idx, int points,
                          EvalOptions eo, ThreadPool* pool, EpochRecord& rec) {
  std::vector<int> sub(points);
  for (int i = 0; i < points; ++i) sub[i] = idx.empty() ? i : idx[i];
  const Evaluation iv = evaluate(model, test, sub, eo, pool);
  rec.test_iwae = static_cast<float>(iv.iwae);
  rec.test_iwae_elbo = static_cast<float>(iv.elbo);
}

}  // namespace

std::vector<int> first_indices(int n) {
  std::vector<int> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  return idx;
}

std::vector<int> assign_clusters(const Model& model, const ImageSet& images, const std::vector<int>& idx,
                                 ThreadPool* pool) {
  std::vector<int> cluster(idx.size());
  encode_in_chunks(model, images, idx, pool, [&](int lo, const Eigen::MatrixXf& mu, const Eigen::MatrixXf&) {
    Eigen::MatrixXf probs;
    model.classify(mu, probs);
    for (Eigen::Index b = 0; b < probs.cols(); ++b) probs.col(b).maxCoeff(&cluster[static_cast<std::size_t>(lo + b)]);
  });
  return cluster;
}

void encode_in_chunks(const Model& model, const ImageSet& images, const std::vector<int>& idx, ThreadPool* pool,
                      const ChunkCodes& take) {
  const int n = static_cast<int>(idx.size()), chunks = (n + kEncodeChunk - 1) / kEncodeChunk;
  auto encode_chunk = [&](int c) {
    const int lo = c * kEncodeChunk, count = std::min(kEncodeChunk, n - lo);
    Eigen::MatrixXf x(model.config().input_dim(), count), mu, logvar;
    gather_batch(images, idx.data() + lo, count, Binarize::None, nullptr, x);
    model.encode(x, mu, logvar);
    take(lo, mu, logvar);
  };
  if (pool) {
    pool->run(chunks, encode_chunk);
  } else {
    for (int c = 0; c < chunks; ++c) encode_chunk(c);
  }
}

bool evaluate_test_set(const Model& model, const ImageSet& test, const TestEvaluation& how, ThreadPool* pool,
                       EpochRecord& rec) {
  if (test.count == 0) return true;
  // An empty list means every image (evaluate() takes it so).
  const std::vector<int> idx = how.limit > 0 && how.limit < test.count ? first_indices(how.limit) : std::vector<int>{};
  const int n_eval = idx.empty() ? test.count : static_cast<int>(idx.size());
  const bool iwae_subset = how.iwae_points > 0 && how.iwae_points < n_eval;
  EvalOptions eo;
  eo.samples = 1;
  eo.seed = how.seed;
  if (!iwae_subset && how.iwae_k > 0) {
    eo.iwae_k = how.iwae_k;
    eo.progress = how.iwae_progress;
  }
  bool iwae_done = true;
  Evaluation ev;
  try {
    ev = evaluate(model, test, idx, eo, pool);
  } catch (const EvaluationCancelled&) {  // the ELBO without the IWAE, then
    iwae_done = false;
    eo.iwae_k = 0;
    eo.progress = nullptr;
    ev = evaluate(model, test, idx, eo, pool);
  }
  rec.test_elbo = static_cast<float>(ev.elbo);
  rec.test_recon = static_cast<float>(ev.recon);
  rec.test_kl = static_cast<float>(ev.kl);
  if (how.iwae_k > 0 && iwae_done) {
    rec.iwae_k = how.iwae_k;
    if (iwae_subset) {
      eo.iwae_k = how.iwae_k;
      eo.progress = how.iwae_progress;
      try {
        evaluate_iwae_subset(model, test, idx, how.iwae_points, eo, pool, rec);
      } catch (const EvaluationCancelled&) {
        iwae_done = false;
      }
    } else {
      rec.test_iwae = static_cast<float>(ev.iwae);
      rec.test_iwae_elbo = rec.test_elbo;
    }
  }
  rec.kl_per_dim.assign(ev.kl_per_dim.begin(), ev.kl_per_dim.end());
  if (model.clusters() > 0 && test.has_labels())
    score_clusters(model, test, idx.empty() ? first_indices(test.count) : idx, rec);
  return iwae_done;
}

}  // namespace vaelab
