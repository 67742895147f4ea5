// The save target's checks (core/atomic_file): what a save refuses to replace, how it follows a
// symbolic link, the check run before training, and the folder-wide removal of stale temporaries.
// Not the atomic write's failure paths (test_checkpoint.cpp covers those).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "core/atomic_file.hpp"
#include "tests/support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

const Bytes kNew = {'n', 'e', 'w'};

bool no_temporaries(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return false;
  return true;
}

}  // namespace

TEST_CASE("atomic_file: a save refuses a device node, a FIFO and a folder, and leaves them as they were") {
  TempDir dir("atomic");
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  fs::create_directories(dir / "folder");
  std::vector<std::pair<std::string, std::string>> cases = {{"fifo", "is a FIFO (named pipe), not a regular file"},
                                                            {"folder", "is a folder, not a regular file"}};
  // The same node as /dev/null (character device 1:3); creating one needs privileges.
  if (::mknod((dir / "null").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0)
    cases.emplace_back("null", "is a character device, not a regular file");
  else
    MESSAGE("cannot create a device node here (not privileged); the FIFO stands in for it");
  for (const auto& one_case : cases) {
    // Plain references, not a structured binding: clang 14 cannot capture one in doctest's lambdas.
    const auto& name = one_case.first;
    const auto& why = one_case.second;
    const fs::path target = dir / name;
    const fs::file_type before = fs::symlink_status(target).type();
    const std::string m = error_of([&] { write_file_atomically(target, kNew.data(), kNew.size()); });
    CHECK_MESSAGE(m == "cannot write '" + target.string() + "': it " + why + "; vaelab saves only to a file", m);
    CHECK_MESSAGE(has(error_of([&] { check_save_target(target); }), why), name);
    CHECK(fs::symlink_status(target).type() == before);
  }
  CHECK(no_temporaries(dir.path));
}

TEST_CASE("atomic_file: a save through a symbolic link writes the link's target in the target's folder") {
  TempDir dir("atomic");
  fs::create_directories(dir / "real");
  fs::create_directories(dir / "links");
  write_all(dir / "real" / "model.vaelab", {'o', 'l', 'd'});
  fs::create_symlink("../real/model.vaelab", dir / "links" / "model.vaelab");  // relative, as ln -s makes them
  fs::create_symlink(dir / "links" / "model.vaelab", dir / "chain.vaelab");     // a link to a link

  write_file_atomically(dir / "links" / "model.vaelab", kNew.data(), kNew.size());
  CHECK(fs::is_symlink(dir / "links" / "model.vaelab"));
  CHECK(read_all(dir / "real" / "model.vaelab") == kNew);
  CHECK(check_save_target(dir / "chain.vaelab") == dir / "links" / "../real/model.vaelab");
  const Bytes newer = {'n', 'e', 'w', 'e', 'r'};
  write_file_atomically(dir / "chain.vaelab", newer.data(), newer.size());
  CHECK(fs::is_symlink(dir / "chain.vaelab"));
  CHECK(read_all(dir / "real" / "model.vaelab") == newer);

  // A dangling link: the save creates its target, and the link then leads to it.
  fs::create_symlink("absent.vaelab", dir / "dangling.vaelab");
  write_file_atomically(dir / "dangling.vaelab", kNew.data(), kNew.size());
  CHECK(fs::is_symlink(dir / "dangling.vaelab"));
  CHECK(read_all(dir / "absent.vaelab") == kNew);

  // A link to a FIFO is refused like the FIFO itself; a loop of links is refused.
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  fs::create_symlink("fifo", dir / "to-fifo");
  CHECK(has(error_of([&] { write_file_atomically(dir / "to-fifo", kNew.data(), kNew.size()); }),
            "its link target '" + (dir / "fifo").string() + "' is a FIFO (named pipe)"));
  fs::create_symlink("loop-b", dir / "loop-a");
  fs::create_symlink("loop-a", dir / "loop-b");
  CHECK(has(error_of([&] { write_file_atomically(dir / "loop-a", kNew.data(), kNew.size()); }), "form a loop"));
  CHECK(no_temporaries(dir.path));
}

TEST_CASE("atomic_file: check_save_target says before any work whether a save can succeed") {
  TempDir dir("atomic");
  CHECK(check_save_target(dir / "new.vaelab") == dir / "new.vaelab");
  CHECK_FALSE(fs::exists(dir / "new.vaelab"));  // checking writes nothing that stays
  const std::string m = error_of([&] { check_save_target(dir / "absent" / "x.vaelab"); });
  CHECK_MESSAGE(m == "cannot write '" + (dir / "absent" / "x.vaelab").string() + "': cannot create a file in '" +
                         (dir / "absent").string() + "': No such file or directory",
                m);
  write_all(dir / "plain", {'x'});
  CHECK(has(error_of([&] { check_save_target(dir / "plain" / "x.vaelab"); }), "Not a directory"));
  CHECK(no_temporaries(dir.path));
}

TEST_CASE("atomic_file: stale temporaries of the whole folder go on the next save or check") {
  TempDir dir("atomic");
  const Bytes junk = {'p', 'a', 'r', 't'};
  for (const char* name : {"a.vaelab.tmp.4242", "b.safetensors.tmp.17", "keep.tmp.x", "keep.tmp."})
    write_all(dir / name, junk);
  const int live = ::open((dir / "c.vaelab.tmp.99").c_str(), O_WRONLY | O_CREAT, 0644);
  REQUIRE(live >= 0);
  REQUIRE(::flock(live, LOCK_EX) == 0);

  CHECK(check_save_target(dir / "other.vaelab") == dir / "other.vaelab");
  CHECK_FALSE(fs::exists(dir / "a.vaelab.tmp.4242"));
  CHECK_FALSE(fs::exists(dir / "b.safetensors.tmp.17"));
  for (const char* kept : {"c.vaelab.tmp.99", "keep.tmp.x", "keep.tmp."})
    CHECK_MESSAGE(fs::exists(dir / kept), kept);

  write_all(dir / "d.vaelab.tmp.5", junk);
  write_file_atomically(dir / "e.vaelab", kNew.data(), kNew.size());
  CHECK_FALSE(fs::exists(dir / "d.vaelab.tmp.5"));
  CHECK(fs::exists(dir / "c.vaelab.tmp.99"));
  ::close(live);
  CHECK(remove_stale_temporaries(dir.path) == 1);
  CHECK_FALSE(fs::exists(dir / "c.vaelab.tmp.99"));
}
