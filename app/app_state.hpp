// AppState: everything the desktop app remembers between frames — command-line options, the
// trainer, messages, and one plain struct per panel (view settings, caches, GL images).
// Panels keep no function-local statics; they read and write their struct here.
// Not shared with the trainer thread: only the UI thread touches it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>
#include <imgui.h>

#include "app/file_chooser.hpp"
#include "app/gl_image.hpp"
#include "app/gl_points.hpp"
#include "app/help.hpp"
#include "core/autosave.hpp"
#include "core/config.hpp"
#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/gap.hpp"
#include "core/panel_layout.hpp"
#include "core/rng.hpp"
#include "core/snapshot.hpp"
#include "core/trainer.hpp"
#include "core/view_math.hpp"

namespace vaelab::app {

// ---- command line ----
struct Options {
  std::filesystem::path data;          // empty: core::default_data_folder()
  LoadOptions data_options;            // how the data is read: channels, size, split, subset
  std::filesystem::path load;          // a checkpoint (or .safetensors) to open at start
  ModelConfig model;                   // image size is taken from the data
  TrainConfig train;
  TrainerOptions trainer;
  int width = 1280, height = 800;
  bool size_given = false;
  std::filesystem::path screenshot_dir;  // test hook: F12 / SIGUSR1 write PNGs + widget rects here
  std::filesystem::path drop_list;       // test hook: SIGUSR2 drops the paths listed in this file
  std::filesystem::path frame_stats;     // write per-frame times (CSV) here at exit
  double quit_after_s = 0;               // close by itself after this many seconds (measurements)
  bool no_resume = false;                // do not offer to resume the autosave
  int autosave_minutes = -1;             // --autosave-minutes (−1: the saved preference)
  int fps_cap = 60;                      // frame limiter when the swap does not block (Xvfb)
  bool vsync = true;
  bool full_redraw = false;              // no FrameCache: redraw the whole window every frame
  int trainer_nice = 5;                  // the trainer's threads run this much nicer than the UI
  int watch_fps = 10;                    // redraws per second for new snapshots without input
  std::filesystem::path follow;          // a run folder to follow from the start (--follow)
};

// A training step no snapshot has: caches keyed on a snapshot's step (latent_step is −1 before
// the first encoding) start out with it.
inline constexpr std::int64_t kNeverStep = -2;

struct Message {
  Severity severity = Severity::Info;
  std::string text;
  double time = 0;  // ImGui time when posted
};

// Redo a cached computation when the snapshot changed, at most once per `period` seconds.
struct Throttle {
  std::uint64_t version = std::numeric_limits<std::uint64_t>::max();
  double last = -1e9;
  bool due(std::uint64_t v, double now, double period) {
    if (v == version || now - last < period) return false;
    version = v;
    last = now;
    return true;
  }
  void invalidate() { version = std::numeric_limits<std::uint64_t>::max(), last = -1e9; }
};

// The fields of the model-settings form, as its widgets edit them (combo indices are the enums'
// values). Comparable, so the form can tell whether it was edited.
struct ModelFormFields {
  int latent = 2;
  char hidden[64] = "400";
  int likelihood = 0;
  int family = 0;
  int clusters = 10;
  float sigma = 0.1f;
  int batch = 128, samples = 1, seed = 1, threads = 1, binarize = 0;
  bool operator==(const ModelFormFields&) const = default;
};

// The model-settings form edits a pending configuration. While unedited it follows the running
// model (loads, rebuilds); once edited it stays as edited until Rebuild or Revert.
struct ModelForm {
  ModelFormFields fields;             // what the user sees and edits
  ModelFormFields running;            // the running model's configuration, as form fields
  bool filled = false;                // `running` has been read from a snapshot
  bool edited() const { return filled && !(fields == running); }
  // What "Rebuild" builds (validated when pressed, shown in the confirmation).
  ModelConfig requested_model;
  TrainConfig requested_train;
  std::string error;                  // why the form cannot be applied
  // The confirmation's "Save first": log lines after this serial are the trainer's answer.
  std::optional<std::uint64_t> saved_after_log;
};

struct TrainingPanelState {
  // live settings (edited here, sent on release; re-synced from the snapshot otherwise)
  float lr = 1e-3f, beta = 1.0f;
  int warmup = 0;
  double hold_until = 0;
  ModelForm form;                     // applied by "Rebuild…" after a confirmation
  // files
  char file_path[1024] = "";
  char data_path[1024] = "";
  std::uint64_t log_lines_seen = 0;  // serial of the last log line shown (for auto-scroll)
  // The form's model against the free memory: "needs 180 MB of 7.6 GB available" (empty: unknown).
  std::string memory_text;
  bool memory_fits = true;
  std::uint64_t available = 0;       // available_memory(), re-read every few seconds
  double available_at = -1e9;
};

// File → Follow a run…: the folder field of its modal (the last folder followed) and whether the
// menu asked for the modal this frame.
struct FollowFormState {
  char folder[1024] = "";
  bool open_requested = false;
};

struct CurvesState {
  bool log_y = false;
  bool show_raw = true;
  bool robust = true;       // y range ignores the 1 % most extreme values (the first steps)
  float smoothing = 0.95f;  // EMA weight of the past (0: none)
  std::uint64_t history_key = std::numeric_limits<std::uint64_t>::max();
  float cached_smoothing = -1;
  double refreshed_at = -1e9;
  bool cached_log = false;
  // extracted series (x = step)
  std::vector<float> step_x, elbo, recon, kl, elbo_s, recon_s, kl_s;
  std::vector<float> epoch_x, test_elbo, test_recon, test_kl, train_epoch_elbo;
  // what is drawn: the per-step series decimated to a few thousand points (min/max per bucket)
  struct Drawn {
    std::vector<float> x, y;
  };
  Drawn d_elbo, d_recon, d_kl, d_elbo_s, d_recon_s, d_kl_s;
  float top_plot_px = 600, bottom_plot_px = 300;  // widths of the plots, for the decimation
  std::vector<std::string> marker_text;
  std::vector<double> marker_x;
};

struct LatentMapState {
  enum Mode : int { kPcaPlane, kTwoDims };           // int: ImGui's combo edits it
  enum ColourBy : int { kByLabel, kByCluster };      // kByCluster: argmax p(y|z) of the clustering VAE
  int mode = kPcaPlane;
  int colour_by = kByLabel;
  int dim_x = 0, dim_y = 1;
  Pca2 plane;    // projection: plane = componentsᵀ (z − mean); dims mode uses unit axes, mean 0
  bool plane_valid = false;
  std::uint64_t plane_serial = 0;  // increments whenever the plane changes (caches depend on it)
  // projected codes, refreshed when the snapshot's codes or the plane change
  struct CodesKey {                   // what the projected codes were made from (−1: nothing yet)
    std::int64_t step = kNeverStep;
    const void* data = nullptr;
    int mode = -1, dx = -1, dy = -1, colour = -1;
    std::size_t count = 0;            // how many codes are shown
    std::uint64_t score_serial = 0;   // of the cluster scores they were coloured with
  } codes;
  // Clustering VAE with labels: argmax p(y|z) of the display codes scored against their labels,
  // refreshed with the codes (live, every latent refresh), and each cluster's matched label. The
  // Clusters panel reads them too (update_cluster_scores, whichever panel draws first).
  std::int64_t score_step = kNeverStep;
  bool scored = false;                // scored once (with the codes of score_step since)
  std::uint64_t score_serial = 0;     // increments with every new scoring
  float cluster_acc = std::numeric_limits<float>::quiet_NaN();
  float cluster_nmi = std::numeric_limits<float>::quiet_NaN();
  int scored_points = 0, used_clusters = 0;
  std::vector<int> cluster_to_label;  // (K), −1: unmatched
  std::vector<int> cluster_of;        // (N) argmax p(y|z) of each display code
  std::vector<int> cluster_sizes;     // (K) display codes in each cluster
  Eigen::MatrixXd cluster_label_table;  // (K, classes) display codes per cluster and label; empty: no labels
  Eigen::MatrixXf xy;                 // (2, N)
  std::vector<std::uint8_t> labels;   // N (255: none)
  GlPoints points;
  int mode_for_latent = -1;           // the latent size the default mode was chosen for
  // view
  bool auto_fit = true;
  bool animating = false;             // the view is still easing towards the fit
  double view_changed_at = -1e9;      // last pan / zoom / fit step (s)
  double rendered_at = -1e9;          // last time the points were re-rendered (s)
  double cx = 0, cy = 0, half_h = 3;  // centre and half the visible height, plane units
  struct Extent {
    double cx = 0, cy = 0, half_w = 3, half_h = 3;
  };
  Extent fit;                         // robust extent of the codes
  Extent goal{0, 0, 3, -1};           // where auto-fit takes the view (moves in steps; half_h −1: none yet)
  float point_px = 4;
  // interaction
  int hovered = -1;                   // index into the display subset
  enum class Drag { None, Pan, MoveZ } drag = Drag::None;
  // The hovered code's test image and reconstruction, for the tooltip.
  struct HoverImages {
    GlImage original, recon;
    int cached = -1;                  // the code they show
    std::uint64_t version = 0;        // AppState::live_serial they were decoded with
  } hover_images;
  int hovered_mean = -1;              // clustering VAE: the cluster mean under the mouse
  struct MeanImage {                  // its decoded image
    GlImage image;
    int cached = -1;
    std::uint64_t version = 0;
  } mean_image;
};

struct DecoderState {
  Eigen::VectorXf z;                  // the slider position (latent)
  GlImage image;
  std::uint64_t decoded_version = std::numeric_limits<std::uint64_t>::max();
  Eigen::VectorXf decoded_z;
  float range = 3.0f;                 // sliders span ±range
  bool sort_by_kl = true;
  std::vector<int> order;             // slider order (by KL, descending), refreshed when idle
  double order_time = -1e9;
  Rng rng{12345};
};

struct InterpolationState {
  Eigen::VectorXf a, b;
  bool has_a = false, has_b = false;
  std::uint64_t ab_serial = 1;        // increments when A or B move
  float t = 0.5f;
  int frames = 9;
  GlImage lerp_strip, slerp_strip, lerp_at_t, slerp_at_t;
  Throttle strips;
  std::uint64_t strips_ab = 0;
  int strips_frames = 0;
  std::uint64_t at_t_version = std::numeric_limits<std::uint64_t>::max();
  float at_t = -1;
  std::uint64_t at_t_ab = 0;
};

struct ManifoldState {
  int n = 10;
  GlImage grid;
  Throttle refresh;
  int built_n = 0;
  std::uint64_t built_plane = 0;
  Eigen::VectorXf built_base;
  Eigen::MatrixXf zs;                 // (d, n·n), row-major tiles from the top-left
};

struct SamplesState {
  int rows = 4, cols = 8, pairs = 8;
  GlImage prior, recon_pairs;
  Eigen::MatrixXf eps;                // (d, rows·cols) prior draws
  std::vector<int> test_idx;          // test images shown with their reconstructions
  std::uint64_t prior_seed = 1, pick_seed = 1;
  Throttle refresh;
  bool dirty = true;
};

// The Clusters panel (clustering VAE): its confusion matrix and sizes come from LatentMapState's
// scores; here are the decoded means and samples, one row per cluster in the order shown.
struct ClustersState {
  static constexpr int kSamples = 4;  // decoded draws z ~ N(μ_y, σ_y²) beside each mean
  std::uint64_t seed = 1;             // "Resample" draws new ones
  Eigen::MatrixXf eps;                // (d, K·(1 + kSamples)): per row a zero column (the mean), then draws
  std::uint64_t eps_seed = 0;         // the seed eps was drawn with
  std::vector<int> order;             // the clusters' rows, as `images` shows them
  GlImage images;                     // K rows of (1 + kSamples) tiles
  Throttle refresh;
};

enum class GapTab { None = -1, Bounds, Posterior, KlPerDim, Aggregate, Estimators };

// The "Gap" window (panel_gap.cpp and its tabs): IWAE vs ELBO, the true posterior of one test
// image, per-dimension KL, the aggregate posterior, gradient estimators. Long computations run on
// std::async and are polled each frame; a finished result is kept with the key it was made for.
struct GapState {
  bool open = true;                   // its tab is the one shown beside Manifold's (View menu, a right-click on the map)
  GapTab select_tab = GapTab::None;   // a tab to bring forward next frame
  // IWAE at epoch ends (sent to the trainer; the app starts with these)
  bool iwae_on = true;
  int iwae_k = 100, iwae_points = 500;
  int sent_k = 100, sent_points = 500;  // what the trainer has (from the command line at start)
  int resolution = 128;                // the posterior's grid (a saved preference)
  bool zoom = true;                   // frame the posterior, not ±3 (a saved preference)
  // The true posterior of one test image.
  struct Posterior {
    int index = -1;                   // test index (−1: the first display point)
    struct Key {
      std::uint64_t model = 0;        // AppState::model_serial
      int index = -1, resolution = 0, k = 0;
      std::uint64_t plane = 0;
      bool zoom = true;
      bool operator==(const Key&) const = default;
    };
    std::future<PosteriorGrid> job;
    Key job_key, key;                 // what is running / what `grid` shows
    std::optional<PosteriorGrid> grid;
    std::string error;
    double started = 0, seconds = 0;
    double finished = -1e9;           // when the last job finished (recomputing for a new model is throttled)
    GlImage heat, x, recon;
  } post;
  // The test-set KL per dimension and epoch, as a texture (redone per epoch and model).
  struct KlHeat {
    GlImage image;
    std::size_t epochs = 0;
    std::uint64_t model = 0;          // AppState::model_serial
  } kl_heat;
  std::int64_t units_step = kNeverStep;
  ActiveUnits units;
  // The aggregate posterior q(z) of the display subset vs the prior.
  struct Aggregate {
    std::future<AggregateGrid> job;
    std::optional<AggregateGrid> grid;
    std::uint64_t model = 0, job_model = 0;  // AppState::model_serial of `grid` / of the running job
    double started = -1e9;
    GlImage heat, prior_heat;
  } agg;
  // estimators
  bool measure = false;               // mirrors TrainerOptions::measure_estimators (not in the snapshot)
  struct EstimatorSeries {          // the measurements as plot series (x: step)
    std::vector<float> x, reparam, score;
  } est;
};

// Autosave of the current run (every `minutes`, and on exit) and the offer to resume one found at
// launch. While the offer is open the trainer waits: the data read meanwhile is parked here.
struct AutosaveState {
  int minutes = kDefaultAutosaveMinutes;  // in force this launch; 0: off (periodic and on exit)
  int saved_minutes = kDefaultAutosaveMinutes;  // the preference in the ini (--autosave-minutes is for one launch)
  std::filesystem::path file, aside;      // <data dir>/autosave.vaelab, …/autosave.previous.vaelab
  std::unique_ptr<AutosaveLock> lock;     // held: this instance owns autosave.vaelab
  AutosaveClock clock;
  bool offer_open = false;                // the modal is showing
  std::vector<AutosaveInfo> offers;       // autosave.vaelab first, then other instances' (resumable_autosaves)
  int chosen = 0;                         // the offer Resume picked
  enum class Answer { None, Resume, StartFresh } answer = Answer::None;
  std::shared_ptr<const Dataset> parked_data;
  // The exit autosave: done (or not needed) once; when it failed, the window stays open with why and
  // a place to save elsewhere (App::exit_dialog) until the run is saved or the user quits without.
  bool exit_saved = false;
  bool paused_at_exit = false;  // the run's state before quitting stopped it (the exit autosave records it)
  std::string exit_error;
  char elsewhere[1024] = "";
};

struct FrameStats {
  std::vector<float> work_ms;         // build + render + swap, per frame
  std::vector<float> interval_ms;     // start to start
  std::vector<float> build_ms, render_ms, swap_ms;  // the parts of work_ms
  std::vector<float> damaged;         // share of the window redrawn (FrameCache)
  std::vector<std::string> events;    // the heavy work each frame did (AppState::frame_events)
  bool cache_direct = false;          // FrameCache draws into the preserved back buffer
  double fps = 0;                     // frames drawn during the last second
  std::vector<double> recent;         // start times (s) of the frames in that second
  // Training seen by the UI, for the report at exit: the first frame with steps taken, the last.
  double train_t0 = -1, train_t1 = -1;
  std::int64_t train_step0 = 0, train_step1 = 0;
  std::vector<float> train_rate;      // the trainer's recent samples/s, per frame while running
};

struct AppState {
  Options options;
  std::unique_ptr<Trainer> trainer;
  std::shared_ptr<const Snapshot> snap;   // this frame's snapshot (may be null)
  std::shared_ptr<const Dataset> data;    // what the trainer was created with / last sent
  // The trainer republishes while paused; the weights only change when the model pointer does.
  // Decode caches key on model_serial (bumped when snap->model changes; holding the pointer
  // rules out a new model reusing the old address).
  std::shared_ptr<const Model> model_seen;
  std::uint64_t model_serial = 0;
  // What follows the training weights (decoded images, tooltips) keys on live_serial, which
  // catches up with model_serial at most kLivePeriod apart: software GL pays for every redrawn
  // pixel, and a few updates a second look just as live. The user's own edits act at once.
  static constexpr double kLivePeriod = 0.25;
  std::uint64_t live_serial = 0, live_of_model = 0;
  double live_at = -1e9;
  // At most one heavy refresh (a grid of decodes, a texture upload, a slice of the scatter) per
  // frame, so that their costs land in different frames instead of piling up in one.
  bool heavy_taken = false;
  bool heavy_due(Throttle& t, double period, bool forced = false) {
    if (heavy_taken && !forced) return false;
    if (!t.due(live_serial, now, forced ? 0.0 : period)) return false;
    heavy_taken = true;
    return true;
  }

