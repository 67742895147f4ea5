// vaelab: the desktop explorer. Reads the flags, the settings file, opens the GLFW window with an
// OpenGL 3.3 core context, sets up Dear ImGui (font, style) and runs the frame loop: poll → build
// the frame (App) → render → swap, with a frame cap when the swap does not wait for vsync.
// Not the flags (app/flags/), the panels (panel_*.cpp) nor the per-frame logic (app.cpp).
#include <glad/gl.h>
// glad first: GLFW must not pull in the system GL header.
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "app/app.hpp"
#include "app/frame_cache.hpp"
#include "app/gl_image.hpp"
#include "app/settings.hpp"
#include "core/error.hpp"
#include "app/flags/flags.hpp"

namespace {

using vaelab::app::Options;

volatile std::sig_atomic_t g_quit_signal = 0;
// Bumped by every GLFW input callback: the loop draws while the user does something.
unsigned long g_input_events = 0;
volatile std::sig_atomic_t g_screenshot_signal = 0;
volatile std::sig_atomic_t g_drop_signal = 0;

void on_signal(int sig) {
  if (sig == SIGUSR1) g_screenshot_signal = g_screenshot_signal + 1;
  else if (sig == SIGUSR2) g_drop_signal = 1;
  else g_quit_signal = 1;
}

// Reads the flags (see app/flags/table.cpp) into the app's options. --help prints the usage and exits
// 0; a bad flag or setting prints why and exits 2, before any window opens.
Options parse_command_line(int argc, char** argv) {
  using vaelab::flags::Program;
  vaelab::flags::CommandLine c;
  try {
    c = vaelab::flags::parse(Program::App, std::vector<std::string>(argv + 1, argv + argc));
    // Two training threads where there are two cores: faster training than one, and the
    // software rasteriser still gets in while the pool waits.
    if (!c.was_given("--threads")) c.train.threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 2);
    vaelab::validate(c.train);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab: %s\nTry 'vaelab --help'.\n", e.what());
    std::exit(2);
  }
  if (c.help) {
    std::fputs(vaelab::flags::usage(Program::App, vaelab::flags::developer_flags_wanted()).c_str(), stdout);
    std::exit(0);
  }
  Options o;
  o.data = c.data;
  o.data_options = c.data_options;
  o.load = c.load;
  o.model = c.model;
  o.train = c.train;
  o.trainer.eval_iwae_k = c.iwae_k;
  o.trainer.iwae_points = c.iwae_points;
  o.trainer.train_limit = c.train_limit;
  o.trainer.display_points = c.display_points;
  o.trainer.start_paused = c.paused;
  o.trainer.measure_estimators = c.measure_estimators;
  o.trainer.poison_at_step = c.poison_at_step;
  o.no_resume = c.no_resume;
  o.autosave_minutes = c.autosave_minutes;
  o.width = c.width;
  o.height = c.height;
  o.size_given = c.was_given("--size");
  o.screenshot_dir = c.screenshot_dir;
  o.drop_list = c.drop_list;
  o.frame_stats = c.frame_stats;
  o.quit_after_s = c.quit_after_s;
  o.fps_cap = c.fps_cap;
  o.vsync = !c.no_vsync;
  o.full_redraw = c.full_redraw;
  o.trainer_nice = c.trainer_nice;
  o.watch_fps = c.watch_fps;
  o.follow = c.follow;
  return o;
}

