// The in-window file chooser of file_chooser.hpp: an ImGui modal over core/file_listing, and the
// action each purpose takes on the path chosen. Not the listing rules (core/file_listing.cpp).
#include "app/file_chooser.hpp"

#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "app/image_export.hpp"
#include "app/panels.hpp"

namespace vaelab::app {
namespace {

constexpr const char* kPopupId = "###file_chooser";

struct PurposeInfo {
  const char* title;
  const char* button;
  FileKind kind;
  bool saving;  // a new file name may be typed
};

PurposeInfo info(ChooserPurpose p) {
  switch (p) {
    case ChooserPurpose::OpenData: return {"Open data", "Open", FileKind::Data, false};
    case ChooserPurpose::LoadCheckpoint: return {"Load checkpoint", "Load", FileKind::Checkpoint, false};
    case ChooserPurpose::SaveCheckpointAs: return {"Save checkpoint as", "Save", FileKind::Checkpoint, true};
    case ChooserPurpose::CheckpointPath: return {"Checkpoint file", "Use", FileKind::Checkpoint, true};
    case ChooserPurpose::ImportSafetensors: return {"Import safetensors", "Import", FileKind::Safetensors, false};
    case ChooserPurpose::ExportSafetensors: return {"Export safetensors", "Export", FileKind::Safetensors, true};
    case ChooserPurpose::ExportPng: return {"Export PNG", "Save", FileKind::Png, true};
    case ChooserPurpose::FollowRun: return {"Follow a run", "Follow", FileKind::Folder, false};
  }
  return {"Choose", "Choose", FileKind::Folder, false};
}

std::filesystem::path home_folder() {
  const char* home = std::getenv("HOME");
  return home && *home ? std::filesystem::path(home) : std::filesystem::path("/");
}

// The suffix a typed name gets when it has none of the filter's ("run" → "run.vaelab").
std::filesystem::path with_suffix(std::filesystem::path p, FileKind kind) {
  const FileFilter filter = file_filter(kind);
  if (!filter.suffixes.empty() && !filter_accepts(filter, p.filename().string())) p += filter.suffixes.front();
  return p;
}

void go_to(FileChooserState& c, const std::filesystem::path& folder) {
  c.folder = folder.lexically_normal();
  if (c.folder.has_filename() == false && c.folder != c.folder.root_path()) c.folder = c.folder.parent_path();
  std::snprintf(c.path, sizeof c.path, "%s", c.folder.c_str());
  c.listing_stale = true;
  c.selected = -1;
  c.note.clear();
}

// Does what the purpose says with `chosen`; remembers it among the recent paths (data once it
// has been read: app.cpp).
void act(AppState& s, ChooserPurpose purpose, const std::filesystem::path& chosen) {
  FileChooserState& c = s.chooser;
  if (purpose != ChooserPurpose::OpenData) {
    c.recent.remember(chosen);
    ImGui::GetIO().WantSaveIniSettings = true;  // the recent paths are saved with the settings
  }
  auto set_checkpoint_field = [&] {
    std::snprintf(s.training.file_path, sizeof s.training.file_path, "%s", chosen.c_str());
  };
  switch (purpose) {
    case ChooserPurpose::OpenData:
    case ChooserPurpose::LoadCheckpoint:
    case ChooserPurpose::ImportSafetensors: open_path(s, chosen); break;
    case ChooserPurpose::SaveCheckpointAs:
      set_checkpoint_field();
      if (s.trainer) save_checkpoint(s, chosen);
      break;
    case ChooserPurpose::CheckpointPath: set_checkpoint_field(); break;
    case ChooserPurpose::ExportSafetensors:
      if (s.trainer) s.trainer->export_safetensors(chosen);
      break;
    case ChooserPurpose::ExportPng:
      try {
        write_image_png(chosen, c.png.values, c.png.channels, c.png.width, c.png.height, c.png.colormap);
        s.post(Severity::Info, "Saved " + chosen.string());
      } catch (const std::exception& e) {
        s.post(Severity::Error, std::string("PNG export failed: ") + e.what());
      }
      c.png = {};
      break;
    case ChooserPurpose::FollowRun: follow_run(s, chosen); break;
  }
}

// What the main button would choose now, or empty when nothing fits (with `why`).
std::filesystem::path current_choice(const FileChooserState& c, std::string& why) {
  const PurposeInfo pi = info(c.purpose);
  const FolderEntry* sel = c.selected >= 0 && c.selected < static_cast<int>(c.listing.entries.size())
                               ? &c.listing.entries[static_cast<std::size_t>(c.selected)]
                               : nullptr;
  if (pi.saving) {
    if (!c.name[0]) {
      why = "Type a file name.";
      return {};
    }
    return with_suffix(c.folder / c.name, pi.kind);
  }
  if (pi.kind == FileKind::Folder || pi.kind == FileKind::Data) {
    if (sel) return c.folder / sel->name;
    if (!c.listing.error.empty()) {
      why = c.listing.error;
      return {};
    }
    return c.folder;  // the folder listed
  }
  if (sel && !sel->is_folder) return c.folder / sel->name;
  why = "Select a file.";
  return {};
}

// The path field's Enter: a folder is listed; a file that fits is chosen (returned).
std::filesystem::path enter_path(FileChooserState& c) {
  const std::filesystem::path typed = std::filesystem::path(c.path).lexically_normal();
  std::error_code ec;
  if (std::filesystem::is_directory(typed, ec)) {
    go_to(c, typed);
    return {};
  }
  const PurposeInfo pi = info(c.purpose);
  if (pi.saving && std::filesystem::is_directory(typed.parent_path(), ec)) {
    const std::filesystem::path file = with_suffix(typed, pi.kind);
    if (!std::filesystem::exists(file, ec)) return file;
    go_to(c, file.parent_path());  // an existing file is replaced only by the Replace button
    std::snprintf(c.name, sizeof c.name, "%s", file.filename().c_str());
    return {};
  }
  if (std::filesystem::exists(typed, ec) && filter_accepts(file_filter(pi.kind), typed.filename().string())) return typed;
  c.note = std::filesystem::exists(typed, ec) ? typed.string() + " is not " + file_filter(pi.kind).label + "."
                                              : "There is no " + typed.string() + ".";
  return {};
}

std::string size_text(std::uintmax_t bytes) {
  char buf[32];
  if (bytes < 1024) std::snprintf(buf, sizeof buf, "%ju B", bytes);
  else if (bytes < (1u << 20)) std::snprintf(buf, sizeof buf, "%.1f kB", static_cast<double>(bytes) / 1024.0);
  else if (bytes < (1u << 30)) std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / (1u << 20));
  else std::snprintf(buf, sizeof buf, "%.1f GB", static_cast<double>(bytes) / (1u << 30));
  return buf;
}

// Parent, home and recent buttons, and the path field. Returns a path chosen by Enter.
std::filesystem::path draw_navigation(AppState& s) {
  FileChooserState& c = s.chooser;
  const PurposeInfo pi = info(c.purpose);
  if (ImGui::Button("Up") && c.folder.has_parent_path()) go_to(c, c.folder.parent_path());
  s.note_rect("chooser_up");
  if (ImGui::IsItemHovered()) ImGui::SetTooltip("The folder above");
  ImGui::SameLine();
  if (ImGui::Button("Home")) go_to(c, home_folder());
  ImGui::SameLine();
  const std::vector<std::string> recent = c.recent.existing_for(file_filter(pi.kind));
  ImGui::BeginDisabled(recent.empty());
  if (ImGui::Button("Recent")) ImGui::OpenPopup("recent_paths");
  ImGui::EndDisabled();
  std::filesystem::path chosen;
  if (ImGui::BeginPopup("recent_paths")) {
    for (const std::string& p : recent) {
      if (!ImGui::Selectable(p.c_str())) continue;
      std::error_code ec;
      const bool folder = std::filesystem::is_directory(p, ec);
      if (folder && pi.kind != FileKind::Folder && pi.kind != FileKind::Data) go_to(c, p);
      else if (folder && !pi.saving) chosen = p;
      else if (folder) go_to(c, p);
      else if (pi.saving) {
        go_to(c, std::filesystem::path(p).parent_path());
        std::snprintf(c.name, sizeof c.name, "%s", std::filesystem::path(p).filename().c_str());
      } else chosen = p;
    }
    ImGui::EndPopup();
  }
  ImGui::SameLine();
  ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x);
  const bool enter = ImGui::InputTextWithHint("##chooser_path", "a folder, or a file", c.path, sizeof c.path,
                                              ImGuiInputTextFlags_EnterReturnsTrue | ImGuiInputTextFlags_AutoSelectAll);
  s.note_rect("chooser_path");
  if (enter && c.path[0]) {
    const std::filesystem::path typed = enter_path(c);
    if (!typed.empty()) chosen = typed;
  }
  return chosen;
}

