// Training history: the ELBO per step, the test evaluation per epoch, and markers where a
// setting changed. Kept by the trainer, copied into snapshots and saved in checkpoints.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace vaelab {

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

struct History {
  std::vector<StepRecord> steps;
  std::vector<EpochRecord> epochs;
  std::vector<ChangeMarker> markers;
  std::vector<EstimatorRecord> estimators;
  bool operator==(const History&) const = default;
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

}  // namespace vaelab