  // a data folder being read in the background (drop or "Open")
  std::future<std::shared_ptr<const Dataset>> data_loading;
  std::string data_loading_path;
  std::string data_before_loading;    // the data field before this read: restored when it fails
  CancelFlag data_cancel{false};      // set on quit or Cancel: the background read stops
  LoadProgress data_progress;         // images decoded so far, of how many (the read fills it)
  // A path dropped on the window while a run would be lost by opening it: waits for a yes.
  std::filesystem::path drop_pending;
  bool drop_confirm_requested = false;

  std::vector<Message> messages;
  std::uint64_t errors_seen = 0;      // serial of the last trainer error turned into a message
  int colormap = kGrey;
  std::filesystem::path config_dir, data_dir, export_dir;
  bool reset_layout = false;          // re-apply the default tiling this frame
  // Where each panel window goes, as fractions of the work area (saved with the settings): the
  // default tiling until the user moves or resizes a panel, then where the user put it.
  std::map<std::string, Box> panel_fractions;
  bool quit = false;
  double now = 0;
  int window_w = 0, window_h = 0;     // last window size (saved with the settings)

  TrainingPanelState training;
  CurvesState curves;
  LatentMapState latent;
  DecoderState decoder;
  InterpolationState interp;
  ManifoldState manifold;
  SamplesState samples;
  ClustersState clusters;
  GapState gap;
  AutosaveState autosave;
  FollowFormState follow;
  FileChooserState chooser;
  HelpState help;
  FrameStats stats;
  // Letters for the heavy work done in this frame (see note_work), kept per frame in the
  // --frame-stats CSV so slow frames can be attributed to what they did.
  std::string frame_events;
  void note_work(char what) { frame_events += what; }

  // Screen rectangles of key widgets (min.x, min.y, max.x, max.y), for the e2e test hook.
  std::map<std::string, ImVec4> rects;
  // Texts drawn by fitted_text, for the same hook: their widths (pixels) and whether cut.
  struct FittedText {
    float full = 0, shown = 0, avail = 0;
    bool ellipsis = false;
  };
  std::map<std::string, FittedText> texts;

  void post(Severity s, std::string text);
  void note_rect(const char* name);   // the last ImGui item's rectangle
};

}  // namespace vaelab::app
