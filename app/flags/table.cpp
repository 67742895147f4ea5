// The rows of the flag table: every flag of vaelab and vaelab-train, with its value, range,
// default, help and program. A new flag is a new row here (and a field in CommandLine).
// Not the reading of a command line (flags.cpp) nor what a flag does (the programs).
#include <charconv>
#include <climits>

#include "core/config.hpp"
#include "core/error.hpp"
#include "app/flags/flags.hpp"

namespace vaelab::flags {
namespace {

constexpr WholeRange kWholeCount{0, INT_MAX};      // "0 or more"
constexpr WholeRange kPositiveCount{1, INT_MAX};   // "1 or more"
constexpr WholeRange kSeed{0, LLONG_MAX};
constexpr WholeRange kTestImages{0, 1 << 24};
constexpr WholeRange kWindowWidth{320, 16384}, kWindowHeight{240, 16384};

// A whole number and nothing else ("12x" and "" are not).
bool whole(std::string_view s, long long& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

// "1280x800" (or 1280X800) within kWindowWidth × kWindowHeight.
void read_window_size(CommandLine& c, const std::string& text) {
  const std::size_t x = text.find_first_of("xX");
  long long w = 0, h = 0;
  if (x == std::string::npos || !whole(std::string_view(text).substr(0, x), w) ||
      !whole(std::string_view(text).substr(x + 1), h) || !kWindowWidth.contains(w) || !kWindowHeight.contains(h))
    throw Error("wants WIDTHxHEIGHT from " + std::to_string(kWindowWidth.lo) + "x" + std::to_string(kWindowHeight.lo) +
                " to " + std::to_string(kWindowWidth.hi) + "x" + std::to_string(kWindowHeight.hi) + ", e.g. 1280x800, not '" +
                text + "'");
  c.width = static_cast<int>(w);
  c.height = static_cast<int>(h);
}

// ---- how the data is loaded (LoadOptions) ----

void read_channels(CommandLine& c, const std::string& text) {
  if (text != "1" && text != "3") throw Error("wants 1 (grey) or 3 (colour), not '" + text + "'");
  c.data_options.channels = text == "1" ? 1 : 3;
}

// "32" (square) or "48x64" (height × width), each side within limits::kImageSide.
void read_image_size(CommandLine& c, const std::string& text) {
  const std::size_t x = text.find_first_of("xX");
  long long h = 0, w = 0;
  bool read = false;
  if (x == std::string::npos) {
    read = whole(text, h);
    w = h;
  } else {
    read = whole(std::string_view(text).substr(0, x), h) && whole(std::string_view(text).substr(x + 1), w);
  }
  if (!read || !limits::kImageSide.contains(h) || !limits::kImageSide.contains(w))
    throw Error("wants a side S or HEIGHTxWIDTH, each from " + limits::kImageSide.describe() + ", e.g. 32 or 48x64, not '" +
                text + "'");
  c.data_options.height = static_cast<int>(h);
  c.data_options.width = static_cast<int>(w);
}

void read_crop(CommandLine& c, const std::string& text) {
  if (text == "center") c.data_options.crop = CropMode::Center;
  else if (text == "none") c.data_options.crop = CropMode::None;
  else throw Error("wants center or none, not '" + text + "'");
}

void read_background(CommandLine& c, const std::string& text) {
  if (text == "white") c.data_options.background = Background::White;
  else if (text == "black") c.data_options.background = Background::Black;
  else throw Error("wants white or black, not '" + text + "'");
}

// Strictly between 0 and 1: both splits must keep images.
void read_test_fraction(CommandLine& c, const std::string& text) {
  double f = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), f);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !(f > 0 && f < 1))
    throw Error("wants a number greater than 0 and less than 1, e.g. 0.1, not '" + text + "'");
  c.data_options.test_fraction = f;
}

// 0 (every image) or at least 2: a training and a test image.
void read_max_images(CommandLine& c, const std::string& text) {
  constexpr long long kMost = 1LL << 40;
  long long n = 0;
  if (!whole(text, n) || n < 0 || n == 1 || n > kMost)
    throw Error("wants 0 (every image) or a whole number from 2 to " + std::to_string(kMost) + ", not '" + text + "'");
  c.data_options.max_images = n;
}

