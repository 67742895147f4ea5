// vaelab: the desktop explorer. Parses the command line, opens the GLFW window with an OpenGL 3.3
// core context, sets up Dear ImGui (font, style, settings file) and runs the frame loop: poll →
// build the frame (App) → render → swap, with a frame cap when the swap does not wait for vsync.
// Not the panels (panel_*.cpp) nor the per-frame logic (app.cpp).
#include <glad/gl.h>
// glad first: GLFW must not pull in the system GL header.
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_impl_glfw.h>
#include <imgui_impl_opengl3.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "app/app.hpp"
#include "app/frame_cache.hpp"
#include "app/gl_image.hpp"
#include "app/settings.hpp"
#include "core/error.hpp"

namespace {

using vaelab::app::Options;

volatile std::sig_atomic_t g_quit_signal = 0;
// Bumped by every GLFW input callback: the loop draws while the user does something.
unsigned long g_input_events = 0;
volatile std::sig_atomic_t g_screenshot_signal = 0;

void on_signal(int sig) {
  if (sig == SIGUSR1) g_screenshot_signal = g_screenshot_signal + 1;
  else g_quit_signal = 1;
}

constexpr const char* kUsage = R"(usage: vaelab [options]

Interactive explorer for variational autoencoders. Opens a window on Fashion-MNIST
(or --data DIR) with a 2-D model already training.

  --data DIR           folder with {train,t10k}-images-idx3-ubyte[.gz] (and labels)
  --load FILE          open a checkpoint (or a .safetensors file) at start
  --latent N           latent size (default 2)
  --hidden LIST        encoder widths, e.g. 400 or 512,256 (default 400)
  --likelihood NAME    bernoulli | gaussian | gaussian-learned (default bernoulli)
  --sigma S            decoder σ for --likelihood gaussian (default 0.1)
  --binarize MODE      none | static | dynamic (default none)
  --batch N            batch size (default 128)
  --lr X               learning rate (default 1e-3)
  --beta X             KL weight β (default 1)
  --warmup N           KL warm-up steps (default 0)
  --samples L          Monte-Carlo samples of z per image (default 1)
  --seed N             random seed (default 1)
  --threads N          training threads (default 2, or 1 on a single core)
  --model NAME         mlp | conv | gmvae (clustering VAE) (default mlp)
  --clusters K         categories of the clustering VAE (default 10)
  --train-limit N      train on the first N images only (demos, tests)
  --display-points N   test images shown on the latent map (default 10000)
  --paused             start paused
  --no-resume          do not offer to resume the autosave (it is kept until the next one)
  --autosave-minutes M autosave the run every M minutes and on exit (default 5, or the
                       last value set in the app; 0: off)
  --iwae K             IWAE_K at each epoch end for the gap panel (default 100; 0: off)
  --iwae-points N      …on the first N test images (default 500)
  --measure-estimators measure both encoder gradient estimators' variance each epoch
  --size WxH           window size in pixels (default 1280x800, or the last size used)
  --screenshot-dir DIR test hook: F12 or SIGUSR1 writes shot-NNN-{window,decoder}.png and
                       shot-NNN.txt (widget rectangles) here; DIR/ready appears once the
                       first latent codes are drawn
  --frame-stats FILE   write per-frame times (CSV) to FILE; a summary goes to stderr at exit
  --poison-at-step N   test hook: the trainer writes a NaN into a weight before step N
  --quit-after S       close by itself after S seconds
  --fps-cap N          frame limit when the swap does not wait for vsync (default 60; 0: none)
  --no-vsync           do not ask for vsync
  --full-redraw        redraw the whole window every frame (default: only what changed)
  --trainer-nice N     the training threads' nice value above the UI's (default 5; 0: same)
  --watch-fps N        redraws per second for new training snapshots without input (default 10;
                       input always redraws at up to --fps-cap)
  --help               this text

Settings and window layout: $XDG_CONFIG_HOME/vaelab/vaelab.ini (~/.config/vaelab).
Checkpoints, exports and the autosave: $XDG_DATA_HOME/vaelab (~/.local/share/vaelab).
)";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "vaelab: %s\nTry 'vaelab --help'.\n", msg.c_str());
  std::exit(2);
}

