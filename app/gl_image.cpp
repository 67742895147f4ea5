// GlImage: R32F upload and the colormap pass into an RGBA8 texture through an FBO (grey), or an RGBA8
// upload of the planes (colour), and ImGui drawing.
// The colormap lookup tables come from core's view_math (the PNG export uses the same tables).
// Not used off the UI thread.
#include "app/gl_image.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "app/frame_cache.hpp"
#include "app/gl_util.hpp"
#include "core/view_math.hpp"
#include "embedded_shaders.hpp"

namespace vaelab::app {
namespace {

struct Shared {
  GLuint program = 0;
  GLuint vao = 0;
  std::array<GLuint, 2> luts{};
  GLint loc_values = -1, loc_colormap = -1, loc_background = -1;
  ImVec4 background{0, 0, 0, 1};
};
Shared g_shared;  // created by gl_images_init on the UI thread

}  // namespace

void gl_images_init(ImVec4 background) {
  g_shared.program = build_program("colormap", kShader_fullscreen_vert, kShader_colormap_frag);
  g_shared.loc_values = glGetUniformLocation(g_shared.program, "u_values");
  g_shared.loc_colormap = glGetUniformLocation(g_shared.program, "u_colormap");
  g_shared.loc_background = glGetUniformLocation(g_shared.program, "u_background");
  g_shared.background = background;
  glGenVertexArrays(1, &g_shared.vao);
  glGenTextures(2, g_shared.luts.data());
  for (int which = 0; which < 2; ++which) {
    const std::vector<std::uint8_t> table = colormap_table(which);  // 256 × RGB
    glBindTexture(GL_TEXTURE_2D, g_shared.luts[which]);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGB8, 256, 1, 0, GL_RGB, GL_UNSIGNED_BYTE, table.data());
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
  }
  glBindTexture(GL_TEXTURE_2D, 0);
}

void gl_images_shutdown() {
  if (g_shared.program) glDeleteProgram(g_shared.program);
  if (g_shared.vao) glDeleteVertexArrays(1, &g_shared.vao);
  glDeleteTextures(2, g_shared.luts.data());
  g_shared = Shared{};
}

GlImage::~GlImage() {
  if (fbo_) glDeleteFramebuffers(1, &fbo_);
  if (src_) glDeleteTextures(1, &src_);
  if (dst_) glDeleteTextures(1, &dst_);
}

static void set_filters(GLint min, GLint mag) {
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, min);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, mag);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
}

// RGB planes (3·w·h floats) as RGBA bytes, clamped to [0, 1]; gaps (< 0 in the red plane) in the
// background colour.
static std::vector<std::uint8_t> rgba_of_planes(const float* values, int w, int h, ImVec4 background) {
  const std::size_t plane = static_cast<std::size_t>(w) * h;
  auto byte_of = [](float v) { return static_cast<std::uint8_t>(std::lround(std::clamp(v, 0.0f, 1.0f) * 255.0f)); };
  const std::uint8_t bg[4] = {byte_of(background.x), byte_of(background.y), byte_of(background.z), 255};
  std::vector<std::uint8_t> rgba(plane * 4);
  for (std::size_t i = 0; i < plane; ++i) {
    std::uint8_t* px = &rgba[i * 4];
    if (!(values[i] >= 0)) {
      std::copy(bg, bg + 4, px);
      continue;
    }
    for (std::size_t c = 0; c < 3; ++c) px[c] = byte_of(values[c * plane + i]);
    px[3] = 255;
  }
  return rgba;
}

