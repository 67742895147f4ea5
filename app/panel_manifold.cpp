// Manifold panel: a grid of images decoded across the latent map's plane, spaced by
// Kingma & Welling's Φ⁻¹ coordinates (view_math manifold_coordinates); for a PCA plane the
// coordinates are scaled by the spread of the codes along each axis, other dims are held at the
// decoder's z. Hover shows a tile's z, click sends it to the decoder. Not the latent map.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/view_math.hpp"
#include "app/panels.hpp"
#include "core/model.hpp"

namespace vaelab::app {

void draw_manifold(AppState& state, const Snapshot& snap) {
  ManifoldState& mf = state.manifold;
  const LatentMapState& map = state.latent;
  DecoderState& dec = state.decoder;
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 7.0f);
  ImGui::SliderInt("##n", &mf.n, 3, 30, "%d per side");
  ImGui::SameLine();
  export_png_button(state, "PNG", mf.grid, "manifold");
  ImGui::SameLine();
  const int d = static_cast<int>(dec.z.size());
  if (map.mode == LatentMapState::kTwoDims && d >= 2) ImGui::TextDisabled("z%d across, z%d up", map.dim_x + 1, map.dim_y + 1);
  else ImGui::TextDisabled("PCA plane (±1.6 sd)");
  help_marker("Images decoded on a grid over the latent map's plane (Φ⁻¹ of evenly spaced "
              "probabilities). Other dimensions follow the decoder's z. Click a tile to send its z "
              "to the decoder.");

  if (!snap.model || d == 0 || !map.plane_valid || map.plane.mean.size() != d) {
    ImGui::TextDisabled("waiting for the latent map…");
    return;
  }
  const bool pca = map.mode == LatentMapState::kPcaPlane;
  const Eigen::VectorXf base = pca ? map.plane.mean : dec.z;
  // Rebuild with new weights a few times a second; at once when n, the plane or the base change.
  const bool stale = mf.built_n != mf.n || mf.built_plane != map.plane_serial || mf.built_base.size() != base.size() ||
                     (!pca && d > 2 && mf.built_base != base);
  if (stale) mf.refresh.invalidate();
  if (state.heavy_due(mf.refresh, 0.3, stale)) {
    state.note_work('M');
    const int n = mf.n;
    const std::vector<float> c = manifold_coordinates(n);
    float su = 1, sv = 1;
    if (pca) {
      su = std::sqrt(std::max(map.plane.explained_variance[0], 1e-6f));
      sv = std::sqrt(std::max(map.plane.explained_variance[1], 1e-6f));
    }
    mf.zs.resize(d, n * n);
    for (int r = 0; r < n; ++r)
      for (int col = 0; col < n; ++col)
        mf.zs.col(r * n + col) = move_in_plane(map, base, c[static_cast<std::size_t>(col)] * su,
                                               c[static_cast<std::size_t>(n - 1 - r)] * sv);
    Eigen::MatrixXf img;
    decode(snap, mf.zs, img);
    int gw = 0, gh = 0;
    const ModelConfig& mc = snap.model_config;
    const std::vector<float> grid = tile_images(img, mc.image_c, mc.image_h, mc.image_w, n, n, 0, gw, gh);
    mf.grid.update(grid.data(), gw, gh, mc.image_c);
    mf.built_n = n;
    mf.built_plane = map.plane_serial;
    mf.built_base = base;
  }

  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const ImVec2 size = mf.grid.fit(avail);
  ImGui::SetCursorPosX(ImGui::GetCursorPosX() + std::max(0.0f, (avail.x - size.x) * 0.5f));
  const ImVec2 q0 = ImGui::GetCursorScreenPos();
  mf.grid.draw(size, state.colormap);
  if (ImGui::IsItemHovered() && mf.built_n > 0 && mf.zs.cols() == mf.built_n * mf.built_n) {
    const int n = mf.built_n;
    const ImVec2 m = ImGui::GetIO().MousePos;
    const int col = std::clamp(static_cast<int>((m.x - q0.x) / size.x * n), 0, n - 1);
    const int r = std::clamp(static_cast<int>((m.y - q0.y) / size.y * n), 0, n - 1);
    const float tw = size.x / n, th = size.y / n;
    ImGui::GetWindowDrawList()->AddRect(ImVec2(q0.x + col * tw, q0.y + r * th), ImVec2(q0.x + (col + 1) * tw, q0.y + (r + 1) * th),
                                        IM_COL32(255, 210, 40, 255), 0, 0, 2.0f);
    const Eigen::VectorXf z = mf.zs.col(r * n + col);
    std::string text = "z = (";
    for (int k = 0; k < std::min(d, 8); ++k) {
      char buf[24];
      std::snprintf(buf, sizeof buf, "%s%.2f", k ? ", " : "", static_cast<double>(z[k]));
      text += buf;
    }
    text += d > 8 ? ", …)" : ")";
    ImGui::SetTooltip("%s\nclick: send to the decoder", text.c_str());
    if (ImGui::IsItemClicked()) dec.z = z;
  }
}

}  // namespace vaelab::app
