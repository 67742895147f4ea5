// vaelab-train's JSON lines: one number as JSON writes it. Not a JSON library: the lines are
// assembled by the code that prints them.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>

namespace vaelab {

// "%.6g", and null for NaN and ±Inf, which JSON cannot hold.
inline std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace vaelab
