// The run-folder follower: inotify (or stat() polling) to notice changes, an incremental reader of
// metrics.jsonl, and a careful reader of weights.safetensors that keeps the last good model.
// The JSON reader here reads flat objects only; it is not a general JSON library.
#include "core/run_follow.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

#include "core/error.hpp"
#include "core/safetensors.hpp"

namespace vaelab {

// ---------------------------------------------------------------------------------------------
// Flat JSON objects
// ---------------------------------------------------------------------------------------------

namespace {

class FlatJsonReader {
 public:
  explicit FlatJsonReader(std::string_view text) : s_(text) {}

  FlatJsonObject read_object() {
    FlatJsonObject out;
    skip_space();
    expect('{');
    skip_space();
    for (bool more = !accept('}'); more;) {
      read_member(out);
      skip_space();
      more = accept(',');
      if (!more) expect('}');
    }
    skip_space();
    if (!at_end()) fail("text follows the object");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(what + " (at character " + std::to_string(pos_ + 1) + ")");
  }
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  bool accept(char c) {
    if (at_end() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c) {
    if (!accept(c)) fail(std::string(at_end() ? "the text ends where '" : "expected '") + c + (at_end() ? "' should be" : "'"));
  }
  void skip_space() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool accept_word(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  void digits() {
    if (!is_digit(peek())) fail("a number lacks a digit");
    while (is_digit(peek())) ++pos_;
  }

  // "key": value, with the whitespace around the colon.
  void read_member(FlatJsonObject& out) {
    skip_space();
    std::string key = read_string();
    skip_space();
    expect(':');
    skip_space();
    JsonScalar value = read_scalar(key);
    if (!out.emplace(key, std::move(value)).second) fail("the key \"" + key + "\" appears twice");
  }

  JsonScalar read_scalar(const std::string& key) {
    JsonScalar v;
    const char c = peek();
    if (c == '"') {
      v.kind = JsonScalar::Kind::String;
      v.text = read_string();
    } else if (accept_word("true")) {
      v.kind = JsonScalar::Kind::Bool;
      v.boolean = true;
    } else if (accept_word("false")) {
      v.kind = JsonScalar::Kind::Bool;
    } else if (accept_word("null")) {
      v.kind = JsonScalar::Kind::Null;
    } else if (c == '-' || is_digit(c)) {
      v.kind = JsonScalar::Kind::Number;
      v.number = read_number();
    } else if (c == '{' || c == '[') {
      fail("the value of \"" + key + "\" is an object or array; only numbers, booleans, null and strings are read");
    } else {
      fail("the value of \"" + key + "\" is not a JSON value");
    }
    return v;
  }

  // JSON's grammar exactly (no leading '+', no leading zeros, no bare '.'), then from_chars.
  double read_number() {
    const std::size_t start = pos_;
    accept('-');
    if (!accept('0')) digits();
    if (accept('.')) digits();
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (!accept('+')) accept('-');
      digits();
    }
    double value = 0;
    const auto [end, ec] = std::from_chars(s_.data() + start, s_.data() + pos_, value);
    if (ec != std::errc() || end != s_.data() + pos_) {
      pos_ = start;
      fail("a number is outside the range of a double");
    }
    return value;
  }

  unsigned read_hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      const char c = peek();
      const int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
      if (d < 0) fail("a \\u escape needs four hex digits");
      v = v * 16 + static_cast<unsigned>(d);
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    const auto byte = [&](unsigned b) { out += static_cast<char>(b); };
    if (cp < 0x80) {
      byte(cp);
      return;
    }
    if (cp < 0x800) {
      byte(0xC0 | (cp >> 6));
    } else if (cp < 0x10000) {
      byte(0xE0 | (cp >> 12));
      byte(0x80 | ((cp >> 6) & 0x3F));
    } else {
      byte(0xF0 | (cp >> 18));
      byte(0x80 | ((cp >> 12) & 0x3F));
      byte(0x80 | ((cp >> 6) & 0x3F));
    }
    byte(0x80 | (cp & 0x3F));
  }

