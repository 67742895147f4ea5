// Latent map: the encoded means of the display subset of the test set as GL point sprites,
// coloured by label with a legend; PCA plane or two chosen dims for latent > 2. Drag pans, the
// wheel zooms, hover shows the test image and its reconstruction, click sets A, shift-click B,
// the decoder's z is a ring that can be dragged (double-click moves it). Overlays: A→B paths.
// Not the projection maths (core/view_math: pca_2d, project).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "app/panels.hpp"
#include "core/clustering.hpp"
#include "core/model.hpp"

namespace vaelab::app {
namespace {

constexpr float kPickPx = 7.0f;     // hover radius for points
constexpr float kHandlePx = 10.0f;  // grab radius of the z ring

// The colour index of cluster k: its matched label's when there are labels (so "by cluster" and
// "by class" share colours and mismatches stand out), else k itself.
int cluster_colour_index(const LatentMapState& map, int k) {
  if (k >= 0 && k < static_cast<int>(map.cluster_to_label.size()) && map.cluster_to_label[static_cast<std::size_t>(k)] >= 0)
    return map.cluster_to_label[static_cast<std::size_t>(k)];
  return k;
}

// A new model (its latent size) gets the default view: two dims for d = 2, else the PCA plane.
void reset_view_for_latent(LatentMapState& map, int d) {
  map.mode = d == 2 ? LatentMapState::kTwoDims : LatentMapState::kPcaPlane;
  map.dim_x = 0;
  map.dim_y = d > 1 ? 1 : 0;
  map.mode_for_latent = d;
  map.auto_fit = true;
  map.goal.half_h = -1;
}

// The plane: unit axes for two chosen dims, else the codes' PCA plane (invalid below two codes).
void update_plane(LatentMapState& map, const Snapshot& snap, int d, bool plane_changed) {
  const Eigen::Index n = snap.latent_mu.cols();
  if (map.mode == LatentMapState::kTwoDims) {
    map.plane.mean = Eigen::VectorXf::Zero(d);
    map.plane.components = Eigen::MatrixXf::Zero(d, 2);
    map.plane.components(map.dim_x, 0) = 1;
    map.plane.components(map.dim_y, 1) = 1;
    map.plane_valid = true;
    if (plane_changed) ++map.plane_serial;
  } else if (n >= 2) {
    const bool had = map.plane_valid && map.plane.components.rows() == d && !plane_changed;
    const Eigen::MatrixXf old = had ? map.plane.components : Eigen::MatrixXf();
    map.plane = pca_2d(snap.latent_mu);
    // PCA directions have no sign: keep them pointing the way they did, so the map doesn't flip.
    if (had)
      for (int k = 0; k < 2; ++k)
        if (map.plane.components.col(k).dot(old.col(k)) < 0) map.plane.components.col(k) *= -1;
    map.plane_valid = true;
    ++map.plane_serial;
  } else {
    map.plane_valid = false;
  }
}

// Each code's colour index: its cluster's (matched label's) or its test label (255: none).
void colour_codes(LatentMapState& map, const Snapshot& snap, int K) {
  const Eigen::Index n = snap.latent_mu.cols();
  map.labels.assign(static_cast<std::size_t>(n), 255);
  const ImageSet& test = snap.data->test;
  if (map.colour_by == LatentMapState::kByCluster && K > 0 && map.cluster_of.size() == static_cast<std::size_t>(n)) {
    for (Eigen::Index k = 0; k < n; ++k)
      map.labels[static_cast<std::size_t>(k)] =
          static_cast<std::uint8_t>(cluster_colour_index(map, map.cluster_of[static_cast<std::size_t>(k)]) % 255);
  } else if (test.has_labels())
    for (Eigen::Index k = 0; k < n; ++k) {
      const int i = snap.display_indices[static_cast<std::size_t>(k)];
      map.labels[static_cast<std::size_t>(k)] = test.labels[static_cast<std::size_t>(i)];
    }
  map.points.set_points(map.xy.data(), map.labels.data(), static_cast<int>(n));
}

// The codes' robust extent (0.5 % … 99.5 %), where auto-fit takes the view.
void fit_extent(LatentMapState& map) {
  std::vector<float> xs(map.xy.row(0).begin(), map.xy.row(0).end()), ys(map.xy.row(1).begin(), map.xy.row(1).end());
  auto quantile = [](std::vector<float>& v, double q) {
    const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(q * (v.size() - 1)));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return static_cast<double>(v[k]);
  };
  const double x0 = quantile(xs, 0.005), x1 = quantile(xs, 0.995), y0 = quantile(ys, 0.005), y1 = quantile(ys, 0.995);
  if (std::isfinite(x0) && std::isfinite(x1) && std::isfinite(y0) && std::isfinite(y1)) {
    map.fit.cx = (x0 + x1) / 2;
    map.fit.cy = (y0 + y1) / 2;
    map.fit.half_w = std::max((x1 - x0) / 2 * 1.12, 1e-3);
    map.fit.half_h = std::max((y1 - y0) / 2 * 1.12, 1e-3);
  }
}

// Projects the codes onto the map's plane when the codes or the plane changed, with their colours
// and extent.
void choose_plane(LatentMapState& map, const Snapshot& snap) {
  const int d = snap.model ? snap.model->latent() : 0;
  if (d <= 0) return;
  if (map.mode_for_latent != d) reset_view_for_latent(map, d);
  if (d == 1) map.mode = LatentMapState::kPcaPlane;
  map.dim_x = std::clamp(map.dim_x, 0, d - 1);
  map.dim_y = std::clamp(map.dim_y, 0, d - 1);
  const Eigen::Index n = snap.latent_mu.cols();
  const int K = snap.model->clusters();
  if (K == 0) map.colour_by = LatentMapState::kByLabel;
  update_cluster_scores(map, snap);
  const bool codes_changed = map.codes.step != snap.latent_step || map.codes.data != snap.data.get() ||
                             map.codes.count != static_cast<std::size_t>(n) || map.codes.colour != map.colour_by ||
                             (map.colour_by == LatentMapState::kByCluster && map.codes.score_serial != map.score_serial);
  const bool plane_changed = map.codes.mode != map.mode || map.codes.dx != map.dim_x || map.codes.dy != map.dim_y ||
                             map.plane.mean.size() != d;
  if (!codes_changed && !plane_changed) return;
  map.codes.step = snap.latent_step;
  map.codes.data = snap.data.get();
  map.codes.colour = map.colour_by;
  map.codes.score_serial = map.score_serial;
  map.codes.count = static_cast<std::size_t>(n);
  map.codes.mode = map.mode;
  map.codes.dx = map.dim_x;
  map.codes.dy = map.dim_y;
  update_plane(map, snap, d, plane_changed);
  if (!map.plane_valid || n == 0) {
    map.xy.resize(2, 0);
    map.labels.clear();
    map.points.set_points(nullptr, nullptr, 0);
    return;
  }
  map.xy = project(map.plane, snap.latent_mu);
  colour_codes(map, snap, K);
  fit_extent(map);
}

double plane_variance_percent(const LatentMapState& map) {
  return 100.0 * (map.plane.explained_variance[0] + map.plane.explained_variance[1]) / map.plane.total_variance;
}

void draw_toolbar(AppState& state, LatentMapState& map, const Snapshot& snap) {
  const int d = snap.model ? snap.model->latent() : 0;
  if (snap.model && snap.model->clusters() > 0) {
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 7.0f);
    const char* by[] = {"by class", "by cluster"};
    ImGui::Combo("##colour", &map.colour_by, by, 2);
    state.note_rect("latent_colour");  // for scripts (screenshots of both colourings)
    if (ImGui::IsItemHovered())
      ImGui::SetTooltip("Colour the codes by the data's labels or by the clustering VAE's argmax p(y|z)\n"
                        "(each cluster in the colour of the label it is matched to)");
    if (std::isfinite(map.cluster_acc)) {
      char scores[64];
      std::snprintf(scores, sizeof scores, "acc %.3f  NMI %.3f", map.cluster_acc, map.cluster_nmi);
      same_line_if_fits(ImGui::CalcTextSize(scores).x);
      fitted_text(state, "map_clusters", scores);
      if (ImGui::IsItemHovered())
        ImGui::SetTooltip("Live, on the %d test codes shown: unsupervised clustering accuracy (best one-to-one\n"
                          "matching of clusters to labels, Hungarian algorithm) and normalised mutual information.\n"
                          "%d of %d clusters in use.",
                          map.scored_points, map.used_clusters, snap.model->clusters());
    }
  }
  if (d >= 2) {
    if (snap.model && snap.model->clusters() > 0) same_line_if_fits(ImGui::GetFontSize() * 6.5f);
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6.5f);
    const char* modes[] = {"PCA plane", "two dims"};
    ImGui::Combo("##mode", &map.mode, modes, 2);
    if (map.mode == LatentMapState::kTwoDims) {
      // "z1 vs z2" stays together: on this line if it fits, else on the next.
      const float combo_w = ImGui::GetFontSize() * 3.8f, spacing = ImGui::GetStyle().ItemSpacing.x;
      same_line_if_fits(combo_w * 2 + ImGui::CalcTextSize("vs").x + spacing * 2);
      auto dim_combo = [&](const char* id, int& dim) {
        ImGui::SetNextItemWidth(combo_w);
        char preview[16];
        std::snprintf(preview, sizeof preview, "z%d", dim + 1);
        if (ImGui::BeginCombo(id, preview)) {
          for (int k = 0; k < d; ++k) {
            char name[16];
            std::snprintf(name, sizeof name, "z%d", k + 1);
            if (ImGui::Selectable(name, k == dim)) dim = k;
          }
          ImGui::EndCombo();
        }
      };
      dim_combo("##dx", map.dim_x);
      ImGui::SameLine();
      ImGui::TextUnformatted("vs");
      ImGui::SameLine();
      dim_combo("##dy", map.dim_y);
    } else if (map.plane_valid && map.plane.total_variance > 0) {
      char variance[32];
      std::snprintf(variance, sizeof variance, "%.0f%% of variance", plane_variance_percent(map));
      same_line_if_fits(ImGui::CalcTextSize(variance).x);
      const ImVec4 dim = ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled);
      fitted_text(state, "map_variance", variance, 0, &dim);
    }
  }
  if (d >= 2) same_line_if_fits(ImGui::GetFontSize() * 4.5f);
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 4.5f);
  ImGui::SliderFloat("##size", &map.point_px, 1.0f, 12.0f, "dot %.0f");
  const char* fit = map.auto_fit ? "Fit (auto)" : "Fit";
  same_line_if_fits(ImGui::CalcTextSize(fit).x + ImGui::GetStyle().FramePadding.x * 2 + ImGui::GetFontSize() * 2);
  if (ImGui::SmallButton(fit)) {
    map.auto_fit = true;
    map.goal.half_h = -1;  // fit the codes as they are now
  }
  help_marker("Drag: pan · wheel: zoom · hover: the test image and its reconstruction\n"
              "Click: set A · Shift-click: set B (for the interpolation)\n"
              "Drag the yellow ring, or double-click, to move the decoder's z");
}

