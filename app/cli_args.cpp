// Parsing of vaelab-train's flags (see cli_args.hpp). Numbers are parsed strictly: "12x" or
// an empty value is an error naming the flag, never a silent zero.
#include "app/cli_args.hpp"

#include <charconv>
#include <cmath>
#include <sstream>

#include "core/error.hpp"

namespace vaelab {

const char* train_usage() {
  return "usage: vaelab-train [flags]\n"
         "Trains a variational autoencoder on IDX image files without a window.\n"
         "\n"
         "  --data DIR              folder with {train,t10k}-images-idx3-ubyte[.gz] (+ labels)\n"
         "                          (default: /usr/share/datasets/fashion-mnist)\n"
         "  --model M               mlp | conv | gmvae (clustering VAE) (default mlp)\n"
         "  --clusters K            categories of the clustering VAE (default 10)\n"
         "  --latent D              latent dimensions (default 20)\n"
         "  --hidden H[,H...]       hidden layer widths, encoder order (default 400)\n"
         "  --likelihood L          bernoulli | gaussian | gaussian-learned (default bernoulli)\n"
         "  --sigma S               decoder σ for --likelihood gaussian (default 0.1)\n"
         "  --batch B               batch size (default 128)\n"
         "  --epochs N              epochs to train; 0 = evaluate only (default 10)\n"
         "  --lr LR                 Adam learning rate (default 1e-3)\n"
         "  --beta B                weight of the KL term (default 1)\n"
         "  --warmup STEPS          linear KL warm-up over this many steps (default 0)\n"
         "  --samples L             Monte-Carlo samples of z per example (default 1)\n"
         "  --seed S                random seed (default 1)\n"
         "  --threads T             training threads (default: all cores)\n"
         "  --binarize MODE         none | static | dynamic (default none)\n"
         "  --save FILE             write a checkpoint at the end\n"
         "  --load FILE             start from a checkpoint\n"
         "  --export-safetensors F  write the weights as safetensors (PyTorch names) at the end\n"
         "  --import-safetensors F  start from safetensors weights\n"
         "  --iwae K                also report the importance-weighted bound with K samples\n"
         "  --estimator E           encoder gradient: reparam | score (REINFORCE) (default reparam)\n"
         "  --train-limit N         train on the first N training images only\n"
         "  --eval-limit N          evaluate on the first N test images only\n"
         "  --bench-steps N         time N training steps, print samples/s, and exit\n"
         "  --json                  one JSON object per epoch on stdout\n"
         "  --help                  this text\n"
         "\n"
         "ELBOs are in nats per example (negative; higher is better).\n"
         "Exit codes: 0 done, 1 a file or training error, 2 a bad flag.\n";
}

namespace {

template <class T>
bool parse_number(const std::string& s, T& out) {
  if (s.empty()) return false;
  if constexpr (std::is_floating_point_v<T>) {
    std::istringstream is(s);
    is.imbue(std::locale::classic());
    double v;
    is >> v;
    if (!is || is.peek() != EOF) return false;
    out = static_cast<T>(v);
    return std::isfinite(v);
  } else {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  }
}

}  // namespace

std::variant<TrainArgs, ArgError> parse_train_args(const std::vector<std::string>& args) {
  TrainArgs a;
  a.model.latent = 20;
  a.model.hidden = {400};
  a.train.threads = 0;  // resolved by the caller to the core count
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      a.help = true;
      continue;
    }
    if (flag == "--json") {
      a.json = true;
      continue;
    }
    if (flag.rfind("--", 0) != 0) return ArgError{"unexpected argument '" + flag + "' (flags start with --)"};
    if (i + 1 >= args.size()) return ArgError{flag + " needs a value"};
    const std::string& v = args[++i];
    auto bad = [&](const char* what) { return ArgError{flag + " " + v + ": expected " + what}; };
    auto integer = [&](int& out) { return parse_number(v, out); };
    if (flag == "--data") {
      a.data = v;
    } else if (flag == "--model") {
      try {
        a.model.family = parse_family(v);
      } catch (const Error& e) {
        return ArgError{e.what()};
      }
    } else if (flag == "--clusters") {
      if (!integer(a.model.clusters)) return bad("a whole number");
    } else if (flag == "--latent") {
      if (!integer(a.model.latent)) return bad("a whole number");
    } else if (flag == "--hidden") {
      a.model.hidden.clear();
      std::stringstream ss(v);
      std::string part;
      while (std::getline(ss, part, ',')) {
        int h;
        if (!parse_number(part, h)) return bad("widths like 400 or 512,256");
        a.model.hidden.push_back(h);
      }
      if (a.model.hidden.empty()) return bad("widths like 400 or 512,256");
    } else if (flag == "--likelihood") {
      try {
        a.model.likelihood = parse_likelihood(v);
      } catch (const Error& e) {
        return ArgError{e.what()};
      }
    } else if (flag == "--sigma") {
      if (!parse_number(v, a.model.gaussian_sigma)) return bad("a number");
    } else if (flag == "--batch") {
      if (!integer(a.train.batch)) return bad("a whole number");
    } else if (flag == "--epochs") {
      if (!integer(a.epochs) || a.epochs < 0) return bad("a whole number ≥ 0");
    } else if (flag == "--lr") {
      if (!parse_number(v, a.train.lr)) return bad("a number");
    } else if (flag == "--beta") {
      if (!parse_number(v, a.train.beta)) return bad("a number");
    } else if (flag == "--warmup") {
      if (!integer(a.train.warmup_steps)) return bad("a whole number of steps");
    } else if (flag == "--samples") {
      if (!integer(a.train.samples)) return bad("a whole number");
    } else if (flag == "--seed") {
      if (!parse_number(v, a.train.seed)) return bad("a whole number ≥ 0");
    } else if (flag == "--threads") {
      if (!integer(a.train.threads) || a.train.threads < 1) return bad("a whole number ≥ 1");
    } else if (flag == "--binarize") {
      try {
        a.train.binarize = parse_binarize(v);
      } catch (const Error& e) {
        return ArgError{e.what()};
      }
    } else if (flag == "--estimator") {
      try {
        a.train.estimator = parse_estimator(v);
      } catch (const Error& e) {
        return ArgError{e.what()};
      }
    } else if (flag == "--save") {
      a.save = v;
    } else if (flag == "--load") {
      a.load = v;
    } else if (flag == "--export-safetensors") {
      a.export_safetensors = v;
    } else if (flag == "--import-safetensors") {
      a.import_safetensors = v;
    } else if (flag == "--iwae") {
      if (!integer(a.iwae_k) || a.iwae_k < 1 || a.iwae_k > 100000) return bad("a whole number from 1 to 100000");
    } else if (flag == "--train-limit") {
      if (!integer(a.train_limit) || a.train_limit < 1) return bad("a whole number ≥ 1");
    } else if (flag == "--eval-limit") {
      if (!integer(a.eval_limit) || a.eval_limit < 1) return bad("a whole number ≥ 1");
    } else if (flag == "--bench-steps") {
      if (!integer(a.bench_steps) || a.bench_steps < 1) return bad("a whole number ≥ 1");
    } else {
      return ArgError{"unknown flag " + flag + " (see --help)"};
    }
  }
  if (!a.load.empty() && !a.import_safetensors.empty())
    return ArgError{"--load and --import-safetensors both give starting weights; use one"};
  return a;
}

}  // namespace vaelab
