// A run's state as a whole: checking configurations, building the data views and step buffers,
// starting fresh, resetting after a change, and saving, loading or importing. Not the steps that
// advance it (trainer_loop.cpp).
#include <algorithm>
#include <sstream>

#include "core/error.hpp"
#include "core/checkpoint.hpp"
#include "core/evaluation.hpp"
#include "core/memory_estimate.hpp"
#include "core/safetensors.hpp"
#include "core/trainer_impl.hpp"

namespace vaelab {

// The score-function path (core/gap.cpp) differentiates the plain MLP encoder with the
// standard-normal prior only.
void Trainer::Impl::check_estimator(const ModelConfig& m, const TrainConfig& t) {
  if (t.estimator == Estimator::ScoreFunction && m.family != ModelFamily::Mlp)
    throw Error(std::string("the score-function estimator is available for mlp models only, not ") + to_string(m.family));
}

void Trainer::Impl::check_image_size(const ModelConfig& m) const {
  const ImageSet& d = data->train;
  if (m.image_c == d.channels && m.image_h == d.height && m.image_w == d.width) return;
  const bool channels_differ = m.image_c != d.channels;
  std::ostringstream os;
  os << "the model expects " << image_shape_text(m, channels_differ) << " images but the data set '" << data->name
     << "' has " << image_shape_text(d.channels, d.height, d.width, channels_differ);
  throw Error(os.str());
}

// Everything a model and training configuration must satisfy to run on the current data.
void Trainer::Impl::check_configs(const ModelConfig& m, const TrainConfig& t) const {
  validate(m);
  validate(t);
  check_estimator(m, t);
  check_image_size(m);
}

// A model from `file` trained with `t` on this run's data must fit in the memory there is: refused
// with the estimate (memory_estimate.hpp) before the file's weights are read or the model is built.
void Trainer::Impl::check_memory_for(const std::filesystem::path& file, const ModelConfig& m, TrainConfig t) const {
  if (pool) t.threads = pool->size();  // as the loaded run will train here
  try {
    check_training_memory(estimate_training_memory(m, t, dataset_bytes(*data, t)), available_memory());
  } catch (const Error& e) {
    throw Error(file.string() + ": the model it holds does not fit: " + e.what());
  }
}

// Data views for training and evaluation, binarized as configured.
void Trainer::Impl::prepare_data() {
  train_set = std::shared_ptr<const ImageSet>(data, &data->train);
  test_set = std::shared_ptr<const ImageSet>(data, &data->test);
  if (tcfg.binarize == Binarize::Static || tcfg.binarize == Binarize::Dynamic) {
    // Dynamic binarization resamples training pixels per batch; the test set is binarized
    // once so that evaluations are comparable across epochs.
    auto test = std::make_shared<ImageSet>(data->test);
    binarize_static(*test, tcfg.seed + 2);
    test_set = test;
  }
  if (tcfg.binarize == Binarize::Static) {
    auto train = std::make_shared<ImageSet>(data->train);
    binarize_static(*train, tcfg.seed + 3);
    train_set = train;
  }
  latents.indices = first_indices(std::min(opt.display_points, test_set->count));
  latents.mu.resize(0, 0);
  latents.step = -1;
}

// Buffers that depend on the batch, L, threads and model shape.
void Trainer::Impl::prepare_engine() {
  if (!pool || pool->size() != tcfg.threads) pool = std::make_unique<ThreadPool>(tcfg.threads);
  engine = std::make_unique<GradientEngine>(mcfg, tcfg.batch, tcfg.samples, tcfg.threads);
  grad.assign(model->size(), 0.0f);
  xbatch.resize(mcfg.input_dim(), tcfg.batch);
  eps.resize(mcfg.latent, static_cast<Eigen::Index>(tcfg.batch) * tcfg.samples);
}

void Trainer::Impl::new_epoch_order() {
  const int n = train_count();
  order.resize(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(static_cast<std::uint64_t>(i) + 1)]);
  batch_in_epoch = 0;
  epoch_totals = {};
}

// Whether a saved place in an epoch fits the current data and batch size.
bool Trainer::Impl::can_resume_epoch(const std::vector<std::int32_t>& saved_order, int saved_batch) const {
  const int n = train_count();
  return static_cast<int>(saved_order.size()) == n &&
         std::all_of(saved_order.begin(), saved_order.end(), [n](std::int32_t i) { return i >= 0 && i < n; }) &&
         saved_batch >= 0 && saved_batch < batches_per_epoch();
}

