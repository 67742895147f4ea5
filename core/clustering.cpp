// Hungarian assignment, clustering accuracy, NMI and k-means (see clustering.hpp for the contracts).
// Written from the textbook descriptions: Kuhn–Munkres with row/column potentials and shortest
// augmenting paths; Arthur & Vassilvitskii's k-means++ seeding; Lloyd's iteration.
#include "core/clustering.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <Eigen/Dense>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace vaelab {

namespace {

// Rows ≤ columns. Adds rows one at a time; each addition grows a tree of tight edges from the new
// row (Dijkstra on reduced costs) until it reaches a free column, then flips the path. The
// potentials keep every reduced cost ≥ 0 and matched edges at 0, which certifies optimality.
// Arrays are 1-based in rows and columns; column 0 is a virtual root holding the row being added.
std::vector<int> assign_rows_to_columns(const Eigen::MatrixXd& cost) {
  const int n = static_cast<int>(cost.rows());
  const int m = static_cast<int>(cost.cols());
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> row_pot(n + 1, 0.0), col_pot(m + 1, 0.0), slack(m + 1);
  std::vector<int> owner(m + 1, 0);    // row matched to column j (0: free)
  std::vector<int> via(m + 1, 0);      // previous column on the shortest path to column j
  std::vector<char> reached(m + 1, 0);  // column is in the tree
  for (int r = 1; r <= n; ++r) {
    owner[0] = r;
    int col = 0;
    std::fill(slack.begin(), slack.end(), kInf);
    std::fill(reached.begin(), reached.end(), 0);
    do {
      reached[col] = 1;
      const int row = owner[col];
      double delta = kInf;
      int next = 0;
      for (int j = 1; j <= m; ++j) {
        if (reached[j]) continue;
        const double reduced = cost(row - 1, j - 1) - row_pot[row] - col_pot[j];
        if (reduced < slack[j]) {
          slack[j] = reduced;
          via[j] = col;
        }
        if (slack[j] < delta) {
          delta = slack[j];
          next = j;
        }
      }
      // Shift potentials so the cheapest edge out of the tree becomes tight.
      for (int j = 0; j <= m; ++j) {
        if (reached[j]) {
          row_pot[owner[j]] += delta;
          col_pot[j] -= delta;
        } else {
          slack[j] -= delta;
        }
      }
      col = next;
    } while (owner[col] != 0);
    do {  // flip the augmenting path back to the root
      const int prev = via[col];
      owner[col] = owner[prev];
      col = prev;
    } while (col != 0);
  }
  std::vector<int> out(static_cast<std::size_t>(n), -1);
  for (int j = 1; j <= m; ++j)
    if (owner[j] != 0) out[static_cast<std::size_t>(owner[j] - 1)] = j - 1;
  return out;
}

void check_same_nonempty(const std::vector<int>& pred, const std::vector<int>& labels, const char* who) {
  if (pred.size() != labels.size())
    throw Error(std::string(who) + ": " + std::to_string(pred.size()) + " predictions but " +
                std::to_string(labels.size()) + " labels");
  if (pred.empty()) throw Error(std::string(who) + ": no points to score");
}

// Values → 0 … K−1 in sorted order of the distinct values.
std::vector<int> compact(const std::vector<int>& v, int& distinct) {
  std::vector<int> values = v;
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  distinct = static_cast<int>(values.size());
  std::vector<int> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    out[i] = static_cast<int>(std::lower_bound(values.begin(), values.end(), v[i]) - values.begin());
  return out;
}

// Σ c log c over the counts, for entropies and MI without forming probabilities.
double entropy_from_counts(const std::vector<double>& counts, double n) {
  double s = 0;
  for (const double c : counts)
    if (c > 0) s += c * std::log(c);
  return std::log(n) - s / n;
}

// Uniform in [0, 1) with 53 bits: Rng::uniform's 24 bits are too coarse to weight 10⁵ points.
double uniform53(Rng& rng) { return static_cast<double>(rng.next_u64() >> 11) * 0x1.0p-53; }

using Index = Eigen::Index;

// k-means++: each next centre is a point drawn with probability ∝ its squared distance to the
// nearest centre so far. Distances here are direct (x − c)², not the GEMM form, so points equal to
// a centre have weight exactly 0 and are never drawn while any other point is left.
Eigen::MatrixXf seed_plus_plus(const Eigen::Ref<const Eigen::MatrixXf>& X, int k, Rng& rng) {
  const Index N = X.cols();
  Eigen::MatrixXf C(X.rows(), k);
  Eigen::VectorXd nearest(N);
  Index pick = static_cast<Index>(rng.below(static_cast<std::uint64_t>(N)));
  for (int c = 0; c < k; ++c) {
    if (c > 0) {
      const double total = nearest.sum();
      if (total > 0) {
        const double target = uniform53(rng) * total;
        double acc = 0;
        pick = -1;
        for (Index i = 0; i < N; ++i) {
          if (nearest[i] <= 0) continue;
          acc += nearest[i];
          pick = i;  // the last positive point if rounding leaves acc ≤ target at the end
          if (acc > target) break;
        }
      } else {  // every point sits on a centre: duplicates; the empty-cluster step sorts it out
        pick = static_cast<Index>(rng.below(static_cast<std::uint64_t>(N)));
      }
    }
    C.col(c) = X.col(pick);
    if (c + 1 == k) break;
    for (Index i = 0; i < N; ++i) {
      const double d2 = static_cast<double>((X.col(i) - C.col(c)).squaredNorm());
      nearest[i] = c == 0 ? d2 : std::min(nearest[i], d2);
    }
  }
  return C;
}

// Points per block: small enough that a block (d = 784: 800 KB) is still in cache when the
// update reads it again right after the GEMM, so each Lloyd step streams the data from memory once.
constexpr Index kBlock = 256;

KMeansResult lloyd(const Eigen::Ref<const Eigen::MatrixXf>& X, const Eigen::VectorXf& x_sq, int k, int max_iter,
                   Rng& rng) {
  const Index N = X.cols();
  const Index d = X.rows();
  const auto at = [](auto i) { return static_cast<std::size_t>(i); };
  Eigen::MatrixXf C = seed_plus_plus(X, k, rng);
  std::vector<int> assign(at(N), -1), prev(at(N), -1);
  std::vector<Index> counts(at(k));
  Eigen::VectorXf dist(N);  // squared distance to the assigned centre (GEMM form, for re-seeding)
  Eigen::MatrixXf G(k, std::min(N, kBlock));
  Eigen::MatrixXd sums(d, k);        // per-cluster sums of the new assignment, for the means
  Eigen::MatrixXf block_sums(d, k);  // one block's sums in float (≤ kBlock terms), then added in double
  std::vector<char> touched(at(k), 0);
  std::vector<int> touched_list;
  int it = 0;
  while (it < max_iter) {
    ++it;
    // Assignment: ‖x − c‖² = ‖x‖² − 2 cᵀx + ‖c‖², the cross term one GEMM per block; ‖x‖² is
    // the same for every centre, so the argmin skips it. The sums for the update are gathered in
    // the same pass, while the block is hot.
    const Eigen::RowVectorXf c_sq = C.colwise().squaredNorm();
    std::fill(counts.begin(), counts.end(), 0);
    sums.setZero();
    for (Index s = 0; s < N; s += kBlock) {
      const Index b = std::min(kBlock, N - s);
      G.leftCols(b).noalias() = C.transpose() * X.middleCols(s, b);
      for (Index j = 0; j < b; ++j) {
        int best = 0;
        float best_v = c_sq[0] - 2.0f * G(0, j);
        for (int c = 1; c < k; ++c) {
          const float v = c_sq[c] - 2.0f * G(c, j);
          if (v < best_v) {
            best_v = v;
            best = c;
          }
        }
        assign[at(s + j)] = best;
        dist[s + j] = std::max(0.0f, x_sq[s + j] + best_v);
        ++counts[at(best)];
        if (!touched[at(best)]) {  // only clusters this block uses: k may be large
          touched[at(best)] = 1;
          touched_list.push_back(best);
          block_sums.col(best) = X.col(s + j);
        } else {
          block_sums.col(best) += X.col(s + j);
        }
      }
      for (const int c : touched_list) {
        sums.col(c) += block_sums.col(c).cast<double>();
        touched[at(c)] = 0;
      }
      touched_list.clear();
    }
    // An empty cluster takes the worst-served point: it then costs 0 instead of its distance, so
    // inertia still only goes down. Donors must keep ≥ 1 point; with k ≤ N one always has ≥ 2.
    for (int c = 0; c < k; ++c) {
      if (counts[at(c)] != 0) continue;
      Index far = -1;
      for (Index i = 0; i < N; ++i)
        if (counts[at(assign[at(i)])] >= 2 && (far < 0 || dist[i] > dist[far])) far = i;
      const int donor = assign[at(far)];
      --counts[at(donor)];
      sums.col(donor) -= X.col(far).cast<double>();
      assign[at(far)] = c;
      counts[at(c)] = 1;
      sums.col(c) = X.col(far).cast<double>();
      dist[far] = 0;
    }
    if (assign == prev) break;  // centres are already the means of this assignment
    for (int c = 0; c < k; ++c) C.col(c) = (sums.col(c) / static_cast<double>(counts[at(c)])).cast<float>();
    std::swap(assign, prev);
  }
  KMeansResult out;
  out.assignment = std::move(prev);
  out.iterations = it;
  // Inertia directly, not from the GEMM form, which cancels badly when ‖x‖ ≫ ‖x − c‖.
  double inertia = 0;
  for (Index i = 0; i < N; ++i)
    inertia += (X.col(i).cast<double>() - C.col(out.assignment[at(i)]).cast<double>())
                   .squaredNorm();
  out.inertia = inertia;
  out.centers = std::move(C);
  return out;
}

}  // namespace

