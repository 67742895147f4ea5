// Unit tests of the flag table (app/flags/): the rows are consistent, every default is readable and
// in range, the ranges are validate()'s, numbers are strict, and the hidden-width parser the
// training panel shares. Not the programs' exit codes (the CTest entries in this folder).
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/data_source.hpp"
#include "core/error.hpp"
#include "app/flags/flags.hpp"

using namespace vaelab;
using namespace vaelab::flags;

namespace {

std::string refusal(Program program, const std::vector<std::string>& args) {
  try {
    parse(program, args);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("flags: no program takes a name twice, numbers have ranges of their kind") {
  for (Program program : {Program::App, Program::Train}) {
    std::set<std::string_view> names;
    for (const Flag& flag : table()) {
      if (!(flag.programs & static_cast<unsigned>(program))) continue;
      CHECK_MESSAGE(names.insert(flag.name).second, flag.name);
      if (!flag.alias.empty()) CHECK_MESSAGE(names.insert(flag.alias).second, flag.alias);
      const bool whole = std::holds_alternative<IntField>(flag.target) || std::holds_alternative<Int64Field>(flag.target) ||
                         std::holds_alternative<Uint64Field>(flag.target);
      const bool real = std::holds_alternative<FloatField>(flag.target) || std::holds_alternative<DoubleField>(flag.target);
      CHECK_MESSAGE(whole == std::holds_alternative<WholeRange>(flag.range), flag.name);
      CHECK_MESSAGE(real == std::holds_alternative<RealRange>(flag.range), flag.name);
      CHECK_MESSAGE(std::holds_alternative<SwitchField>(flag.target) == flag.value_name.empty(), flag.name);
      CHECK_MESSAGE(!flag.help.empty(), flag.name);
    }
  }
}

TEST_CASE("flags: the defaults of both programs") {
  const CommandLine train = parse(Program::Train, {});
  CHECK(train.model.latent == 20);
  CHECK(train.model.hidden == std::vector<int>{400});
  CHECK(train.model.family == ModelFamily::Mlp);
  CHECK(train.model.likelihood == Likelihood::Bernoulli);
  CHECK(train.model.gaussian_sigma == 0.1f);
  CHECK(train.model.clusters == 10);
  CHECK(train.train.batch == 128);
  CHECK(train.train.lr == 1e-3f);
  CHECK(train.train.beta == 1.0f);
  CHECK(train.train.warmup_steps == 0);
  CHECK(train.train.samples == 1);
  CHECK(train.train.seed == 1);
  CHECK(train.train.binarize == Binarize::None);
  CHECK(train.train.estimator == Estimator::Reparameterised);
  CHECK(train.epochs == 10);
  CHECK(train.iwae_k == 0);
  CHECK(train.given.empty());

  const CommandLine app = parse(Program::App, {});
  CHECK(app.model.latent == 2);
  CHECK(app.model.hidden == std::vector<int>{400});
  CHECK(app.train.batch == 128);
  CHECK(app.iwae_k == 100);
  CHECK(app.iwae_points == 500);
  CHECK(app.display_points == 10000);
  CHECK(app.autosave_minutes == -1);
  CHECK(app.width == 1280);
  CHECK(app.height == 800);
  CHECK(app.fps_cap == 60);
  CHECK(app.watch_fps == 10);
  CHECK(app.trainer_nice == 5);
  CHECK(app.poison_at_step == -1);
  CHECK(!app.was_given("--size"));
}

TEST_CASE("flags: a range's ends are taken, one step beyond is refused, and validate() agrees") {
  struct Case {
    const char* flag;
    WholeRange range;
  };
  for (const Case& c : {Case{"--latent", limits::kLatent}, Case{"--batch", limits::kBatch},
                        Case{"--samples", limits::kSamples}, Case{"--threads", limits::kThreads},
                        Case{"--clusters", limits::kClusters}}) {
    for (Program program : {Program::App, Program::Train}) {
      for (long long v : {c.range.lo, c.range.hi}) {
        CommandLine line = parse(program, {c.flag, std::to_string(v), "--model", "gmvae"});
        CHECK_NOTHROW(validate(line.model));
        CHECK_NOTHROW(validate(line.train));
      }
      for (long long v : {c.range.lo - 1, c.range.hi + 1}) {
        const std::string why = refusal(program, {c.flag, std::to_string(v)});
        CHECK_MESSAGE(why.find(c.range.describe()) != std::string::npos, why);
      }
    }
  }
  CHECK(refusal(Program::Train, {"--lr", "0"}) == "--lr wants a number greater than 0, at most 10, not '0'");
  CHECK(refusal(Program::App, {"--lr", "0"}) == "--lr wants a number greater than 0, at most 10, not '0'");
  CHECK_THROWS_AS(validate(TrainConfig{.lr = 0}), Error);
  CHECK(refusal(Program::App, {"--sigma", "2e6"}).find("greater than 0, at most 1e+06") != std::string::npos);
}

TEST_CASE("flags: numbers are strict, text is not empty, values are not taken for flags") {
  CHECK(refusal(Program::Train, {"--batch", "12x"}) == "--batch wants a whole number from 1 to 65536, not '12x'");
  CHECK(refusal(Program::Train, {"--batch", ""}) == "--batch wants a whole number from 1 to 65536, not ''");
  CHECK(refusal(Program::Train, {"--beta", "1.5.2"}) == "--beta wants a number 0 to 1000, not '1.5.2'");
  CHECK(refusal(Program::Train, {"--beta", "nan"}) == "--beta wants a number 0 to 1000, not 'nan'");
  CHECK(refusal(Program::Train, {"--save", ""}) == "--save wants a FILE, not ''");
  CHECK(refusal(Program::App, {"--screenshot-dir", ""}) == "--screenshot-dir wants a DIR, not ''");
  CHECK(refusal(Program::Train, {"--epochs", "1", "--frobnicate"}) == "unknown flag '--frobnicate' (see --help)");
  CHECK(refusal(Program::Train, {"--epochs"}) == "--epochs needs a value");
  CHECK(refusal(Program::Train, {"run.vaelab"}) == "unexpected argument 'run.vaelab' (flags start with --)");
  CHECK(refusal(Program::App, {"--save", "x"}) == "--save is a flag of vaelab-train, not of vaelab");
  CHECK(refusal(Program::App, {"--size", "100x100"}).find("--size: wants WIDTHxHEIGHT from 320x240") == 0);
  const CommandLine line = parse(Program::App, {"--size", "1024X768", "--family", "conv", "--seed", "9000000000"});
  CHECK(line.width == 1024);
  CHECK(line.height == 768);
  CHECK(line.was_given("--size"));
  CHECK(line.model.family == ModelFamily::Conv);
  CHECK(line.train.seed == 9000000000ULL);
}

TEST_CASE("flags: the loading flags fill LoadOptions for both programs") {
  // Every field, as text, so that one CHECK compares them all.
  auto fields = [](const LoadOptions& o) {
    return std::to_string(o.channels) + " " + std::to_string(o.height) + "x" + std::to_string(o.width) + " " +
           (o.crop == CropMode::Center ? "center" : "none") + " " +
           (o.background == Background::White ? "white" : "black") + " " + std::to_string(o.test_fraction) + " " +
           std::to_string(o.max_images);
  };
  for (Program program : {Program::App, Program::Train}) {
    CHECK(fields(parse(program, {}).data_options) == "0 0x0 center white 0.100000 0");
    CHECK(fields(parse(program, {"--channels", "1", "--image-size", "48x64", "--crop", "none", "--background", "black",
                                 "--test-fraction", "0.25", "--max-images", "5000"})
                     .data_options) == "1 48x64 none black 0.250000 5000");
    CHECK(fields(parse(program, {"--image-size", "32", "--channels", "3"}).data_options) ==
          "3 32x32 center white 0.100000 0");
  }
  CHECK(refusal(Program::Train, {"--channels", "4"}) == "--channels: wants 1 (grey) or 3 (colour), not '4'");
  for (const char* size : {"0", "4097", "32x", "x32", "32x0", "3.5", ""})
    CHECK_MESSAGE(refusal(Program::Train, {"--image-size", size}).find("--image-size: wants a side S or HEIGHTxWIDTH") == 0,
                  size);
  CHECK(refusal(Program::App, {"--crop", "middle"}) == "--crop: wants center or none, not 'middle'");
  CHECK(refusal(Program::App, {"--background", "grey"}) == "--background: wants white or black, not 'grey'");
  for (const char* f : {"0", "1", "-0.1", "1.5", "nan", "0.1x"})
    CHECK_MESSAGE(refusal(Program::Train, {"--test-fraction", f}).find("--test-fraction: wants a number greater than 0") == 0, f);
  for (const char* n : {"1", "-1", "2x", "2000000000000"})
    CHECK_MESSAGE(refusal(Program::Train, {"--max-images", n}).find("--max-images: wants 0 (every image)") == 0, n);
}

TEST_CASE("flags: --help lists the program's flags, test hooks only for developers") {
  const std::string user = usage(Program::App, false), developer = usage(Program::App, true);
  CHECK(user.find("--poison-at-step") == std::string::npos);
  CHECK(user.find("--screenshot-dir") == std::string::npos);
  CHECK(developer.find("--poison-at-step N") != std::string::npos);
  CHECK(user.find("--latent N") != std::string::npos);
  CHECK(user.find("--save") == std::string::npos);
  const std::string train = usage(Program::Train, false);
  CHECK(train.find("--save FILE") != std::string::npos);
  CHECK(train.find("--paused") == std::string::npos);
  for (const std::string* text : {&user, &developer, &train}) {
    std::size_t start = 0;
    while (start < text->size()) {
      const std::size_t end = text->find('\n', start);
      CHECK_MESSAGE(end - start <= 98, text->substr(start, end - start));
      start = end + 1;
    }
  }
}

TEST_CASE("flags: hidden widths as the command line and the training panel write them") {
  std::vector<int> widths;
  std::string error;
  CHECK(parse_hidden("400", widths, error));
  CHECK(widths == std::vector<int>{400});
  CHECK(parse_hidden("512,256", widths, error));
  CHECK(widths == std::vector<int>{512, 256});
  CHECK(parse_hidden(" 512, 256 ", widths, error));
  CHECK(widths == std::vector<int>{512, 256});
  for (const char* bad : {"", "0", "8193", "12x", "-5", "1,2,3,4,5,6,7,8,9", ",", "4 00x"}) {
    error.clear();
    CHECK_MESSAGE(!parse_hidden(bad, widths, error), bad);
    CHECK_MESSAGE(!error.empty(), bad);
  }
  CHECK(parse_hidden("8192,1", widths, error));
}
