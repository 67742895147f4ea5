// Reading only regular files (core/regular_file): every reader (checkpoint, safetensors, IDX)
// refuses a FIFO without blocking and a device without reading it, and stops when cancelled.
// Not what the readers make of a regular file's content (test_checkpoint/safetensors/data).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <future>

#include "core/checkpoint.hpp"
#include "core/data.hpp"
#include "core/regular_file.hpp"
#include "core/safetensors.hpp"
#include "tests/support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

// The error `read` throws, run on another thread: a read that blocks is reported as such and
// unblocked (a writer opens and closes the FIFO), so a regression fails instead of hanging.
std::string error_without_blocking(const fs::path& fifo, const std::function<void()>& read) {
  auto result = std::async(std::launch::async, [&] { return error_of(read); });
  if (result.wait_for(std::chrono::seconds(10)) == std::future_status::ready) return result.get();
  const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
  if (w >= 0) ::close(w);
  result.wait();
  return "<blocked in open>";
}

const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>>& readers() {
  static const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>> r = {
      {"a checkpoint file", [](const fs::path& p) { load_checkpoint(p); }},
      {"a safetensors file", [](const fs::path& p) { read_safetensors(p); }},
      {"an IDX file", [](const fs::path& p) { read_idx_images(p); }},
      {"an IDX file", [](const fs::path& p) { read_idx_labels(p); }},
  };
  return r;
}

}  // namespace

TEST_CASE("regular_file: a FIFO is refused by every reader without blocking") {
  TempDir dir("regular");
  const fs::path fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const auto& [expected, read] : readers()) {
    const std::string m = error_without_blocking(fifo, [&, &read = read] { read(fifo); });
    CHECK_MESSAGE(m == fifo.string() + ": is a FIFO (named pipe), not " + expected + "; vaelab reads only regular files",
                  m);
  }
}

TEST_CASE("regular_file: a device is refused by every reader, not read") {
  // /dev/zero was read as an empty checkpoint ("file is empty"); /dev/urandom would never end.
  for (const auto& [expected, read] : readers()) {
    const std::string m = error_of([&, &read = read] { read("/dev/zero"); });
    CHECK_MESSAGE(m == "/dev/zero: is a character device, not " + expected + "; vaelab reads only regular files", m);
  }
}

TEST_CASE("regular_file: reading stops when cancelled, and a size limit is checked before reading") {
  TempDir dir("regular");
  write_all(dir / "f", Bytes(100, 7));
  CHECK(read_regular_file(dir / "f", "a test file", 100) == Bytes(100, 7));
  CHECK(error_of([&] { read_regular_file(dir / "f", "a test file", 99); }) ==
        (dir / "f").string() + ": the file is 100 bytes, more than the 99 vaelab reads as a test file");
  CancelFlag cancel{true};
  CHECK(error_of([&] { read_regular_file(dir / "f", "a test file", 100, &cancel); }) ==
        (dir / "f").string() + ": reading was cancelled");
  CHECK(has(error_of([&] { load_checkpoint(dir / "f", &cancel); }), "reading was cancelled"));
  CHECK(has(error_of([&] { read_idx_images(dir / "f", &cancel); }), "reading was cancelled"));
  CHECK(error_of([&] { read_regular_file(dir / "absent", "a test file", 100); }) ==
        (dir / "absent").string() + ": file does not exist");
}
