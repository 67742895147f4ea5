// Tests of vaelab-train's loading progress (app/train/load_progress_line.hpp): the text of a report
// and when one is due. Not the loaders' counting: test_image_folder checks that.
#include <doctest/doctest.h>

#include "app/train/load_progress_line.hpp"

using namespace vaelab;

TEST_CASE("load progress: a plain line gives images done of total, the rate and the time left") {
  CHECK(format_load_progress(1200, 5000, 1.5, false) == "loading: 1200 of 5000 images, 800 images/s, about 5 s left");
  CHECK(format_load_progress(1000, 100000, 10.0, false) ==
        "loading: 1000 of 100000 images, 100 images/s, about 16 min left");
  CHECK(format_load_progress(0, 5000, 2.0, false) == "loading: 0 of 5000 images, 0 images/s, time left unknown");
  CHECK(format_load_progress(0, 0, 3.2, false) == "loading: 3 s");
}

TEST_CASE("load progress: the bar fills in proportion to the images done") {
  CHECK(format_load_progress(0, 10, 1.0, true) ==
        "loading [                              ] 0/10 images  0 images/s  time left unknown");
  CHECK(format_load_progress(5, 10, 1.0, true) ==
        "loading [===============               ] 5/10 images  5 images/s  about 1 s left");
  CHECK(format_load_progress(10, 10, 1.0, true) ==
        "loading [==============================] 10/10 images  10 images/s  about 0 s left");
}

TEST_CASE("load progress: time left in seconds, minutes, then hours and minutes") {
  CHECK(time_left_text(59.4) == "about 59 s left");
  CHECK(time_left_text(61) == "about 1 min left");
  CHECK(time_left_text(6180) == "about 1 h 43 min left");
}

TEST_CASE("load progress: a load under a second prints nothing, not even at its end") {
  LoadProgressLine line(false);
  CHECK_FALSE(line.poll(10, 100, 0.1).has_value());
  CHECK_FALSE(line.poll(90, 100, 0.9).has_value());
  CHECK_FALSE(line.finish(100, 0.95).has_value());
}

TEST_CASE("load progress: off a terminal, one line at most every 2 s, then a summary") {
  LoadProgressLine line(false);
  const auto first = line.poll(100, 1000, 1.0);
  REQUIRE(first.has_value());
  CHECK(*first == "loading: 100 of 1000 images, 100 images/s, about 9 s left\n");
  CHECK_FALSE(line.poll(150, 1000, 1.5).has_value());
  CHECK_FALSE(line.poll(290, 1000, 2.9).has_value());
  CHECK(line.poll(300, 1000, 3.0).has_value());
  const auto last = line.finish(1000, 8.0);
  REQUIRE(last.has_value());
  CHECK(*last == "loaded 1000 images in 8.0 s (125 images/s)\n");
}

TEST_CASE("load progress: on a terminal, the bar is redrawn in place and cleared at the end") {
  LoadProgressLine line(true);
  const auto first = line.poll(100, 1000, 1.0);
  REQUIRE(first.has_value());
  CHECK(first->front() == '\r');
  CHECK(first->find('\n') == std::string::npos);
  CHECK(first->find("100/1000 images") != std::string::npos);
  CHECK_FALSE(line.poll(105, 1000, 1.05).has_value());
  CHECK(line.poll(120, 1000, 1.2).has_value());
  const auto last = line.finish(1000, 4.0);
  REQUIRE(last.has_value());
  CHECK(last->rfind("\r", 0) == 0);
  CHECK(last->find("loaded 1000 images in 4.0 s (250 images/s)\n") != std::string::npos);
}
