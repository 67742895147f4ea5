// What the trainer computes from a model on fixed images between training steps: the test-set part
// of an epoch's record (ELBO, IWAE, cluster scores), the clusters of images, and the chunked encoder
// pass it shares with the latent map and the cluster refit. Not the objective itself (core/objective.hpp) and no state.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include <Eigen/Core>

#include "core/data.hpp"
#include "core/history.hpp"
#include "core/model.hpp"
#include "core/objective.hpp"

namespace vaelab {

class ThreadPool;

// 0, 1, …, n − 1.
std::vector<int> first_indices(int n);

// Receives the codes of the images idx[lo .. lo + mu.cols()) from encode_in_chunks.
using ChunkCodes = std::function<void(int lo, const Eigen::MatrixXf& mu, const Eigen::MatrixXf& logvar)>;

// The cluster of each image idx of a clustering model: argmax_y p(y | z = μ(x)).
std::vector<int> assign_clusters(const Model& model, const ImageSet& images, const std::vector<int>& idx,
                                 ThreadPool* pool);

// Encodes images idx in chunks of kEncodeChunk, handing each chunk's codes to take. With a pool the
// chunks run in parallel, so take must write only its own chunk's outputs.
constexpr int kEncodeChunk = 1000;
void encode_in_chunks(const Model& model, const ImageSet& images, const std::vector<int>& idx, ThreadPool* pool,
                      const ChunkCodes& take);

// How an epoch end evaluates on the test set (TrainerOptions' eval_limit, eval_iwae_k, iwae_points).
struct TestEvaluation {
  int limit = 0;        // the first N test images; 0 = all
  int iwae_k = 0;       // IWAE_K as well; 0 = skip
  int iwae_points = 0;  // IWAE on the first N evaluated images only; 0 = all of them
  std::uint64_t seed = 0;
  const EvalProgress* iwae_progress = nullptr;  // reports and may cancel the IWAE evaluation
};

// Fills rec's test_* fields, kl_per_dim, and for a clustering model on labelled images the cluster
// scores. Nothing when the test set is empty. Returns false when the IWAE evaluation was cancelled
// (through how.iwae_progress): then test_iwae stays NaN and everything else is filled.
bool evaluate_test_set(const Model& model, const ImageSet& test, const TestEvaluation& how, ThreadPool* pool,
                       EpochRecord& rec);

}  // namespace vaelab