double percentile(std::vector<float> v, double q) {
  if (v.empty()) return 0;
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

void report_frame_stats(const Options& o, const vaelab::app::FrameStats& st) {
  // Skip the first frames: shader compiles and data loading are not steady state.
  const std::size_t skip = std::min<std::size_t>(30, st.work_ms.size() / 4);
  const std::vector<float> work(st.work_ms.begin() + static_cast<long>(skip), st.work_ms.end());
  const std::vector<float> interval(st.interval_ms.begin() + static_cast<long>(skip), st.interval_ms.end());
  std::fprintf(stderr,
               "vaelab: %zu frames; frame work median %.2f ms, p95 %.2f ms, max %.2f ms; frame interval median %.2f ms, "
               "p95 %.2f ms\n",
               work.size(), percentile(work, 0.5), percentile(work, 0.95),
               work.empty() ? 0.0 : *std::max_element(work.begin(), work.end()), percentile(interval, 0.5),
               percentile(interval, 0.95));
  std::fprintf(stderr, "vaelab: last frame %d vertices, %d indices\n", ImGui::GetIO().MetricsRenderVertices,
               ImGui::GetIO().MetricsRenderIndices);
  auto tail = [&](const std::vector<float>& v) { return std::vector<float>(v.begin() + static_cast<long>(skip), v.end()); };
  std::fprintf(stderr, "vaelab: median build %.2f ms, render %.2f ms, swap %.2f ms; redrawn share of the window median %.2f, p95 %.2f\n",
               percentile(tail(st.build_ms), 0.5), percentile(tail(st.render_ms), 0.5), percentile(tail(st.swap_ms), 0.5),
               percentile(tail(st.damaged), 0.5), percentile(tail(st.damaged), 0.95));
  if (o.frame_stats.empty()) return;
  std::ofstream out(o.frame_stats);
  out << "frame,work_ms,build_ms,render_ms,swap_ms,interval_ms,redrawn,events\n";
  for (std::size_t i = 0; i < st.work_ms.size(); ++i)
    out << i << ',' << st.work_ms[i] << ',' << st.build_ms[i] << ',' << st.render_ms[i] << ',' << st.swap_ms[i] << ','
        << st.interval_ms[i] << ',' << st.damaged[i] << ',' << (i < st.events.size() ? st.events[i] : "") << '\n';
  if (!out) std::fprintf(stderr, "vaelab: could not write %s\n", o.frame_stats.c_str());
}

void setup_style(float scale) {
  ImGui::StyleColorsDark();
  ImGuiStyle& st = ImGui::GetStyle();
  st.WindowRounding = 5;
  st.ChildRounding = 4;
  st.FrameRounding = 3;
  st.GrabRounding = 3;
  st.PopupRounding = 4;
  st.ScrollbarRounding = 6;
  st.TabRounding = 4;
  st.WindowPadding = ImVec2(8, 7);
  st.FramePadding = ImVec2(6, 3);
  st.ItemSpacing = ImVec2(7, 5);
  st.WindowTitleAlign = ImVec2(0.0f, 0.5f);
  ImVec4* c = st.Colors;
  c[ImGuiCol_WindowBg] = ImVec4(0.105f, 0.110f, 0.125f, 1.0f);
  c[ImGuiCol_ChildBg] = ImVec4(0, 0, 0, 0);  // not drawn: software GL pays for every layer
  c[ImGuiCol_PopupBg] = ImVec4(0.12f, 0.125f, 0.145f, 0.97f);
  c[ImGuiCol_TitleBg] = ImVec4(0.13f, 0.14f, 0.17f, 1.0f);
  c[ImGuiCol_TitleBgActive] = ImVec4(0.17f, 0.22f, 0.32f, 1.0f);
  c[ImGuiCol_FrameBg] = ImVec4(0.17f, 0.18f, 0.21f, 1.0f);
  c[ImGuiCol_FrameBgHovered] = ImVec4(0.22f, 0.25f, 0.31f, 1.0f);
  c[ImGuiCol_FrameBgActive] = ImVec4(0.25f, 0.30f, 0.40f, 1.0f);
  c[ImGuiCol_MenuBarBg] = ImVec4(0.13f, 0.135f, 0.155f, 1.0f);
  c[ImGuiCol_Border] = ImVec4(0.28f, 0.29f, 0.33f, 0.6f);
  // Slider handles: a narrow, half-transparent bar, so the value drawn over it stays readable.
  st.GrabMinSize = 5;
  c[ImGuiCol_SliderGrab] = ImVec4(0.26f, 0.59f, 0.98f, 0.45f);
  c[ImGuiCol_SliderGrabActive] = ImVec4(0.26f, 0.59f, 0.98f, 0.75f);
  st.ScaleAllSizes(scale);
}

void load_fonts(float scale) {
  ImGuiIO& io = ImGui::GetIO();
  const char* candidates[] = {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"};
  // Latin-1, Greek (β, σ, Φ), punctuation (…, ‖), super/subscripts (⁻¹), arrows, maths (−, ≤).
  static const ImWchar ranges[] = {0x0020, 0x00FF, 0x0370, 0x03FF, 0x2010, 0x205E, 0x2070, 0x209F,
                                   0x2190, 0x21FF, 0x2200, 0x22FF, 0x25A0, 0x25FF, 0};
  for (const char* path : candidates) {
    if (std::ifstream(path).good() && io.Fonts->AddFontFromFileTTF(path, std::round(15.0f * scale), nullptr, ranges)) return;
  }
  std::fprintf(stderr, "vaelab: DejaVu Sans not found (package fonts-dejavu-core); using ImGui's built-in font\n");
  ImFontConfig cfg;
  cfg.SizePixels = std::round(13.0f * scale);
  io.Fonts->AddFontDefault(&cfg);
}

// Input callbacks set before ImGui's backend installs its own (which chain to these), so they
// only note that something happened.
void note_cursor(GLFWwindow*, double, double) { ++g_input_events; }
void note_button(GLFWwindow*, int, int, int) { ++g_input_events; }
void note_scroll(GLFWwindow*, double, double) { ++g_input_events; }
// ImGui 1.86 has no input queue: it samples io.KeysDown once per frame, so a key pressed and
// released between two frames (a quick tap while a frame takes long, or xdotool) is lost. Keys
// released in the same batch of events they were pressed in are held down for one more frame.
std::vector<int> g_pressed_keys, g_released_keys, g_held_keys;

void set_modifiers(ImGuiIO& io) {
  io.KeyCtrl = io.KeysDown[GLFW_KEY_LEFT_CONTROL] || io.KeysDown[GLFW_KEY_RIGHT_CONTROL];
  io.KeyShift = io.KeysDown[GLFW_KEY_LEFT_SHIFT] || io.KeysDown[GLFW_KEY_RIGHT_SHIFT];
  io.KeyAlt = io.KeysDown[GLFW_KEY_LEFT_ALT] || io.KeysDown[GLFW_KEY_RIGHT_ALT];
  io.KeySuper = io.KeysDown[GLFW_KEY_LEFT_SUPER] || io.KeysDown[GLFW_KEY_RIGHT_SUPER];
}

void hold_tapped_keys() {  // after polling events, before ImGui::NewFrame
  ImGuiIO& io = ImGui::GetIO();
  for (int key : g_released_keys)
    if (key >= 0 && key < IM_ARRAYSIZE(io.KeysDown) &&
        std::find(g_pressed_keys.begin(), g_pressed_keys.end(), key) != g_pressed_keys.end()) {
      io.KeysDown[key] = true;
      g_held_keys.push_back(key);
    }
  if (!g_held_keys.empty()) set_modifiers(io);
  g_pressed_keys.clear();
  g_released_keys.clear();
}

void release_held_keys() {  // after the frame
  if (g_held_keys.empty()) return;
  ImGuiIO& io = ImGui::GetIO();
  for (int key : g_held_keys) io.KeysDown[key] = false;
  set_modifiers(io);
  g_held_keys.clear();
}

void note_key(GLFWwindow* window, int key, int, int action, int mods) {
  ++g_input_events;
  if (action == GLFW_PRESS) g_pressed_keys.push_back(key);
  if (action == GLFW_RELEASE) g_released_keys.push_back(key);
  auto* app = static_cast<vaelab::app::App*>(glfwGetWindowUserPointer(window));
  if (app && action == GLFW_PRESS) app->on_key(key, mods);
}
void note_char(GLFWwindow*, unsigned int) { ++g_input_events; }
void note_size(GLFWwindow*, int, int) { ++g_input_events; }
void note_refresh(GLFWwindow*) { ++g_input_events; }
void note_focus(GLFWwindow*, int) { ++g_input_events; }

void on_drop(GLFWwindow* window, int count, const char** paths) {
  auto* app = static_cast<vaelab::app::App*>(glfwGetWindowUserPointer(window));
  if (!app) return;
  std::vector<std::string> list(paths, paths + count);
  app->on_drop(list);
}

using Clock = std::chrono::steady_clock;

// The --drop-list test hook: the listed paths go where a drag and drop's would.
void drop_from_list(const Options& options, vaelab::app::App& app) {
  std::ifstream in(options.drop_list);
  std::vector<std::string> paths;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) paths.push_back(line);
  if (paths.empty()) std::fprintf(stderr, "vaelab: --drop-list %s holds no path\n", options.drop_list.c_str());
  else app.on_drop(paths);
}

void install_signal_handlers(const Options& options) {
  std::signal(SIGUSR1, on_signal);
  if (!options.drop_list.empty()) std::signal(SIGUSR2, on_signal);  // otherwise SIGUSR2 keeps its default
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGHUP, on_signal);  // the terminal closed: quit with the exit autosave, as for SIGTERM
}

