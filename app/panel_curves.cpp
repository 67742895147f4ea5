// Curves panel: training ELBO per step (raw and smoothed) and test ELBO per epoch, with the
// reconstruction and KL terms in two smaller plots; linear or log axis, markers where β, lr or
// warm-up changed, CSV export. Series are extracted incrementally as the history grows and
// decimated to a few thousand points for drawing.
// Not the plot widget itself (plot.cpp).
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "app/image_export.hpp"
#include "app/panels.hpp"
#include "app/plot.hpp"

namespace vaelab::app {
namespace {

constexpr ImU32 kRaw = IM_COL32(86, 180, 233, 70);
constexpr ImU32 kSmooth = IM_COL32(86, 180, 233, 255);
constexpr ImU32 kTest = IM_COL32(230, 159, 0, 255);
constexpr ImU32 kTrainEpoch = IM_COL32(204, 121, 167, 255);

// Continue an exponential moving average over values appended to `in`: view_math's smooth_ema run
// on the new tail, seeded with the last smoothed value so the result equals one full pass.
void extend_ema(const std::vector<float>& in, std::vector<float>& out, float alpha) {
  const std::size_t done = out.size();
  if (done >= in.size()) return;
  float seed = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t i = done; i-- > 0;)
    if (std::isfinite(out[i])) {
      seed = out[i];
      break;
    }
  std::vector<float> tail;
  const bool seeded = std::isfinite(seed);
  if (seeded) tail.push_back(seed);
  tail.insert(tail.end(), in.begin() + static_cast<long>(done), in.end());
  const std::vector<float> smoothed = smooth_ema(tail.data(), tail.size(), alpha);
  out.insert(out.end(), smoothed.begin() + (seeded ? 1 : 0), smoothed.end());
}

void refresh(CurvesState& c, const Snapshot& snap, double now) {
  const History& h = snap.history;
  const auto& steps = h.steps;
  const std::size_t n = steps.size();
  // The history only grows, or starts again (reset, rebuild, load): then, or when the sign or the
  // smoothing changes, extract it afresh; otherwise append the new steps.
  const bool restart = n < c.step_x.size() || (n > 0 && !c.step_x.empty() && static_cast<float>(steps[0].step) != c.step_x[0]) ||
                       c.cached_smoothing != c.smoothing || c.cached_log != c.log_y;
  const std::uint64_t key = n * 1000003u + h.epochs.size() * 7919u + h.markers.size() * 131u +
                            static_cast<std::uint64_t>(n == 0 ? 0 : steps.back().step);
  if (!restart && c.history_key == key) return;
  // A few refreshes a second are plenty: each one costs O(steps) for the decimation, and software
  // GL redraws the whole plot whenever a point is added.
  if (!restart && now - c.refreshed_at < AppState::kLivePeriod) return;
  c.history_key = key;
  c.refreshed_at = now;
  if (restart) {
    for (auto* v : {&c.step_x, &c.elbo, &c.recon, &c.kl, &c.elbo_s, &c.recon_s, &c.kl_s}) v->clear();
    c.cached_smoothing = c.smoothing;
    c.cached_log = c.log_y;
  }
  const float sign = c.log_y ? -1.0f : 1.0f;  // on a log axis: −ELBO and −log p(x|z), which are positive
  for (std::size_t i = c.step_x.size(); i < n; ++i) {
    c.step_x.push_back(static_cast<float>(steps[i].step));
    c.elbo.push_back(sign * steps[i].elbo);
    c.recon.push_back(sign * steps[i].recon);
    c.kl.push_back(steps[i].kl);
  }
  const float alpha = 1.0f - std::clamp(c.smoothing, 0.0f, 0.999f);
  extend_ema(c.elbo, c.elbo_s, alpha);
  extend_ema(c.recon, c.recon_s, alpha);
  extend_ema(c.kl, c.kl_s, alpha);
  // About two points (a bucket's min and max) per pixel column of the plot they are drawn in: more
  // cannot be seen, and software GL sets up every segment's triangles.
  auto budget = [](float px) { return static_cast<std::size_t>(2 * std::clamp(px, 32.0f, 4096.0f)); };
  const std::size_t top = budget(c.top_plot_px), bottom = budget(c.bottom_plot_px);
  decimate_min_max(c.step_x, c.elbo, top, c.d_elbo.x, c.d_elbo.y);
  decimate_min_max(c.step_x, c.recon, bottom, c.d_recon.x, c.d_recon.y);
  decimate_min_max(c.step_x, c.kl, bottom, c.d_kl.x, c.d_kl.y);
  decimate_min_max(c.step_x, c.elbo_s, top, c.d_elbo_s.x, c.d_elbo_s.y);
  decimate_min_max(c.step_x, c.recon_s, bottom, c.d_recon_s.x, c.d_recon_s.y);
  decimate_min_max(c.step_x, c.kl_s, bottom, c.d_kl_s.x, c.d_kl_s.y);
  const auto& epochs = snap.history.epochs;
  const std::size_t m = epochs.size();
  c.epoch_x.resize(m);
  c.test_elbo.resize(m);
  c.test_recon.resize(m);
  c.test_kl.resize(m);
  c.train_epoch_elbo.resize(m);
  for (std::size_t i = 0; i < m; ++i) {
    c.epoch_x[i] = static_cast<float>(epochs[i].step);
    c.test_elbo[i] = sign * epochs[i].test_elbo;
    c.test_recon[i] = sign * epochs[i].test_recon;
    c.test_kl[i] = epochs[i].test_kl;
    c.train_epoch_elbo[i] = sign * epochs[i].train_elbo;
  }
  c.marker_x.clear();
  c.marker_text.clear();
  for (const ChangeMarker& mk : snap.history.markers) {
    c.marker_x.push_back(static_cast<double>(mk.step));
    c.marker_text.push_back(mk.text);
  }
}

}  // namespace

