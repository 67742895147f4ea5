// The app's file chooser: one modal for every path the app asks for (a data folder or file, a
// checkpoint to load or save, safetensors to import or export, a PNG export, a run folder to
// follow), with a folder listing, parent / home / recent buttons, a path field, a filter per
// purpose and the recent paths kept in the settings; what is chosen is acted on here.
// Not the listing itself (core/file_listing) nor what the actions do (app.cpp, the trainer).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/file_listing.hpp"

namespace vaelab::app {

struct AppState;

// What the chooser was opened for: its title, filter, button and action.
enum class ChooserPurpose : std::uint8_t {
  OpenData,           // File → Open data…, the "…" beside the data field: reads it
  LoadCheckpoint,     // File → Load checkpoint…
  SaveCheckpointAs,   // File → Save checkpoint as…
  CheckpointPath,     // the "…" beside the checkpoint field: only fills the field
  ImportSafetensors,  // File → Import safetensors…
  ExportSafetensors,  // File → Export safetensors…
  ExportPng,          // a panel's PNG button
  FollowRun,          // File → Follow a run…
};

// A panel's image waiting for the PNG export's file name.
struct PendingPng {
  std::vector<float> values;  // channels planes of height × width (1: through the colour map; 3: RGB)
  int channels = 1, width = 0, height = 0, colormap = 0;
};

struct FileChooserState {
  ChooserPurpose purpose = ChooserPurpose::OpenData;
  bool open_requested = false;       // open the modal next frame
  bool shown = false;                // the modal was drawn in the last frame
  std::filesystem::path folder;      // the folder listed
  char path[1024] = "";              // the path field: Enter goes to a folder or chooses a file
  char name[256] = "";               // the file name, when saving
  bool show_hidden = false;
  FolderListing listing;
  bool listing_stale = true;         // list `folder` again before drawing
  int selected = -1;                 // index into listing.entries
  RecentPaths recent;                // kept in the settings file (recent_path=…)
  PendingPng png;                    // ExportPng: the image to write
  std::string note;                  // why the last Enter or choice did nothing
};

// Opens the chooser for `purpose`, starting where `current` is (a field's path; empty: the
// data folder of the app). For saving, `suggested_name` fills the file name.
void open_file_chooser(AppState& state, ChooserPurpose purpose, const std::filesystem::path& current,
                       const std::string& suggested_name = {});
// The modal, when open (called once per frame from the app, outside other windows).
void draw_file_chooser(AppState& state);
// The title of the chooser's modal for a purpose ("Open data", …).
const char* chooser_title(ChooserPurpose purpose);

}  // namespace vaelab::app
