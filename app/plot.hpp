// A small line-plot widget on ImGui draw lists: axes with "nice" ticks and labels (view_math),
// auto-range over the finite values, linear or log y, vertical markers with hover text, a legend
// and a hover read-out of every series at the mouse's x. Long series are decimated per pixel column.
// Not a plotting library: no zoom, no pan, x must be ascending.
#pragma once
#include <imgui.h>

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace vaelab::app {

struct PlotSeries {
  std::string_view name;
  const float* x = nullptr;  // ascending
  const float* y = nullptr;  // NaN / ±inf are gaps (and ignored by the auto-range)
  std::size_t n = 0;
  ImU32 colour = IM_COL32(255, 255, 255, 255);
  float thickness = 1.5f;
  bool dots = false;         // mark every point (sparse series, e.g. one value per epoch)
  bool in_legend = true;
  bool in_readout = true;
  std::string_view legend_name = {};  // shorter name for the legend (default: name)
  std::string_view label() const { return legend_name.empty() ? name : legend_name; }
};

struct PlotMarker {
  double x = 0;
  std::string_view text;
};

struct PlotOptions {
  const char* title = nullptr;    // top-left, inside the frame
  const char* x_label = nullptr;  // the hover read-out's name for x, e.g. "step"
  bool log_y = false;             // log10 axis; values ≤ 0 are left out
  bool legend = true;
  bool robust_y = false;          // y range from the 1st–99th percentile (ignores early spikes)
  bool x_counts = true;           // x counts steps or epochs: whole-number ticks labelled 12,500 / 10k
};

// Reduce a long series (x ascending) to at most about max_points by keeping, per bucket of
// consecutive points, the lowest and the highest (in order); non-finite values become one NaN
// per bucket so gaps survive. Short series are copied.
void decimate_min_max(const std::vector<float>& x, const std::vector<float>& y, std::size_t max_points,
                      std::vector<float>& out_x, std::vector<float>& out_y);

// Draws into a region of `size` (≤ 0 components: the available width / height). Returns whether
// the plot is hovered.
bool plot(const char* id, ImVec2 size, const PlotOptions& options, std::span<const PlotSeries> series,
          std::span<const PlotMarker> markers = {});

}  // namespace vaelab::app
