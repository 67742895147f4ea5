// App: the per-frame orchestration described in app.hpp. Owns no GL resources itself (the panel
// structs in AppState do) and never blocks on the trainer: commands are queued, data folders are
// read on a background thread.
#include "app/app.hpp"

#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include <unistd.h>

#ifdef __linux__
#include <sys/resource.h>
#endif

#include "app/gl_util.hpp"
#include "app/image_export.hpp"
#include "app/panels.hpp"
#include "core/atomic_file.hpp"
#include "core/autosave.hpp"
#include "core/data_source.hpp"
#include "core/error.hpp"

namespace vaelab::app {
namespace {

bool looks_like_idx(const std::filesystem::path& p) {
  const std::string name = p.filename().string();
  return name.find("idx1-ubyte") != std::string::npos || name.find("idx3-ubyte") != std::string::npos ||
         name.find("idx2-ubyte") != std::string::npos;
}

// A file that is data (an IDX image file, a .npy or .npz), not a checkpoint.
bool is_data_file(const std::filesystem::path& p) {
  try {
    const DataKind kind = detect_data_kind(p);
    return kind == DataKind::IdxFile || kind == DataKind::Npy || kind == DataKind::Npz;
  } catch (const Error&) {
    return false;
  }
}

// Reads on a background thread, counting into `progress`; quitting or Cancel sets `cancel` and
// the read stops within one chunk.
std::future<std::shared_ptr<const Dataset>> read_data_async(std::filesystem::path path, const LoadOptions& options,
                                                            const CancelFlag* cancel, LoadProgress* progress) {
  return std::async(std::launch::async, [path, options, cancel, progress] {
    return std::shared_ptr<const Dataset>(std::make_shared<Dataset>(load_dataset(path, options, cancel, progress)));
  });
}

// Starts reading `p` in the background; the data field shows it meanwhile.
void start_reading(AppState& s, const std::filesystem::path& p) {
  s.data_cancel = false;
  s.data_progress.done = 0;
  s.data_progress.total = 0;
  s.data_before_loading = s.training.data_path;
  s.data_loading_path = p.string();
  s.data_loading = read_data_async(p, s.options.data_options, &s.data_cancel, &s.data_progress);
  std::snprintf(s.training.data_path, sizeof s.training.data_path, "%s", p.c_str());
}

// Opening something else would replace a run that has trained (a followed run is the other
// program's, nothing of it is lost here).
bool would_lose_run(const AppState& s) { return s.trainer && s.snap && s.snap->step > 0 && !s.snap->follow; }

// A modal that stays open while its caller draws it, centred a little above the middle of the
// window, sized to its contents. True between it and ImGui::EndPopup, as BeginPopupModal.
bool begin_centred_modal(const char* title) {
  if (!ImGui::IsPopupOpen(title)) ImGui::OpenPopup(title);
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(ImVec2(vp->WorkPos.x + vp->WorkSize.x * 0.5f, vp->WorkPos.y + vp->WorkSize.y * 0.4f),
                          ImGuiCond_Always, ImVec2(0.5f, 0.5f));
  return ImGui::BeginPopupModal(title, nullptr, ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings);
}

}  // namespace

void open_path(AppState& s, const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::path p = path;
  // A dropped IDX label file opens its folder.
  if (!std::filesystem::is_directory(p, ec) && looks_like_idx(p) && !is_data_file(p)) p = p.parent_path();
  if (std::filesystem::is_directory(p, ec) || is_data_file(p)) {
    if (s.data_loading.valid()) {
      s.post(Severity::Warning, "Still reading " + s.data_loading_path + "; try again in a moment.");
      return;
    }
    start_reading(s, p);
    return;
  }
  if (!std::filesystem::exists(p, ec)) {
    s.post(Severity::Error, "No such file or folder: " + p.string());
    return;
  }
  if (!s.trainer) {
    s.post(Severity::Error, "Open a data folder first: a model needs data to train on (" + p.string() + ").");
    return;
  }
  std::snprintf(s.training.file_path, sizeof s.training.file_path, "%s", p.c_str());
  if (p.extension() == ".safetensors") s.trainer->import_safetensors(p);
  else s.trainer->load(p);
}

void save_checkpoint(AppState& s, const std::filesystem::path& file) {
  std::error_code ec;  // the default folder may not exist yet; a failure shows in the trainer's log
  std::filesystem::create_directories(file.parent_path(), ec);
  s.trainer->save(file);  // on the trainer thread, atomic; non-finite weights are refused there
}

void follow_run(AppState& s, const std::filesystem::path& folder) {
  std::snprintf(s.follow.folder, sizeof s.follow.folder, "%s", folder.c_str());
  ImGui::GetIO().WantSaveIniSettings = true;  // the folder is offered again next time
  if (!s.trainer) {  // the data is still being read: start_trainer follows it
    s.options.follow = folder;
    return;
  }
  s.trainer->follow(folder);
}

void continue_here(AppState& s) {
  if (s.trainer) s.trainer->continue_here();
}

App::App(AppState& state) : s_(state) {
  Options& o = s_.options;
  // Temporaries of saves cut short by a crash or a kill (never a file a live writer holds).
  if (const int removed = remove_stale_temporaries(s_.data_dir); removed > 0)
    std::fprintf(stderr, "vaelab: removed %d unfinished temporary file(s) in %s\n", removed, s_.data_dir.c_str());
  const std::filesystem::path data = o.data.empty() ? default_data_folder() : o.data;
  if (!s_.training.file_path[0])
    std::snprintf(s_.training.file_path, sizeof s_.training.file_path, "%s", (s_.data_dir / "checkpoint.vaelab").c_str());
  start_reading(s_, data);
  s_.gap.sent_k = o.trainer.eval_iwae_k;
  s_.gap.sent_points = o.trainer.iwae_points;
  s_.gap.iwae_on = o.trainer.eval_iwae_k > 0;
  if (o.trainer.eval_iwae_k > 0) s_.gap.iwae_k = s_.gap.sent_k;
  if (o.trainer.iwae_points > 0) s_.gap.iwae_points = s_.gap.sent_points;
  else s_.gap.sent_points = s_.gap.iwae_points;  // 0 (all images) is shown as the default subset
  s_.gap.measure = o.trainer.measure_estimators;
  // A second instance on the same data folder autosaves under its own name, and does not offer
  // the first one's autosave (that run is still going).
  AutosaveState& a = s_.autosave;
  a.lock = std::make_unique<AutosaveLock>(s_.data_dir);
  a.file = instance_autosave_file(s_.data_dir, a.lock->owned(), static_cast<long>(::getpid()));
  a.aside = a.lock->owned() ? autosave_aside_file(s_.data_dir) : std::filesystem::path(a.file).replace_extension(".previous.vaelab");
  if (a.lock->held_elsewhere())
    s_.post(Severity::Info, "Another vaelab autosaves to " + autosave_file(s_.data_dir).string() + "; this one autosaves to " +
                                a.file.string() + ".");
  else if (!a.lock->owned())  // e.g. a read-only folder: the autosave will fail too, and the exit asks where to save
    s_.post(Severity::Warning, "Autosaves may fail: " + a.lock->error() + ". Save the run with File → Save checkpoint as….");
  if (!o.follow.empty()) std::snprintf(s_.follow.folder, sizeof s_.follow.folder, "%s", o.follow.c_str());
  // A followed run's weights are the other program's: no resume offer, and no autosave of them.
  // Another instance's running autosave is not offered; one in a folder this process cannot lock is.
  if (o.load.empty() && !o.no_resume && o.follow.empty() && !a.lock->held_elsewhere()) find_autosave();
}

App::~App() {
  if (s_.trainer) {
    if (!s_.autosave.exit_saved) note_state_before_stop();
    s_.trainer->request_stop();
    s_.trainer->join();
    if (!following() && !s_.autosave.exit_saved) {  // the window closed another way (an error)
      const std::string error = autosave_on_exit();
      if (!error.empty()) std::fprintf(stderr, "vaelab: the exit autosave failed: %s\n", error.c_str());
    }
    s_.trainer.reset();
  }
  s_.data_cancel = true;  // a data folder still being read stops now instead of holding up the exit
  if (s_.data_loading.valid()) s_.data_loading.wait();
}

void App::find_autosave() {
  AutosaveState& a = s_.autosave;
  for (const std::filesystem::path& file : resumable_autosaves(s_.data_dir)) {
    std::string why;
    if (auto info = inspect_autosave(file, why)) {
      a.offers.push_back(std::move(*info));
      continue;
    }
    if (why.empty()) continue;  // gone meanwhile
    // A damaged autosave is neither offered nor silently overwritten by the next one.
    const std::filesystem::path aside = file == a.file ? a.aside : instance_autosave_aside(file);
    try {
      move_autosave_aside(file, aside);
      s_.post(Severity::Warning, "The autosave cannot be resumed (" + why + "). It was moved to " + aside.string() + ".");
    } catch (const std::exception& e) {
      s_.post(Severity::Warning, "The autosave cannot be resumed (" + why + "); " + e.what());
    }
  }
  a.offer_open = !a.offers.empty();  // training waits for the answer
}

// One row of the resume offer: what the autosave holds, where it is, and its Resume button.
void App::offer_row(int i) {
  AutosaveState& a = s_.autosave;
  const AutosaveInfo& o = a.offers[static_cast<std::size_t>(i)];
  ImGui::PushID(i);
  const char* labels[] = {"model", "progress", "data", "saved"};
  char progress[96];
  // The epoch as the status line will show it once resumed; and whether it comes back paused.
  std::snprintf(progress, sizeof progress, "step %lld · epoch %d%s", static_cast<long long>(o.step),
                epoch_in_progress(o.epoch, false), o.paused ? " · paused" : "");
  const std::string saved = o.saved_at + " (" + describe_age(o.age_s) + ")";
  const std::string values[] = {o.model_text, progress, o.data_name.empty() ? "?" : o.data_name, saved};
  for (int k = 0; k < 4; ++k) {
    ImGui::TextDisabled("%-9s", labels[k]);
    ImGui::SameLine(ImGui::GetFontSize() * 5);
    ImGui::TextUnformatted(values[k].c_str());
  }
  ImGui::TextDisabled("%s%s", o.file.c_str(), o.file == a.file ? "" : " (another vaelab's, which has quit)");
  if (ImGui::Button("Resume", ImVec2(ImGui::GetFontSize() * 7, 0))) {
    a.answer = AutosaveState::Answer::Resume;
    a.chosen = i;
  }
  const std::string rect_name = i == 0 ? "resume_button" : "resume_button_" + std::to_string(i);
  s_.note_rect(rect_name.c_str());
  ImGui::PopID();
}

void App::resume_offer() {
  AutosaveState& a = s_.autosave;
  if (!a.offer_open) return;
  const char* title = "Resume the last run?";
  if (!begin_centred_modal(title)) return;
  ImGui::TextUnformatted(a.offers.size() == 1 ? "vaelab autosaved a run (it does so every few minutes and on exit):"
                                              : "vaelab autosaved these runs (it does so every few minutes and on exit):");
  for (int i = 0; i < static_cast<int>(a.offers.size()); ++i) {
    ImGui::Spacing();
    if (i > 0) ImGui::Separator();
    offer_row(i);
  }
  ImGui::Spacing();
  ImGui::Separator();
  if (ImGui::Button("Start fresh", ImVec2(ImGui::GetFontSize() * 7, 0))) a.answer = AutosaveState::Answer::StartFresh;
  s_.note_rect("fresh_button");
  ImGui::TextDisabled(a.offers.size() == 1 ? "Start fresh keeps the autosave as %s."
                                           : "Start fresh keeps them, autosave.vaelab as %s and the others as *.previous.vaelab.",
                      a.aside.filename().c_str());
  if (a.answer != AutosaveState::Answer::None) {
    a.offer_open = false;
    ImGui::CloseCurrentPopup();
    if (a.answer == AutosaveState::Answer::StartFresh) start_fresh();
  }
  ImGui::EndPopup();
}

// "Start fresh": every offered autosave is kept where the next autosaves cannot replace it and
// where it is not offered again.
void App::start_fresh() {
  const AutosaveState& a = s_.autosave;
  for (const AutosaveInfo& o : a.offers) {
    try {
      std::filesystem::path kept;
      if (o.file == a.file) kept = keep_longer_autosave(a.file, a.aside, -1);  // never over a longer run already kept
      else move_autosave_aside(o.file, kept = instance_autosave_aside(o.file));
      s_.post(Severity::Info, "Starting fresh; the autosave was kept as " + kept.string() + ".");
    } catch (const std::exception& e) {
      s_.post(Severity::Warning, std::string("Starting fresh; ") + e.what());
    }
  }
}

void App::settle_offer() {
  AutosaveState& a = s_.autosave;
  if (a.offer_open || a.answer == AutosaveState::Answer::None || !a.parked_data) return;
  const bool resume = a.answer == AutosaveState::Answer::Resume;
  const AutosaveInfo offer = resume ? a.offers[static_cast<std::size_t>(a.chosen)] : AutosaveInfo{};
  if (resume) s_.options.load = offer.file;
  if (resume && offer.paused) s_.options.trainer.start_paused = true;  // a paused run comes back paused
  const bool resumed = start_trainer(std::move(a.parked_data));
  a.parked_data.reset();
  if (resume && resumed) {
    s_.post(Severity::Info, "Resumed the autosave of " + offer.saved_at + " at step " + std::to_string(offer.step) + ".");
    a.clock.saved(s_.now, offer.step);  // nothing new to autosave until it trains
    // Another instance's autosave now continues here, into this one's: kept aside, not offered again.
    if (offer.file != a.file) {
      try {
        move_autosave_aside(offer.file, instance_autosave_aside(offer.file));
      } catch (const std::exception& e) {
        s_.post(Severity::Warning, e.what());
      }
    }
  }
  a.answer = AutosaveState::Answer::None;
}

void App::autosave_tick() {
  AutosaveState& a = s_.autosave;
  if (!s_.trainer || !s_.snap) return;
  a.clock.set_interval(a.minutes * 60.0);
  if (!a.clock.due(s_.now, s_.snap->step)) return;
  a.clock.saved(s_.now, s_.snap->step);
  if (!keep_longer_autosave_or_say(s_.snap->step)) return;
  save_checkpoint(s_, a.file);
  note_autosave_paused(a.file, s_.snap->state == TrainerState::Paused);
}

bool App::keep_longer_autosave_or_say(std::int64_t step) {
  const AutosaveState& a = s_.autosave;
  try {
    const std::filesystem::path kept = keep_longer_autosave(a.file, a.aside, step);
    if (!kept.empty()) {
      const std::string note = "The autosave held a longer run; it was kept as " + kept.string() + ".";
      std::fprintf(stderr, "vaelab: %s\n", note.c_str());
      s_.post(Severity::Info, note);
    }
    return true;
  } catch (const std::exception& e) {
    const std::string note = std::string("Not autosaving, to keep the longer run in the autosave: ") + e.what();
    std::fprintf(stderr, "vaelab: %s\n", note.c_str());
    s_.post(Severity::Warning, note);
    return false;
  }
}

std::string App::autosave_on_exit() {
  // The trainer thread has been joined: save_now runs here, synchronously.
  AutosaveState& a = s_.autosave;
  const auto snap = s_.trainer->snapshot();
  if (a.minutes <= 0 || !snap || snap->step == 0) return "";  // off, or nothing trained worth keeping
  try {
    std::error_code ec;
    std::filesystem::create_directories(a.file.parent_path(), ec);
    if (!keep_longer_autosave_or_say(snap->step)) return "the autosave holds a longer run that could not be kept aside";
    s_.trainer->save_now(a.file);
    note_autosave_paused(a.file, a.paused_at_exit);
    std::fprintf(stderr, "vaelab: autosaved step %lld to %s\n", static_cast<long long>(snap->step), a.file.c_str());
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

// Stopping the trainer pauses it, so whether the run was paused is read before: a running run
// resumes running, a paused one paused.
void App::note_state_before_stop() {
  const auto snap = s_.trainer->snapshot();
  s_.autosave.paused_at_exit = snap && snap->state != TrainerState::Running;
}

bool App::ready_to_exit(bool forced) {
  AutosaveState& a = s_.autosave;
  if (s_.trainer && !a.exit_saved) {
    note_state_before_stop();
    s_.trainer->request_stop();
    s_.trainer->join();
    if (!following()) a.exit_error = autosave_on_exit();
    a.exit_saved = true;  // attempted: Retry and Save elsewhere take it from here
    if (!a.exit_error.empty()) {
      std::fprintf(stderr, "vaelab: the exit autosave failed: %s\n", a.exit_error.c_str());
      const char* home = std::getenv("HOME");
      const std::filesystem::path suggested = std::filesystem::path(home && *home ? home : ".") /
                                              ("vaelab-unsaved-" + std::to_string(::getpid()) + ".vaelab");
      std::snprintf(a.elsewhere, sizeof a.elsewhere, "%s", suggested.c_str());
    }
  }
  if (a.exit_error.empty() || forced) return true;
  s_.quit = false;  // the window stays open with the exit dialog
  return false;
}

void App::exit_dialog() {
  AutosaveState& a = s_.autosave;
  if (a.exit_error.empty()) return;
  const char* title = "The run was not saved";
  if (!begin_centred_modal(title)) return;
  ImGui::TextUnformatted("The autosave on exit failed, so closing now would lose this run:");
  ImGui::PushTextWrapPos(ImGui::GetFontSize() * 36);
  ImGui::TextColored(ImVec4(1.0f, 0.45f, 0.4f, 1.0f), "%s", a.exit_error.c_str());
  ImGui::PopTextWrapPos();
  ImGui::TextDisabled("Training has stopped; the run is still here.");
  ImGui::Spacing();
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 30);
  ImGui::InputText("##elsewhere", a.elsewhere, sizeof a.elsewhere);
  s_.note_rect("elsewhere_path");
  const float bw = ImGui::GetFontSize() * 9;
  std::string error;
  bool done = false;
  if (ImGui::Button("Save elsewhere", ImVec2(bw, 0))) {
    try {
      s_.trainer->save_now(a.elsewhere);
      std::fprintf(stderr, "vaelab: saved step %lld to %s\n", static_cast<long long>(s_.trainer->snapshot()->step), a.elsewhere);
      done = true;
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  s_.note_rect("save_elsewhere_button");
  ImGui::SameLine();
  if (ImGui::Button("Retry", ImVec2(bw, 0))) {
    error = autosave_on_exit();
    done = error.empty();
  }
  s_.note_rect("retry_button");
  ImGui::SameLine();
  if (ImGui::Button("Quit without saving", ImVec2(bw, 0))) {
    std::fprintf(stderr, "vaelab: quit without saving the run (%s)\n", a.exit_error.c_str());
    done = true;
  }
  s_.note_rect("quit_unsaved_button");
  if (!error.empty()) a.exit_error = error;  // the latest reason, in the same place
  if (done) {
    a.exit_error.clear();
    s_.quit = true;
    ImGui::CloseCurrentPopup();
  }
  ImGui::EndPopup();
}

bool App::start_trainer(std::shared_ptr<const Dataset> data) {
  bool loaded = false;
  Options& o = s_.options;
  ModelConfig model = o.model;
  model.image_c = data->train.channels;
  model.image_h = data->train.height;
  model.image_w = data->train.width;
  // The Trainer is built and started on a helper thread that first lowers its own scheduling
  // priority: the trainer thread and its pool's workers are created from it and inherit that
  // (on Linux the nice value is per thread), the UI thread keeps its own. On a busy machine
  // the scheduler then runs the UI's few milliseconds per frame at once instead of sharing the
  // cores evenly with two always-busy training threads; when the UI idles, training has them.
  std::thread builder([&] {
#ifdef __linux__
    if (o.trainer_nice > 0) {
      errno = 0;
      const int base = getpriority(PRIO_PROCESS, 0);
      if (errno == 0) setpriority(PRIO_PROCESS, 0, std::min(19, base + o.trainer_nice));
    }
#endif
    try {
      auto trainer = std::make_unique<Trainer>(data, model, o.train, o.trainer);
      if (!o.load.empty()) {
        try {
          if (o.load.extension() == ".safetensors") trainer->import_safetensors_now(o.load);
          else trainer->load_now(o.load);
          loaded = true;
          // Ctrl+S and Save go to the user's own checkpoint, never into the autosave file.
          if (o.load != s_.autosave.file && autosave_instance_pid(o.load) == 0)
            std::snprintf(s_.training.file_path, sizeof s_.training.file_path, "%s", o.load.c_str());
        } catch (const std::exception& e) {
          std::string aside;
          if (o.load == s_.autosave.file) {  // keep it: the fresh run's next autosave would replace it
            try {
              const std::filesystem::path kept = keep_longer_autosave(o.load, s_.autosave.aside, -1);
              aside = " It was moved to " + kept.string() + "; training starts fresh.";
            } catch (const std::exception&) {
              // stays in place; the next autosave keeps it aside before writing (keep_longer_autosave)
            }
          }
          s_.post(Severity::Error, std::string("Could not open ") + o.load.string() + ": " + e.what() + aside);
        }
        o.load.clear();
      }
      if (!o.follow.empty()) {
        trainer->follow(o.follow);  // queued: the trainer follows before its first step
        o.follow.clear();
      }
      trainer->start();
      s_.trainer = std::move(trainer);
      s_.data = std::move(data);
    } catch (const std::exception& e) {
      s_.post(Severity::Error, std::string("Could not start training: ") + e.what());
    }
  });
  builder.join();  // the UI thread waits, as before; s_ is only touched while it does
  return loaded;
}

void App::poll_data_loading() {
  if (!s_.data_loading.valid() ||
      s_.data_loading.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    return;
  const bool cancelled = s_.data_cancel.load();
  s_.data_cancel = false;
  try {
    std::shared_ptr<const Dataset> data = s_.data_loading.get();
    if (data->train.count == 0) throw Error("the folder has no training images");
    if (!s_.trainer && (s_.autosave.offer_open || s_.autosave.answer != AutosaveState::Answer::None)) {
      s_.autosave.parked_data = data;  // the resume offer decides what trains on it
    } else if (!s_.trainer) {
      start_trainer(data);
    } else {
      s_.trainer->set_data(data);
      s_.data = data;
    }
    s_.post(Severity::Info, "Opened " + data->name + ": " + std::to_string(data->train.count) + " training images");
    for (const std::string& note : data->notes) s_.post(Severity::Info, note);
    s_.chooser.recent.remember(s_.data_loading_path);
    ImGui::GetIO().WantSaveIniSettings = true;  // the recent paths and the data field
  } catch (const std::exception& e) {
    if (cancelled) {  // the user's Cancel: what was open stays, and the field says so again
      if (s_.data) std::snprintf(s_.training.data_path, sizeof s_.training.data_path, "%s", s_.data_before_loading.c_str());
      s_.post(Severity::Info, "Cancelled reading " + s_.data_loading_path +
                                  (s_.data ? "; still on " + s_.data->name + "." : "."));
      s_.data_loading = {};
      return;
    }
    s_.post(Severity::Error, "Could not open the data folder " + s_.data_loading_path + ": " + e.what() +
                                 (s_.trainer ? "" : "\nChoose the data with File → Open data…, or drop it on the window."));
  }
  s_.data_loading = {};
}

void App::collect_trainer_errors() {
  if (!s_.snap) return;
  for (const LogLine& line : s_.snap->log) {
    if (line.serial <= s_.errors_seen && s_.errors_seen != 0) continue;
    if (line.severity == Severity::Error) s_.post(Severity::Error, line.text);
  }
  if (!s_.snap->log.empty()) s_.errors_seen = std::max(s_.errors_seen, s_.snap->log.back().serial);
}

void App::on_drop(const std::vector<std::string>& paths) {
  if (paths.empty()) return;
  // Several IDX files from one folder open the folder, as the first one does.
  const std::filesystem::path dropped = paths.front();
  if (would_lose_run(s_)) {  // asks first (drop_confirmation)
    s_.drop_pending = dropped;
    s_.drop_confirm_requested = true;
    return;
  }
  open_path(s_, dropped);
}

void App::drop_confirmation() {
  const char* title = "Open the dropped file?";
  if (s_.drop_confirm_requested) {
    ImGui::OpenPopup(title);
    s_.drop_confirm_requested = false;
  }
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(ImVec2(vp->WorkPos.x + vp->WorkSize.x * 0.5f, vp->WorkPos.y + vp->WorkSize.y * 0.4f),
                          ImGuiCond_Appearing, ImVec2(0.5f, 0.5f));
  ImGui::SetNextWindowSizeConstraints(ImVec2(0, 0), ImVec2(ImGui::GetFontSize() * 36, FLT_MAX));
  if (!ImGui::BeginPopupModal(title, nullptr, ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings)) return;
  s_.note_rect("drop_window");
  std::error_code ec;
  const bool data = std::filesystem::is_directory(s_.drop_pending, ec) || looks_like_idx(s_.drop_pending) ||
                    is_data_file(s_.drop_pending);
  ImGui::TextWrapped("%s %s", data ? "Train on" : "Open", s_.drop_pending.c_str());
  if (s_.snap) {
    ImGui::PushStyleColor(ImGuiCol_Text, kWarningColour);
    ImGui::TextWrapped(data ? "The running %s at step %s goes on training on the new data; for another image "
                              "size a fresh model is built."
                            : "Lost: the running %s at step %s, its weights and progress.",
                       describe_model(s_.snap->model_config).c_str(), with_commas(s_.snap->step).c_str());
    ImGui::PopStyleColor();
  }
  const char* file = s_.training.file_path;
  ImGui::BeginDisabled(!s_.trainer || !file[0]);
  if (ImGui::Button("Save first")) save_checkpoint(s_, file);
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::TextDisabled("to %s", file[0] ? file : "(no checkpoint path: Data & checkpoints)");
  ImGui::Spacing();
  const float bw = ImGui::GetFontSize() * 7;
  bool close = false;
  if (ImGui::Button("Open", ImVec2(bw, 0))) {
    open_path(s_, s_.drop_pending);
    close = true;
  }
  s_.note_rect("drop_confirm");
  ImGui::SameLine();
  if (ImGui::Button("Cancel", ImVec2(bw, 0)) || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) close = true;
  if (close) {
    s_.drop_pending.clear();
    ImGui::CloseCurrentPopup();
  }
  ImGui::EndPopup();
}

void App::loading_banner() {
  if (!s_.data_loading.valid()) return;
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(ImVec2(vp->WorkPos.x + vp->WorkSize.x * 0.5f, vp->WorkPos.y + 8), ImGuiCond_Always, ImVec2(0.5f, 0));
  ImGui::SetNextWindowBgAlpha(0.94f);
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_AlwaysAutoResize |
                                 ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoFocusOnAppearing;
  if (ImGui::Begin("##loading", nullptr, flags)) {
    ImGui::BringWindowToDisplayFront(ImGui::GetCurrentWindow());
    const long long done = s_.data_progress.done.load(), total = s_.data_progress.total.load();
    const std::string name = std::filesystem::path(s_.data_loading_path).filename().string();
    const bool cancelling = s_.data_cancel.load();
    if (cancelling) ImGui::Text("Cancelling the read of %s …", name.c_str());
    else if (total > 0) ImGui::Text("Loading %s … %s / %s images", name.c_str(), with_commas(done).c_str(), with_commas(total).c_str());
    else ImGui::Text("Reading %s …", name.c_str());
    const float em = ImGui::GetFontSize();
    const float fraction = total > 0 ? static_cast<float>(done) / static_cast<float>(total) : 0.0f;
    ImGui::ProgressBar(fraction, ImVec2(em * 20, 0), total > 0 ? nullptr : "");
    s_.note_rect("loading_progress");
    ImGui::SameLine();
    ImGui::BeginDisabled(cancelling);
    if (ImGui::Button("Cancel", ImVec2(em * 5, 0))) s_.data_cancel = true;
    ImGui::EndDisabled();
    s_.note_rect("loading_cancel");
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
      ImGui::SetTooltip(s_.data ? "Stop reading; %s stays open" : "Stop reading", s_.data ? s_.data->name.c_str() : "");
  }
  ImGui::End();
}

namespace {

// What of a snapshot shows on screen. The trainer republishes while paused; this only changes
// when something drawn does.
std::uint64_t visual_key(const Snapshot* s) {
  if (!s) return 0;
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(static_cast<std::uint64_t>(s->step));
  mix(static_cast<std::uint64_t>(s->state));
  mix(reinterpret_cast<std::uintptr_t>(s->model.get()));
  mix(reinterpret_cast<std::uintptr_t>(s->data.get()));
  mix(static_cast<std::uint64_t>(s->latent_step));
  mix(s->log.empty() ? 0 : s->log.back().serial);
  mix(s->history.steps.size());
  mix(s->history.epochs.size());
  mix(s->history.markers.size());
  mix(static_cast<std::uint64_t>(s->epoch));
  std::uint32_t bits[3];
  std::memcpy(&bits[0], &s->train_config.lr, 4);
  std::memcpy(&bits[1], &s->train_config.beta, 4);
  bits[2] = static_cast<std::uint32_t>(s->train_config.warmup_steps);
  for (std::uint32_t b : bits) mix(b);
  return h;
}

}  // namespace

bool App::wants_frame() {
  if (screenshots_requested_ > 0 || s_.latent.animating) return true;
  if (s_.data_loading.valid()) return true;  // the progress moves, or the data arrived
  if (!s_.trainer) return false;
  // A followed run's status line counts the seconds since its last change.
  if (s_.snap && s_.snap->follow && ImGui::GetTime() - s_.now >= 1.0) return true;
  return visual_key(s_.trainer->snapshot().get()) != drawn_key_;
}

void App::on_key(int key, int mods) {
  // Straight from GLFW's key callback: ImGui 1.86 polls key state once per frame, so a press and
  // release between two frames (a quick tap, or xdotool) would be lost there.
  const ImGuiIO& io = ImGui::GetIO();
  const bool ctrl = (mods & GLFW_MOD_CONTROL) != 0;
  if (key == GLFW_KEY_F12) request_screenshot();
  if (ctrl && key == GLFW_KEY_Q) s_.quit = true;
  if (io.WantTextInput) return;
  if (ctrl && key == GLFW_KEY_S && s_.trainer && s_.training.file_path[0]) save_checkpoint(s_, s_.training.file_path);
  if (!ctrl && key == GLFW_KEY_SPACE && s_.trainer && s_.snap && !s_.snap->follow && !ImGui::IsAnyItemActive())
    s_.snap->state == TrainerState::Running ? s_.trainer->pause() : s_.trainer->resume();
}

void App::menu_bar() {
  if (!ImGui::BeginMainMenuBar()) return;
  menu_height_ = ImGui::GetWindowSize().y;
  const bool file_menu = ImGui::BeginMenu("File");
  s_.note_rect("menu_file");
  if (file_menu) {
    const std::filesystem::path file = s_.training.file_path;
    const bool can = s_.trainer && !file.empty();
    if (ImGui::MenuItem("Open data…", nullptr, false, !s_.data_loading.valid()))
      open_file_chooser(s_, ChooserPurpose::OpenData, s_.training.data_path);
    s_.note_rect("menu_open_data");
    ImGui::Separator();
    if (ImGui::MenuItem("Save checkpoint", "Ctrl+S", false, can)) save_checkpoint(s_, file);
    if (ImGui::MenuItem("Save checkpoint as…", nullptr, false, s_.trainer != nullptr))
      open_file_chooser(s_, ChooserPurpose::SaveCheckpointAs, file);
    s_.note_rect("menu_save_as");
    if (ImGui::MenuItem("Load checkpoint…", nullptr, false, s_.trainer != nullptr))
      open_file_chooser(s_, ChooserPurpose::LoadCheckpoint, file);
    if (ImGui::MenuItem("Import safetensors…", nullptr, false, s_.trainer != nullptr))
      open_file_chooser(s_, ChooserPurpose::ImportSafetensors, std::filesystem::path(file).replace_extension(".safetensors"));
    if (ImGui::MenuItem("Export safetensors…", nullptr, false, s_.trainer != nullptr)) {
      const std::filesystem::path out = std::filesystem::path(file).replace_extension(".safetensors");
      open_file_chooser(s_, ChooserPurpose::ExportSafetensors, out, out.filename().string());
    }
    ImGui::Separator();
    if (ImGui::MenuItem("Follow a run…")) s_.follow.open_requested = true;
    s_.note_rect("menu_follow");
    if (ImGui::MenuItem("Continue here", nullptr, false, following())) continue_here(s_);
    ImGui::Separator();
    if (ImGui::MenuItem("Screenshot", "F12")) request_screenshot();
    ImGui::Separator();
    if (ImGui::MenuItem("Quit", "Ctrl+Q")) s_.quit = true;
    ImGui::EndMenu();
  }
  const bool view_menu = ImGui::BeginMenu("View");
  s_.note_rect("menu_view");
  if (view_menu) {
    if (ImGui::MenuItem("Grey images", nullptr, s_.colormap == kGrey)) s_.colormap = kGrey;
    if (ImGui::MenuItem("Viridis images", nullptr, s_.colormap == kViridis)) s_.colormap = kViridis;
    ImGui::Separator();
    // Manifold and the Variational gap share a window as two tabs: this brings one forward.
    if (ImGui::MenuItem(kTabManifold, nullptr, !s_.gap.open)) s_.gap.open = false;
    if (ImGui::MenuItem(kTabGap, nullptr, s_.gap.open)) s_.gap.open = true;
    if (ImGui::MenuItem("Reset layout")) s_.reset_layout = true;
    s_.note_rect("menu_reset_layout");
    ImGui::EndMenu();
  }
  const bool help_menu = ImGui::BeginMenu("Help");
  s_.note_rect("menu_help");
  if (help_menu) {
    if (ImGui::MenuItem("What am I looking at")) open_help(s_, kWinTraining);
    s_.note_rect("menu_help_pages");
    ImGui::Separator();
    ImGui::TextUnformatted("Space        pause / resume training\n"
                           "Ctrl+S       save the checkpoint\n"
                           "F12          screenshot into the export folder\n"
                           "Ctrl+Q       quit\n\n"
                           "Latent map:  drag to pan, wheel to zoom, click sets A,\n"
                           "             shift-click sets B, drag the yellow ring\n"
                           "             (or double-click) to move the decoder's z,\n"
                           "             right-click a code for its true posterior\n\n"
                           "Drop a data folder or file on the window to train on it,\n"
                           "or a checkpoint / .safetensors file to open it.\n"
                           "Each panel's (?) says what it shows.");
    ImGui::Separator();
    ImGui::TextDisabled("exports: %s", s_.export_dir.c_str());
    ImGui::TextDisabled("settings: %s", (s_.config_dir / "vaelab.ini").c_str());
    ImGui::EndMenu();
  }
  // Right-aligned summary.
  char right[160];
  if (s_.snap && s_.snap->data)
    std::snprintf(right, sizeof right, "%s · %s, latent %d · %.0f fps", s_.snap->data->name.c_str(),
                  to_string(s_.snap->model_config.family), s_.snap->model_config.latent, s_.stats.fps);
  else if (s_.data_loading.valid())
    std::snprintf(right, sizeof right, "reading %s …", std::filesystem::path(s_.data_loading_path).filename().c_str());
  else
    std::snprintf(right, sizeof right, "no data");
  // Right-aligned where it fits; cut with an ellipsis (and a tooltip) in a narrow window.
  const float w = ImGui::CalcTextSize(right).x;
  const float from = std::max(ImGui::GetCursorPosX() + 20, ImGui::GetWindowWidth() - w - 12);
  ImGui::SameLine(from);
  const ImVec4 dim = ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled);
  fitted_text(s_, "menu_summary", right, ImGui::GetWindowWidth() - from - 12, &dim);
  ImGui::EndMainMenuBar();
}

void App::messages() {
  // Info fades after a few seconds, warnings later, errors stay until dismissed.
  std::erase_if(s_.messages, [&](const Message& m) {
    return (m.severity == Severity::Info && s_.now - m.time > 6) || (m.severity == Severity::Warning && s_.now - m.time > 20);
  });
  if (s_.messages.size() > 6) s_.messages.erase(s_.messages.begin(), s_.messages.end() - 6);
  if (s_.messages.empty()) return;
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(ImVec2(vp->WorkPos.x + vp->WorkSize.x * 0.5f, vp->WorkPos.y + vp->WorkSize.y - 10), ImGuiCond_Always,
                          ImVec2(0.5f, 1.0f));
  ImGui::SetNextWindowSizeConstraints(ImVec2(200, 0), ImVec2(vp->WorkSize.x * 0.7f, vp->WorkSize.y * 0.5f));
  ImGui::SetNextWindowBgAlpha(0.94f);
  const ImGuiWindowFlags flags = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_AlwaysAutoResize |
                                 ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoFocusOnAppearing |
                                 ImGuiWindowFlags_NoNav;
  if (ImGui::Begin("##messages", nullptr, flags)) {
    ImGui::BringWindowToDisplayFront(ImGui::GetCurrentWindow());
    int remove = -1;
    for (std::size_t i = 0; i < s_.messages.size(); ++i) {
      const Message& m = s_.messages[i];
      ImGui::PushID(static_cast<int>(i));
      if (ImGui::SmallButton("×")) remove = static_cast<int>(i);
      ImGui::SameLine();
      const ImVec4 col = m.severity == Severity::Error     ? kErrorColour
                         : m.severity == Severity::Warning ? kWarningColour
                                                            : kInfoMessageColour;
      ImGui::PushStyleColor(ImGuiCol_Text, col);
      ImGui::PushTextWrapPos(vp->WorkSize.x * 0.65f);
      ImGui::TextUnformatted(m.severity == Severity::Error ? ("Error: " + m.text).c_str() : m.text.c_str());
      ImGui::PopTextWrapPos();
      ImGui::PopStyleColor();
      ImGui::PopID();
    }
    if (remove >= 0) s_.messages.erase(s_.messages.begin() + remove);
  }
  ImGui::End();
}

namespace {

struct PanelPlace {
  const char* window;
  Box fractions;     // the default tiling, as fractions of the work area
  float min_w, min_h;  // pixels: smaller, the panel's controls would not fit on their lines
};

// Default tiling (no docking in ImGui 1.86): three columns of 25 %, 40 % and 35 % of the width;
// the middle one holds the Latent map, the Clusters beside it below, then the Curves.
constexpr PanelPlace kPanelPlaces[] = {
    {kWinTraining, {0.00f, 0.00f, 0.25f, 0.60f}, 240, 200},
    {kWinSamples, {0.00f, 0.60f, 0.25f, 0.40f}, 200, 140},
    {kWinLatent, {0.25f, 0.00f, 0.40f, 0.38f}, 320, 220},
    {kWinClusters, {0.25f, 0.38f, 0.40f, 0.28f}, 300, 120},
    {kWinCurves, {0.25f, 0.66f, 0.40f, 0.34f}, 300, 160},
    {kWinDecoder, {0.65f, 0.00f, 0.35f, 0.28f}, 260, 160},
    {kWinInterpolation, {0.65f, 0.28f, 0.35f, 0.29f}, 260, 170},
    {kWinManifoldGap, {0.65f, 0.57f, 0.35f, 0.43f}, 300, 220},
};

const PanelPlace* find_place(const char* window) {
  for (const PanelPlace& p : kPanelPlaces)
    if (std::strcmp(p.window, window) == 0) return &p;
  return nullptr;
}

bool same_place(const Box& a, const Box& b) {
  return std::abs(a.x - b.x) < 0.5f && std::abs(a.y - b.y) < 0.5f && std::abs(a.w - b.w) < 0.5f && std::abs(a.h - b.h) < 0.5f;
}

}  // namespace

void App::layout(float top) {
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  work_area_ = Box{vp->Pos.x, vp->Pos.y + top, vp->Size.x, std::max(1.0f, vp->Size.y - top)};
  auto& fractions = s_.panel_fractions;
  std::erase_if(fractions, [](const auto& entry) { return !find_place(entry.first.c_str()); });  // panels of older versions
  // A layout saved before a panel existed would put the new one over the others: it gives way to
  // the default tiling.
  const bool lacks_a_panel =
      !fractions.empty() && std::any_of(std::begin(kPanelPlaces), std::end(kPanelPlaces),
                                        [&](const PanelPlace& p) { return !fractions.contains(p.window); });
  if (s_.reset_layout || lacks_a_panel) fractions.clear();
  for (const PanelPlace& p : kPanelPlaces) fractions.try_emplace(p.window, p.fractions);
  // A minimised window (a 0×0 viewport) neither moves the panels nor teaches them new places.
  area_usable_ = work_area_.w >= 64 && work_area_.h >= 64;
  place_all_ = area_usable_ && (s_.reset_layout || !(work_area_ == placed_area_));
  if (area_usable_) placed_area_ = work_area_;
}

void App::place_panel(const char* window) {
  // Software OpenGL (llvmpipe under Xvfb) pays for every pixel of every layer, and the window
  // backgrounds are a full layer. The frame is cleared to the window colour anyway, so a panel
  // that overlaps no other panel (the default tiling) skips drawing its background.
  if (ImGuiWindow* w = ImGui::FindWindowByName(window)) {
    bool overlap = false;
    for (const PanelPlace& p : kPanelPlaces) {
      if (std::strcmp(p.window, window) == 0) continue;
      ImGuiWindow* o = ImGui::FindWindowByName(p.window);
      if (!o || !o->WasActive) continue;
      const ImVec2 a0 = w->Pos, a1(w->Pos.x + w->Size.x, w->Pos.y + w->Size.y);
      const ImVec2 b0 = o->Pos, b1(o->Pos.x + o->Size.x, o->Pos.y + o->Size.y);
      if (a0.x < b1.x - 0.5f && b0.x < a1.x - 0.5f && a0.y < b1.y - 0.5f && b0.y < a1.y - 0.5f) overlap = true;
    }
    if (!overlap) ImGui::SetNextWindowBgAlpha(0.0f);
  }
  const PanelPlace* place = find_place(window);
  if (!place) return;
  const float min_w = std::min(place->min_w, work_area_.w), min_h = std::min(place->min_h, work_area_.h);
  ImGui::SetNextWindowSizeConstraints(ImVec2(min_w, min_h), ImVec2(FLT_MAX, FLT_MAX));
  if (!area_usable_ || (!place_all_ && placed_.contains(window))) return;
  const Box px = from_fractions(s_.panel_fractions[window], work_area_, min_w, min_h);
  ImGui::SetNextWindowPos(ImVec2(px.x, px.y), ImGuiCond_Always);
  ImGui::SetNextWindowSize(ImVec2(px.w, px.h), ImGuiCond_Always);
  placed_[window] = px;
}

void App::remember_panel_place(const char* window) {
  if (!area_usable_) return;
  const ImGuiWindow* w = ImGui::GetCurrentWindow();
  const Box now{w->Pos.x, w->Pos.y, w->SizeFull.x, w->SizeFull.y};  // SizeFull: also while collapsed
  Box& placed = placed_[window];
  if (same_place(now, placed)) return;
  placed = now;  // moved or resized by the user: its place, as fractions, follows the window from now on
  s_.panel_fractions[window] = to_fractions(now, work_area_);
}

void App::manifold_and_gap(const Snapshot& snap) {
  if (!ImGui::BeginTabBar("##manifold_gap")) return;
  // gap.open changed outside the tab bar (View menu, a right-click on the map): select its tab.
  const bool asked = s_.gap.open != gap_tab_shown_;
  bool gap_shown = false;
  if (ImGui::BeginTabItem(kTabManifold, nullptr, asked && !s_.gap.open ? ImGuiTabItemFlags_SetSelected : 0)) {
    draw_manifold(s_, snap);
    ImGui::EndTabItem();
  }
  s_.note_rect("tab_manifold");
  if (ImGui::BeginTabItem(kTabGap, nullptr, asked && s_.gap.open ? ImGuiTabItemFlags_SetSelected : 0)) {
    gap_shown = true;
    draw_gap(s_, snap);
    ImGui::EndTabItem();
  }
  s_.note_rect("tab_gap");
  ImGui::EndTabBar();
  gap_tab_shown_ = gap_shown;
  if (!asked) s_.gap.open = gap_shown;  // the user's click on a tab
}

void App::frame() {
  s_.now = ImGui::GetTime();
  poll_data_loading();
  settle_offer();
  if (s_.trainer) s_.snap = s_.trainer->snapshot();
  drawn_key_ = visual_key(s_.snap.get());
  if (s_.snap && s_.snap->model != s_.model_seen) {
    s_.model_seen = s_.snap->model;
    ++s_.model_serial;
  }
  if (s_.live_of_model != s_.model_serial && s_.now - s_.live_at >= AppState::kLivePeriod) {
    s_.live_of_model = s_.model_serial;
    ++s_.live_serial;
    s_.live_at = s_.now;
  }
  s_.heavy_taken = false;
  collect_trainer_errors();
  menu_bar();

  const Snapshot* snap = s_.snap.get();
  const bool ready = snap && snap->model && snap->data;
  const char* waiting = s_.autosave.offer_open || s_.autosave.parked_data ? "Waiting: resume the last run, or start fresh?"
                        : s_.data_loading.valid()                         ? "Reading the data…"
                                                                          : "No data: File → Open data…, or drop a data folder on the window.";
  layout(menu_height_);

  if (ready) sync_latent_size(s_, *snap);
  // Each panel draws into its window (nothing while the window is collapsed). The latent map runs
  // before the decoder so dragging the z ring shows in the decoder this frame.
  auto window = [&](const char* name, auto&& draw) {
    place_panel(name);
    if (ImGui::Begin(name)) {
      panel_help_button(s_, name);
      draw();
    }
    remember_panel_place(name);
    ImGui::End();
  };
  auto panel = [&](const char* name, auto&& draw) {
    window(name, [&] {
      if (ready) draw(*snap);
      else ImGui::TextDisabled("%s", waiting);
    });
  };
  window(kWinTraining, [&] { draw_training(s_, snap); });
  panel(kWinLatent, [&](const Snapshot& sn) { draw_latent_map(s_, sn); });
  panel(kWinClusters, [&](const Snapshot& sn) { draw_clusters(s_, sn); });
  panel(kWinDecoder, [&](const Snapshot& sn) { draw_decoder(s_, sn); });
  panel(kWinCurves, [&](const Snapshot& sn) { draw_curves(s_, sn); });
  panel(kWinInterpolation, [&](const Snapshot& sn) { draw_interpolation(s_, sn); });
  panel(kWinManifoldGap, [&](const Snapshot& sn) { manifold_and_gap(sn); });
  panel(kWinSamples, [&](const Snapshot& sn) { draw_samples(s_, sn); });
  s_.reset_layout = false;
  resume_offer();
  exit_dialog();
  follow_dialog();
  draw_file_chooser(s_);
  drop_confirmation();
  draw_help(s_);
  loading_banner();
  if (!following()) autosave_tick();
  messages();
  if (ready && snap->latent_step >= 0) write_ready_file();
}

bool App::following() const {
  if (!s_.trainer) return false;
  const auto snap = s_.trainer->snapshot();
  return snap && snap->follow;
}

void App::follow_dialog() {
  FollowFormState& f = s_.follow;
  const char* title = "Follow a run";
  if (f.open_requested) {
    ImGui::OpenPopup(title);
    f.open_requested = false;
  }
  if (!ImGui::BeginPopupModal(title, nullptr, ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings)) return;
  ImGui::TextUnformatted("A run folder python/train_ddp.py writes (--run DIR): its weights and\n"
                         "curves are shown as they arrive; local training waits meanwhile.");
  ImGui::SetNextItemWidth(ImGui::GetFontSize() * 28);
  if (ImGui::IsWindowAppearing()) ImGui::SetKeyboardFocusHere();
  const bool enter = ImGui::InputTextWithHint("##follow_folder", "run folder", f.folder, sizeof f.folder,
                                              ImGuiInputTextFlags_EnterReturnsTrue);
  s_.note_rect("follow_folder");
  ImGui::SameLine();
  const bool browse = ImGui::Button("…");  // the chooser takes this modal's place
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("Choose the run folder");
  const float bw = ImGui::GetFontSize() * 7;
  bool close = false;
  if (browse) {
    close = true;
    open_file_chooser(s_, ChooserPurpose::FollowRun, f.folder);
  }
  ImGui::BeginDisabled(!f.folder[0]);
  if ((ImGui::Button("Follow", ImVec2(bw, 0)) || enter) && f.folder[0]) {
    follow_run(s_, f.folder);
    close = true;
  }
  ImGui::EndDisabled();
  s_.note_rect("follow_confirm");
  ImGui::SameLine();
  if (ImGui::Button("Cancel", ImVec2(bw, 0)) || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) close = true;
  if (close) ImGui::CloseCurrentPopup();
  ImGui::EndPopup();
}

void App::write_ready_file() {
  if (ready_written_ || s_.options.screenshot_dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(s_.options.screenshot_dir, ec);
  std::ofstream(s_.options.screenshot_dir / "ready") << "ready\n";
  ready_written_ = true;
}

void App::write_panel_places(std::ostream& info) const {
  // "work X Y W H", then "panel <min.x> <min.y> <max.x> <max.y> <min_w> <min_h> <title_w> <name>"
  // (the name last: it has spaces) and the share of the work area the panels cover.
  const Box& a = work_area_;
  info << "work " << a.x << ' ' << a.y << ' ' << a.w << ' ' << a.h << "\n";
  std::vector<Box> boxes;
  for (const PanelPlace& p : kPanelPlaces) {
    const auto it = placed_.find(p.window);
    if (it == placed_.end()) continue;
    const Box& b = it->second;
    boxes.push_back(b);
    // The title's width as drawn: ImGui 1.86 clips a title that does not fit, without an ellipsis.
    const float title_w = ImGui::CalcTextSize(p.window).x + ImGui::GetFontSize() + ImGui::GetStyle().FramePadding.x * 3;
    info << "panel " << b.x << ' ' << b.y << ' ' << b.x + b.w << ' ' << b.y + b.h << ' ' << std::min(p.min_w, a.w) << ' '
         << std::min(p.min_h, a.h) << ' ' << title_w << ' ' << p.window << "\n";
  }
  info << "panels_cover " << covered_fraction(boxes, a) << "\n";
  info << "shown_tab " << (gap_tab_shown_ ? kTabGap : kTabManifold) << "\n";  // of kWinManifoldGap
}

void App::after_render(int fb_w, int fb_h) {
  if (screenshots_requested_ == 0) return;
  screenshots_requested_ = 0;
  const std::filesystem::path dir = s_.options.screenshot_dir.empty() ? s_.export_dir : s_.options.screenshot_dir;
  char stem[32];
  std::snprintf(stem, sizeof stem, "shot-%03d", ++screenshots_written_);
  try {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::vector<std::uint8_t> rgba(static_cast<std::size_t>(fb_w) * fb_h * 4);
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    glReadBuffer(GL_BACK);
    glReadPixels(0, 0, fb_w, fb_h, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
    write_framebuffer_png(dir / (std::string(stem) + "-window.png"), rgba, fb_w, fb_h);
    if (!s_.decoder.image.empty())
      write_image_png(dir / (std::string(stem) + "-decoder.png"), s_.decoder.image.values(), s_.decoder.image.channels(),
                      s_.decoder.image.width(), s_.decoder.image.height(), s_.colormap, 0);
    // Widget rectangles and a little state, for scripts driving the app (tests/e2e).
    std::ofstream info(dir / (std::string(stem) + ".tmp"));
    if (s_.snap) {
      info << "step " << s_.snap->step << "\n";
      info << "state " << (s_.snap->state == TrainerState::Running ? "running" : s_.snap->state == TrainerState::Paused ? "paused" : "finished") << "\n";
      info << "version " << s_.snap->version << "\n";
      info << "model " << describe_model(s_.snap->model_config) << ", latent " << s_.snap->model_config.latent << "\n";
      info << "map " << plane_caption(s_.latent) << "\n";
      info << "form " << describe_form(s_.training.form) << "\n";
      if (!s_.snap->log.empty()) info << "log " << s_.snap->log.back().text << "\n";
      if (const auto& f = s_.snap->follow) {
        info << "follow_step " << f->step << "\n";
        info << "follow_finished " << (f->finished ? 1 : 0) << "\n";
        info << "follow_status " << describe_follow(*f) << "\n";
      }
    }
    info << "fps " << s_.stats.fps << "\n";
    if (!s_.training.memory_text.empty()) info << "memory " << s_.training.memory_text << "\n";
    info << "resume_offer " << (s_.autosave.offer_open ? 1 : 0) << "\n";
    if (s_.data) {
      info << "data " << s_.data->name << "\n";
      const ImageSet& train = s_.data->train;  // "data_image C H W": channels and size as trained
      info << "data_image " << train.channels << ' ' << train.height << ' ' << train.width << "\n";
    }
    info << "data_path " << s_.training.data_path << "\n";
    info << "loading " << (s_.data_loading.valid() ? 1 : 0) << "\n";
    info << "chooser " << (s_.chooser.shown ? chooser_title(s_.chooser.purpose) : "closed") << "\n";
    info << "chooser_folder " << s_.chooser.folder.string() << "\n";
    if (!s_.drop_pending.empty()) info << "drop_pending " << s_.drop_pending.string() << "\n";
    if (s_.help.open) info << "help_page " << s_.help.page << "\n";
    info << "exit_dialog " << (s_.autosave.exit_error.empty() ? 0 : 1) << "\n";
    if (!s_.autosave.exit_error.empty()) info << "exit_error " << s_.autosave.exit_error << "\n";
    if (s_.autosave.offer_open) {
      const auto& offers = s_.autosave.offers;
      info << "offer_epoch " << epoch_in_progress(offers.front().epoch, false) << "\n";
      info << "offers " << offers.size() << "\n";
      for (const AutosaveInfo& o : offers) info << "offer " << o.file.filename().string() << " step " << o.step << "\n";
    }
    if (s_.snap) info << "epoch " << epoch_in_progress(s_.snap->epoch, s_.snap->state == TrainerState::Finished) << "\n";
    info << "errors " << std::count_if(s_.messages.begin(), s_.messages.end(), [](const Message& m) { return m.severity == Severity::Error; }) << "\n";
    write_panel_places(info);
    for (const auto& [name, t] : s_.texts)  // "text <full> <shown> <available> <ellipsis> <name>"
      info << "text " << t.full << ' ' << t.shown << ' ' << t.avail << ' ' << (t.ellipsis ? 1 : 0) << ' ' << name << "\n";
    for (const auto& [name, r] : s_.rects) info << "rect " << name << ' ' << r.x << ' ' << r.y << ' ' << r.z << ' ' << r.w << "\n";
    info.close();
    std::filesystem::rename(dir / (std::string(stem) + ".tmp"), dir / (std::string(stem) + ".txt"));
    if (s_.options.screenshot_dir.empty()) s_.post(Severity::Info, "Screenshot saved in " + dir.string());
  } catch (const std::exception& e) {
    s_.post(Severity::Error, std::string("Screenshot failed: ") + e.what());
  }
}

}  // namespace vaelab::app
