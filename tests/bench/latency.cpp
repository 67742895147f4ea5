// Latency of what the UI asks of core/: decode one image (a slider drag), a 20×20 manifold grid,
// encode the 10,000 test images (the latent map) and IWAE_1000 on 1,000 test images (the gap
// window), on 1 and 2 threads; medians printed as a table and a JSON line. A benchmark, not a
// test: weights are freshly initialised (the cost does not depend on their values).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/data.hpp"
#include "core/data_source.hpp"
#include "core/model.hpp"
#include "core/objective.hpp"
#include "core/thread_pool.hpp"
#include "core/view_math.hpp"

using namespace vaelab;

namespace {

template <class F>
double median_ms(int reps, F f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<int> parse_hidden(const std::string& s) {
  std::vector<int> h;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t comma = s.find(',', pos);
    h.push_back(std::atoi(s.substr(pos, comma - pos).c_str()));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = default_data_folder().string(), hidden = "400";
  int latent = 20, reps = 5, iwae_reps = 3, max_threads = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "vaelab_latency: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--data") data = next();
    else if (a == "--hidden") hidden = next();
    else if (a == "--latent") latent = std::atoi(next().c_str());
    else if (a == "--repeat") reps = std::atoi(next().c_str());
    else if (a == "--iwae-repeat") iwae_reps = std::atoi(next().c_str());
    else if (a == "--threads") max_threads = std::atoi(next().c_str());
    else {
      std::fprintf(stderr, "usage: vaelab_latency [--data DIR] [--hidden 400] [--latent 20] [--repeat 5] "
                           "[--iwae-repeat 3] [--threads 2]\n");
      return 2;
    }
  }
  if (reps < 1 || iwae_reps < 1 || max_threads < 1 || latent < 1) {
    std::fprintf(stderr, "vaelab_latency: --repeat, --iwae-repeat, --threads and --latent must be positive\n");
    return 2;
  }
  Dataset ds;
  try {
    ds = load_dataset(data);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab_latency: %s\n", e.what());
    return 1;
  }
  ModelConfig cfg;
  cfg.image_h = ds.test.height;
  cfg.image_w = ds.test.width;
  cfg.latent = latent;
  cfg.hidden = parse_hidden(hidden);
  Model model(cfg);
  model.init(1);
  const int D = cfg.input_dim(), n_test = std::min(10000, ds.test.count), n_iwae = std::min(1000, ds.test.count);

  std::printf("%-7s %14s %14s %16s %18s   (ms, median; %dx%d, hidden %s, latent %d)\n", "threads", "decode 1", "grid 20x20",
              "encode 10000", "IWAE K=1000 x1000", cfg.image_h, cfg.image_w, hidden.c_str(), latent);
  std::string json = "{\"hidden\":\"" + hidden + "\",\"latent\":" + std::to_string(latent);
  for (int threads = 1; threads <= max_threads; ++threads) {
    ThreadPool pool(threads);
    // Decode one image: what a decoder-slider drag costs per frame (UI thread, one thread).
    Eigen::MatrixXf z1 = Eigen::MatrixXf::Zero(latent, 1), img;
    const double t_one = median_ms(reps * 20, [&] { model.decode_image(z1, img); });
    // A 20×20 manifold grid over the first two latent dimensions (UI thread, one call).
    const std::vector<float> c = manifold_coordinates(20);
    Eigen::MatrixXf zg = Eigen::MatrixXf::Zero(latent, 400), grid;
    for (int i = 0; i < 20; ++i)
      for (int j = 0; j < 20; ++j) {
        zg(0, i * 20 + j) = c[j];
        if (latent > 1) zg(1, i * 20 + j) = c[i];
      }
    const double t_grid = median_ms(reps, [&] { model.decode_image(zg, grid); });
    // Encode the test set in chunks of 1,000 over the pool, as the trainer refreshes the latent map.
    std::vector<int> idx(n_test);
    for (int i = 0; i < n_test; ++i) idx[i] = i;
    Eigen::MatrixXf latent_mu(latent, n_test);
    const double t_enc = median_ms(reps, [&] {
      const int chunk = 1000, parts = (n_test + chunk - 1) / chunk;
      pool.run(parts, [&](int p) {
        const int lo = p * chunk, B = std::min(chunk, n_test - lo);
        Eigen::MatrixXf x(D, B), mu, lv;
        gather_batch(ds.test, idx.data() + lo, B, Binarize::None, nullptr, x);
        model.encode(x, mu, lv);
        latent_mu.middleCols(lo, B) = mu;
      });
    });
    // IWAE_1000 on 1,000 test images through evaluate(), as the gap window's epoch-end bound.
    std::vector<int> sub(idx.begin(), idx.begin() + n_iwae);
    EvalOptions eo;
    eo.iwae_k = 1000;
    double iwae = 0;
    const double t_iwae = median_ms(iwae_reps, [&] { iwae = evaluate(model, ds.test, sub, eo, &pool).iwae; });
    std::printf("%-7d %14.3f %14.2f %16.1f %18.0f\n", threads, t_one, t_grid, t_enc, t_iwae);
    std::fflush(stdout);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  ",\"t%d\":{\"decode_one_ms\":%.4f,\"grid_20x20_ms\":%.3f,\"encode_10000_ms\":%.2f,\"iwae_1000x1000_ms\":%.1f,"
                  "\"iwae\":%.3f}",
                  threads, t_one, t_grid, t_enc, t_iwae, iwae);
    json += buf;
  }
  std::printf("%s}\n", json.c_str());
  return 0;
}