std::filesystem::path settings_file(const vaelab::app::AppState& state) { return state.config_dir / "vaelab.ini"; }

// The ImGui context and the app's state: its folders and the settings file (layout and prefs),
// read before any window opens. A warning about the file goes to stderr and the app's messages.
std::unique_ptr<vaelab::app::AppState> create_state(const Options& options) {
  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGui::GetIO().IniFilename = nullptr;  // loaded and saved by settings.cpp (validated, atomic)
  auto state = std::make_unique<vaelab::app::AppState>();
  state->options = options;
  state->config_dir = vaelab::app::config_dir();
  state->data_dir = vaelab::app::user_data_dir();
  state->export_dir = state->data_dir / "exports";
  vaelab::app::install_settings_handler(*state);
  std::string warning;
  vaelab::app::load_settings(settings_file(*state), warning);
  // --autosave-minutes holds for this launch only; the ini keeps the saved preference.
  auto& autosave = state->autosave;
  autosave.minutes = options.autosave_minutes >= 0 ? options.autosave_minutes : autosave.saved_minutes;
  if (autosave.minutes == 0) {
    const std::string off = options.autosave_minutes == 0
                                ? "Autosave is off for this launch (--autosave-minutes 0): nothing is saved on exit."
                                : "Autosave is off (autosave_minutes=0 in " + settings_file(*state).string() +
                                      "): nothing is saved on exit.";
    std::fprintf(stderr, "vaelab: warning: %s\n", off.c_str());
    state->post(vaelab::Severity::Warning, off);
  }
  if (!warning.empty()) {
    std::fprintf(stderr, "vaelab: warning: %s\n", warning.c_str());
    state->post(vaelab::Severity::Warning, warning);
  }
  return state;
}

