// Decoder panel: one slider per latent dimension (ordered by the KL each carries; dims with
// KL < 0.01 nats are greyed as inactive) and the image decoded from that z with the snapshot's
// model copy on the UI thread, in the same frame as the drag. Not the latent map's z ring (that
// is drawn by panel_latent_map.cpp and edits the same z).
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "app/panels.hpp"
#include "core/model.hpp"

namespace vaelab::app {
namespace {

constexpr double kInactiveKl = 0.01;  // nats

void refresh_order(DecoderState& dec, const Snapshot& snap, double now, bool editing) {
  const int d = static_cast<int>(dec.z.size());
  const bool wrong_size = static_cast<int>(dec.order.size()) != d;
  if (!wrong_size && (editing || now - dec.order_time < 1.5)) return;  // never reorder under the mouse
  dec.order.resize(static_cast<std::size_t>(d));
  std::iota(dec.order.begin(), dec.order.end(), 0);
  if (dec.sort_by_kl && snap.kl_per_dim.size() == static_cast<std::size_t>(d))
    std::stable_sort(dec.order.begin(), dec.order.end(),
                     [&](int a, int b) { return snap.kl_per_dim[static_cast<std::size_t>(a)] > snap.kl_per_dim[static_cast<std::size_t>(b)]; });
  dec.order_time = now;
}

}  // namespace

void draw_decoder(AppState& state, const Snapshot& snap) {
  DecoderState& dec = state.decoder;
  const int d = static_cast<int>(dec.z.size());

  if (ImGui::SmallButton("Zero")) dec.z.setZero();
  ImGui::SameLine();
  if (ImGui::SmallButton("Random")) {
    for (int k = 0; k < d; ++k) dec.z[k] = dec.rng.normal();
  }
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("A draw from the prior N(0, I)");
  ImGui::SameLine();
  ImGui::BeginDisabled(!state.interp.has_a);
  if (ImGui::SmallButton("A")) dec.z = state.interp.a;
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::BeginDisabled(!state.interp.has_b);
  if (ImGui::SmallButton("B")) dec.z = state.interp.b;
  ImGui::EndDisabled();
  // The toolbar wraps in a narrow window rather than losing its last buttons off the edge.
  same_line_if_fits(ImGui::GetFrameHeight() + ImGui::GetStyle().ItemInnerSpacing.x + ImGui::CalcTextSize("by KL").x);
  if (ImGui::Checkbox("by KL", &dec.sort_by_kl)) dec.order_time = -1e9;
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Order the sliders by the KL each dimension carries (most informative first)");
  same_line_if_fits(ImGui::GetFontSize() * 4.0f);
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 4.0f);
  ImGui::SliderFloat("##range", &dec.range, 1.0f, 6.0f, "±%.0f");
  same_line_if_fits(small_button_width("PNG"));
  export_png_button(state, "PNG", dec.image, "decoder");

  // Layout: the image on the left (square, as large as fits), sliders on the right.
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float side = std::max(40.0f, std::min(avail.y, avail.x * 0.5f));
  const ImVec2 img_size = dec.image.empty() ? ImVec2(side, side) : dec.image.fit(ImVec2(side, side));
  dec.image.draw(img_size, state.colormap);
  state.note_rect("decoder_image");
  ImGui::SameLine();

  ImGui::BeginChild("sliders", ImVec2(0, side), false);
  const float label_w = ImGui::CalcTextSize("z00 ").x;
  const float kl_w = ImGui::CalcTextSize("0.000").x + 6;
  refresh_order(dec, snap, state.now, ImGui::IsAnyItemActive());
  const bool have_kl = snap.kl_per_dim.size() == static_cast<std::size_t>(d);
  for (std::size_t r = 0; r < dec.order.size(); ++r) {
    const int k = dec.order[r];
    const double kl = have_kl ? snap.kl_per_dim[static_cast<std::size_t>(k)] : 1.0;
    const bool inactive = have_kl && kl < kInactiveKl;
    ImGui::PushID(k);
    if (inactive) {
      ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
      ImGui::PushStyleColor(ImGuiCol_SliderGrab, ImVec4(0.45f, 0.45f, 0.45f, 0.45f));
      ImGui::PushStyleColor(ImGuiCol_FrameBg, ImVec4(0.16f, 0.16f, 0.17f, 1));
    }
    ImGui::AlignTextToFramePadding();
    ImGui::Text("z%d", k + 1);
    ImGui::SameLine(label_w);
    ImGui::SetNextItemWidth(std::max(40.0f, ImGui::GetContentRegionAvail().x - kl_w));
    ImGui::SliderFloat("##z", &dec.z[k], -dec.range, dec.range, "%.2f");
    if (r == 0) state.note_rect("decoder_slider0");
    ImGui::SameLine();
    if (have_kl) ImGui::TextDisabled("%.2f", kl);
    else ImGui::TextDisabled("–");
    if (ImGui::IsItemHovered())
      ImGui::SetTooltip(inactive ? "KL %.4f nats: this dimension is inactive (the decoder ignores it)"
                                 : "KL %.4f nats per image (running mean over recent batches)", kl);
    if (inactive) ImGui::PopStyleColor(3);
    ImGui::PopID();
  }
  ImGui::EndChild();

  // Decode after the sliders moved, then re-colour now: the image drawn above shows it this frame.
  if (snap.model && d > 0 && (dec.decoded_version != state.live_serial || dec.decoded_z.size() != d || dec.decoded_z != dec.z)) {
    Eigen::MatrixXf img;
    state.note_work('D');
    decode(snap, dec.z, img);
    dec.image.update(img.data(), snap.model_config.image_w, snap.model_config.image_h, snap.model_config.image_c);
    dec.image.texture(state.colormap);
    dec.decoded_version = state.live_serial;
    dec.decoded_z = dec.z;
  }
}

}  // namespace vaelab::app