// The map's canvas this frame: its rectangle and the mapping between the plane and the screen.
// The centre is read from the map at each call (a pan moves it within the frame); the scale is
// the frame's.
struct Canvas {
  const LatentMapState* map = nullptr;
  ImVec2 p0, p1, size, centre;
  double ppu = 1;  // pixels per plane unit (same on both axes)
  bool hovered = false, active = false;
  ImDrawList* dl = nullptr;
  ImVec2 to_screen(double u, double v) const {
    return ImVec2(static_cast<float>(centre.x + (u - map->cx) * ppu), static_cast<float>(centre.y - (v - map->cy) * ppu));
  }
  Eigen::Vector2f plane_at(ImVec2 s) const {
    return Eigen::Vector2f(static_cast<float>(map->cx + (s.x - centre.x) / ppu), static_cast<float>(map->cy - (s.y - centre.y) / ppu));
  }
};

// The view: auto-fit eases towards the codes' extent; otherwise it stays where the user put it.
void ease_view(LatentMapState& map, ImVec2 size, float dt) {
  const double aspect = size.x / size.y;
  map.animating = false;
  if (map.auto_fit && map.codes.count > 0) {
    // The view follows the codes' extent only when it has drifted by a tenth of the view: every
    // move re-renders the scatter, and the codes move a little with every re-encoding.
    const double fit_half = std::max(map.fit.half_h, map.fit.half_w / aspect);
    const bool drifted = std::fabs(map.goal.half_h - fit_half) > 0.1 * fit_half ||
                         std::fabs(map.goal.cx - map.fit.cx) > 0.1 * fit_half ||
                         std::fabs(map.goal.cy - map.fit.cy) > 0.1 * fit_half || map.goal.half_h <= 0;
    if (drifted) {
      map.goal.cx = map.fit.cx;
      map.goal.cy = map.fit.cy;
      map.goal.half_h = fit_half;
    }
    const double k = 1.0 - std::exp(-12.0 * std::min(dt, 0.1f));
    const double target_half = map.goal.half_h;
    const bool far = std::fabs(map.half_h - target_half) > target_half * 2 || map.half_h <= 0;
    map.cx = far ? map.goal.cx : map.cx + (map.goal.cx - map.cx) * k;
    map.cy = far ? map.goal.cy : map.cy + (map.goal.cy - map.cy) * k;
    map.half_h = far ? target_half : map.half_h + (target_half - map.half_h) * k;
    // Settle exactly once close (a hundredth of the view), so the points stop being re-rendered.
    const double eps = 1e-2 * target_half;
    if (std::fabs(map.cx - map.goal.cx) < eps && std::fabs(map.cy - map.goal.cy) < eps && std::fabs(map.half_h - target_half) < eps) {
      map.cx = map.goal.cx;
      map.cy = map.goal.cy;
      map.half_h = target_half;
    } else {
      map.animating = true;
    }
  }
}