// A window larger than the screen (a saved 16384×150, or --size) cannot be seen whole nor moved
// back: it is made to fit the primary monitor's work area (the screen less the desktop's panels),
// with a warning.
void fit_to_screen(int& width, int& height, vaelab::app::AppState& state) {
  GLFWmonitor* monitor = glfwGetPrimaryMonitor();
  const GLFWvidmode* mode = monitor ? glfwGetVideoMode(monitor) : nullptr;
  if (!mode) return;
  int area_x = 0, area_y = 0, area_w = 0, area_h = 0;
  glfwGetMonitorWorkarea(monitor, &area_x, &area_y, &area_w, &area_h);
  if (area_w <= 0 || area_h <= 0) area_w = mode->width, area_h = mode->height;
  if (width <= area_w && height <= area_h) return;
  const std::string warning = "The window size " + std::to_string(width) + "×" + std::to_string(height) +
                              " is larger than the screen (" + std::to_string(area_w) + "×" +
                              std::to_string(area_h) + " free of the desktop's panels); the window was made to fit.";
  width = std::min(width, area_w);
  height = std::min(height, area_h);
  std::fprintf(stderr, "vaelab: warning: %s\n", warning.c_str());
  state.post(vaelab::Severity::Warning, warning);
}

// GLFW and an OpenGL 3.3 core window of the size asked for (or the last one used, fitted to the
// screen), its context current. nullptr, after a message, when there is no display or no OpenGL 3.3.
GLFWwindow* open_window(const Options& options, vaelab::app::AppState& state) {
  glfwSetErrorCallback([](int code, const char* text) { std::fprintf(stderr, "vaelab: GLFW error %d: %s\n", code, text); });
  if (!glfwInit()) {
    std::fprintf(stderr, "vaelab: cannot open a window (no display? set DISPLAY, or use vaelab-train for headless training)\n");
    return nullptr;
  }
  int width = options.width, height = options.height;
  if (!options.size_given && state.window_w > 0 && state.window_h > 0) {
    width = state.window_w;
    height = state.window_h;
  }
  fit_to_screen(width, height, state);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
  glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
  glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
  GLFWwindow* window = glfwCreateWindow(width, height, "vaelab", nullptr, nullptr);
  if (!window) {
    std::fprintf(stderr, "vaelab: could not create an OpenGL 3.3 window\n");
    glfwTerminate();
    return nullptr;
  }
  glfwMakeContextCurrent(window);
  if (!gladLoadGL(glfwGetProcAddress)) {
    std::fprintf(stderr, "vaelab: could not load the OpenGL functions\n");
    glfwDestroyWindow(window);
    glfwTerminate();
    return nullptr;
  }
  glfwSwapInterval(options.vsync ? 1 : 0);
  return window;
}

