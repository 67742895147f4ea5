// App: one frame of the desktop program — takes the trainer's snapshot, places the panel windows
// (as fractions of the window: the default tiling, or where the user put them, rescaled with it),
// draws the menu bar, panels and messages, handles shortcuts, drops (asking first when a run would
// be lost) and background data loading (its progress and Cancel), the autosave and its resume
// offer, the Follow a run dialog, the file chooser and help windows, and the screenshot test hook.
// Not the window or the frame loop (main.cpp) and not any panel's contents (panel_*.cpp).
#pragma once
#include <filesystem>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "app/app_state.hpp"

namespace vaelab::app {

class App {
 public:
  explicit App(AppState& state);  // starts reading the data; the trainer follows when it's ready
  ~App();                         // stops and joins the trainer
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Build the ImGui frame (between ImGui::NewFrame and ImGui::Render).
  void frame();
  // After rendering, before the swap: write requested screenshots (reads the back buffer).
  void after_render(int fb_w, int fb_h);
  void request_screenshot() { ++screenshots_requested_; }
  // Paths dropped on the window (GLFW drop callback).
  void on_drop(const std::vector<std::string>& paths);
  // A key press from GLFW's callback (shortcuts: Space, Ctrl+S, Ctrl+Q, F12).
  void on_key(int key, int mods);
  bool quit_requested() const { return s_.quit; }
  // Called when the frame loop is about to end: stops training and writes the exit autosave. False
  // when that failed: the window must stay open, showing why with "Save elsewhere", "Retry" and
  // "Quit without saving", until one of them lets it close. `forced` (--quit-after, a second quit
  // signal) reports the failure on stderr and returns true.
  void note_state_before_stop();
  bool ready_to_exit(bool forced);
  // The run was not saved on exit and the user did not choose to quit without saving it.
  bool exit_unsaved() const { return !s_.autosave.exit_error.empty(); }
  // Whether something visible changed since the last frame without user input: a new training
  // step or weights, new codes or log lines, data arriving, an animation, a screenshot request.
  bool wants_frame();

 private:
  void poll_data_loading();
  bool start_trainer(std::shared_ptr<const Dataset> data);  // true when options.load was opened
  void collect_trainer_errors();
  void menu_bar();
  void messages();
  void layout(float top);
  // Before a panel window's Begin: its size limits, and its place from the fractions when the
  // work area changed, on first use or on Reset layout. After Begin: a panel the user moved or
  // resized keeps its new place as fractions.
  void place_panel(const char* window);
  void remember_panel_place(const char* window);
  void manifold_and_gap(const Snapshot& snap);  // the tab bar of kWinManifoldGap
  void write_ready_file();
  void write_panel_places(std::ostream& info) const;  // for the screenshot hook's state dump
  bool following() const;  // the trainer follows a run folder (no autosave, no local controls)
  void follow_dialog();    // File → Follow a run…: the folder and Follow / Cancel
  void drop_confirmation();  // a drop that would replace a trained run: Save first / Open / Cancel
  void loading_banner();     // while data is read: how far, and Cancel
  // Autosave: look for one at launch, the resume modal, acting on its answer once the data is
  // read, the periodic save and the one on exit.
  void find_autosave();
  void resume_offer();
  void offer_row(int i);
  void start_fresh();
  void settle_offer();
  void autosave_tick();
  // The exit autosave; returns why it failed ("" when it was written or not needed).
  std::string autosave_on_exit();
  void exit_dialog();  // the exit autosave failed: save elsewhere, retry or quit without saving
  // Keeps an autosave holding more training than `step` before it is replaced, saying where;
  // false (and a warning) when it could not be kept: then no autosave is written.
  bool keep_longer_autosave_or_say(std::int64_t step);

  AppState& s_;
  int screenshots_requested_ = 0;
  int screenshots_written_ = 0;
  bool ready_written_ = false;
  std::uint64_t drawn_key_ = 0;  // visual_key() of the snapshot last drawn
  float menu_height_ = 0;
  Box work_area_, placed_area_;           // the window below the menu bar: now, and when last placed
  bool place_all_ = false;                // this frame every panel is placed from its fractions
  bool area_usable_ = false;              // the work area is large enough to place panels in (not minimised)
  std::map<std::string, Box> placed_;     // each panel's rectangle as last placed or seen (pixels)
  bool gap_tab_shown_ = false;            // the gap's tab was the one drawn last frame
};

}  // namespace vaelab::app
