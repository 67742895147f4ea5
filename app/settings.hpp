// Where the app keeps its files (XDG folders) and its settings file: ImGui's window layout plus a
// "[vaelab][prefs]" section with the app's own preferences, in one ini. A corrupt file is set
// aside with a warning and the app starts from defaults. Not the model's configuration.
#pragma once
#include <filesystem>
#include <string>

namespace vaelab::app {

struct AppState;

std::filesystem::path config_dir();     // $XDG_CONFIG_HOME/vaelab or ~/.config/vaelab
std::filesystem::path user_data_dir();  // $XDG_DATA_HOME/vaelab or ~/.local/share/vaelab

// Register the prefs handler with the current ImGui context (call once, before loading).
void install_settings_handler(AppState& state);
// Read file into ImGui and the prefs. Returns false (and a warning for the user) when the file is
// unreadable or corrupt; a missing file is not an error (returns false, empty warning).
bool load_settings(const std::filesystem::path& file, std::string& warning);
// Write the current layout and prefs atomically. Returns an error message, or empty on success.
std::string save_settings(const std::filesystem::path& file);

}  // namespace vaelab::app
