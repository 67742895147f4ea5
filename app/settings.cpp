// Settings: XDG folders, the prefs section of the ini (parsed line by line, unknown keys ignored,
// out-of-range values clamped with a warning, the file chooser's recent paths one per line),
// validation of the whole file before ImGui sees it, and atomic saving.
// Not a general config library.
#include "app/settings.hpp"

#include <imgui.h>
#include <imgui_internal.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

#include "app/app_state.hpp"
#include "app/flags/flags.hpp"
#include "core/atomic_file.hpp"

namespace vaelab::app {
namespace {

std::filesystem::path xdg(const char* var, const char* fallback) {
  const char* v = std::getenv(var);
  if (v && *v && std::filesystem::path(v).is_absolute()) return std::filesystem::path(v) / "vaelab";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home && *home ? home : ".") / fallback / "vaelab";
}

void* prefs_open(ImGuiContext*, ImGuiSettingsHandler*, const char* name) {
  return std::strcmp(name, "prefs") == 0 ? reinterpret_cast<void*>(1) : nullptr;
}

// The prefs handler's user data: where the values go, and what was refused while ImGui read the
// file (reported by load_settings as one warning).
struct PrefsReader {
  AppState* state = nullptr;
  std::vector<std::string> refused;  // "manifold_n=99 is out of range (3 to 30), using 30"
};
PrefsReader g_prefs_reader;

// A number from the file into `out`: an out-of-range one is clamped, text that is not a number
// leaves `out` as it is; both are noted for the warning.
template <class T>
void read_pref(const std::string& key, const std::string& text, T lo, T hi, T& out) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  auto& refused = g_prefs_reader.refused;
  std::ostringstream range;
  range << lo << " to " << hi;
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value != value) {
    refused.push_back(key + "=" + text + " is not a number from " + range.str() + ", ignored");
    return;
  }
  out = std::clamp(value, lo, hi);
  if (out != value) {
    std::ostringstream using_value;
    using_value << out;
    refused.push_back(key + "=" + text + " is out of range (" + range.str() + "), using " + using_value.str());
  }
}

// "panel Latent map=0.2500,0.0000,0.4000,0.5800": a panel's place as fractions of the work area.
constexpr std::string_view kPanelKey = "panel ";

void prefs_line(ImGuiContext*, ImGuiSettingsHandler* handler, void*, const char* line) {
  auto& s = *static_cast<PrefsReader*>(handler->UserData)->state;
  const char* eq = std::strchr(line, '=');
  if (!eq) return;
  const std::string key(line, eq);
  const std::string value(eq + 1);
  auto as_int = [&](int lo, int hi, int& out) { read_pref(key, value, lo, hi, out); };
  auto as_float = [&](float lo, float hi, float& out) { read_pref(key, value, lo, hi, out); };
  auto as_bool = [&](bool& out) {
    int b = out ? 1 : 0;
    read_pref(key, value, 0, 1, b);
    out = b != 0;
  };
  auto as_text = [&](char* out, std::size_t n) { std::snprintf(out, n, "%s", value.c_str()); };
  if (key == "colormap") as_int(0, 1, s.colormap);
  else if (key == "curves_log") as_bool(s.curves.log_y);
  else if (key == "curves_raw") as_bool(s.curves.show_raw);
  else if (key == "curves_robust") as_bool(s.curves.robust);
  else if (key == "smoothing") as_float(0.0f, 0.995f, s.curves.smoothing);
  else if (key == "manifold_n") as_int(3, 30, s.manifold.n);
  else if (key == "interp_frames") as_int(3, 16, s.interp.frames);
  else if (key == "point_px") as_float(1.0f, 12.0f, s.latent.point_px);
  else if (key == "decoder_range") as_float(1.0f, 6.0f, s.decoder.range);
  else if (key == "sort_by_kl") as_bool(s.decoder.sort_by_kl);
  else if (key == "file_path") as_text(s.training.file_path, sizeof s.training.file_path);
  else if (key == "data_path") as_text(s.training.data_path, sizeof s.training.data_path);
  else if (key == "follow_folder") as_text(s.follow.folder, sizeof s.follow.folder);
  else if (key == "recent_path") s.chooser.recent.restore(value);  // one line each, most recent first
  else if (key == "gap_open") as_bool(s.gap.open);
  else if (key == "gap_resolution") as_int(32, 512, s.gap.resolution);
  else if (key == "gap_zoom") as_bool(s.gap.zoom);
  else if (key == "autosave_minutes")
    as_int(static_cast<int>(flags::kAutosaveMinutes.lo), static_cast<int>(flags::kAutosaveMinutes.hi), s.autosave.saved_minutes);
  else if (key == "window_w") as_int(200, 16384, s.window_w);
  else if (key == "window_h") as_int(150, 16384, s.window_h);
  else if (key.starts_with(kPanelKey)) {
    if (const auto fractions = parse_fractions(value)) s.panel_fractions[key.substr(kPanelKey.size())] = *fractions;
    else g_prefs_reader.refused.push_back(key + "=" + value + " is not four fractions x,y,w,h of the window, ignored");
  }
}