// The listing; a double-click enters a folder or chooses a file. Returns a path so chosen.
std::filesystem::path draw_listing(AppState& s, float height) {
  FileChooserState& c = s.chooser;
  const PurposeInfo pi = info(c.purpose);
  std::filesystem::path chosen, enter;
  ImGui::BeginChild("##chooser_listing", ImVec2(0, height), true);
  if (!c.listing.error.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, kWarningColour);
    ImGui::TextWrapped("%s", c.listing.error.c_str());
    ImGui::PopStyleColor();
  } else if (c.listing.entries.empty()) {
    ImGui::TextDisabled("(nothing here fits: %s)", file_filter(pi.kind).label.c_str());
  }
  const float size_x = ImGui::GetContentRegionAvail().x - ImGui::GetFontSize() * 5;
  ImGuiListClipper clipper;  // a folder of 50,000 images draws only the rows in view
  clipper.Begin(static_cast<int>(c.listing.entries.size()));
  while (clipper.Step()) {
    for (int row = clipper.DisplayStart; row < clipper.DisplayEnd; ++row) {
      const FolderEntry& e = c.listing.entries[static_cast<std::size_t>(row)];
      const std::string label = e.is_folder ? e.name + "/" : e.name;
      ImGui::PushID(row);
      if (ImGui::Selectable(label.c_str(), c.selected == row, ImGuiSelectableFlags_AllowDoubleClick)) {
        c.selected = row;
        c.note.clear();
        if (pi.saving && !e.is_folder) std::snprintf(c.name, sizeof c.name, "%s", e.name.c_str());
        if (ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left)) {
          if (e.is_folder) enter = c.folder / e.name;
          else chosen = c.folder / e.name;
        }
      }
      s.note_rect(rect_name("chooser_entry_", e.name).c_str());
      if (!e.is_folder) {
        ImGui::SameLine(std::max(size_x, ImGui::GetCursorPosX()));
        ImGui::TextDisabled("%s", size_text(e.size).c_str());
      }
      ImGui::PopID();
    }
  }
  ImGui::EndChild();
  if (!enter.empty()) go_to(c, enter);
  return chosen;
}

}  // namespace