const Flag kTable[] = {
    // ---- the data and the starting weights ----
    {.name = "--data", .value_name = "PATH", .target = [](CommandLine& c) -> auto& { return c.data; },
     .help = "the images: an IDX folder ({train,t10k}-images-idx3-ubyte[.gz] and labels) or one IDX image file, "
             "a folder of images (PNG, JPEG, WebP, BMP, GIF, TGA; a subfolder per class, optionally under "
             "train/ and test/), a .npy array, a Keras .npz (x_train, y_train, x_test, y_test), or a "
             "CIFAR-10 or CIFAR-100 binary folder",
     .default_note = "/usr/share/datasets/fashion-mnist"},
    {.name = "--channels", .value_name = "C", .target = read_channels,
     .help = "1 (grey) or 3 (colour): converts the images", .default_note = "the data's own"},
    {.name = "--image-size", .value_name = "S|HxW", .target = read_image_size,
     .help = "resize every image to S×S or H×W (area averaging when shrinking)",
     .default_note = "the data's own size when all images agree, otherwise 32"},
    {.name = "--crop", .value_name = "MODE", .target = read_crop, .default_value = "center",
     .help = "center | none: cut non-square images to the target's shape around their centre, or squash them"},
    {.name = "--background", .value_name = "COLOUR", .target = read_background, .default_value = "white",
     .help = "white | black: what transparent pixels are composited onto"},
    {.name = "--test-fraction", .value_name = "F", .target = read_test_fraction, .default_value = "0.1",
     .help = "share of the images held out for testing when the data has no test split (0 < F < 1)"},
    {.name = "--max-images", .value_name = "N", .target = read_max_images, .default_value = "0",
     .help = "load only N images (the first of each split, in proportion); 0: all"},
    {.name = "--load", .value_name = "FILE", .target = [](CommandLine& c) -> auto& { return c.load; }, .programs = kApp,
     .help = "open a checkpoint (or a .safetensors file) at start"},
    {.name = "--load", .value_name = "FILE", .target = [](CommandLine& c) -> auto& { return c.load; }, .programs = kTrain,
     .help = "start from a checkpoint"},
    {.name = "--import-safetensors", .value_name = "FILE",
     .target = [](CommandLine& c) -> auto& { return c.import_safetensors; }, .programs = kTrain,
     .help = "start from safetensors weights"},
    {.name = "--train-limit", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.train_limit; },
     .range = kWholeCount, .help = "train on the first N training images only; 0: all (demos, tests)"},
    {.name = "--eval-limit", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.eval_limit; },
     .range = kWholeCount, .programs = kTrain, .help = "evaluate on the first N test images only; 0: all"},

    // ---- the model ----
    {.name = "--model", .value_name = "NAME",
     .target = [](CommandLine& c, const std::string& v) { c.model.family = parse_family(v); },
     .default_value = "mlp", .help = "mlp | conv | gmvae | vade (the two clustering VAEs)", .alias = "--family"},
    {.name = "--latent", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.model.latent; },
     .range = limits::kLatent, .programs = kApp, .default_value = "2", .help = "latent dimensions"},
    {.name = "--latent", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.model.latent; },
     .range = limits::kLatent, .programs = kTrain, .default_value = "20", .help = "latent dimensions"},
    {.name = "--hidden", .value_name = "LIST", .target = [](CommandLine& c) -> auto& { return c.model.hidden; },
     .default_value = "400", .help = "encoder widths, e.g. 400 or 512,256; the decoder mirrors them"},
    {.name = "--clusters", .value_name = "K", .target = [](CommandLine& c) -> auto& { return c.model.clusters; },
     .range = limits::kClusters, .default_value = "10", .help = "categories of the clustering VAE"},
    {.name = "--likelihood", .value_name = "NAME",
     .target = [](CommandLine& c, const std::string& v) { c.model.likelihood = parse_likelihood(v); },
     .default_value = "bernoulli", .help = "bernoulli | gaussian | gaussian-learned"},
    {.name = "--sigma", .value_name = "S", .target = [](CommandLine& c) -> auto& { return c.model.gaussian_sigma; },
     .range = limits::kGaussianSigma, .default_value = "0.1", .help = "decoder σ for --likelihood gaussian"},

    // ---- training ----
    {.name = "--binarize", .value_name = "MODE",
     .target = [](CommandLine& c, const std::string& v) { c.train.binarize = parse_binarize(v); },
     .default_value = "none", .help = "none | static | dynamic"},
    {.name = "--batch", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.train.batch; },
     .range = limits::kBatch, .default_value = "128", .help = "batch size"},
    {.name = "--epochs", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.epochs; },
     .range = kWholeCount, .programs = kTrain, .default_value = "10", .help = "epochs to train; 0: evaluate only"},
    {.name = "--lr", .value_name = "X", .target = [](CommandLine& c) -> auto& { return c.train.lr; },
     .range = limits::kLearningRate, .default_value = "1e-3", .help = "Adam learning rate"},
    {.name = "--beta", .value_name = "X", .target = [](CommandLine& c) -> auto& { return c.train.beta; },
     .range = limits::kBeta, .default_value = "1", .help = "weight β of the KL term"},
    {.name = "--warmup", .value_name = "STEPS", .target = [](CommandLine& c) -> auto& { return c.train.warmup_steps; },
     .range = limits::kWarmupSteps, .default_value = "0", .help = "linear KL warm-up over this many steps"},
    {.name = "--samples", .value_name = "L", .target = [](CommandLine& c) -> auto& { return c.train.samples; },
     .range = limits::kSamples, .default_value = "1", .help = "Monte-Carlo samples of z per example"},
    {.name = "--estimator", .value_name = "E",
     .target = [](CommandLine& c, const std::string& v) { c.train.estimator = parse_estimator(v); }, .programs = kTrain,
     .default_value = "reparam", .help = "encoder gradient: reparam | score (REINFORCE)"},
    {.name = "--seed", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.train.seed; },
     .range = kSeed, .default_value = "1", .help = "random seed"},
    {.name = "--threads", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.train.threads; },
     .range = limits::kThreads, .programs = kApp, .help = "training threads", .default_note = "2, or 1 on a single core"},
    {.name = "--threads", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.train.threads; },
     .range = limits::kThreads, .programs = kTrain, .help = "training threads", .default_note = "all cores"},

    // ---- evaluation ----
    {.name = "--iwae", .value_name = "K", .target = [](CommandLine& c) -> auto& { return c.iwae_k; },
     .range = limits::kIwaeSamples, .programs = kApp, .default_value = "100",
     .help = "IWAE_K at each epoch end for the gap panel; 0: off"},
    {.name = "--iwae", .value_name = "K", .target = [](CommandLine& c) -> auto& { return c.iwae_k; },
     .range = limits::kIwaeSamples, .programs = kTrain, .default_value = "0",
     .help = "also report the importance-weighted bound with K samples; 0: off"},
    {.name = "--iwae-points", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.iwae_points; },
     .range = WholeRange{1, 1 << 24}, .programs = kApp, .default_value = "500", .help = "…on the first N test images"},
    {.name = "--measure-estimators", .target = [](CommandLine& c) -> auto& { return c.measure_estimators; },
     .programs = kApp, .help = "measure both encoder gradient estimators' variance each epoch"},
    {.name = "--display-points", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.display_points; },
     .range = kTestImages, .programs = kApp, .default_value = "10000", .help = "test images shown on the latent map"},

    // ---- vaelab-train's outputs ----
    {.name = "--save", .value_name = "FILE", .target = [](CommandLine& c) -> auto& { return c.save; },
     .programs = kTrain, .help = "write a checkpoint at the end"},
    {.name = "--export-safetensors", .value_name = "FILE",
     .target = [](CommandLine& c) -> auto& { return c.export_safetensors; }, .programs = kTrain,
     .help = "write the weights as safetensors (PyTorch names) at the end"},
    {.name = "--export-images", .value_name = "DIR",
     .target = [](CommandLine& c) -> auto& { return c.export_images; }, .programs = kTrain,
     .help = "after each epoch E write DIR/samples_E.png (8×8 prior samples) and DIR/reconstructions_E.png "
             "(the first 8 test images over their reconstructions), in colour where the data is"},
    {.name = "--json", .target = [](CommandLine& c) -> auto& { return c.json; }, .programs = kTrain,
     .help = "one JSON object per epoch on stdout"},
    {.name = "--follow", .value_name = "RUNDIR", .target = [](CommandLine& c) -> auto& { return c.follow; },
     .programs = kTrain,
     .help = "evaluate each weights file a run folder receives (python/train_ddp.py), one JSON line each, "
             "until the run finishes; waits for a folder that is still empty"},
    {.name = "--follow", .value_name = "RUNDIR", .target = [](CommandLine& c) -> auto& { return c.follow; },
     .programs = kApp,
     .help = "follow a run folder that python/train_ddp.py writes: its weights and curves, live"},
    {.name = "--bench-steps", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.bench_steps; },
     .range = kPositiveCount, .programs = kTrain, .help = "time N training steps, print samples/s as JSON, and exit"},

    // ---- the window ----
    {.name = "--paused", .target = [](CommandLine& c) -> auto& { return c.paused; }, .programs = kApp,
     .help = "start paused"},
    {.name = "--no-resume", .target = [](CommandLine& c) -> auto& { return c.no_resume; }, .programs = kApp,
     .help = "do not offer to resume the autosave (it is kept until the next one)"},
    {.name = "--autosave-minutes", .value_name = "M",
     .target = [](CommandLine& c) -> auto& { return c.autosave_minutes; }, .range = kAutosaveMinutes,
     .programs = kApp, .help = "autosave the run every M minutes and on exit; 0: off",
     .default_note = "5, or the last value set in the app"},
    {.name = "--size", .value_name = "WxH", .target = read_window_size, .programs = kApp, .default_value = "1280x800",
     .help = "window size in pixels", .default_note = "or the last size used"},
    {.name = "--frame-stats", .value_name = "FILE", .target = [](CommandLine& c) -> auto& { return c.frame_stats; },
     .programs = kApp, .help = "write per-frame times (CSV) to FILE; a summary goes to stderr at exit"},
    {.name = "--quit-after", .value_name = "S", .target = [](CommandLine& c) -> auto& { return c.quit_after_s; },
     .range = RealRange{0, 1e7}, .programs = kApp, .help = "close by itself after S seconds"},
    {.name = "--fps-cap", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.fps_cap; },
     .range = WholeRange{0, 1000}, .programs = kApp, .default_value = "60",
     .help = "frame limit when the swap does not wait for vsync; 0: none"},
    {.name = "--no-vsync", .target = [](CommandLine& c) -> auto& { return c.no_vsync; }, .programs = kApp,
     .help = "do not ask for vsync"},
    {.name = "--full-redraw", .target = [](CommandLine& c) -> auto& { return c.full_redraw; }, .programs = kApp,
     .help = "redraw the whole window every frame (default: only what changed)"},
    {.name = "--trainer-nice", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.trainer_nice; },
     .range = WholeRange{0, 19}, .programs = kApp, .default_value = "5",
     .help = "the training threads' nice value above the UI's; 0: same"},
    {.name = "--watch-fps", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.watch_fps; },
     .range = WholeRange{1, 1000}, .programs = kApp, .default_value = "10",
     .help = "redraws per second for new training snapshots without input (input always "
             "redraws at up to --fps-cap)"},
    {.name = "--help", .target = [](CommandLine& c) -> auto& { return c.help; }, .help = "this text", .alias = "-h"},

    // ---- test hooks (developer flags) ----
    {.name = "--screenshot-dir", .value_name = "DIR", .target = [](CommandLine& c) -> auto& { return c.screenshot_dir; },
     .programs = kApp,
     .help = "F12 or SIGUSR1 writes shot-NNN-{window,decoder}.png and shot-NNN.txt (widget rectangles) "
             "here; DIR/ready appears once the first latent codes are drawn",
     .developer = true},
    {.name = "--poison-at-step", .value_name = "N", .target = [](CommandLine& c) -> auto& { return c.poison_at_step; },
     .range = kSeed, .programs = kApp, .help = "the trainer writes a NaN into a weight before step N", .developer = true},
    {.name = "--drop-list", .value_name = "FILE", .target = [](CommandLine& c) -> auto& { return c.drop_list; },
     .programs = kApp,
     .help = "SIGUSR2 drops the paths listed in FILE (one a line) on the window, as a drag and drop does",
     .developer = true},
};

}  // namespace

std::span<const Flag> table() { return kTable; }

const UsageText& usage_text(Program program) {
  static constexpr UsageText kAppText{
      .head = "usage: vaelab [flags]\n"
              "Interactive explorer for variational autoencoders. Opens a window on Fashion-MNIST\n"
              "(or --data PATH) with a 2-D model already training.\n\n",
      .tail = "\nSettings and window layout: $XDG_CONFIG_HOME/vaelab/vaelab.ini (~/.config/vaelab).\n"
              "Checkpoints, exports and the autosave: $XDG_DATA_HOME/vaelab (~/.local/share/vaelab).\n"
              "Exit codes: 0 closed, 1 no window or a fatal error, 2 a bad flag.\n"};
  static constexpr UsageText kTrainText{
      .head = "usage: vaelab-train [flags]\n"
              "Trains a variational autoencoder on a data set of images (see --data) without a window.\n\n",
      .tail = "\nELBOs are in nats per example (negative; higher is better).\n"
              "Exit codes: 0 done, 1 a file or training error, 2 a bad flag.\n"};
  return program == Program::App ? kAppText : kTrainText;
}

}  // namespace vaelab::flags