long parse_int(const std::string& flag, const std::string& v, long lo, long hi) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo || x > hi)
    usage_error(flag + " wants a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", not '" + v + "'");
  return x;
}

double parse_real(const std::string& flag, const std::string& v, double lo, double hi) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(x >= lo && x <= hi)) {
    char range[64];  // %g: "1e-08 to 10", where std::to_string said "0.000000 to 10.000000"
    std::snprintf(range, sizeof range, "%g to %g", lo, hi);
    usage_error(flag + " wants a number from " + range + ", not '" + v + "'");
  }
  return x;
}

Options parse_args(int argc, char** argv) {
  Options o;
  // Measured on a 2-core machine under Xvfb/llvmpipe: 2 training threads trained ~1.5x faster
  // than 1 *and* gave lower UI frame times (the pool's waits let the rasteriser threads in).
  o.train.threads = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 2);
  // The variational gap panel wants IWAE_K at epoch ends: K = 100 on 500 test images costs
  // 50,000 decodes per epoch, a small fraction of an epoch of training.
  o.trainer.eval_iwae_k = 100;
  o.trainer.iwae_points = 500;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--data") o.data = value();
    else if (a == "--load") o.load = value();
    else if (a == "--latent") o.model.latent = static_cast<int>(parse_int(a, value(), 1, 256));
    else if (a == "--hidden") {
      std::string v = value();
      std::replace(v.begin(), v.end(), ',', ' ');
      std::istringstream in(v);
      o.model.hidden.clear();
      std::string w;
      while (in >> w) o.model.hidden.push_back(static_cast<int>(parse_int("--hidden", w, 1, 65536)));
    } else if (a == "--likelihood") {
      try {
        o.model.likelihood = vaelab::parse_likelihood(value());
      } catch (const std::exception& e) {
        usage_error(e.what());
      }
    } else if (a == "--model" || a == "--family") {
      try {
        o.model.family = vaelab::parse_family(value());
      } catch (const std::exception& e) {
        usage_error(e.what());
      }
    } else if (a == "--sigma") o.model.gaussian_sigma = static_cast<float>(parse_real(a, value(), 1e-6, 1e6));
    else if (a == "--binarize") {
      try {
        o.train.binarize = vaelab::parse_binarize(value());
      } catch (const std::exception& e) {
        usage_error(e.what());
      }
    } else if (a == "--clusters") o.model.clusters = static_cast<int>(parse_int(a, value(), 1, 1000));
    else if (a == "--poison-at-step") o.trainer.poison_at_step = parse_int(a, value(), 0, 1L << 62);
    else if (a == "--batch") o.train.batch = static_cast<int>(parse_int(a, value(), 1, 1 << 16));
    else if (a == "--lr") o.train.lr = static_cast<float>(parse_real(a, value(), 1e-8, 10));
    else if (a == "--beta") o.train.beta = static_cast<float>(parse_real(a, value(), 0, 1000));
    else if (a == "--warmup") o.train.warmup_steps = static_cast<int>(parse_int(a, value(), 0, 1 << 30));
    else if (a == "--samples") o.train.samples = static_cast<int>(parse_int(a, value(), 1, 1024));
    else if (a == "--seed") o.train.seed = static_cast<std::uint64_t>(parse_int(a, value(), 0, 1L << 62));
    else if (a == "--threads") o.train.threads = static_cast<int>(parse_int(a, value(), 1, 256));
    else if (a == "--train-limit") o.trainer.train_limit = static_cast<int>(parse_int(a, value(), 0, 1 << 30));
    else if (a == "--display-points") o.trainer.display_points = static_cast<int>(parse_int(a, value(), 0, 1 << 24));
    else if (a == "--paused") o.trainer.start_paused = true;
    else if (a == "--no-resume") o.no_resume = true;
    else if (a == "--autosave-minutes") o.autosave_minutes = static_cast<int>(parse_int(a, value(), 0, 120));
    else if (a == "--iwae") o.trainer.eval_iwae_k = static_cast<int>(parse_int(a, value(), 0, 5000));
    else if (a == "--iwae-points") o.trainer.iwae_points = static_cast<int>(parse_int(a, value(), 1, 1 << 24));
    else if (a == "--measure-estimators") o.trainer.measure_estimators = true;
    else if (a == "--size") {
      const std::string v = value();
      int w = 0, h = 0;
      char x = 0;
      std::istringstream in(v);
      if (!(in >> w >> x >> h) || (x != 'x' && x != 'X') || w < 320 || h < 240 || w > 16384 || h > 16384)
        usage_error("--size wants WIDTHxHEIGHT, e.g. 1280x800, not '" + v + "'");
      o.width = w;
      o.height = h;
      o.size_given = true;
    } else if (a == "--screenshot-dir") o.screenshot_dir = value();
    else if (a == "--frame-stats") o.frame_stats = value();
    else if (a == "--quit-after") o.quit_after_s = parse_real(a, value(), 0, 1e7);
    else if (a == "--fps-cap") o.fps_cap = static_cast<int>(parse_int(a, value(), 0, 1000));
    else if (a == "--no-vsync") o.vsync = false;
    else if (a == "--full-redraw") o.full_redraw = true;
    else if (a == "--watch-fps") o.watch_fps = static_cast<int>(parse_int(a, value(), 1, 1000));
    else if (a == "--trainer-nice") o.trainer_nice = static_cast<int>(parse_int(a, value(), 0, 19));
    else usage_error("unknown option '" + a + "'");
  }
  try {
    vaelab::validate(o.train);
  } catch (const std::exception& e) {
    usage_error(e.what());
  }
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

}  // namespace

