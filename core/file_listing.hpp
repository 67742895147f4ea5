// Listing a folder for a file chooser: the entries that fit what is being chosen (folders first,
// then by name, hidden ones left out unless asked), a folder that cannot be read reported as such,
// and the short list of recently chosen paths the chooser offers.
// Not a user interface: the app's in-window chooser (app/file_chooser.cpp) draws what this returns.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace vaelab {

// What a chooser picks; each has its own filter.
enum class FileKind : std::uint8_t {
  Folder,       // any folder (a data folder, a run folder): no files listed
  Data,         // a data folder, or a data file: .npy, .npz, .gz, IDX files
  Checkpoint,   // *.vaelab
  Safetensors,  // *.safetensors
  Png,          // *.png
};

// Which files a chooser lists: folders always (to move through), files only with a suffix here.
struct FileFilter {
  std::string label;                  // "checkpoints (*.vaelab)"
  std::vector<std::string> suffixes;  // lower case, with the dot; empty: no files at all
  bool idx_names = false;             // also files named like IDX data (train-images-idx3-ubyte, …)
};

FileFilter file_filter(FileKind kind);

// Whether a file called `name` passes the filter (suffixes compared without regard to case).
bool filter_accepts(const FileFilter& filter, const std::string& name);

struct FolderEntry {
  std::string name;
  bool is_folder = false;
  std::uintmax_t size = 0;  // bytes; 0 for a folder
};

struct FolderListing {
  std::filesystem::path folder;
  std::vector<FolderEntry> entries;  // folders first, then files; each group by name
  int hidden_left_out = 0;           // entries starting with '.' not listed
  std::string error;                 // non-empty: the folder could not be read (why)
};

// The entries of `folder` that fit `filter`. Never throws: a folder that does not exist or cannot
// be read comes back empty with `error` saying so; an entry that cannot be examined is skipped.
FolderListing list_folder(const std::filesystem::path& folder, const FileFilter& filter, bool show_hidden);

// Recently chosen paths, most recent first, each once, at most `capacity` of them.
class RecentPaths {
 public:
  explicit RecentPaths(std::size_t capacity = 12) : capacity_(capacity) {}
  // Puts `path` first (moving it there when already present); a path holding a control character
  // (a line break, an escape) is ignored: the settings file stores one per line, as text.
  void remember(const std::filesystem::path& path);
  // Appends a path read back from the settings file, keeping the order they were saved in.
  void restore(const std::string& path);
  const std::vector<std::string>& paths() const { return paths_; }
  // The paths that still exist and fit `filter`: folders, and files the filter accepts.
  std::vector<std::string> existing_for(const FileFilter& filter) const;

 private:
  std::size_t capacity_;
  std::vector<std::string> paths_;
};

// The folder a chooser opens in for `current` (the path in a form's field): the folder itself,
// or the folder holding the file, or the nearest existing ancestor; `fallback` when none exists.
std::filesystem::path starting_folder(const std::filesystem::path& current, const std::filesystem::path& fallback);

}  // namespace vaelab
