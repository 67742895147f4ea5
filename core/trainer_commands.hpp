// The requests the UI (or any thread) sends the trainer: one small type per command, and the queue
// that carries them to the trainer thread along with the stop request. Not what the commands do:
// Trainer::Impl's handlers in trainer_commands.cpp apply them between steps.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/data.hpp"

namespace vaelab {

namespace command {
struct Pause {};
struct Resume {};
struct Step {};  // one step, then stay paused
struct Reset {};
struct SetLr { float lr; };
struct SetBeta { float beta; };
struct SetWarmup { int steps; };
struct SetEstimator { Estimator estimator; };
struct SetIwae { int k, points; };
struct SetMeasureEstimators { bool on; };
struct MeasureEstimatorsNow {};
struct Rebuild { ModelConfig model; TrainConfig train; };
struct SetData { std::shared_ptr<const Dataset> data; };
struct Save { std::filesystem::path file; };
struct Load { std::filesystem::path file; };
struct ExportSafetensors { std::filesystem::path file; };
struct ImportSafetensors { std::filesystem::path file; };
struct Follow { std::filesystem::path folder; };
struct ContinueHere {};
}  // namespace command

using Command = std::variant<command::Pause, command::Resume, command::Step, command::Reset, command::SetLr,
                             command::SetBeta, command::SetWarmup, command::SetEstimator, command::SetIwae,
                             command::SetMeasureEstimators, command::MeasureEstimatorsNow, command::Rebuild,
                             command::SetData, command::Save, command::Load, command::ExportSafetensors,
                             command::ImportSafetensors, command::Follow, command::ContinueHere>;

// Commands posted by any thread and taken by the trainer thread, in order; also the stop request.
class CommandQueue {
 public:
  void post(Command c);
  void request_stop();
  bool stop_requested() const { return stop_.load(std::memory_order_relaxed); }

  // Trainer thread: moves everything posted so far to the end of `into`.
  void take_all(std::deque<Command>& into);
  // Trainer thread: returns when a command is posted, a stop is requested, or `timeout` has passed.
  void wait(std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> posted_;
  std::atomic<bool> stop_{false};
};

}  // namespace vaelab
