// GlPoints: the latent scatter drawn as GL point sprites (shaders/points.*) into an off-screen
// texture that the latent-map panel shows with ImGui::Image. Positions and labels are uploaded
// only when they change. A render is spread over frames (a budget of points per frame, into a
// back texture shown once complete), so 70,000 points never stall a frame, even on software GL.
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

  // Start a render of `view` at w×h framebuffer pixels when the shown one differs, or continue
  // the one in progress; draws at most `budget` points per call. Returns whether it drew.
  bool render(int w, int h, const PointView& view, int budget);
  bool busy() const { return busy_; }
  // Whether the shown texture is out of date for reasons other than pan/zoom (points, size, style).
  bool content_stale(int w, int h, const PointView& view) const;
  // The view of the texture shown (while panning it is drawn moved and scaled to the new view).
  const PointView& rendered_view() const { return shown_view_; }
  bool rendered() const { return shown_ != 0 && has_shown_; }
  ImTextureID texture() const { return reinterpret_cast<ImTextureID>(static_cast<std::intptr_t>(shown_)); }

 private:
  void init();
  void start(int w, int h, const PointView& view);
  GLuint program_ = 0, vao_ = 0, vbo_pos_ = 0, vbo_label_ = 0, fbo_ = 0;
  GLuint shown_ = 0, back_ = 0;  // colour textures: the one displayed, the one being drawn
  GLint loc_center_ = -1, loc_scale_ = -1, loc_point_px_ = -1, loc_palette_ = -1, loc_unlabelled_ = -1,
        loc_palette_size_ = -1, loc_alpha_ = -1;
  int n_ = 0;
  int shown_w_ = 0, shown_h_ = 0, back_w_ = 0, back_h_ = 0;
  bool dirty_ = true;       // points changed since the shown render started
  bool has_shown_ = false;
  bool busy_ = false;
  int next_ = 0;            // next point to draw into back_
  PointView shown_view_{}, pending_view_{};
};

}  // namespace vaelab::app
