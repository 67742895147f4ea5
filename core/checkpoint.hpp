// Checkpoints: one versioned binary file with the model config, all parameters, Adam state, RNG
// state, progress and history, guarded by a CRC-32. Saved with write_file_atomically, so a crash
// mid-save leaves the old file intact. Not an export format (see safetensors.hpp for that).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/adam.hpp"
#include "core/config.hpp"
#include "core/history.hpp"
#include "core/regular_file.hpp"
#include "core/rng.hpp"

namespace vaelab {

// Version 2 adds the image channels (image_c); version 1 files, all grey, still load with C = 1.
inline constexpr std::uint32_t kCheckpointVersion = 2;
inline constexpr std::uint32_t kOldestCheckpointVersion = 1;

struct TrainingState {
  ModelConfig model;
  TrainConfig train;
  std::vector<float> params;
  Adam adam;
  Rng::State rng;
  std::int64_t step = 0;
  int epoch = 0;
  int batch_in_epoch = 0;
  std::vector<std::int32_t> order;  // the current epoch's shuffled order of training examples
  History history;
  std::string data_name;            // the data set it was trained on, for messages
};

// Throws vaelab::Error (the target is untouched when anything fails).
void save_checkpoint(const std::filesystem::path& file, const TrainingState& state);
// The bytes save_checkpoint writes, after the same checks (`name` names the target in messages).
std::vector<std::uint8_t> encode_checkpoint(const TrainingState& state, const std::string& name);
// Throws vaelab::Error saying what is wrong: missing, not a regular file, not a vaelab checkpoint,
// newer version, truncated, checksum mismatch, inconsistent sizes; or reading was cancelled.
TrainingState load_checkpoint(const std::filesystem::path& file, const CancelFlag* cancel = nullptr);
// The same checks on bytes already in memory (load_checkpoint reads the file, then calls this);
// `name` starts every message (the file's path, or e.g. "<memory>"). Throws vaelab::Error.
TrainingState parse_checkpoint(const std::uint8_t* bytes, std::size_t size, const std::string& name);

// The model and training settings at the head of a checkpoint, read before the rest of the file
// (its checksum unchecked): what a memory check needs before the whole file is read and the model
// built. nullopt when the head cannot be read or its settings do not validate: load_checkpoint
// then says what is wrong. Never throws.
struct CheckpointSettings {
  ModelConfig model;
  TrainConfig train;
};
std::optional<CheckpointSettings> read_checkpoint_settings(const std::filesystem::path& file);

}  // namespace vaelab
