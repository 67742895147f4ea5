// The app's panels, one file each (panel_<name>.cpp), and the helpers they share: decoding on the
// UI thread, tiling images into one texture, the latent plane, export buttons, fitted texts.
// Each draw_* draws the contents of the ImGui window (or tab) named by the constants below: the app
// places the windows (as fractions of the window) and keeps the latent size in sync
// (sync_latent_size) before calling them. Not a place for core logic (see core/).
#pragma once
#include <string>
#include <vector>

#include <Eigen/Core>
#include <imgui.h>

#include "app/app_state.hpp"
#include "app/ui_colours.hpp"
#include "core/snapshot.hpp"

namespace vaelab::app {

inline constexpr const char* kWinTraining = "Training";
inline constexpr const char* kWinCurves = "Curves";
inline constexpr const char* kWinLatent = "Latent map";
inline constexpr const char* kWinDecoder = "Decoder";
inline constexpr const char* kWinInterpolation = "Interpolation";
inline constexpr const char* kWinSamples = "Samples & reconstructions";
inline constexpr const char* kWinClusters = "Clusters";
// One window, two tabs: the manifold grid and the Variational gap (both a click away, and neither
// hides Interpolation).
inline constexpr const char* kWinManifoldGap = "Manifold & Variational gap";
inline constexpr const char* kTabManifold = "Manifold";
inline constexpr const char* kTabGap = "Variational gap";

void draw_training(AppState& state, const Snapshot* snap);  // also works before any snapshot
// The model form's family and latent size, and whether it is edited: "convolutional, latent 10, edited".
std::string describe_form(const ModelForm& form);
void draw_curves(AppState& state, const Snapshot& snap);
void draw_latent_map(AppState& state, const Snapshot& snap);
// What the latent map shows: "PCA plane, 61% of variance" or "z1 vs z2".
std::string plane_caption(const LatentMapState& map);
void draw_decoder(AppState& state, const Snapshot& snap);
void draw_interpolation(AppState& state, const Snapshot& snap);
void draw_manifold(AppState& state, const Snapshot& snap);
void draw_samples(AppState& state, const Snapshot& snap);
// The clustering VAE's clusters: confusion matrix, sizes, decoded means and samples, accuracy and
// NMI per epoch (panel_clusters.cpp); one line for other models.
void draw_clusters(AppState& state, const Snapshot& snap);
// The "Variational gap" tab: a tab bar over the tabs below (panel_gap.cpp).
void draw_gap(AppState& state, const Snapshot& snap);
void draw_gap_bounds_tab(AppState& state, const Snapshot& snap);  // IWAE_K vs ELBO (panel_gap.cpp)
void draw_posterior_tab(AppState& state, const Snapshot& snap);   // panel_posterior.cpp
void draw_aggregate_tab(AppState& state, const Snapshot& snap);   // panel_aggregate.cpp
void draw_kl_tab(AppState& state, const Snapshot& snap);          // panel_kl.cpp
void draw_estimators_tab(AppState& state, const Snapshot& snap);  // panel_estimators.cpp

// Open a data folder (read in the background), a checkpoint or a .safetensors file: the same
// action as dropping it on the window (app.cpp).
void open_path(AppState& state, const std::filesystem::path& path);
// Save the run to `file` on the trainer thread, creating its folder first (app.cpp).
void save_checkpoint(AppState& state, const std::filesystem::path& file);
// Follow a run folder another program trains into (File → Follow a run…, --follow); before the
// trainer exists, it follows once the data is read (app.cpp).
void follow_run(AppState& state, const std::filesystem::path& folder);
// While following: train locally from the followed weights (app.cpp).
void continue_here(AppState& state);
// The followed run in one line: "following runs/a · step 320 (epoch 2) · changed 12 s ago ·
// inotify", "… · waiting for the run…", "… · finished" (panel_training.cpp).
std::string describe_follow(const FollowStatus& follow);
// The part after the folder: "step 320 (epoch 2) · changed 12 s ago · inotify".
std::string follow_progress(const FollowStatus& follow);

// Clustering VAE: argmax p(y|z) of the snapshot's display codes, their cluster sizes, and with
// labels the contingency table, matched labels, accuracy and NMI, into `map`. Redone when the codes
// change (once per latent refresh, whichever of the Latent map and Clusters asks first); returns
// true if redone (panel_latent_map.cpp).
bool update_cluster_scores(LatentMapState& map, const Snapshot& snap);

// ---- shared helpers (panel_common.cpp) ----

// Keep the decoder z, A and B sized to the model's latent dimension (zeros / defaults on change).
void sync_latent_size(AppState& state, const Snapshot& snap);

// z: (d, n) → images (D, n) in [0, 1] with the snapshot's model (UI thread; small n only).
void decode(const Snapshot& snap, const Eigen::Ref<const Eigen::MatrixXf>& z, Eigen::MatrixXf& images);
// Draws from the clustering VAE's prior clusters: column k is z = μ_y + σ_y ε_k for y = cluster[k]
// (a zero ε_k gives the mean μ_y itself). eps: (d, cluster.size()).
Eigen::MatrixXf cluster_draws(const Model& model, const std::vector<int>& cluster, const Eigen::Ref<const Eigen::MatrixXf>& eps);
// Encoded means of test images idx.
Eigen::MatrixXf encode_test(const Snapshot& snap, const std::vector<int>& idx);
// Test image i as floats in [0, 1], (D).
Eigen::VectorXf test_image(const Snapshot& snap, int i);

// Latent plane of the latent map (PCA or two chosen dims): z → (u, v), and moving z in the plane.
Eigen::Vector2f to_plane(const LatentMapState& map, const Eigen::VectorXf& z);
Eigen::VectorXf move_in_plane(const LatentMapState& map, const Eigen::VectorXf& z, float u, float v);

// A small button that asks where to write `image` as PNG (the file chooser, suggesting a fresh
// name in the export folder) and writes it there. Its rectangle is "export_png_<stem>".
void export_png_button(AppState& state, const char* label, const GlImage& image, const char* stem);
// Whether the model's latent has at least two dimensions (a plane to draw on); if not, says
// `otherwise` in the window.
bool has_plane(const Snapshot& snap, const char* otherwise);
// The category colour of a label as ImU32 (view_math's Okabe–Ito-like set).
ImU32 label_colour(int label, float alpha = 1.0f);
// Size and place the next window when it appears: `size_em` font heights, at most `max_share` of
// the work area, centred horizontally with its centre at `centre_y` of the height.
void place_dialog(ImVec2 size_em, ImVec2 max_share, float centre_y);
// "(?)" at the right end of the current panel window's title bar: opens Help → "What am I
// looking at" at `panel`'s page. Called right after the panel's ImGui::Begin.
void panel_help_button(AppState& state, const char* panel);
// Text in `width` pixels (≤ 0: the rest of the line), cut with "…" where it does not fit and then
// whole in a tooltip; noted under `name` for the state dump (AppState::texts). `colour`: optional.
void fitted_text(AppState& state, const char* name, const std::string& text, float width = 0,
                 const ImVec4* colour = nullptr);
// A heat map's colour scale: a vertical bar of the colour map `height` pixels tall, `hi` labelled at
// its top and `lo` at its bottom (`how` in its tooltip, e.g. "√ of the density"). An item of
// colour_scale_width() pixels.
void colour_scale(const char* id, float height, int colormap, double lo, double hi, const char* how);
float colour_scale_width();
// The width of a SmallButton with this label (the part before "##").
float small_button_width(const char* label);
// SameLine when an item `next_width` wide still fits on the current line; otherwise the next item
// starts a new line (toolbars in narrow windows).
void same_line_if_fits(float next_width);
// "(?)" with a tooltip.
void help_marker(const char* text);
// A name for AppState::note_rect made of a prefix and a text: spaces become '_' (they would split
// the rectangle's line in the state dump): rect_name("help_", "Latent map") is "help_Latent_map".
std::string rect_name(const char* prefix, std::string text);
// 12345 → "12,345".
std::string with_commas(long long v);
// The class name of a label, or "label N".
std::string class_name(const Snapshot& snap, int label);

}  // namespace vaelab::app
