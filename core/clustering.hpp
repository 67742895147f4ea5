// Scoring and baseline clustering for latent spaces: optimal assignment (Hungarian), unsupervised
// clustering accuracy, normalised mutual information, k-means (k-means++ seeding, Lloyd steps), and
// the events between two assignments (a cluster emptied or merged). Single-threaded and deterministic
// for a seed; not a general clustering library (no GMMs, no DBSCAN).
#pragma once
#include <cstdint>
#include <string>
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

// The contingency table of clusters × labels: (n_clusters, n_classes) counts of points. pred[i] ∈
// [0, n_clusters), labels[i] ∈ [0, n_classes), same non-zero length (throws vaelab::Error otherwise).
Eigen::MatrixXd cluster_label_counts(const std::vector<int>& pred, const std::vector<int>& labels, int n_clusters,
                                     int n_classes);

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

// What happened to one cluster between two assignments of the same points.
enum class ClusterEventKind : std::uint8_t {
  Emptied,  // it held points and now holds none (and did not merge)
  Merged,   // it held ≥ kMergeMinShare of all points, kept ≤ kMergeKeepAtMost of its own, and more
            // than kMergeToOneMoreThan of them went to one other cluster that held ≥ kMergeMinShare too
};
struct ClusterEvent {
  ClusterEventKind kind = ClusterEventKind::Emptied;
  int cluster = 0;
  int into = -1;     // Merged: the cluster most of its points went to; −1 otherwise
  int held = 0;      // its points in the previous assignment
  int moved = 0;     // Merged: how many of them went to `into`; 0 otherwise
  bool operator==(const ClusterEvent&) const = default;
};
inline constexpr double kMergeMinShare = 0.01;      // of all points: smaller clusters only empty
inline constexpr double kMergeKeepAtMost = 0.1;     // of its own points: "lost almost all"
inline constexpr double kMergeToOneMoreThan = 0.5;  // of its own points: "mostly to one cluster"

// The clusters that emptied or merged from `previous` to `current` (cluster ids in [0, n_clusters)
// of the same points in the same order), in cluster order, at most one event per cluster. A cluster
// that gives its points to several clusters (a split) or to a cluster that held almost nothing (a
// renaming) has not merged; if it is left empty it has emptied. Throws vaelab::Error for lengths
// that differ, n_clusters < 1 or ids out of range.
std::vector<ClusterEvent> cluster_events(const std::vector<int>& previous, const std::vector<int>& current,
                                         int n_clusters);
// "cluster 3 emptied (it held 57 points)", "cluster 7 merged into cluster 2 (880 of its 912 points)",
// clusters numbered from 1 as the app shows them (cluster id + 1).
std::string describe(const ClusterEvent& event);

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