// The points, rendered off-screen into a texture, and that texture placed with the current view.
void draw_points(AppState& state, LatentMapState& map, const Canvas& c) {
  const ImVec2 fb_scale = ImGui::GetIO().DisplayFramebufferScale;
  PointView view;
  view.cx = static_cast<float>(map.cx);
  view.cy = static_cast<float>(map.cy);
  view.sx = static_cast<float>(2 * c.ppu / c.size.x);
  view.sy = static_cast<float>(2 * c.ppu / c.size.y);
  view.point_px = map.point_px * fb_scale.x;
  view.alpha = map.codes.count > 20000 ? 0.55f : 0.8f;
  const ImVec4 bg = ImGui::GetStyleColorVec4(ImGuiCol_FrameBg);
  const ImVec4 wbg = ImGui::GetStyleColorVec4(ImGuiCol_WindowBg);
  view.background = ImVec4(wbg.x * 0.7f + bg.x * 0.3f, wbg.y * 0.7f + bg.y * 0.3f, wbg.z * 0.7f + bg.z * 0.3f, 1);
  for (int k = 0; k < 10; ++k) {
    const Rgb8 col = category_colour(k);
    view.palette[static_cast<std::size_t>(k)] = {col.r / 255.0f, col.g / 255.0f, col.b / 255.0f};
  }
  view.palette_size = 10;
  // Re-rendering tens of thousands of sprites costs software GL tens of milliseconds, so while
  // the view moves the last image is shown shifted and scaled, and re-rendered at most 4 times a
  // second; new codes, a new size or style re-render at once.
  const int fw = static_cast<int>(c.size.x * fb_scale.x), fh = static_cast<int>(c.size.y * fb_scale.y);
  if (map.animating) map.view_changed_at = state.now;
  const bool moving = state.now - map.view_changed_at < 0.15;
  // Software GL sets up every sprite on the CPU: a slice of the points per frame, and the frame
  // that draws one does no other heavy refresh (AppState::heavy_due).
  constexpr int kPointsPerFrame = 4000;
  const bool continuing = map.points.busy();
  if (continuing || map.points.content_stale(fw, fh, view) || !moving || state.now - map.rendered_at > 0.25) {
    if (map.points.render(fw, fh, view, kPointsPerFrame)) {
      state.note_work('P');
      state.heavy_taken = true;
    }
    if (!continuing) map.rendered_at = state.now;
  }
  if (map.points.busy()) map.animating = true;  // keep frames coming until the render completes
  const PointView& r = map.points.rendered_view();
  if (!map.points.rendered()) c.dl->AddRectFilled(c.p0, c.p1, ImGui::ColorConvertFloat4ToU32(view.background));
  // The plane rectangle the texture covers, placed with the current view.
  const ImVec2 a = c.to_screen(r.cx - 1.0 / r.sx, r.cy + 1.0 / r.sy), b = c.to_screen(r.cx + 1.0 / r.sx, r.cy - 1.0 / r.sy);
  if (a.x > c.p0.x + 0.5f || a.y > c.p0.y + 0.5f || b.x < c.p1.x - 0.5f || b.y < c.p1.y - 0.5f)
    c.dl->AddRectFilled(c.p0, c.p1, ImGui::ColorConvertFloat4ToU32(view.background));
  if (map.points.rendered()) c.dl->AddImage(map.points.texture(), a, b, ImVec2(0, 1), ImVec2(1, 0));
}

