// Training panel: run controls (start/pause, step, reset), live settings (lr, β, warm-up), the
// model-settings form that rebuilds after a confirmation, data folder and checkpoint files, a
// status line and the trainer's log. Talks to the trainer only through its command methods.
// Not the trainer: nothing here blocks on training.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

#include "app/panels.hpp"
#include "core/error.hpp"

namespace vaelab::app {
namespace {

constexpr const char* kLikelihoods[] = {"Bernoulli", "Gaussian, fixed σ", "Gaussian, learned σ"};
constexpr const char* kBinarize[] = {"none", "static", "dynamic"};
constexpr const char* kFamilies[] = {"MLP", "convolutional", "clustering (GMVAE)"};

std::string with_commas(long long v) {
  const std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out = v < 0 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

bool same_structure(const TrainConfig& a, const TrainConfig& b) {
  return a.batch == b.batch && a.samples == b.samples && a.seed == b.seed && a.threads == b.threads &&
         a.binarize == b.binarize;
}

void sync_form(TrainingPanelState& t, const ModelConfig& m, const TrainConfig& c) {
  t.latent = m.latent;
  std::string h;
  for (std::size_t i = 0; i < m.hidden.size(); ++i) h += (i ? ", " : "") + std::to_string(m.hidden[i]);
  std::snprintf(t.hidden, sizeof t.hidden, "%s", h.c_str());
  t.likelihood = static_cast<int>(m.likelihood);
  t.family = static_cast<int>(m.family);
  t.clusters = m.clusters;
  t.sigma = m.gaussian_sigma;
  t.batch = c.batch;
  t.samples = c.samples;
  t.seed = static_cast<int>(c.seed);
  t.threads = c.threads;
  t.binarize = static_cast<int>(c.binarize);
  t.pending_model = m;
  t.pending_train = c;
  t.form_synced = true;
}

void draw_controls(AppState& state, const Snapshot* snap) {
  Trainer* trainer = state.trainer.get();
  const bool running = snap && snap->state == TrainerState::Running;
  ImGui::BeginDisabled(!trainer);
  const char* label = running ? "Pause" : (snap && snap->step > 0 ? "Resume" : "Start");
  if (ImGui::Button(label, ImVec2(ImGui::GetFontSize() * 5.5f, 0))) running ? trainer->pause() : trainer->resume();
  state.note_rect("pause_button");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Space");
  ImGui::SameLine();
  if (ImGui::Button("Step")) trainer->step_once();
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("One optimiser step, then stay paused");
  ImGui::SameLine();
  if (ImGui::Button("Reset…")) ImGui::OpenPopup("Reset training?");
  ImGui::EndDisabled();
  if (ImGui::BeginPopupModal("Reset training?", nullptr, ImGuiWindowFlags_AlwaysAutoResize)) {
    ImGui::TextUnformatted("Start again from fresh weights (same seed)?\nThe curves and progress are cleared.");
    if (ImGui::Button("Reset", ImVec2(100, 0))) {
      if (trainer) trainer->reset();
      ImGui::CloseCurrentPopup();
    }
    ImGui::SameLine();
    if (ImGui::Button("Cancel", ImVec2(100, 0)) || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape)))
      ImGui::CloseCurrentPopup();
    ImGui::EndPopup();
  }
  if (snap) {
    ImGui::SameLine();
    const char* st = snap->state == TrainerState::Running ? "running" : snap->state == TrainerState::Paused ? "paused" : "finished";
    const ImVec4 col = snap->state == TrainerState::Running ? ImVec4(0.45f, 0.85f, 0.45f, 1) : ImVec4(0.95f, 0.75f, 0.3f, 1);
    ImGui::TextColored(col, "%s", st);
    // The epoch in progress (as the gap panel counts it); a finished run shows its last one.
    ImGui::Text("epoch %d", snap->state == TrainerState::Finished ? snap->epoch : snap->epoch + 1);
    if (snap->batches_per_epoch > 0) {
      ImGui::SameLine();
      ImGui::TextDisabled("(%d/%d)", snap->batch_in_epoch, snap->batches_per_epoch);
    }
    ImGui::SameLine();
    ImGui::Text("· step %s", with_commas(snap->step).c_str());
    if (snap->state == TrainerState::Running) {
      ImGui::Text("%s samples/s · %.0f fps", with_commas(static_cast<long long>(snap->samples_per_s)).c_str(), state.stats.fps);
      if (ImGui::IsItemHovered())
        ImGui::SetTooltip("Frames are drawn when something changes: about 20 per second while training, "
                          "up to 60 while you interact.");
    } else {
      ImGui::TextDisabled("%s samples/s when last running", with_commas(static_cast<long long>(snap->samples_per_s)).c_str());
    }
    if (snap->train_config.warmup_steps > 0) {
      ImGui::SameLine();
      ImGui::TextDisabled("· β now %.2f", static_cast<double>(snap->effective_beta));
    }
    // Clustering VAE: the last epoch's scores on the evaluated test set (the latent map shows
    // the same scores live on its codes).
    if (!snap->history.epochs.empty() && std::isfinite(snap->history.epochs.back().cluster_acc)) {
      const EpochRecord& r = snap->history.epochs.back();
      ImGui::Text("clusters (test, epoch %d): accuracy %.3f · NMI %.3f", r.epoch, static_cast<double>(r.cluster_acc),
                  static_cast<double>(r.nmi));
    }
  } else {
    ImGui::TextDisabled("no model yet");
  }
}

void draw_live_settings(AppState& state, const Snapshot* snap) {
  TrainingPanelState& t = state.training;
  Trainer* trainer = state.trainer.get();
  ImGui::BeginDisabled(!trainer || !snap);
  const float w = ImGui::GetContentRegionAvail().x * 0.55f;
  // The learning rate slides in log10 space (ImGui's logarithmic sliders take their smallest
  // step from the display format's precision, which breaks "%.1e"); the label shows the value.
  ImGui::SetNextItemWidth(w);
  float log_lr = std::log10(std::clamp(t.lr, 1e-6f, 1.0f));
  char lr_text[32];
  std::snprintf(lr_text, sizeof lr_text, "%.1e", static_cast<double>(t.lr));
  if (ImGui::SliderFloat("learning rate", &log_lr, -5.0f, -1.0f, lr_text)) t.lr = std::pow(10.0f, std::clamp(log_lr, -6.0f, 0.0f));
  const bool lr_active = ImGui::IsItemActive();
  if (ImGui::IsItemDeactivatedAfterEdit() && trainer) {
    trainer->set_lr(t.lr);
    t.hold_until = state.now + 0.5;
  }
  ImGui::SetNextItemWidth(w);
  ImGui::SliderFloat("β (KL weight)", &t.beta, 0.0f, 8.0f, "%.2f");
  const bool beta_active = ImGui::IsItemActive();
  if (ImGui::IsItemDeactivatedAfterEdit() && trainer) {
    trainer->set_beta(std::max(t.beta, 0.0f));
    t.hold_until = state.now + 0.5;
  }
  ImGui::SetNextItemWidth(w);
  ImGui::DragInt("KL warm-up", &t.warmup, 50.0f, 0, 1000000, "%d steps");
  const bool warm_active = ImGui::IsItemActive();
  if (ImGui::IsItemDeactivatedAfterEdit() && trainer) {
    trainer->set_warmup(std::max(t.warmup, 0));
    t.hold_until = state.now + 0.5;
  }
  help_marker("Changes apply when you let go of the slider; each change is marked on the curves. "
              "With warm-up, β grows linearly from 0 over that many steps.");
  ImGui::EndDisabled();
  // Follow the trainer (loads, resets) whenever the user is not editing; right after a change,
  // give the trainer a moment to apply it so the slider does not flick back.
  if (snap && state.now >= t.hold_until) {
    if (!lr_active) t.lr = snap->train_config.lr;
    if (!beta_active) t.beta = snap->train_config.beta;
    if (!warm_active) t.warmup = snap->train_config.warmup_steps;
  }
}

void draw_model_form(AppState& state, const Snapshot* snap) {
  TrainingPanelState& t = state.training;
  if (snap && (!t.form_synced || !(snap->model_config == t.pending_model) || !same_structure(snap->train_config, t.pending_train)))
    sync_form(t, snap->model_config, snap->train_config);
  // Two label/field pairs per row keeps the form short enough to leave room for the log.
  const float label_x = ImGui::GetFontSize() * 3.6f + ImGui::GetStyle().WindowPadding.x;
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("model");
  ImGui::SameLine(label_x);
  if (t.family == 2) {
    ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - ImGui::GetFontSize() * 4.0f);
    ImGui::Combo("##family", &t.family, kFamilies, 3);
    ImGui::SameLine();
    ImGui::SetNextItemWidth(-FLT_MIN);
    ImGui::InputInt("##clusters", &t.clusters, 0);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("Clusters K (categories of y)");
    t.clusters = std::clamp(t.clusters, 1, 1000);
  } else {
    ImGui::SetNextItemWidth(-FLT_MIN);
    ImGui::Combo("##family", &t.family, kFamilies, 3);
  }
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("p(x|z)");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("The decoder's likelihood");
  ImGui::SameLine(label_x);
  ImGui::SetNextItemWidth(-FLT_MIN);
  ImGui::Combo("##lik", &t.likelihood, kLikelihoods, 3);
  const ImGuiTableFlags flags = ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_NoSavedSettings;
  if (ImGui::BeginTable("model_form", 4, flags)) {
    const float fs = ImGui::GetFontSize();
    ImGui::TableSetupColumn("l1", ImGuiTableColumnFlags_WidthFixed, fs * 3.6f);
    ImGui::TableSetupColumn("f1", ImGuiTableColumnFlags_WidthStretch, 1.0f);
    ImGui::TableSetupColumn("l2", ImGuiTableColumnFlags_WidthFixed, fs * 4.3f);
    ImGui::TableSetupColumn("f2", ImGuiTableColumnFlags_WidthStretch, 1.2f);
    auto label = [](const char* text, const char* tip = nullptr) {
      ImGui::TableNextColumn();
      ImGui::AlignTextToFramePadding();
      ImGui::TextUnformatted(text);
      if (tip && ImGui::IsItemHovered()) ImGui::SetTooltip("%s", tip);
      ImGui::TableNextColumn();
      ImGui::SetNextItemWidth(-FLT_MIN);
    };
    label("latent");
    ImGui::InputInt("##latent", &t.latent, 0);
    t.latent = std::clamp(t.latent, 1, 256);
    label("hidden", "Encoder widths, comma separated (e.g. 400 or 512, 256). The decoder mirrors them.");
    ImGui::InputText("##hidden", t.hidden, sizeof t.hidden);
    label("batch");
    ImGui::InputInt("##batch", &t.batch, 0);
    label("samples L", "Monte-Carlo samples of z per image");
    ImGui::InputInt("##samples", &t.samples, 0);
    label("seed");
    ImGui::InputInt("##seed", &t.seed, 0);
    label("threads", "Worker threads for the training step (the batch is split across them). On a 2-core "
                     "machine 2 measured best, for training speed and for the window alike.");
    ImGui::InputInt("##threads", &t.threads, 0);
    label("binarize", "Binarize the training images: never, once (static) or every batch (dynamic)");
    ImGui::Combo("##binarize", &t.binarize, kBinarize, 3);
    label("σ", "Fixed decoder standard deviation (Gaussian, fixed σ only)");
    ImGui::BeginDisabled(t.likelihood != 1);
    ImGui::InputFloat("##sigma", &t.sigma, 0, 0, "%.3f");
    ImGui::EndDisabled();
    ImGui::EndTable();
  }