  // A \u escape after the backslash and 'u': one code point, a surrogate pair joined.
  unsigned read_code_point() {
    const unsigned hi = read_hex4();
    if (hi >= 0xDC00 && hi <= 0xDFFF) fail("a \\u escape is an unpaired low surrogate");
    if (hi < 0xD800 || hi > 0xDBFF) return hi;
    if (!accept_word("\\u")) fail("a \\u escape is an unpaired high surrogate");
    const unsigned lo = read_hex4();
    if (lo < 0xDC00 || lo > 0xDFFF) fail("a \\u escape is an unpaired high surrogate");
    return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
  }

  // Bytes of 0x80 and above pass through unchanged: a line is text its writer encoded.
  std::string read_string() {
    if (!accept('"')) fail("expected a string in double quotes");
    std::string out;
    for (;;) {
      if (at_end()) fail("a string is not closed");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("a string holds a control character");
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = peek();
      ++pos_;
      static constexpr std::string_view kEscaped = "\"\\/bfnrt", kMeaning = "\"\\/\b\f\n\r\t";
      if (const auto k = kEscaped.find(e); e != '\0' && k != std::string_view::npos) out += kMeaning[k];
      else if (e == 'u') append_utf8(out, read_code_point());
      else fail("a string has an unknown escape");
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

FlatJsonObject parse_flat_json_object(std::string_view text) { return FlatJsonReader(text).read_object(); }

double MetricsRecord::number(const std::string& key) const {
  const auto it = fields.find(key);
  if (it == fields.end() || it->second.kind != JsonScalar::Kind::Number) return std::numeric_limits<double>::quiet_NaN();
  return it->second.number;
}

bool MetricsRecord::finished() const {
  const auto it = fields.find("finished");
  return it != fields.end() && it->second.kind == JsonScalar::Kind::Bool && it->second.boolean;
}

// ---------------------------------------------------------------------------------------------
// The follower
// ---------------------------------------------------------------------------------------------

namespace {

constexpr std::size_t kMetricsBytesPerScan = 8u << 20;  // a huge backlog is read over several scans

// What identifies one version of a file: a replacement has another inode, an append another size,
// a rewrite in place another mtime or ctime.
struct FileVersion {
  std::uint64_t dev = 0, ino = 0;
  std::int64_t size = 0, mtime_ns = 0, ctime_ns = 0;
  unsigned type = 0;  // st_mode & S_IFMT
  bool operator==(const FileVersion&) const = default;
  bool same_file(const FileVersion& o) const { return dev == o.dev && ino == o.ino; }
  bool regular() const { return type == S_IFREG; }
};

FileVersion version_of(const struct stat& st) {
  FileVersion v;
  v.dev = static_cast<std::uint64_t>(st.st_dev);
  v.ino = static_cast<std::uint64_t>(st.st_ino);
  v.size = static_cast<std::int64_t>(st.st_size);
  v.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  v.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  v.type = st.st_mode & S_IFMT;
  return v;
}

std::optional<FileVersion> stat_version(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return version_of(st);
}

const char* kind_of(unsigned type) {
  switch (type) {
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFDIR: return "a folder";
    default: return "not a regular file";
  }
}

// File systems whose changes may come from another host, where inotify stays silent.
bool is_network_file_system(const std::filesystem::path& p) {
  struct statfs fs {};
  if (::statfs(p.c_str(), &fs) != 0) return true;  // unknown: polling always works
  constexpr std::uint64_t kNetwork[] = {
      0x6969,      // NFS
      0x517B,      // SMB
      0xFF534D42,  // CIFS
      0xFE534D42,  // SMB2
      0x65735546,  // FUSE (sshfs, s3fs, …)
      0x00C36400,  // Ceph
      0x0BD00BD0,  // Lustre
      0x47504653,  // GPFS
      0x5346414F,  // AFS
      0x6B414653,  // kAFS
      0x01021997,  // 9P
      0x73757245,  // Coda
  };
  const auto type = static_cast<std::uint64_t>(static_cast<std::uint32_t>(fs.f_type));
  return std::find(std::begin(kNetwork), std::end(kNetwork), type) != std::end(kNetwork);
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Opens a file that a stat() found regular. O_NONBLOCK: should a FIFO be swapped in meanwhile,
// opening it returns at once, and the fstat() after refuses it.
int open_for_reading(const std::filesystem::path& p) { return ::open(p.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY); }

// Reads up to `limit` bytes from `offset`, stopping early at the end of the file.
std::string read_at(int fd, std::uint64_t offset, std::size_t limit) {
  std::string out(limit, '\0');
  std::size_t got = 0;
  while (got < limit) {
    const ssize_t n = ::pread(fd, out.data() + got, limit - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(std::string("cannot read: ") + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

std::string describe(const ModelConfig& c) {
  std::string s = to_string(c.family);
  s.append(" ").append(image_shape_text(c));
  if (c.family != ModelFamily::Conv) {
    s.append(", hidden");
    for (int h : c.hidden) s.append(" ").append(std::to_string(h));
  }
  s.append(", latent ").append(std::to_string(c.latent));
  if (is_clustering(c.family)) s.append(", ").append(std::to_string(c.clusters)).append(" clusters");
  return s.append(", ").append(to_string(c.likelihood));
}

template <class T>
bool parse_whole(const std::string& s, T& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

struct RunFollower::State {
  FollowOptions opt;
  std::filesystem::path folder, weights_path, metrics_path;

  // Watching
  int inotify_fd = -1;
  int folder_wd = -1;  // the run folder, while it is there and its file system sends events
  int parent_wd = -1;  // its parent, while waiting for the folder to appear
  bool folder_present = false;
  FileVersion folder_version;
  bool reported_not_a_folder = false;

  // Why the next scan is due (besides the clock)
  bool first_scan = true;
  bool metrics_touched = false, weights_completed = false, weights_created = false, folder_touched = false;
  bool metrics_backlog = false;
  std::string folder_lost_how;  // set by an inotify event: "deleted", "moved away"
  std::chrono::steady_clock::time_point last_scan{};

  // metrics.jsonl
  bool metrics_open = false;     // a metrics file is being followed
  bool metrics_ever = false;     // one was, at some time: a new one restarts the caller's records
  FileVersion metrics_version;   // the followed file (dev, ino)
  std::uint64_t metrics_offset = 0;
  std::string partial_line;      // bytes after the last newline, waiting for the rest
  bool skipping_long_line = false;
  std::int64_t line_number = 0;  // complete lines seen in the followed file
  bool finished = false;
  std::optional<FileVersion> metrics_refused;  // the version a problem was last reported for

  // weights.safetensors
  std::optional<FileVersion> weights_seen;  // the version last read or refused
  std::optional<FollowedWeights> last_good;

  std::optional<std::int64_t> newest_mtime_ns;

  // ---- watching ----

  bool watching() const { return folder_wd >= 0; }

  void stop_watching(int& wd) {
    if (wd >= 0 && inotify_fd >= 0) ::inotify_rm_watch(inotify_fd, wd);
    wd = -1;
  }

  void watch_folder() {
    stop_watching(parent_wd);
    if (inotify_fd < 0 || is_network_file_system(folder)) return;
    folder_wd = ::inotify_add_watch(inotify_fd, folder.c_str(),
                                    IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM |
                                        IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
  }

  void watch_parent() {
    stop_watching(folder_wd);
    if (inotify_fd < 0 || parent_wd >= 0) return;
    const auto parent = folder.has_parent_path() ? folder.parent_path() : std::filesystem::path(".");
    if (is_network_file_system(parent)) return;
    parent_wd = ::inotify_add_watch(inotify_fd, parent.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
  }

  void read_events() {
    if (inotify_fd < 0) return;
    alignas(struct inotify_event) char buf[16384];
    for (;;) {
      const ssize_t n = ::read(inotify_fd, buf, sizeof buf);
      if (n <= 0) return;  // EAGAIN: drained
      for (ssize_t at = 0; at < n;) {
        const auto* ev = reinterpret_cast<const struct inotify_event*>(buf + at);
        at += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
        note_event(*ev);
      }
    }
  }

  void note_event(const struct inotify_event& ev) {
    const std::string name = ev.len ? std::string(ev.name) : std::string();
    if (ev.mask & IN_Q_OVERFLOW) {
      metrics_touched = weights_completed = folder_touched = true;
    } else if (ev.wd == parent_wd && parent_wd >= 0) {
      if (name == folder.filename().string()) folder_touched = true;
    } else if (ev.wd == folder_wd && folder_wd >= 0) {
      if (ev.mask & IN_DELETE_SELF) folder_lost_how = "deleted";
      else if (ev.mask & IN_MOVE_SELF) folder_lost_how = "moved away";
      else if ((ev.mask & IN_IGNORED) && folder_lost_how.empty()) folder_lost_how = "removed or unmounted";
      else if (name == kRunMetricsFile) metrics_touched = true;
      else if (name == kRunWeightsFile && (ev.mask & (IN_CLOSE_WRITE | IN_MOVED_TO))) weights_completed = true;
      else if (name == kRunWeightsFile && (ev.mask & IN_CREATE)) weights_created = true;
    }
  }

  std::chrono::milliseconds rescan_interval() const {
    return watching() ? opt.inotify_rescan_interval : opt.poll_interval;
  }

  bool scan_due(std::chrono::steady_clock::time_point now) const {
    return first_scan || metrics_touched || weights_completed || weights_created || folder_touched ||
           metrics_backlog || !folder_lost_how.empty() || now - last_scan >= rescan_interval();
  }

  void wait_until(std::chrono::steady_clock::time_point until) {
    const auto now = std::chrono::steady_clock::now();
    if (until <= now) return;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
    if (inotify_fd >= 0 && (folder_wd >= 0 || parent_wd >= 0)) {
      struct pollfd p {inotify_fd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<long long>(ms, 1'000'000)));
    } else {
      std::this_thread::sleep_until(until);
    }
  }

  // ---- scanning ----

  void note_mtime(const FileVersion& v) {
    if (!newest_mtime_ns || v.mtime_ns > *newest_mtime_ns) newest_mtime_ns = v.mtime_ns;
  }

  // `periodic`: the rescan interval has passed (with inotify, the net for events that never came).
  void scan(FollowUpdate& u, bool periodic) {
    const bool completed = weights_completed;
    first_scan = metrics_touched = weights_completed = weights_created = folder_touched = metrics_backlog = false;
    last_scan = std::chrono::steady_clock::now();
    if (!folder_lost_how.empty()) {
      lose_folder(u, folder_lost_how);
      folder_lost_how.clear();
    }
    const bool was_present = folder_present;
    if (!check_folder(u)) return;
    scan_metrics(u);
    // Polling reads whatever changed; inotify reads a weights file its writer has completed, and
    // anything a rescan or a folder that just (re)appeared finds changed.
    scan_weights(u, !watching() || completed || periodic || !was_present);
  }

  void lose_folder(FollowUpdate& u, const std::string& how) {
    if (!folder_present) return;
    u.problems.push_back("the run folder " + folder.string() + " was " + how + "; " +
                         (last_good ? "the last model stays" : "there is no model yet") +
                         ", and the folder is waited for");
    folder_present = false;
    metrics_open = false;
    finished = false;
    weights_seen.reset();
    metrics_refused.reset();
    watch_parent();
  }

  bool check_folder(FollowUpdate& u) {
    const auto v = stat_version(folder);
    if (!v || v->type != S_IFDIR) {
      if (folder_present) lose_folder(u, "deleted or moved away");
      if (!folder_present && parent_wd < 0 && folder_wd < 0) watch_parent();
      if (v && !reported_not_a_folder) {
        u.problems.push_back(folder.string() + " is " + kind_of(v->type) + ", not a run folder; waiting for a folder there");
        reported_not_a_folder = true;
      }
      return false;
    }
    reported_not_a_folder = false;
    if (folder_present && !v->same_file(folder_version)) lose_folder(u, "replaced by another folder");
    if (!folder_present) {
      folder_present = true;
      folder_version = *v;
      watch_folder();
    }
    return true;
  }

  void restart_metrics(FollowUpdate& u, const FileVersion& v) {
    if (metrics_ever) {
      u.metrics_restarted = true;
      u.metrics.clear();
      u.finished = false;
    }
    metrics_ever = metrics_open = true;
    metrics_version = v;
    metrics_offset = 0;
    partial_line.clear();
    skipping_long_line = false;
    line_number = 0;
    finished = false;
  }

  void scan_metrics(FollowUpdate& u) {
    const auto v = stat_version(metrics_path);
    if (!v) {
      metrics_open = false;  // a file that comes back is a new one
      return;
    }
    note_mtime(*v);
    if (!v->regular()) {
      if (metrics_refused != v)
        u.problems.push_back(metrics_path.string() + " is " + kind_of(v->type) + ", not a regular file: not read");
      metrics_refused = v;
      metrics_open = false;
      return;
    }
    if (!metrics_open || !v->same_file(metrics_version) || static_cast<std::uint64_t>(v->size) < metrics_offset)
      restart_metrics(u, *v);
    if (static_cast<std::uint64_t>(v->size) == metrics_offset) return;
    try {
      Fd fd(open_for_reading(metrics_path));
      struct stat st {};
      if (fd.fd < 0) throw Error(std::string("cannot open: ") + std::strerror(errno));
      if (::fstat(fd.fd, &st) != 0) throw Error(std::string("cannot stat: ") + std::strerror(errno));
      if (!version_of(st).same_file(*v) || !S_ISREG(st.st_mode)) {
        metrics_touched = true;  // replaced between stat() and open(): look again
        return;
      }
      const auto size = static_cast<std::uint64_t>(st.st_size);
      if (size <= metrics_offset) {
        metrics_touched = size < metrics_offset;  // cut short since the stat(): the next scan restarts it
        return;
      }
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(size - metrics_offset, kMetricsBytesPerScan));
      const std::string bytes = read_at(fd.fd, metrics_offset, want);
      metrics_offset += bytes.size();
      metrics_backlog = metrics_offset < size;
      take_metrics_bytes(u, bytes);
    } catch (const Error& e) {
      if (metrics_refused != v) u.problems.push_back(metrics_path.string() + ": " + e.what());
      metrics_refused = v;  // tried again at each scan, reported again only when the file changes
    }
  }

  void take_metrics_bytes(FollowUpdate& u, std::string_view bytes) {
    while (!bytes.empty()) {
      const auto nl = bytes.find('\n');
      const std::string_view piece = bytes.substr(0, nl);
      if (!skipping_long_line) {
        partial_line.append(piece);
        if (partial_line.size() > opt.max_metrics_line) {
          u.problems.push_back(metrics_path.string() + " line " + std::to_string(line_number + 1) + " is longer than " +
                               std::to_string(opt.max_metrics_line) + " bytes: skipped");
          partial_line.clear();
          skipping_long_line = true;
        }
      }
      if (nl == std::string_view::npos) return;  // the rest of the line is still to come
      ++line_number;
      if (!skipping_long_line) take_metrics_line(u, partial_line);
      partial_line.clear();
      skipping_long_line = false;
      bytes.remove_prefix(nl + 1);
    }
  }

  void take_metrics_line(FollowUpdate& u, std::string_view line) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
    MetricsRecord rec;
    rec.line = line_number;
    try {
      rec.fields = parse_flat_json_object(line);
    } catch (const Error& e) {
      u.problems.push_back(metrics_path.string() + " line " + std::to_string(line_number) + " is skipped: " + e.what());
      return;
    }
    if (rec.finished()) u.finished = finished = true;
    u.metrics.push_back(std::move(rec));
  }

  std::string kept_model() const {
    if (!last_good) return "there is no model yet";
    return last_good->step >= 0 ? "the model from step " + std::to_string(last_good->step) + " stays"
                                : std::string("the last good model stays");
  }

  // `read_changed`: read a regular file whose version is new. Without it (inotify announced a file
  // being created, not yet completed) only a file that must never be opened is reported.
  void scan_weights(FollowUpdate& u, bool read_changed) {
    const auto v = stat_version(weights_path);
    if (!v) return;
    note_mtime(*v);
    if (weights_seen == v) return;
    if (!v->regular()) {
      weights_seen = v;
      u.problems.push_back(weights_path.string() + " is " + kind_of(v->type) + ", not a regular file: not opened");
      return;
    }
    if (!read_changed) return;
    weights_seen = v;
    if (static_cast<std::uint64_t>(v->size) > opt.max_weights_bytes) {
      u.problems.push_back(weights_path.string() + " is " + std::to_string(v->size) + " bytes, more than the " +
                           std::to_string(opt.max_weights_bytes) + " allowed: not read; " + kept_model());
      return;
    }
    try {
      deliver_weights(u, read_weights());
    } catch (const std::exception& e) {
      u.problems.push_back(weights_path.string() + " is half-written or corrupt (" + e.what() + "); " + kept_model());
    }
  }

  // The bytes of the weights file that is there now, checked regular and within the size limit
  // on the open descriptor itself.
  SafetensorsFile read_weights() {
    Fd fd(open_for_reading(weights_path));
    if (fd.fd < 0) throw Error(std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.fd, &st) != 0) throw Error(std::string("cannot stat: ") + std::strerror(errno));
    const FileVersion v = version_of(st);
    weights_seen = v;  // what is read, even if the file was replaced since the stat()
    if (!v.regular()) throw Error(std::string("it became ") + kind_of(v.type));
    if (static_cast<std::uint64_t>(v.size) > opt.max_weights_bytes) throw Error("it grew beyond the size limit");
    const std::string bytes = read_at(fd.fd, 0, static_cast<std::size_t>(v.size));
    if (bytes.size() != static_cast<std::size_t>(v.size))
      throw Error("it shrank from " + std::to_string(v.size) + " to " + std::to_string(bytes.size()) + " bytes while read");
    return decode_safetensors(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }

  void deliver_weights(FollowUpdate& u, const SafetensorsFile& file) {
    FollowedWeights w;
    w.model = std::make_shared<const Model>(import_model(file));
    if (const auto it = file.metadata.find("step"); it != file.metadata.end() && !parse_whole(it->second, w.step))
      w.step = -1;
    if (const auto it = file.metadata.find("epoch"); it != file.metadata.end() && !parse_whole(it->second, w.epoch))
      w.epoch = std::numeric_limits<double>::quiet_NaN();
    if (last_good && last_good->model->config() != w.model->config()) {
      w.config_changed = true;
      u.problems.push_back("the model in " + weights_path.string() + " changed from " +
                           describe(last_good->model->config()) + " to " + describe(w.model->config()));
    }
    last_good = w;
    last_good->config_changed = false;
    u.weights = std::move(w);
  }
};

RunFollower::RunFollower(std::filesystem::path folder, FollowOptions options)
    : folder_(folder.lexically_normal()), state_(std::make_unique<State>()) {
  if (!folder_.has_filename() && folder_.has_parent_path()) folder_ = folder_.parent_path();  // "runs/a/" → "runs/a"
  State& s = *state_;
  s.opt = options;
  s.folder = folder_;
  s.weights_path = folder_ / kRunWeightsFile;
  s.metrics_path = folder_ / kRunMetricsFile;
  if (options.mode == FollowMode::Auto) s.inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
}

RunFollower::~RunFollower() {
  if (state_->inotify_fd >= 0) ::close(state_->inotify_fd);
}

FollowUpdate RunFollower::poll(std::chrono::milliseconds timeout) {
  State& s = *state_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  FollowUpdate u;
  for (;;) {
    s.read_events();
    const auto now = std::chrono::steady_clock::now();
    if (s.scan_due(now)) s.scan(u, now - s.last_scan >= s.rescan_interval());
    if (!u.empty() || std::chrono::steady_clock::now() >= deadline) return u;
    s.wait_until(std::min(deadline, s.last_scan + s.rescan_interval()));
  }
}

bool RunFollower::folder_present() const { return state_->folder_present; }
bool RunFollower::using_inotify() const { return state_->watching(); }
bool RunFollower::finished() const { return state_->finished; }
const FollowedWeights* RunFollower::last_weights() const { return state_->last_good ? &*state_->last_good : nullptr; }

std::optional<double> RunFollower::seconds_since_change(std::chrono::system_clock::time_point now) const {
  if (!state_->newest_mtime_ns) return std::nullopt;
  const double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  return std::max(0.0, now_s - static_cast<double>(*state_->newest_mtime_ns) * 1e-9);
}

}  // namespace vaelab