// A faint grid with labels.
void draw_grid(const Canvas& c) {
  const Eigen::Vector2f lo = c.plane_at(ImVec2(c.p0.x, c.p1.y)), hi = c.plane_at(ImVec2(c.p1.x, c.p0.y));
  const ImU32 grid = ImGui::GetColorU32(ImGuiCol_Border, 0.35f);
  const ImU32 label = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  for (double t : nice_ticks(lo.x(), hi.x(), std::max(2, static_cast<int>(c.size.x / 90)))) {
    const float x = c.to_screen(t, 0).x;
    c.dl->AddLine(ImVec2(x, c.p0.y), ImVec2(x, c.p1.y), t == 0 ? ImGui::GetColorU32(ImGuiCol_Border, 0.8f) : grid);
    c.dl->AddText(ImVec2(x + 2, c.p1.y - ImGui::GetTextLineHeight() - 1), label, tick_label(t).c_str());
  }
  for (double t : nice_ticks(lo.y(), hi.y(), std::max(2, static_cast<int>(c.size.y / 70)))) {
    const float y = c.to_screen(0, t).y;
    c.dl->AddLine(ImVec2(c.p0.x, y), ImVec2(c.p1.x, y), t == 0 ? ImGui::GetColorU32(ImGuiCol_Border, 0.8f) : grid);
    c.dl->AddText(ImVec2(c.p0.x + 3, y - ImGui::GetTextLineHeight()), label, tick_label(t).c_str());
  }
}

// The code nearest to the mouse within a few pixels.
void find_hovered_code(LatentMapState& map, const Canvas& c, ImVec2 mouse) {
  map.hovered = -1;
  if (c.hovered && map.drag != LatentMapState::Drag::Pan) {
    float best = kPickPx * kPickPx;
    for (Eigen::Index k = 0; k < map.xy.cols(); ++k) {
      const ImVec2 s = c.to_screen(map.xy(0, k), map.xy(1, k));
      const float dx = s.x - mouse.x, dy = s.y - mouse.y, d2 = dx * dx + dy * dy;
      if (d2 < best) {
        best = d2;
        map.hovered = static_cast<int>(k);
      }
    }
  }
}

