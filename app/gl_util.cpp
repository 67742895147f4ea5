// OpenGL helpers: program building with error logs, and the state guard for off-screen passes.
// Not a resource manager: callers own and delete their GL objects.
#include "app/gl_util.hpp"

#include <stdexcept>

namespace vaelab::app {
namespace {

// The info log of a shader or a program, read with the matching pair of GL calls.
template <class GetParameter, class GetLog>
std::string info_log(GLuint object, GetParameter get_parameter, GetLog get_log) {
  GLint len = 0;
  get_parameter(object, GL_INFO_LOG_LENGTH, &len);
  std::string log(static_cast<std::size_t>(len > 1 ? len : 1), '\0');
  get_log(object, len, nullptr, log.data());
  return log.c_str();  // up to the terminating NUL
}

GLuint compile(GLenum kind, const char* name, const char* src) {
  GLuint s = glCreateShader(kind);
  glShaderSource(s, 1, &src, nullptr);
  glCompileShader(s);
  GLint ok = 0;
  glGetShaderiv(s, GL_COMPILE_STATUS, &ok);
  if (!ok) {
    const std::string log = info_log(s, glGetShaderiv, glGetShaderInfoLog);
    glDeleteShader(s);
    throw std::runtime_error(std::string("shader ") + name + (kind == GL_VERTEX_SHADER ? " (vertex)" : " (fragment)") +
                             " failed to compile: " + log);
  }
  return s;
}

}  // namespace

GLuint build_program(const char* name, const char* vertex_src, const char* fragment_src) {
  GLuint vs = compile(GL_VERTEX_SHADER, name, vertex_src);
  GLuint fs = 0;
  try {
    fs = compile(GL_FRAGMENT_SHADER, name, fragment_src);
  } catch (...) {
    glDeleteShader(vs);
    throw;
  }
  GLuint p = glCreateProgram();
  glAttachShader(p, vs);
  glAttachShader(p, fs);
  glLinkProgram(p);
  glDeleteShader(vs);
  glDeleteShader(fs);
  GLint ok = 0;
  glGetProgramiv(p, GL_LINK_STATUS, &ok);
  if (!ok) {
    const std::string log = info_log(p, glGetProgramiv, glGetProgramInfoLog);
    glDeleteProgram(p);
    throw std::runtime_error(std::string("shader program ") + name + " failed to link: " + log);
  }
  return p;
}

GlStateGuard::GlStateGuard() {
  glGetIntegerv(GL_DRAW_FRAMEBUFFER_BINDING, &fbo_);
  glGetIntegerv(GL_VIEWPORT, viewport_);
  glGetIntegerv(GL_CURRENT_PROGRAM, &program_);
  glGetIntegerv(GL_VERTEX_ARRAY_BINDING, &vao_);
  glGetIntegerv(GL_ACTIVE_TEXTURE, &active_texture_);
  glActiveTexture(GL_TEXTURE0);
  glGetIntegerv(GL_TEXTURE_BINDING_2D, &texture_);
  blend_ = glIsEnabled(GL_BLEND);
  scissor_ = glIsEnabled(GL_SCISSOR_TEST);
  glGetIntegerv(GL_BLEND_SRC_RGB, &blend_src_rgb_);
  glGetIntegerv(GL_BLEND_DST_RGB, &blend_dst_rgb_);
  glGetIntegerv(GL_BLEND_SRC_ALPHA, &blend_src_a_);
  glGetIntegerv(GL_BLEND_DST_ALPHA, &blend_dst_a_);
}

GlStateGuard::~GlStateGuard() {
  glBindFramebuffer(GL_FRAMEBUFFER, static_cast<GLuint>(fbo_));
  glViewport(viewport_[0], viewport_[1], viewport_[2], viewport_[3]);
  glUseProgram(static_cast<GLuint>(program_));
  glBindVertexArray(static_cast<GLuint>(vao_));
  glActiveTexture(GL_TEXTURE0);
  glBindTexture(GL_TEXTURE_2D, static_cast<GLuint>(texture_));
  glActiveTexture(static_cast<GLenum>(active_texture_));
  if (blend_) glEnable(GL_BLEND); else glDisable(GL_BLEND);
  if (scissor_) glEnable(GL_SCISSOR_TEST); else glDisable(GL_SCISSOR_TEST);
  glBlendFuncSeparate(static_cast<GLenum>(blend_src_rgb_), static_cast<GLenum>(blend_dst_rgb_),
                      static_cast<GLenum>(blend_src_a_), static_cast<GLenum>(blend_dst_a_));
}

}  // namespace vaelab::app
