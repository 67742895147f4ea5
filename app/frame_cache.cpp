// FrameCache (see frame_cache.hpp): damage from a diff of each draw list against last frame's,
// a scissored clear and a clipped ImGui render per damaged rectangle, then (off-screen cache only)
// one blit to the window. Not thread-safe: the UI thread only, with the window's context current.
#include "app/frame_cache.hpp"

#include <imgui_impl_opengl3.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace vaelab::app {
namespace {

std::unordered_map<std::uintptr_t, std::uint64_t>& texture_generations() {
  static std::unordered_map<std::uintptr_t, std::uint64_t> g;  // UI thread only
  return g;
}

std::uintptr_t key_of(ImTextureID id) { return reinterpret_cast<std::uintptr_t>(id); }

ImVec4 intersect(const ImVec4& a, const ImVec4& b) {
  return ImVec4(std::max(a.x, b.x), std::max(a.y, b.y), std::min(a.z, b.z), std::min(a.w, b.w));
}
bool empty(const ImVec4& r) { return r.z <= r.x || r.w <= r.y; }
ImVec4 unite(const ImVec4& a, const ImVec4& b) {
  if (empty(a)) return b;
  if (empty(b)) return a;
  return ImVec4(std::min(a.x, b.x), std::min(a.y, b.y), std::max(a.z, b.z), std::max(a.w, b.w));
}
float area(const ImVec4& r) { return empty(r) ? 0.0f : (r.z - r.x) * (r.w - r.y); }

// Box around vertices [from, to) of a list, one pixel wider (anti-aliased edges reach a fraction
// of a pixel past their vertices).
ImVec4 box_of(const ImDrawVert* v, std::size_t from, std::size_t to) {
  if (from >= to) return ImVec4(0, 0, 0, 0);
  float x0 = 1e30f, y0 = 1e30f, x1 = -1e30f, y1 = -1e30f;
  for (std::size_t k = from; k < to; ++k) {
    x0 = std::min(x0, v[k].pos.x), y0 = std::min(y0, v[k].pos.y);
    x1 = std::max(x1, v[k].pos.x), y1 = std::max(y1, v[k].pos.y);
  }
  return ImVec4(x0 - 1, y0 - 1, x1 + 1, y1 + 1);
}

// Where one command draws: the box around the vertices it indexes, clipped.
ImVec4 cmd_box(const ImDrawList* l, const ImDrawCmd& c, const ImVec4& display) {
  if (c.UserCallback) return intersect(c.ClipRect, display);
  if (c.ElemCount == 0) return ImVec4(0, 0, 0, 0);
  float x0 = 1e30f, y0 = 1e30f, x1 = -1e30f, y1 = -1e30f;
  const ImDrawIdx* idx = l->IdxBuffer.Data + c.IdxOffset;
  const ImDrawVert* vtx = l->VtxBuffer.Data + c.VtxOffset;
  for (unsigned k = 0; k < c.ElemCount; ++k) {
    const ImVec2 p = vtx[idx[k]].pos;
    x0 = std::min(x0, p.x), y0 = std::min(y0, p.y), x1 = std::max(x1, p.x), y1 = std::max(y1, p.y);
  }
  return intersect(intersect(ImVec4(x0 - 1, y0 - 1, x1 + 1, y1 + 1), c.ClipRect), display);
}

}  // namespace

void note_texture_changed(ImTextureID id) { ++texture_generations()[key_of(id)]; }

FrameCache::~FrameCache() {
  if (fbo_) glDeleteFramebuffers(1, &fbo_);
  if (tex_) glDeleteTextures(1, &tex_);
}

