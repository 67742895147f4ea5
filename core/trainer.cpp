// class Trainer: the thread it owns, the commands it posts and the snapshots it hands out (see
// trainer.hpp). Not the work itself: Trainer::Impl (trainer_impl.hpp) runs on that thread.
#include "core/trainer.hpp"

#include "core/error.hpp"
#include "core/safetensors.hpp"
#include "core/trainer_impl.hpp"

namespace vaelab {

Trainer::Trainer(std::shared_ptr<const Dataset> data, ModelConfig model, TrainConfig train, TrainerOptions opt)
    : impl_(std::make_unique<Impl>()) {
  if (!data) throw Error("no data set given");
  impl_->opt = opt;
  impl_->data = std::move(data);
  impl_->mcfg = std::move(model);
  impl_->tcfg = train;
  impl_->state = opt.start_paused ? TrainerState::Paused : TrainerState::Running;
  impl_->fresh_start();
  impl_->publish();
}

Trainer::~Trainer() {
  request_stop();
  join();
}

void Trainer::set_listener(TrainerListener fn) { impl_->listener = std::move(fn); }

void Trainer::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    impl_->run();
    finished_.store(true);
  });
}

void Trainer::request_stop() {
  impl_->commands.request_stop();
  impl_->iwae_cancel = true;
}

IwaeProgress Trainer::iwae_progress() const { return {impl_->iwae_done.load(), impl_->iwae_total.load()}; }
void Trainer::cancel_iwae() { impl_->iwae_cancel = true; }

void Trainer::join() {
  if (thread_.joinable()) thread_.join();
}

void Trainer::pause() { impl_->commands.post(command::Pause{}); }
void Trainer::resume() { impl_->commands.post(command::Resume{}); }
void Trainer::step_once() { impl_->commands.post(command::Step{}); }
void Trainer::reset() { impl_->commands.post(command::Reset{}); }
void Trainer::set_lr(float lr) { impl_->commands.post(command::SetLr{lr}); }
void Trainer::set_beta(float beta) { impl_->commands.post(command::SetBeta{beta}); }
void Trainer::set_warmup(int steps) { impl_->commands.post(command::SetWarmup{steps}); }
void Trainer::set_estimator(Estimator e) { impl_->commands.post(command::SetEstimator{e}); }
void Trainer::set_iwae(int k, int points) { impl_->commands.post(command::SetIwae{k, points}); }
void Trainer::set_measure_estimators(bool on) { impl_->commands.post(command::SetMeasureEstimators{on}); }
void Trainer::measure_estimators_now() { impl_->commands.post(command::MeasureEstimatorsNow{}); }
void Trainer::rebuild(ModelConfig model, TrainConfig train) {
  impl_->commands.post(command::Rebuild{std::move(model), train});
}
void Trainer::set_data(std::shared_ptr<const Dataset> data) { impl_->commands.post(command::SetData{std::move(data)}); }
void Trainer::save(std::filesystem::path file) { impl_->commands.post(command::Save{std::move(file)}); }
void Trainer::load(std::filesystem::path file) { impl_->commands.post(command::Load{std::move(file)}); }
void Trainer::export_safetensors(std::filesystem::path file) {
  impl_->commands.post(command::ExportSafetensors{std::move(file)});
}
void Trainer::import_safetensors(std::filesystem::path file) {
  impl_->commands.post(command::ImportSafetensors{std::move(file)});
}

void Trainer::follow(std::filesystem::path run_folder) {
  impl_->commands.post(command::Follow{std::move(run_folder)});
}
void Trainer::continue_here() { impl_->commands.post(command::ContinueHere{}); }

std::shared_ptr<const Snapshot> Trainer::snapshot() const {
  return impl_->published.load();
}

void Trainer::load_now(const std::filesystem::path& file) {
  impl_->load_now(file);
  impl_->publish();
}

void Trainer::import_safetensors_now(const std::filesystem::path& file) {
  impl_->import_now(file);
  impl_->publish();
}

void Trainer::save_now(const std::filesystem::path& file) { impl_->save_now(file); }

void Trainer::export_safetensors_now(const std::filesystem::path& file) {
  write_safetensors(file, export_model(*impl_->model));
}

}  // namespace vaelab
