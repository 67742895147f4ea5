// Help → "What am I looking at": one short page per panel (what the panel shows, what its terms
// mean here, what to try), in one window, opened from the Help menu or a panel's "(?)".
// Not the keyboard and mouse summary of the Help menu (app.cpp) nor the docs/ pages.
#pragma once
#include <string>
#include <vector>

namespace vaelab::app {

struct AppState;

struct HelpPage {
  const char* panel;  // the panel window's name (kWin…)
  const char* shows;  // what the panel shows
  const char* terms;  // what its numbers and words mean here
  const char* try_;   // what to try
};

// Every page, in the order the help window lists them.
const std::vector<HelpPage>& help_pages();
// The page of a panel window, or null.
const HelpPage* help_page(const std::string& panel);

struct HelpState {
  bool open = false;
  std::string page;  // the panel whose page shows (empty: the first)
};

// Opens the help window at `panel`'s page.
void open_help(AppState& state, const std::string& panel);
// The help window, when open (called once per frame from the app).
void draw_help(AppState& state);

}  // namespace vaelab::app
