// Validation and string forms of the model and training settings. Messages name the field, the
// value given and the range allowed, so the CLI and the app can show them as they are.
#include "core/config.hpp"

#include <cmath>
#include <sstream>

#include "core/error.hpp"

namespace vaelab {

namespace {
template <class T>
void require(bool ok, const char* field, T value, const char* allowed) {
  if (ok) return;
  std::ostringstream os;
  os << field << " = " << value << " is out of range: " << allowed;
  throw Error(os.str());
}
}  // namespace

void validate(const ModelConfig& m) {
  require(m.image_h >= 1 && m.image_h <= 4096, "image height", m.image_h, "1 to 4096");
  require(m.image_w >= 1 && m.image_w <= 4096, "image width", m.image_w, "1 to 4096");
  require(static_cast<long long>(m.image_h) * m.image_w <= 1 << 20, "pixels per image",
          static_cast<long long>(m.image_h) * m.image_w, "at most 1048576");
  require(m.latent >= 1 && m.latent <= 1024, "latent size", m.latent, "1 to 1024");
  require(!m.hidden.empty() && m.hidden.size() <= 8, "number of hidden layers", m.hidden.size(), "1 to 8");
  for (int h : m.hidden) require(h >= 1 && h <= 8192, "hidden width", h, "1 to 8192");
  require(std::isfinite(m.gaussian_sigma) && m.gaussian_sigma > 0, "gaussian sigma", m.gaussian_sigma, "> 0");
  if (m.family == ModelFamily::Gmvae) require(m.clusters >= 2 && m.clusters <= 256, "clusters", m.clusters, "2 to 256");
}

void validate(const TrainConfig& t) {
  require(t.batch >= 1 && t.batch <= 65536, "batch", t.batch, "1 to 65536");
  require(std::isfinite(t.lr) && t.lr > 0 && t.lr <= 10, "learning rate", t.lr, "greater than 0, at most 10");
  require(std::isfinite(t.beta) && t.beta >= 0 && t.beta <= 1000, "beta", t.beta, "0 to 1000");
  require(t.warmup_steps >= 0, "warm-up steps", t.warmup_steps, "0 or more");
  require(t.samples >= 1 && t.samples <= 1000, "samples", t.samples, "1 to 1000");
  require(t.threads >= 1 && t.threads <= 256, "threads", t.threads, "1 to 256");
}

const char* to_string(Likelihood l) {
  switch (l) {
    case Likelihood::Bernoulli: return "bernoulli";
    case Likelihood::GaussianFixed: return "gaussian";
    case Likelihood::GaussianLearned: return "gaussian-learned";
  }
  return "?";
}

const char* to_string(Binarize b) {
  switch (b) {
    case Binarize::None: return "none";
    case Binarize::Static: return "static";
    case Binarize::Dynamic: return "dynamic";
  }
  return "?";
}

const char* to_string(ModelFamily f) {
  switch (f) {
    case ModelFamily::Mlp: return "mlp";
    case ModelFamily::Conv: return "conv";
    case ModelFamily::Gmvae: return "gmvae";
  }
  return "?";
}

ModelFamily parse_family(const std::string& s) {
  if (s == "mlp") return ModelFamily::Mlp;
  if (s == "conv") return ModelFamily::Conv;
  if (s == "gmvae") return ModelFamily::Gmvae;
  throw Error("unknown model '" + s + "': use mlp, conv or gmvae");
}

const char* to_string(Estimator e) {
  return e == Estimator::ScoreFunction ? "score" : "reparam";
}

Estimator parse_estimator(const std::string& s) {
  if (s == "reparam") return Estimator::Reparameterised;
  if (s == "score") return Estimator::ScoreFunction;
  throw Error("unknown gradient estimator '" + s + "': use reparam or score");
}

Likelihood parse_likelihood(const std::string& s) {
  if (s == "bernoulli") return Likelihood::Bernoulli;
  if (s == "gaussian") return Likelihood::GaussianFixed;
  if (s == "gaussian-learned") return Likelihood::GaussianLearned;
  throw Error("unknown likelihood '" + s + "': use bernoulli, gaussian or gaussian-learned");
}

Binarize parse_binarize(const std::string& s) {
  if (s == "none") return Binarize::None;
  if (s == "static") return Binarize::Static;
  if (s == "dynamic") return Binarize::Dynamic;
  throw Error("unknown binarization '" + s + "': use none, static or dynamic");
}

}  // namespace vaelab
