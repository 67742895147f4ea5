// Helpers shared by the panels: UI-thread decoding and encoding with the snapshot's model copy,
// image tiling, the latent plane, export buttons and colours. Not a panel itself.
#include <algorithm>
#include <exception>

#include "app/image_export.hpp"
#include "app/panels.hpp"
#include "core/model.hpp"

namespace vaelab::app {

void AppState::post(Severity s, std::string text) { messages.push_back(Message{s, std::move(text), now}); }

void AppState::note_rect(const char* name) {
  const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
  rects[name] = ImVec4(a.x, a.y, b.x, b.y);
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
  if (!ImGui::SmallButton(label)) return;
  try {
    const auto file = unique_export_path(state.export_dir, stem, ".png");
    write_image_png(file, image.values(), image.channels(), image.width(), image.height(), state.colormap);
    state.post(Severity::Info, "Saved " + file.string());
  } catch (const std::exception& e) {
    state.post(Severity::Error, std::string("PNG export failed: ") + e.what());
  }
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

std::string class_name(const Snapshot& snap, int label) {
  if (snap.data && label >= 0 && label < static_cast<int>(snap.data->class_names.size()))
    return snap.data->class_names[static_cast<std::size_t>(label)];
  return "label " + std::to_string(label);
}

}  // namespace vaelab::app
