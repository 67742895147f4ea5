// What the trainer publishes for its listeners: an immutable picture of training at one moment.
// The UI takes a shared_ptr<const Snapshot> once per frame and draws from it without any lock;
// it decodes slider positions itself with the snapshot's model copy, so dragging never waits.
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "core/config.hpp"
#include "core/data.hpp"
#include "core/history.hpp"
#include "core/model.hpp"

namespace vaelab {

enum class TrainerState : std::uint8_t { Paused, Running, Finished };

enum class Severity : std::uint8_t { Info, Warning, Error };

struct LogLine {
  std::uint64_t serial = 0;  // increases by one per line over the trainer's life
  Severity severity = Severity::Info;
  std::string text;
};

// While the trainer follows a run folder another program trains into (Trainer::follow): what a
// status line says about it. The snapshot's model, history, latent codes and KL are the followed
// run's; the local trainer takes no steps meanwhile.
struct FollowStatus {
  std::filesystem::path folder;
  bool folder_present = false;  // false while the folder is missing (not created yet, or deleted)
  bool inotify = false;         // inotify watches the folder; false: stat() polling (or waiting)
  bool has_weights = false;     // a weights file has been shown; until then the local model stays
  std::int64_t step = -1;       // the shown weights' step; −1: none yet, or the file did not say
  double epoch = std::numeric_limits<double>::quiet_NaN();  // their epoch; NaN: unknown
  bool finished = false;        // the run wrote its {"finished": true} line
  // When the run's files last changed (their newest modification time); empty before any file.
  std::optional<std::chrono::system_clock::time_point> last_change;
  std::string last_problem;     // the latest problem reported (also in the log); empty: none

  // Seconds from the last change to `now`, never negative; empty before any file was seen.
  std::optional<double> seconds_since_change(
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const {
    if (!last_change) return std::nullopt;
    const double s = std::chrono::duration<double>(now - *last_change).count();
    return s > 0 ? s : 0.0;
  }
};

struct Snapshot {
  std::uint64_t version = 0;  // increases with every publish
  TrainerState state = TrainerState::Paused;
  std::int64_t step = 0;      // optimiser steps taken
  int epoch = 0;              // completed epochs
  int batch_in_epoch = 0;
  int batches_per_epoch = 0;
  double samples_per_s = 0;   // recent training throughput
  float effective_beta = 1;   // β after warm-up

  ModelConfig model_config;
  TrainConfig train_config;   // with the current lr, β and warm-up

  History history;
  std::vector<double> kl_per_dim;  // running mean over recent training batches, nats

  std::shared_ptr<const Model> model;     // parameters at `step` (encode/decode are const)
  std::shared_ptr<const Dataset> data;    // the data being trained on

  // Encoded means of a fixed display subset of the test set (for the latent map).
  std::vector<int> display_indices;       // indices into data->test
  Eigen::MatrixXf latent_mu;              // (d, display_indices.size())
  std::int64_t latent_step = -1;          // step the codes were computed at; −1: none yet

  std::vector<LogLine> log;               // the most recent lines (bounded)

  std::optional<FollowStatus> follow;     // set while following a run folder
};

}  // namespace vaelab
