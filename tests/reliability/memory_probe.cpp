// vaelab_memory_probe: trains one configuration for one epoch on synthetic images and prints the
// memory estimate beside the measured peak resident size, for memory_estimate.sh to compare.
// Not a benchmark and not a test by itself. usage:
//   vaelab_memory_probe FAMILY SIDE HIDDEN LATENT BATCH SAMPLES THREADS   (HIDDEN: "512,256")
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "core/data.hpp"
#include "core/memory_estimate.hpp"
#include "core/rng.hpp"
#include "core/trainer.hpp"

using namespace vaelab;

namespace {

// The process's peak resident size (VmHWM) in bytes.
std::uint64_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  return 0;
}

// One batch of training images and a few test images, random pixels, SIDE × SIDE.
std::shared_ptr<const Dataset> synthetic(int side, int train_n, int test_n) {
  auto ds = std::make_shared<Dataset>();
  ds->name = "synthetic";
  Rng rng(1);
  for (auto [set, n] : {std::pair{&ds->train, train_n}, std::pair{&ds->test, test_n}}) {
    set->count = n;
    set->height = set->width = side;
    set->pixels.resize(static_cast<std::size_t>(n) * side * side);
    for (auto& p : set->pixels) p = static_cast<std::uint8_t>(rng.below(256));
  }
  return ds;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: vaelab_memory_probe FAMILY SIDE HIDDEN LATENT BATCH SAMPLES THREADS\n");
    return 2;
  }
  ModelConfig m;
  m.family = parse_family(argv[1]);
  m.image_h = m.image_w = std::atoi(argv[2]);
  m.hidden.clear();
  std::stringstream hidden(argv[3]);
  for (std::string h; std::getline(hidden, h, ',');) m.hidden.push_back(std::atoi(h.c_str()));
  m.latent = std::atoi(argv[4]);
  TrainConfig t;
  t.batch = std::atoi(argv[5]);
  t.samples = std::atoi(argv[6]);
  t.threads = std::atoi(argv[7]);
  validate(m);
  validate(t);

  const auto data = synthetic(m.image_h, t.batch, 100);
  const MemoryEstimate e = estimate_training_memory(m, t, dataset_bytes(*data, t));
  TrainerOptions opt;
  opt.max_epochs = 1;
  opt.display_points = 0;
  opt.latent_refresh_ms = 0;
  Trainer trainer(data, m, t, opt);
  trainer.start();
  trainer.join();
  std::printf("estimate %llu peak %llu (parameters %llu, workspaces %llu, data %llu, process %llu)\n",
              static_cast<unsigned long long>(e.total()), static_cast<unsigned long long>(peak_resident_bytes()),
              static_cast<unsigned long long>(e.parameters), static_cast<unsigned long long>(e.workspaces),
              static_cast<unsigned long long>(e.data), static_cast<unsigned long long>(e.process));
  return 0;
}