void FrameCache::probe_back_buffer(const std::function<void()>& swap, int fb_w, int fb_h, ImVec4 clear) {
  direct_ = false;
  if (fb_w < 2 || fb_h < 2) return;
  // Two frames one step apart in red: after the second swap a preserving back buffer holds the
  // second frame (a rotating pair would hold the first, an undefined one anything).
  const int r0 = std::clamp(static_cast<int>(std::lround(clear.x * 255)), 0, 253);
  glBindFramebuffer(GL_FRAMEBUFFER, 0);
  glDisable(GL_SCISSOR_TEST);
  for (int k = 1; k <= 2; ++k) {
    glClearColor((r0 + k) / 255.0f, clear.y, clear.z, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    swap();
  }
  glReadBuffer(GL_BACK);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  bool kept = true;
  for (const auto& [x, y] : {std::pair{0, 0}, std::pair{fb_w - 1, fb_h - 1}, std::pair{fb_w / 2, fb_h / 2}}) {
    unsigned char px[4] = {};
    glReadPixels(x, y, 1, 1, GL_RGBA, GL_UNSIGNED_BYTE, px);
    kept = kept && px[0] == r0 + 2;
  }
  direct_ = kept && glGetError() == GL_NO_ERROR;
  full_ = true;
}

void FrameCache::ensure_target(int w, int h) {
  if (direct_) {
    if (w != w_ || h != h_) full_ = true;  // a resized back buffer starts undefined
    w_ = w;
    h_ = h;
    return;
  }
  if (w == w_ && h == h_ && fbo_) return;
  if (!fbo_) {
    glGenFramebuffers(1, &fbo_);
    glGenTextures(1, &tex_);
  }
  GLint previous = 0;
  glGetIntegerv(GL_TEXTURE_BINDING_2D, &previous);
  glBindTexture(GL_TEXTURE_2D, tex_);
  glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, w, h, 0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
  glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
  glBindTexture(GL_TEXTURE_2D, static_cast<GLuint>(previous));
  glBindFramebuffer(GL_FRAMEBUFFER, fbo_);
  glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, tex_, 0);
  glBindFramebuffer(GL_FRAMEBUFFER, 0);
  w_ = w;
  h_ = h;
  full_ = true;
}

void FrameCache::render(ImDrawData* dd, int fb_w, int fb_h, ImVec4 clear) {
  if (!dd || fb_w <= 0 || fb_h <= 0) return;
  ensure_target(fb_w, fb_h);
  const ImVec2 pos = dd->DisplayPos;
  const ImVec4 display(pos.x, pos.y, pos.x + dd->DisplaySize.x, pos.y + dd->DisplaySize.y);
  std::vector<ListState> now = capture(*dd, display);
  std::vector<ImVec4> damage;
  const bool full = find_damage(now, damage) || full_;
  if (debug_) {  // VAELAB_DEBUG_DAMAGE=1: the damaged rectangles of every frame on stderr
    std::fprintf(stderr, "frame cache: full %d, %d lists, damage", full ? 1 : 0, dd->CmdListsCount);
    for (const ImVec4& d : damage) std::fprintf(stderr, " [%.0f,%.0f-%.0f,%.0f]", d.x, d.y, d.z, d.w);
    std::fprintf(stderr, "\n");
  }
  previous_ = std::move(now);
  full_ = false;

  const PixelGrid grid{pos, dd->FramebufferScale, fb_w, fb_h};
  const std::vector<ImVec4> rects = full ? std::vector<ImVec4>{grid.snap(display)} : merged_rects(damage, display, grid);
  float damaged = 0;
  for (const ImVec4& r : rects) damaged += area(r);
  damaged_fraction_ = damaged / std::max(1.0f, area(display));
  passes_ = static_cast<int>(rects.size());

  glBindFramebuffer(GL_FRAMEBUFFER, direct_ ? 0 : fbo_);
  glViewport(0, 0, fb_w, fb_h);
  for (const ImVec4& r : rects) redraw(dd, r, grid, clear);
  if (!direct_) blit_to_window(fb_w, fb_h);
}

// Per draw list (one per window): its vertices and commands, for the diff against the next frame.
std::vector<FrameCache::ListState> FrameCache::capture(const ImDrawData& dd, const ImVec4& display) {
  const auto& gens = texture_generations();
  std::vector<ListState> now(static_cast<std::size_t>(dd.CmdListsCount));
  for (int i = 0; i < dd.CmdListsCount; ++i) {
    const ImDrawList* l = dd.CmdLists[i];
    ListState& st = now[static_cast<std::size_t>(i)];
    st.list = l;
    st.vtx.assign(l->VtxBuffer.begin(), l->VtxBuffer.end());
    st.bounds = ImVec4(0, 0, 0, 0);
    for (const ImDrawCmd& c : l->CmdBuffer) {
      CmdState cs;
      cs.clip = c.ClipRect;
      cs.texture = c.TextureId;
      cs.vtx_offset = c.VtxOffset, cs.idx_offset = c.IdxOffset, cs.elements = c.ElemCount;
      if (const auto it = gens.find(key_of(c.TextureId)); it != gens.end()) cs.generation = it->second;
      cs.box = cmd_box(l, c, display);
      cs.callback = c.UserCallback != nullptr;
      st.bounds = unite(st.bounds, cs.box);
      st.cmds.push_back(cs);
    }
  }
  return now;
}

