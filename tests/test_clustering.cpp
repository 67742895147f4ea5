// Tests of core/clustering: the Hungarian assignment against brute force, clustering accuracy and
// NMI on hand-built tables, k-means on separable blobs, duplicates and truncated runs, the events
// between two assignments (emptied, merged, split, renamed), and the
// clustering VAE's fit of its cluster Gaussians to codes, and its exact mixture prior in the IWAE
// bound and the true posterior.
// Not a benchmark: the 70,000 × 784 timing lives outside the suite.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include <Eigen/Core>

#include "core/clustering.hpp"
#include "core/data.hpp"
#include "core/error.hpp"
#include "core/gap.hpp"
#include "core/model.hpp"
#include "core/objective.hpp"
#include "core/rng.hpp"
#include "support.hpp"

using namespace vaelab;

namespace {

ModelConfig small_plain_config() {
  ModelConfig cfg;
  cfg.image_h = cfg.image_w = 4;
  cfg.latent = 2;
  cfg.hidden = {8};
  return cfg;
}

double assignment_cost(const Eigen::MatrixXd& cost, const std::vector<int>& rows_to_cols) {
  double s = 0;
  for (std::size_t r = 0; r < rows_to_cols.size(); ++r)
    if (rows_to_cols[r] >= 0) s += cost(static_cast<Eigen::Index>(r), rows_to_cols[r]);
  return s;
}

// Minimum over all injective maps of the smaller side into the larger.
double brute_force_min(const Eigen::MatrixXd& cost) {
  const bool wide = cost.rows() <= cost.cols();
  const Eigen::MatrixXd a = wide ? cost : Eigen::MatrixXd(cost.transpose());
  std::vector<int> perm(static_cast<std::size_t>(a.cols()));
  std::iota(perm.begin(), perm.end(), 0);
  double best = std::numeric_limits<double>::infinity();
  do {
    double s = 0;
    for (Eigen::Index r = 0; r < a.rows(); ++r) s += a(r, perm[static_cast<std::size_t>(r)]);
    best = std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

// A valid assignment: min(n, m) rows matched, to distinct columns in range, the rest −1.
void check_injective(const std::vector<int>& a, Eigen::Index n, Eigen::Index m) {
  REQUIRE(a.size() == static_cast<std::size_t>(n));
  std::set<int> used;
  Eigen::Index matched = 0;
  for (const int c : a) {
    if (c < 0) {
      CHECK(c == -1);
      continue;
    }
    CHECK(c < m);
    CHECK(used.insert(c).second);
    ++matched;
  }
  CHECK(matched == std::min(n, m));
}

// n points per blob around centres spaced `spacing` apart on the axes, N(0, σ²) noise.
Eigen::MatrixXf blobs(int d, int k, int n, float spacing, float sigma, std::uint64_t seed, std::vector<int>& truth) {
  Rng rng(seed);
  Eigen::MatrixXf X(d, k * n);
  truth.assign(static_cast<std::size_t>(k * n), 0);
  for (int i = 0; i < k * n; ++i) {
    const int c = i % k;
    truth[static_cast<std::size_t>(i)] = c;
    for (int r = 0; r < d; ++r) X(r, i) = sigma * rng.normal() + (r == c % d ? spacing * static_cast<float>(1 + c / d) : 0.0f);
  }
  return X;
}

// An assignment of `sizes[c]` points to each cluster c, in cluster order.
std::vector<int> assignment_of_sizes(const std::vector<int>& sizes) {
  std::vector<int> out;
  for (std::size_t c = 0; c < sizes.size(); ++c) out.insert(out.end(), static_cast<std::size_t>(sizes[c]), static_cast<int>(c));
  return out;
}

// `v` with its points [lo, hi) moved to cluster `to`.
std::vector<int> moved_to_cluster(std::vector<int> v, std::size_t lo, std::size_t hi, int to) {
  std::fill(v.begin() + static_cast<std::ptrdiff_t>(lo), v.begin() + static_cast<std::ptrdiff_t>(hi), to);
  return v;
}

// The one event between two assignments (the test fails unless there is exactly one).
ClusterEvent only_cluster_event(const std::vector<int>& before, const std::vector<int>& after, int n_clusters) {
  const std::vector<ClusterEvent> events = cluster_events(before, after, n_clusters);
  REQUIRE(events.size() == 1);
  return events[0];
}

}  // namespace

TEST_CASE("clustering: Hungarian equals brute force on random square and rectangular matrices") {
  Rng rng(2024);
  for (int n = 1; n <= 6; ++n) {
    for (int m = 1; m <= 6; ++m) {
      for (int trial = 0; trial < 12; ++trial) {
        Eigen::MatrixXd cost(n, m);
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < m; ++j) {
            // Odd trials: small integers, so many optimal assignments tie.
            const double u = static_cast<double>(rng.uniform());
            cost(i, j) = trial % 2 ? std::floor(4 * u) : 20 * u - 10;
          }
        const std::vector<int> a = hungarian_min_cost(cost);
        CAPTURE(n);
        CAPTURE(m);
        CAPTURE(trial);
        check_injective(a, n, m);
        CHECK(assignment_cost(cost, a) == doctest::Approx(brute_force_min(cost)).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("clustering: Hungarian edge cases") {
  CHECK(hungarian_min_cost(Eigen::MatrixXd(0, 3)).empty());
  CHECK(hungarian_min_cost(Eigen::MatrixXd(2, 0)) == std::vector<int>{-1, -1});
  Eigen::MatrixXd c(2, 2);
  c << 1, 2, 3, 4;
  CHECK(assignment_cost(c, hungarian_min_cost(c)) == 5.0);  // 2 + 3 = 1 + 4: either is optimal
  c(0, 0) = 0;  // now only the diagonal reaches 4
  CHECK(hungarian_min_cost(c) == std::vector<int>{0, 1});
  c(1, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(hungarian_min_cost(c), Error);
  // Large spread of magnitudes: potentials must not lose the small costs.
  Eigen::MatrixXd big(3, 3);
  big << 1e9, 1, 2, 3, 1e9, 1, 1, 2, 1e9;
  CHECK(hungarian_min_cost(big) == std::vector<int>{1, 2, 0});
}

TEST_CASE("clustering: accuracy of a relabelled perfect clustering is 1 and the mapping inverts it") {
  Rng rng(7);
  const std::vector<int> relabel = {3, 0, 4, 1, 2};  // class c → cluster relabel[c]
  std::vector<int> labels(500), pred(500);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    labels[i] = static_cast<int>(rng.below(5));
    pred[i] = relabel[static_cast<std::size_t>(labels[i])];
  }
  const ClusterMatch m = match_clusters(pred, labels, 5, 5);
  CHECK(m.accuracy == 1.0);
  for (int c = 0; c < 5; ++c) CHECK(m.cluster_to_label[static_cast<std::size_t>(relabel[static_cast<std::size_t>(c)])] == c);
  CHECK(cluster_accuracy(pred, labels, 5, 5) == 1.0);
}

TEST_CASE("clustering: accuracy on constructed confusion tables, where greedy matching is wrong") {
  // Expand a (clusters, classes) table of counts into pred / label vectors.
  auto expand = [](const std::vector<std::vector<int>>& table, std::vector<int>& pred, std::vector<int>& labels) {
    pred.clear();
    labels.clear();
    for (std::size_t c = 0; c < table.size(); ++c)
      for (std::size_t l = 0; l < table[c].size(); ++l)
        for (int t = 0; t < table[c][l]; ++t) {
          pred.push_back(static_cast<int>(c));
          labels.push_back(static_cast<int>(l));
        }
  };
  std::vector<int> pred, labels;

  // Greedy (each cluster to its majority class) sends clusters 0 and 1 both to class 0.
  expand({{6, 5, 0}, {6, 0, 0}, {0, 0, 4}}, pred, labels);
  ClusterMatch m = match_clusters(pred, labels, 3, 3);
  CHECK(m.accuracy == doctest::Approx(15.0 / 21.0));
  CHECK(m.cluster_to_label == std::vector<int>{1, 0, 2});

  // More clusters than classes: only two clusters can score.
  expand({{3, 0}, {0, 2}, {1, 1}, {0, 4}}, pred, labels);
  m = match_clusters(pred, labels, 4, 2);
  CHECK(m.accuracy == doctest::Approx(7.0 / 11.0));
  CHECK(m.cluster_to_label == std::vector<int>{0, -1, -1, 1});

  // Fewer clusters than classes; an unused class index (3) is allowed.
  expand({{2, 5, 1, 0}, {4, 4, 0, 0}}, pred, labels);
  m = match_clusters(pred, labels, 2, 4);
  CHECK(m.accuracy == doctest::Approx(9.0 / 16.0));
  CHECK(m.cluster_to_label == std::vector<int>{1, 0});

  CHECK_THROWS_AS(cluster_accuracy({0, 1}, {0}, 2, 2), Error);
  CHECK_THROWS_AS(cluster_accuracy({0, 2}, {0, 1}, 2, 2), Error);
  CHECK_THROWS_AS(cluster_accuracy({0, 1}, {0, -1}, 2, 2), Error);
  CHECK_THROWS_AS(cluster_accuracy({}, {}, 2, 2), Error);
}

TEST_CASE("clustering: NMI is 1 for permuted labels, ~0 for independent ones, and matches a hand computation") {
  Rng rng(11);
  std::vector<int> labels(1000), pred(1000);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    labels[i] = static_cast<int>(rng.below(7));
    pred[i] = 100 - 13 * labels[i];  // any values, including negative ones
  }
  CHECK(normalized_mutual_information(pred, labels) == doctest::Approx(1.0).epsilon(1e-12));

  // Independent labellings: the plug-in MI is biased up by about (Kp − 1)(Kl − 1) / 2N nats.
  std::vector<int> a(200000), b(200000);
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<int>(rng.below(10));
    b[i] = static_cast<int>(rng.below(10));
  }
  const double nmi_indep = normalized_mutual_information(a, b);
  CHECK(nmi_indep >= 0.0);
  CHECK(nmi_indep < 1e-3);

  // pred = {0,0,1,1}, labels = {0,0,0,1}: joint counts {(0,0): 2, (1,0): 1, (1,1): 1}.
  const double mi = 0.5 * std::log(4.0 / 3.0) + 0.25 * std::log(2.0 / 3.0) + 0.25 * std::log(2.0);
  const double h_pred = std::log(2.0);
  const double h_labels = std::log(4.0) - 0.75 * std::log(3.0);
  const double expected = mi / (0.5 * (h_pred + h_labels));
  CHECK(expected == doctest::Approx(0.343711).epsilon(1e-5));
  CHECK(normalized_mutual_information({0, 0, 1, 1}, {0, 0, 0, 1}) == doctest::Approx(expected).epsilon(1e-12));
  CHECK(normalized_mutual_information({0, 0, 0, 1}, {0, 0, 1, 1}) == doctest::Approx(expected).epsilon(1e-12));

  // Degenerate sides: both one cluster is a perfect match; one side alone carries no information.
  CHECK(normalized_mutual_information({5, 5, 5}, {2, 2, 2}) == 1.0);
  CHECK(normalized_mutual_information({5, 5, 5}, {0, 1, 2}) == 0.0);
  CHECK(normalized_mutual_information({0, 1, 2}, {0, 1, 2}) == doctest::Approx(1.0));
  CHECK_THROWS_AS(normalized_mutual_information({}, {}), Error);
  CHECK_THROWS_AS(normalized_mutual_information({0}, {0, 1}), Error);
}

TEST_CASE("clustering: k-means recovers well-separated blobs and is deterministic for a seed") {
  std::vector<int> truth;
  const Eigen::MatrixXf X = blobs(6, 5, 80, 12.0f, 1.0f, 99, truth);
  const KMeansResult r = kmeans(X, 5, 1234, 100, 3);
  REQUIRE(r.centers.rows() == 6);
  REQUIRE(r.centers.cols() == 5);
  REQUIRE(r.assignment.size() == truth.size());
  CHECK(cluster_accuracy(r.assignment, truth, 5, 5) == 1.0);
  CHECK(r.iterations < 100);

  // Converged: every point is at its nearest centre, and the reported inertia is the direct sum.
  double inertia = 0;
  for (Eigen::Index i = 0; i < X.cols(); ++i) {
    const Eigen::Index own = r.assignment[static_cast<std::size_t>(i)];
    Eigen::Index nearest = 0;
    (r.centers.colwise() - X.col(i)).colwise().squaredNorm().minCoeff(&nearest);
    CHECK(nearest == own);
    inertia += static_cast<double>((X.col(i) - r.centers.col(own)).squaredNorm());
  }
  CHECK(r.inertia == doctest::Approx(inertia).epsilon(1e-5));
  // About d·σ² per point around the true means.
  CHECK(r.inertia / static_cast<double>(X.cols()) == doctest::Approx(6.0).epsilon(0.15));

  const KMeansResult again = kmeans(X, 5, 1234, 100, 3);
  CHECK(again.assignment == r.assignment);
  CHECK(again.centers == r.centers);
  CHECK(again.inertia == r.inertia);
  CHECK(again.iterations == r.iterations);
}

TEST_CASE("clustering: k-means inertia never grows with max_iter, and restarts keep the best") {
  // Overlapping blobs in 2-D with more centres than blobs: many Lloyd steps before it settles.
  std::vector<int> truth;
  const Eigen::MatrixXf X = blobs(2, 6, 300, 3.0f, 1.5f, 5, truth);
  double previous = std::numeric_limits<double>::infinity();
  int strict_drops = 0;
  KMeansResult last;
  for (int max_iter = 1; max_iter <= 60; ++max_iter) {
    last = kmeans(X, 9, 77, max_iter);
    CAPTURE(max_iter);
    CHECK(last.iterations <= max_iter);
    CHECK(last.inertia <= previous * (1 + 1e-9));
    if (last.inertia < previous * (1 - 1e-9)) ++strict_drops;
    previous = last.inertia;
  }
  CHECK(strict_drops >= 3);
  const KMeansResult full = kmeans(X, 9, 77, 1000);
  CHECK(full.iterations < 1000);
  if (full.iterations <= 60) CHECK(full.assignment == last.assignment);

  // Restart 0 of a multi-restart run is the single run, so the best can only be as good or better.
  const KMeansResult one = kmeans(X, 9, 77, 1000, 1);
  const KMeansResult five = kmeans(X, 9, 77, 1000, 5);
  CHECK(five.inertia <= one.inertia);
}

TEST_CASE("clustering: k-means fills empty clusters when k exceeds the distinct points") {
  // 12 points on 3 sites; k = 5 must put some sites' copies into two clusters.
  Eigen::MatrixXf X(2, 12);
  for (int i = 0; i < 12; ++i) {
    const int site = i % 3;
    X(0, i) = static_cast<float>(10 * site);
    X(1, i) = static_cast<float>(-4 * site);
  }
  for (const std::uint64_t seed : {1u, 2u, 3u, 4u}) {
    const KMeansResult r = kmeans(X, 5, seed, 50);
    CAPTURE(seed);
    std::vector<int> counts(5, 0);
    for (const int a : r.assignment) {
      REQUIRE(a >= 0);
      REQUIRE(a < 5);
      ++counts[static_cast<std::size_t>(a)];
    }
    for (const int c : counts) CHECK(c >= 1);
    CHECK(r.inertia == 0.0);
    CHECK(r.iterations < 50);
    for (Eigen::Index i = 0; i < 12; ++i) CHECK(r.centers.col(r.assignment[static_cast<std::size_t>(i)]) == X.col(i));
  }

  // k = N, all points identical: one point per cluster.
  const Eigen::MatrixXf same = Eigen::MatrixXf::Constant(3, 7, 0.5f);
  const KMeansResult r = kmeans(same, 7, 9);
  std::vector<int> sorted = r.assignment;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<int>{0, 1, 2, 3, 4, 5, 6});
  CHECK(r.inertia == 0.0);

  CHECK(kmeans(same, 1, 9).assignment == std::vector<int>(7, 0));
  CHECK_THROWS_AS(kmeans(same, 8, 9), Error);
  CHECK_THROWS_AS(kmeans(same, 0, 9), Error);
  CHECK_THROWS_AS(kmeans(same, 2, 9, 0), Error);
  Eigen::MatrixXf bad = same;
  bad(1, 3) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(kmeans(bad, 2, 9), Error);
}

TEST_CASE("clustering: the contingency table counts clusters × labels and refuses bad input") {
  const Eigen::MatrixXd t = cluster_label_counts({0, 0, 1, 2, 2, 2}, {1, 1, 0, 0, 1, 1}, 3, 2);
  Eigen::MatrixXd expected(3, 2);
  expected << 0, 2, 1, 0, 1, 2;
  CHECK(t == expected);
  CHECK_THROWS_AS(cluster_label_counts({0, 3}, {0, 0}, 3, 2), Error);
  CHECK_THROWS_AS(cluster_label_counts({0, 1}, {0, 2}, 3, 2), Error);
  CHECK_THROWS_AS(cluster_label_counts({0}, {0, 0}, 3, 2), Error);
}

TEST_CASE("clustering: no cluster events when nothing changes or points only trade places") {
  const std::vector<int> a = assignment_of_sizes({300, 200, 0, 500});
  CHECK(cluster_events(a, a, 4).empty());
  // 10 points of each of clusters 0 and 1 swap: both keep most of their points.
  std::vector<int> b = a;
  for (int i = 0; i < 10; ++i) std::swap(b[static_cast<std::size_t>(i)], b[static_cast<std::size_t>(300 + i)]);
  CHECK(cluster_events(a, b, 4).empty());
  // A cluster that was empty and stays empty is not news.
  CHECK(cluster_events(assignment_of_sizes({5, 0}), assignment_of_sizes({5, 0}), 2).empty());
}

TEST_CASE("clustering: a cluster that loses its points to several clusters has emptied, not merged") {
  const std::vector<int> before = assignment_of_sizes({400, 300, 300});
  std::vector<int> after = before;
  for (std::size_t i = 0; i < 400; ++i) after[i] = i % 2 ? 1 : 2;  // cluster 0 spreads evenly over 1 and 2
  const ClusterEvent e = only_cluster_event(before, after, 3);
  CHECK(e == ClusterEvent{ClusterEventKind::Emptied, 0, -1, 400, 0});
  CHECK(describe(e) == "cluster 1 emptied (it held 400 points)");  // numbered from 1
}

TEST_CASE("clustering: a cluster that hands almost all its points to one other cluster has merged into it") {
  const std::vector<int> before = assignment_of_sizes({500, 0, 300, 912, 288});
  // Cluster 3 (points 800 … 1711): 880 to cluster 2, 20 to cluster 4, 12 stay.
  const std::vector<int> after = moved_to_cluster(moved_to_cluster(before, 800, 1680, 2), 1680, 1700, 4);
  const ClusterEvent e = only_cluster_event(before, after, 5);
  CHECK(e == ClusterEvent{ClusterEventKind::Merged, 3, 2, 912, 880});
  CHECK(describe(e) == "cluster 4 merged into cluster 3 (880 of its 912 points)");
  // Emptied by a merge: said once, as the merge.
  const ClusterEvent emptied = only_cluster_event(before, moved_to_cluster(after, 1700, 1712, 2), 5);
  CHECK(emptied == ClusterEvent{ClusterEventKind::Merged, 3, 2, 912, 892});
}

TEST_CASE("clustering: a split is not a merge, and neither is a tiny cluster or a renaming") {
  // Cluster 0 splits in two: half of it forms the new cluster 1. It keeps half: no event.
  const std::vector<int> before = assignment_of_sizes({600, 0, 400});
  CHECK(cluster_events(before, moved_to_cluster(before, 0, 300, 1), 3).empty());
  // A cluster of under 1 % of the points that joins another has emptied; it is too small to merge.
  const ClusterEvent gone = only_cluster_event(assignment_of_sizes({995, 5}), std::vector<int>(1000, 0), 2);
  CHECK(gone == ClusterEvent{ClusterEventKind::Emptied, 1, -1, 5, 0});
  // All of cluster 0 moves to the empty cluster 1: a new name, not a merge; cluster 0 has emptied.
  const ClusterEvent renamed = only_cluster_event(before, moved_to_cluster(before, 0, 600, 1), 3);
  CHECK(renamed == ClusterEvent{ClusterEventKind::Emptied, 0, -1, 600, 0});
}

TEST_CASE("clustering: cluster events refuse assignments of different points or out of range") {
  CHECK_THROWS_AS(cluster_events({0, 1, 1}, {0, 1}, 2), Error);
  CHECK_THROWS_AS(cluster_events({0, 2}, {0, 1}, 2), Error);
  CHECK_THROWS_AS(cluster_events({0, 1}, {-1, 1}, 2), Error);
  CHECK_THROWS_AS(cluster_events({0}, {0}, 0), Error);
  CHECK(cluster_events({}, {}, 3).empty());
  CHECK(cluster_events({0, 0}, {0, 0}, 1).empty());
}

TEST_CASE("clustering: the clustering VAE's cluster Gaussians fitted to blobs of codes match their moments") {
  // Three blobs in 2-D with known centres and spreads, each code with its own q variance.
  ModelConfig cfg;
  cfg.image_h = cfg.image_w = 4;
  cfg.latent = 2;
  cfg.hidden = {8};
  cfg.family = ModelFamily::Gmvae;
  cfg.clusters = 3;
  Model model(cfg);
  model.init(3);
  const Eigen::Matrix<float, 2, 3> centre = (Eigen::Matrix<float, 2, 3>() << -10, 0, 10, 5, -5, 5).finished();
  const Eigen::Vector3f spread(0.5f, 1.0f, 2.0f), q_var(0.1f, 0.2f, 0.4f);
  const int per = 400;
  Eigen::MatrixXf mu(2, 3 * per), lv(2, 3 * per);
  Rng rng(11);
  for (int y = 0; y < 3; ++y)
    for (int i = 0; i < per; ++i) {
      const int c = y * per + i;
      for (int j = 0; j < 2; ++j) {
        mu(j, c) = centre(j, y) + spread(y) * rng.normal();
        lv(j, c) = std::log(q_var(y)) + 0.1f * rng.normal();
      }
    }
  const ParamVector before = model.params();
  fit_clusters_to_codes(model, mu, lv, 5);
  const Eigen::Map<const Eigen::MatrixXf> means(model.data() + model.cluster_mean_offset(), 2, 3);
  const Eigen::Map<const Eigen::MatrixXf> logvars(model.data() + model.cluster_logvar_offset(), 2, 3);
  for (int y = 0; y < 3; ++y) {
    // Whichever cluster index k-means gave blob y, its Gaussian sits on the blob.
    Eigen::Index k = 0;
    (means.colwise() - centre.col(y)).colwise().squaredNorm().minCoeff(&k);
    const Eigen::Map<const Eigen::MatrixXf> blob_mu(mu.data() + 2 * y * per, 2, per), blob_lv(lv.data() + 2 * y * per, 2, per);
    for (int j = 0; j < 2; ++j) {
      const double m = blob_mu.row(j).cast<double>().mean();
      const double var = (blob_mu.row(j).cast<double>().array() - m).square().mean() +
                         blob_lv.row(j).cast<double>().array().exp().mean();
      CHECK(means(j, k) == doctest::Approx(m).epsilon(1e-4));
      CHECK(logvars(j, k) == doctest::Approx(std::log(var)).epsilon(1e-4));
      // …and the expected values: σ_y² = spread² + E[q variance] (about).
      CHECK(std::exp(logvars(j, k)) == doctest::Approx(spread(y) * spread(y) + q_var(y)).epsilon(0.2));
    }
  }
  // Nothing but the cluster parameters changed.
  const std::size_t lo = model.cluster_mean_offset(), hi = model.cluster_logvar_offset() + 2 * 3;
  for (std::size_t i = 0; i < before.size(); ++i)
    if (i < lo || i >= hi) REQUIRE(model.params()[i] == before[i]);
  CHECK_THROWS_AS(fit_clusters_to_codes(model, mu.leftCols(2), lv.leftCols(2), 5), Error);  // N < K
  Model plain(small_plain_config());
  CHECK_THROWS_AS(fit_clusters_to_codes(plain, mu, lv, 5), Error);
}

// ---- the clustering VAE's prior p(z) = (1/K) Σ_y N(μ_y, σ_y²), summed over y exactly ----

namespace {

Model gmvae_model(int K, std::uint64_t seed) {
  ModelConfig cfg;
  cfg.image_h = cfg.image_w = 4;
  cfg.latent = 2;
  cfg.hidden = {8};
  cfg.family = ModelFamily::Gmvae;
  cfg.clusters = K;
  Model m(cfg);
  m.init(seed);
  return m;
}

}  // namespace

TEST_CASE("clustering: the mixture prior is N(0, I) when every cluster is, and the exact mixture otherwise") {
  Model m = gmvae_model(3, 4);
  Eigen::Map<Eigen::MatrixXf> means(m.data() + m.cluster_mean_offset(), 2, 3), logvars(m.data() + m.cluster_logvar_offset(), 2, 3);
  Rng rng(5);
  Eigen::MatrixXf z(2, 50);
  for (Eigen::Index k = 0; k < z.size(); ++k) z.data()[k] = 3.0f * rng.normal();

  means.setZero();
  logvars.setZero();
  const Eigen::VectorXf same = log_prior(m, z), standard = log_standard_normal(z);
  for (Eigen::Index c = 0; c < z.cols(); ++c) CHECK(same(c) == doctest::Approx(standard(c)).epsilon(1e-5));

  // Three distinct Gaussians: (1/3) Σ_y N(z; μ_y, σ_y²) against the double-precision sum. Points
  // 3 sd out in the tails check the log-sum-exp does not underflow.
  means << -4, 0, 5, 1, -2, 3;
  logvars << -1, 0, 1.5, 0.5, -2, 0;
  const Eigen::VectorXf mix = log_prior(m, z);
  for (Eigen::Index c = 0; c < z.cols(); ++c) {
    double best = -1e300, terms[3];
    for (int y = 0; y < 3; ++y) {
      terms[y] = test::log_gauss(z.col(c).cast<double>(), means.col(y).cast<double>(), logvars.col(y).cast<double>());
      best = std::max(best, terms[y]);
    }
    double s = 0;
    for (double t : terms) s += std::exp(t - best);
    const double expect = best + std::log(s / 3);
    CHECK(mix(c) == doctest::Approx(expect).epsilon(1e-5));
    CHECK(mix(c) != doctest::Approx(standard(c)).epsilon(1e-3));  // the clusters do change it
  }
}

TEST_CASE("clustering: the mixture log p(z) bounds the classifier's ELBO term from above (Jensen)") {
  // log Σ_y p(y) p(z|y) ≥ Σ_y q(y|z) [log p(y) p(z|y) − log q(y|z)] for any q(y|z), with equality
  // only when q(y|z) is the true p(y|z): the gap the exact mixture closes in the IWAE bound.
  Model m = gmvae_model(4, 9);
  Eigen::Map<Eigen::MatrixXf> means(m.data() + m.cluster_mean_offset(), 2, 4), logvars(m.data() + m.cluster_logvar_offset(), 2, 4);
  means << -3, -1, 1, 3, 0, 2, -2, 0;
  logvars.setConstant(-0.5f);
  Rng rng(6);
  Eigen::MatrixXf z(2, 40);
  for (Eigen::Index k = 0; k < z.size(); ++k) z.data()[k] = 2.0f * rng.normal();
  Eigen::MatrixXf probs;
  m.classify(z, probs);
  const Eigen::VectorXf lp = log_prior(m, z);
  int strict = 0;
  for (Eigen::Index c = 0; c < z.cols(); ++c) {
    double bound = 0;
    for (int y = 0; y < 4; ++y) {
      const double q = probs(y, c);
      if (q <= 0) continue;
      bound += q * (std::log(0.25) + test::log_gauss(z.col(c).cast<double>(), means.col(y).cast<double>(), logvars.col(y).cast<double>()) - std::log(q));
    }
    CHECK(lp(c) >= bound - 1e-4);
    if (lp(c) > bound + 1e-3) ++strict;
  }
  CHECK(strict > 20);  // an untrained classifier is far from the true p(y|z)
}

TEST_CASE("clustering: the clustering VAE's IWAE bound lies above its ELBO and tightens with K") {
  Model m = gmvae_model(3, 12);
  ImageSet set;
  set.width = set.height = 4;
  set.count = 60;
  set.pixels.resize(static_cast<std::size_t>(set.count) * 16);
  Rng rng(13);
  for (auto& p : set.pixels) p = static_cast<std::uint8_t>(rng.below(256));
  EvalOptions opt;
  opt.samples = 20;
  opt.iwae_k = 1;
  const Evaluation k1 = evaluate(m, set, {}, opt);
  opt.iwae_k = 200;
  const Evaluation k200 = evaluate(m, set, {}, opt);
  REQUIRE(std::isfinite(k1.iwae));
  REQUIRE(std::isfinite(k200.iwae));
  CHECK(k1.iwae > k1.elbo);       // IWAE_1 with the exact mixture ≥ the classifier's ELBO
  CHECK(k200.iwae > k1.iwae);     // and more samples tighten it
  CHECK(k200.iwae < 0);           // a log-likelihood of binary-ish pixels
}

TEST_CASE("clustering: the clustering VAE's true posterior grid agrees with its ELBO gap (d = 2)") {
  // With the mixture prior in p(x, z) and a Monte-Carlo KL(q ‖ p(z)), log p(x) − ELBO is
  // KL(q ‖ p(z|x)), which the grid also measures: the two must agree up to Monte-Carlo error.
  Model m = gmvae_model(3, 21);
  Eigen::Map<Eigen::MatrixXf> means(m.data() + m.cluster_mean_offset(), 2, 3);
  means << -1.5, 0, 1.5, 0.5, -1, 0.5;
  Eigen::VectorXf x(16);
  Rng rng(22);
  for (Eigen::Index k = 0; k < x.size(); ++k) x(k) = rng.uniform() < 0.5f ? 0.0f : 1.0f;
  GridSpec spec;
  spec.resolution = 160;
  spec.half_width = Eigen::Vector2f::Constant(7.0f);
  GapOptions opt;
  opt.elbo_samples = 40000;
  opt.iwae_k = 2000;
  const PosteriorGrid g = posterior_grid(m, x, spec, opt);
  REQUIRE(g.exact);
  CHECK(g.edge_mass < 1e-4);
  CHECK(g.kl_grid > 0);
  CHECK(std::abs(g.gap_check - g.kl_grid) < 5 * g.elbo_se + 0.01);
  // IWAE_K is ≤ log p(x) in expectation; one estimate with K = 2000 on a 2-D posterior sits within
  // a few hundredths of the quadrature's log p(x), on either side.
  CHECK(std::abs(g.iwae - g.log_px) < 0.05);
  CHECK(g.log_px - g.elbo > 0.05);  // a gap worth showing: the untrained q is not p(z|x)
  CHECK(g.iwae > g.elbo);
}