  ImGui::BeginDisabled(!state.trainer || !snap);
  if (ImGui::Button("Rebuild model…")) {
    ModelConfig m = snap->model_config;
    TrainConfig c = snap->train_config;
    std::vector<int> hidden;
    t.form_error.clear();
    if (parse_hidden(t.hidden, hidden, t.form_error)) {
      m.latent = t.latent;
      m.hidden = hidden;
      m.likelihood = static_cast<Likelihood>(t.likelihood);
      m.family = static_cast<ModelFamily>(t.family);
      m.clusters = t.clusters;
      m.gaussian_sigma = t.sigma;
      c.batch = t.batch;
      c.samples = t.samples;
      c.seed = static_cast<std::uint64_t>(std::max(t.seed, 0));
      c.threads = t.threads;
      c.binarize = static_cast<Binarize>(t.binarize);
      try {
        validate(m);
        validate(c);
        t.pending_model = m;
        t.pending_train = c;
        ImGui::OpenPopup("Rebuild the model?");
      } catch (const std::exception& e) {
        t.form_error = e.what();
      }
    }
  }
  ImGui::EndDisabled();
  ImGui::SameLine();
  if (ImGui::SmallButton("Revert") && snap) sync_form(t, snap->model_config, snap->train_config);
  if (!t.form_error.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.4f, 0.4f, 1.0f));
    ImGui::TextWrapped("%s", t.form_error.c_str());
    ImGui::PopStyleColor();
  }
  if (ImGui::BeginPopupModal("Rebuild the model?", nullptr, ImGuiWindowFlags_AlwaysAutoResize)) {
    ImGui::TextUnformatted("The model is rebuilt with fresh weights; the current\ntraining progress and curves are lost.");
    ImGui::TextDisabled("Save a checkpoint first if you want to keep it.");
    if (ImGui::Button("Rebuild", ImVec2(110, 0))) {
      if (state.trainer) state.trainer->rebuild(t.pending_model, t.pending_train);
      ImGui::CloseCurrentPopup();
    }
    ImGui::SameLine();
    if (ImGui::Button("Cancel", ImVec2(110, 0)) || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) {
      if (snap) sync_form(t, snap->model_config, snap->train_config);
      ImGui::CloseCurrentPopup();
    }
    ImGui::EndPopup();
  }
}