// Wheel zoom, drag to pan or to move the decoder's z ring; clicks set A, B or the decoder's z;
// a right-click opens a code's true posterior.
void handle_input(AppState& state, LatentMapState& map, const Snapshot& snap, const Canvas& c, ImVec2 mouse, bool near_z) {
  DecoderState& dec = state.decoder;
  const ImGuiIO& io = ImGui::GetIO();
  if (c.hovered && io.MouseWheel != 0) {
    const Eigen::Vector2f before = c.plane_at(mouse);
    map.half_h = std::clamp(map.half_h * std::pow(0.85, io.MouseWheel), 1e-4, 1e4);
    const double ppu2 = c.size.y / (2 * map.half_h);
    map.cx = before.x() - (mouse.x - c.centre.x) / ppu2;
    map.cy = before.y() + (mouse.y - c.centre.y) / ppu2;
    map.auto_fit = false;
    map.view_changed_at = state.now;
  }
  if (ImGui::IsItemActivated()) {
    map.drag = near_z ? LatentMapState::Drag::MoveZ : LatentMapState::Drag::None;
  }
  if (c.active) {
    if (map.drag == LatentMapState::Drag::None && ImGui::IsMouseDragging(ImGuiMouseButton_Left, 3.0f))
      map.drag = LatentMapState::Drag::Pan;
    if (map.drag == LatentMapState::Drag::Pan) {
      map.cx -= io.MouseDelta.x / c.ppu;
      map.cy += io.MouseDelta.y / c.ppu;
      if (io.MouseDelta.x != 0 || io.MouseDelta.y != 0) {
        map.auto_fit = false;
        map.view_changed_at = state.now;
      }
    } else if (map.drag == LatentMapState::Drag::MoveZ) {
      const Eigen::Vector2f p = c.plane_at(mouse);
      dec.z = move_in_plane(map, dec.z, p.x(), p.y());
    }
  }
  const bool plane_ok = map.plane_valid && map.plane.mean.size() == dec.z.size();
  auto lifted = [&](ImVec2 s) {  // a position on the map as a full z
    if (map.hovered >= 0) return Eigen::VectorXf(snap.latent_mu.col(map.hovered));
    const Eigen::Vector2f p = c.plane_at(s);
    return move_in_plane(map, map.mode == LatentMapState::kPcaPlane && plane_ok ? map.plane.mean : dec.z, p.x(), p.y());
  };
  const int n_means = snap.model->clusters();
  if (ImGui::IsItemDeactivated() && map.drag == LatentMapState::Drag::None && map.hovered_mean >= 0 &&
      map.hovered_mean < n_means) {
    // A click on a cluster mean (hovered in the last frame) decodes it: the decoder's z goes there.
    dec.z = snap.model->cluster_means().col(map.hovered_mean);
  } else if (ImGui::IsItemDeactivated() && map.drag == LatentMapState::Drag::None) {
    InterpolationState& in = state.interp;
    if (io.KeyShift) {
      in.b = lifted(mouse);
      in.has_b = true;
    } else {
      in.a = lifted(mouse);
      in.has_a = true;
    }
    ++in.ab_serial;
  }
  if (c.hovered && ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left)) dec.z = lifted(mouse);
  // Right-click on a code: its true posterior in the gap window.
  if (c.hovered && map.hovered >= 0 && map.hovered < static_cast<int>(snap.display_indices.size()) &&
      ImGui::IsMouseClicked(ImGuiMouseButton_Right)) {
    state.gap.post.index = snap.display_indices[static_cast<std::size_t>(map.hovered)];
    state.gap.open = true;
    state.gap.select_tab = GapTab::Posterior;
  }
  if (!c.active) map.drag = LatentMapState::Drag::None;
}

// The A→B paths, A, B, the decoder's z ring, the hovered code and the posterior's test image.
void draw_overlays(const AppState& state, const LatentMapState& map, const Snapshot& snap, const Canvas& c, bool near_z,
                   ImVec2 z_screen) {
  const DecoderState& dec = state.decoder;
  const InterpolationState& in = state.interp;
  if (in.has_a && in.has_b && in.a.size() == dec.z.size()) {
    std::vector<ImVec2> lerp_path, slerp_path;
    for (int k = 0; k <= 48; ++k) {
      const float t = k / 48.0f;
      const Eigen::Vector2f a = to_plane(map, lerp(in.a, in.b, t)), b = to_plane(map, slerp(in.a, in.b, t));
      lerp_path.push_back(c.to_screen(a.x(), a.y()));
      slerp_path.push_back(c.to_screen(b.x(), b.y()));
    }
    c.dl->AddPolyline(slerp_path.data(), static_cast<int>(slerp_path.size()), IM_COL32(120, 220, 255, 200), 0, 2.0f);
    c.dl->AddPolyline(lerp_path.data(), static_cast<int>(lerp_path.size()), IM_COL32(255, 255, 255, 210), 0, 2.0f);
    const Eigen::Vector2f ta = to_plane(map, lerp(in.a, in.b, in.t)), tb = to_plane(map, slerp(in.a, in.b, in.t));
    c.dl->AddCircleFilled(c.to_screen(ta.x(), ta.y()), 4, IM_COL32(255, 255, 255, 255));
    c.dl->AddCircleFilled(c.to_screen(tb.x(), tb.y()), 4, IM_COL32(120, 220, 255, 255));
  }
  auto letter = [&](const Eigen::VectorXf& z, const char* text, ImU32 colour) {
    if (z.size() != dec.z.size()) return;
    const Eigen::Vector2f p = to_plane(map, z);
    const ImVec2 s = c.to_screen(p.x(), p.y());
    c.dl->AddCircleFilled(s, 8, IM_COL32(20, 20, 20, 220));
    c.dl->AddCircle(s, 8, colour, 20, 2.0f);
    const ImVec2 ts = ImGui::CalcTextSize(text);
    c.dl->AddText(ImVec2(s.x - ts.x / 2, s.y - ts.y / 2), colour, text);
  };
  if (in.has_a) letter(in.a, "A", IM_COL32(255, 255, 255, 255));
  if (in.has_b) letter(in.b, "B", IM_COL32(255, 255, 255, 255));
  {
    const bool hot = near_z || map.drag == LatentMapState::Drag::MoveZ;
    const ImU32 zc = hot ? IM_COL32(255, 235, 80, 255) : IM_COL32(255, 210, 40, 230);
    c.dl->AddCircle(z_screen, hot ? 9.0f : 7.5f, IM_COL32(0, 0, 0, 200), 24, 4.0f);
    c.dl->AddCircle(z_screen, hot ? 9.0f : 7.5f, zc, 24, 2.0f);
    c.dl->AddLine(ImVec2(z_screen.x - 13, z_screen.y), ImVec2(z_screen.x - 5, z_screen.y), zc, 1.5f);
    c.dl->AddLine(ImVec2(z_screen.x + 5, z_screen.y), ImVec2(z_screen.x + 13, z_screen.y), zc, 1.5f);
    c.dl->AddLine(ImVec2(z_screen.x, z_screen.y - 13), ImVec2(z_screen.x, z_screen.y - 5), zc, 1.5f);
    c.dl->AddLine(ImVec2(z_screen.x, z_screen.y + 5), ImVec2(z_screen.x, z_screen.y + 13), zc, 1.5f);
    if (near_z) ImGui::SetMouseCursor(ImGuiMouseCursor_Hand);
  }
  if (map.hovered >= 0) {
    const ImVec2 s = c.to_screen(map.xy(0, map.hovered), map.xy(1, map.hovered));
    c.dl->AddCircle(s, map.point_px * 0.5f + 3, IM_COL32(255, 255, 255, 255), 16, 1.5f);
  }
  // The test image whose true posterior the gap window shows: a small square.
  if (state.gap.open && state.gap.post.index >= 0) {
    const auto it = std::find(snap.display_indices.begin(), snap.display_indices.end(), state.gap.post.index);
    const Eigen::Index k = it - snap.display_indices.begin();
    if (it != snap.display_indices.end() && k < map.xy.cols()) {
      const ImVec2 s = c.to_screen(map.xy(0, k), map.xy(1, k));
      const float r = map.point_px * 0.5f + 4;
      c.dl->AddRect(ImVec2(s.x - r, s.y - r), ImVec2(s.x + r, s.y + r), IM_COL32(255, 255, 255, 255), 0, 0, 1.5f);
    }
  }
}

