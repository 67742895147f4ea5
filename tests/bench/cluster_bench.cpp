// vaelab_cluster_bench: unsupervised clustering of a labelled test set (Fashion-MNIST by default),
// scored by cluster accuracy (Hungarian matching) and NMI, for k-means on raw pixels, k-means on a
// plain VAE's latent means and the clustering VAE (gmvae). Not a CTest case: it trains for minutes.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/clustering.hpp"
#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/error.hpp"
#include "core/trainer.hpp"

using namespace vaelab;

namespace {

struct Options {
  std::string data;
  int epochs = 10;
  int latent = 10;
  int clusters = 10;
  int threads = 2;
  int kmeans_restarts = 3;
  std::vector<int> seeds = {1};
  std::vector<int> hidden = {400};
  std::vector<ModelFamily> families = {ModelFamily::Gmvae, ModelFamily::Vade};  // the clustering VAEs to train
  bool skip_vae = false;
  float beta = 1.0f;
  int warmup = 0;
  int cluster_fit_step = TrainerOptions::kFamilyFitStep;
};

const char* kUsage =
    "usage: vaelab_cluster_bench [--data DIR] [--epochs N (10)] [--latent D (10)] [--clusters K (10)]\n"
    "                            [--seeds 1,2,3 (1)] [--threads T (2)] [--restarts R (3)]\n"
    "                            [--beta B (1)] [--warmup STEPS (0)] [--hidden LIST (400)]\n"
    "                            [--families gmvae,vade (both; none: only the baselines)] [--no-vae]\n"
    "                            [--cluster-fit-step S (each family's default; 0 = never)]\n"
    "Prints one JSON line per (method, seed) on stdout and a table on stderr.\n";

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(f + " needs a value");
      return argv[++i];
    };
    if (f == "--data") o.data = next();
    else if (f == "--epochs") o.epochs = std::stoi(next());
    else if (f == "--latent") o.latent = std::stoi(next());
    else if (f == "--clusters") o.clusters = std::stoi(next());
    else if (f == "--threads") o.threads = std::stoi(next());
    else if (f == "--restarts") o.kmeans_restarts = std::stoi(next());
    else if (f == "--beta") o.beta = std::stof(next());
    else if (f == "--warmup") o.warmup = std::stoi(next());
    else if (f == "--cluster-fit-step") o.cluster_fit_step = std::stoi(next());
    else if (f == "--no-vae") o.skip_vae = true;
    else if (f == "--hidden") {
      std::string message;
      if (!parse_hidden(next(), o.hidden, message)) throw Error("--hidden: " + message);
    } else if (f == "--families") {
      o.families.clear();
      std::stringstream list(next());
      for (std::string name; std::getline(list, name, ',');)
        if (name != "none") o.families.push_back(parse_family(name));
    }
    else if (f == "--seeds") {
      o.seeds.clear();
      std::stringstream ss(next());
      for (std::string s; std::getline(ss, s, ',');) o.seeds.push_back(std::stoi(s));
    } else if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      throw Error("unknown flag " + f + "\n" + kUsage);
    }
  }
  if (o.seeds.empty() || o.epochs < 1) throw Error("need at least one seed and one epoch");
  return o;
}

struct Score {
  double acc = 0, nmi = 0;
  std::vector<int> sizes;  // points per cluster, to see collapse
};

Score score(const std::vector<int>& pred, const std::vector<int>& labels, int k, int n_classes) {
  Score s;
  s.acc = cluster_accuracy(pred, labels, k, n_classes);
  s.nmi = normalized_mutual_information(pred, labels);
  s.sizes.assign(static_cast<std::size_t>(k), 0);
  for (int p : pred) ++s.sizes[static_cast<std::size_t>(p)];
  return s;
}

// Every (method, seed) result, for the summary table at the end.
struct Result {
  std::string method;
  int seed = 0;
  Score score;
};
std::vector<Result> g_results;

