// "Estimators" tab: which gradient estimator trains the encoder (reparameterised or score
// function), whether the trainer measures both estimators' gradient variance each epoch (or now),
// and those variances over steps on a log axis. Not the estimators (core/gap, the trainer).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "app/panels.hpp"
#include "app/plot.hpp"

namespace vaelab::app {

void draw_estimators_tab(AppState& state, const Snapshot& snap) {
  GapState& g = state.gap;
  int e = snap.train_config.estimator == Estimator::ScoreFunction ? 1 : 0;
  // Each control on the line while it fits, on the next one in a narrow window.
  const float radio = ImGui::GetFrameHeight() + ImGui::GetStyle().ItemInnerSpacing.x;
  ImGui::TextUnformatted("encoder gradient:");
  same_line_if_fits(radio + ImGui::CalcTextSize("reparameterised").x);
  bool changed = ImGui::RadioButton("reparameterised", &e, 0);
  same_line_if_fits(radio + ImGui::CalcTextSize("score function").x);
  changed |= ImGui::RadioButton("score function", &e, 1);
  if (changed && state.trainer) state.trainer->set_estimator(e == 1 ? Estimator::ScoreFunction : Estimator::Reparameterised);
  help_marker("Reparameterised: z = μ + σ ε, the gradient flows through the sample.\n"
              "Score function (REINFORCE): E_q[f(z) ∇ log q(z|x)] with a leave-one-out baseline; unbiased\n"
              "but its variance is typically orders of magnitude larger — training slows or stalls.\n"
              "The decoder's gradient is the same either way.");
  if (ImGui::Checkbox("measure gradient variance each epoch", &g.measure) && state.trainer)
    state.trainer->set_measure_estimators(g.measure);
  same_line_if_fits(ImGui::CalcTextSize("measure now").x + ImGui::GetStyle().FramePadding.x * 2);
  if (ImGui::Button("measure now") && state.trainer) state.trainer->measure_estimators_now();

  const auto& est = snap.history.estimators;
  if (g.est.x.size() != est.size() || (!est.empty() && g.est.x.back() != static_cast<float>(est.back().step))) {
    g.est.x.clear(), g.est.reparam.clear(), g.est.score.clear();
    for (const EstimatorRecord& r : est) {
      g.est.x.push_back(static_cast<float>(r.step));
      g.est.reparam.push_back(r.reparam_variance);
      g.est.score.push_back(r.score_variance);
    }
  }
  if (est.empty()) {
    // Wrapped, as the hint is longer than the tab is wide at 1024×640.
    ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
    ImGui::TextWrapped("No measurement yet: tick the box (each epoch) or press 'measure now'.");
    ImGui::PopStyleColor();
    return;
  }
  const EstimatorRecord& last = est.back();
  char variance[128], snr[96];
  std::snprintf(variance, sizeof variance, "step %lld: variance reparam %.3g, score %.3g (×%.0f)",
                static_cast<long long>(last.step), last.reparam_variance, last.score_variance,
                last.reparam_variance > 0 ? last.score_variance / last.reparam_variance : 0.0);
  std::snprintf(snr, sizeof snr, "mean signal-to-noise per parameter: reparam %.3f, score %.3f", last.reparam_snr,
                last.score_snr);
  fitted_text(state, "estimators_variance", variance);
  const ImVec4 dim = ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled);
  fitted_text(state, "estimators_snr", snr, 0, &dim);
  PlotOptions po;
  po.title = "total gradient variance of the encoder (log)";
  po.x_label = "step";
  po.log_y = true;
  const PlotSeries series[] = {
      {"reparameterised", g.est.x.data(), g.est.reparam.data(), g.est.x.size(), IM_COL32(86, 180, 233, 255), 1.6f, true},
      {"score function", g.est.x.data(), g.est.score.data(), g.est.x.size(), IM_COL32(213, 94, 0, 255), 1.6f, true},
  };
  plot("##estvar", ImVec2(-1, -1), po, series);
}

}  // namespace vaelab::app