// The clustering VAE's cluster means as numbered crosses (the one under the mouse is hovered).
void draw_cluster_means(LatentMapState& map, const Snapshot& snap, const Canvas& c, ImVec2 mouse, int K) {
  map.hovered_mean = -1;
  if (K > 0 && snap.model->cluster_mean_offset() != Model::npos) {
    const auto means = snap.model->cluster_means();
    // A mean under the mouse wins over the codes around it: hover shows its image, a click
    // sends the decoder's z there (handled with the other clicks above, from this frame's hover).
    if (c.hovered && map.drag == LatentMapState::Drag::None) {
      float best = kHandlePx * kHandlePx;
      for (int k = 0; k < K; ++k) {
        const Eigen::Vector2f p = to_plane(map, means.col(k));
        const ImVec2 at = c.to_screen(p.x(), p.y());
        const float dx = at.x - mouse.x, dy = at.y - mouse.y;
        if (dx * dx + dy * dy < best) {
          best = dx * dx + dy * dy;
          map.hovered_mean = k;
        }
      }
      if (map.hovered_mean >= 0) map.hovered = -1;
    }
    for (int k = 0; k < K; ++k) {
      const Eigen::Vector2f p = to_plane(map, means.col(k));
      const ImVec2 at = c.to_screen(p.x(), p.y());
      // White on black so a mean stays visible on a cloud of its own colour; the cluster's colour
      // fills the centre dot when the map is coloured by cluster.
      const bool hot = k == map.hovered_mean;
      const float r = hot ? 10.0f : 8.0f;
      const ImU32 ink = IM_COL32(255, 255, 255, 240), shadow = IM_COL32(0, 0, 0, 220);
      c.dl->AddLine(ImVec2(at.x - r, at.y), ImVec2(at.x + r, at.y), shadow, 5.0f);
      c.dl->AddLine(ImVec2(at.x, at.y - r), ImVec2(at.x, at.y + r), shadow, 5.0f);
      c.dl->AddLine(ImVec2(at.x - r, at.y), ImVec2(at.x + r, at.y), ink, 2.0f);
      c.dl->AddLine(ImVec2(at.x, at.y - r), ImVec2(at.x, at.y + r), ink, 2.0f);
      if (map.colour_by == LatentMapState::kByCluster) {
        c.dl->AddCircleFilled(at, 3.5f, shadow);
        c.dl->AddCircleFilled(at, 2.5f, label_colour(cluster_colour_index(map, k)));
      }
      const std::string num = std::to_string(k + 1);
      c.dl->AddText(ImVec2(at.x + 6, at.y + 3), shadow, num.c_str());
      c.dl->AddText(ImVec2(at.x + 5, at.y + 2), ink, num.c_str());
    }
  }
}

// The colours' legend in the top-right corner: faded while the mouse is on the map, so the codes
// under it show through, and hidden while the mouse is over it.
void draw_legend(const LatentMapState& map, const Snapshot& snap, const Canvas& c, ImVec2 mouse) {
  const ImageSet& test = snap.data->test;
  const int K = snap.model->clusters();
  std::vector<std::string> legend;
  std::vector<int> legend_colour;
  if (map.colour_by == LatentMapState::kByCluster && K > 0) {
    for (int k = 0; k < std::min(K, 10); ++k) {
      const int colour = cluster_colour_index(map, k);
      const bool matched = k < static_cast<int>(map.cluster_to_label.size()) && map.cluster_to_label[static_cast<std::size_t>(k)] >= 0;
      legend.push_back("cluster " + std::to_string(k + 1) + (matched ? " ~ " + class_name(snap, colour) : std::string()));
      legend_colour.push_back(colour);
    }
  } else if (test.has_labels()) {
    legend = snap.data->class_names;
    for (std::size_t k = 0; k < legend.size(); ++k) legend_colour.push_back(static_cast<int>(k));
  }
  if (!legend.empty()) {
    const float lh = ImGui::GetTextLineHeight();
    float w = 0;
    for (const std::string& name : legend) w = std::max(w, ImGui::CalcTextSize(name.c_str()).x);
    const int rows = static_cast<int>(legend.size());
    ImVec2 l0(c.p1.x - w - 30, c.p0.y + 6);
    const ImVec2 l1(c.p1.x - 6, l0.y + rows * lh + 6);
    if (!(c.hovered && mouse.x >= l0.x && mouse.y <= l1.y)) {
      const float alpha = c.hovered ? 0.4f : 1.0f;
      c.dl->AddRectFilled(l0, l1, ImGui::GetColorU32(ImGuiCol_PopupBg, 0.8f * alpha), 4);
      for (int k = 0; k < rows; ++k) {
        const float y = l0.y + 3 + k * lh;
        c.dl->AddCircleFilled(ImVec2(l0.x + 10, y + lh / 2), 4.5f, label_colour(legend_colour[static_cast<std::size_t>(k)], alpha));
        c.dl->AddText(ImVec2(l0.x + 20, y), ImGui::GetColorU32(ImGuiCol_Text, alpha), legend[static_cast<std::size_t>(k)].c_str());
      }
    }
  }
}

