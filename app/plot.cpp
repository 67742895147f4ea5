// The plot widget: ranges and ticks from core/view_math, per-column min/max decimation so a
// 100,000-point curve costs a few hundred vertices, markers and the hover read-out.
// Not stateful: everything is recomputed from the series every frame.
#include "app/plot.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "app/ui_colours.hpp"
#include "core/view_math.hpp"

namespace vaelab::app {
namespace {

struct Axis {
  double lo = 0, hi = 1;  // in axis units (log10 of the value on a log axis)
  float p_lo = 0, p_hi = 1;  // pixels
  float to_px(double v) const { return static_cast<float>(p_lo + (v - lo) / (hi - lo) * (p_hi - p_lo)); }
  double from_px(float p) const { return lo + (p - p_lo) / static_cast<double>(p_hi - p_lo) * (hi - lo); }
};

bool usable(float x, float y, bool log_y) { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0); }

Range merge(Range a, Range b) {
  if (!a.valid) return b;
  if (!b.valid) return a;
  return Range{std::min(a.lo, b.lo), std::max(a.hi, b.hi), true};
}

// Emit the series as polylines, keeping per pixel column its lowest and highest point (in the
// order they come; just one when they are within a pixel), and breaking the line at gaps.
void draw_series(ImDrawList* dl, const PlotSeries& s, const Axis& ax, const Axis& ay, bool log_y) {
  std::vector<ImVec2> line;
  line.reserve(1024);
  auto flush = [&] {
    if (line.size() >= 2) dl->AddPolyline(line.data(), static_cast<int>(line.size()), s.colour, 0, s.thickness);
    else if (line.size() == 1) dl->AddCircleFilled(line[0], s.thickness + 0.5f, s.colour);
    line.clear();
  };
  long column = 0;
  bool open = false;
  ImVec2 lowest, highest;  // screen y grows downwards: the highest value has the smallest y
  bool lowest_first = true;
  auto close_column = [&] {
    if (!open) return;
    if (lowest.y - highest.y < 1.0f) line.push_back(lowest);
    else if (lowest_first) line.push_back(lowest), line.push_back(highest);
    else line.push_back(highest), line.push_back(lowest);
    open = false;
  };
  for (std::size_t i = 0; i < s.n; ++i) {
    if (!usable(s.x[i], s.y[i], log_y)) {
      close_column();
      flush();
      continue;
    }
    const double yv = log_y ? std::log10(static_cast<double>(s.y[i])) : s.y[i];
    const ImVec2 p(ax.to_px(s.x[i]), ay.to_px(yv));
    const long c = std::lround(std::floor(p.x));
    if (open && c == column) {
      if (p.y > lowest.y) {
        lowest = p;
        lowest_first = false;
      }
      if (p.y < highest.y) {
        highest = p;
        lowest_first = true;
      }
    } else {
      close_column();
      open = true;
      column = c;
      lowest = highest = p;
      lowest_first = true;
    }
  }
  close_column();
  flush();
  // Dots only while they are at least a few pixels apart; dense ones would just thicken the line.
  if (s.dots && s.n > 0 && static_cast<double>(s.n) * 7.0 <= std::fabs(ax.p_hi - ax.p_lo)) {
    for (std::size_t i = 0; i < s.n; ++i) {
      if (!usable(s.x[i], s.y[i], log_y)) continue;
      const double yv = log_y ? std::log10(static_cast<double>(s.y[i])) : s.y[i];
      dl->AddCircleFilled(ImVec2(ax.to_px(s.x[i]), ay.to_px(yv)), s.thickness + 1.5f, s.colour);
    }
  }
}

// Index of the usable point nearest to x (by x), or −1.
long nearest_index(const PlotSeries& s, double x, bool log_y) {
  if (s.n == 0) return -1;
  const float* it = std::lower_bound(s.x, s.x + s.n, static_cast<float>(x));
  long hi = it - s.x;
  long lo = hi - 1;
  while (lo >= 0 && !usable(s.x[lo], s.y[lo], log_y)) --lo;
  while (hi < static_cast<long>(s.n) && !usable(s.x[hi], s.y[hi], log_y)) ++hi;
  if (lo < 0 && hi >= static_cast<long>(s.n)) return -1;
  if (lo < 0) return hi;
  if (hi >= static_cast<long>(s.n)) return lo;
  return (x - s.x[lo] <= s.x[hi] - x) ? lo : hi;
}

void dashed_vline(ImDrawList* dl, float x, float y0, float y1, ImU32 colour) {
  for (float y = y0; y < y1; y += 6) dl->AddLine(ImVec2(x, y), ImVec2(x, std::min(y + 3, y1)), colour, 1.0f);
}

}  // namespace

