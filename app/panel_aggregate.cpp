// "Aggregate" tab: the aggregate posterior q(z) = mean_n q(z|x_n) of (up to 2,000 of) the display
// subset beside the prior N(0, I), on the latent map's plane, with the share of prior mass in
// "holes" (where q(z) < 0.1 · p(z)). The subset is re-encoded (μ and log σ²; the snapshot has only
// μ) off the UI thread, at most every few seconds. Not the maths (core/gap aggregate_posterior_grid).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <string>

#include "app/panels.hpp"

namespace vaelab::app {
namespace {

constexpr int kMaxPoints = 2000;  // enough for the picture; the sampled (non-axis) path costs N · n²

std::vector<float> top_down(const Eigen::MatrixXf& grid, float max_value) {
  const int n = static_cast<int>(grid.rows());
  std::vector<float> out(static_cast<std::size_t>(n) * n);
  const float inv = max_value > 0 ? 1.0f / max_value : 0.0f;
  for (int r = 0; r < n; ++r)
    for (int ix = 0; ix < n; ++ix) out[static_cast<std::size_t>(r) * n + ix] = std::sqrt(std::min(1.0f, grid(ix, n - 1 - r) * inv));
  return out;
}

}  // namespace

void draw_aggregate_tab(AppState& state, const Snapshot& snap) {
  if (!has_plane(snap, "Needs a latent size of at least 2.")) return;
  GapState& g = state.gap;
  const int d = snap.model->latent();
  if (g.agg.job.valid() && g.agg.job.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    try {
      g.agg.grid = g.agg.job.get();
      g.agg.model = g.agg.job_model;
      const AggregateGrid& a = *g.agg.grid;
      // One scale for both, so that holes and overflows read as colour differences.
      const float top = std::max(a.density.maxCoeff(), a.prior.maxCoeff());
      const int n = static_cast<int>(a.density.rows());
      const std::vector<float> q = top_down(a.density, top), p = top_down(a.prior, top);
      state.note_work('A');
      g.agg.heat.update(q.data(), n, n);
      g.agg.prior_heat.update(p.data(), n, n);
    } catch (const std::exception& e) {
      state.post(Severity::Error, std::string("Aggregate posterior: ") + e.what());
    }
  }
  const std::size_t count = std::min<std::size_t>(snap.display_indices.size(), kMaxPoints);
  if (!g.agg.job.valid() && count > 0 && state.model_serial != g.agg.model && state.now - g.agg.started > 4.0) {
    std::shared_ptr<const Model> model = snap.model;
    std::shared_ptr<const Dataset> data = snap.data;
    std::vector<int> idx(snap.display_indices.begin(), snap.display_indices.begin() + static_cast<long>(count));
    GridSpec spec;
    spec.resolution = 128;  // the window's half-width is chosen from the codes once they are encoded
    const LatentMapState& map = state.latent;
    if (d > 2 && map.plane_valid && map.plane.components.rows() == d) spec.directions = map.plane.components;
    g.agg.started = state.now;
    g.agg.job_model = state.model_serial;
    g.agg.job = std::async(std::launch::async, [model, data, idx, spec] {
      const ImageSet& set = data->test;
      Eigen::MatrixXf x(set.values_per_image(), static_cast<Eigen::Index>(idx.size()));
      for (std::size_t j = 0; j < idx.size(); ++j) {
        const std::uint8_t* p = set.image(idx[j]);
        for (Eigen::Index k = 0; k < x.rows(); ++k) x(k, static_cast<Eigen::Index>(j)) = p[k] * (1.0f / 255.0f);
      }
      Eigen::MatrixXf mu, logvar;
      model->encode(x, mu, logvar);
      // The clustering VAE's prior is its mixture of cluster Gaussians (log σ² clamped as in
      // training); otherwise N(0, I) (null components).
      const bool mixture = model->clusters() > 0;
      Eigen::MatrixXf cm, cl;
      if (mixture) {
        cm = model->cluster_means();
        cl = model->cluster_logvars_clamped();
      }
      const Eigen::MatrixXf* pm = mixture ? &cm : nullptr;
      const Eigen::MatrixXf* pl = mixture ? &cl : nullptr;
      // A window wide enough for both densities (a clustering VAE's codes and clusters reach ±5
      // and more; a fixed ±3.5 showed three quarters of its prior).
      GridSpec view = spec;
      view.half_width.setConstant(aggregate_view_half_width(mu, logvar, view, pm, pl));
      return aggregate_posterior_grid(mu, logvar, view, nullptr, pm, pl);
    });
  }
  if (!g.agg.grid) {
    ImGui::TextDisabled("encoding the display subset…");
    return;
  }
  const AggregateGrid& a = *g.agg.grid;
  ImGui::Text("holes: %.1f%% of the prior's mass where q(z) < 0.1·p(z)", 100 * a.hole_fraction);
  ImGui::SameLine();
  const bool mixture = snap.model->clusters() > 0;
  const std::string help =
      std::string("q(z) = (1/N) Σ_n q(z|x_n) over the display subset, against ") +
      (mixture ? "the clustering VAE's prior\np(z) = (1/K) Σ_y N(μ_y, σ_y²), its mixture of cluster Gaussians.\n"
               : "the prior p(z) = N(0, I).\n") +
      "Where the prior has mass but q(z) has little, samples from the prior decode to images\n"
      "the decoder never saw in training: the 'holes' of the latent space.\n"
      "Both maps share one colour scale (√density, to show the tails). For a latent size > 2: the latent map's plane through 0.";
  help_marker(help.c_str());
  ImGui::TextDisabled("mass in view: q(z) %.3f, prior %.3f (%d images)", a.aggregate_mass, a.prior_mass,
                      static_cast<int>(std::min<std::size_t>(snap.display_indices.size(), kMaxPoints)));
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float spacing = ImGui::GetStyle().ItemSpacing.x;
  const float side = std::max(48.0f, std::min((avail.x - colour_scale_width() - 2 * spacing) / 2,
                                              avail.y - ImGui::GetTextLineHeightWithSpacing() - 4));
  ImGui::BeginGroup();
  g.agg.heat.draw(ImVec2(side, side), kViridis);
  state.note_rect("aggregate_heat");
  ImGui::TextDisabled("q(z), ±%.1f%s", a.spec.half_width.x(), d == 2 ? "" : " (map plane)");
  ImGui::EndGroup();
  ImGui::SameLine();
  ImGui::BeginGroup();
  g.agg.prior_heat.draw(ImVec2(side, side), kViridis);
  ImGui::TextDisabled(mixture ? "prior: mixture of the K clusters" : "prior N(0, I)");
  ImGui::EndGroup();
  ImGui::SameLine();
  const double top = std::max(a.density.maxCoeff(), a.prior.maxCoeff());
  colour_scale("##agg_scale", side, kViridis, 0.0, top, "density of both maps, coloured by its square root");
}

}  // namespace vaelab::app
