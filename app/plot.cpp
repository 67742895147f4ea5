// The plot widget: ranges and ticks from core/view_math, per-column min/max decimation so a
// 100,000-point curve costs a few hundred vertices, markers and the hover read-out.
// Not stateful: everything is recomputed from the series every frame.
#include "app/plot.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
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

namespace {

// Where one plot draws and how it maps values: the widget (p0–p1), its axes' area (a0–a1).
struct PlotFrame {
  ImDrawList* dl = nullptr;
  ImVec2 p0, p1, a0, a1;
  Axis ax, ay;
  bool log_y = false;
  bool x_counts = false;
  float line_h = 0;
  ImU32 text_col = 0, dim_col = 0;
};

// The y range of the series' middle 98 % (percentiles over a subsample of at most ~4000 values
// per series), or `yr` when there are too few points.
Range robust_y_range(std::span<const PlotSeries> series, bool log_y, Range yr) {
  std::vector<float> ys;
  for (const PlotSeries& s : series) {
    const std::size_t step = std::max<std::size_t>(1, s.n / 4000);
    for (std::size_t i = 0; i < s.n; i += step)
      if (usable(s.x[i], s.y[i], log_y)) ys.push_back(s.y[i]);
  }
  if (ys.size() < 20) return yr;
  const std::size_t lo = ys.size() / 100, hi = ys.size() - 1 - ys.size() / 100;
  std::nth_element(ys.begin(), ys.begin() + static_cast<long>(lo), ys.end());
  const float qlo = ys[lo];
  std::nth_element(ys.begin(), ys.begin() + static_cast<long>(hi), ys.end());
  const float qhi = ys[hi];
  return qhi > qlo ? Range{qlo, qhi, true} : yr;
}

// The ranges of both axes over the finite values of every series, in axis units and padded;
// invalid when there is nothing to draw.
std::pair<Range, Range> data_ranges(std::span<const PlotSeries> series, const PlotOptions& options) {
  const bool log_y = options.log_y;
  Range xr, yr;
  for (const PlotSeries& s : series) {
    if (s.n == 0) continue;
    xr = merge(xr, finite_range(s.x, s.n));
    yr = merge(yr, finite_range(s.y, s.n, log_y));
  }
  if (!xr.valid || !yr.valid) return {xr, yr};
  if (options.robust_y) yr = robust_y_range(series, log_y, yr);
  if (log_y) yr = Range{std::log10(yr.lo), std::log10(yr.hi), true};
  yr = padded(yr, 0.06);
  if (xr.hi <= xr.lo) xr = padded(xr, 0.05);
  return {xr, yr};
}

// Y tick positions (axis units) for a range in axis units: decades on a log axis when there are
// two or more, else nice values.
std::vector<double> y_ticks(Range yr, bool log_y, int max_ticks) {
  if (!log_y) return nice_ticks(yr.lo, yr.hi, max_ticks);
  std::vector<double> ticks;
  for (double t : log_ticks(std::pow(10.0, yr.lo), std::pow(10.0, yr.hi))) ticks.push_back(std::log10(t));
  if (ticks.size() >= 2) return ticks;
  ticks.clear();
  for (double t : nice_ticks(std::pow(10.0, yr.lo), std::pow(10.0, yr.hi), max_ticks))
    if (t > 0) ticks.push_back(std::log10(t));
  return ticks;
}

void draw_grid(const PlotFrame& f, const std::vector<double>& yticks, const std::vector<std::string>& ylabels) {
  const ImU32 grid_col = ImGui::GetColorU32(ImGuiCol_Border, 0.45f);
  for (std::size_t i = 0; i < yticks.size(); ++i) {
    const float y = f.ay.to_px(yticks[i]);
    if (y < f.a0.y - 0.5f || y > f.a1.y + 0.5f) continue;
    f.dl->AddLine(ImVec2(f.a0.x, y), ImVec2(f.a1.x, y), grid_col);
    const ImVec2 ts = ImGui::CalcTextSize(ylabels[i].c_str());
    f.dl->AddText(ImVec2(f.a0.x - 6 - ts.x, y - ts.y * 0.5f), f.dim_col, ylabels[i].c_str());
  }
  const int max_xticks = std::clamp(static_cast<int>((f.a1.x - f.a0.x) / 80.0f), 2, 10);
  const std::vector<double> xticks = f.x_counts ? integer_ticks(f.ax.lo, f.ax.hi, max_xticks) : nice_ticks(f.ax.lo, f.ax.hi, max_xticks);
  for (double t : xticks) {
    const float x = f.ax.to_px(t);
    if (x < f.a0.x - 0.5f || x > f.a1.x + 0.5f) continue;
    f.dl->AddLine(ImVec2(x, f.a0.y), ImVec2(x, f.a1.y), grid_col);
    const std::string label = f.x_counts ? count_label(t) : tick_label(t);
    const ImVec2 ts = ImGui::CalcTextSize(label.c_str());
    const float lx = std::clamp(x - ts.x * 0.5f, f.p0.x + 2, f.p1.x - ts.x - 2);
    f.dl->AddText(ImVec2(lx, f.a1.y + 3), f.dim_col, label.c_str());
  }
  f.dl->AddRect(f.a0, f.a1, ImGui::GetColorU32(ImGuiCol_Border));
}

// The markers as dashed lines (the one under the mouse brighter, and returned) and the series,
// clipped to the axes' area.
const PlotMarker* draw_contents(const PlotFrame& f, std::span<const PlotSeries> series, std::span<const PlotMarker> markers,
                                bool in_area, ImVec2 mouse) {
  ImDrawList* dl = f.dl;
  dl->PushClipRect(f.a0, f.a1, true);
  const PlotMarker* hovered_marker = nullptr;
  for (const PlotMarker& m : markers) {
    if (m.x < f.ax.lo || m.x > f.ax.hi) continue;
    const float x = f.ax.to_px(m.x);
    const bool near = in_area && std::fabs(mouse.x - x) <= 4;
    const ImU32 c = near ? IM_COL32(255, 200, 80, 255) : IM_COL32(230, 170, 60, 170);
    dashed_vline(dl, x, f.a0.y, f.a1.y, c);
    dl->AddTriangleFilled(ImVec2(x - 4, f.a0.y), ImVec2(x + 4, f.a0.y), ImVec2(x, f.a0.y + 6), c);
    if (near) hovered_marker = &m;
  }
  for (const PlotSeries& s : series) {
    // Thin lines need no anti-aliasing fringe: a third of the triangles (software GL pays per triangle).
    const ImDrawListFlags flags = dl->Flags;
    if (s.thickness <= 1.0f) dl->Flags &= ~ImDrawListFlags_AntiAliasedLines;
    draw_series(dl, s, f.ax, f.ay, f.log_y);
    dl->Flags = flags;
  }
  dl->PopClipRect();
  return hovered_marker;
}

float label_width(const PlotSeries& s) { return ImGui::CalcTextSize(s.label().data(), s.label().data() + s.label().size()).x; }

// The legend in the title line, right-aligned, when it fits there. Returns whether it did.
bool legend_in_title(const PlotFrame& f, std::span<const PlotSeries> series, const char* title) {
  float total = 0;
  for (const PlotSeries& s : series)
    if (s.in_legend) total += 22 + label_width(s) + 10;
  const float title_w = ImGui::CalcTextSize(title).x;
  if (total <= 0 || f.p0.x + 6 + title_w + 16 + total > f.p1.x - 4) return false;
  float x = f.p1.x - 4 - total;
  const float y = f.p0.y + 2, mid = y + f.line_h * 0.5f;
  for (const PlotSeries& s : series) {
    if (!s.in_legend) continue;
    f.dl->AddLine(ImVec2(x, mid), ImVec2(x + 16, mid), s.colour, 2.5f);
    if (s.dots) f.dl->AddCircleFilled(ImVec2(x + 8, mid), 3.0f, s.colour);
    f.dl->AddText(ImVec2(x + 20, y), f.text_col, s.label().data(), s.label().data() + s.label().size());
    x += 22 + label_width(s) + 10;
  }
  return true;
}

// The legend as a box in the top-right corner of the axes (the bottom-right under the mouse),
// faded while the mouse is over the axes so the curves under it show through.
void legend_box(const PlotFrame& f, std::span<const PlotSeries> series, bool in_area, ImVec2 mouse) {
  float w = 0;
  int rows = 0;
  for (const PlotSeries& s : series)
    if (s.in_legend) {
      w = std::max(w, label_width(s));
      ++rows;
    }
  if (rows == 0) return;
  const float bw = w + 30, bh = rows * f.line_h + 6;
  ImVec2 l0(f.a1.x - bw - 4, f.a0.y + 4);
  if (in_area && mouse.x >= l0.x && mouse.y <= l0.y + bh) l0.y = f.a1.y - bh - 4;
  const float alpha = in_area ? 0.4f : 1.0f;
  f.dl->AddRectFilled(l0, ImVec2(l0.x + bw, l0.y + bh), ImGui::GetColorU32(ImGuiCol_PopupBg, 0.85f * alpha), 3);
  const ImU32 text = ImGui::GetColorU32(ImGuiCol_Text, alpha);
  float y = l0.y + 3;
  for (const PlotSeries& s : series) {
    if (!s.in_legend) continue;
    ImVec4 line = ImGui::ColorConvertU32ToFloat4(s.colour);
    line.w *= alpha;
    f.dl->AddLine(ImVec2(l0.x + 5, y + f.line_h * 0.5f), ImVec2(l0.x + 21, y + f.line_h * 0.5f), ImGui::GetColorU32(line), 2.5f);
    f.dl->AddText(ImVec2(l0.x + 25, y), text, s.label().data(), s.label().data() + s.label().size());
    y += f.line_h;
  }
}

// A vertical line at the mouse and a tooltip with the hovered marker's text and every series'
// nearest value (each circled on the plot).
void hover_readout(const PlotFrame& f, std::span<const PlotSeries> series, const PlotOptions& options,
                   const PlotMarker* hovered_marker, ImVec2 mouse) {
  const double x = f.ax.from_px(mouse.x);
  f.dl->AddLine(ImVec2(mouse.x, f.a0.y), ImVec2(mouse.x, f.a1.y), ImGui::GetColorU32(ImGuiCol_Text, 0.35f));
  ImGui::BeginTooltip();
  if (hovered_marker) {
    ImGui::TextColored(kWarningColour, "%.*s", static_cast<int>(hovered_marker->text.size()), hovered_marker->text.data());
    ImGui::Separator();
  }
  const char* x_label = options.x_label ? options.x_label : "x";
  auto x_text = [&](double v) { return options.x_counts ? count_label(v) : tick_label(v); };
  ImGui::Text("%s %s", x_label, x_text(std::round(x)).c_str());
  for (const PlotSeries& s : series) {
    if (!s.in_readout) continue;
    const long i = nearest_index(s, x, f.log_y);
    if (i < 0) continue;
    const ImVec2 c = ImGui::GetCursorScreenPos();
    ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(c.x, c.y + 3), ImVec2(c.x + 10, c.y + f.line_h - 3), s.colour);
    ImGui::Dummy(ImVec2(12, f.line_h));
    ImGui::SameLine();
    ImGui::Text("%.*s: %.4g  (%s %s)", static_cast<int>(s.name.size()), s.name.data(), static_cast<double>(s.y[i]), x_label,
                x_text(s.x[i]).c_str());
    const double yv = f.log_y ? std::log10(static_cast<double>(s.y[i])) : s.y[i];
    f.dl->AddCircle(ImVec2(f.ax.to_px(s.x[i]), f.ay.to_px(yv)), 4, s.colour, 12, 1.5f);
  }
  ImGui::EndTooltip();
}

}  // namespace

