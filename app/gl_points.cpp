// GlPoints: vertex buffers for the scatter, the point-sprite program, and the off-screen pass.
// Not a picking structure: hover search is done on the CPU by the latent-map panel.
#include "app/gl_points.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "app/frame_cache.hpp"
#include "app/gl_util.hpp"
#include "embedded_shaders.hpp"

namespace vaelab::app {

GlPoints::~GlPoints() {
  if (program_) glDeleteProgram(program_);
  if (vao_) glDeleteVertexArrays(1, &vao_);
  if (vbo_pos_) glDeleteBuffers(1, &vbo_pos_);
  if (vbo_label_) glDeleteBuffers(1, &vbo_label_);
  if (fbo_) glDeleteFramebuffers(1, &fbo_);
  if (shown_) glDeleteTextures(1, &shown_);
  if (back_) glDeleteTextures(1, &back_);
}

void GlPoints::init() {
  program_ = build_program("points", kShader_points_vert, kShader_points_frag);
  loc_center_ = glGetUniformLocation(program_, "u_center");
  loc_scale_ = glGetUniformLocation(program_, "u_scale");
  loc_point_px_ = glGetUniformLocation(program_, "u_point_px");
  loc_palette_ = glGetUniformLocation(program_, "u_palette");
  loc_unlabelled_ = glGetUniformLocation(program_, "u_unlabelled");
  loc_palette_size_ = glGetUniformLocation(program_, "u_palette_size");
  loc_alpha_ = glGetUniformLocation(program_, "u_alpha");
  glGenVertexArrays(1, &vao_);
  glGenBuffers(1, &vbo_pos_);
  glGenBuffers(1, &vbo_label_);
  GLint previous_vao = 0, previous_buffer = 0;
  glGetIntegerv(GL_VERTEX_ARRAY_BINDING, &previous_vao);
  glGetIntegerv(GL_ARRAY_BUFFER_BINDING, &previous_buffer);
  glBindVertexArray(vao_);
  glBindBuffer(GL_ARRAY_BUFFER, vbo_pos_);
  glEnableVertexAttribArray(0);
  glVertexAttribPointer(0, 2, GL_FLOAT, GL_FALSE, 2 * sizeof(float), nullptr);
  glBindBuffer(GL_ARRAY_BUFFER, vbo_label_);
  glEnableVertexAttribArray(1);
  glVertexAttribIPointer(1, 1, GL_UNSIGNED_BYTE, 1, nullptr);
  glBindVertexArray(static_cast<GLuint>(previous_vao));
  glBindBuffer(GL_ARRAY_BUFFER, static_cast<GLuint>(previous_buffer));
  glGenFramebuffers(1, &fbo_);
  glGenTextures(1, &shown_);
  glGenTextures(1, &back_);
}

void GlPoints::set_points(const float* xy, const std::uint8_t* labels, int n) {
  if (!program_) init();
  GLint previous_buffer = 0;
  glGetIntegerv(GL_ARRAY_BUFFER_BINDING, &previous_buffer);
  glBindBuffer(GL_ARRAY_BUFFER, vbo_pos_);
  glBufferData(GL_ARRAY_BUFFER, static_cast<GLsizeiptr>(n) * 2 * sizeof(float), xy, GL_DYNAMIC_DRAW);
  std::vector<std::uint8_t> none;
  if (!labels) {
    none.assign(static_cast<std::size_t>(n), 255);
    labels = none.data();
  }
  glBindBuffer(GL_ARRAY_BUFFER, vbo_label_);
  glBufferData(GL_ARRAY_BUFFER, n, labels, GL_DYNAMIC_DRAW);
  glBindBuffer(GL_ARRAY_BUFFER, static_cast<GLuint>(previous_buffer));
  n_ = n;
  dirty_ = true;
}

static bool same_style(const PointView& a, const PointView& b) {
  return a.point_px == b.point_px && a.alpha == b.alpha && a.palette_size == b.palette_size &&
         std::memcmp(&a.background, &b.background, sizeof a.background) == 0 && a.palette == b.palette &&
         a.unlabelled == b.unlabelled;
}

static bool same_view(const PointView& a, const PointView& b) {
  return a.cx == b.cx && a.cy == b.cy && a.sx == b.sx && a.sy == b.sy && same_style(a, b);
}

bool GlPoints::content_stale(int w, int h, const PointView& view) const {
  return !has_shown_ || dirty_ || w != shown_w_ || h != shown_h_ || !same_style(view, shown_view_);
}

void GlPoints::start(int w, int h, const PointView& view) {
  if (w != back_w_ || h != back_h_) {
    glBindTexture(GL_TEXTURE_2D, back_);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, w, h, 0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
    back_w_ = w;
    back_h_ = h;
  }
  glBindFramebuffer(GL_FRAMEBUFFER, fbo_);
  glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, back_, 0);
  glViewport(0, 0, w, h);
  glDisable(GL_SCISSOR_TEST);
  glClearColor(view.background.x, view.background.y, view.background.z, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  pending_view_ = view;
  next_ = 0;
  busy_ = true;
  dirty_ = false;
}

bool GlPoints::render(int w, int h, const PointView& view, int budget) {
  if (w <= 0 || h <= 0) return false;
  if (!program_) init();
  GlStateGuard guard;
  const bool restart = busy_ && (dirty_ || w != back_w_ || h != back_h_);
  if (!busy_ || restart) {
    if (!restart && has_shown_ && !dirty_ && w == shown_w_ && h == shown_h_ && same_view(view, shown_view_)) return false;
    start(w, h, view);
  }
  const int end = std::min(n_, next_ + std::max(budget, 1));
  if (end > next_) {
    const PointView& v = pending_view_;
    glBindFramebuffer(GL_FRAMEBUFFER, fbo_);
    glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, back_, 0);
    glViewport(0, 0, back_w_, back_h_);
    glDisable(GL_SCISSOR_TEST);
    glEnable(GL_BLEND);
    // Keep the destination alpha at 1 so the texture stays opaque when ImGui blends it.
    glBlendFuncSeparate(GL_SRC_ALPHA, GL_ONE_MINUS_SRC_ALPHA, GL_ZERO, GL_ONE);
    glEnable(GL_PROGRAM_POINT_SIZE);
    glUseProgram(program_);
    glUniform2f(loc_center_, v.cx, v.cy);
    glUniform2f(loc_scale_, v.sx, v.sy);
    glUniform1f(loc_point_px_, v.point_px);
    glUniform1f(loc_alpha_, v.alpha);
    glUniform3fv(loc_palette_, 16, v.palette[0].data());
    glUniform3fv(loc_unlabelled_, 1, v.unlabelled.data());
    glUniform1i(loc_palette_size_, v.palette_size);
    glBindVertexArray(vao_);
    glDrawArrays(GL_POINTS, next_, end - next_);
    glDisable(GL_PROGRAM_POINT_SIZE);
  }
  next_ = end;
  if (next_ >= n_) {  // complete: show it
    std::swap(shown_, back_);
    std::swap(shown_w_, back_w_);
    std::swap(shown_h_, back_h_);
    shown_view_ = pending_view_;
    has_shown_ = true;
    busy_ = false;
    note_texture_changed(texture());
  }
  return true;
}

}  // namespace vaelab::app
