// Training panel: run controls (start/pause, step, reset), live settings (lr, β, warm-up), the
// model-settings form that rebuilds after a confirmation, data folder and checkpoint files, a
// status line and the trainer's log. Talks to the trainer only through its command methods.
// Not the trainer: nothing here blocks on training.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <type_traits>

#include "app/panels.hpp"
#include "core/autosave.hpp"
#include "core/error.hpp"
#include "core/memory_estimate.hpp"

namespace vaelab::app {
namespace {

constexpr const char* kLikelihoods[] = {"Bernoulli", "Gaussian, fixed σ", "Gaussian, learned σ"};
constexpr const char* kBinarize[] = {"none", "static", "dynamic"};
constexpr const char* kFamilies[] = {"MLP", "convolutional", "clustering (GMVAE)", "clustering (VaDE)"};

std::string hidden_text(const std::vector<int>& hidden) {
  std::string h;
  for (std::size_t i = 0; i < hidden.size(); ++i) h += (i ? ", " : "") + std::to_string(hidden[i]);
  return h;
}

// The form's numeric fields and the configuration fields they edit, pair by pair, for both
// directions (hidden and seed need conversions of their own).
template <class Visit>
void each_field_pair(ModelFormFields& f, ModelConfig& m, TrainConfig& c, Visit&& visit) {
  visit(f.latent, m.latent);
  visit(f.likelihood, m.likelihood);
  visit(f.family, m.family);
  visit(f.clusters, m.clusters);
  visit(f.sigma, m.gaussian_sigma);
  visit(f.batch, c.batch);
  visit(f.samples, c.samples);
  visit(f.threads, c.threads);
  visit(f.binarize, c.binarize);
}

ModelFormFields form_fields(ModelConfig m, TrainConfig c) {
  ModelFormFields f;
  each_field_pair(f, m, c, [](auto& field, const auto& config) { field = static_cast<std::decay_t<decltype(field)>>(config); });
  std::snprintf(f.hidden, sizeof f.hidden, "%s", hidden_text(m.hidden).c_str());
  f.seed = static_cast<int>(c.seed);
  return f;
}

// The form's fields over the running configuration (image size, lr, β … stay). Throws
// vaelab::Error, naming the field, when they do not make a valid model.
void apply_form(ModelFormFields f, ModelConfig& m, TrainConfig& c) {
  std::string error;
  if (!parse_hidden(f.hidden, m.hidden, error)) throw Error(error);
  each_field_pair(f, m, c, [](const auto& field, auto& config) { config = static_cast<std::decay_t<decltype(config)>>(field); });
  c.seed = static_cast<std::uint64_t>(std::max(f.seed, 0));
  validate(m);
  validate(c);
}

// Track the running model: an unedited form shows it, an edited one keeps its edits.
void follow_running_model(ModelForm& form, const Snapshot& snap) {
  const ModelFormFields running = form_fields(snap.model_config, snap.train_config);
  if (form.filled && running == form.running) return;
  if (!form.edited()) form.fields = running;
  form.running = running;
  form.filled = true;
}

std::string describe_run(const ModelConfig& m, const TrainConfig& c) {
  return describe_model(m) + " · batch " + std::to_string(c.batch);
}

ImVec4 log_colour(Severity s) {
  return s == Severity::Error ? kErrorColour : s == Severity::Warning ? kWarningColour : ImGui::GetStyleColorVec4(ImGuiCol_Text);
}

// A combo whose entries leave their rectangles for scripts: <rect>, <rect>_0, <rect>_1, …
void choice(AppState& state, const char* id, int& value, const char* const* names, int count, const char* rect) {
  if (!ImGui::BeginCombo(id, names[std::clamp(value, 0, count - 1)])) {
    state.note_rect(rect);  // the closed combo (an open one is recorded from before it opened)
    return;
  }
  for (int k = 0; k < count; ++k) {
    if (ImGui::Selectable(names[k], k == value)) value = k;
    state.note_rect((std::string(rect) + "_" + std::to_string(k)).c_str());
  }
  ImGui::EndCombo();
}

// `text` cut to `width` pixels with an ellipsis at the end (whole when it fits).
std::string fit_to_width(const std::string& text, float width) {
  if (ImGui::CalcTextSize(text.c_str()).x <= width) return text;
  std::string cut = text;
  while (!cut.empty() && ImGui::CalcTextSize((cut + "…").c_str()).x > width) {
    cut.pop_back();
    while (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0xC0) == 0x80) cut.pop_back();  // whole UTF-8 characters
    if (!cut.empty() && static_cast<unsigned char>(cut.back()) >= 0xC0) cut.pop_back();
  }
  return cut + "…";
}

// One line, cut with an ellipsis to the width left, the whole text in a tooltip.
void fitted_line(const std::string& text, const ImVec4& colour) {
  const std::string shown = fit_to_width(text, ImGui::GetContentRegionAvail().x);
  ImGui::TextColored(colour, "%s", shown.c_str());
  if (shown != text && ImGui::IsItemHovered()) ImGui::SetTooltip("%s", text.c_str());
}

// While following a run: what is followed and how it goes, its last problem, and "Continue here".
void draw_follow_status(AppState& state, const FollowStatus& follow) {
  const ImVec4 colour = follow.finished ? ImVec4(0.95f, 0.75f, 0.3f, 1) : ImVec4(0.45f, 0.85f, 0.45f, 1);
  fitted_line("following " + follow.folder.string(), colour);
  fitted_line(follow_progress(follow), colour);
  if (!follow.last_problem.empty()) fitted_line(follow.last_problem, kWarningColour);
  if (ImGui::Button("Continue here")) continue_here(state);
  state.note_rect("continue_button");
  if (ImGui::IsItemHovered())
    ImGui::SetTooltip("Stop following and train here from the followed weights and step (a fresh optimiser)");
}

void draw_controls(AppState& state, const Snapshot* snap) {
  Trainer* trainer = state.trainer.get();
  const bool running = snap && snap->state == TrainerState::Running;
  const bool following = snap && snap->follow;
  if (following) draw_follow_status(state, *snap->follow);
  auto following_tip = [&] {
    if (following && ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
      ImGui::SetTooltip("Following a run: its weights come from the other program. Continue here to train locally.");
  };
  ImGui::BeginDisabled(!trainer || following);
  const char* label = running ? "Pause" : (snap && snap->step > 0 ? "Resume" : "Start");
  if (ImGui::Button(label, ImVec2(ImGui::GetFontSize() * 5.5f, 0))) running ? trainer->pause() : trainer->resume();
  state.note_rect("pause_button");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Space");
  following_tip();
  ImGui::SameLine();
  if (ImGui::Button("Step")) trainer->step_once();
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("One optimiser step, then stay paused");
  following_tip();
  ImGui::SameLine();
  if (ImGui::Button("Reset…")) ImGui::OpenPopup("Reset training?");
  following_tip();
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
  if (snap && !following) {
    ImGui::SameLine();
    const char* st = snap->state == TrainerState::Running ? "running" : snap->state == TrainerState::Paused ? "paused" : "finished";
    const ImVec4 col = snap->state == TrainerState::Running ? ImVec4(0.45f, 0.85f, 0.45f, 1) : ImVec4(0.95f, 0.75f, 0.3f, 1);
    fitted_text(state, "training_state", st, 0, &col);
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
  }
  if (snap) {
    // Clustering VAE: the last epoch's scores on the evaluated test set (the latent map shows
    // the same scores live on its codes).
    if (!snap->history.epochs.empty() && std::isfinite(snap->history.epochs.back().cluster_acc)) {
      const EpochRecord& r = snap->history.epochs.back();
      char clusters[96];
      std::snprintf(clusters, sizeof clusters, "clusters (test, epoch %d): accuracy %.3f · NMI %.3f", r.epoch,
                    static_cast<double>(r.cluster_acc), static_cast<double>(r.nmi));
      fitted_text(state, "training_clusters", clusters);
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

void draw_form_fields(AppState& state, ModelFormFields& f) {
  // Two label/field pairs per row keeps the form short enough to leave room for the log.
  const float label_x = ImGui::GetFontSize() * 3.6f + ImGui::GetStyle().WindowPadding.x;
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("model");
  ImGui::SameLine(label_x);
  if (is_clustering(static_cast<ModelFamily>(f.family))) {
    ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - ImGui::GetFontSize() * 4.0f);
    choice(state, "##family", f.family, kFamilies, 4, "form_family");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(-FLT_MIN);
    ImGui::InputInt("##clusters", &f.clusters, 0);
    if (ImGui::IsItemHovered()) ImGui::SetTooltip("Clusters K (categories of y)");
    f.clusters = std::clamp(f.clusters, 1, 1000);
  } else {
    ImGui::SetNextItemWidth(-FLT_MIN);
    choice(state, "##family", f.family, kFamilies, 4, "form_family");
  }
  ImGui::AlignTextToFramePadding();
  ImGui::TextUnformatted("p(x|z)");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("The decoder's likelihood");
  ImGui::SameLine(label_x);
  ImGui::SetNextItemWidth(-FLT_MIN);
  ImGui::Combo("##lik", &f.likelihood, kLikelihoods, 3);
  const ImGuiTableFlags flags = ImGuiTableFlags_SizingStretchProp | ImGuiTableFlags_NoSavedSettings;
  if (!ImGui::BeginTable("model_form", 4, flags)) return;
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
  ImGui::InputInt("##latent", &f.latent, 0);
  state.note_rect("form_latent");
  f.latent = std::clamp(f.latent, 1, 256);
  label("hidden", "Encoder widths, comma separated (e.g. 400 or 512, 256). The decoder mirrors them.");
  ImGui::InputText("##hidden", f.hidden, sizeof f.hidden);
  label("batch");
  ImGui::InputInt("##batch", &f.batch, 0);
  label("samples L", "Monte-Carlo samples of z per image");
  ImGui::InputInt("##samples", &f.samples, 0);
  label("seed");
  ImGui::InputInt("##seed", &f.seed, 0);
  label("threads", "Worker threads for the training step (the batch is split across them); "
                   "on a 2-core machine 2 suits training and the window alike.");
  ImGui::InputInt("##threads", &f.threads, 0);
  label("binarize", "Binarize the training images: never, once (static) or every batch (dynamic)");
  ImGui::Combo("##binarize", &f.binarize, kBinarize, 3);
  label("σ", "Fixed decoder standard deviation (Gaussian, fixed σ only)");
  ImGui::BeginDisabled(f.likelihood != static_cast<int>(Likelihood::GaussianFixed));
  ImGui::InputFloat("##sigma", &f.sigma, 0, 0, "%.3f");
  ImGui::EndDisabled();
  ImGui::EndTable();
}

// The confirmation: what will be built, what is lost, and a chance to save the run first.
void draw_rebuild_confirmation(AppState& state, const Snapshot* snap) {
  ModelForm& form = state.training.form;
  ImGui::SetNextWindowSizeConstraints(ImVec2(0, 0), ImVec2(ImGui::GetFontSize() * 34, FLT_MAX));
  if (!ImGui::BeginPopupModal("Rebuild the model?", nullptr, ImGuiWindowFlags_AlwaysAutoResize)) return;
  ImGui::Text("Build %s", describe_run(form.requested_model, form.requested_train).c_str());
  ImGui::TextUnformatted("with fresh weights.");
  if (snap) {
    ImGui::Spacing();
    ImGui::PushStyleColor(ImGuiCol_Text, kWarningColour);
    ImGui::Text("Lost: the running %s at step %s,", describe_model(snap->model_config).c_str(),
                with_commas(snap->step).c_str());
    ImGui::TextUnformatted("its weights, curves and progress.");
    ImGui::PopStyleColor();
  }
  const char* file = state.training.file_path;
  ImGui::Spacing();
  ImGui::BeginDisabled(!state.trainer || !file[0]);
  if (ImGui::Button("Save first")) {
    form.saved_after_log = snap && !snap->log.empty() ? snap->log.back().serial : 0;
    save_checkpoint(state, file);
  }
  ImGui::EndDisabled();
  state.note_rect("rebuild_save");
  ImGui::SameLine();
  ImGui::TextDisabled("to %s", file[0] ? file : "(no checkpoint path: Data & checkpoints)");
  if (form.saved_after_log && snap) {  // the trainer's answer to the save (or "saving…")
    bool answered = false;
    for (const LogLine& line : snap->log) {
      if (line.serial <= *form.saved_after_log) continue;
      answered = true;
      ImGui::TextColored(log_colour(line.severity), "%s", line.text.c_str());
    }
    if (!answered) ImGui::TextDisabled("saving…");
  }
  ImGui::Spacing();
  bool close = false;
  if (ImGui::Button("Rebuild", ImVec2(110, 0))) {
    if (state.trainer) state.trainer->rebuild(form.requested_model, form.requested_train);
    close = true;
  }
  state.note_rect("rebuild_confirm");
  ImGui::SameLine();
  if (ImGui::Button("Cancel", ImVec2(110, 0)) || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) close = true;
  if (close) {
    form.saved_after_log.reset();
    ImGui::CloseCurrentPopup();
  }
  ImGui::EndPopup();
}

// What training the form's model would need (format_bytes(estimate_training_memory(…).total()))
// against the memory available, in the warning colour when it does not fit.
void draw_memory_estimate(AppState& state, const Snapshot* snap) {
  TrainingPanelState& t = state.training;
  t.memory_text.clear();
  if (!snap || !state.data) return;
  ModelConfig model = snap->model_config;
  TrainConfig train = snap->train_config;
  try {
    apply_form(t.form.fields, model, train);
  } catch (const std::exception&) {
    return;  // the form's own error says why
  }
  if (state.now - t.available_at > 5.0) {
    t.available = available_memory();
    t.available_at = state.now;
  }
  const std::uint64_t need = estimate_training_memory(model, train, dataset_bytes(*state.data, train)).total();
  const bool known = t.available != UINT64_MAX;
  t.memory_fits = !known || need <= t.available;
  t.memory_text = "training needs about " + format_bytes(need) +
                  (known ? " of " + format_bytes(t.available) + " available" : std::string());
  if (!t.memory_fits) t.memory_text += ": it does not fit";
  ImGui::PushStyleColor(ImGuiCol_Text, t.memory_fits ? ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled) : kWarningColour);
  ImGui::TextUnformatted(t.memory_text.c_str());
  ImGui::PopStyleColor();
}

void draw_model_form(AppState& state, const Snapshot* snap) {
  ModelForm& form = state.training.form;
  if (snap) follow_running_model(form, *snap);
  draw_form_fields(state, form.fields);

  ImGui::BeginDisabled(!state.trainer || !snap);
  if (ImGui::Button("Rebuild model…")) {
    form.requested_model = snap->model_config;
    form.requested_train = snap->train_config;
    form.error.clear();
    try {
      apply_form(form.fields, form.requested_model, form.requested_train);
      ImGui::OpenPopup("Rebuild the model?");
    } catch (const std::exception& e) {
      form.error = e.what();
    }
  }
  state.note_rect("form_rebuild");
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::BeginDisabled(!form.edited());
  if (ImGui::SmallButton("Revert")) {
    form.fields = form.running;
    form.error.clear();
  }
  ImGui::EndDisabled();
  if (snap && ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
    ImGui::SetTooltip("Back to the running model: %s", describe_run(snap->model_config, snap->train_config).c_str());
  if (form.edited()) {
    ImGui::SameLine();
    ImGui::TextDisabled("edited");
  }
  draw_memory_estimate(state, snap);
  if (!form.error.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, kErrorColour);
    ImGui::TextWrapped("%s", form.error.c_str());
    ImGui::PopStyleColor();
  }
  draw_rebuild_confirmation(state, snap);
}

void draw_files(AppState& state, const Snapshot* snap) {
  TrainingPanelState& t = state.training;
  if (snap && snap->data) {
    const Dataset& d = *snap->data;
    ImGui::Text("%s: %d train, %d test, %s", d.name.c_str(), d.train.count, d.test.count,
                image_shape_text(d.train.channels, d.train.height, d.train.width).c_str());
    if (!d.class_names.empty()) {
      ImGui::SameLine();
      ImGui::TextDisabled("%zu classes", d.class_names.size());
    }
  }
  const ImGuiStyle& style = ImGui::GetStyle();
  const float bw = ImGui::GetFontSize() * 4.5f, browse_w = ImGui::GetFrameHeight();
  ImGui::BeginDisabled(state.data_loading.valid());
  ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - bw - browse_w - 2 * style.ItemSpacing.x);
  const bool enter = ImGui::InputTextWithHint("##data", "data folder or file", t.data_path, sizeof t.data_path,
                                              ImGuiInputTextFlags_EnterReturnsTrue);
  ImGui::SameLine();
  if (ImGui::Button("…##data", ImVec2(browse_w, 0))) open_file_chooser(state, ChooserPurpose::OpenData, t.data_path);
  state.note_rect("data_browse");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Choose a data folder or file");
  ImGui::SameLine();
  if ((ImGui::Button("Open", ImVec2(bw, 0)) || enter) && t.data_path[0]) open_path(state, t.data_path);
  ImGui::EndDisabled();

  ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - browse_w - style.ItemSpacing.x);
  ImGui::InputTextWithHint("##file", "checkpoint file", t.file_path, sizeof t.file_path);
  ImGui::SameLine();
  if (ImGui::Button("…##file", ImVec2(browse_w, 0))) open_file_chooser(state, ChooserPurpose::CheckpointPath, t.file_path);
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Choose the checkpoint file Save and Load use");
  ImGui::BeginDisabled(!state.trainer || !t.file_path[0]);
  const std::filesystem::path file = t.file_path;
  if (ImGui::Button("Save")) save_checkpoint(state, file);
  ImGui::SameLine();
  if (ImGui::Button("Load")) state.trainer->load(file);
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::BeginDisabled(!state.trainer);
  std::filesystem::path beside = file;
  beside.replace_extension(".safetensors");
  if (ImGui::Button("Export .safetensors…"))
    open_file_chooser(state, ChooserPurpose::ExportSafetensors, beside, beside.filename().string());
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Weights with PyTorch names, into a file you choose");
  ImGui::SameLine();
  if (ImGui::Button("Import…")) open_file_chooser(state, ChooserPurpose::ImportSafetensors, beside);
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Load weights from a .safetensors file you choose");
  ImGui::EndDisabled();

  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6);
  if (ImGui::InputInt("autosave every (min)", &state.autosave.minutes)) {
    state.autosave.minutes = std::clamp(state.autosave.minutes, 0, 120);
    state.autosave.saved_minutes = state.autosave.minutes;  // the user's own choice is kept
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
      ImGui::PushStyleColor(ImGuiCol_Text, log_colour(line.severity));
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

std::string describe_follow(const FollowStatus& f) { return "following " + f.folder.string() + " · " + follow_progress(f); }

std::string follow_progress(const FollowStatus& f) {
  std::string text;
  char part[96];
  if (!f.has_weights) {
    text += f.folder_present ? "waiting for the run…" : "waiting for the folder…";
  } else {
    std::snprintf(part, sizeof part, "step %lld", static_cast<long long>(f.step));
    text += f.step >= 0 ? part : "weights shown";
    std::snprintf(part, sizeof part, " (epoch %.3g)", f.epoch);
    if (std::isfinite(f.epoch)) text += part;
  }
  if (const auto age = f.seconds_since_change()) {
    std::snprintf(part, sizeof part, " · changed %.0f s ago", *age);
    text += part;
  }
  if (f.finished) text += " · finished";
  else text += f.inotify ? " · inotify" : " · polling";
  return text;
}

std::string describe_form(const ModelForm& form) {
  const ModelFormFields& f = form.fields;
  return std::string(kFamilies[std::clamp(f.family, 0, 3)]) + ", latent " + std::to_string(f.latent) +
         (form.edited() ? ", edited" : "");
}

void draw_training(AppState& state, const Snapshot* snap) {
  draw_controls(state, snap);
  ImGui::Separator();
  draw_live_settings(state, snap);
  const bool model_settings = ImGui::CollapsingHeader("Model settings");
  state.note_rect("model_settings");
  if (model_settings) draw_model_form(state, snap);
  if (ImGui::CollapsingHeader("Data & checkpoints")) draw_files(state, snap);
  ImGui::TextDisabled("Log");
  draw_log(state, snap);
}

}  // namespace vaelab::app
