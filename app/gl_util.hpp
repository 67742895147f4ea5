// Small OpenGL helpers for the app: the glad include, shader program compile/link with readable
// errors, and a scoped save/restore of the framebuffer and viewport for off-screen passes.
// Not an abstraction over OpenGL: the rest of the app calls gl* directly.
#pragma once
#include <glad/gl.h>

#include <string>

namespace vaelab::app {

// Compiles and links a vertex + fragment program. Throws std::runtime_error with the GL log.
GLuint build_program(const char* name, const char* vertex_src, const char* fragment_src);

// Saves the bound draw framebuffer, viewport, program, VAO, active texture and blend state;
// restores them on destruction. Off-screen passes run while ImGui builds its frame, so they must
// leave the state as they found it.
class GlStateGuard {
 public:
  GlStateGuard();
  ~GlStateGuard();
  GlStateGuard(const GlStateGuard&) = delete;
  GlStateGuard& operator=(const GlStateGuard&) = delete;

 private:
  GLint fbo_ = 0, program_ = 0, vao_ = 0, active_texture_ = 0, texture_ = 0;
  GLint viewport_[4] = {};
  GLboolean blend_ = GL_FALSE, scissor_ = GL_FALSE;
  GLint blend_src_rgb_ = 0, blend_dst_rgb_ = 0, blend_src_a_ = 0, blend_dst_a_ = 0;
};

}  // namespace vaelab::app
