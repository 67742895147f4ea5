// Unit tests for core/panel_layout: panels kept as fractions of the work area reopen scaled at
// another window size, inside it and at least their minimum size. Pure geometry; no window.
#include <doctest/doctest.h>

#include <vector>

#include "core/panel_layout.hpp"

using namespace vaelab;

TEST_CASE("panel_layout: fractions saved at one size reopen scaled at another") {
  const Box small{0, 20, 1280, 780}, large{0, 20, 1920, 1060};
  const Box panel{320, 20, 512, 452};
  const Box f = to_fractions(panel, small);
  CHECK(f.x == doctest::Approx(0.25));
  CHECK(f.w == doctest::Approx(0.4));
  const Box big = from_fractions(f, large, 100, 100);
  CHECK(big.x == 480);
  CHECK(big.y == 20);
  CHECK(big.w == 768);
  CHECK(big.h == doctest::Approx(452.0 / 780 * 1060).epsilon(0.01));
}

TEST_CASE("panel_layout: neighbours share their edges after rounding") {
  const Box area{0, 19, 1023, 621};
  const Box left = from_fractions({0, 0, 0.25f, 0.6f}, area, 0, 0);
  const Box middle = from_fractions({0.25f, 0, 0.4f, 0.6f}, area, 0, 0);
  const Box below = from_fractions({0, 0.6f, 0.25f, 0.4f}, area, 0, 0);
  CHECK(left.x + left.w == middle.x);
  CHECK(left.y + left.h == below.y);
  CHECK(below.y + below.h == area.y + area.h);
}

TEST_CASE("panel_layout: a panel is grown to its minimum and kept inside the area") {
  const Box area{0, 20, 1024, 620};
  const Box tiny = from_fractions({0.9f, 0.9f, 0.05f, 0.05f}, area, 200, 120);
  CHECK(tiny.w == 200);
  CHECK(tiny.h == 120);
  CHECK(tiny.x + tiny.w <= area.x + area.w);
  CHECK(tiny.y + tiny.h <= area.y + area.h);
  // A minimum larger than the area: the whole area, no more.
  CHECK(from_fractions({0.5f, 0.5f, 0.1f, 0.1f}, area, 5000, 5000) == area);
  // A panel dragged half out of the window is stored as if inside it.
  const Box f = to_fractions({900, -50, 300, 200}, area);
  CHECK(f.x + f.w == doctest::Approx(1.0));
  CHECK(f.y == 0);
}

TEST_CASE("panel_layout: covered share of the area counts overlaps once and ignores what lies outside") {
  const Box area{0, 0, 100, 100};
  const std::vector<Box> halves{{0, 0, 50, 100}, {50, 0, 50, 100}};
  CHECK(covered_fraction(halves, area) == doctest::Approx(1.0));
  const std::vector<Box> overlapping{{0, 0, 60, 60}, {40, 40, 60, 60}};
  CHECK(covered_fraction(overlapping, area) == doctest::Approx((3600.0 * 2 - 400) / 10000));
  const std::vector<Box> outside{{-50, 0, 100, 100}, {200, 200, 10, 10}};
  CHECK(covered_fraction(outside, area) == doctest::Approx(0.5));
  CHECK(covered_fraction({}, area) == 0);
}

TEST_CASE("panel_layout: the settings text round-trips and refuses what is not four fractions") {
  const Box f{0.25f, 0, 0.4f, 0.58f};
  const auto back = parse_fractions(format_fractions(f));
  REQUIRE(back);
  CHECK(back->x == doctest::Approx(0.25));
  CHECK(back->h == doctest::Approx(0.58));
  CHECK(format_fractions(f) == "0.2500,0.0000,0.4000,0.5800");
  for (const char* bad : {"", "0.1,0.2,0.3", "0.1,0.2,0.3,0.4,0.5", "0.1;0.2;0.3;0.4", "a,b,c,d", "0.9,0,0.5,0.5",
                          "0,0,0,0.5", "-0.1,0,0.5,0.5", "nan,0,0.5,0.5", "0.1,0.2,0.3,0.4 "})
    CHECK_MESSAGE(!parse_fractions(bad), bad);
}
