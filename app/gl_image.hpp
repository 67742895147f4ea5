// GlImage: a float image (decoded digits, manifold grids, strips). A grey one is kept as an R32F
// texture and turned into colour by a fragment shader (shaders/colormap.frag) into an RGBA
// texture that ImGui draws; an RGB one (three planes) is uploaded to that RGBA texture as it is.
// Magnified with GL_NEAREST. Also keeps the CPU values for PNG export.
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

  // values: `channels` (1 grey, 3 RGB) planes of h rows of w floats in [0, 1], row-major, as
  // the model's C×H×W; values < 0 in the first plane are gaps (background colour). Grey goes
  // through the colormap; RGB is drawn as it is, clamped to [0, 1].
  void update(const float* values, int w, int h, int channels = 1);
  void update_bytes(const std::uint8_t* pixels, int w, int h, int channels = 1);  // 0..255 → [0, 1]

  bool empty() const { return w_ == 0; }
  int width() const { return w_; }
  int height() const { return h_; }
  int channels() const { return channels_; }
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
  int channels_ = 1;
  int coloured_with_ = -1;  // colormap of dst_, −1: stale (grey only; RGB is uploaded to dst_ directly)
  std::vector<float> values_;
};

}  // namespace vaelab::app