void prefs_write(ImGuiContext*, ImGuiSettingsHandler* handler, ImGuiTextBuffer* out) {
  const auto& s = *static_cast<const PrefsReader*>(handler->UserData)->state;
  out->appendf("[%s][prefs]\n", handler->TypeName);
  out->appendf("colormap=%d\n", s.colormap);
  out->appendf("curves_log=%d\ncurves_raw=%d\ncurves_robust=%d\nsmoothing=%.4f\n", s.curves.log_y ? 1 : 0,
               s.curves.show_raw ? 1 : 0, s.curves.robust ? 1 : 0, static_cast<double>(s.curves.smoothing));
  out->appendf("manifold_n=%d\ninterp_frames=%d\n", s.manifold.n, s.interp.frames);
  out->appendf("point_px=%.1f\ndecoder_range=%.1f\nsort_by_kl=%d\n", static_cast<double>(s.latent.point_px),
               static_cast<double>(s.decoder.range), s.decoder.sort_by_kl ? 1 : 0);
  out->appendf("gap_open=%d\ngap_resolution=%d\ngap_zoom=%d\n", s.gap.open ? 1 : 0, s.gap.resolution, s.gap.zoom ? 1 : 0);
  out->appendf("file_path=%s\ndata_path=%s\n", s.training.file_path, s.training.data_path);
  if (s.follow.folder[0]) out->appendf("follow_folder=%s\n", s.follow.folder);
  for (const std::string& p : s.chooser.recent.paths()) out->appendf("recent_path=%s\n", p.c_str());
  out->appendf("autosave_minutes=%d\n", s.autosave.saved_minutes);  // never a one-launch --autosave-minutes
  if (s.window_w > 0 && s.window_h > 0) out->appendf("window_w=%d\nwindow_h=%d\n", s.window_w, s.window_h);
  for (const auto& [name, fractions] : s.panel_fractions)
    out->appendf("%s%s=%s\n", std::string(kPanelKey).c_str(), name.c_str(), format_fractions(fractions).c_str());
  out->append("\n");
}

// A plausible ini: text only, and every line empty, a comment, a [section][name] header or key=value.
bool plausible_ini(const std::string& text, std::string& why) {
  if (text.size() > (4u << 20)) {
    why = "larger than 4 MB";
    return false;
  }
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (unsigned char c : line)
      if (c < 0x20 && c != '\t') {
        why = "line " + std::to_string(n) + " holds binary data";
        return false;
      }
    if (line.empty() || line[0] == ';' || line[0] == '#') continue;
    if (line[0] == '[' ? line.back() != ']' : line.find('=') == std::string::npos) {
      why = "line " + std::to_string(n) + " is neither [section] nor key=value";
      return false;
    }
  }
  return true;
}

}  // namespace

std::filesystem::path config_dir() { return xdg("XDG_CONFIG_HOME", ".config"); }
std::filesystem::path user_data_dir() { return xdg("XDG_DATA_HOME", ".local/share"); }

void install_settings_handler(AppState& state) {
  ImGuiSettingsHandler h;
  h.TypeName = "vaelab";
  h.TypeHash = ImHashStr("vaelab");
  h.ReadOpenFn = prefs_open;
  h.ReadLineFn = prefs_line;
  h.WriteAllFn = prefs_write;
  g_prefs_reader.state = &state;
  h.UserData = &g_prefs_reader;
  ImGui::GetCurrentContext()->SettingsHandlers.push_back(h);
}

bool load_settings(const std::filesystem::path& file, std::string& warning) {
  warning.clear();
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return false;
  std::ifstream in(file, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (!in && !in.eof()) {
    warning = "Could not read the settings file " + file.string() + "; starting with the default layout.";
    return false;
  }
  const std::string text = buf.str();
  std::string why;
  if (!plausible_ini(text, why)) {
    std::filesystem::path aside = file;
    aside += ".corrupt";
    std::filesystem::rename(file, aside, ec);
    warning = "Ignored the settings file " + file.string() + " (" + why + "); starting with the default layout." +
              (ec ? std::string() : " The old file was kept as " + aside.string() + ".");
    return false;
  }
  g_prefs_reader.refused.clear();
  ImGui::LoadIniSettingsFromMemory(text.data(), text.size());
  if (!g_prefs_reader.refused.empty()) {
    warning = "In the settings file " + file.string() + ": ";
    for (std::size_t i = 0; i < g_prefs_reader.refused.size(); ++i) warning += (i ? "; " : "") + g_prefs_reader.refused[i];
    warning += ".";
  }
  return true;
}

std::string save_settings(const std::filesystem::path& file) {
  std::size_t size = 0;
  const char* text = ImGui::SaveIniSettingsToMemory(&size);
  try {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    write_file_atomically(file, text, size);
  } catch (const std::exception& e) {
    return e.what();
  }
  ImGui::GetIO().WantSaveIniSettings = false;
  return {};
}

}  // namespace vaelab::app
