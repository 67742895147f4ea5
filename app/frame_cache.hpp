// FrameCache: ImGui's output kept between frames (in the window's back buffer when the driver
// preserves it, else in an off-screen texture blitted to the window), where only the rectangles
// whose draw lists changed are cleared and drawn again. Software GL (llvmpipe under Xvfb) pays
// for every pixel it fills, and while training most of the window (the forms, the map, the
// images) stays the same from one frame to the next.
// Not a compositor: one viewport, the drawing itself is left to ImGui's OpenGL backend.
#pragma once
#include <glad/gl.h>
#include <imgui.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <vector>

namespace vaelab::app {

// A texture's pixels changed under the same id: areas of the cache that show it are redrawn.
void note_texture_changed(ImTextureID id);

class FrameCache {
 public:
  FrameCache() = default;
  ~FrameCache();
  FrameCache(const FrameCache&) = delete;
  FrameCache& operator=(const FrameCache&) = delete;

  // Checks, with two swaps of frames that differ by one colour step (invisible), whether the
  // window's back buffer still holds the last frame after a swap. Mesa's software drivers swap
  // by copying, and then the cache is the back buffer itself (no copy per frame); GLX does not
  // promise it (nor offers GLX_EXT_buffer_age there), so without a positive check the cache is
  // an off-screen texture blitted to the window.
  void probe_back_buffer(const std::function<void()>& swap, int fb_w, int fb_h, ImVec4 clear);
  bool in_back_buffer() const { return direct_; }

  // Draws `dd` into the cache (only what changed since the last call) and, for an off-screen
  // cache, copies it to framebuffer 0. `clear` is the colour behind everything (panels may skip
  // their backgrounds).
  void render(ImDrawData* dd, int fb_w, int fb_h, ImVec4 clear);
  void invalidate() { full_ = true; }

  // What the last render did, for --frame-stats.
  float damaged_fraction() const { return damaged_fraction_; }
  int passes() const { return passes_; }

 private:
  struct CmdState {
    ImVec4 clip;
    ImTextureID texture = nullptr;
    unsigned vtx_offset = 0, idx_offset = 0, elements = 0;
    std::uint64_t generation = 0;  // of the texture
    ImVec4 box;                    // where it draws
    bool callback = false;
  };
  struct ListState {
    const ImDrawList* list = nullptr;
    std::vector<ImDrawVert> vtx;  // last frame's vertices, for the diff
    std::vector<CmdState> cmds;
    ImVec4 bounds;                // display coordinates (x0, y0, x1, y1)
  };
  // Display coordinates on the framebuffer's pixel grid.
  struct PixelGrid {
    ImVec2 pos, scale;
    int fb_w, fb_h;
    ImVec4 snap(const ImVec4& r) const;  // r grown to whole pixels, clamped to the framebuffer
  };
  void ensure_target(int w, int h);
  static std::vector<ListState> capture(const ImDrawData& dd, const ImVec4& display);
  bool find_damage(const std::vector<ListState>& now, std::vector<ImVec4>& damage) const;
  static void diff_list(const ListState& before, const ListState& now, std::vector<ImVec4>& damage);
  static std::vector<ImVec4> merged_rects(const std::vector<ImVec4>& damage, const ImVec4& display, const PixelGrid& grid);
  static void redraw(ImDrawData* dd, const ImVec4& rect, const PixelGrid& grid, ImVec4 clear);
  void blit_to_window(int fb_w, int fb_h) const;

  GLuint fbo_ = 0, tex_ = 0;
  int w_ = 0, h_ = 0;
  bool full_ = true;
  bool direct_ = false;  // the cache is the window's back buffer
  std::vector<ListState> previous_;
  bool debug_ = std::getenv("VAELAB_DEBUG_DAMAGE") != nullptr;
  float damaged_fraction_ = 1;
  int passes_ = 0;
};

}  // namespace vaelab::app
