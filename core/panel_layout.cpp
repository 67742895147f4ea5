// Panel placement as fractions of the work area (see panel_layout.hpp): fitting, converting both
// ways, the covered share of the area, and the settings file's text form.
// Not the choice of where each panel goes by default (app/app.cpp).
#include "core/panel_layout.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <vector>

namespace vaelab {

Box fit_inside(Box px, const Box& area) {
  px.w = std::clamp(px.w, 0.0f, area.w);
  px.h = std::clamp(px.h, 0.0f, area.h);
  px.x = std::clamp(px.x, area.x, area.x + area.w - px.w);
  px.y = std::clamp(px.y, area.y, area.y + area.h - px.h);
  return px;
}

Box to_fractions(const Box& px, const Box& area) {
  if (area.w <= 0 || area.h <= 0) return {};
  const Box in = fit_inside(px, area);
  return {(in.x - area.x) / area.w, (in.y - area.y) / area.h, in.w / area.w, in.h / area.h};
}

Box from_fractions(const Box& f, const Box& area, float min_w, float min_h) {
  const float left = std::round(area.x + f.x * area.w), right = std::round(area.x + (f.x + f.w) * area.w);
  const float top = std::round(area.y + f.y * area.h), bottom = std::round(area.y + (f.y + f.h) * area.h);
  Box px{left, top, std::max(right - left, min_w), std::max(bottom - top, min_h)};
  return fit_inside(px, area);
}

double covered_fraction(std::span<const Box> boxes, const Box& area) {
  if (area.w <= 0 || area.h <= 0) return 0;
  // Coordinate compression: the clipped boxes' edges cut the area into cells, each either covered
  // or not.
  std::vector<float> xs{area.x, area.x + area.w}, ys{area.y, area.y + area.h};
  std::vector<Box> clipped;
  for (const Box& b : boxes) {
    const float x0 = std::max(b.x, area.x), x1 = std::min(b.x + b.w, area.x + area.w);
    const float y0 = std::max(b.y, area.y), y1 = std::min(b.y + b.h, area.y + area.h);
    if (x1 <= x0 || y1 <= y0) continue;
    clipped.push_back({x0, y0, x1 - x0, y1 - y0});
    xs.insert(xs.end(), {x0, x1});
    ys.insert(ys.end(), {y0, y1});
  }
  for (auto* v : {&xs, &ys}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
  double covered = 0;
  for (std::size_t i = 0; i + 1 < xs.size(); ++i)
    for (std::size_t j = 0; j + 1 < ys.size(); ++j) {
      const float cx = (xs[i] + xs[i + 1]) / 2, cy = (ys[j] + ys[j + 1]) / 2;
      const bool in = std::any_of(clipped.begin(), clipped.end(), [&](const Box& b) {
        return cx > b.x && cx < b.x + b.w && cy > b.y && cy < b.y + b.h;
      });
      if (in) covered += static_cast<double>(xs[i + 1] - xs[i]) * (ys[j + 1] - ys[j]);
    }
  return covered / (static_cast<double>(area.w) * area.h);
}

std::string format_fractions(const Box& f) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%.4f,%.4f,%.4f,%.4f", static_cast<double>(f.x), static_cast<double>(f.y),
                static_cast<double>(f.w), static_cast<double>(f.h));
  return buf;
}

std::optional<Box> parse_fractions(std::string_view text) {
  float v[4];
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 4; ++i) {
    const auto [next, ec] = std::from_chars(p, end, v[i]);
    if (ec != std::errc() || !std::isfinite(v[i])) return std::nullopt;
    p = next;
    if (i < 3) {
      if (p == end || *p != ',') return std::nullopt;
      ++p;
    }
  }
  if (p != end) return std::nullopt;
  const Box f{v[0], v[1], v[2], v[3]};
  constexpr float kSlack = 1e-3f;  // four decimals of a box that ends at the edge may add up to 1.0001
  if (f.x < 0 || f.y < 0 || f.w <= 0 || f.h <= 0 || f.x + f.w > 1 + kSlack || f.y + f.h > 1 + kSlack) return std::nullopt;
  return f;
}

}  // namespace vaelab