void decimate_min_max(const std::vector<float>& x, const std::vector<float>& y, std::size_t max_points,
                      std::vector<float>& out_x, std::vector<float>& out_y) {
  const std::size_t n = std::min(x.size(), y.size());
  out_x.clear();
  out_y.clear();
  if (n <= max_points || max_points < 4) {
    out_x.assign(x.begin(), x.begin() + static_cast<long>(n));
    out_y.assign(y.begin(), y.begin() + static_cast<long>(n));
    return;
  }
  // Power-of-two buckets, so they stay put as the series grows (no shimmer while training).
  std::size_t bucket = 1;
  while (n / bucket > max_points / 2) bucket *= 2;
  out_x.reserve(2 * (n / bucket + 1));
  out_y.reserve(2 * (n / bucket + 1));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t b0 = 0; b0 < n; b0 += bucket) {
    const std::size_t b1 = std::min(n, b0 + bucket);
    std::size_t lo = n, hi = n;
    bool gap = false;
    for (std::size_t i = b0; i < b1; ++i) {
      if (!std::isfinite(y[i])) {
        gap = true;
        continue;
      }
      if (lo == n || y[i] < y[lo]) lo = i;
      if (hi == n || y[i] > y[hi]) hi = i;
    }
    if (gap) {
      out_x.push_back(x[b0]);
      out_y.push_back(nan);
    }
    if (lo == n) continue;
    const std::size_t first = std::min(lo, hi), second = std::max(lo, hi);
    out_x.push_back(x[first]);
    out_y.push_back(y[first]);
    if (second != first) {
      out_x.push_back(x[second]);
      out_y.push_back(y[second]);
    }
  }
}