void report(const std::string& method, int seed, const Score& s, double seconds, const std::string& extra = "") {
  std::printf("{\"method\":\"%s\",\"seed\":%d,\"cluster_acc\":%.4f,\"nmi\":%.4f,\"seconds\":%.1f,\"sizes\":[",
              method.c_str(), seed, s.acc, s.nmi, seconds);
  for (std::size_t i = 0; i < s.sizes.size(); ++i) std::printf("%s%d", i ? "," : "", s.sizes[i]);
  std::printf("]%s}\n", extra.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "%-24s seed %d: accuracy %.3f, NMI %.3f (%.0f s)\n", method.c_str(), seed, s.acc, s.nmi, seconds);
  g_results.push_back({method, seed, s});
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Per method, in the order first reported: the median over seeds of accuracy and NMI, their range,
// and how many seeds left a cluster with no test image (a Markdown table, on stderr).
void print_summary() {
  std::vector<std::string> methods;
  for (const Result& r : g_results)
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
  std::fprintf(stderr, "\n| method | seeds | accuracy, median (min–max) | NMI, median (min–max) | seeds with an empty cluster |\n");
  std::fprintf(stderr, "| --- | ---: | --- | --- | ---: |\n");
  for (const std::string& m : methods) {
    std::vector<double> acc, nmi;
    int with_empty = 0;
    for (const Result& r : g_results) {
      if (r.method != m) continue;
      acc.push_back(r.score.acc);
      nmi.push_back(r.score.nmi);
      with_empty += std::count(r.score.sizes.begin(), r.score.sizes.end(), 0) > 0 ? 1 : 0;
    }
    std::fprintf(stderr, "| %s | %zu | %.3f (%.3f–%.3f) | %.3f (%.3f–%.3f) | %d |\n", m.c_str(), acc.size(), median(acc),
                 *std::min_element(acc.begin(), acc.end()), *std::max_element(acc.begin(), acc.end()), median(nmi),
                 *std::min_element(nmi.begin(), nmi.end()), *std::max_element(nmi.begin(), nmi.end()), with_empty);
  }
}

// All test images as columns (D, N).
Eigen::MatrixXf test_matrix(const ImageSet& set) {
  std::vector<int> idx(static_cast<std::size_t>(set.count));
  for (int i = 0; i < set.count; ++i) idx[static_cast<std::size_t>(i)] = i;
  Eigen::MatrixXf x(set.values_per_image(), set.count);
  gather_batch(set, idx.data(), set.count, Binarize::None, nullptr, x);
  return x;
}

// Trains a model for opt.epochs with core's Trainer (the same loop as the app and vaelab-train)
// and returns the final model and the last epoch record.
std::shared_ptr<const Model> train(const std::shared_ptr<const Dataset>& data, const ModelConfig& m,
                                   const Options& o, int seed, EpochRecord& last) {
  TrainConfig t;
  t.seed = static_cast<std::uint64_t>(seed);
  t.threads = o.threads;
  t.beta = o.beta;
  t.warmup_steps = o.warmup;
  TrainerOptions to;
  to.max_epochs = o.epochs;
  to.display_points = 0;
  to.latent_refresh_ms = 0;
  to.cluster_fit_step = o.cluster_fit_step;
  Trainer trainer(data, m, t, to);
  std::string error;
  trainer.set_listener([&](const TrainerEvent& ev) {
    if (ev.kind == EventKind::EpochEnd) {
      last = *ev.record;
      std::fprintf(stderr, "  %s seed %d epoch %d: test ELBO %.2f", to_string(m.family), seed, ev.record->epoch,
                   ev.record->test_elbo);
      if (std::isfinite(ev.record->cluster_acc))
        std::fprintf(stderr, ", accuracy %.3f, NMI %.3f", ev.record->cluster_acc, ev.record->nmi);
      std::fprintf(stderr, "\n");
    } else if (ev.kind == EventKind::Log && ev.line->severity == Severity::Error) {
      error = ev.line->text;
      trainer.request_stop();
    }
  });
  trainer.start();
  trainer.join();
  if (!error.empty()) throw Error("training failed: " + error);
  return trainer.snapshot()->model;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    auto data = std::make_shared<const Dataset>(load_dataset(o.data.empty() ? default_data_folder() : std::filesystem::path(o.data)));
    const ImageSet& test = data->test;
    if (!test.has_labels()) throw Error("the test set has no labels: nothing to score against");
    std::vector<int> labels(static_cast<std::size_t>(test.count));
    int n_classes = 0;
    for (int i = 0; i < test.count; ++i) {
      labels[static_cast<std::size_t>(i)] = test.labels[static_cast<std::size_t>(i)];
      n_classes = std::max(n_classes, labels[static_cast<std::size_t>(i)] + 1);
    }
    const Eigen::MatrixXf x = test_matrix(test);
    const int K = o.clusters;
    std::fprintf(stderr, "%s: %d test images, %d classes, K = %d, latent %d, %d epochs, k-means restarts %d\n",
                 data->name.c_str(), test.count, n_classes, K, o.latent, o.epochs, o.kmeans_restarts);
    using Clock = std::chrono::steady_clock;
    auto since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };

    ModelConfig base;
    base.image_h = test.height;
    base.image_w = test.width;
    base.latent = o.latent;
    base.hidden = o.hidden;
    for (int seed : o.seeds) {
      {
        const auto t0 = Clock::now();
        const KMeansResult km = kmeans(x, K, static_cast<std::uint64_t>(seed), 100, o.kmeans_restarts);
        report("kmeans_pixels", seed, score(km.assignment, labels, K, n_classes), since(t0));
      }
      if (!o.skip_vae) {
        const auto t0 = Clock::now();
        ModelConfig m = base;
        m.family = ModelFamily::Mlp;
        EpochRecord last;
        const auto model = train(data, m, o, seed, last);
        Eigen::MatrixXf mu, lv;
        model->encode(x, mu, lv);
        const KMeansResult km = kmeans(mu, K, static_cast<std::uint64_t>(seed), 100, o.kmeans_restarts);
        report("kmeans_vae_means", seed, score(km.assignment, labels, K, n_classes), since(t0),
               ",\"test_elbo\":" + std::to_string(last.test_elbo));
      }
      for (const ModelFamily family : o.families) {
        const auto t0 = Clock::now();
        ModelConfig m = base;
        m.family = family;
        m.clusters = K;
        EpochRecord last;
        const auto model = train(data, m, o, seed, last);
        Eigen::MatrixXf mu, lv, probs;
        model->encode(x, mu, lv);
        model->classify(mu, probs);
        std::vector<int> pred(static_cast<std::size_t>(test.count));
        double max_p = 0;
        for (int i = 0; i < test.count; ++i) {
          max_p += probs.col(i).maxCoeff(&pred[static_cast<std::size_t>(i)]);
        }
        const double secs = since(t0);
        const std::string name = to_string(family);
        report(name, seed, score(pred, labels, K, n_classes), secs,
               ",\"test_elbo\":" + std::to_string(last.test_elbo) +
                   ",\"mean_max_p\":" + std::to_string(max_p / test.count));
        // Diagnostic: are the model's latent means themselves clustered, whatever p(y|z) says?
        const KMeansResult km = kmeans(mu, K, static_cast<std::uint64_t>(seed), 100, o.kmeans_restarts);
        report("kmeans_" + name + "_means", seed, score(km.assignment, labels, K, n_classes), since(t0));
      }
    }
    print_summary();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab_cluster_bench: %s\n", e.what());
    return 1;
  }
}
