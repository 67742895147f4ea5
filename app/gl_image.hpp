// GlImage: a one-channel float image (decoded digits, manifold grids, strips) kept as an R32F
// texture and turned into colour by a fragment shader (shaders/colormap.frag) into an RGBA
// texture that ImGui draws, magnified with GL_NEAREST. Also keeps the CPU values for PNG export.
// Not a general texture class; only the UI thread may use it.
#pragma once
#include <glad/gl.h>
#include <imgui.h>

#include <cstdint>
#include <vector>

namespace vaelab::app {

enum Colormap : int { kGrey = 0, kViridis = 1 };

// Create / destroy the shared colormap program and lookup textures (once, with a current context).
// background: the colour of gap pixels (values < 0), normally the window background.
void gl_images_init(ImVec4 background);
void gl_images_shutdown();

class GlImage {
 public:
  GlImage() = default;
  ~GlImage();
  GlImage(const GlImage&) = delete;
  GlImage& operator=(const GlImage&) = delete;

  // values: h rows of w floats in [0, 1], row-major; values < 0 are gaps (background colour).
  void update(const float* values, int w, int h);
  void update_bytes(const std::uint8_t* pixels, int w, int h);  // 0..255 → [0, 1]

  bool empty() const { return w_ == 0; }
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<float>& values() const { return values_; }

  // The coloured texture (re-coloured on demand when the data or the colormap changed).
  ImTextureID texture(int colormap);
  // ImGui::Image at `size`; hover/click queries apply to it as the last item.
  void draw(ImVec2 size, int colormap);
  // The largest size with square pixels fitting into avail (at least 1×1).
  ImVec2 fit(ImVec2 avail) const;

 private:
  GLuint src_ = 0, dst_ = 0, fbo_ = 0;
  int w_ = 0, h_ = 0;
  int coloured_with_ = -1;  // colormap of dst_, −1: stale
  std::vector<float> values_;
};

}  // namespace vaelab::app