const char* chooser_title(ChooserPurpose purpose) { return info(purpose).title; }

void open_file_chooser(AppState& s, ChooserPurpose purpose, const std::filesystem::path& current,
                       const std::string& suggested_name) {
  FileChooserState& c = s.chooser;
  c.purpose = purpose;
  c.open_requested = true;
  const std::filesystem::path fallback = s.training.data_path[0] ? starting_folder(s.training.data_path, home_folder())
                                                                  : home_folder();
  std::error_code ec;
  const bool is_folder = std::filesystem::is_directory(current, ec);
  // A data folder or run folder given as `current` opens in the folder above it, with it selected.
  const bool pick_folder = info(purpose).kind == FileKind::Folder || info(purpose).kind == FileKind::Data;
  go_to(c, is_folder && pick_folder && current.has_parent_path() ? current.parent_path() : starting_folder(current, fallback));
  std::snprintf(c.name, sizeof c.name, "%s", suggested_name.c_str());
  if (suggested_name.empty() && info(purpose).saving && !current.empty() && !is_folder)
    std::snprintf(c.name, sizeof c.name, "%s", current.filename().c_str());
  if (is_folder && pick_folder) {  // selected once listed
    c.listing = list_folder(c.folder, file_filter(info(purpose).kind), c.show_hidden);
    c.listing_stale = false;
    const std::string name = current.lexically_normal().filename().string();
    for (std::size_t i = 0; i < c.listing.entries.size(); ++i)
      if (c.listing.entries[i].name == name) c.selected = static_cast<int>(i);
  }
}

