// vaelab-train's loading progress on stderr: what to print, and when, while load_dataset runs on
// another thread. Not the clock or the printing: the caller passes the seconds since the load
// began and writes the text it is given, so the rules here can be tested without waiting.
#pragma once
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

namespace vaelab {

// "about 40 s left", "about 3 min left", "about 1 h 43 min left".
inline std::string time_left_text(double seconds) {
  const long s = std::lround(seconds);
  if (s < 60) return "about " + std::to_string(s) + " s left";
  if (s < 3600) return "about " + std::to_string(s / 60) + " min left";
  return "about " + std::to_string(s / 3600) + " h " + std::to_string(s % 3600 / 60) + " min left";
}

// One report of a load that has decoded `done` of `total` images in `seconds`. On a terminal
// (`bar`) a line to redraw in place: "loading [=====     ] 1200/5000 images  800 images/s  about
// 5 s left"; otherwise "loading: 1200 of 5000 images, 800 images/s, about 5 s left". A reader that
// does not count its images (total 0) gets the seconds so far: "loading: 3 s".
inline std::string format_load_progress(long long done, long long total, double seconds, bool bar) {
  char text[160];
  if (total <= 0) {
    std::snprintf(text, sizeof text, "loading: %.0f s", seconds);
    return text;
  }
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  const std::string left = rate > 0 ? time_left_text(static_cast<double>(total - done) / rate) : "time left unknown";
  if (bar) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total);
    std::snprintf(text, sizeof text, "loading [%.*s%*s] %lld/%lld images  %.0f images/s  %s", filled,
                  "==============================", kWidth - filled, "", done, total, rate, left.c_str());
  } else {
    std::snprintf(text, sizeof text, "loading: %lld of %lld images, %.0f images/s, %s", done, total, rate,
                  left.c_str());
  }
  return text;
}

// When to report: nothing during the first second (a quick load stays silent), then on a terminal
// a bar redrawn every 0.1 s, otherwise a plain line at most every 2 s.
class LoadProgressLine {
 public:
  explicit LoadProgressLine(bool tty) : tty_(tty) {}

  // The text to write to stderr now, if any, for a load at `seconds` with `done` of `total`.
  std::optional<std::string> poll(long long done, long long total, double seconds) {
    if (seconds < kQuietSeconds) return std::nullopt;
    const double gap = tty_ ? kBarSeconds : kLineSeconds;
    if (shown_ && seconds - last_ < gap) return std::nullopt;
    shown_ = true;
    last_ = seconds;
    const std::string text = format_load_progress(done, total, seconds, tty_);
    if (!tty_) return text + "\n";
    // Padding clears what a longer previous bar left on the line.
    return "\r" + text + std::string(text.size() < kBarColumns ? kBarColumns - text.size() : 0, ' ');
  }

  // The text to write when the load has ended: after any report, the bar cleared (terminal) and
  // "loaded 5000 images in 6.1 s (820 images/s)"; nothing after a load that stayed silent.
  std::optional<std::string> finish(long long total, double seconds) const {
    if (!shown_) return std::nullopt;
    char text[120];
    if (total > 0)
      std::snprintf(text, sizeof text, "loaded %lld images in %.1f s (%.0f images/s)\n", total, seconds,
                    seconds > 0 ? static_cast<double>(total) / seconds : 0.0);
    else
      std::snprintf(text, sizeof text, "loaded in %.1f s\n", seconds);
    return (tty_ ? "\r" + std::string(kBarColumns, ' ') + "\r" : std::string()) + text;
  }

 private:
  static constexpr double kQuietSeconds = 1.0;
  static constexpr double kBarSeconds = 0.1;
  static constexpr double kLineSeconds = 2.0;
  static constexpr std::size_t kBarColumns = 100;

  bool tty_;
  bool shown_ = false;
  double last_ = 0.0;
};

}  // namespace vaelab