// What changed since the last frame: lists that appeared or disappeared damage their bounds,
// changed lists what diff_list finds. True when windows changed their stacking order (then
// everything they cover may change: the whole window is redrawn).
bool FrameCache::find_damage(const std::vector<ListState>& now, std::vector<ImVec4>& damage) const {
  if (full_) return true;
  std::unordered_map<const ImDrawList*, std::size_t> before;
  for (std::size_t i = 0; i < previous_.size(); ++i) before[previous_[i].list] = i;
  std::vector<bool> kept(previous_.size(), false);
  bool restacked = false;
  std::size_t last = 0;
  bool first = true;
  for (const ListState& s : now) {
    const auto it = before.find(s.list);
    if (it == before.end()) {
      damage.push_back(s.bounds);  // appeared (a popup, a tooltip)
      continue;
    }
    kept[it->second] = true;
    if (!first && it->second < last) restacked = true;
    last = it->second;
    first = false;
    diff_list(previous_[it->second], s, damage);
  }
  for (std::size_t i = 0; i < previous_.size(); ++i)
    if (!kept[i]) damage.push_back(previous_[i].bounds);  // disappeared
  return restacked;
}

// One list against its last frame: the same commands (clip, texture, callbacks) and vertices
// that differ only in a middle stretch — a status line's digits, a plot's data — damage the box
// around that stretch, old and new. Anything else damages the whole list, old and new.
void FrameCache::diff_list(const ListState& p, const ListState& s, std::vector<ImVec4>& damage) {
  const ImVec4 both = unite(p.bounds, s.bounds);
  bool same_cmds = p.cmds.size() == s.cmds.size();
  for (std::size_t k = 0; same_cmds && k < s.cmds.size(); ++k) {
    const CmdState &a = p.cmds[k], &b = s.cmds[k];
    same_cmds = std::memcmp(&a.clip, &b.clip, sizeof a.clip) == 0 && a.texture == b.texture &&
                a.vtx_offset == b.vtx_offset && !a.callback && !b.callback;
    if (same_cmds && a.generation != b.generation) damage.push_back(unite(a.box, b.box));  // new pixels
  }
  if (!same_cmds) {
    damage.push_back(both);
    return;
  }
  const std::size_t n0 = p.vtx.size(), n1 = s.vtx.size(), n = std::min(n0, n1);
  auto same = [](const ImDrawVert& a, const ImDrawVert& b) { return std::memcmp(&a, &b, sizeof a) == 0; };
  std::size_t pre = 0, suf = 0;
  while (pre < n && same(p.vtx[pre], s.vtx[pre])) ++pre;
  while (suf < n - pre && same(p.vtx[n0 - 1 - suf], s.vtx[n1 - 1 - suf])) ++suf;
  if (pre == n0 && n0 == n1) {
    // The same vertices: the same triangles unless the index ranges moved.
    for (std::size_t k = 0; k < s.cmds.size(); ++k)
      if (p.cmds[k].idx_offset != s.cmds[k].idx_offset || p.cmds[k].elements != s.cmds[k].elements) {
        damage.push_back(both);
        return;
      }
    return;
  }
  const ImVec4 changed = unite(box_of(p.vtx.data(), pre, n0 - suf), box_of(s.vtx.data(), pre, n1 - suf));
  damage.push_back(intersect(changed, both));
}

