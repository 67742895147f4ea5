// The text of Help → "What am I looking at" (every page, here and nowhere else) and its window.
// The terms follow docs/variational-gap.md and docs/models.md. Not the panels' tooltips.
#include "app/help.hpp"

#include <imgui.h>

#include <algorithm>

#include "app/panels.hpp"

namespace vaelab::app {

const std::vector<HelpPage>& help_pages() {
  static const std::vector<HelpPage> pages = {
      {kWinTraining,
       "The run: Start / Pause (Space), one Step, Reset; the live settings (learning rate, β, warm-up) that act on "
       "the next step; the model form, which edits a pending model until you Rebuild or Revert; the data and "
       "checkpoint paths; and the trainer's log.",
       "β weighs the KL term of the loss, −log p(x|z) + β·KL(q(z|x) ‖ p(z)); warm-up raises β from 0 over that many "
       "steps. The memory line is what training the form's model would need against what is free.",
       "Pause, raise β to 4 and resume: the KL curve drops and the latent map pulls towards the prior. Rebuild with "
       "latent 10 and watch the map switch to a PCA plane."},
      {kWinCurves,
       "The training ELBO per step (raw and smoothed), the test ELBO after each epoch, and below them its two "
       "terms: the reconstruction term and the KL term. Markers show where β, the learning rate or warm-up changed.",
       "ELBO = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), in nats per image: negative, higher is better. It is a lower "
       "bound on log p(x). Reconstruction is the first term (how well images come back), KL the price of the code.",
       "Switch the y axis to log, or the smoothing off, to see the early steps. A test ELBO that falls while the "
       "training ELBO rises means overfitting."},
      {kWinLatent,
       "Where the encoder puts the test images: each point is the mean μ(x) of q(z|x), coloured by label (or, for "
       "the clustering VAE, by cluster). With a latent of more than two dimensions the plane is the codes' PCA plane "
       "(its caption gives the share of variance it holds) or two chosen dimensions.",
       "The prior p(z) is N(0, I): a good code fills it without holes. The yellow ring is the Decoder's z; A and B "
       "are the ends of the interpolation. For the clustering VAE, + marks each cluster mean μ_y, and the toolbar "
       "gives the cluster accuracy and NMI of the points against their labels.",
       "Hover a point for its image and reconstruction; click sets A, shift-click sets B; drag the ring (or "
       "double-click) to move the decoder's z; right-click a point for its true posterior in the Variational gap "
       "window."},
      {kWinClusters,
       "The clustering VAE's clusters, one row each, ordered by the label each is matched to: its size (test codes "
       "on the map), its row of the cluster × class confusion matrix (shaded by the share of the cluster in each "
       "class, the matched class outlined), its decoded mean μ_y and a few decoded samples z ~ N(μ_y, σ_y²); "
       "beside them the test accuracy and NMI after each epoch.",
       "A cluster is matched to at most one label, by the one-to-one matching that gets the most points right "
       "(the accuracy). A row spread over several classes mixes them; two rows on one class split it. The "
       "trainer's log flags a cluster that empties or merges into another between two epoch ends.",
       "Watch the rows settle after the cluster refit; hover a cell for its count, Resample for new draws."},
      {kWinDecoder,
       "The image the decoder makes from one z, with a slider per latent dimension, ordered by the KL each "
       "dimension carries.",
       "A dimension whose KL is below 0.01 nats is inactive (greyed): the encoder ignores it and the decoder's "
       "image barely changes along it. The ± control sets how far the sliders reach, in standard deviations of the prior.",
       "Drag one slider at a time to see what each dimension encodes; drag the ring on the latent map to move "
       "two at once."},
      {kWinInterpolation,
       "Images along the path from A to B (set on the latent map): the image at t for linear and for spherical "
       "interpolation, and strips of evenly spaced frames of both, from A (t = 0) to B (t = 1).",
       "Linear interpolation passes closer to the origin than codes lie: in many dimensions most of a Gaussian "
       "prior's mass sits in a shell away from it. Spherical interpolation keeps the norm of z, so its frames "
       "stay where codes live.",
       "Set A and B on two different classes and move t; compare the two strips at a large latent size."},
      {kTabManifold,
       "A grid of images decoded across the latent map's plane, spaced like Kingma & Welling's figure (by the "
       "inverse normal CDF, so each tile covers equal prior mass); other dimensions are held at the decoder's z.",
       "For a PCA plane the coordinates are scaled by the spread of the codes along each axis.",
       "Click a tile to send its z to the Decoder; change the grid size to see finer transitions."},
      {kWinSamples,
       "Above: images decoded from draws of the prior z ~ N(0, I) (for the clustering VAE one column per cluster, "
       "z ~ N(μ_y, σ_y²)). Below: test images over their reconstructions, decoded from the encoder means.",
       "Good reconstructions with poor samples mean the codes leave holes in the prior: the Variational gap's "
       "Aggregate tab shows where.",
       "Draw new samples; compare them with the reconstructions as training goes on."},
      {kTabGap,
       "How far the ELBO is from log p(x), and why. Bounds: the test ELBO and IWAE_K per epoch on the same test "
       "images, and their difference. Posterior: the true posterior of one image against q(z|x). KL / dim: the KL "
       "per dimension and the active units. Aggregate: q(z) against the prior. Estimators: the gradient variance "
       "of the reparameterised and the score-function estimators.",
       "log p(x) = ELBO + KL(q(z|x) ‖ p(z|x)). IWAE_K = log (1/K) Σ_k p(x, z_k) / q(z_k|x) is a tighter bound "
       "that approaches log p(x) as K grows, so the gap IWAE − ELBO estimates how far q is from the true "
       "posterior. Active units are the dimensions whose encoder mean E_q[z_u] has a variance over x above "
       "0.01; the rest have collapsed to the prior. The aggregate posterior q(z) is the mean of q(z|x) over the test "
       "images: where it falls below 10 % of p(z) the prior has holes, and samples from them look wrong.",
       "Right-click a point of the latent map and open Posterior: with a 2-D latent, log p(x) − ELBO matches "
       "KL(q ‖ p(z|x)) from the grid. Rebuild with latent 20 and watch the KL / dim tab count collapsed "
       "dimensions."},
  };
  return pages;
}

const HelpPage* help_page(const std::string& panel) {
  for (const HelpPage& p : help_pages())
    if (panel == p.panel) return &p;
  return nullptr;
}

void open_help(AppState& state, const std::string& panel) {
  state.help.open = true;
  // Manifold and the gap share one window: its (?) opens the page of the tab on show.
  const std::string page = panel == kWinManifoldGap ? (state.gap.open ? kTabGap : kTabManifold) : panel;
  state.help.page = help_page(page) ? page : std::string(help_pages().front().panel);
  ImGui::SetWindowFocus("What am I looking at");
}

void draw_help(AppState& state) {
  HelpState& h = state.help;
  if (!h.open) return;
  place_dialog(ImVec2(46, 26), ImVec2(0.8f, 0.7f), 0.45f);
  const float em = ImGui::GetFontSize();
  if (ImGui::Begin("What am I looking at", &h.open, ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoCollapse)) {
    state.note_rect("help_window");
    const HelpPage* page = help_page(h.page);
    if (!page) page = &help_pages().front();
    ImGui::BeginChild("##help_index", ImVec2(em * 14, 0), true);
    for (const HelpPage& p : help_pages())
      if (ImGui::Selectable(p.panel, &p == page)) h.page = p.panel;
    ImGui::EndChild();
    ImGui::SameLine();
    ImGui::BeginChild("##help_page", ImVec2(0, 0), false);
    ImGui::TextUnformatted(page->panel);
    ImGui::Separator();
    auto section = [](const char* heading, const char* text) {
      ImGui::Spacing();
      ImGui::TextDisabled("%s", heading);
      ImGui::TextWrapped("%s", text);
    };
    section("What it shows", page->shows);
    section("What the terms mean here", page->terms);
    section("What to try", page->try_);
    ImGui::EndChild();
  }
  ImGui::End();
}

}  // namespace vaelab::app