void draw_files(AppState& state, const Snapshot* snap) {
  TrainingPanelState& t = state.training;
  if (snap && snap->data) {
    const Dataset& d = *snap->data;
    ImGui::Text("%s: %d train, %d test, %d×%d", d.name.c_str(), d.train.count, d.test.count, d.train.width, d.train.height);
    if (!d.class_names.empty()) {
      ImGui::SameLine();
      ImGui::TextDisabled("%zu classes", d.class_names.size());
    }
  }
  const float bw = ImGui::GetFontSize() * 4.5f;
  ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - bw - ImGui::GetStyle().ItemSpacing.x);
  const bool enter = ImGui::InputTextWithHint("##data", "data folder (IDX files)", t.data_path, sizeof t.data_path,
                                              ImGuiInputTextFlags_EnterReturnsTrue);
  ImGui::SameLine();
  ImGui::BeginDisabled(state.data_loading.valid());
  if ((ImGui::Button("Open", ImVec2(bw, 0)) || enter) && t.data_path[0]) open_path(state, t.data_path);
  ImGui::EndDisabled();

  ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x);
  ImGui::InputTextWithHint("##file", "checkpoint file", t.file_path, sizeof t.file_path);
  ImGui::BeginDisabled(!state.trainer || !t.file_path[0]);
  const std::filesystem::path file = t.file_path;
  if (ImGui::Button("Save")) state.trainer->save(file);
  ImGui::SameLine();
  if (ImGui::Button("Load")) state.trainer->load(file);
  ImGui::SameLine();
  if (ImGui::Button("Export .safetensors")) {
    std::filesystem::path out = file;
    out.replace_extension(".safetensors");
    state.trainer->export_safetensors(out);
  }
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Weights with PyTorch names beside the checkpoint path");
  ImGui::SameLine();
  if (ImGui::Button("Import")) {
    std::filesystem::path in = file;
    if (in.extension() != ".safetensors") in.replace_extension(".safetensors");
    state.trainer->import_safetensors(in);
  }
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Load weights from the .safetensors beside the checkpoint path");
  ImGui::EndDisabled();

  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6);
  if (ImGui::InputInt("autosave every (min)", &state.autosave.minutes)) {
    state.autosave.minutes = std::clamp(state.autosave.minutes, 0, 120);
    ImGui::GetIO().WantSaveIniSettings = true;  // saved by the frame loop
  }
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("0: off. While training, and on exit, the run is saved to\n%s;\nthe next launch offers to resume it.",
                      state.autosave.file.c_str());
}

