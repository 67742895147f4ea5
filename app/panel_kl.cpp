// "Per-dim KL" tab: KL(q(z_u|x) ‖ p(z_u)) per latent dimension as bars (recent training batches),
// the same per epoch on the test set as a dimension × epoch heat map, active units (variance of
// the encoder mean over the display subset) and a warning naming the dims collapsed to the prior.
// Not where they are computed (trainer, core/gap).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "app/panels.hpp"

namespace vaelab::app {

namespace {

// Active units of the display codes, refreshed with the codes.
void refresh_units(GapState& g, const Snapshot& snap, int d) {
  if (snap.latent_step != g.units_step && snap.latent_mu.rows() == d && snap.latent_mu.cols() > 1) {
    g.units = active_units(snap.latent_mu);
    g.units_step = snap.latent_step;
  }
}

// "n / d active units" and the dims collapsed to the prior, if any.
void draw_units_summary(const GapState& g, int d, bool have_units, const std::vector<bool>& collapsed) {
  if (have_units) {
    ImGui::Text("%d / %d active units", g.units.count, d);
    ImGui::SameLine();
    help_marker("A unit u is active when Var_x(E_q[z_u|x]) > 0.01 over the display subset (Burda et al.):\n"
                "the code moves with the input. Collapsed: inactive and KL < 0.01 nats, i.e. q(z_u|x) ≈ p(z_u)\n"
                "for every x — the dimension carries no information.");
  } else {
    ImGui::TextDisabled("active units: waiting for the encoded test points");
  }
  if (!collapsed.empty()) {
    std::string list;
    int n = 0;
    for (int u = 0; u < d; ++u)
      if (collapsed[static_cast<std::size_t>(u)]) {
        if (n++ < 24) list += (list.empty() ? "z" : ", z") + std::to_string(u + 1);  // named as the sliders are
      }
    if (n > 24) list += ", …";
    if (n > 0) {
      ImGui::PushTextWrapPos(0);
      ImGui::TextColored(ImVec4(1.0f, 0.55f, 0.35f, 1), "%d dim%s collapsed to the prior: %s", n, n == 1 ? "" : "s",
                         list.c_str());
      ImGui::PopTextWrapPos();
    } else {
      ImGui::TextColored(ImVec4(0.45f, 0.85f, 0.55f, 1), "no dimension collapsed to the prior");
    }
  }
}

// Bars: the KL per dim (running mean over recent training batches), coloured by state.
void draw_kl_bars(const GapState& g, const Snapshot& snap, int d, bool have_units, bool have_kl,
                  const std::vector<bool>& collapsed) {
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float bars_h = std::max(60.0f, avail.y * 0.42f);
  ImGui::InvisibleButton("##klbars", ImVec2(avail.x, bars_h));
  const ImVec2 p0 = ImGui::GetItemRectMin(), p1 = ImGui::GetItemRectMax();
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRect(p0, p1, ImGui::GetColorU32(ImGuiCol_Border));
  if (!have_kl) return;
  const double top = std::max(1e-3, *std::max_element(snap.kl_per_dim.begin(), snap.kl_per_dim.end()));
  const float text_h = ImGui::GetTextLineHeight();
  const float x0 = p0.x + 4, w = (p1.x - p0.x - 8) / d, y_base = p1.y - (d <= 40 ? text_h + 2 : 2), y_top = p0.y + text_h + 4;
  const int hovered = ImGui::IsItemHovered() ? static_cast<int>((ImGui::GetIO().MousePos.x - x0) / w) : -1;
  for (int u = 0; u < d; ++u) {
    const double kl = snap.kl_per_dim[static_cast<std::size_t>(u)];
    const float h = static_cast<float>(std::max(0.0, kl) / top) * (y_base - y_top);
    const bool dead = !collapsed.empty() && collapsed[static_cast<std::size_t>(u)];
    const bool active = have_units && g.units.active[static_cast<std::size_t>(u)];
    const ImU32 col = dead ? IM_COL32(213, 94, 0, 255) : active ? IM_COL32(86, 180, 233, 255) : IM_COL32(150, 150, 150, 255);
    dl->AddRectFilled(ImVec2(x0 + u * w + w * 0.12f, y_base - std::max(h, 1.0f)), ImVec2(x0 + (u + 1) * w - w * 0.12f, y_base),
                      u == hovered ? IM_COL32(240, 228, 66, 255) : col);
    if (d <= 40 && (d <= 20 || u % 2 == 0)) {
      char t[16];
      std::snprintf(t, sizeof t, d <= 20 ? "z%d" : "%d", u + 1);  // z1, z2 … as the decoder's sliders
      const float tw = ImGui::CalcTextSize(t).x;
      dl->AddText(ImVec2(x0 + (u + 0.5f) * w - tw / 2, y_base + 1), ImGui::GetColorU32(ImGuiCol_TextDisabled), t);
    }
  }
  char title[96];
  std::snprintf(title, sizeof title, "KL per dim (nats, recent batches); max %.2f", top);
  dl->AddText(ImVec2(p0.x + 4, p0.y + 2), ImGui::GetColorU32(ImGuiCol_Text), title);
  if (hovered >= 0 && hovered < d)
    ImGui::SetTooltip("z%d\nKL %.4f nats\nVar_x E[z] %.4f%s", hovered + 1, snap.kl_per_dim[static_cast<std::size_t>(hovered)],
                      have_units ? g.units.variance[static_cast<std::size_t>(hovered)] : 0.0,
                      !collapsed.empty() && collapsed[static_cast<std::size_t>(hovered)] ? "\ncollapsed to the prior" : "");
}

// The heat map's texture: test-set KL, dimension (rows) × epoch (columns), redone per epoch.
void refresh_kl_heat(AppState& state, const Snapshot& snap, int d) {
  GapState& g = state.gap;
  const auto& epochs = snap.history.epochs;
  if (g.kl_heat.epochs != epochs.size() || g.kl_heat.model != state.model_serial) {
    g.kl_heat.epochs = epochs.size();
    g.kl_heat.model = state.model_serial;
    const int e = static_cast<int>(epochs.size());
    float top = 0;
    for (const EpochRecord& r : epochs)
      for (float v : r.kl_per_dim)
        if (std::isfinite(v)) top = std::max(top, v);
    std::vector<float> img(static_cast<std::size_t>(std::max(1, e)) * d, -1.0f);  // −1: no value (background)
    for (int c = 0; c < e; ++c) {
      const auto& kl = epochs[static_cast<std::size_t>(c)].kl_per_dim;
      if (static_cast<int>(kl.size()) != d) continue;
      for (int u = 0; u < d; ++u)
        img[static_cast<std::size_t>(u) * e + c] = top > 0 && std::isfinite(kl[u]) ? std::max(0.0f, kl[u]) / top : 0.0f;
    }
    if (e > 0) g.kl_heat.image.update(img.data(), e, d);
    state.note_work('K');
  }
}

// The heat map with the dimension numbers that fit beside it, and the hovered cell's value.
void draw_kl_heat(GapState& g, const Snapshot& snap, int d) {
  const auto& epochs = snap.history.epochs;
  ImDrawList* dl = ImGui::GetWindowDrawList();
  ImGui::TextDisabled("test KL per dim (rows) × epoch (columns →)");
  const ImVec2 rest = ImGui::GetContentRegionAvail();
  if (epochs.empty() || g.kl_heat.image.empty()) {
    ImGui::TextDisabled("No epoch finished yet.");
    return;
  }
  // Dimension numbers in a narrow column on the left, as many as fit without overlapping.
  const float label_w = ImGui::CalcTextSize(d < 10 ? "z0" : d < 100 ? "z00" : "z000").x + 6;
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const float heat_h = std::max(30.0f, rest.y - 4);
  const float scale_w = colour_scale_width() + ImGui::GetStyle().ItemSpacing.x;
  ImGui::SetCursorScreenPos(ImVec2(origin.x + label_w, origin.y));
  g.kl_heat.image.draw(ImVec2(std::max(20.0f, rest.x - label_w - scale_w), heat_h), kViridis);
  {
    const float row_h = heat_h / d, text_h = ImGui::GetTextLineHeight();
    const int every = std::max(1, static_cast<int>(std::ceil(text_h / row_h)));
    for (int u = 0; u < d; u += every) {
      char t[16];
      std::snprintf(t, sizeof t, "z%d", u + 1);
      dl->AddText(ImVec2(origin.x + label_w - 4 - ImGui::CalcTextSize(t).x, origin.y + (u + 0.5f) * row_h - text_h / 2),
                  ImGui::GetColorU32(ImGuiCol_TextDisabled), t);
    }
  }
  if (ImGui::IsItemHovered()) {
    const ImVec2 q0 = ImGui::GetItemRectMin(), q1 = ImGui::GetItemRectMax(), m = ImGui::GetIO().MousePos;
    const int c = std::clamp(static_cast<int>((m.x - q0.x) / (q1.x - q0.x) * static_cast<float>(epochs.size())), 0,
                             static_cast<int>(epochs.size()) - 1);
    const int u = std::clamp(static_cast<int>((m.y - q0.y) / (q1.y - q0.y) * d), 0, d - 1);
    const auto& kl = epochs[static_cast<std::size_t>(c)].kl_per_dim;
    if (static_cast<int>(kl.size()) == d)
      ImGui::SetTooltip("epoch %d, z%d: KL %.4f nats", epochs[static_cast<std::size_t>(c)].epoch, u + 1, kl[u]);
  }
  // The same top the texture was normalised by (refresh_kl_heat).
  float top = 0;
  for (const EpochRecord& r : epochs)
    for (float v : r.kl_per_dim)
      if (std::isfinite(v)) top = std::max(top, v);
  ImGui::SameLine();
  colour_scale("##kl_scale", heat_h, kViridis, 0.0, top, "test KL per dimension (nats)");
}

}  // namespace

void draw_kl_tab(AppState& state, const Snapshot& snap) {
  GapState& g = state.gap;
  const int d = snap.model->latent();
  refresh_units(g, snap, d);
  const bool have_units = static_cast<int>(g.units.active.size()) == d;
  const bool have_kl = static_cast<int>(snap.kl_per_dim.size()) == d;
  std::vector<bool> collapsed;
  if (have_units && have_kl) collapsed = collapsed_dims(g.units, snap.kl_per_dim);
  draw_units_summary(g, d, have_units, collapsed);
  draw_kl_bars(g, snap, d, have_units, have_kl, collapsed);
  refresh_kl_heat(state, snap, d);
  draw_kl_heat(g, snap, d);
}

}  // namespace vaelab::app
