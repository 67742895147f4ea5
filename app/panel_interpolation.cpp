// Interpolation panel: between points A and B (set on the latent map), a t slider, the images at
// t for linear and spherical interpolation, and strips of evenly spaced frames for both, side by
// side. The paths themselves are drawn on the latent map. Not the interpolation maths
// (core/view_math: lerp, slerp).
#include <algorithm>
#include <cstdio>

#include "core/view_math.hpp"
#include "app/panels.hpp"
#include "core/model.hpp"

namespace vaelab::app {
namespace {

// Before the user picks anything, start from two test codes of different classes.
void default_endpoints(InterpolationState& in, const Snapshot& snap) {
  if ((in.has_a && in.has_b) || snap.latent_mu.cols() < 2) return;
  const ImageSet& test = snap.data->test;
  int first = 0, second = 1;
  if (test.has_labels()) {
    const int la = test.labels[static_cast<std::size_t>(snap.display_indices[0])];
    for (std::size_t k = 1; k < snap.display_indices.size(); ++k)
      if (test.labels[static_cast<std::size_t>(snap.display_indices[k])] != la) {
        second = static_cast<int>(k);
        break;
      }
  }
  if (!in.has_a) in.a = snap.latent_mu.col(first);
  if (!in.has_b) in.b = snap.latent_mu.col(second);
  in.has_a = in.has_b = true;
  ++in.ab_serial;
}

// A ← z, B ← z, swap, z ← t, the number of frames and t.
void draw_controls(InterpolationState& in, DecoderState& dec) {
  auto take_z = [&](const char* label, Eigen::VectorXf& end, bool& has, const char* tip) {
    if (ImGui::SmallButton(label)) {
      end = dec.z;
      has = true;
      ++in.ab_serial;
    }
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", tip);
  };
  take_z("A ← z", in.a, in.has_a, "Set A to the decoder's z (or click the latent map)");
  ImGui::SameLine();
  take_z("B ← z", in.b, in.has_b, "Set B to the decoder's z (or shift-click the latent map)");
  ImGui::SameLine();
  if (ImGui::SmallButton("Swap")) {
    std::swap(in.a, in.b);
    ++in.ab_serial;
  }
  ImGui::SameLine();
  if (ImGui::SmallButton("z ← t")) dec.z = lerp(in.a, in.b, in.t);
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Send the linear interpolation at t to the decoder");
  same_line_if_fits(ImGui::GetFontSize() * 5.0f);
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 5.0f);
  ImGui::SliderInt("##frames", &in.frames, 3, 16, "%d frames");
  // t takes the rest of the line, or a line of its own where less than a readable slider is left.
  same_line_if_fits(ImGui::GetFontSize() * 7.0f);

