// The folder listing, filters and recent paths of file_listing.hpp, on std::filesystem with error
// codes only (a chooser must survive any folder). Not the chooser's drawing (app/file_chooser.cpp).
#include "core/file_listing.hpp"

#include <algorithm>
#include <cctype>

namespace vaelab {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "train-images-idx3-ubyte", "t10k-labels.idx1-ubyte", … (gzipped ones end in .gz, listed anyway).
// A path the settings file can hold on one line of text: no control characters.
bool storable(const std::string& p) {
  return !p.empty() && std::none_of(p.begin(), p.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; });
}

bool looks_like_idx_name(const std::string& lower_name) {
  return lower_name.find("idx1-ubyte") != std::string::npos || lower_name.find("idx3-ubyte") != std::string::npos;
}

}  // namespace

FileFilter file_filter(FileKind kind) {
  switch (kind) {
    case FileKind::Folder: return {"folders", {}, false};
    case FileKind::Data: return {"data (folders, *.npy, *.npz, *.gz, IDX files)", {".npy", ".npz", ".gz"}, true};
    case FileKind::Checkpoint: return {"checkpoints (*.vaelab)", {".vaelab"}, false};
    case FileKind::Safetensors: return {"weights (*.safetensors)", {".safetensors"}, false};
    case FileKind::Png: return {"images (*.png)", {".png"}, false};
  }
  return {};
}

bool filter_accepts(const FileFilter& filter, const std::string& name) {
  const std::string n = lower(name);
  if (filter.idx_names && looks_like_idx_name(n)) return true;
  return std::any_of(filter.suffixes.begin(), filter.suffixes.end(), [&](const std::string& s) { return ends_with(n, s); });
}

FolderListing list_folder(const std::filesystem::path& folder, const FileFilter& filter, bool show_hidden) {
  namespace fs = std::filesystem;
  FolderListing out;
  out.folder = folder;
  std::error_code ec;
  const auto status = fs::status(folder, ec);
  if (!fs::exists(status)) {
    out.error = "There is no folder " + folder.string() + ".";
    return out;
  }
  if (!fs::is_directory(status)) {
    out.error = folder.string() + " is not a folder.";
    return out;
  }
  fs::directory_iterator it(folder, ec);  // not skip_permission_denied: that lists a locked folder as empty
  if (ec) {
    out.error = "Cannot read " + folder.string() + ": " + ec.message() + ".";
    return out;
  }
  for (const fs::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) {
      out.error = "Stopped reading " + folder.string() + ": " + ec.message() + ".";
      break;
    }
    const std::string name = it->path().filename().string();
    if (!show_hidden && !name.empty() && name[0] == '.') {
      ++out.hidden_left_out;
      continue;
    }
    std::error_code entry_ec;
    const bool is_folder = it->is_directory(entry_ec);  // follows links: a link to a folder is a folder
    if (entry_ec) continue;
    if (!is_folder && !filter_accepts(filter, name)) continue;
    std::uintmax_t size = 0;
    if (!is_folder) {
      size = it->file_size(entry_ec);
      if (entry_ec) size = 0;
    }
    out.entries.push_back(FolderEntry{name, is_folder, size});
  }
  std::sort(out.entries.begin(), out.entries.end(), [](const FolderEntry& a, const FolderEntry& b) {
    if (a.is_folder != b.is_folder) return a.is_folder;
    const std::string la = lower(a.name), lb = lower(b.name);
    return la != lb ? la < lb : a.name < b.name;
  });
  return out;
}

void RecentPaths::remember(const std::filesystem::path& path) {
  const std::string p = path.lexically_normal().string();
  if (!storable(p)) return;
  std::erase(paths_, p);
  paths_.insert(paths_.begin(), p);
  if (paths_.size() > capacity_) paths_.resize(capacity_);
}

void RecentPaths::restore(const std::string& path) {
  if (!storable(path) || paths_.size() >= capacity_) return;
  if (std::find(paths_.begin(), paths_.end(), path) == paths_.end()) paths_.push_back(path);
}

std::vector<std::string> RecentPaths::existing_for(const FileFilter& filter) const {
  std::vector<std::string> out;
  for (const std::string& p : paths_) {
    std::error_code ec;
    const auto status = std::filesystem::status(p, ec);
    if (std::filesystem::is_directory(status) ||
        (std::filesystem::exists(status) && filter_accepts(filter, std::filesystem::path(p).filename().string())))
      out.push_back(p);
  }
  return out;
}

std::filesystem::path starting_folder(const std::filesystem::path& current, const std::filesystem::path& fallback) {
  std::error_code ec;
  for (std::filesystem::path p = current.lexically_normal(); !p.empty(); p = p.parent_path()) {
    if (std::filesystem::is_directory(p, ec)) return p;
    if (p == p.parent_path()) break;
  }
  return fallback;
}

}  // namespace vaelab
