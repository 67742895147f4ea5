// The command-line flags of vaelab and vaelab-train: one table of flag specifications (name,
// value, range, default, help, which program takes it, developer-only) from which both programs
// parse their arguments and print --help. Not what the flags do: each program reads CommandLine.
#pragma once
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/data_source.hpp"

namespace vaelab::flags {

enum class Program : std::uint8_t { App = 1, Train = 2 };
inline constexpr unsigned kApp = 1, kTrain = 2, kBoth = kApp | kTrain;

// Every value either program can be given. Fields whose flag has a default in the table get it
// before the arguments are read; the others keep the values below.
struct CommandLine {
  // both programs
  std::string data;  // empty: the Debian Fashion-MNIST folder
  LoadOptions data_options;  // --channels, --image-size, --crop, --background, --test-fraction, --max-images
  std::string load;
  ModelConfig model;
  TrainConfig train;  // train.threads: see was_given("--threads"); each program has its own default
  int iwae_k = 0;
  int train_limit = 0;
  bool help = false;
  // vaelab-train
  int epochs = 0;
  std::string save, export_safetensors, import_safetensors;
  std::string export_images;  // a folder for samples_E.png and reconstructions_E.png after each epoch
  int eval_limit = 0;
  int bench_steps = 0;
  bool json = false;
  std::string follow;  // a run folder to follow (vaelab-train: evaluate each weights file)
  // vaelab
  int iwae_points = 0;
  int display_points = 0;
  bool paused = false, no_resume = false, measure_estimators = false;
  int autosave_minutes = -1;  // −1: the saved preference
  int width = 0, height = 0;
  std::string screenshot_dir, frame_stats;
  std::string drop_list;  // test hook: SIGUSR2 drops the paths listed in this file
  std::int64_t poison_at_step = -1;
  double quit_after_s = 0;
  int fps_cap = 0, watch_fps = 0, trainer_nice = 0;
  bool no_vsync = false, full_redraw = false;

  std::vector<std::string> given;  // the flags on the command line, by their table name
  bool was_given(std::string_view flag) const;
};

// Where a flag's value goes. The kind of the field decides how the text is read: a switch sets a
// bool; whole and real numbers are read strictly ("12x" or "" is an error) and checked against the
// row's range; text must not be empty; widths go through parse_hidden; a custom reader throws
// vaelab::Error for a value it refuses.
using SwitchField = bool& (*)(CommandLine&);
using IntField = int& (*)(CommandLine&);
using Int64Field = std::int64_t& (*)(CommandLine&);
using Uint64Field = std::uint64_t& (*)(CommandLine&);
using FloatField = float& (*)(CommandLine&);
using DoubleField = double& (*)(CommandLine&);
using TextField = std::string& (*)(CommandLine&);
using WidthsField = std::vector<int>& (*)(CommandLine&);
using CustomReader = void (*)(CommandLine&, const std::string&);
using Target = std::variant<SwitchField, IntField, Int64Field, Uint64Field, FloatField, DoubleField, TextField,
                            WidthsField, CustomReader>;

using Range = std::variant<std::monostate, WholeRange, RealRange>;

// Autosave interval in minutes (0: off), for --autosave-minutes and the value kept in vaelab.ini.
inline constexpr WholeRange kAutosaveMinutes{0, 120};

struct Flag {
  std::string_view name{};          // "--latent"
  std::string_view value_name{};    // "N" in the help; empty for a switch
  Target target{};
  Range range{};                    // numbers only
  unsigned programs = kBoth;
  std::string_view default_value{};  // read like a given value before the arguments; empty: none
  std::string_view help{};           // wrapped to the --help width
  std::string_view default_note{};   // after the default in the help: "(default 5, or …)"
  bool developer = false;            // a test hook: listed only with VAELAB_DEVELOPER_FLAGS=1
  std::string_view alias{};          // another spelling that is accepted, never listed
};

// All flags of both programs, in the order --help lists them.
std::span<const Flag> table();
// The lines --help prints above and below the flags.
struct UsageText {
  std::string_view head, tail;
};
const UsageText& usage_text(Program program);

// A bad command line: the message names the flag and what it wants (exit code 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads argv (without argv[0]) for `program`: the table's defaults first, then each argument.
// Throws UsageError.
CommandLine parse(Program program, const std::vector<std::string>& args);
// The --help text; developer flags are listed when `developer` is true.
std::string usage(Program program, bool developer);
// True when VAELAB_DEVELOPER_FLAGS is set to something other than "" or "0".
bool developer_flags_wanted();

}  // namespace vaelab::flags