std::vector<int> hungarian_min_cost(const Eigen::MatrixXd& cost) {
  if (!cost.allFinite()) throw Error("hungarian_min_cost: the cost matrix has NaN or infinite entries");
  if (cost.rows() == 0) return {};
  if (cost.cols() == 0) return std::vector<int>(static_cast<std::size_t>(cost.rows()), -1);
  if (cost.rows() <= cost.cols()) return assign_rows_to_columns(cost);
  // More rows than columns: assign columns to rows on the transpose, then invert.
  const std::vector<int> col_to_row = assign_rows_to_columns(cost.transpose());
  std::vector<int> out(static_cast<std::size_t>(cost.rows()), -1);
  for (std::size_t c = 0; c < col_to_row.size(); ++c) out[static_cast<std::size_t>(col_to_row[c])] = static_cast<int>(c);
  return out;
}

Eigen::MatrixXd cluster_label_counts(const std::vector<int>& pred, const std::vector<int>& labels, int n_clusters,
                                     int n_classes) {
  check_same_nonempty(pred, labels, "cluster accuracy");
  if (n_clusters < 1 || n_classes < 1)
    throw Error("cluster accuracy: need at least one cluster and one class (got " + std::to_string(n_clusters) +
                " and " + std::to_string(n_classes) + ")");
  Eigen::MatrixXd table = Eigen::MatrixXd::Zero(n_clusters, n_classes);
  for (std::size_t i = 0; i < pred.size(); ++i) {
    if (pred[i] < 0 || pred[i] >= n_clusters || labels[i] < 0 || labels[i] >= n_classes)
      throw Error("cluster accuracy: point " + std::to_string(i) + " has cluster " + std::to_string(pred[i]) +
                  " and label " + std::to_string(labels[i]) + ", outside [0, " + std::to_string(n_clusters) +
                  ") × [0, " + std::to_string(n_classes) + ")");
    table(pred[i], labels[i]) += 1;
  }
  return table;
}

