// Scoring and baseline clustering for latent spaces: optimal assignment (Hungarian), unsupervised
// clustering accuracy, normalised mutual information and k-means (k-means++ seeding, Lloyd steps).
// Single-threaded and deterministic for a seed; not a general clustering library (no GMMs, no DBSCAN).
#pragma once
#include <cstdint>
#include <vector>

#include <Eigen/Core>

namespace vaelab {

// Minimum-cost one-to-one assignment for an (n, m) cost matrix, n ≤ m or n ≥ m, in O(min·min·max).
// Returns, for each row, its column, or −1 for the n − m rows left over when n > m. Costs must be
// finite (throws vaelab::Error otherwise). To maximise a score, pass its negation.
std::vector<int> hungarian_min_cost(const Eigen::MatrixXd& cost);

// The best one-to-one matching of clusters to labels and the fraction of points it gets right.
struct ClusterMatch {
  double accuracy = 0;                // in [0, 1]
  std::vector<int> cluster_to_label;  // (n_clusters); −1 for clusters left unmatched (n_clusters > n_classes)
};

// Unsupervised clustering accuracy: pred[i] ∈ [0, n_clusters), labels[i] ∈ [0, n_classes), same
// non-zero length (throws vaelab::Error otherwise). Hungarian on the negated contingency table, so
// with more clusters than classes only n_classes clusters can score.
ClusterMatch match_clusters(const std::vector<int>& pred, const std::vector<int>& labels, int n_clusters, int n_classes);
double cluster_accuracy(const std::vector<int>& pred, const std::vector<int>& labels, int n_clusters, int n_classes);

// NMI(pred, labels) = I(pred; labels) / ((H(pred) + H(labels)) / 2), natural logs (the base
// cancels), as scikit-learn's default "arithmetic" normalisation. Any integer values; same non-zero
// length (throws vaelab::Error otherwise). When both sides are a single cluster it is 1 (identical
// trivial partitions: 0/0 otherwise); when only one side is, I = 0 and so is NMI. Result in [0, 1].
double normalized_mutual_information(const std::vector<int>& pred, const std::vector<int>& labels);

struct KMeansResult {
  Eigen::MatrixXf centers;      // (d, k): the mean of each cluster's points
  std::vector<int> assignment;  // (N), each in [0, k)
  double inertia = 0;           // Σ ‖x_i − centers(:, assignment[i])‖², accumulated in double
  int iterations = 0;           // assignment steps of the returned restart
};

// k-means on the columns of points (d, N): k-means++ seeding from vaelab::Rng(seed), then Lloyd
// steps (assign to the nearest centre, then move centres to their means) until an assignment
// repeats the previous one, or max_iter assignment steps. A cluster left empty by an assignment
// takes the point farthest from its centre (among clusters of ≥ 2 points), so all k clusters are
// non-empty after every step. Needs 1 ≤ k ≤ N, max_iter ≥ 1, restarts ≥ 1 and finite points
// (throws vaelab::Error otherwise). Of `restarts` runs from one random stream, the lowest inertia
// wins (the first on ties). When max_iter stops a run early, centers are the means of the returned
// assignment but the assignment may not yet be nearest-centre; inertia is for the pair as returned,
// and never grows with max_iter.
KMeansResult kmeans(const Eigen::Ref<const Eigen::MatrixXf>& points, int k, std::uint64_t seed, int max_iter = 100,
                    int restarts = 1);

}  // namespace vaelab
