// Following a run folder that another program trains into (python/vaelab_torch/run_writer.py):
// weights.safetensors replaced atomically as training goes, metrics.jsonl appended line by line.
// A UI-free follower the caller polls; not a thread, not a UI, and not the evaluation driver.
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.hpp"

namespace vaelab {

// ---- A strict reader for one flat JSON object (a metrics.jsonl line) ----

// One value of a flat JSON object: null, a boolean, a number or a string (nested objects and
// arrays are refused, as are NaN, Infinity and numbers outside double's range).
struct JsonScalar {
  enum class Kind : std::uint8_t { Null, Bool, Number, String };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string text;
};
using FlatJsonObject = std::map<std::string, JsonScalar>;

// Parses text that holds exactly one JSON object whose values are scalars (surrounding whitespace
// allowed). Throws vaelab::Error naming what is wrong and where (repeated keys included).
FlatJsonObject parse_flat_json_object(std::string_view text);

// ---- What a poll reports ----

// One complete line of metrics.jsonl.
struct MetricsRecord {
  std::int64_t line = 0;  // 1-based, in the metrics file now followed
  FlatJsonObject fields;
  // The number under key; NaN when it is missing, null or not a number ("test_elbo": null is a
  // NaN or Inf the writer could not put in JSON).
  double number(const std::string& key) const;
  bool finished() const;  // {"finished": true}: the run ended with this line
};

// A weights file fully read, decoded and imported.
struct FollowedWeights {
  std::shared_ptr<const Model> model;
  std::int64_t step = -1;                                  // the file's "step" metadata; -1 without one
  double epoch = std::numeric_limits<double>::quiet_NaN();  // its "epoch" metadata; NaN without one
  // The model's config differs from the one delivered before (another family, image size, latent
  // size, widths or likelihood). The follower delivers it all the same and compares later files
  // with this one; the caller decides whether to take it (a problem message says what changed).
  bool config_changed = false;
};

struct FollowUpdate {
  // metrics.jsonl was replaced (a fresh start or a resume writes a new, possibly shorter file), or
  // the folder came back after it was lost: `metrics` starts at the new file's first line and the
  // caller drops the records it holds.
  bool metrics_restarted = false;
  std::vector<MetricsRecord> metrics;       // new complete lines, in file order
  std::optional<FollowedWeights> weights;   // the newest good weights file since the last poll
  // The {"finished": true} line came in this poll. The run's final weights were written before that
  // line, so they are in this update or an earlier one (run_writer.py's order, checked here).
  bool finished = false;
  std::vector<std::string> problems;        // for the user: each says what happened and what is kept
  bool empty() const { return !metrics_restarted && metrics.empty() && !weights && !finished && problems.empty(); }
};

// ---- The follower ----

enum class FollowMode : std::uint8_t {
  Auto,     // inotify where the folder's file system delivers its events, stat() polling elsewhere
  Polling,  // stat() polling only (mtime, size, inode of each file)
};

struct FollowOptions {
  FollowMode mode = FollowMode::Auto;
  // How often the files are stat()ed: in polling mode, the whole detection; with inotify, a net for
  // events that never come (a writer on another host of a network file system).
  std::chrono::milliseconds poll_interval{250};
  std::chrono::milliseconds inotify_rescan_interval{2000};
  std::uint64_t max_weights_bytes = std::uint64_t{2} << 30;  // a larger file is refused unread
  std::size_t max_metrics_line = 1 << 20;                    // a longer line is skipped
};

// The run folder's files, as run_writer.py names them.
inline constexpr const char* kRunWeightsFile = "weights.safetensors";
inline constexpr const char* kRunMetricsFile = "metrics.jsonl";

// Follows one run folder. Not synchronised: one thread at a time calls it (the trainer thread in
// the app, the main loop in vaelab-train). A folder that does not exist yet, or is empty, is waited
// for; a folder deleted or moved away is reported and then waited for again. Only regular files
// are opened (a FIFO or device named like a run file is refused before opening) and none beyond
// the size limits is read. Nothing it finds makes it throw: problems come back as messages.
//
// To evaluate a followed model as vaelab-train's --json prints it (test ELBO, recon, KL, IWAE_K),
// the caller uses vaelab::evaluate (core/objective.hpp) on the data set's test images, as the
// trainer's epoch-end evaluation does: EvalOptions{samples 1, iwae_k K (0: none), a fixed seed};
// Evaluation::elbo, recon, kl and iwae are the fields printed. The data set's image size must be
// the model's (model.config().image_c × image_h × image_w): check it before calling, evaluate does not.
class RunFollower {
 public:
  explicit RunFollower(std::filesystem::path folder, FollowOptions options = {});
  ~RunFollower();
  RunFollower(const RunFollower&) = delete;
  RunFollower& operator=(const RunFollower&) = delete;

  // What happened since the last call. Waits up to `timeout` for something to happen, returning
  // as soon as it does (0: look once, never wait).
  FollowUpdate poll(std::chrono::milliseconds timeout = std::chrono::milliseconds{0});

  const std::filesystem::path& folder() const { return folder_; }
  bool folder_present() const;         // false while waiting for the folder
  bool using_inotify() const;          // inotify watches the folder now (false while polling or waiting)
  bool finished() const;               // the current metrics file ended with {"finished": true}
  // The last good weights delivered (they stay when a later file is broken); null before the first.
  const FollowedWeights* last_weights() const;
  // Seconds between `now` and the newest modification time of the run's files seen so far
  // (never negative); nullopt before any file was seen. Status lines say "changed 3 min ago".
  std::optional<double> seconds_since_change(
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const;

 private:
  struct State;
  std::filesystem::path folder_;
  std::unique_ptr<State> state_;
};

}  // namespace vaelab
