// vaelab_save_loop: saves checkpoints of varying size and content to one path in a loop, so a test
// can SIGKILL it mid-save; its "check" mode loads the file and verifies it is one the loop wrote.
// Not a unit test: tests/crash/crash_during_save.sh drives it (CTest entry crash_during_save).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/checkpoint.hpp"
#include "core/error.hpp"
#include "core/model.hpp"

using namespace vaelab;

namespace {

// Round r's state: one of three model sizes (a few KB to ~5 MB on disk), parameters, moments and
// history that all depend on r, so a file mixing two rounds' bytes cannot pass the check.
TrainingState state_for(std::int64_t r) {
  TrainingState s;
  switch (r % 3) {
    case 0: s.model.image_h = s.model.image_w = 8, s.model.hidden = {8}, s.model.latent = 2; break;
    case 1: s.model.image_h = s.model.image_w = 16, s.model.hidden = {64, 32}, s.model.latent = 3; break;
    default: s.model.image_h = s.model.image_w = 28, s.model.hidden = {256}, s.model.latent = 4; break;
  }
  s.train.batch = 16;
  s.train.seed = static_cast<std::uint64_t>(r);
  Model m(s.model);
  m.init(static_cast<std::uint64_t>(r % 3) + 1);
  s.params.assign(m.params().begin(), m.params().end());
  s.params[0] = static_cast<float>(r);
  s.adam.reset(s.params.size());
  s.adam.t = r;
  for (std::size_t i = 0; i < s.params.size(); i += 97) s.adam.m[i] = static_cast<float>(r % 1000) + 0.5f;
  s.step = r;
  s.epoch = static_cast<int>(r / 10);
  for (std::int64_t i = 0; i < r % 200; ++i)
    s.history.steps.push_back({i, static_cast<float>(i) / 10.0f, -static_cast<float>(r), -1.0f, 1.0f});
  s.history.markers.push_back({r, "round " + std::to_string(r)});
  s.data_name = "save-loop";
  return s;
}

void say(const std::string& line) {
  const std::string l = line + "\n";
  // write(2), not stdio: the line must be out of the process before a SIGKILL can arrive.
  if (::write(STDOUT_FILENO, l.data(), l.size()) < 0) std::exit(3);
}

int check(const char* file) {
  const TrainingState got = load_checkpoint(file);
  const TrainingState want = state_for(got.step);
  const bool same = got.model == want.model && got.params == want.params && got.adam.t == want.adam.t &&
                    got.adam.m == want.adam.m && got.adam.v == want.adam.v && got.history == want.history &&
                    got.data_name == want.data_name;
  if (!same) {
    std::fprintf(stderr, "%s: loads, but is not the state of round %lld that it claims to be\n", file,
                 static_cast<long long>(got.step));
    return 1;
  }
  say("ok round " + std::to_string(got.step));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc >= 3 ? argv[1] : "";
  if (mode != "save" && mode != "check") {
    std::fprintf(stderr,
                 "usage: %s save FILE [FIRST_ROUND [COUNT]]   save rounds FIRST_ROUND.. (forever without COUNT)\n"
                 "       %s check FILE                        load FILE and verify its content\n",
                 argv[0], argv[0]);
    return 2;
  }
  try {
    if (mode == "check") return check(argv[2]);
    const std::int64_t first = argc >= 4 ? std::atoll(argv[3]) : 0;
    const std::int64_t count = argc >= 5 ? std::atoll(argv[4]) : -1;
    for (std::int64_t r = first; count < 0 || r < first + count; ++r) {
      save_checkpoint(argv[2], state_for(r));
      say("saved " + std::to_string(r));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab_save_loop: %s\n", e.what());
    return 1;
  }
  return 0;
}