ClusterMatch match_clusters(const std::vector<int>& pred, const std::vector<int>& labels, int n_clusters,
                            int n_classes) {
  const Eigen::MatrixXd table = cluster_label_counts(pred, labels, n_clusters, n_classes);
  ClusterMatch m;
  m.cluster_to_label = hungarian_min_cost(-table);
  double hits = 0;
  for (int c = 0; c < n_clusters; ++c)
    if (const int l = m.cluster_to_label[static_cast<std::size_t>(c)]; l >= 0) hits += table(c, l);
  m.accuracy = hits / static_cast<double>(pred.size());
  return m;
}

double cluster_accuracy(const std::vector<int>& pred, const std::vector<int>& labels, int n_clusters, int n_classes) {
  return match_clusters(pred, labels, n_clusters, n_classes).accuracy;
}

double normalized_mutual_information(const std::vector<int>& pred, const std::vector<int>& labels) {
  check_same_nonempty(pred, labels, "normalized mutual information");
  int kp = 0, kl = 0;
  const std::vector<int> p = compact(pred, kp);
  const std::vector<int> l = compact(labels, kl);
  if (kp == 1 && kl == 1) return 1.0;
  const double n = static_cast<double>(pred.size());
  std::vector<double> rows(static_cast<std::size_t>(kp), 0.0), cols(static_cast<std::size_t>(kl), 0.0);
  // Joint counts by sorting pair codes: no kp × kl table, which could be N² for unique ids.
  std::vector<std::int64_t> codes(pred.size());
  for (std::size_t i = 0; i < pred.size(); ++i) {
    ++rows[static_cast<std::size_t>(p[i])];
    ++cols[static_cast<std::size_t>(l[i])];
    codes[i] = static_cast<std::int64_t>(p[i]) * kl + l[i];
  }
  std::sort(codes.begin(), codes.end());
  double mi = 0;
  for (std::size_t i = 0; i < codes.size();) {
    std::size_t j = i;
    while (j < codes.size() && codes[j] == codes[i]) ++j;
    const double nij = static_cast<double>(j - i);
    const double a = rows[static_cast<std::size_t>(codes[i] / kl)];
    const double b = cols[static_cast<std::size_t>(codes[i] % kl)];
    mi += nij * (std::log(nij) + std::log(n) - std::log(a) - std::log(b));
    i = j;
  }
  mi /= n;
  if (mi <= 0) return 0.0;  // includes one side being a single cluster (and rounding below 0)
  const double mean_h = 0.5 * (entropy_from_counts(rows, n) + entropy_from_counts(cols, n));
  return std::clamp(mi / mean_h, 0.0, 1.0);
}

