// How much memory training a configuration needs, worked out from the settings before anything
// is allocated, and how much the machine has to give. Settings inside their documented ranges can
// ask for far more memory than a machine has (8 hidden layers of 8192, a batch of 65,536 with 1,000
// samples); the trainer is told no with the figure and the setting to change instead of dying of
// std::bad_alloc. Not a measurement: an estimate of the trainer's large buffers, within 25 % of the
// measured peak for the configurations tests/reliability checks.
#pragma once
#include <cstdint>
#include <string>

#include "core/config.hpp"

namespace vaelab {

struct Dataset;

struct MemoryEstimate {
  std::uint64_t parameters = 0;  // the model, its gradient(s), Adam's moments and the trainer's copies
  std::uint64_t workspaces = 0;  // one step's activations, their gradients and packed operands
  std::uint64_t data = 0;        // the images and labels, and the trainer's binarized copies
  std::uint64_t process = 0;     // code, libraries, threads' stacks, evaluation batches
  std::uint64_t total() const { return parameters + workspaces + data + process; }
};

// The parameter count of Model(m) without its alignment padding, computed without allocating
// (m must have passed validate()).
std::uint64_t parameter_count(const ModelConfig& m);

// The data set's bytes as the trainer holds them (train.binarize decides the copies).
std::uint64_t dataset_bytes(const Dataset& data, const TrainConfig& train);

// For training m with t (t.threads resolved, ≥ 1) on `data_bytes` of data (dataset_bytes).
MemoryEstimate estimate_training_memory(const ModelConfig& m, const TrainConfig& t, std::uint64_t data_bytes);

// Bytes this process may still use: the kernel's MemAvailable, lowered by a cgroup's memory limit
// and by an address-space limit (ulimit -v) when there are such. UINT64_MAX when unknown.
std::uint64_t available_memory();

// Throws vaelab::Error when the estimate exceeds `available`: the figures, what takes most, and
// the setting that shrinks it.
void check_training_memory(const MemoryEstimate& need, std::uint64_t available);

// "812 MB", "19.4 GB" (decimal units, as free(1) -h and file managers show them).
std::string format_bytes(std::uint64_t bytes);

}  // namespace vaelab