  ImGui::SetNextItemWidth(-ImGui::CalcTextSize("t").x - ImGui::GetStyle().ItemInnerSpacing.x);
  ImGui::SliderFloat("t", &in.t, 0.0f, 1.0f, "t = %.2f");
}

// The strips (a few times a second with new weights, at once when A, B or N change) and the
// images at t (when t, A, B or the weights change).
void refresh_images(AppState& state, const Snapshot& snap) {
  InterpolationState& in = state.interp;
  const int c = snap.model_config.image_c, h = snap.model_config.image_h, w = snap.model_config.image_w;
  const bool strips_stale = in.strips_ab != in.ab_serial || in.strips_frames != in.frames;
  if (strips_stale) in.strips.invalidate();
  if (state.heavy_due(in.strips, 0.25, strips_stale)) {
    state.note_work('I');
    const int n = in.frames;
    Eigen::MatrixXf zl(in.a.size(), n), zs(in.a.size(), n), img;
    for (int k = 0; k < n; ++k) {
      const float t = static_cast<float>(k) / (n - 1);
      zl.col(k) = lerp(in.a, in.b, t);
      zs.col(k) = slerp(in.a, in.b, t);
    }
    int tw = 0, th = 0;
    decode(snap, zl, img);
    std::vector<float> strip = tile_images(img, c, h, w, 1, n, 1, tw, th);
    in.lerp_strip.update(strip.data(), tw, th, c);
    decode(snap, zs, img);
    strip = tile_images(img, c, h, w, 1, n, 1, tw, th);
    in.slerp_strip.update(strip.data(), tw, th, c);
    in.strips_ab = in.ab_serial;
    in.strips_frames = n;
  }
  if (in.at_t != in.t || in.at_t_ab != in.ab_serial || in.at_t_version != state.live_serial) {
    Eigen::MatrixXf img;
    decode(snap, lerp(in.a, in.b, in.t), img);
    in.lerp_at_t.update(img.data(), w, h, c);
    decode(snap, slerp(in.a, in.b, in.t), img);
    in.slerp_at_t.update(img.data(), w, h, c);
    in.at_t = in.t;
    in.at_t_ab = in.ab_serial;
    in.at_t_version = state.live_serial;
  }
}

// A small label on a dark backdrop over an image, its top-left corner at `at`.
void label_over(ImDrawList* dl, ImVec2 at, const char* text) {
  const ImVec2 size = ImGui::CalcTextSize(text);
  dl->AddRectFilled(at, ImVec2(at.x + size.x + 4, at.y + size.y), IM_COL32(0, 0, 0, 170), 2.0f);
  dl->AddText(ImVec2(at.x + 2, at.y), IM_COL32(255, 255, 255, 235), text);
}

// One row per path: the image at t (labelled with t), a gap, then the strip from A (t = 0) to B
// (t = 1), its ends named and t marked.
void draw_rows(AppState& state, const Snapshot& snap) {
  InterpolationState& in = state.interp;
  const int w = snap.model_config.image_w;
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float spacing = ImGui::GetStyle().ItemSpacing.y;
  const float line_h = ImGui::GetFrameHeightWithSpacing();  // the label rows hold small buttons
  const float row_h = std::max(24.0f, (avail.y - 2 * line_h - 3 * spacing) / 2 - 1);
  const float big = std::min(row_h, avail.x * 0.28f);
  auto row = [&](const char* name, GlImage& at_t, GlImage& strip, const char* stem) {
    ImGui::TextDisabled("%s", name);
    ImGui::SameLine();
    ImGui::PushID(stem);
    export_png_button(state, "PNG", strip, stem);
    ImGui::PopID();
    at_t.draw(ImVec2(big, big), state.colormap);
    ImDrawList* dl = ImGui::GetWindowDrawList();
    char t_label[24];
    std::snprintf(t_label, sizeof t_label, "t = %.2f", static_cast<double>(in.t));
    if (ImGui::CalcTextSize(t_label).x + 4 > big) std::snprintf(t_label, sizeof t_label, "t");  // a small image
    const ImVec2 at_t_max = ImGui::GetItemRectMax();
    label_over(dl, ImVec2(ImGui::GetItemRectMin().x, at_t_max.y - ImGui::GetTextLineHeight()), t_label);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("The image at t = %.2f (the t slider); the strip runs from A (t = 0) to B (t = 1)",
                                                  static_cast<double>(in.t));
    ImGui::SameLine(0, ImGui::GetStyle().ItemSpacing.x * 3);  // apart from the strip: not its first frame
    const ImVec2 room(std::max(10.0f, ImGui::GetContentRegionAvail().x), big);
    const ImVec2 size = strip.fit(room);
    const ImVec2 q0 = ImGui::GetCursorScreenPos();
    const ImVec2 pos(q0.x, q0.y + (big - size.y) * 0.5f);
    ImGui::SetCursorScreenPos(pos);
    strip.draw(size, state.colormap);
    // Name the ends and mark where t falls along the strip.
    if (!strip.empty() && in.frames > 1) {
      const float scale = size.x / strip.width();
      const float tile_w = w * scale, step = (w + 1) * scale;
      const float x = pos.x + in.t * (in.frames - 1) * step;
      label_over(dl, pos, "A");
      label_over(dl, ImVec2(pos.x + (in.frames - 1) * step + tile_w - ImGui::CalcTextSize("B").x - 4, pos.y), "B");
      dl->AddRect(ImVec2(x - 1, pos.y - 1), ImVec2(x + tile_w + 1, pos.y + size.y + 1), IM_COL32(255, 210, 40, 255), 0, 0, 2.0f);
    }
  };
  row("linear (lerp)", in.lerp_at_t, in.lerp_strip, "interpolation-lerp");
  row("spherical (slerp)", in.slerp_at_t, in.slerp_strip, "interpolation-slerp");
}

}  // namespace

void draw_interpolation(AppState& state, const Snapshot& snap) {
  InterpolationState& in = state.interp;
  default_endpoints(in, snap);
  draw_controls(in, state.decoder);
  if (!in.has_a || !in.has_b || in.a.size() != state.decoder.z.size() || !snap.model) {
    ImGui::TextDisabled("Click the latent map to set A, shift-click to set B.");
    return;
  }
  refresh_images(state, snap);
  draw_rows(state, snap);
}

}  // namespace vaelab::app