bool plot(const char* id, ImVec2 size, const PlotOptions& options, std::span<const PlotSeries> series,
          std::span<const PlotMarker> markers) {
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  if (size.x <= 0) size.x = std::max(avail.x, 50.0f);
  if (size.y <= 0) size.y = std::max(avail.y, 50.0f);
  PlotFrame f;
  f.p0 = ImGui::GetCursorScreenPos();
  ImGui::InvisibleButton(id, size);
  const bool hovered = ImGui::IsItemHovered();
  f.p1 = ImVec2(f.p0.x + size.x, f.p0.y + size.y);
  f.dl = ImGui::GetWindowDrawList();
  f.text_col = ImGui::GetColorU32(ImGuiCol_Text);
  f.dim_col = ImGui::GetColorU32(ImGuiCol_TextDisabled);
  f.line_h = ImGui::GetTextLineHeight();
  f.log_y = options.log_y;
  f.x_counts = options.x_counts;
  f.dl->AddRectFilled(f.p0, f.p1, ImGui::GetColorU32(ImGuiCol_FrameBg), ImGui::GetStyle().FrameRounding);

  const auto [xr, yr] = data_ranges(series, options);
  const float title_h = options.title ? f.line_h + 4 : 4;
  if (options.title) f.dl->AddText(ImVec2(f.p0.x + 6, f.p0.y + 2), f.text_col, options.title);
  if (!xr.valid || !yr.valid) {
    const char* msg = f.log_y ? "no positive values yet" : "no data yet";
    const ImVec2 ts = ImGui::CalcTextSize(msg);
    f.dl->AddText(ImVec2((f.p0.x + f.p1.x - ts.x) * 0.5f, (f.p0.y + f.p1.y - ts.y) * 0.5f), f.dim_col, msg);
    return hovered;
  }

  // The y ticks' labels decide the left margin.
  const int max_yticks = std::clamp(static_cast<int>((size.y - title_h) / (f.line_h * 2.2f)), 2, 8);
  const std::vector<double> yticks = y_ticks(yr, f.log_y, max_yticks);
  std::vector<std::string> ylabels;
  float label_w = 0;
  for (double t : yticks) {
    ylabels.push_back(tick_label(f.log_y ? std::pow(10.0, t) : t));
    label_w = std::max(label_w, ImGui::CalcTextSize(ylabels.back().c_str()).x);
  }
  f.a0 = ImVec2(f.p0.x + label_w + 10, f.p0.y + title_h);
  f.a1 = ImVec2(f.p1.x - 8, f.p1.y - f.line_h - 6);
  if (f.a1.x - f.a0.x < 20 || f.a1.y - f.a0.y < 20) return hovered;
  f.ay = Axis{yr.lo, yr.hi, f.a1.y, f.a0.y};
  f.ax = Axis{xr.lo, xr.hi, f.a0.x, f.a1.x};
  draw_grid(f, yticks, ylabels);

  const ImVec2 mouse = ImGui::GetIO().MousePos;
  const bool in_area = hovered && mouse.x >= f.a0.x && mouse.x <= f.a1.x && mouse.y >= f.a0.y && mouse.y <= f.a1.y;
  const PlotMarker* hovered_marker = draw_contents(f, series, markers, in_area, mouse);
  if (options.legend && !(options.title && legend_in_title(f, series, options.title))) legend_box(f, series, in_area, mouse);
  if (in_area) hover_readout(f, series, options, hovered_marker, mouse);
  return hovered;
}

}  // namespace vaelab::app