// Hovering a cluster mean: its decoded image.
void cluster_mean_tooltip(AppState& state, LatentMapState& map, const Snapshot& snap, int K) {
  const ImageSet& test = snap.data->test;
  if (map.hovered_mean >= 0 && map.hovered_mean < K) {
    if (map.mean_image.cached != map.hovered_mean || map.mean_image.version != state.live_serial) {
      const auto means = snap.model->cluster_means();
      Eigen::MatrixXf img;
      decode(snap, means.col(map.hovered_mean), img);
      map.mean_image.image.update(img.data(), test.width, test.height, test.channels);
      map.mean_image.cached = map.hovered_mean;
      map.mean_image.version = state.live_serial;
    }
    ImGui::BeginTooltip();
    const float side = std::max(84.0f, ImGui::GetFontSize() * 6);
    map.mean_image.image.draw(map.mean_image.image.fit(ImVec2(side, side)), state.colormap);
    const int label = cluster_colour_index(map, map.hovered_mean);
    if (map.hovered_mean < static_cast<int>(map.cluster_to_label.size()) && map.cluster_to_label[static_cast<std::size_t>(map.hovered_mean)] >= 0)
      ImGui::Text("mean of cluster %d (matched to %s)", map.hovered_mean + 1, class_name(snap, label).c_str());
    else
      ImGui::Text("mean of cluster %d", map.hovered_mean + 1);
    ImGui::TextDisabled("click: decode it in the Decoder panel");
    ImGui::EndTooltip();
  }
}

// Hovering a code: the test image and its reconstruction.
void code_tooltip(AppState& state, LatentMapState& map, const Snapshot& snap) {
  const ImageSet& test = snap.data->test;
  if (map.hovered >= 0 && map.hovered < static_cast<int>(snap.display_indices.size())) {
    const int i = snap.display_indices[static_cast<std::size_t>(map.hovered)];
    const int h = test.height, w = test.width;
    if (map.hover_images.cached != map.hovered || map.hover_images.version != state.live_serial) {
      map.hover_images.original.update_bytes(test.image(i), w, h, test.channels);
      Eigen::MatrixXf img;
      decode(snap, snap.latent_mu.col(map.hovered), img);
      map.hover_images.recon.update(img.data(), w, h, test.channels);
      map.hover_images.cached = map.hovered;
      map.hover_images.version = state.live_serial;
    }
    ImGui::BeginTooltip();
    const float side = std::max(84.0f, ImGui::GetFontSize() * 6);
    const ImVec2 s = map.hover_images.original.fit(ImVec2(side, side));
    ImGui::BeginGroup();
    map.hover_images.original.draw(s, state.colormap);
    ImGui::TextDisabled("test #%d", i);
    ImGui::EndGroup();
    ImGui::SameLine();
    ImGui::BeginGroup();
    map.hover_images.recon.draw(s, state.colormap);
    ImGui::TextDisabled("reconstruction");
    ImGui::EndGroup();
    if (test.has_labels()) {
      const int label = test.labels[static_cast<std::size_t>(i)];
      ImGui::ColorButton("##c", ImGui::ColorConvertU32ToFloat4(label_colour(label)), ImGuiColorEditFlags_NoTooltip,
                         ImVec2(ImGui::GetTextLineHeight(), ImGui::GetTextLineHeight()));
      ImGui::SameLine();
      ImGui::TextUnformatted(class_name(snap, label).c_str());
    }
    ImGui::TextDisabled("right-click: its true posterior");
    ImGui::EndTooltip();
  }
}

}  // namespace