bool plot(const char* id, ImVec2 size, const PlotOptions& options, std::span<const PlotSeries> series,
          std::span<const PlotMarker> markers) {
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  if (size.x <= 0) size.x = std::max(avail.x, 50.0f);
  if (size.y <= 0) size.y = std::max(avail.y, 50.0f);
  const ImVec2 p0 = ImGui::GetCursorScreenPos();
  ImGui::InvisibleButton(id, size);
  const bool hovered = ImGui::IsItemHovered();
  const ImVec2 p1(p0.x + size.x, p0.y + size.y);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const ImGuiStyle& style = ImGui::GetStyle();
  const ImU32 text_col = ImGui::GetColorU32(ImGuiCol_Text);
  const ImU32 dim_col = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  const ImU32 grid_col = ImGui::GetColorU32(ImGuiCol_Border, 0.45f);
  const float line_h = ImGui::GetTextLineHeight();
  dl->AddRectFilled(p0, p1, ImGui::GetColorU32(ImGuiCol_FrameBg), style.FrameRounding);

  // ---- ranges over the finite values of every series ----
  const bool log_y = options.log_y;
  Range xr, yr;
  for (const PlotSeries& s : series) {
    if (s.n == 0) continue;
    xr = merge(xr, finite_range(s.x, s.n));
    yr = merge(yr, finite_range(s.y, s.n, log_y));
  }
  const float title_h = options.title ? line_h + 4 : 4;
  if (options.title) dl->AddText(ImVec2(p0.x + 6, p0.y + 2), text_col, options.title);
  if (!xr.valid || !yr.valid) {
    const char* msg = log_y ? "no positive values yet" : "no data yet";
    const ImVec2 ts = ImGui::CalcTextSize(msg);
    dl->AddText(ImVec2((p0.x + p1.x - ts.x) * 0.5f, (p0.y + p1.y - ts.y) * 0.5f), dim_col, msg);
    return hovered;
  }
  if (options.robust_y) {
    // Percentiles over a subsample (at most ~4000 values per series) of the usable points.
    std::vector<float> ys;
    for (const PlotSeries& s : series) {
      const std::size_t step = std::max<std::size_t>(1, s.n / 4000);
      for (std::size_t i = 0; i < s.n; i += step)
        if (usable(s.x[i], s.y[i], log_y)) ys.push_back(s.y[i]);
    }
    if (ys.size() >= 20) {
      const std::size_t lo = ys.size() / 100, hi = ys.size() - 1 - ys.size() / 100;
      std::nth_element(ys.begin(), ys.begin() + static_cast<long>(lo), ys.end());
      const float qlo = ys[lo];
      std::nth_element(ys.begin(), ys.begin() + static_cast<long>(hi), ys.end());
      const float qhi = ys[hi];
      if (qhi > qlo) yr = Range{qlo, qhi, true};
    }
  }
  if (log_y) yr = Range{std::log10(yr.lo), std::log10(yr.hi), true};
  yr = padded(yr, 0.06);
  if (xr.hi <= xr.lo) xr = padded(xr, 0.05);

  // ---- y ticks decide the left margin ----
  Axis ay{yr.lo, yr.hi, 0, 0};
  std::vector<double> yticks;  // in axis units
  const int max_yticks = std::clamp(static_cast<int>((size.y - title_h) / (line_h * 2.2f)), 2, 8);
  if (log_y) {
    for (double t : log_ticks(std::pow(10.0, yr.lo), std::pow(10.0, yr.hi))) yticks.push_back(std::log10(t));
    if (yticks.size() < 2) {
      yticks.clear();
      for (double t : nice_ticks(std::pow(10.0, yr.lo), std::pow(10.0, yr.hi), max_yticks))
        if (t > 0) yticks.push_back(std::log10(t));
    }
  } else {
    yticks = nice_ticks(yr.lo, yr.hi, max_yticks);
  }
  std::vector<std::string> ylabels;
  float label_w = 0;
  for (double t : yticks) {
    ylabels.push_back(tick_label(log_y ? std::pow(10.0, t) : t));
    label_w = std::max(label_w, ImGui::CalcTextSize(ylabels.back().c_str()).x);
  }
  const ImVec2 a0(p0.x + label_w + 10, p0.y + title_h);
  const ImVec2 a1(p1.x - 8, p1.y - line_h - 6);
  if (a1.x - a0.x < 20 || a1.y - a0.y < 20) return hovered;
  ay.p_lo = a1.y;
  ay.p_hi = a0.y;
  Axis ax{xr.lo, xr.hi, a0.x, a1.x};

  for (std::size_t i = 0; i < yticks.size(); ++i) {
    const float y = ay.to_px(yticks[i]);
    if (y < a0.y - 0.5f || y > a1.y + 0.5f) continue;
    dl->AddLine(ImVec2(a0.x, y), ImVec2(a1.x, y), grid_col);
    const ImVec2 ts = ImGui::CalcTextSize(ylabels[i].c_str());
    dl->AddText(ImVec2(a0.x - 6 - ts.x, y - ts.y * 0.5f), dim_col, ylabels[i].c_str());
  }
  const int max_xticks = std::clamp(static_cast<int>((a1.x - a0.x) / 80.0f), 2, 10);
  for (double t : nice_ticks(xr.lo, xr.hi, max_xticks)) {
    const float x = ax.to_px(t);
    if (x < a0.x - 0.5f || x > a1.x + 0.5f) continue;
    dl->AddLine(ImVec2(x, a0.y), ImVec2(x, a1.y), grid_col);
    const std::string label = tick_label(t);
    const ImVec2 ts = ImGui::CalcTextSize(label.c_str());
    const float lx = std::clamp(x - ts.x * 0.5f, p0.x + 2, p1.x - ts.x - 2);
    dl->AddText(ImVec2(lx, a1.y + 3), dim_col, label.c_str());
  }
  dl->AddRect(a0, a1, ImGui::GetColorU32(ImGuiCol_Border));

  // ---- markers, series ----
  dl->PushClipRect(a0, a1, true);
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  const bool in_area = hovered && mouse.x >= a0.x && mouse.x <= a1.x && mouse.y >= a0.y && mouse.y <= a1.y;
  const PlotMarker* hovered_marker = nullptr;
  for (const PlotMarker& m : markers) {
    if (m.x < xr.lo || m.x > xr.hi) continue;
    const float x = ax.to_px(m.x);
    const bool near = in_area && std::fabs(mouse.x - x) <= 4;
    const ImU32 c = near ? IM_COL32(255, 200, 80, 255) : IM_COL32(230, 170, 60, 170);
    dashed_vline(dl, x, a0.y, a1.y, c);
    dl->AddTriangleFilled(ImVec2(x - 4, a0.y), ImVec2(x + 4, a0.y), ImVec2(x, a0.y + 6), c);
    if (near) hovered_marker = &m;
  }
  for (const PlotSeries& s : series) {
    // Thin lines need no anti-aliasing fringe: a third of the triangles (software GL pays per triangle).
    const ImDrawListFlags flags = dl->Flags;
    if (s.thickness <= 1.0f) dl->Flags &= ~ImDrawListFlags_AntiAliasedLines;
    draw_series(dl, s, ax, ay, log_y);
    dl->Flags = flags;
  }
  dl->PopClipRect();

  // ---- legend: in the title line when it fits, else a box in the plot's corner ----
  bool legend_done = false;
  if (options.legend && options.title) {
    float total = 0;
    for (const PlotSeries& s : series)
      if (s.in_legend) total += 22 + ImGui::CalcTextSize(s.label().data(), s.label().data() + s.label().size()).x + 10;
    const float title_w = ImGui::CalcTextSize(options.title).x;
    if (total > 0 && p0.x + 6 + title_w + 16 + total <= p1.x - 4) {
      float x = p1.x - 4 - total;
      const float y = p0.y + 2;
      for (const PlotSeries& s : series) {
        if (!s.in_legend) continue;
        dl->AddLine(ImVec2(x, y + line_h * 0.5f), ImVec2(x + 16, y + line_h * 0.5f), s.colour, 2.5f);
        if (s.dots) dl->AddCircleFilled(ImVec2(x + 8, y + line_h * 0.5f), 3.0f, s.colour);
        dl->AddText(ImVec2(x + 20, y), text_col, s.label().data(), s.label().data() + s.label().size());
        x += 22 + ImGui::CalcTextSize(s.label().data(), s.label().data() + s.label().size()).x + 10;
      }
      legend_done = true;
    }
  }
  if (options.legend && !legend_done) {
    float w = 0;
    int rows = 0;
    for (const PlotSeries& s : series)
      if (s.in_legend) {
        w = std::max(w, ImGui::CalcTextSize(s.label().data(), s.label().data() + s.label().size()).x);
        ++rows;
      }
    if (rows > 0) {
      const float bw = w + 30, bh = rows * line_h + 6;
      ImVec2 l0(a1.x - bw - 4, a0.y + 4);
      // Move the legend out of the way when the mouse is over it.
      if (in_area && mouse.x >= l0.x && mouse.y <= l0.y + bh) l0.y = a1.y - bh - 4;
      dl->AddRectFilled(l0, ImVec2(l0.x + bw, l0.y + bh), ImGui::GetColorU32(ImGuiCol_PopupBg, 0.85f), 3);
      float y = l0.y + 3;
      for (const PlotSeries& s : series) {
        if (!s.in_legend) continue;
        dl->AddLine(ImVec2(l0.x + 5, y + line_h * 0.5f), ImVec2(l0.x + 21, y + line_h * 0.5f), s.colour, 2.5f);
        dl->AddText(ImVec2(l0.x + 25, y), text_col, s.label().data(), s.label().data() + s.label().size());
        y += line_h;
      }
    }
  }

  // ---- hover read-out ----
  if (in_area) {
    const double x = ax.from_px(mouse.x);
    dl->AddLine(ImVec2(mouse.x, a0.y), ImVec2(mouse.x, a1.y), ImGui::GetColorU32(ImGuiCol_Text, 0.35f));
    ImGui::BeginTooltip();
    if (hovered_marker) {
      ImGui::TextColored(kWarningColour, "%.*s", static_cast<int>(hovered_marker->text.size()),
                         hovered_marker->text.data());
      ImGui::Separator();
    }
    ImGui::Text("%s %s", options.x_label ? options.x_label : "x", tick_label(std::round(x)).c_str());
    for (const PlotSeries& s : series) {
      if (!s.in_readout) continue;
      const long i = nearest_index(s, x, log_y);
      if (i < 0) continue;
      const ImVec2 c = ImGui::GetCursorScreenPos();
      ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(c.x, c.y + 3), ImVec2(c.x + 10, c.y + line_h - 3), s.colour);
      ImGui::Dummy(ImVec2(12, line_h));
      ImGui::SameLine();
      ImGui::Text("%.*s: %.4g  (%s %s)", static_cast<int>(s.name.size()), s.name.data(), static_cast<double>(s.y[i]),
                  options.x_label ? options.x_label : "x", tick_label(s.x[i]).c_str());
      const double yv = log_y ? std::log10(static_cast<double>(s.y[i])) : s.y[i];
      dl->AddCircle(ImVec2(ax.to_px(s.x[i]), ay.to_px(yv)), 4, s.colour, 12, 1.5f);
    }
    ImGui::EndTooltip();
  }
  return hovered;
}

}  // namespace vaelab::app
