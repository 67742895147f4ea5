// GlPoints: the latent scatter drawn as GL point sprites (shaders/points.*) into an off-screen
// texture that the latent-map panel shows with ImGui::Image. Positions and labels are uploaded
// only when they change; re-rendering is one draw call, so 70,000 points stay smooth.
// Not responsible for overlays (markers, paths, legend): those are ImGui draw-list shapes.
#pragma once
#include <glad/gl.h>
#include <imgui.h>

#include <array>
#include <cstdint>

namespace vaelab::app {

struct PointView {
  float cx = 0, cy = 0;       // plane coordinates at the centre of the view
  float sx = 1, sy = 1;       // plane units → clip units (2 / visible width, 2 / visible height)
  float point_px = 4;         // sprite diameter in framebuffer pixels
  float alpha = 0.8f;
  ImVec4 background{0.1f, 0.1f, 0.12f, 1};
  std::array<std::array<float, 3>, 16> palette{};
  int palette_size = 10;
  std::array<float, 3> unlabelled{0.35f, 0.65f, 0.95f};
};

class GlPoints {
 public:
  GlPoints() = default;
  ~GlPoints();
  GlPoints(const GlPoints&) = delete;
  GlPoints& operator=(const GlPoints&) = delete;

  // xy: 2·n floats (x0, y0, x1, y1, …); labels: n bytes (255 = unlabelled) or null.
  void set_points(const float* xy, const std::uint8_t* labels, int n);
  int count() const { return n_; }

  // Render into the internal w×h texture (framebuffer pixels) when anything changed.
  void render(int w, int h, const PointView& view);
  ImTextureID texture() const { return reinterpret_cast<ImTextureID>(static_cast<std::intptr_t>(colour_)); }

 private:
  void init();
  GLuint program_ = 0, vao_ = 0, vbo_pos_ = 0, vbo_label_ = 0, fbo_ = 0, colour_ = 0;
  GLint loc_center_ = -1, loc_scale_ = -1, loc_point_px_ = -1, loc_palette_ = -1, loc_unlabelled_ = -1,
        loc_palette_size_ = -1, loc_alpha_ = -1;
  int n_ = 0, w_ = 0, h_ = 0;
  bool dirty_ = true;
  PointView last_{};
};

}  // namespace vaelab::app
