// Clusters panel (clustering VAE): one row per cluster, ordered by the label it is matched to, with
// its size on the map, its row of the cluster × class confusion matrix (shaded by the row's share,
// the matched cell outlined), its decoded mean and a few decoded samples z ~ N(μ_y, σ_y²); beside
// them the test accuracy and NMI per epoch. Not the scoring (core/clustering, shared with the
// Latent map through LatentMapState) and not the trainer's cluster events (its log).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "app/panels.hpp"
#include "app/plot.hpp"
#include "core/model.hpp"
#include "core/view_math.hpp"

namespace vaelab::app {
namespace {

// Rows in the order the panel shows them: clusters matched to a label by that label, then the
// unmatched ones by size (largest first).
std::vector<int> row_order(const LatentMapState& map, int K) {
  std::vector<int> order(static_cast<std::size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  auto label_of = [&](int k) {
    const auto i = static_cast<std::size_t>(k);
    return i < map.cluster_to_label.size() && map.cluster_to_label[i] >= 0 ? map.cluster_to_label[i] : K + 1000;
  };
  auto size_of = [&](int k) {
    const auto i = static_cast<std::size_t>(k);
    return i < map.cluster_sizes.size() ? map.cluster_sizes[i] : 0;
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (label_of(a) != label_of(b)) return label_of(a) < label_of(b);
    return size_of(a) > size_of(b);
  });
  return order;
}

// Decodes each cluster's mean and kSamples draws into one grid texture, rows in `order`.
void decode_rows(AppState& state, const Snapshot& snap, const std::vector<int>& order) {
  ClustersState& cl = state.clusters;
  const int d = snap.model->latent(), K = static_cast<int>(order.size()), per_row = 1 + ClustersState::kSamples;
  if (cl.eps.rows() != d || cl.eps.cols() != K * per_row || cl.eps_seed != cl.seed) {
    Rng rng(cl.seed * 104729 + 3);
    cl.eps.resize(d, K * per_row);
    for (Eigen::Index k = 0; k < cl.eps.cols(); ++k)
      for (Eigen::Index r = 0; r < d; ++r) cl.eps(r, k) = k % per_row == 0 ? 0.0f : rng.normal();
    cl.eps_seed = cl.seed;
  }
  std::vector<int> cluster(static_cast<std::size_t>(K * per_row));
  for (std::size_t k = 0; k < cluster.size(); ++k) cluster[k] = order[k / static_cast<std::size_t>(per_row)];
  Eigen::MatrixXf img;
  decode(snap, cluster_draws(*snap.model, cluster, cl.eps), img);
  const int c = snap.model_config.image_c, h = snap.model_config.image_h, w = snap.model_config.image_w;
  int tw = 0, th = 0;
  const std::vector<float> grid = tile_images(img, c, h, w, K, per_row, 1, tw, th);
  cl.images.update(grid.data(), tw, th, c);
  cl.order = order;
}

// The rows' header: "#", "size" (how many clusters are in use in its tooltip), then one cell per
// class, its name cut to fit (whole in a tooltip).
void draw_header(const Snapshot& snap, const LatentMapState& map, ImVec2 p, float id_w, float size_w, float cell,
                 int classes, float line_h) {
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const ImU32 text = ImGui::GetColorU32(ImGuiCol_Text), dim = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  const bool window_hovered = ImGui::IsWindowHovered();
  auto hovered = [&](float x0, float x1) {
    return window_hovered && mouse.x >= x0 && mouse.x < x1 && mouse.y >= p.y && mouse.y < p.y + line_h;
  };
  dl->AddText(p, dim, "#");
  const char* size_label = "size";
  dl->AddText(ImVec2(p.x + id_w + size_w - ImGui::CalcTextSize(size_label).x - 4, p.y), dim, size_label);
  if (hovered(p.x, p.x + id_w + size_w))
    ImGui::SetTooltip("%d of %d clusters hold the %s test codes on the map", map.used_clusters,
                      static_cast<int>(map.cluster_sizes.size()), with_commas(static_cast<long long>(map.cluster_of.size())).c_str());
  for (int l = 0; l < classes; ++l) {
    const float x0 = p.x + id_w + size_w + static_cast<float>(l) * cell;
    const std::string name = class_name(snap, l);
    const ImVec4 clip(x0, p.y, x0 + cell - 1, p.y + line_h);
    dl->AddText(ImGui::GetFont(), ImGui::GetFontSize(), ImVec2(x0 + 1, p.y), text, name.c_str(), nullptr, 0, &clip);
    if (hovered(x0, x0 + cell)) ImGui::SetTooltip("class %s", name.c_str());
  }
}

// One cluster's row: its number in its matched label's colour, its size, its confusion-matrix row.
void draw_row(AppState& state, const Snapshot& snap, int k, ImVec2 p, float id_w, float size_w, float cell, float row_h,
              int max_size) {
  const LatentMapState& map = state.latent;
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  const bool window_hovered = ImGui::IsWindowHovered();
  auto hovered = [&](float x0, float x1) {
    return window_hovered && mouse.x >= x0 && mouse.x < x1 && mouse.y >= p.y && mouse.y < p.y + row_h;
  };
  const auto ki = static_cast<std::size_t>(k);
  const int matched = ki < map.cluster_to_label.size() ? map.cluster_to_label[ki] : -1;
  const int size = ki < map.cluster_sizes.size() ? map.cluster_sizes[ki] : 0;
  const float text_y = p.y + (row_h - ImGui::GetFontSize()) * 0.5f;
  const float swatch = std::min(row_h - 4, ImGui::GetFontSize() * 0.7f);
  dl->AddRectFilled(ImVec2(p.x, p.y + (row_h - swatch) * 0.5f), ImVec2(p.x + swatch, p.y + (row_h + swatch) * 0.5f),
                    matched >= 0 ? label_colour(matched) : ImGui::GetColorU32(ImGuiCol_TextDisabled));
  char text[32];
  std::snprintf(text, sizeof text, "%d", k + 1);
  dl->AddText(ImVec2(p.x + swatch + 4, text_y), ImGui::GetColorU32(ImGuiCol_Text), text);
  if (hovered(p.x, p.x + id_w)) {
    const std::string tip = "cluster " + std::to_string(k + 1) +
                            (matched >= 0 ? ", matched to " + class_name(snap, matched) : std::string(", not matched to a label"));
    ImGui::SetTooltip("%s", tip.c_str());
  }
  // Size: a bar against the largest cluster, the count over it.
  const float sx = p.x + id_w;
  const float bar = max_size > 0 ? (size_w - 6) * static_cast<float>(size) / static_cast<float>(max_size) : 0;
  dl->AddRectFilled(ImVec2(sx + size_w - 4 - bar, p.y + 2), ImVec2(sx + size_w - 4, p.y + row_h - 2),
                    ImGui::GetColorU32(ImGuiCol_FrameBg));
  const std::string count = with_commas(size);
  dl->AddText(ImVec2(sx + size_w - 4 - ImGui::CalcTextSize(count.c_str()).x, text_y),
              ImGui::GetColorU32(size > 0 ? ImGuiCol_Text : ImGuiCol_TextDisabled), count.c_str());
  if (hovered(sx, sx + size_w))
    ImGui::SetTooltip("%s of the %s test codes on the map are in cluster %d", count.c_str(),
                      with_commas(static_cast<long long>(map.cluster_of.size())).c_str(), k + 1);
  // Its row of the confusion matrix, shaded by the share of the cluster in each class.
  const Eigen::MatrixXd& table = map.cluster_label_table;
  if (table.rows() <= k) return;
  const double total = table.row(k).sum();
  const ImVec4 hot = ImGui::GetStyleColorVec4(ImGuiCol_PlotHistogram);
  for (Eigen::Index l = 0; l < table.cols(); ++l) {
    const float x0 = sx + size_w + static_cast<float>(l) * cell;
    const double share = total > 0 ? table(k, l) / total : 0;
    const ImVec2 c0(x0, p.y), c1(x0 + cell - 1, p.y + row_h - 1);
    dl->AddRectFilled(c0, c1, ImGui::GetColorU32(ImGuiCol_FrameBg));
    if (share > 0) dl->AddRectFilled(c0, c1, ImGui::GetColorU32(ImVec4(hot.x, hot.y, hot.z, static_cast<float>(0.08 + 0.92 * share))));
    // The matching pairs even an empty cluster with a label; only a cluster with points shows it.
    if (l == matched && total > 0) dl->AddRect(c0, c1, ImGui::GetColorU32(ImGuiCol_Text), 0, 0, 2.0f);
    if (hovered(x0, x0 + cell))
      ImGui::SetTooltip("cluster %d · %s: %s points (%.0f%% of the cluster)%s", k + 1,
                        class_name(snap, static_cast<int>(l)).c_str(), with_commas(static_cast<long long>(table(k, l))).c_str(),
                        100 * share, l == matched ? "\nthe cluster's matched label" : "");
  }
}

// Test accuracy and NMI of each epoch's record (x: epoch).
void draw_score_curves(const Snapshot& snap, ImVec2 size) {
  std::vector<float> epoch, acc, nmi;
  for (const EpochRecord& r : snap.history.epochs) {
    if (!std::isfinite(r.cluster_acc)) continue;
    epoch.push_back(static_cast<float>(r.epoch));
    acc.push_back(r.cluster_acc);
    nmi.push_back(r.nmi);
  }
  if (epoch.empty()) {
    ImGui::TextDisabled("Accuracy and NMI per epoch:\nafter the first epoch of a\nlabelled test set.");
    return;
  }
  const PlotSeries series[] = {
      {"accuracy", epoch.data(), acc.data(), epoch.size(), label_colour(1), 1.5f, true},
      {"NMI", epoch.data(), nmi.data(), epoch.size(), label_colour(2), 1.5f, true},
  };
  PlotOptions opt;
  opt.title = "test accuracy, NMI";
  opt.x_label = "epoch";
  plot("##cluster_scores", size, opt, series);
}

}  // namespace

void draw_clusters(AppState& state, const Snapshot& snap) {
  const int K = snap.model ? snap.model->clusters() : 0;
  if (K == 0) {
    ImGui::TextDisabled("Clusters apply to the clustering VAEs (--model gmvae or vade).");
    return;
  }
  LatentMapState& map = state.latent;
  update_cluster_scores(map, snap);
  if (map.cluster_of.empty()) {
    ImGui::TextDisabled("waiting for the test codes…");
    return;
  }
  ClustersState& cl = state.clusters;
  const std::vector<int> order = row_order(map, K);
  if (state.heavy_due(cl.refresh, 0.3, cl.order != order || cl.eps_seed != cl.seed)) {
    state.note_work('C');
    decode_rows(state, snap, order);
  }

  // Left: the rows (scrolled when they do not fit); right: the score curves, when there is room.
  // Rows share the height, each at least a font height tall; matrix cells and images are as wide
  // as a row is tall.
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float em = ImGui::GetFontSize();
  const int classes = static_cast<int>(map.cluster_label_table.cols());
  const float line_h = ImGui::GetTextLineHeightWithSpacing();
  const int per_row = 1 + ClustersState::kSamples;
  const float id_w = em * 2.0f, size_w = em * 3.2f;
  const float aspect = static_cast<float>(snap.model_config.image_w) / static_cast<float>(std::max(1, snap.model_config.image_h));
  const float fixed_w = id_w + size_w + em * 0.4f + ImGui::GetStyle().ScrollbarSize;
  const float width_per_row_h = static_cast<float>(classes) + static_cast<float>(per_row) * aspect * 1.05f;
  const float fit_h = (avail.y - line_h) / static_cast<float>(K);
  const float max_h = (avail.x - fixed_w) / width_per_row_h;
  const float row_h = std::max(em, std::min({fit_h, max_h, em * 4}));
  const float cell = classes > 0 ? row_h : 0;
  float rows_w = std::min(avail.x, fixed_w + row_h * width_per_row_h);
  const bool curves_beside = avail.x - rows_w - ImGui::GetStyle().ItemSpacing.x >= em * 8;
  if (!curves_beside) rows_w = avail.x;

  ImGui::BeginChild("##cluster_rows", ImVec2(rows_w, avail.y), false);
  const ImVec2 p0 = ImGui::GetCursorScreenPos();
  draw_header(snap, map, p0, id_w, size_w, cell, classes, line_h);
  const float images_x = p0.x + id_w + size_w + static_cast<float>(classes) * cell + em * 0.4f;
  ImGui::SetCursorScreenPos(ImVec2(images_x, p0.y));
  if (ImGui::SmallButton("Resample")) ++cl.seed;
  state.note_rect("clusters_resample");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("Each row: the cluster's decoded mean μ_y, then %d decoded samples z ~ N(μ_y, σ_y²).\n"
                      "Resample: new draws.", ClustersState::kSamples);
  ImGui::SetCursorScreenPos(p0);
  const int max_size = map.cluster_sizes.empty() ? 0 : *std::max_element(map.cluster_sizes.begin(), map.cluster_sizes.end());
  for (int r = 0; r < K; ++r)
    draw_row(state, snap, order[static_cast<std::size_t>(r)], ImVec2(p0.x, p0.y + line_h + static_cast<float>(r) * row_h), id_w,
             size_w, cell, row_h, max_size);
  ImGui::Dummy(ImVec2(images_x - p0.x, line_h + static_cast<float>(K) * row_h));
  if (!cl.images.empty() && static_cast<int>(cl.order.size()) == K) {
    // The grid's rows are the clusters in cl.order, which is `order` unless a decode is pending.
    const float scale = static_cast<float>(K) * row_h / static_cast<float>(cl.images.height());
    ImGui::SetCursorScreenPos(ImVec2(images_x, p0.y + line_h));
    cl.images.draw(ImVec2(static_cast<float>(cl.images.width()) * scale, static_cast<float>(K) * row_h), state.colormap);
    state.note_rect("clusters_images");
    if (ImGui::IsItemHovered()) {
      const int r = std::clamp(static_cast<int>((ImGui::GetIO().MousePos.y - p0.y - line_h) / row_h), 0, K - 1);
      ImGui::SetTooltip("cluster %d: its decoded mean μ_y, then %d decoded samples z ~ N(μ_y, σ_y²)",
                        cl.order[static_cast<std::size_t>(r)] + 1, ClustersState::kSamples);
    }
  }
  ImGui::EndChild();
  state.note_rect("clusters_rows");
  if (curves_beside) {
    ImGui::SameLine();
    draw_score_curves(snap, ImVec2(0, avail.y));
  }
}

}  // namespace vaelab::app