void draw_curves(AppState& state, const Snapshot& snap) {
  CurvesState& c = state.curves;
  ImGui::Checkbox("log", &c.log_y);
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Log axis: shows −ELBO and −log p(x|z) (positive, lower is better)");
  ImGui::SameLine();
  ImGui::Checkbox("raw", &c.show_raw);
  ImGui::SameLine();
  ImGui::Checkbox("clip", &c.robust);
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Scale the y axis to the 1st–99th percentile, so the first steps don't flatten the rest");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 5);
  ImGui::SliderFloat("smooth", &c.smoothing, 0.0f, 0.995f, "%.3f");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Exponential moving average of the training curves: the weight of the past");
  ImGui::SameLine();
  if (ImGui::SmallButton("Export CSV")) {
    try {
      const auto file = unique_export_path(state.export_dir, "curves", ".csv");
      write_curves_csv(file, snap.history);
      state.post(Severity::Info, "Saved " + file.string());
    } catch (const std::exception& e) {
      state.post(Severity::Error, std::string("CSV export failed: ") + e.what());
    }
  }
  refresh(c, snap, state.now);

  std::vector<PlotMarker> markers;
  for (std::size_t i = 0; i < c.marker_x.size(); ++i) markers.push_back({c.marker_x[i], c.marker_text[i]});
  const std::size_t m = c.epoch_x.size();
  using Drawn = CurvesState::Drawn;
  auto series3 = [&](const Drawn& raw, const Drawn& smooth, const std::vector<float>& test) {
    std::vector<PlotSeries> s;
    if (c.show_raw) s.push_back({"train (raw)", raw.x.data(), raw.y.data(), raw.x.size(), kRaw, 1.0f, false, false, false});
    s.push_back({c.smoothing > 0 ? "train (smoothed)" : "train", smooth.x.data(), smooth.y.data(), smooth.x.size(), kSmooth, 1.8f});
    s.back().legend_name = "train";
    s.push_back({"test", c.epoch_x.data(), test.data(), m, kTest, 1.5f, true});
    return s;
  };

  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float spacing = ImGui::GetStyle().ItemSpacing.y;
  const float top_h = std::max(80.0f, (avail.y - spacing) * 0.56f);
  PlotOptions top;
  top.title = c.log_y ? "−ELBO (nats/image)" : "ELBO (nats/image)";
  top.x_label = "step";
  top.log_y = c.log_y;
  top.robust_y = c.robust;
  auto elbo_series = series3(c.d_elbo, c.d_elbo_s, c.test_elbo);
  elbo_series.push_back({"train (epoch mean)", c.epoch_x.data(), c.train_epoch_elbo.data(), m, kTrainEpoch, 1.2f, true});
  elbo_series.back().legend_name = "epoch mean";
  plot("##elbo", ImVec2(avail.x, top_h), top, elbo_series, markers);

  const float half_w = (avail.x - ImGui::GetStyle().ItemSpacing.x) * 0.5f;
  if (std::fabs(c.top_plot_px - avail.x) > 8 || std::fabs(c.bottom_plot_px - half_w) > 8) {
    c.top_plot_px = avail.x;  // resized: decimate again for the new widths
    c.bottom_plot_px = half_w;
    c.history_key = std::numeric_limits<std::uint64_t>::max();
    c.refreshed_at = -1e9;
  }
  const float bottom_h = std::max(60.0f, avail.y - top_h - spacing);
  PlotOptions rec = top;
  rec.title = c.log_y ? "−log p(x|z)" : "reconstruction log p(x|z)";
  rec.legend = false;
  plot("##recon", ImVec2(half_w, bottom_h), rec, series3(c.d_recon, c.d_recon_s, c.test_recon), markers);
  ImGui::SameLine();
  PlotOptions kl = rec;
  kl.title = "KL(q(z|x) ‖ p(z))";
  plot("##kl", ImVec2(half_w, bottom_h), kl, series3(c.d_kl, c.d_kl_s, c.test_kl), markers);
}

}  // namespace vaelab::app