// Clustering VAE: argmax p(y|z) of every display code, and, when the test set has labels, the
// unsupervised accuracy (Hungarian matching) and NMI against them. Redone when the codes are
// re-encoded (about once a second while training), not every frame.
bool update_cluster_scores(LatentMapState& map, const Snapshot& snap) {
  const int K = snap.model ? snap.model->clusters() : 0;
  const Eigen::Index n = snap.latent_mu.cols();
  if (K == 0 || n == 0) {
    const bool had = !map.cluster_of.empty();
    map.cluster_of.clear();
    map.cluster_to_label.clear();
    map.cluster_sizes.clear();
    map.cluster_label_table.resize(0, 0);
    map.cluster_acc = map.cluster_nmi = std::numeric_limits<float>::quiet_NaN();
    map.score_step = kNeverStep;
    return had;
  }
  if (map.score_step == snap.latent_step && map.scored &&
      map.cluster_of.size() == static_cast<std::size_t>(n) && map.cluster_to_label.size() == static_cast<std::size_t>(K))
    return false;
  map.score_step = snap.latent_step;
  map.scored = true;
  ++map.score_serial;
  Eigen::MatrixXf probs;
  snap.model->classify(snap.latent_mu, probs);
  map.cluster_of.assign(static_cast<std::size_t>(n), 0);
  std::vector<int> sizes(static_cast<std::size_t>(K), 0);
  for (Eigen::Index k = 0; k < n; ++k) {
    Eigen::Index best = 0;
    probs.col(k).maxCoeff(&best);
    map.cluster_of[static_cast<std::size_t>(k)] = static_cast<int>(best);
    ++sizes[static_cast<std::size_t>(best)];
  }
  map.used_clusters = static_cast<int>(std::count_if(sizes.begin(), sizes.end(), [](int c) { return c > 0; }));
  map.cluster_sizes = std::move(sizes);
  map.cluster_to_label.assign(static_cast<std::size_t>(K), -1);
  map.cluster_acc = map.cluster_nmi = std::numeric_limits<float>::quiet_NaN();
  map.scored_points = 0;
  map.cluster_label_table.resize(0, 0);
  const ImageSet& test = snap.data->test;
  if (test.has_labels() && snap.display_indices.size() == static_cast<std::size_t>(n)) {
    std::vector<int> labels(static_cast<std::size_t>(n));
    int classes = 1;
    for (Eigen::Index k = 0; k < n; ++k) {
      labels[static_cast<std::size_t>(k)] = test.labels[static_cast<std::size_t>(snap.display_indices[static_cast<std::size_t>(k)])];
      classes = std::max(classes, labels[static_cast<std::size_t>(k)] + 1);
    }
    const ClusterMatch m = match_clusters(map.cluster_of, labels, K, classes);
    map.cluster_acc = static_cast<float>(m.accuracy);
    map.cluster_nmi = static_cast<float>(normalized_mutual_information(map.cluster_of, labels));
    map.cluster_to_label = m.cluster_to_label;
    map.cluster_label_table = cluster_label_counts(map.cluster_of, labels, K, classes);
    map.scored_points = static_cast<int>(n);
  }
  return true;
}

std::string plane_caption(const LatentMapState& map) {
  char text[64];
  if (map.mode == LatentMapState::kTwoDims) std::snprintf(text, sizeof text, "z%d vs z%d", map.dim_x + 1, map.dim_y + 1);
  else if (map.plane_valid && map.plane.total_variance > 0)
    std::snprintf(text, sizeof text, "PCA plane, %.0f%% of variance", plane_variance_percent(map));
  else std::snprintf(text, sizeof text, "PCA plane");
  return text;
}

void draw_latent_map(AppState& state, const Snapshot& snap) {
  LatentMapState& map = state.latent;
  draw_toolbar(state, map, snap);
  const std::int64_t codes_before = map.codes.step;
  choose_plane(map, snap);
  if (map.codes.step != codes_before) state.note_work('C');

  Canvas c;
  c.map = &map;
  c.p0 = ImGui::GetCursorScreenPos();
  c.size = ImGui::GetContentRegionAvail();
  c.size.x = std::max(c.size.x, 50.0f);
  c.size.y = std::max(c.size.y, 50.0f);
  c.p1 = ImVec2(c.p0.x + c.size.x, c.p0.y + c.size.y);
  ImGui::InvisibleButton("##canvas", c.size);
  state.note_rect("latent_canvas");
  c.hovered = ImGui::IsItemHovered();
  c.active = ImGui::IsItemActive();
  ease_view(map, c.size, ImGui::GetIO().DeltaTime);
  c.ppu = c.size.y / (2 * map.half_h);
  c.centre = ImVec2((c.p0.x + c.p1.x) / 2, (c.p0.y + c.p1.y) / 2);
  c.dl = ImGui::GetWindowDrawList();

  c.dl->PushClipRect(c.p0, c.p1, true);
  draw_points(state, map, c);
  draw_grid(c);
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  find_hovered_code(map, c, mouse);
  const Eigen::Vector2f zp = to_plane(map, state.decoder.z);
  const ImVec2 z_screen = c.to_screen(zp.x(), zp.y());
  const float zdx = mouse.x - z_screen.x, zdy = mouse.y - z_screen.y;
  const bool near_z = c.hovered && zdx * zdx + zdy * zdy <= kHandlePx * kHandlePx;
  handle_input(state, map, snap, c, mouse, near_z);
  draw_overlays(state, map, snap, c, near_z, z_screen);
  const int K = snap.model->clusters();
  draw_cluster_means(map, snap, c, mouse, K);
  draw_legend(map, snap, c, mouse);
  if (map.codes.count == 0) {
    const char* msg = snap.latent_step < 0 ? "encoding the test images…" : "no codes to show";
    const ImVec2 ts = ImGui::CalcTextSize(msg);
    c.dl->AddText(ImVec2(c.centre.x - ts.x / 2, c.centre.y - ts.y / 2 - 30), ImGui::GetColorU32(ImGuiCol_TextDisabled), msg);
  }
  c.dl->PopClipRect();

  cluster_mean_tooltip(state, map, snap, K);
  code_tooltip(state, map, snap);
}

}  // namespace vaelab::app