void draw_file_chooser(AppState& s) {
  FileChooserState& c = s.chooser;
  const PurposeInfo pi = info(c.purpose);
  const std::string popup = std::string(pi.title) + kPopupId;
  if (c.open_requested) {
    ImGui::OpenPopup(popup.c_str());
    c.open_requested = false;
  }
  place_dialog(ImVec2(44, 34), ImVec2(0.9f, 0.85f), 0.5f);
  const float em = ImGui::GetFontSize();
  c.shown = ImGui::BeginPopupModal(popup.c_str(), nullptr, ImGuiWindowFlags_NoSavedSettings);
  if (!c.shown) return;
  s.note_rect("chooser_window");
  if (c.listing_stale) {  // after moving or toggling hidden files: nothing selected
    c.listing = list_folder(c.folder, file_filter(pi.kind), c.show_hidden);
    c.listing_stale = false;
    c.selected = -1;
  }
  std::filesystem::path chosen = draw_navigation(s);

  ImGui::TextDisabled("%s", file_filter(pi.kind).label.c_str());
  ImGui::SameLine();
  if (ImGui::Checkbox("hidden files", &c.show_hidden)) c.listing_stale = true;
  if (c.listing.hidden_left_out > 0 && ImGui::IsItemHovered())
    ImGui::SetTooltip("%d hidden entries here", c.listing.hidden_left_out);

  const float footer = ImGui::GetFrameHeightWithSpacing() * (pi.saving ? 3.0f : 2.0f) + ImGui::GetTextLineHeightWithSpacing();
  const std::filesystem::path listed = draw_listing(s, std::max(em * 4, ImGui::GetContentRegionAvail().y - footer));
  if (chosen.empty()) chosen = listed;

  if (pi.saving) {
    ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x);
    if (ImGui::InputTextWithHint("##chooser_name", "file name", c.name, sizeof c.name, ImGuiInputTextFlags_EnterReturnsTrue)) {
      std::string why;
      const std::filesystem::path typed = current_choice(c, why);
      std::error_code ec;
      if (!typed.empty() && std::filesystem::exists(typed, ec)) c.note = typed.filename().string() + " exists: Replace replaces it.";
      else chosen = typed, c.note = why;
    }
    s.note_rect("chooser_name");
  }
  std::string why;
  const std::filesystem::path would = current_choice(c, why);
  std::error_code ec;
  const bool replaces = pi.saving && !would.empty() && std::filesystem::exists(would, ec);
  if (!c.note.empty()) ImGui::TextColored(kWarningColour, "%s", c.note.c_str());
  else if (replaces) ImGui::TextColored(kWarningColour, "%s exists: it will be replaced.", would.filename().c_str());
  else ImGui::TextDisabled("%s", would.empty() ? why.c_str() : would.c_str());

  const float bw = em * 7;
  ImGui::BeginDisabled(would.empty());
  if (ImGui::Button(replaces ? "Replace" : pi.button, ImVec2(bw, 0))) chosen = would;
  ImGui::EndDisabled();
  s.note_rect("chooser_choose");
  ImGui::SameLine();
  bool close = false;
  if (ImGui::Button("Cancel", ImVec2(bw, 0)) || ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape))) close = true;
  s.note_rect("chooser_cancel");
  if (!chosen.empty()) {
    close = true;
    act(s, c.purpose, chosen);
  }
  if (close) {
    if (c.purpose == ChooserPurpose::ExportPng) c.png = {};
    ImGui::CloseCurrentPopup();
  }
  ImGui::EndPopup();
}

}  // namespace vaelab::app