// Dear ImGui on the window: style and font at the window's content scale, the input callbacks
// (set before the backend's, which chain to them) and the GLFW and OpenGL 3 backends.
void init_imgui(GLFWwindow* window) {
  float xscale = 1, yscale = 1;
  glfwGetWindowContentScale(window, &xscale, &yscale);
  const float scale = std::clamp(std::max(xscale, yscale), 1.0f, 3.0f);
  setup_style(scale);
  load_fonts(scale);
  glfwSetCursorPosCallback(window, note_cursor);
  glfwSetMouseButtonCallback(window, note_button);
  glfwSetScrollCallback(window, note_scroll);
  glfwSetKeyCallback(window, note_key);
  glfwSetCharCallback(window, note_char);
  glfwSetWindowSizeCallback(window, note_size);
  glfwSetWindowRefreshCallback(window, note_refresh);
  glfwSetWindowFocusCallback(window, note_focus);
  ImGui_ImplGlfw_InitForOpenGL(window, true);
  ImGui_ImplOpenGL3_Init("#version 330 core");
}

// Frames are drawn on demand: while the user does something (and a moment after, for ImGui's
// hover and popup states), when the trainer publishes something visible (about 20 times a
// second while training), and at least twice a second. Otherwise the loop sleeps in
// glfwWaitEventsTimeout, so watching training costs a fraction of a core.
class FramePacer {
 public:
  explicit FramePacer(const Options& options)
      : options_(options),
        // Watching (no input), new snapshots are drawn at most --watch-fps times a second: each
        // frame costs software GL a share of the cores the trainer would otherwise have.
        watch_interval_(options.watch_fps > 0 ? 1000000 / options.watch_fps : 0) {}

  bool should_draw(GLFWwindow* window, const vaelab::app::AppState& state, vaelab::app::App& app) {
    const auto now = Clock::now();
    if (g_input_events != input_seen_) {
      input_seen_ = g_input_events;
      last_input_ = now;
    }
    return glfwWindowShouldClose(window) || g_quit_signal || state.quit || g_screenshot_signal || g_drop_signal ||
           options_.fps_cap == 0 || now - last_input_ < std::chrono::milliseconds(600) ||
           now - last_start_ > std::chrono::milliseconds(500) ||
           time_is_up(now) || (app.wants_frame() && now - last_start_ >= watch_interval_);
  }
  // --quit-after S has passed.
  bool time_is_up(Clock::time_point now) const {
    return options_.quit_after_s > 0 && std::chrono::duration<double>(now - started_).count() >= options_.quit_after_s;
  }
  // A frame starts now; returns the time since the last one started (ms).
  float start_frame(Clock::time_point t0) {
    const float interval = std::chrono::duration<float, std::milli>(t0 - last_start_).count();
    last_start_ = t0;
    return interval;
  }
  double seconds_since_start(Clock::time_point t) const { return std::chrono::duration<double>(t - started_).count(); }
  // Frame cap: under Xvfb (or with vsync off) the swap returns at once; don't spin a core.
  void wait_for_cap(Clock::time_point t0) const {
    if (options_.fps_cap > 0) std::this_thread::sleep_until(t0 + std::chrono::microseconds(1000000 / options_.fps_cap));
  }

 private:
  const Options& options_;
  const Clock::time_point started_ = Clock::now();
  Clock::time_point last_start_ = started_;
  Clock::time_point last_input_ = started_ - std::chrono::seconds(10);
  const std::chrono::microseconds watch_interval_;
  unsigned long input_seen_ = g_input_events;
};

