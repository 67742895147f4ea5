// App: the per-frame orchestration described in app.hpp. Owns no GL resources itself (the panel
// structs in AppState do) and never blocks on the trainer: commands are queued, data folders are
// read on a background thread.
#include "app/app.hpp"

#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
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

// Reads on a background thread; quitting sets `cancel` and the read stops within one chunk.
std::future<std::shared_ptr<const Dataset>> read_data_async(std::filesystem::path folder, const CancelFlag* cancel) {
  return std::async(std::launch::async, [folder, cancel] {
    return std::shared_ptr<const Dataset>(std::make_shared<Dataset>(load_dataset(folder, LoadOptions{}, cancel)));
  });
}

}  // namespace

void open_path(AppState& s, const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::path p = path;
  if (!std::filesystem::is_directory(p, ec) && looks_like_idx(p)) p = p.parent_path();  // a dropped IDX file
  if (std::filesystem::is_directory(p, ec)) {
    if (s.data_loading.valid()) {
      s.post(Severity::Warning, "Still reading " + s.data_loading_path + "; try again in a moment.");
      return;
    }
    s.data_loading_path = p.string();
    s.data_loading = read_data_async(p, &s.data_cancel);
    std::snprintf(s.training.data_path, sizeof s.training.data_path, "%s", p.c_str());
    s.post(Severity::Info, "Reading " + p.string() + " …");
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
  s_.data_loading_path = data.string();
  s_.data_loading = read_data_async(data, &s_.data_cancel);
  std::snprintf(s_.training.data_path, sizeof s_.training.data_path, "%s", data.c_str());
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
  if (!a.lock->owned())
    s_.post(Severity::Info, "Another vaelab autosaves to " + autosave_file(s_.data_dir).string() + "; this one autosaves to " +
                                a.file.string() + ".");
  if (!o.follow.empty()) std::snprintf(s_.follow.folder, sizeof s_.follow.folder, "%s", o.follow.c_str());
  // A followed run's weights are the other program's: no resume offer, and no autosave of them.
  if (o.load.empty() && !o.no_resume && o.follow.empty() && a.lock->owned()) find_autosave();
}

App::~App() {
  if (s_.trainer) {
    s_.trainer->request_stop();
    s_.trainer->join();
    if (!following()) autosave_on_exit();
    s_.trainer.reset();
  }
  s_.data_cancel = true;  // a data folder still being read stops now instead of holding up the exit
  if (s_.data_loading.valid()) s_.data_loading.wait();
}

void App::find_autosave() {
  AutosaveState& a = s_.autosave;
  std::string why;
  if (auto info = inspect_autosave(a.file, why)) {
    a.offer = *info;
    a.offer_open = true;  // training waits for the answer
    return;
  }
  if (why.empty()) return;  // none
  // A damaged autosave is neither offered nor silently overwritten by the next one.
  try {
    move_autosave_aside(a.file, a.aside);
    s_.post(Severity::Warning, "The autosave cannot be resumed (" + why + "). It was moved to " + a.aside.string() + ".");
  } catch (const std::exception& e) {
    s_.post(Severity::Warning, "The autosave cannot be resumed (" + why + "); " + e.what());
  }
}

void App::resume_offer() {
  AutosaveState& a = s_.autosave;
  if (!a.offer_open) return;
  const char* title = "Resume the last run?";
  if (!ImGui::IsPopupOpen(title)) ImGui::OpenPopup(title);
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(ImVec2(vp->WorkPos.x + vp->WorkSize.x * 0.5f, vp->WorkPos.y + vp->WorkSize.y * 0.4f),
                          ImGuiCond_Always, ImVec2(0.5f, 0.5f));
  if (!ImGui::BeginPopupModal(title, nullptr, ImGuiWindowFlags_AlwaysAutoResize | ImGuiWindowFlags_NoSavedSettings)) return;
  ImGui::TextUnformatted("vaelab autosaved a run (it does so every few minutes and on exit):");
  ImGui::Spacing();
  const char* labels[] = {"model", "progress", "data", "saved"};
  char progress[96];
  // The epoch as the status line will show it once resumed; and whether it comes back paused.
  std::snprintf(progress, sizeof progress, "step %lld · epoch %d%s", static_cast<long long>(a.offer.step),
                epoch_in_progress(a.offer.epoch, false), a.offer.paused ? " · paused" : "");
  const std::string saved = a.offer.saved_at + " (" + describe_age(a.offer.age_s) + ")";
  const std::string values[] = {a.offer.model_text, progress, a.offer.data_name.empty() ? "?" : a.offer.data_name, saved};
  for (int i = 0; i < 4; ++i) {
    ImGui::TextDisabled("%-9s", labels[i]);
    ImGui::SameLine(ImGui::GetFontSize() * 5);
    ImGui::TextUnformatted(values[i].c_str());
  }
  ImGui::TextDisabled("%s", a.file.c_str());
  ImGui::Spacing();
  const float bw = ImGui::GetFontSize() * 7;
  if (ImGui::Button("Resume", ImVec2(bw, 0))) a.answer = AutosaveState::Answer::Resume;
  s_.note_rect("resume_button");
  ImGui::SameLine();
  if (ImGui::Button("Start fresh", ImVec2(bw, 0))) a.answer = AutosaveState::Answer::StartFresh;
  s_.note_rect("fresh_button");
  ImGui::TextDisabled("Start fresh keeps the autosave as %s.", a.aside.filename().c_str());
  if (a.answer != AutosaveState::Answer::None) {
    a.offer_open = false;
    ImGui::CloseCurrentPopup();
    if (a.answer == AutosaveState::Answer::StartFresh) {
      try {  // never over a longer run already kept in autosave.previous
        const std::filesystem::path kept = keep_longer_autosave(a.file, a.aside, -1);
        s_.post(Severity::Info, "Starting fresh; the autosave was kept as " + kept.string() + ".");
      } catch (const std::exception& e) {
        s_.post(Severity::Warning, std::string("Starting fresh; ") + e.what());
      }
    }
  }
  ImGui::EndPopup();
}

void App::settle_offer() {
  AutosaveState& a = s_.autosave;
  if (a.offer_open || a.answer == AutosaveState::Answer::None || !a.parked_data) return;
  const bool resume = a.answer == AutosaveState::Answer::Resume;
  if (resume) s_.options.load = a.file;
  if (resume && a.offer.paused) s_.options.trainer.start_paused = true;  // a paused run comes back paused
  const bool resumed = start_trainer(std::move(a.parked_data));
  a.parked_data.reset();
  if (resume && resumed) {
    s_.post(Severity::Info, "Resumed the autosave of " + a.offer.saved_at + " at step " + std::to_string(a.offer.step) + ".");
    a.clock.saved(s_.now, a.offer.step);  // nothing new to autosave until it trains
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

void App::autosave_on_exit() {
  // The trainer thread has been joined: save_now runs here, synchronously.
  AutosaveState& a = s_.autosave;
  const auto snap = s_.trainer->snapshot();
  if (a.minutes <= 0 || !snap || snap->step == 0) return;  // off, or nothing trained worth keeping
  try {
    std::error_code ec;
    std::filesystem::create_directories(a.file.parent_path(), ec);
    if (!keep_longer_autosave_or_say(snap->step)) return;
    s_.trainer->save_now(a.file);
    note_autosave_paused(a.file, snap->state == TrainerState::Paused);
    std::fprintf(stderr, "vaelab: autosaved step %lld to %s\n", static_cast<long long>(snap->step), a.file.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab: autosave on exit skipped: %s\n", e.what());
  }
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
          if (o.load != s_.autosave.file)
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
  } catch (const std::exception& e) {
    s_.post(Severity::Error, "Could not open the data folder " + s_.data_loading_path + ": " + e.what() +
                                 (s_.trainer ? "" : "\nDrop a folder with IDX files on the window, or type its path in "
                                                    "Training → Data & checkpoints."));
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
  if (paths.size() > 1) {
    // Several IDX files from one folder: open the folder.
    open_path(s_, std::filesystem::path(paths.front()));
    return;
  }
  open_path(s_, paths.front());
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
  if (s_.data_loading.valid() && s_.data_loading.wait_for(std::chrono::seconds(0)) == std::future_status::ready) return true;
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
    const bool can = s_.trainer && s_.training.file_path[0];
    if (ImGui::MenuItem("Save checkpoint", "Ctrl+S", false, can)) save_checkpoint(s_, s_.training.file_path);
    if (ImGui::MenuItem("Load checkpoint", nullptr, false, can)) open_path(s_, s_.training.file_path);
    ImGui::TextDisabled("  (path: Training → Data & checkpoints)");
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
  if (ImGui::BeginMenu("View")) {
    if (ImGui::MenuItem("Grey images", nullptr, s_.colormap == kGrey)) s_.colormap = kGrey;
    if (ImGui::MenuItem("Viridis images", nullptr, s_.colormap == kViridis)) s_.colormap = kViridis;
    ImGui::Separator();
    // The right column holds either the gap window or Interpolation + Manifold.
    ImGui::MenuItem("Variational gap (instead of Interpolation & Manifold)", nullptr, &s_.gap.open);
    if (ImGui::MenuItem("Reset layout")) s_.reset_layout = true;
    ImGui::EndMenu();
  }
  if (ImGui::BeginMenu("Help")) {
    ImGui::TextUnformatted("Space        pause / resume training\n"
                           "Ctrl+S       save the checkpoint\n"
                           "F12          screenshot into the export folder\n"
                           "Ctrl+Q       quit\n\n"
                           "Latent map:  drag to pan, wheel to zoom, click sets A,\n"
                           "             shift-click sets B, drag the yellow ring\n"
                           "             (or double-click) to move the decoder's z,\n"
                           "             right-click a code for its true posterior\n\n"
                           "Drop a folder of IDX files on the window to train on it,\n"
                           "or a checkpoint / .safetensors file to open it.");
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
    std::snprintf(right, sizeof right, "reading %s …", s_.data_loading_path.c_str());
  else
    std::snprintf(right, sizeof right, "no data");
  const float w = ImGui::CalcTextSize(right).x;
  ImGui::SameLine(std::max(ImGui::GetCursorPosX() + 20, ImGui::GetWindowWidth() - w - 12));
  ImGui::TextDisabled("%s", right);
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

void App::layout(float top) {
  // Default tiling (no docking in ImGui 1.86): three columns sized from the window, applied on
  // first use (then the user's arrangement is remembered) or again on View → Reset layout.
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  const float W = vp->Size.x, H = vp->Size.y - top;
  const float c1 = std::floor(W * 0.25f), c2 = std::floor(W * 0.40f), c3 = W - c1 - c2;
  const float h_train = std::floor(H * 0.60f), h_latent = std::floor(H * 0.58f);
  const float h_dec = std::floor(H * 0.34f), h_int = std::floor(H * 0.28f);
  const float x0 = vp->Pos.x, y0 = vp->Pos.y + top;
  slots_.clear();
  slots_[kWinTraining] = ImVec4(x0, y0, c1, h_train);
  slots_[kWinSamples] = ImVec4(x0, y0 + h_train, c1, H - h_train);
  slots_[kWinLatent] = ImVec4(x0 + c1, y0, c2, h_latent);
  slots_[kWinCurves] = ImVec4(x0 + c1, y0 + h_latent, c2, H - h_latent);
  slots_[kWinDecoder] = ImVec4(x0 + c1 + c2, y0, c3, h_dec);
  slots_[kWinInterpolation] = ImVec4(x0 + c1 + c2, y0 + h_dec, c3, h_int);
  slots_[kWinManifold] = ImVec4(x0 + c1 + c2, y0 + h_dec + h_int, c3, H - h_dec - h_int);
  // The gap window takes the place of Interpolation and Manifold (View menu toggles it).
  if (s_.gap.open) {
    slots_.erase(kWinInterpolation);
    slots_.erase(kWinManifold);
    slots_[kWinGap] = ImVec4(x0 + c1 + c2, y0 + h_dec, c3, H - h_dec);
  }
}

void App::apply_slot(const char* window) {
  // Software OpenGL (llvmpipe under Xvfb) pays for every pixel of every layer, and the window
  // backgrounds are a full layer. The frame is cleared to the window colour anyway, so a panel
  // that overlaps no other panel (the default tiling) skips drawing its background.
  if (ImGuiWindow* w = ImGui::FindWindowByName(window)) {
    bool overlap = false;
    for (const auto& [name, slot] : slots_) {
      if (name == window) continue;
      ImGuiWindow* o = ImGui::FindWindowByName(name.c_str());
      if (!o || !o->WasActive) continue;
      const ImVec2 a0 = w->Pos, a1(w->Pos.x + w->Size.x, w->Pos.y + w->Size.y);
      const ImVec2 b0 = o->Pos, b1(o->Pos.x + o->Size.x, o->Pos.y + o->Size.y);
      if (a0.x < b1.x - 0.5f && b0.x < a1.x - 0.5f && a0.y < b1.y - 0.5f && b0.y < a1.y - 0.5f) overlap = true;
    }
    if (!overlap) ImGui::SetNextWindowBgAlpha(0.0f);
  }
  const auto it = slots_.find(window);
  if (it == slots_.end()) return;
  const ImGuiCond cond = s_.reset_layout ? ImGuiCond_Always : ImGuiCond_FirstUseEver;
  ImGui::SetNextWindowPos(ImVec2(it->second.x, it->second.y), cond);
  ImGui::SetNextWindowSize(ImVec2(it->second.z, it->second.w), cond);
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
                                                                          : "No data: drop a folder of IDX files on the window.";
  layout(menu_height_);

  if (ready) sync_latent_size(s_, *snap);
  // Each panel draws into its window (nothing while the window is collapsed). The latent map runs
  // before the decoder so dragging the z ring shows in the decoder this frame.
  auto window = [&](const char* name, auto&& draw) {
    apply_slot(name);
    if (ImGui::Begin(name)) draw();
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
  panel(kWinDecoder, [&](const Snapshot& sn) { draw_decoder(s_, sn); });
  panel(kWinCurves, [&](const Snapshot& sn) { draw_curves(s_, sn); });
  if (s_.gap.open) {
    panel(kWinGap, [&](const Snapshot& sn) { draw_gap(s_, sn); });
  } else {
    panel(kWinInterpolation, [&](const Snapshot& sn) { draw_interpolation(s_, sn); });
    panel(kWinManifold, [&](const Snapshot& sn) { draw_manifold(s_, sn); });
  }
  panel(kWinSamples, [&](const Snapshot& sn) { draw_samples(s_, sn); });
  s_.reset_layout = false;
  resume_offer();
  follow_dialog();
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
  const float bw = ImGui::GetFontSize() * 7;
  bool close = false;
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
    if (s_.autosave.offer_open) info << "offer_epoch " << epoch_in_progress(s_.autosave.offer.epoch, false) << "\n";
    if (s_.snap) info << "epoch " << epoch_in_progress(s_.snap->epoch, s_.snap->state == TrainerState::Finished) << "\n";
    info << "errors " << std::count_if(s_.messages.begin(), s_.messages.end(), [](const Message& m) { return m.severity == Severity::Error; }) << "\n";
    for (const auto& [name, r] : s_.rects) info << "rect " << name << ' ' << r.x << ' ' << r.y << ' ' << r.z << ' ' << r.w << "\n";
    info.close();
    std::filesystem::rename(dir / (std::string(stem) + ".tmp"), dir / (std::string(stem) + ".txt"));
    if (s_.options.screenshot_dir.empty()) s_.post(Severity::Info, "Screenshot saved in " + dir.string());
  } catch (const std::exception& e) {
    s_.post(Severity::Error, std::string("Screenshot failed: ") + e.what());
  }
}

}  // namespace vaelab::app
