// The file chooser's listing (core/file_listing): what each filter lists, the order, hidden
// entries, folders that cannot be read, the recent paths and where a chooser starts.
// Not the chooser's drawing (app/file_chooser.cpp, covered by tests/e2e/chooser.sh).
#include <unistd.h>

#include "core/file_listing.hpp"
#include "tests/support.hpp"

using namespace vaelab;
using namespace vaelab::test;

namespace {

void touch(const fs::path& p, std::size_t bytes = 1) { write_all(p, Bytes(bytes, 7)); }

std::vector<std::string> names(const FolderListing& l) {
  std::vector<std::string> out;
  for (const FolderEntry& e : l.entries) out.push_back(e.is_folder ? e.name + "/" : e.name);
  return out;
}

// A folder with a little of everything a chooser meets.
void fill(const TempDir& t) {
  fs::create_directories(t / "runs");
  fs::create_directories(t / "Data");
  fs::create_directories(t / ".cache");
  touch(t / "b.vaelab", 10);
  touch(t / "A.VAELAB");
  touch(t / "weights.safetensors");
  touch(t / "shot.png");
  touch(t / "x.npy");
  touch(t / "arrays.npz");
  touch(t / "train-images-idx3-ubyte");
  touch(t / "t10k-labels-idx1-ubyte.gz");
  touch(t / "notes.txt");
  touch(t / ".hidden.vaelab");
}

}  // namespace

TEST_CASE("file_listing: each filter lists folders first, then its own files, by name") {
  TempDir t("listing");
  fill(t);
  CHECK(names(list_folder(t.path, file_filter(FileKind::Checkpoint), false)) ==
        std::vector<std::string>{"Data/", "runs/", "A.VAELAB", "b.vaelab"});
  CHECK(names(list_folder(t.path, file_filter(FileKind::Folder), false)) == std::vector<std::string>{"Data/", "runs/"});
  CHECK(names(list_folder(t.path, file_filter(FileKind::Safetensors), false)) ==
        std::vector<std::string>{"Data/", "runs/", "weights.safetensors"});
  CHECK(names(list_folder(t.path, file_filter(FileKind::Png), false)) == std::vector<std::string>{"Data/", "runs/", "shot.png"});
  CHECK(names(list_folder(t.path, file_filter(FileKind::Data), false)) ==
        std::vector<std::string>{"Data/", "runs/", "arrays.npz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte", "x.npy"});
  const FolderListing l = list_folder(t.path, file_filter(FileKind::Checkpoint), false);
  CHECK(l.error.empty());
  CHECK(l.entries[3].size == 10);
  CHECK(l.entries[0].size == 0);
}

TEST_CASE("file_listing: hidden entries are counted and left out unless asked for") {
  TempDir t("listing-hidden");
  fill(t);
  const FolderListing without = list_folder(t.path, file_filter(FileKind::Checkpoint), false);
  CHECK(without.hidden_left_out == 2);
  const FolderListing with = list_folder(t.path, file_filter(FileKind::Checkpoint), true);
  CHECK(with.hidden_left_out == 0);
  CHECK(names(with) == std::vector<std::string>{".cache/", "Data/", "runs/", ".hidden.vaelab", "A.VAELAB", "b.vaelab"});
}

TEST_CASE("file_listing: a missing, a plain file or an unreadable folder is reported, not thrown") {
  TempDir t("listing-errors");
  fill(t);
  const FolderListing missing = list_folder(t / "nowhere", file_filter(FileKind::Folder), false);
  CHECK(missing.entries.empty());
  CHECK(has(missing.error, "There is no folder"));
  const FolderListing file = list_folder(t / "notes.txt", file_filter(FileKind::Folder), false);
  CHECK(has(file.error, "is not a folder"));
  fs::create_directories(t / "locked" / "inside");
  fs::permissions(t / "locked", fs::perms::none);
  if (::geteuid() != 0) {  // root reads any folder
    const FolderListing locked = list_folder(t / "locked", file_filter(FileKind::Folder), false);
    CHECK(locked.entries.empty());
    CHECK(has(locked.error, "Cannot read"));
    CHECK(has(locked.error, "ermission denied"));
  }
  fs::permissions(t / "locked", fs::perms::owner_all);
  // The unreadable subfolder itself is still listed in its parent.
  CHECK(names(list_folder(t.path, file_filter(FileKind::Folder), false)) ==
        std::vector<std::string>{"Data/", "locked/", "runs/"});
}

TEST_CASE("file_listing: a link to a folder is listed as a folder, a dangling link is skipped") {
  TempDir t("listing-links");
  fs::create_directories(t / "real");
  fs::create_directory_symlink(t / "real", t / "alias");
  fs::create_symlink(t / "gone.vaelab", t / "dangling.vaelab");
  CHECK(names(list_folder(t.path, file_filter(FileKind::Checkpoint), false)) == std::vector<std::string>{"alias/", "real/"});
}

TEST_CASE("file_listing: filters compare suffixes without regard to case") {
  const FileFilter f = file_filter(FileKind::Data);
  CHECK(filter_accepts(f, "X.NPY"));
  CHECK(filter_accepts(f, "train-images.idx3-ubyte"));
  CHECK_FALSE(filter_accepts(f, "model.vaelab"));
  CHECK_FALSE(filter_accepts(file_filter(FileKind::Folder), "anything.npy"));
  CHECK_FALSE(filter_accepts(file_filter(FileKind::Png), "png"));
}

TEST_CASE("file_listing: recent paths keep the latest first, once each, up to the capacity") {
  RecentPaths r(3);
  r.remember("/a");
  r.remember("/b/./c");
  r.remember("/a");
  CHECK(r.paths() == std::vector<std::string>{"/a", "/b/c"});
  r.remember("/d");
  r.remember("/e");
  CHECK(r.paths() == std::vector<std::string>{"/e", "/d", "/a"});
  r.remember("/with\nbreak");
  r.remember("/with\x1b escape");
  r.remember("");
  CHECK(r.paths().size() == 3);
  CHECK(r.paths().front() == "/e");

  RecentPaths back(3);  // as the settings file gives them back: in order, duplicates and extras dropped
  for (const char* p : {"/e", "/tab\there", "/d", "/e", "/a", "/z"}) back.restore(p);
  CHECK(back.paths() == std::vector<std::string>{"/e", "/d", "/a"});
}

TEST_CASE("file_listing: recent paths offered are the existing ones that fit the filter") {
  TempDir t("listing-recent");
  fill(t);
  RecentPaths r;
  for (const char* name : {"gone.vaelab", "b.vaelab", "shot.png", "runs"}) r.remember(t / name);
  CHECK(r.existing_for(file_filter(FileKind::Checkpoint)) ==
        std::vector<std::string>{(t / "runs").string(), (t / "b.vaelab").string()});
  CHECK(r.existing_for(file_filter(FileKind::Png)) == std::vector<std::string>{(t / "runs").string(), (t / "shot.png").string()});
}

TEST_CASE("file_listing: a chooser starts in the field's folder, the file's folder or the nearest existing one") {
  TempDir t("listing-start");
  fill(t);
  CHECK(starting_folder(t / "runs", "/fallback") == t / "runs");
  CHECK(starting_folder(t / "b.vaelab", "/fallback") == t.path);
  CHECK(starting_folder(t / "not" / "yet" / "there.vaelab", "/fallback") == t.path);
  CHECK(starting_folder("", "/fallback") == "/fallback");
  CHECK(starting_folder("relative-nowhere", "/fallback") == "/fallback");
}