// The damaged rectangles inside the window, snapped to whole framebuffer pixels and merged: two
// are merged when their bounding box costs little more than drawing both; many passes cost too
// (each re-sends every list's vertices), so at most six remain.
std::vector<ImVec4> FrameCache::merged_rects(const std::vector<ImVec4>& damage, const ImVec4& display, const PixelGrid& grid) {
  std::vector<ImVec4> rects;
  for (const ImVec4& d : damage)
    if (!empty(intersect(d, display))) rects.push_back(grid.snap(intersect(d, display)));
  auto extra = [](const ImVec4& a, const ImVec4& b) { return area(unite(a, b)) - area(a) - area(b); };
  for (bool merged = true; merged;) {
    merged = false;
    std::size_t bi = 0, bj = 0;
    float best = 1e30f;
    for (std::size_t i = 0; i < rects.size(); ++i)
      for (std::size_t j = i + 1; j < rects.size(); ++j)
        if (const float e = extra(rects[i], rects[j]); e < best) best = e, bi = i, bj = j;
    if (rects.size() > 6 || (rects.size() > 1 && best <= 0.15f * (area(rects[bi]) + area(rects[bj])))) {
      rects[bi] = unite(rects[bi], rects[bj]);
      rects.erase(rects.begin() + static_cast<long>(bj));
      merged = true;
    }
  }
  return rects;
}

ImVec4 FrameCache::PixelGrid::snap(const ImVec4& r) const {
  const float x0 = std::clamp(std::floor((r.x - pos.x) * scale.x), 0.0f, static_cast<float>(fb_w));
  const float y0 = std::clamp(std::floor((r.y - pos.y) * scale.y), 0.0f, static_cast<float>(fb_h));
  const float x1 = std::clamp(std::ceil((r.z - pos.x) * scale.x), 0.0f, static_cast<float>(fb_w));
  const float y1 = std::clamp(std::ceil((r.w - pos.y) * scale.y), 0.0f, static_cast<float>(fb_h));
  return ImVec4(x0 / scale.x + pos.x, y0 / scale.y + pos.y, x1 / scale.x + pos.x, y1 / scale.y + pos.y);
}

// Clears rectangle r of the bound framebuffer and draws into it the lists that reach into it,
// each command clipped to it (the clip rectangles are restored afterwards).
void FrameCache::redraw(ImDrawData* dd, const ImVec4& r, const PixelGrid& grid, ImVec4 clear) {
  const int x0 = static_cast<int>(std::lround((r.x - grid.pos.x) * grid.scale.x));
  const int y0 = static_cast<int>(std::lround((r.y - grid.pos.y) * grid.scale.y));
  const int x1 = static_cast<int>(std::lround((r.z - grid.pos.x) * grid.scale.x));
  const int y1 = static_cast<int>(std::lround((r.w - grid.pos.y) * grid.scale.y));
  glEnable(GL_SCISSOR_TEST);
  glScissor(x0, grid.fb_h - y1, x1 - x0, y1 - y0);
  glClearColor(clear.x, clear.y, clear.z, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  glDisable(GL_SCISSOR_TEST);
  std::vector<ImDrawList*> lists;
  std::vector<ImVec4> saved;
  for (int i = 0; i < dd->CmdListsCount; ++i) {
    ImDrawList* l = dd->CmdLists[i];
    bool any = false;
    for (ImDrawCmd& c : l->CmdBuffer) {
      saved.push_back(c.ClipRect);
      c.ClipRect = intersect(c.ClipRect, r);
      if (empty(c.ClipRect)) c.ClipRect = ImVec4(0, 0, 0, 0);
      else any = any || c.ElemCount > 0 || c.UserCallback;
    }
    if (any) lists.push_back(l);
  }
  if (!lists.empty()) {
    ImDrawData part = *dd;
    part.CmdLists = lists.data();
    part.CmdListsCount = static_cast<int>(lists.size());
    ImGui_ImplOpenGL3_RenderDrawData(&part);
  }
  std::size_t k = 0;
  for (int i = 0; i < dd->CmdListsCount; ++i)
    for (ImDrawCmd& c : dd->CmdLists[i]->CmdBuffer) c.ClipRect = saved[k++];
}

// The off-screen cache to the window.
void FrameCache::blit_to_window(int fb_w, int fb_h) const {
  glBindFramebuffer(GL_READ_FRAMEBUFFER, fbo_);
  glBindFramebuffer(GL_DRAW_FRAMEBUFFER, 0);
  glDisable(GL_SCISSOR_TEST);
  glBlitFramebuffer(0, 0, fb_w, fb_h, 0, 0, fb_w, fb_h, GL_COLOR_BUFFER_BIT, GL_NEAREST);
  glBindFramebuffer(GL_FRAMEBUFFER, 0);
}

}  // namespace vaelab::app
