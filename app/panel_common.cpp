// Helpers shared by the panels: UI-thread decoding and encoding with the snapshot's model copy,
// image tiling, the latent plane, export buttons and colours, texts cut with an ellipsis, colour
// scales and toolbars that wrap. Not a panel itself.
#include <imgui_internal.h>

#include <algorithm>
#include <cstdio>
#include <exception>

#include "app/help.hpp"
#include "app/image_export.hpp"
#include "app/panels.hpp"
#include "core/model.hpp"

namespace vaelab::app {

void AppState::post(Severity s, std::string text) { messages.push_back(Message{s, std::move(text), now}); }

std::string rect_name(const char* prefix, std::string text) {
  std::replace(text.begin(), text.end(), ' ', '_');
  return prefix + text;
}

void AppState::note_rect(const char* name) {
  const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
  rects[name] = ImVec4(a.x, a.y, b.x, b.y);
}

void fitted_text(AppState& state, const char* name, const std::string& text, float width, const ImVec4* colour) {
  const float avail = std::max(1.0f, width > 0 ? width : ImGui::GetContentRegionAvail().x);
  const float full = ImGui::CalcTextSize(text.c_str()).x;
  std::string shown = text;
  if (full > avail) {
    // The longest prefix (whole UTF-8 characters) that fits with the ellipsis.
    const char* ellipsis = "…";
    std::size_t keep = 0;
    for (std::size_t i = 1; i <= text.size(); ++i) {
      if (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;  // inside a character
      if (ImGui::CalcTextSize((text.substr(0, i) + ellipsis).c_str()).x > avail) break;
      keep = i;
    }
    shown = text.substr(0, keep) + ellipsis;
  }
  if (colour) ImGui::PushStyleColor(ImGuiCol_Text, *colour);
  ImGui::TextUnformatted(shown.c_str());
  if (colour) ImGui::PopStyleColor();
  const bool cut = full > avail;
  if (cut && ImGui::IsItemHovered()) ImGui::SetTooltip("%s", text.c_str());
  state.texts[name] = AppState::FittedText{full, ImGui::GetItemRectSize().x, avail, cut};
}

float colour_scale_width() { return ImGui::GetFontSize() * 0.8f + 4 + ImGui::CalcTextSize("0.000").x; }

void colour_scale(const char* id, float height, int colormap, double lo, double hi, const char* how) {
  const float bar_w = ImGui::GetFontSize() * 0.8f;
  ImGui::InvisibleButton(id, ImVec2(colour_scale_width(), std::max(height, 2 * ImGui::GetTextLineHeight())));
  const ImVec2 p0 = ImGui::GetItemRectMin(), p1 = ImGui::GetItemRectMax();
  ImDrawList* dl = ImGui::GetWindowDrawList();
  auto colour = [&](float t) {
    const Rgb8 c = colormap == kViridis ? colormap_viridis(t) : colormap_grey(t);
    return IM_COL32(c.r, c.g, c.b, 255);
  };
  constexpr int kSteps = 24;
  for (int i = 0; i < kSteps; ++i) {  // bottom (lo) to top (hi)
    const float t0 = static_cast<float>(i) / kSteps, t1 = static_cast<float>(i + 1) / kSteps;
    const float y0 = p1.y - t0 * (p1.y - p0.y), y1 = p1.y - t1 * (p1.y - p0.y);
    dl->AddRectFilledMultiColor(ImVec2(p0.x, y1), ImVec2(p0.x + bar_w, y0), colour(t1), colour(t1), colour(t0), colour(t0));
  }
  dl->AddRect(p0, ImVec2(p0.x + bar_w, p1.y), ImGui::GetColorU32(ImGuiCol_Border));
  char hi_text[32], lo_text[32];
  std::snprintf(hi_text, sizeof hi_text, "%.3g", hi);
  std::snprintf(lo_text, sizeof lo_text, "%.3g", lo);
  const ImU32 text = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  dl->AddText(ImVec2(p0.x + bar_w + 4, p0.y), text, hi_text);
  dl->AddText(ImVec2(p0.x + bar_w + 4, p1.y - ImGui::GetTextLineHeight()), text, lo_text);
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("colour scale: %s, from %s (bottom) to %s (top)", how, lo_text, hi_text);
}

float small_button_width(const char* label) {
  return ImGui::CalcTextSize(label, nullptr, true).x + ImGui::GetStyle().FramePadding.x * 2;
}

void same_line_if_fits(float next_width) {
  const float next_x = ImGui::GetItemRectMax().x + ImGui::GetStyle().ItemSpacing.x;
  const float right = ImGui::GetWindowPos().x + ImGui::GetWindowContentRegionMax().x;
  if (next_x + next_width <= right) ImGui::SameLine();
}

void sync_latent_size(AppState& state, const Snapshot& snap) {
  if (!snap.model) return;
  const int d = snap.model->latent();
  if (state.decoder.z.size() != d) {
    state.decoder.z = Eigen::VectorXf::Zero(d);
    state.decoder.decoded_version = std::numeric_limits<std::uint64_t>::max();
  }
  if (state.interp.a.size() != d || state.interp.b.size() != d) {
    state.interp.a = Eigen::VectorXf::Zero(d);
    state.interp.b = Eigen::VectorXf::Zero(d);
    state.interp.has_a = state.interp.has_b = false;
    ++state.interp.ab_serial;
  }
  if (state.samples.eps.rows() != d) state.samples.dirty = true;
}

bool has_plane(const Snapshot& snap, const char* otherwise) {
  if (snap.model->latent() >= 2) return true;
  ImGui::TextDisabled("%s", otherwise);
  return false;
}

void decode(const Snapshot& snap, const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& images) {
  snap.model->decode_image(z, images);
}

Eigen::MatrixXf cluster_draws(const Model& model, const std::vector<int>& cluster, const Eigen::Ref<const Eigen::MatrixXf>& eps) {
  const auto mu = model.cluster_means();
  const Eigen::MatrixXf sigma = (0.5f * model.cluster_logvars_clamped().array()).exp().matrix();
  Eigen::MatrixXf z(eps.rows(), eps.cols());
  for (Eigen::Index k = 0; k < eps.cols(); ++k) {
    const Eigen::Index y = cluster[static_cast<std::size_t>(k)];
    z.col(k) = mu.col(y).array() + sigma.col(y).array() * eps.col(k).array();
  }
  return z;
}

Eigen::VectorXf test_image(const Snapshot& snap, int i) {
  const ImageSet& set = snap.data->test;
  const int D = set.values_per_image();
  Eigen::VectorXf x(D);
  const std::uint8_t* p = set.image(i);
  for (int k = 0; k < D; ++k) x[k] = p[k] * (1.0f / 255.0f);
  return x;
}

Eigen::MatrixXf encode_test(const Snapshot& snap, const std::vector<int>& idx) {
  const ImageSet& set = snap.data->test;
  Eigen::MatrixXf x(set.values_per_image(), static_cast<Eigen::Index>(idx.size()));
  for (std::size_t j = 0; j < idx.size(); ++j) x.col(static_cast<Eigen::Index>(j)) = test_image(snap, idx[j]);
  Eigen::MatrixXf mu, logvar;
  snap.model->encode(x, mu, logvar);
  return mu;
}

Eigen::Vector2f to_plane(const LatentMapState& map, const Eigen::VectorXf& z) {
  if (!map.plane_valid || map.plane.mean.size() != z.size()) return Eigen::Vector2f(z.size() > 0 ? z[0] : 0, z.size() > 1 ? z[1] : 0);
  return map.plane.components.transpose() * (z - map.plane.mean);
}

Eigen::VectorXf move_in_plane(const LatentMapState& map, const Eigen::VectorXf& z, float u, float v) {
  if (!map.plane_valid || map.plane.mean.size() != z.size()) {
    Eigen::VectorXf out = z;
    if (out.size() > 0) out[0] = u;
    if (out.size() > 1) out[1] = v;
    return out;
  }
  const Eigen::Vector2f delta = Eigen::Vector2f(u, v) - to_plane(map, z);
  return z + map.plane.components * delta;
}

void export_png_button(AppState& state, const char* label, const GlImage& image, const char* stem) {
  const bool pressed = ImGui::SmallButton(label);
  state.note_rect(rect_name("export_png_", stem).c_str());  // "export_png_decoder", for tests/e2e
  if (!pressed) return;
  try {  // the chooser suggests a fresh name in the export folder
    const auto suggested = unique_export_path(state.export_dir, stem, ".png");
    state.chooser.png = PendingPng{image.values(), image.channels(), image.width(), image.height(), state.colormap};
    open_file_chooser(state, ChooserPurpose::ExportPng, suggested, suggested.filename().string());
  } catch (const std::exception& e) {
    state.post(Severity::Error, std::string("PNG export failed: ") + e.what());
  }
}

void place_dialog(ImVec2 size_em, ImVec2 max_share, float centre_y) {
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  const float em = ImGui::GetFontSize();
  ImGui::SetNextWindowSize(ImVec2(std::min(vp->WorkSize.x * max_share.x, em * size_em.x),
                                  std::min(vp->WorkSize.y * max_share.y, em * size_em.y)),
                           ImGuiCond_Appearing);
  ImGui::SetNextWindowPos(ImVec2(vp->WorkPos.x + vp->WorkSize.x * 0.5f, vp->WorkPos.y + vp->WorkSize.y * centre_y),
                          ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
}

void panel_help_button(AppState& state, const char* panel) {
  // Drawn into the window's title bar, at its right end; the cursor and the content size are put
  // back afterwards so the panel's own layout does not see it.
  ImGuiWindow* window = ImGui::GetCurrentWindow();
  if (window->SkipItems || (window->Flags & ImGuiWindowFlags_NoTitleBar)) return;
  const ImGuiStyle& style = ImGui::GetStyle();
  const ImRect bar = window->TitleBarRect();
  const ImVec2 text = ImGui::CalcTextSize("(?)");
  const ImVec2 cursor = ImGui::GetCursorScreenPos(), content_max = window->DC.CursorMaxPos;
  ImGui::PushClipRect(bar.Min, bar.Max, false);
  ImGui::SetCursorScreenPos(ImVec2(bar.Max.x - text.x - style.FramePadding.x * 3, bar.Min.y + (bar.GetHeight() - text.y) * 0.5f));
  ImGui::PushStyleColor(ImGuiCol_Button, ImVec4(0, 0, 0, 0));
  ImGui::PushID(panel);
  const bool clicked = ImGui::SmallButton("(?)##panel_help");
  ImGui::PopID();
  ImGui::PopStyleColor();
  state.note_rect(rect_name("help_", panel).c_str());
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("What am I looking at?");
  ImGui::PopClipRect();
  ImGui::SetCursorScreenPos(cursor);
  window->DC.CursorMaxPos = content_max;
  if (clicked) open_help(state, panel);
}

ImU32 label_colour(int label, float alpha) {
  const Rgb8 c = category_colour(label);
  return IM_COL32(c.r, c.g, c.b, static_cast<int>(alpha * 255.0f));
}

void help_marker(const char* text) {
  ImGui::SameLine();
  ImGui::TextDisabled("(?)");
  if (ImGui::IsItemHovered()) {
    ImGui::BeginTooltip();
    ImGui::PushTextWrapPos(ImGui::GetFontSize() * 28.0f);
    ImGui::TextUnformatted(text);
    ImGui::PopTextWrapPos();
    ImGui::EndTooltip();
  }
}

std::string with_commas(long long v) {
  const std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out = v < 0 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string class_name(const Snapshot& snap, int label) {
  if (snap.data && label >= 0 && label < static_cast<int>(snap.data->class_names.size()))
    return snap.data->class_names[static_cast<std::size_t>(label)];
  return "label " + std::to_string(label);
}

}  // namespace vaelab::app