std::vector<ClusterEvent> cluster_events(const std::vector<int>& previous, const std::vector<int>& current,
                                         int n_clusters) {
  if (previous.size() != current.size())
    throw Error("cluster events: " + std::to_string(previous.size()) + " previous and " +
                std::to_string(current.size()) + " current assignments; they must be of the same points");
  if (n_clusters < 1) throw Error("cluster events: need at least one cluster (got " + std::to_string(n_clusters) + ")");
  const auto K = static_cast<std::size_t>(n_clusters);
  // flow(a, b): points that were in cluster a and are now in cluster b.
  std::vector<int> flow(K * K, 0), held(K, 0), holds(K, 0);
  for (std::size_t i = 0; i < previous.size(); ++i) {
    const int a = previous[i], b = current[i];
    if (a < 0 || a >= n_clusters || b < 0 || b >= n_clusters)
      throw Error("cluster events: point " + std::to_string(i) + " goes from cluster " + std::to_string(a) + " to " +
                  std::to_string(b) + ", outside [0, " + std::to_string(n_clusters) + ")");
    ++flow[static_cast<std::size_t>(a) * K + static_cast<std::size_t>(b)];
    ++held[static_cast<std::size_t>(a)];
    ++holds[static_cast<std::size_t>(b)];
  }
  const double n = static_cast<double>(previous.size());
  const auto substantial = [&](std::size_t c) { return held[c] > 0 && held[c] >= kMergeMinShare * n; };
  std::vector<ClusterEvent> events;
  for (std::size_t a = 0; a < K; ++a) {
    if (held[a] == 0) continue;
    const int* out = &flow[a * K];
    std::size_t to = a == 0 ? 1 % K : 0;  // the other cluster that received most of a's points
    for (std::size_t b = 0; b < K; ++b)
      if (b != a && out[b] > out[to]) to = b;
    const bool merged = K > 1 && substantial(a) && substantial(to) && out[a] <= kMergeKeepAtMost * held[a] &&
                        out[to] > kMergeToOneMoreThan * held[a];
    const int cluster = static_cast<int>(a);
    if (merged)
      events.push_back({ClusterEventKind::Merged, cluster, static_cast<int>(to), held[a], out[to]});
    else if (holds[a] == 0)
      events.push_back({ClusterEventKind::Emptied, cluster, -1, held[a], 0});
  }
  return events;
}

std::string describe(const ClusterEvent& event) {
  const std::string who = "cluster " + std::to_string(event.cluster + 1);
  if (event.kind == ClusterEventKind::Merged)
    return who + " merged into cluster " + std::to_string(event.into + 1) + " (" + std::to_string(event.moved) + " of its " +
           std::to_string(event.held) + " points)";
  return who + " emptied (it held " + std::to_string(event.held) + (event.held == 1 ? " point)" : " points)");
}

KMeansResult kmeans(const Eigen::Ref<const Eigen::MatrixXf>& points, int k, std::uint64_t seed, int max_iter,
                    int restarts) {
  const Index N = points.cols();
  if (k < 1 || k > N)
    throw Error("k-means: k = " + std::to_string(k) + " with " + std::to_string(N) + " points; need 1 ≤ k ≤ N");
  if (max_iter < 1 || restarts < 1)
    throw Error("k-means: max_iter and restarts must be at least 1 (got " + std::to_string(max_iter) + " and " +
                std::to_string(restarts) + ")");
  if (!points.allFinite()) throw Error("k-means: the points have NaN or infinite entries");
  const Eigen::VectorXf x_sq = points.colwise().squaredNorm().transpose();
  Rng rng(seed);  // one stream for all restarts: restart r's seeding depends only on (seed, r)
  KMeansResult best;
  for (int r = 0; r < restarts; ++r) {
    KMeansResult run = lloyd(points, x_sq, k, max_iter, rng);
    if (r == 0 || run.inertia < best.inertia) best = std::move(run);
  }
  return best;
}

}  // namespace vaelab
