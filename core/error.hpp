// vaelab::Error: the one exception type core throws at its edges (files, user input).
// Its message is meant for a user: what went wrong, with which file, and what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace vaelab {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace vaelab
