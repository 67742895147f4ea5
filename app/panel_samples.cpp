// Samples panel: images decoded from draws of the prior (N(0, I), or for the clustering VAE one
// column per cluster y with z ~ N(μ_y, σ_y²)), and test images above their
// reconstructions (decoded encoder means). Recomputed from the current weights at most a few
// times a second, not every frame. Not an evaluation of the model (see the curves).
#include <algorithm>

#include "core/view_math.hpp"
#include "app/panels.hpp"
#include "core/model.hpp"

namespace vaelab::app {
namespace {

// Beside a grid's title: a button that draws a new set (bumping `seed`) and a PNG export; below,
// the grid.
void draw_grid(AppState& state, const char* redraw, std::uint64_t& seed, const char* png_label, GlImage& image,
               const char* stem, ImVec2 size) {
  same_line_if_fits(small_button_width(redraw));
  if (ImGui::SmallButton(redraw)) {
    ++seed;
    state.samples.dirty = true;
  }
  same_line_if_fits(small_button_width(png_label));
  export_png_button(state, png_label, image, stem);
  image.draw(image.fit(size), state.colormap);
}

}  // namespace

void draw_samples(AppState& state, const Snapshot& snap) {
  SamplesState& s = state.samples;
  const int d = snap.model ? snap.model->latent() : 0;
  const ImageSet& test = snap.data->test;
  if (d == 0 || test.count == 0) {
    ImGui::TextDisabled("waiting for a model…");
    return;
  }
  // The clustering VAE's prior is a mixture: one column per cluster y, z ~ N(μ_y, σ_y²).
  const int K = snap.model->clusters();
  const int cols = K > 0 ? std::min(K, 12) : 8;
  if (s.cols != cols) {
    s.cols = cols;
    s.dirty = true;
  }
  bool forced = false;  // new samples or pairs asked for: shown at once
  if (s.dirty || s.eps.rows() != d || s.eps.cols() != s.rows * s.cols) {
    Rng rng(s.prior_seed);
    s.eps.resize(d, s.rows * s.cols);
    for (Eigen::Index k = 0; k < s.eps.size(); ++k) s.eps.data()[k] = rng.normal();
    Rng pick(s.pick_seed * 7919 + 17);
    s.test_idx.clear();
    for (int k = 0; k < s.pairs; ++k) s.test_idx.push_back(static_cast<int>(pick.below(static_cast<std::uint64_t>(test.count))));
    s.dirty = false;
    s.refresh.invalidate();
    forced = true;
  }
  const int c = snap.model_config.image_c, h = snap.model_config.image_h, w = snap.model_config.image_w;
  if (state.heavy_due(s.refresh, 0.3, forced)) {
    state.note_work('S');
    Eigen::MatrixXf img;
    int tw = 0, th = 0;
    Eigen::MatrixXf z = s.eps;  // the prior N(0, I), or per column its cluster's Gaussian
    if (K > 0) {
      std::vector<int> cluster(static_cast<std::size_t>(z.cols()));
      for (int k = 0; k < static_cast<int>(cluster.size()); ++k) cluster[static_cast<std::size_t>(k)] = (k % s.cols) % K;
      z = cluster_draws(*snap.model, cluster, s.eps);
    }
    decode(snap, z, img);
    std::vector<float> grid = tile_images(img, c, h, w, s.rows, s.cols, 1, tw, th);
    s.prior.update(grid.data(), tw, th, c);
    const Eigen::MatrixXf mu = encode_test(snap, s.test_idx);
    decode(snap, mu, img);
    Eigen::MatrixXf both(img.rows(), 2 * img.cols());
    for (Eigen::Index k = 0; k < img.cols(); ++k) {
      both.col(k) = test_image(snap, s.test_idx[static_cast<std::size_t>(k)]);
      both.col(img.cols() + k) = img.col(k);
    }
    grid = tile_images(both, c, h, w, 2, s.pairs, 1, tw, th);
    s.recon_pairs.update(grid.data(), tw, th, c);
  }

  const float spacing = ImGui::GetStyle().ItemSpacing.y;
  const float line_h = ImGui::GetFrameHeightWithSpacing();
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  // Share the height in proportion to the two grids' rows.
  const float img_h = std::max(20.0f, avail.y - 2 * line_h - spacing);
  const float prior_h = img_h * s.rows / (s.rows + 2.0f);

  ImGui::TextUnformatted(K > 0 ? "Prior samples by cluster" : "Prior samples");
  if (K > 0 && ImGui::IsItemHovered()) ImGui::SetTooltip("Column y: z ~ N(μ_y, σ_y²), the clustering VAE's prior for cluster y");
  draw_grid(state, "Resample", s.prior_seed, "PNG##prior", s.prior, "samples", ImVec2(avail.x, prior_h));
  ImGui::TextUnformatted("Test images, reconstructions");
  draw_grid(state, "Shuffle", s.pick_seed, "PNG##recon", s.recon_pairs, "reconstructions", ImVec2(avail.x, img_h - prior_h));
}

}  // namespace vaelab::app
