// Panel placement relative to the window: a panel's rectangle kept as fractions of the work area
// (the window below the menu bar), so a layout saved at one size reopens scaled at another and
// every panel stays inside the window and at least its minimum size.
// Pure geometry, UI-free: not the default arrangement of the panels (app/app.cpp) nor ImGui.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace vaelab {

struct Box {
  float x = 0, y = 0, w = 0, h = 0;
  bool operator==(const Box&) const = default;
};

// `px` moved and shrunk into `area` (a panel larger than the area takes all of it).
Box fit_inside(Box px, const Box& area);
// A rectangle in pixels as fractions of `area`, after fitting it inside the area.
Box to_fractions(const Box& px, const Box& area);
// Fractions of `area` back to whole pixels: edges rounded so neighbouring panels share them, then
// grown to min_w × min_h where the area allows, and kept inside.
Box from_fractions(const Box& fractions, const Box& area, float min_w, float min_h);
// The share of `area` covered by the union of `boxes` (overlaps counted once), in [0, 1].
double covered_fraction(std::span<const Box> boxes, const Box& area);
// "x,y,w,h" with four decimals, and back: nullopt unless four finite numbers with w, h > 0 and the
// box within [0, 1] (as the settings file stores fractions).
std::string format_fractions(const Box& fractions);
std::optional<Box> parse_fractions(std::string_view text);

}  // namespace vaelab
