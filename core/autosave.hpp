// Autosave bookkeeping for the desktop app: where the autosave lives, when the next one is due,
// what a found autosave holds (for the "resume?" offer) and moving a declined one aside.
// Not the saving itself: that is Trainer::save / save_now (atomic, refuses non-finite weights).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace vaelab {

inline constexpr int kDefaultAutosaveMinutes = 5;

// <data_dir>/autosave.vaelab, and where "Start fresh" moves it: <data_dir>/autosave.previous.vaelab.
std::filesystem::path autosave_file(const std::filesystem::path& data_dir);
std::filesystem::path autosave_aside_file(const std::filesystem::path& data_dir);

// One instance owns <data_dir>/autosave.vaelab: the one holding an flock on <data_dir>/autosave.lock
// (taken without waiting; released when the object goes or the process dies). Another instance
// autosaves beside it under its own name (instance_autosave_file), so neither run replaces the other.
class AutosaveLock {
 public:
  explicit AutosaveLock(const std::filesystem::path& data_dir);
  ~AutosaveLock();
  AutosaveLock(const AutosaveLock&) = delete;
  AutosaveLock& operator=(const AutosaveLock&) = delete;
  bool owned() const { return fd_ >= 0; }
  // Not owned because another process holds the lock (rather than because the lock file could not
  // be opened, e.g. in a read-only folder: then error() says why).
  bool held_elsewhere() const { return held_elsewhere_; }
  const std::string& error() const { return error_; }

 private:
  int fd_ = -1;
  bool held_elsewhere_ = false;
  std::string error_;
};

// autosave.vaelab for the owner of the lock, "autosave-<pid>.vaelab" for another instance.
std::filesystem::path instance_autosave_file(const std::filesystem::path& data_dir, bool owner, long pid);

// When the next periodic autosave is due: every `interval_s` seconds (≤ 0: never), and only if
// training moved since the last one (a paused run is not rewritten every few minutes) and the run
// has trained at all (step 0 has nothing worth keeping, and must not replace an older autosave).
class AutosaveClock {
 public:
  explicit AutosaveClock(double interval_s = kDefaultAutosaveMinutes * 60.0) : interval_s_(interval_s) {}
  void set_interval(double interval_s) { interval_s_ = interval_s; }
  double interval() const { return interval_s_; }
  // `now_s` is any monotonic clock in seconds; the first call starts the interval.
  bool due(double now_s, std::int64_t step);
  void saved(double now_s, std::int64_t step);  // an autosave of `step` was sent at now_s

 private:
  double interval_s_;
  double last_s_ = -1;            // < 0: not started
  std::int64_t last_step_ = -1;   // step of the last autosave (−1: none)
};

// What a found autosave holds, checked in full (a damaged file is not offered).
struct AutosaveInfo {
  std::filesystem::path file;
  ModelConfig model;
  std::int64_t step = 0;
  int epoch = 0;             // completed epochs
  bool paused = false;       // the run was paused when it was autosaved (see autosave_paused_marker)
  std::string data_name;
  std::string model_text;   // "mlp 784-400-2, bernoulli"
  std::string saved_at;     // local time of the file's last write, "2026-12-01 17:42"
  double age_s = 0;         // seconds since then
};

// The autosaves a resume offer lists: autosave.vaelab when it is there, then those other instances
// wrote beside it (autosave-<pid>.vaelab, see instance_autosave_file) whose process is no longer
// running, newest first. A running instance's autosave is its own: not offered.
std::vector<std::filesystem::path> resumable_autosaves(const std::filesystem::path& data_dir);
// The pid in "autosave-<pid>.vaelab"; 0 for any other name.
long autosave_instance_pid(const std::filesystem::path& file);
// Where a resumed or declined instance autosave is kept so it is not offered again:
// "autosave-<pid>.previous.vaelab".
std::filesystem::path instance_autosave_aside(const std::filesystem::path& file);

// nullopt with `error` empty: no autosave. nullopt with `error` set: the file is there but cannot
// be resumed (the message says why, naming the file).
std::optional<AutosaveInfo> inspect_autosave(const std::filesystem::path& file, std::string& error);

// "mlp 784-400-2, bernoulli", "conv 28×28 → 2, gaussian", "gmvae 784-400-10 (K 10), bernoulli".
std::string describe_model(const ModelConfig& m);
// "3 minutes ago", "2 hours ago", "just now".
std::string describe_age(double seconds);

// The epoch shown for a run that has completed `completed` epochs: the one in progress, as the
// training panel's status line counts it (a finished run shows its last one).
inline int epoch_in_progress(int completed, bool finished) { return finished ? completed : completed + 1; }

// "<file>.paused": beside an autosave of a paused run, so that resuming it comes back paused.
std::filesystem::path autosave_paused_marker(const std::filesystem::path& file);
// Writes or removes the marker for `file`. Best effort: never throws.
void note_autosave_paused(const std::filesystem::path& file, bool paused);

// Renames `file` to `aside` (replacing an older one), its paused marker with it. Throws
// vaelab::Error with both names.
void move_autosave_aside(const std::filesystem::path& file, const std::filesystem::path& aside);

// Before an autosave of a run at `step` replaces `file`: when `file` holds more training (a larger
// step, or it cannot be read to tell), it is kept first, never replaced. It goes to `aside`
// unless `aside` holds still more training; then beside it as "autosave.step<N>.vaelab" (N: its
// step), so a series of short runs cannot push a long one out either; an unreadable one goes to
// "autosave.unreadable.vaelab". Returns where it was kept (empty: nothing needed keeping); `step`
// −1 always keeps it ("Start fresh", a failed resume). Throws vaelab::Error when it could not be
// moved: the caller must then not write the autosave.
std::filesystem::path keep_longer_autosave(const std::filesystem::path& file, const std::filesystem::path& aside,
                                           std::int64_t step);

}  // namespace vaelab