int main(int argc, char** argv) {
  Options options = parse_args(argc, argv);
  std::signal(SIGUSR1, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);

  glfwSetErrorCallback([](int code, const char* text) { std::fprintf(stderr, "vaelab: GLFW error %d: %s\n", code, text); });
  if (!glfwInit()) {
    std::fprintf(stderr, "vaelab: cannot open a window (no display? set DISPLAY, or use vaelab-train for headless training)\n");
    return 1;
  }

  IMGUI_CHECKVERSION();
  ImGui::CreateContext();
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;  // loaded and saved by settings.cpp (validated, atomic)
  auto state = std::make_unique<vaelab::app::AppState>();
  state->options = options;
  state->config_dir = vaelab::app::config_dir();
  state->data_dir = vaelab::app::user_data_dir();
  state->export_dir = state->data_dir / "exports";
  const std::filesystem::path ini = state->config_dir / "vaelab.ini";
  vaelab::app::install_settings_handler(*state);
  std::string warning;
  vaelab::app::load_settings(ini, warning);
  if (options.autosave_minutes >= 0) state->autosave.minutes = options.autosave_minutes;
  if (!warning.empty()) {
    std::fprintf(stderr, "vaelab: warning: %s\n", warning.c_str());
    state->post(vaelab::Severity::Warning, warning);
  }

  int width = options.width, height = options.height;
  if (!options.size_given && state->window_w > 0 && state->window_h > 0) {
    width = state->window_w;
    height = state->window_h;
  }
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
  glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
  glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
  GLFWwindow* window = glfwCreateWindow(width, height, "vaelab", nullptr, nullptr);
  if (!window) {
    std::fprintf(stderr, "vaelab: could not create an OpenGL 3.3 window\n");
    ImGui::DestroyContext();
    glfwTerminate();
    return 1;
  }
  glfwMakeContextCurrent(window);
  if (!gladLoadGL(glfwGetProcAddress)) {
    std::fprintf(stderr, "vaelab: could not load the OpenGL functions\n");
    return 1;
  }
  glfwSwapInterval(options.vsync ? 1 : 0);

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

  int rc = 0;
  try {
    vaelab::app::gl_images_init(ImGui::GetStyle().Colors[ImGuiCol_WindowBg]);
    vaelab::app::App app(*state);
    glfwSetWindowUserPointer(window, &app);
    glfwSetDropCallback(window, on_drop);

    vaelab::app::FrameCache frame_cache;
    if (!options.full_redraw) {
      int fb_w = 0, fb_h = 0;
      glfwGetFramebufferSize(window, &fb_w, &fb_h);
      frame_cache.probe_back_buffer([&] { glfwSwapBuffers(window); }, fb_w, fb_h, ImGui::GetStyle().Colors[ImGuiCol_WindowBg]);
    }
    using clock = std::chrono::steady_clock;
    const auto started = clock::now();
    auto last_start = clock::now();
    // Frames are drawn on demand: while the user does something (and a moment after, for ImGui's
    // hover and popup states), when the trainer publishes something visible (about 20 times a
    // second while training), and at least twice a second. Otherwise the loop sleeps in
    // glfwWaitEventsTimeout, so watching training costs a fraction of a core.
    auto last_input_time = clock::now() - std::chrono::seconds(10);
    // Watching (no input), new snapshots are drawn at most --watch-fps times a second: each
    // frame costs software GL a share of the cores the trainer would otherwise have.
    const auto watch_interval = std::chrono::microseconds(options.watch_fps > 0 ? 1000000 / options.watch_fps : 0);
    unsigned long input_seen = g_input_events;
    auto should_draw = [&] {
      const auto now = clock::now();
      if (g_input_events != input_seen) {
        input_seen = g_input_events;
        last_input_time = now;
      }
      return glfwWindowShouldClose(window) || g_quit_signal || state->quit || g_screenshot_signal || options.fps_cap == 0 ||
             now - last_input_time < std::chrono::milliseconds(600) || now - last_start > std::chrono::milliseconds(500) ||
             (options.quit_after_s > 0 && std::chrono::duration<double>(now - started).count() >= options.quit_after_s) ||
             (app.wants_frame() && now - last_start >= watch_interval);
    };
    while (!glfwWindowShouldClose(window) && !state->quit && !g_quit_signal) {
      glfwPollEvents();
      while (!should_draw()) glfwWaitEventsTimeout(0.02);
      const auto t0 = clock::now();
      if (g_screenshot_signal) {
        g_screenshot_signal = 0;
        app.request_screenshot();
      }
      hold_tapped_keys();
      ImGui_ImplOpenGL3_NewFrame();
      ImGui_ImplGlfw_NewFrame();
      ImGui::NewFrame();
      app.frame();
      ImGui::Render();
      release_held_keys();
      const auto t_built = clock::now();
      int fb_w = 0, fb_h = 0;
      glfwGetFramebufferSize(window, &fb_w, &fb_h);
      const ImVec4 bg = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];  // panels that overlap nothing skip theirs
      if (options.full_redraw) {
        glViewport(0, 0, fb_w, fb_h);
        glClearColor(bg.x, bg.y, bg.z, 1.0f);
        glClear(GL_COLOR_BUFFER_BIT);
        ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
      } else {
        frame_cache.render(ImGui::GetDrawData(), fb_w, fb_h, bg);  // only the panels that changed
      }
      const auto t_rendered = clock::now();
      // Screenshots (test hook, F12) read the back buffer and encode PNGs: kept out of the timings.
      app.after_render(fb_w, fb_h);
      const auto t_shot = clock::now();
      glfwSwapBuffers(window);
      const auto t1 = clock::now() - (t_shot - t_rendered);

      glfwGetWindowSize(window, &state->window_w, &state->window_h);
      if (io.WantSaveIniSettings) {
        const std::string err = vaelab::app::save_settings(ini);
        if (!err.empty()) std::fprintf(stderr, "vaelab: could not save settings: %s\n", err.c_str());
      }
      auto& st = state->stats;
      st.work_ms.push_back(std::chrono::duration<float, std::milli>(t1 - t0).count());
      st.events.push_back(std::move(state->frame_events));
      state->frame_events.clear();
      st.damaged.push_back(options.full_redraw ? 1.0f : frame_cache.damaged_fraction());
      st.cache_direct = frame_cache.in_back_buffer();
      st.build_ms.push_back(std::chrono::duration<float, std::milli>(t_built - t0).count());
      st.render_ms.push_back(std::chrono::duration<float, std::milli>(t_rendered - t_built).count());
      st.swap_ms.push_back(std::chrono::duration<float, std::milli>(t1 - t_rendered).count());  // shot excluded
      const float interval = std::chrono::duration<float, std::milli>(t0 - last_start).count();
      st.interval_ms.push_back(interval);
      last_start = t0;
      const double now_s = std::chrono::duration<double>(t0 - started).count();
      st.recent.push_back(now_s);
      std::erase_if(st.recent, [&](double t) { return t < now_s - 1.0; });
      st.fps = static_cast<double>(st.recent.size());
      if (state->snap && state->snap->step > 0) {
        if (st.train_t0 < 0) st.train_t0 = now_s, st.train_step0 = state->snap->step;
        st.train_t1 = now_s, st.train_step1 = state->snap->step;
        if (state->snap->state == vaelab::TrainerState::Running && state->snap->samples_per_s > 0)
          st.train_rate.push_back(static_cast<float>(state->snap->samples_per_s));
      }
      if (options.quit_after_s > 0 && std::chrono::duration<double>(t1 - started).count() >= options.quit_after_s) break;
      // Frame cap: under Xvfb (or with vsync off) the swap returns at once; don't spin a core.
      if (options.fps_cap > 0) std::this_thread::sleep_until(t0 + std::chrono::microseconds(1000000 / options.fps_cap));
    }
    glfwSetWindowUserPointer(window, nullptr);
    if (state->snap) {
      // Two figures: the trainer's own (time inside training steps, median over the frames,
      // comparable with vaelab-train --bench-steps) and the wall-clock rate, which also pays
      // for the epoch-end evaluations and the latent map's re-encoding.
      const auto& st = state->stats;
      const double wall = st.train_t1 > st.train_t0
                              ? static_cast<double>(st.train_step1 - st.train_step0) * state->snap->train_config.batch /
                                    (st.train_t1 - st.train_t0)
                              : 0.0;
      std::fprintf(stderr,
                   "vaelab: training at exit: step %lld, %d threads; in steps %.0f samples/s (median over the run), "
                   "wall %.0f samples/s\n",
                   static_cast<long long>(state->snap->step), state->snap->train_config.threads,
                   percentile(st.train_rate, 0.5), wall);
    }
    const std::string err = vaelab::app::save_settings(ini);
    if (!err.empty()) std::fprintf(stderr, "vaelab: could not save settings: %s\n", err.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vaelab: %s\n", e.what());
    rc = 1;
  }
  report_frame_stats(options, state->stats);
  if (!options.frame_stats.empty())
    std::fprintf(stderr, "vaelab: redraw %s\n", options.full_redraw ? "of the whole window each frame (--full-redraw)"
                                              : state->stats.cache_direct ? "of what changed, in the preserved back buffer"
                                                                          : "of what changed, in an off-screen cache");
  state.reset();  // GL objects go while the context is alive
  vaelab::app::gl_images_shutdown();
  ImGui_ImplOpenGL3_Shutdown();
  ImGui_ImplGlfw_Shutdown();
  ImGui::DestroyContext();
  glfwDestroyWindow(window);
  glfwTerminate();
  return rc;
}