void GlImage::update(const float* values, int w, int h, int channels) {
  if (w <= 0 || h <= 0 || (channels != 1 && channels != 3)) return;
  values_.assign(values, values + static_cast<std::size_t>(w) * h * channels);
  GLint previous = 0;
  glGetIntegerv(GL_TEXTURE_BINDING_2D, &previous);
  if (!src_) {
    glGenTextures(1, &src_);
    glGenTextures(1, &dst_);
    glGenFramebuffers(1, &fbo_);
  }
  glBindTexture(GL_TEXTURE_2D, src_);
  glPixelStorei(GL_UNPACK_ALIGNMENT, 4);
  glPixelStorei(GL_UNPACK_ROW_LENGTH, 0);
  // Grey: the values go to src_ and the shader colours dst_. RGB: src_ keeps its size and dst_
  // takes the colours directly.
  const float* grey = channels == 1 ? values : nullptr;
  if (w != w_ || h != h_) {
    glTexImage2D(GL_TEXTURE_2D, 0, GL_R32F, w, h, 0, GL_RED, GL_FLOAT, grey);
    set_filters(GL_NEAREST, GL_NEAREST);
    glBindTexture(GL_TEXTURE_2D, dst_);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, w, h, 0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
    // Nearest when magnified (pixels stay crisp), linear when a big grid is shown smaller.
    set_filters(GL_LINEAR, GL_NEAREST);
    w_ = w;
    h_ = h;
  } else if (grey) {
    glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, w, h, GL_RED, GL_FLOAT, grey);
  }
  channels_ = channels;
  coloured_with_ = -1;
  if (channels == 3) {
    const std::vector<std::uint8_t> rgba = rgba_of_planes(values, w, h, g_shared.background);
    glBindTexture(GL_TEXTURE_2D, dst_);
    glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, w, h, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
    note_texture_changed(reinterpret_cast<ImTextureID>(static_cast<std::intptr_t>(dst_)));
  }
  glBindTexture(GL_TEXTURE_2D, static_cast<GLuint>(previous));
}

void GlImage::update_bytes(const std::uint8_t* pixels, int w, int h, int channels) {
  std::vector<float> v(static_cast<std::size_t>(std::max(w, 0)) * std::max(h, 0) * std::max(channels, 0));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = pixels[i] * (1.0f / 255.0f);
  update(v.data(), w, h, channels);
}

ImTextureID GlImage::texture(int colormap) {
  if (empty()) return ImTextureID{};
  colormap = colormap == kViridis ? kViridis : kGrey;
  if (channels_ == 1 && coloured_with_ != colormap && g_shared.program) {
    GlStateGuard guard;
    glBindFramebuffer(GL_FRAMEBUFFER, fbo_);
    glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, dst_, 0);
    glViewport(0, 0, w_, h_);
    glDisable(GL_BLEND);
    glDisable(GL_SCISSOR_TEST);
    glUseProgram(g_shared.program);
    glActiveTexture(GL_TEXTURE0);
    glBindTexture(GL_TEXTURE_2D, src_);
    glActiveTexture(GL_TEXTURE1);
    glBindTexture(GL_TEXTURE_2D, g_shared.luts[static_cast<std::size_t>(colormap)]);
    glUniform1i(g_shared.loc_values, 0);
    glUniform1i(g_shared.loc_colormap, 1);
    const ImVec4& bg = g_shared.background;
    glUniform4f(g_shared.loc_background, bg.x, bg.y, bg.z, bg.w);
    glBindVertexArray(g_shared.vao);
    glDrawArrays(GL_TRIANGLES, 0, 3);
    glActiveTexture(GL_TEXTURE1);
    glBindTexture(GL_TEXTURE_2D, 0);
    coloured_with_ = colormap;
    note_texture_changed(reinterpret_cast<ImTextureID>(static_cast<std::intptr_t>(dst_)));
  }
  return reinterpret_cast<ImTextureID>(static_cast<std::intptr_t>(dst_));
}

void GlImage::draw(ImVec2 size, int colormap) {
  if (empty()) {
    ImGui::Dummy(size);
    return;
  }
  // Row 0 of the values is texture row 0 in both textures, and ImGui's uv (0, 0) is the top-left
  // corner, so the first row shows on top without any flip.
  ImGui::Image(texture(colormap), size, ImVec2(0, 0), ImVec2(1, 1));
}

ImVec2 GlImage::fit(ImVec2 avail) const {
  if (empty()) return ImVec2(std::max(avail.x, 1.0f), std::max(avail.y, 1.0f));
  const float s = std::max(std::min(avail.x / w_, avail.y / h_), 1.0f / std::max(w_, h_));
  return ImVec2(std::max(1.0f, s * w_), std::max(1.0f, s * h_));
}

}  // namespace vaelab::app
