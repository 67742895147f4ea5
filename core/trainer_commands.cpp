// Commands from the UI: the queue they arrive through, and how the trainer thread applies each one
// between steps. Not the command types (trainer_commands.hpp) nor what the *_now helpers load or
// save (trainer_run_state.cpp).
#include "core/trainer_commands.hpp"

#include <exception>

#include "core/error.hpp"
#include "core/safetensors.hpp"
#include "core/trainer_impl.hpp"

namespace vaelab {

void CommandQueue::post(Command c) {
  {
    std::lock_guard lock(mu_);
    posted_.push_back(std::move(c));
  }
  cv_.notify_all();
}

void CommandQueue::request_stop() {
  stop_.store(true);
  cv_.notify_all();
}

void CommandQueue::take_all(std::deque<Command>& into) {
  std::lock_guard lock(mu_);
  for (Command& c : posted_) into.push_back(std::move(c));
  posted_.clear();
}

void CommandQueue::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !posted_.empty() || stop_requested(); });
}

// Commands apply in the order given: after a Step, later commands wait until it has run. A command
// that fails says why in the log and changes nothing else.
void Trainer::Impl::drain_commands() {
  commands.take_all(backlog);
  while (!backlog.empty() && pending_steps == 0) {
    Command c = std::move(backlog.front());
    backlog.pop_front();
    try {
      std::visit([this](auto& cmd) { handle(cmd); }, c);
    } catch (const std::exception& e) {
      say(Severity::Error, e.what());
    }
  }
}

// A live change of one training setting: validated on a copy, then marked on the curves.
template <class T>
void Trainer::Impl::change(T TrainConfig::*field, T value, const char* name) {
  TrainConfig t = tcfg;
  t.*field = value;
  validate(t);
  mark(std::string(name) + " " + format_number(tcfg.*field) + " → " + format_number(value));
  tcfg = t;
}

// While following a run, the local trainer stays idle: pause and resume choose what it does when
// following ends, and a single step is refused.
void Trainer::Impl::handle(const command::Pause&) {
  if (following) following->state_before = TrainerState::Paused;
  if (state == TrainerState::Running) state = TrainerState::Paused;
  pending_steps = 0;
}

void Trainer::Impl::handle(const command::Resume&) {
  if (!following) {
    state = TrainerState::Running;
    return;
  }
  following->state_before = TrainerState::Running;
  say(Severity::Info, "following " + following->follower->folder().string() +
                          ": the local trainer stays idle until Continue here, then runs");
}

void Trainer::Impl::handle(const command::Step&) {
  if (following) throw Error("no local steps while following a run: Continue here trains from its weights");
  state = TrainerState::Paused;
  ++pending_steps;
}

void Trainer::Impl::handle(const command::Reset&) {
  fresh_start();
  refresh_latents();  // the map shows the fresh model's codes even while paused
  say(Severity::Info, "reset: fresh weights from seed " + std::to_string(tcfg.seed));
  if (following) end_following("reset");
}

void Trainer::Impl::handle(const command::SetLr& c) { change(&TrainConfig::lr, c.lr, "lr"); }
void Trainer::Impl::handle(const command::SetBeta& c) { change(&TrainConfig::beta, c.beta, "β"); }
void Trainer::Impl::handle(const command::SetWarmup& c) { change(&TrainConfig::warmup_steps, c.steps, "warm-up"); }

void Trainer::Impl::handle(const command::SetEstimator& c) {
  TrainConfig t = tcfg;
  t.estimator = c.estimator;
  check_estimator(mcfg, t);
  if (c.estimator != tcfg.estimator)
    mark(std::string("estimator ") + to_string(tcfg.estimator) + " → " + to_string(c.estimator));
  tcfg.estimator = c.estimator;
}

void Trainer::Impl::handle(const command::SetIwae& c) {
  if (c.k < 0 || c.k > 100000 || c.points < 0) throw Error("IWAE samples must be 0 to 100000");
  opt.eval_iwae_k = c.k;
  opt.iwae_points = c.points;
}

void Trainer::Impl::handle(const command::SetMeasureEstimators& c) { opt.measure_estimators = c.on; }
void Trainer::Impl::handle(const command::MeasureEstimatorsNow&) { measure_estimators(); }

void Trainer::Impl::handle(const command::Rebuild& c) {
  check_configs(c.model, c.train);
  mcfg = c.model;
  tcfg = c.train;
  fresh_start();
  refresh_latents();
  say(Severity::Info, std::string("rebuilt the model: ") + to_string(mcfg.family) + ", latent " +
                          std::to_string(mcfg.latent) + ", " + to_string(mcfg.likelihood) + ", batch " +
                          std::to_string(tcfg.batch));
  if (following) end_following("rebuilt the model");
}

// Keeps the model when the images have its size; otherwise a fresh model for the new size. A data
// set the model cannot take leaves data and model as they were.
void Trainer::Impl::handle(command::SetData& c) {
  const auto old_data = data;
  const ModelConfig old_model = mcfg;
  data = std::move(c.data);
  const bool same_size = mcfg.image_c == data->train.channels && mcfg.image_h == data->train.height &&
                         mcfg.image_w == data->train.width;
  mcfg.image_c = data->train.channels;
  mcfg.image_h = data->train.height;
  mcfg.image_w = data->train.width;
  try {
    if (same_size) {
      prepare_data();
      new_epoch_order();
    } else {
      fresh_start();
    }
  } catch (...) {
    data = old_data;
    mcfg = old_model;
    throw;
  }
  say(Severity::Info, "data set '" + data->name + "': " + std::to_string(data->train.count) + " training and " +
                          std::to_string(data->test.count) + " test images" +
                          (same_size ? "" : " (new image size: fresh model)"));
  if (!following) return;
  if (same_size) {
    refresh_latents();  // the followed model's codes of the new test images
  } else {
    end_following("a data set of another image size");
  }
}

void Trainer::Impl::handle(const command::Save& c) {
  save_now(c.file);
  say(Severity::Info, "saved checkpoint " + c.file.string());
}

void Trainer::Impl::handle(const command::Load& c) {
  load_now(c.file);
  say(Severity::Info, "loaded checkpoint " + c.file.string() + " (step " + std::to_string(step) + ")");
  if (following) end_following("loaded a checkpoint");
}

void Trainer::Impl::handle(const command::ExportSafetensors& c) {
  write_safetensors(c.file, export_model(*model));
  say(Severity::Info, "exported weights to " + c.file.string());
}

void Trainer::Impl::handle(const command::ImportSafetensors& c) {
  import_now(c.file);
  say(Severity::Info, "imported weights from " + c.file.string());
  if (following) end_following("imported weights");
}

}  // namespace vaelab
