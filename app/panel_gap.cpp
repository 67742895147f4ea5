// "Variational gap" tab: a tab bar over the gap tabs, and its first tab — IWAE_K against the
// ELBO on the same test subset per epoch, their difference in nats, and the K / subset controls
// sent to the trainer, with a running evaluation's progress and Cancel. Not the bounds themselves
// (computed by the trainer at epoch ends).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "app/panels.hpp"
#include "app/plot.hpp"

namespace vaelab::app {
namespace {

constexpr ImU32 kElbo = IM_COL32(86, 180, 233, 255);
constexpr ImU32 kIwae = IM_COL32(230, 159, 0, 255);
constexpr ImU32 kGap = IM_COL32(0, 158, 115, 255);

// While the trainer evaluates IWAE_K (a large K takes minutes): how far it is, and Cancel, which
// stops it within a batch (that epoch then has the ELBO only, and the log says so).
void iwae_progress_bar(AppState& state) {
  if (!state.trainer) return;
  const IwaeProgress p = state.trainer->iwae_progress();
  if (p.total <= 0) return;
  char label[96];
  std::snprintf(label, sizeof label, "IWAE: %d of %d test images", p.done, p.total);
  ImGui::ProgressBar(static_cast<float>(p.done) / static_cast<float>(p.total), ImVec2(ImGui::GetFontSize() * 18, 0), label);
  state.note_rect("iwae_progress");
  ImGui::SameLine();
  if (ImGui::Button("Cancel##iwae")) state.trainer->cancel_iwae();
  state.note_rect("iwae_cancel");
}

}  // namespace

void draw_gap_bounds_tab(AppState& state, const Snapshot& snap) {
  GapState& g = state.gap;
  const ImGuiStyle& style = ImGui::GetStyle();
  ImGui::Checkbox("IWAE", &g.iwae_on);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6);
  ImGui::InputInt("K", &g.iwae_k, 10, 100);
  state.note_rect("gap_k");
  // As --iwae allows: a large K is slow, but its evaluation shows progress and can be cancelled.
  g.iwae_k = std::clamp(g.iwae_k, 1, static_cast<int>(limits::kIwaeSamples.hi));
  same_line_if_fits(ImGui::GetFontSize() * 6 + style.ItemInnerSpacing.x + ImGui::CalcTextSize("test images").x);
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6);
  ImGui::InputInt("test images", &g.iwae_points, 100, 1000);
  g.iwae_points = std::clamp(g.iwae_points, 1, snap.data ? std::max(1, snap.data->test.count) : 100000);
  // Sent once nothing is being edited (typing, a held ± button), not per keystroke.
  const int k = g.iwae_on ? g.iwae_k : 0;  // 0: off
  if (!ImGui::IsAnyItemActive() && (k != g.sent_k || g.iwae_points != g.sent_points) && state.trainer) {
    state.trainer->set_iwae(k, g.iwae_points);
    g.sent_k = k;
    g.sent_points = g.iwae_points;
  }
  ImGui::SameLine();
  help_marker("At every epoch end the trainer evaluates, on the first N test images, the ELBO and the\n"
              "importance-weighted bound IWAE_K = E log (1/K) Σ_k p(x, z_k) / q(z_k|x).\n"
              "ELBO ≤ IWAE_K ≤ log p(x): IWAE − ELBO is a lower bound on the variational gap\n"
              "KL(q(z|x) ‖ p(z|x)), tightening as K grows. Costs K decodes per image.");
  iwae_progress_bar(state);

  const auto& epochs = snap.history.epochs;
  std::vector<float> x, elbo, iwae, gap;
  for (const EpochRecord& e : epochs) {
    if (!std::isfinite(e.test_iwae)) continue;
    x.push_back(static_cast<float>(e.epoch));
    elbo.push_back(e.test_iwae_elbo);
    iwae.push_back(e.test_iwae);
    gap.push_back(e.test_iwae - e.test_iwae_elbo);
  }
  if (x.empty()) {
    // Wrapped: at 1280×800 the gap window is too narrow for the sentence on one line.
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
    ImGui::TextWrapped("No IWAE yet: it is computed at the end of each epoch (epoch %d, batch %d / %d).", snap.epoch + 1,
                       snap.batch_in_epoch, snap.batches_per_epoch);
    ImGui::PopStyleColor();
  } else {
    const EpochRecord* last = nullptr;
    for (const EpochRecord& e : epochs)
      if (std::isfinite(e.test_iwae)) last = &e;
    // The gap on its own where the line would not hold both, each cut with an ellipsis at worst.
    char bounds[96], gap_text[48];
    std::snprintf(bounds, sizeof bounds, "epoch %d:  ELBO %.2f   IWAE_%d %.2f", last->epoch, last->test_iwae_elbo,
                  last->iwae_k, last->test_iwae);
    std::snprintf(gap_text, sizeof gap_text, "gap %.2f nats", last->test_iwae - last->test_iwae_elbo);
    fitted_text(state, "gap_bounds", bounds);
    same_line_if_fits(ImGui::CalcTextSize(gap_text).x + style.ItemSpacing.x);
    const ImVec4 gap_colour = ImGui::ColorConvertU32ToFloat4(kGap);
    fitted_text(state, "gap_value", gap_text, 0, &gap_colour);
  }
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float spacing = ImGui::GetStyle().ItemSpacing.y;
  const float top_h = std::max(80.0f, (avail.y - spacing) * 0.55f);
  PlotOptions po;
  po.title = "test bounds (nats/image, same subset)";
  po.x_label = "epoch";
  const PlotSeries bounds[] = {
      {"ELBO", x.data(), elbo.data(), x.size(), kElbo, 1.6f, true},
      {"IWAE_K", x.data(), iwae.data(), x.size(), kIwae, 1.6f, true},
  };
  plot("##bounds", ImVec2(avail.x, top_h), po, bounds);
  PlotOptions pg = po;
  pg.title = "IWAE_K − ELBO (nats)";
  pg.legend = false;
  const PlotSeries diff[] = {{"gap", x.data(), gap.data(), x.size(), kGap, 1.8f, true}};
  plot("##gapdiff", ImVec2(avail.x, std::max(60.0f, avail.y - top_h - spacing)), pg, diff);
}

void draw_gap(AppState& state, const Snapshot& snap) {
  GapState& g = state.gap;
  // Whole tab names, scrolled with arrows in a narrow window, rather than "Poster…".
  if (ImGui::BeginTabBar("##gaptabs", ImGuiTabBarFlags_FittingPolicyScroll)) {
    const char* names[] = {"Bounds", "Posterior", "KL / dim", "Aggregate", "Estimators"};
    void (*draws[])(AppState&, const Snapshot&) = {draw_gap_bounds_tab, draw_posterior_tab, draw_kl_tab,
                                                   draw_aggregate_tab, draw_estimators_tab};
    for (int t = 0; t < 5; ++t) {
      const ImGuiTabItemFlags flags = g.select_tab == static_cast<GapTab>(t) ? ImGuiTabItemFlags_SetSelected : 0;
      const bool open = ImGui::BeginTabItem(names[t], nullptr, flags);
      char rect[32];
      std::snprintf(rect, sizeof rect, "gap_tab%d", t);
      state.note_rect(rect);  // for scripts (screenshots of each tab)
      if (open) {
        draws[t](state, snap);
        ImGui::EndTabItem();
      }
    }
    g.select_tab = GapTab::None;
    ImGui::EndTabBar();
  }
}

}  // namespace vaelab::app