// When each part of a frame ended.
struct FrameTimes {
  Clock::time_point start, built, rendered, swapped;  // swapped: without the screenshot's time
  int fb_w = 0, fb_h = 0;
};

// One frame: build it (App), render it (whole or only what changed), take a requested
// screenshot, swap.
FrameTimes draw_frame(GLFWwindow* window, const Options& options, vaelab::app::App& app,
                      vaelab::app::FrameCache& frame_cache) {
  FrameTimes t;
  t.start = Clock::now();
  if (g_screenshot_signal) {
    g_screenshot_signal = 0;
    app.request_screenshot();
  }
  if (g_drop_signal) {
    g_drop_signal = 0;
    drop_from_list(options, app);
  }
  hold_tapped_keys();
  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  ImGui::NewFrame();
  app.frame();
  ImGui::Render();
  release_held_keys();
  t.built = Clock::now();
  glfwGetFramebufferSize(window, &t.fb_w, &t.fb_h);
  const ImVec4 bg = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];  // panels that overlap nothing skip theirs
  if (options.full_redraw) {
    glViewport(0, 0, t.fb_w, t.fb_h);
    glClearColor(bg.x, bg.y, bg.z, 1.0f);
    glClear(GL_COLOR_BUFFER_BIT);
    ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
  } else {
    frame_cache.render(ImGui::GetDrawData(), t.fb_w, t.fb_h, bg);  // only the panels that changed
  }
  t.rendered = Clock::now();
  // Screenshots (test hook, F12) read the back buffer and encode PNGs: kept out of the timings.
  app.after_render(t.fb_w, t.fb_h);
  const auto shot_done = Clock::now();
  glfwSwapBuffers(window);
  t.swapped = Clock::now() - (shot_done - t.rendered);
  return t;
}

// The frame's times and events into the stats, and the training rate seen this frame.
void record_frame(vaelab::app::AppState& state, const vaelab::app::FrameCache& frame_cache, const FrameTimes& t,
                  float interval_ms, double now_s) {
  auto ms = [](Clock::duration d) { return std::chrono::duration<float, std::milli>(d).count(); };
  auto& st = state.stats;
  st.work_ms.push_back(ms(t.swapped - t.start));
  st.events.push_back(std::move(state.frame_events));
  state.frame_events.clear();
  st.damaged.push_back(state.options.full_redraw ? 1.0f : frame_cache.damaged_fraction());
  st.cache_direct = frame_cache.in_back_buffer();
  st.build_ms.push_back(ms(t.built - t.start));
  st.render_ms.push_back(ms(t.rendered - t.built));
  st.swap_ms.push_back(ms(t.swapped - t.rendered));  // shot excluded
  st.interval_ms.push_back(interval_ms);
  st.recent.push_back(now_s);
  std::erase_if(st.recent, [&](double when) { return when < now_s - 1.0; });
  st.fps = static_cast<double>(st.recent.size());
  if (state.snap && state.snap->step > 0) {
    if (st.train_t0 < 0) st.train_t0 = now_s, st.train_step0 = state.snap->step;
    st.train_t1 = now_s, st.train_step1 = state.snap->step;
    if (state.snap->state == vaelab::TrainerState::Running && state.snap->samples_per_s > 0)
      st.train_rate.push_back(static_cast<float>(state.snap->samples_per_s));
  }
}

void save_settings_or_warn(const std::filesystem::path& ini) {
  const std::string err = vaelab::app::save_settings(ini);
  if (!err.empty()) std::fprintf(stderr, "vaelab: could not save settings: %s\n", err.c_str());
}

