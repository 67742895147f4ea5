// Validation and string forms of the model and training settings. Messages name the field, the
// value given and the range allowed, so the CLI and the app can show them as they are.
// Not the command-line parsing (app/flags/), which checks the same ranges.
#include "core/config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.hpp"

namespace vaelab {

std::string WholeRange::describe() const {
  if (hi == INT_MAX) return std::to_string(lo) + " or more";
  return std::to_string(lo) + " to " + std::to_string(hi);
}

bool RealRange::contains(double v) const {
  return std::isfinite(v) && (lo_excluded ? v > lo : v >= lo) && v <= hi;
}

std::string RealRange::describe() const {
  char text[64];  // %g: "1e-08", where std::to_string says "0.000000"
  std::snprintf(text, sizeof text, lo_excluded ? "greater than %g, at most %g" : "%g to %g", lo, hi);
  return text;
}

namespace {

template <class T>
void require(bool ok, const char* field, T value, const std::string& allowed) {
  if (ok) return;
  std::ostringstream os;
  os << field << " = " << value << " is out of range: " << allowed;
  throw Error(os.str());
}

void require_in(const WholeRange& range, long long value, const char* field) {
  require(range.contains(value), field, value, range.describe());
}

void require_in(const RealRange& range, float value, const char* field) {
  require(range.contains(value), field, value, range.describe());
}

// The spellings of an enum's values on the command line, in the app and in messages.
template <class E>
struct Spelling {
  E value;
  const char* name;
};

constexpr Spelling<Likelihood> kLikelihoods[] = {
    {Likelihood::Bernoulli, "bernoulli"}, {Likelihood::GaussianFixed, "gaussian"}, {Likelihood::GaussianLearned, "gaussian-learned"}};
constexpr Spelling<Binarize> kBinarizations[] = {
    {Binarize::None, "none"}, {Binarize::Static, "static"}, {Binarize::Dynamic, "dynamic"}};
constexpr Spelling<ModelFamily> kFamilies[] = {
    {ModelFamily::Mlp, "mlp"}, {ModelFamily::Conv, "conv"}, {ModelFamily::Gmvae, "gmvae"}, {ModelFamily::Vade, "vade"}};
constexpr Spelling<Estimator> kEstimators[] = {
    {Estimator::Reparameterised, "reparam"}, {Estimator::ScoreFunction, "score"}};

template <class E, std::size_t N>
const char* name_of(const Spelling<E> (&spellings)[N], E value) {
  for (const auto& s : spellings)
    if (s.value == value) return s.name;
  return "?";
}

// "unknown likelihood 'x': use bernoulli, gaussian or gaussian-learned"
template <class E, std::size_t N>
E parse_spelling(const Spelling<E> (&spellings)[N], const std::string& text, const char* what) {
  std::string known;
  for (std::size_t i = 0; i < N; ++i) {
    if (spellings[i].name == text) return spellings[i].value;
    known += (i == 0 ? "" : i + 1 == N ? " or " : ", ") + std::string(spellings[i].name);
  }
  throw Error("unknown " + std::string(what) + " '" + text + "': use " + known);
}

}  // namespace

std::string image_shape_text(int channels, int height, int width, bool with_channels) {
  std::string s = channels != 1 || with_channels ? std::to_string(channels) + "×" : std::string();
  return s.append(std::to_string(height)).append("×").append(std::to_string(width));
}

void validate(const ModelConfig& m) {
  require(m.image_c == 1 || m.image_c == 3, "image channels", m.image_c, "1 (grey) or 3 (colour)");
  require_in(limits::kImageSide, m.image_h, "image height");
  require_in(limits::kImageSide, m.image_w, "image width");
  const long long pixels = static_cast<long long>(m.image_h) * m.image_w;
  require(pixels <= limits::kImagePixels, "pixels per image", pixels, "at most " + std::to_string(limits::kImagePixels));
  require_in(limits::kLatent, m.latent, "latent size");
  require_in(limits::kHiddenLayers, static_cast<long long>(m.hidden.size()), "number of hidden layers");
  for (int h : m.hidden) require_in(limits::kHiddenWidth, h, "hidden width");
  require_in(limits::kGaussianSigma, m.gaussian_sigma, "gaussian sigma");
  if (is_clustering(m.family)) require_in(limits::kClusters, m.clusters, "clusters");
}

void validate(const TrainConfig& t) {
  require_in(limits::kBatch, t.batch, "batch");
  require_in(limits::kLearningRate, t.lr, "learning rate");
  require_in(limits::kBeta, t.beta, "beta");
  require_in(limits::kWarmupSteps, t.warmup_steps, "warm-up steps");
  require_in(limits::kSamples, t.samples, "samples");
  require_in(limits::kThreads, t.threads, "threads");
}

const char* to_string(Likelihood l) { return name_of(kLikelihoods, l); }
const char* to_string(Binarize b) { return name_of(kBinarizations, b); }
const char* to_string(ModelFamily f) { return name_of(kFamilies, f); }
const char* to_string(Estimator e) { return name_of(kEstimators, e); }

Likelihood parse_likelihood(const std::string& s) { return parse_spelling(kLikelihoods, s, "likelihood"); }
Binarize parse_binarize(const std::string& s) { return parse_spelling(kBinarizations, s, "binarization"); }
ModelFamily parse_family(const std::string& s) { return parse_spelling(kFamilies, s, "model"); }
Estimator parse_estimator(const std::string& s) { return parse_spelling(kEstimators, s, "gradient estimator"); }

bool parse_hidden(std::string_view text, std::vector<int>& widths, std::string& error) {
  widths.clear();
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t end = std::min(text.find_first_of(", ", pos), text.size());
    const std::string_view word = text.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;  // "512, 256": the space after the comma
    long long width = 0;
    const auto [stop, ec] = std::from_chars(word.data(), word.data() + word.size(), width);
    if (ec != std::errc() || stop != word.data() + word.size() || !limits::kHiddenWidth.contains(width)) {
      error = "hidden width '" + std::string(word) + "' is not a whole number from " + limits::kHiddenWidth.describe() +
              " (write e.g. 400 or 512,256)";
      return false;
    }
    widths.push_back(static_cast<int>(width));
  }
  if (!limits::kHiddenLayers.contains(static_cast<long long>(widths.size()))) {
    error = std::to_string(widths.size()) + " hidden layers given, " + limits::kHiddenLayers.describe() +
            " allowed (write e.g. 400 or 512,256)";
    return false;
  }
  return true;
}

}  // namespace vaelab