void draw_log(AppState& state, const Snapshot* snap) {
  ImGui::BeginChild("log", ImVec2(0, 0), true);
  ImGui::PushTextWrapPos(0.0f);
  if (snap) {
    const bool at_bottom = ImGui::GetScrollY() >= ImGui::GetScrollMaxY() - 2;
    for (const LogLine& line : snap->log) {
      if (line.severity == Severity::Error) ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.42f, 0.42f, 1));
      else if (line.severity == Severity::Warning) ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.8f, 0.35f, 1));
      else ImGui::PushStyleColor(ImGuiCol_Text, ImGui::GetStyleColorVec4(ImGuiCol_Text));
      ImGui::TextUnformatted(line.text.c_str());
      ImGui::PopStyleColor();
    }
    const std::uint64_t last = snap->log.empty() ? 0 : snap->log.back().serial;
    if (last != state.training.log_lines_seen && at_bottom) ImGui::SetScrollHereY(1.0f);
    state.training.log_lines_seen = last;
  }
  ImGui::PopTextWrapPos();
  ImGui::EndChild();
}

}  // namespace

void draw_training(AppState& state, const Snapshot* snap) {
  if (!ImGui::Begin(kWinTraining)) {
    ImGui::End();
    return;
  }
  draw_controls(state, snap);
  ImGui::Separator();
  draw_live_settings(state, snap);
  if (ImGui::CollapsingHeader("Model settings")) draw_model_form(state, snap);
  if (ImGui::CollapsingHeader("Data & checkpoints")) draw_files(state, snap);
  ImGui::TextDisabled("Log");
  draw_log(state, snap);
  ImGui::End();
}

}  // namespace vaelab::app