// Polls, draws when there is something to show, records each frame; until the window closes,
// the app quits, a signal arrives or --quit-after has passed. Then the exit autosave: when it fails
// the window stays open (App::ready_to_exit) and the loop goes on until the app's exit dialog lets
// it close; a second signal, or --quit-after, closes it regardless.
void run_frame_loop(GLFWwindow* window, vaelab::app::AppState& state, vaelab::app::App& app) {
  const Options& options = state.options;
  vaelab::app::FrameCache frame_cache;
  if (!options.full_redraw) {
    int fb_w = 0, fb_h = 0;
    glfwGetFramebufferSize(window, &fb_w, &fb_h);
    frame_cache.probe_back_buffer([&] { glfwSwapBuffers(window); }, fb_w, fb_h, ImGui::GetStyle().Colors[ImGuiCol_WindowBg]);
  }
  FramePacer pacer(options);
  int quit_signals = 0;
  for (;;) {
    bool time_up = false;
    while (!glfwWindowShouldClose(window) && !state.quit && !g_quit_signal) {
      glfwPollEvents();
      while (!pacer.should_draw(window, state, app)) glfwWaitEventsTimeout(0.02);
      const FrameTimes t = draw_frame(window, options, app, frame_cache);
      glfwGetWindowSize(window, &state.window_w, &state.window_h);
      if (ImGui::GetIO().WantSaveIniSettings) save_settings_or_warn(settings_file(state));
      const float interval = pacer.start_frame(t.start);
      record_frame(state, frame_cache, t, interval, pacer.seconds_since_start(t.start));
      if ((time_up = pacer.time_is_up(t.swapped))) break;
      pacer.wait_for_cap(t.start);
    }
    if (g_quit_signal) ++quit_signals;
    if (app.ready_to_exit(time_up || quit_signals > 1)) return;
    glfwSetWindowShouldClose(window, GLFW_FALSE);  // the exit dialog decides
    g_quit_signal = 0;
  }
}

// Two figures: the trainer's own (time inside training steps, median over the frames,
// comparable with vaelab-train --bench-steps) and the wall-clock rate, which also pays for the
// epoch-end evaluations and the latent map's re-encoding.
void report_training_rate(const vaelab::app::AppState& state) {
  if (!state.snap) return;
  const auto& st = state.stats;
  const double wall = st.train_t1 > st.train_t0 ? static_cast<double>(st.train_step1 - st.train_step0) *
                                                      state.snap->train_config.batch / (st.train_t1 - st.train_t0)
                                                : 0.0;
  std::fprintf(stderr,
               "vaelab: training at exit: step %lld, %d threads; in steps %.0f samples/s (median over the run), "
               "wall %.0f samples/s\n",
               static_cast<long long>(state.snap->step), state.snap->train_config.threads,
               percentile(st.train_rate, 0.5), wall);
}

// The app in the open window: runs the frame loop, then reports and saves the settings. Returns
// the exit code (1 after an error the app could not show).
int run_app(GLFWwindow* window, vaelab::app::AppState& state) {
  try {
    vaelab::app::gl_images_init(ImGui::GetStyle().Colors[ImGuiCol_WindowBg]);
    vaelab::app::App app(state);
    glfwSetWindowUserPointer(window, &app);
    glfwSetDropCallback(window, on_drop);
    run_frame_loop(window, state, app);
    glfwSetWindowUserPointer(window, nullptr);
    report_training_rate(state);
    save_settings_or_warn(settings_file(state));
    return app.exit_unsaved() ? 1 : 0;  // closed by force with the run unsaved
  } catch (const std::exception& e) {
    glfwSetWindowUserPointer(window, nullptr);
    std::fprintf(stderr, "vaelab: %s\n", e.what());
    return 1;
  }
}

void report_redraw_mode(const Options& options, const vaelab::app::FrameStats& stats) {
  if (options.frame_stats.empty()) return;
  std::fprintf(stderr, "vaelab: redraw %s\n", options.full_redraw ? "of the whole window each frame (--full-redraw)"
                                            : stats.cache_direct ? "of what changed, in the preserved back buffer"
                                                                 : "of what changed, in an off-screen cache");
}

// GL objects go while the context is alive, then ImGui, the window and GLFW.
void shut_down(GLFWwindow* window, std::unique_ptr<vaelab::app::AppState> state) {
  state.reset();
  vaelab::app::gl_images_shutdown();
  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  glfwDestroyWindow(window);
  glfwTerminate();
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_command_line(argc, argv);
  install_signal_handlers(options);
  std::unique_ptr<vaelab::app::AppState> state = create_state(options);
  GLFWwindow* window = open_window(options, *state);
  if (!window) {
    ImGui::DestroyContext();
    return 1;
  }
  init_imgui(window);
  const int rc = run_app(window, *state);
  report_frame_stats(options, state->stats);
  report_redraw_mode(options, state->stats);
  shut_down(window, std::move(state));
  return rc;
}
