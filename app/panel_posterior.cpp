// "True posterior" tab: p(z|x) of one test image on a grid of the latent plane (exact for a 2-D
// latent, the latent map's plane through μ otherwise) as a viridis heat map with q(z|x)'s 1σ / 2σ
// ellipses, the image and its reconstruction, and log p(x), ELBO, IWAE_K, KL(q ‖ p(z|x)).
// The grid is computed off the UI thread (std::async, polled each frame); not the maths (core/gap).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>

#include "app/panels.hpp"

namespace vaelab::app {
namespace {

// Heat map values: rows top-down (grid row iy = 0 is the lowest v), scaled to [0, 1] by the maximum.
std::vector<float> top_down(const Eigen::MatrixXf& grid, float max_value) {
  const int n = static_cast<int>(grid.rows());
  std::vector<float> out(static_cast<std::size_t>(n) * n);
  const float inv = max_value > 0 ? 1.0f / max_value : 0.0f;
  for (int r = 0; r < n; ++r)
    for (int ix = 0; ix < n; ++ix) out[static_cast<std::size_t>(r) * n + ix] = grid(ix, n - 1 - r) * inv;
  return out;
}

void poll(GapState& g, const Snapshot& snap, double now) {
  if (!g.post.job.valid() || g.post.job.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
  g.post.key = g.post.job_key;
  g.post.finished = now;
  g.post.seconds = now - g.post.started;
  try {
    g.post.grid = g.post.job.get();
    g.post.error.clear();
    const PosteriorGrid& p = *g.post.grid;
    const int n = static_cast<int>(p.density.rows());
    const std::vector<float> heat = top_down(p.density, p.density.maxCoeff());
    g.post.heat.update(heat.data(), n, n);
    const ImageSet& test = snap.data->test;
    if (g.post.key.index >= 0 && g.post.key.index < test.count) {
      g.post.x.update_bytes(test.image(g.post.key.index), test.width, test.height, test.channels);
      Eigen::MatrixXf img;
      // The model may have moved on since; the reconstruction is the current one of q's mean.
      decode(snap, p.q_mu, img);
      g.post.recon.update(img.data(), test.width, test.height, test.channels);
    }
  } catch (const std::exception& e) {
    g.post.grid.reset();
    g.post.error = e.what();
  }
}

void ellipse(ImDrawList* dl, const Ellipse& e, ImVec2 p0, ImVec2 p1, const GridSpec& spec, ImU32 col, float thick) {
  ImVec2 pts[64];
  const float c = std::cos(e.angle), s = std::sin(e.angle);
  const float lo_u = spec.center.x() - spec.half_width.x(), lo_v = spec.center.y() - spec.half_width.y();
  for (int k = 0; k < 64; ++k) {
    const float t = 2.0f * 3.14159265f * k / 64;
    const float a = e.axes.x() * std::cos(t), b = e.axes.y() * std::sin(t);
    const float u = e.center.x() + c * a - s * b, v = e.center.y() + s * a + c * b;
    pts[k] = ImVec2(p0.x + (u - lo_u) / (2 * spec.half_width.x()) * (p1.x - p0.x),
                    p1.y - (v - lo_v) / (2 * spec.half_width.y()) * (p1.y - p0.y));
  }
  dl->AddPolyline(pts, 64, col, ImDrawFlags_Closed, thick);
}

// The test image, the grid's resolution and zoom.
void draw_posterior_controls(GapState& g, const Snapshot& snap) {
  if (g.post.index < 0 && !snap.display_indices.empty()) g.post.index = snap.display_indices[0];
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6);
  ImGui::InputInt("test #", &g.post.index, 1, 10);
  g.post.index = std::clamp(g.post.index, 0, std::max(0, snap.data->test.count - 1));
  ImGui::SameLine();
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6);
  ImGui::SliderInt("grid", &g.resolution, 32, 512, "%d²");
  ImGui::SameLine();
  ImGui::Checkbox("zoom", &g.zoom);
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("Frame ±6 sd around the posterior (found on a coarse grid first);\noff: ±max(4σ_q, 3) around q's mean");
  ImGui::SameLine();
  help_marker("Right-click a point on the latent map to show its posterior here.\n"
              "p(z|x) ∝ p(x|z) p(z) evaluated on every grid cell (n² decodes) and normalised:\n"
              "log p(x) by quadrature, KL(q ‖ p(z|x)) from the normalised cell masses.\n"
              "For a latent size > 2 the grid is the latent map's plane through q's mean: a slice\n"
              "(conditional densities), so its KL is not the gap.");
}

// Starts computing the grid for what the controls ask (off the UI thread) unless it is shown or
// running already.
void start_posterior_job(AppState& state, const Snapshot& snap) {
  GapState& g = state.gap;
  const int d = snap.model->latent();
  // The plane: exact for d = 2; otherwise the latent map's (PCA or two dims).
  const LatentMapState& map = state.latent;
  GridSpec base;
  base.resolution = g.resolution;
  const bool use_plane = d > 2 && map.plane_valid && map.plane.components.rows() == d;
  if (use_plane) base.directions = map.plane.components;
  const GapState::Posterior::Key key{state.model_serial, g.post.index, g.resolution, g.iwae_k, use_plane ? map.plane_serial : 0, g.zoom};

  if (!g.post.job.valid() && !(key == g.post.key)) {
    // A new model alone (training runs on) is followed at most every few seconds: each grid costs
    // n² decodes on a core the trainer would like to have.
    GapState::Posterior::Key same_but_model = key;
    same_but_model.model = g.post.key.model;
    same_but_model.plane = g.post.key.plane;
    const bool only_model = same_but_model == g.post.key;
    if (!only_model || state.now - g.post.finished > 5.0) {
      std::shared_ptr<const Model> model = snap.model;
      Eigen::MatrixXf x = test_image(snap, g.post.index);
      GapOptions opt;
      opt.iwae_k = g.iwae_k;
      opt.seed = static_cast<std::uint64_t>(g.post.index) + 1;
      g.post.job_key = key;
      g.post.started = state.now;
      const bool zoom = g.zoom;
      g.post.job = std::async(std::launch::async, [model, x, base, opt, zoom] {
        Eigen::MatrixXf mu, logvar;
        model->encode(x, mu, logvar);
        const Eigen::VectorXf sigma = (0.5f * logvar.col(0).array()).exp();
        GridSpec spec = auto_grid_for(mu.col(0), sigma, base);
        if (zoom) {
          // auto_grid_for never goes below ±3, where a sharp posterior is a dot: find it on a coarse
          // grid first, then frame ±6 sd of the wider of p(z|x) and q(z|x) (square cells).
          GridSpec coarse = spec;
          coarse.resolution = 96;
          GapOptions quick;
          quick.elbo_samples = 1;
          quick.iwae_k = 0;
          const PosteriorGrid first = posterior_grid(*model, x.col(0), coarse, quick);
          const double sd = std::sqrt(std::max({first.posterior_cov(0, 0), first.posterior_cov(1, 1),
                                                static_cast<double>(first.q_1sigma.axes.x() * first.q_1sigma.axes.x())}));
          spec = first.spec;
          spec.resolution = base.resolution;
          spec.center = first.posterior_mean.cast<float>();
          spec.half_width.setConstant(static_cast<float>(std::max(6 * sd, 1e-3)));
        }
        return posterior_grid(*model, x.col(0), spec, opt);
      });
    }
  }
}

// The heat map of p(z|x) with q's ellipses, the image and its reconstruction beside it.
void draw_posterior_view(AppState& state, const PosteriorGrid& p) {
  GapState& g = state.gap;
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float line = ImGui::GetTextLineHeightWithSpacing();
  const float side_w = std::max(60.0f, avail.x * 0.24f);
  const float spacing = ImGui::GetStyle().ItemSpacing.x;
  const float heat = std::max(64.0f, std::min(avail.x - side_w - colour_scale_width() - 2 * spacing, avail.y - 6.5f * line));
  g.post.heat.draw(ImVec2(heat, heat), kViridis);
  const ImVec2 p0 = ImGui::GetItemRectMin(), p1 = ImGui::GetItemRectMax();
  state.note_rect("posterior_heat");
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->PushClipRect(p0, p1, true);
  ellipse(dl, p.q_2sigma, p0, p1, p.spec, IM_COL32(255, 255, 255, 150), 1.2f);
  ellipse(dl, p.q_1sigma, p0, p1, p.spec, IM_COL32(255, 255, 255, 255), 1.8f);
  dl->PopClipRect();
  if (ImGui::IsItemHovered()) {
    const ImVec2 m = ImGui::GetIO().MousePos;
    const float u = p.spec.center.x() - p.spec.half_width.x() + (m.x - p0.x) / (p1.x - p0.x) * 2 * p.spec.half_width.x();
    const float v = p.spec.center.y() + p.spec.half_width.y() - (m.y - p0.y) / (p1.y - p0.y) * 2 * p.spec.half_width.y();
    ImGui::SetTooltip("u %.3f, v %.3f\ncolour: p(z|x) / max\nwhite: q(z|x) 1σ and 2σ ellipses", u, v);
  }
  ImGui::SameLine();
  colour_scale("##post_scale", heat, kViridis, 0.0, static_cast<double>(p.density.maxCoeff()),
               "p(z|x) on the grid (density per unit area)");
  ImGui::SameLine();
  ImGui::BeginGroup();
  // The image and its reconstruction stacked beside the heat map, no taller than it with their labels.
  const float img_side = std::max(16.0f, std::min(side_w, (heat - 4 * line) / 2));
  const ImVec2 img = g.post.x.fit(ImVec2(img_side, img_side));
  g.post.x.draw(img, state.colormap);
  ImGui::TextDisabled("x (#%d)", g.post.key.index);
  g.post.recon.draw(img, state.colormap);
  ImGui::TextDisabled("recon. of μ");
  ImGui::TextDisabled("%d² cells", static_cast<int>(p.density.rows()));
  if (g.post.job.valid()) ImGui::TextDisabled("updating…");  // the next model's grid, in the background
  else ImGui::TextDisabled("%.1f s", g.post.seconds);
  ImGui::EndGroup();
  ImGui::TextDisabled("u ∈ [%.2f, %.2f]  v ∈ [%.2f, %.2f]%s", p.spec.center.x() - p.spec.half_width.x(),
                      p.spec.center.x() + p.spec.half_width.x(), p.spec.center.y() - p.spec.half_width.y(),
                      p.spec.center.y() + p.spec.half_width.y(), p.exact ? "  (z₁, z₂)" : "  (plane through μ)");
}

// ELBO, IWAE, log p(x) and the KL, exact in 2-d, of a slice otherwise.
void draw_posterior_numbers(const GapState& g, const PosteriorGrid& p) {
  ImGui::Text("ELBO %.2f ± %.2f    IWAE_%d %.2f", p.elbo, p.elbo_se, g.post.key.k, p.iwae);
  if (p.exact) {
    ImGui::Text("log p(x) %.2f (quadrature)    IWAE − ELBO %.3f", p.log_px, p.iwae - p.elbo);
    ImGui::Text("KL(q ‖ p(z|x)) %.3f (grid)    log p(x) − ELBO %.3f", p.kl_grid, p.gap_check);
  } else {
    // On a slice log_px is not log p(x), so log_px − ELBO means nothing; IWAE − ELBO still bounds the gap.
    ImGui::Text("IWAE − ELBO %.3f (≤ the gap KL(q ‖ p(z|x)))", p.iwae - p.elbo);
    ImGui::TextDisabled("slice: log ∫ p(x, z₀+Uu) du %.2f, KL of the conditionals %.3f", p.log_px, p.kl_grid);
  }
  if (p.edge_mass > 1e-3)
    ImGui::TextColored(kWarningColour, "%.1e of the posterior mass lies on the grid's edge: the window cuts it", p.edge_mass);
}

}  // namespace

void draw_posterior_tab(AppState& state, const Snapshot& snap) {
  if (!has_plane(snap, "The true posterior is shown on a plane: it needs a latent size of at least 2.")) return;
  GapState& g = state.gap;
  draw_posterior_controls(g, snap);
  poll(g, snap, state.now);
  start_posterior_job(state, snap);
  if (!g.post.error.empty()) ImGui::TextColored(kErrorColour, "%s", g.post.error.c_str());
  if (!g.post.grid) {
    if (g.post.error.empty()) ImGui::TextDisabled("computing the posterior grid… %.1f s", state.now - g.post.started);
    return;
  }
  draw_posterior_view(state, *g.post.grid);
  draw_posterior_numbers(g, *g.post.grid);
}

}  // namespace vaelab::app