// After a new model, data or batch: data views and step buffers rebuilt, the epoch resumed at
// `saved_batch` of `saved_order` when that fits (else a new shuffled order), and the fallback
// parameters of the previous model forgotten.
void Trainer::Impl::reset_run_state(std::vector<std::int32_t> saved_order, int saved_batch) {
  prepare_data();
  prepare_engine();
  if (can_resume_epoch(saved_order, saved_batch)) {
    order = std::move(saved_order);
    batch_in_epoch = saved_batch;
    epoch_totals = {};
  } else {
    new_epoch_order();
  }
  last_published_model.reset();
}

// Step 0 of a new run for the current model: optimiser, counters and history cleared.
void Trainer::Impl::restart_counters() {
  adam.reset(model->size());
  step = 0;
  epoch = 0;
  history = {};
  kl_running.assign(mcfg.latent, 0.0);
}

// Fresh weights and optimiser from the seed; history cleared.
void Trainer::Impl::fresh_start() {
  check_configs(mcfg, tcfg);
  model = std::make_unique<Model>(mcfg);
  model->init(tcfg.seed);
  rng.reseed(tcfg.seed + 1);
  restart_counters();
  reset_run_state();
}

TrainingState Trainer::Impl::capture() const {
  TrainingState s;
  s.model = mcfg;
  s.train = tcfg;
  s.params.assign(model->params().begin(), model->params().end());
  s.adam = adam;
  s.rng = rng.state();
  s.step = step;
  s.epoch = epoch;
  s.batch_in_epoch = batch_in_epoch;
  s.order = order;
  s.history = history;
  s.data_name = data ? data->name : "";
  return s;
}

void Trainer::Impl::save_now(const std::filesystem::path& file) {
  if (!model->all_finite()) throw Error("not saving " + file.string() + ": the parameters contain NaN or Inf");
  save_checkpoint(file, capture());
}

// Staged: everything is checked before the running model is touched.
void Trainer::Impl::load_now(const std::filesystem::path& file) {
  if (const auto head = read_checkpoint_settings(file)) check_memory_for(file, head->model, head->train);
  TrainingState s = load_checkpoint(file);
  check_configs(s.model, s.train);
  auto m = std::make_unique<Model>(s.model);
  if (m->size() != s.params.size()) throw Error(file.string() + ": parameter count does not match its model config");
  m->params().assign(s.params.begin(), s.params.end());
  mcfg = s.model;
  tcfg = s.train;
  if (pool) tcfg.threads = pool->size();  // threads are a property of this machine, not of the run
  model = std::move(m);
  adam = std::move(s.adam);
  rng.set_state(s.rng);
  step = s.step;
  epoch = s.epoch;
  history = std::move(s.history);
  // The per-dimension KL bars start from the last epoch's, when it has them.
  kl_running.assign(mcfg.latent, 0.0);
  if (!history.epochs.empty() && history.epochs.back().kl_per_dim.size() == static_cast<std::size_t>(mcfg.latent))
    kl_running.assign(history.epochs.back().kl_per_dim.begin(), history.epochs.back().kl_per_dim.end());
  reset_run_state(std::move(s.order), s.batch_in_epoch);
  refresh_latents();
}

// Weights only: the optimiser and history start over.
void Trainer::Impl::import_now(const std::filesystem::path& file) {
  // The header is checked, and the model it describes against the memory, before the data is read.
  Model m = import_model(read_safetensors(file, [&](const SafetensorsFile& shapes) {
    check_memory_for(file, importable_config(shapes), tcfg);
  }));
  check_configs(m.config(), tcfg);
  if (!m.all_finite()) throw Error(file.string() + ": weights contain NaN or Inf");
  take_model(std::make_unique<Model>(std::move(m)));
}

// A checked model from elsewhere (an import, a followed run) replaces the run's: optimiser, counters
// and history start over, data views and buffers fit its shape, the latent map shows its codes.
void Trainer::Impl::take_model(std::unique_ptr<Model> m) {
  mcfg = m->config();
  model = std::move(m);
  restart_counters();
  reset_run_state();
  refresh_latents();
}

}  // namespace vaelab
