// Command-line parsing for vaelab-train: flag names, defaults and validation messages.
// Not the trainer: it only turns argv into settings (and errors a user can act on).
#pragma once
#include <optional>
#include <variant>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace vaelab {

struct TrainArgs {
  std::string data;  // empty: the Debian Fashion-MNIST folder
  ModelConfig model;
  TrainConfig train;
  int epochs = 10;
  int iwae_k = 0;
  bool json = false;
  std::string save, load, export_safetensors, import_safetensors;
  int train_limit = 0;  // train on the first N images (quick runs)
  int eval_limit = 0;   // evaluate on the first N test images
  int bench_steps = 0;  // > 0: time this many training steps and print throughput
  bool help = false;
};

struct ArgError {
  std::string message;
};

// Parses argv (without argv[0]). Returns the settings or the first error.
std::variant<TrainArgs, ArgError> parse_train_args(const std::vector<std::string>& args);
const char* train_usage();

}  // namespace vaelab
