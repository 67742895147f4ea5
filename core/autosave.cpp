// Autosave bookkeeping (see autosave.hpp): the due-time rule, reading a found autosave for the
// resume offer, moving a declined one aside and keeping a longer run from being overwritten. No threads and no UI here.
#include "core/autosave.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>

#include "core/checkpoint.hpp"
#include "core/error.hpp"

namespace vaelab {

std::filesystem::path autosave_file(const std::filesystem::path& data_dir) { return data_dir / "autosave.vaelab"; }
std::filesystem::path autosave_aside_file(const std::filesystem::path& data_dir) {
  return data_dir / "autosave.previous.vaelab";
}

AutosaveLock::AutosaveLock(const std::filesystem::path& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  const std::filesystem::path lock = data_dir / "autosave.lock";
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    error_ = "cannot open " + lock.string() + ": " + std::strerror(errno);
    return;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) held_elsewhere_ = true;
    else error_ = "cannot lock " + lock.string() + ": " + std::strerror(err);
    return;
  }
  fd_ = fd;
}

AutosaveLock::~AutosaveLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

std::filesystem::path instance_autosave_file(const std::filesystem::path& data_dir, bool owner, long pid) {
  return owner ? autosave_file(data_dir) : data_dir / ("autosave-" + std::to_string(pid) + ".vaelab");
}

long autosave_instance_pid(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  const std::string head = "autosave-", tail = ".vaelab";
  if (name.size() <= head.size() + tail.size() || name.rfind(head, 0) != 0 ||
      name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
    return 0;
  const std::string digits = name.substr(head.size(), name.size() - head.size() - tail.size());
  if (digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return 0;
  return std::stol(digits);
}

std::filesystem::path instance_autosave_aside(const std::filesystem::path& file) {
  return std::filesystem::path(file).replace_extension(".previous.vaelab");
}

std::vector<std::filesystem::path> resumable_autosaves(const std::filesystem::path& data_dir) {
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  if (std::filesystem::exists(autosave_file(data_dir), ec)) found.push_back(autosave_file(data_dir));
  struct Other {
    std::filesystem::path file;
    std::filesystem::file_time_type written;
  };
  std::vector<Other> others;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir, ec)) {
    const long pid = autosave_instance_pid(entry.path());
    if (pid <= 0 || !entry.is_regular_file(ec)) continue;
    const bool running = ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
    if (running) continue;
    others.push_back({entry.path(), entry.last_write_time(ec)});
  }
  std::sort(others.begin(), others.end(), [](const Other& a, const Other& b) { return a.written > b.written; });
  for (const Other& o : others) found.push_back(o.file);
  return found;
}

bool AutosaveClock::due(double now_s, std::int64_t step) {
  if (last_s_ < 0) last_s_ = now_s;
  return interval_s_ > 0 && step > 0 && now_s - last_s_ >= interval_s_ && step != last_step_;
}

void AutosaveClock::saved(double now_s, std::int64_t step) {
  last_s_ = now_s;
  last_step_ = step;
}

std::string describe_model(const ModelConfig& m) {
  // Appends only: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string temporaries.
  std::string s = to_string(m.family);
  s += ' ';
  if (m.family == ModelFamily::Conv) {
    s.append(image_shape_text(m));
    s.append(" → ").append(std::to_string(m.latent));
  } else {
    s.append(std::to_string(m.input_dim()));
    for (int h : m.hidden) s.append("-").append(std::to_string(h));
    s.append("-").append(std::to_string(m.latent));
    if (is_clustering(m.family)) s.append(" (K ").append(std::to_string(m.clusters)).append(")");
  }
  return s.append(", ").append(to_string(m.likelihood));
}

std::string describe_age(double seconds) {
  auto plural = [](long n, const char* unit) { return std::to_string(n) + " " + unit + (n == 1 ? "" : "s") + " ago"; };
  if (seconds < 60) return "just now";
  if (seconds < 3600) return plural(static_cast<long>(seconds / 60), "minute");
  if (seconds < 2 * 86400) return plural(static_cast<long>(seconds / 3600), "hour");
  return plural(static_cast<long>(seconds / 86400), "day");
}

std::optional<AutosaveInfo> inspect_autosave(const std::filesystem::path& file, std::string& error) {
  error.clear();
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return std::nullopt;
  try {
    const TrainingState s = load_checkpoint(file);
    AutosaveInfo info;
    info.file = file;
    info.model = s.model;
    info.step = s.step;
    info.epoch = s.epoch;
    info.data_name = s.data_name;
    info.paused = std::filesystem::exists(autosave_paused_marker(file), ec);
    info.model_text = describe_model(s.model);
    const auto written = std::filesystem::last_write_time(file, ec);
    if (!ec) {
      const auto sys = std::chrono::file_clock::to_sys(written);
      const std::time_t t = std::chrono::system_clock::to_time_t(
          std::chrono::time_point_cast<std::chrono::system_clock::duration>(sys));
      std::tm local{};
      char buf[32] = "";
      if (localtime_r(&t, &local)) std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &local);
      info.saved_at = buf;
      info.age_s = std::chrono::duration<double>(std::chrono::system_clock::now() - sys).count();
    }
    return info;
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}

std::filesystem::path autosave_paused_marker(const std::filesystem::path& file) {
  std::filesystem::path marker = file;
  return marker += ".paused";
}

void note_autosave_paused(const std::filesystem::path& file, bool paused) {
  std::error_code ec;
  if (!paused) {
    std::filesystem::remove(autosave_paused_marker(file), ec);
    return;
  }
  std::ofstream(autosave_paused_marker(file)) << "paused\n";
}

void move_autosave_aside(const std::filesystem::path& file, const std::filesystem::path& aside) {
  std::error_code ec;
  std::filesystem::rename(file, aside, ec);
  if (ec) throw Error("could not move the autosave " + file.string() + " to " + aside.string() + ": " + ec.message());
  const bool paused = std::filesystem::exists(autosave_paused_marker(file), ec);
  note_autosave_paused(file, false);
  note_autosave_paused(aside, paused);
}

namespace {

// The step a checkpoint holds; −1 when there is none, and the largest step when it cannot be read
// (a file that cannot be judged is kept).
std::int64_t saved_step(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return -1;
  try {
    return load_checkpoint(file).step;
  } catch (const std::exception&) {
    return std::numeric_limits<std::int64_t>::max();
  }
}

}  // namespace

std::filesystem::path keep_longer_autosave(const std::filesystem::path& file, const std::filesystem::path& aside,
                                           std::int64_t step) {
  const std::int64_t held = saved_step(file);
  if (held < 0 || held <= step) return {};
  std::filesystem::path keep = aside;
  if (held == std::numeric_limits<std::int64_t>::max()) keep = file.parent_path() / "autosave.unreadable.vaelab";
  else if (saved_step(aside) > held) keep = file.parent_path() / ("autosave.step" + std::to_string(held) + ".vaelab");
  move_autosave_aside(file, keep);
  return keep;
}

}  // namespace vaelab
