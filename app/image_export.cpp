// PNG and CSV writers for the app's export buttons and the test hook's screenshots.
// stb_image_write is compiled here (static, so it cannot clash with Debian's libstb).
// Not thread-safe with respect to the caller's buffers: pass copies if another thread writes them.
#include "app/image_export.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/atomic_file.hpp"
#include "core/view_math.hpp"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace vaelab::app {
namespace {

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(context);
  const auto* p = static_cast<const std::uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

void write_png_rgb(const std::filesystem::path& file, const std::uint8_t* rgb, int w, int h, int channels) {
  std::vector<std::uint8_t> bytes;
  if (!stbi_write_png_to_func(append_bytes, &bytes, w, h, channels, rgb, w * channels))
    throw std::runtime_error("could not encode " + file.string() + " as PNG");
  write_file_atomically(file, bytes.data(), bytes.size());
}

std::string csv_float(float v) {
  if (!std::isfinite(v)) return "";
  std::ostringstream s;
  s.precision(7);
  s << v;
  return s.str();
}

std::string csv_text(const std::string& t) {
  std::string out = "\"";
  for (char c : t) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

void write_image_png(const std::filesystem::path& file, const std::vector<float>& values, int channels, int w, int h,
                     int colormap, int min_side, std::uint8_t gap_grey) {
  const std::size_t plane = static_cast<std::size_t>(std::max(w, 0)) * std::max(h, 0);
  if (w <= 0 || h <= 0 || (channels != 1 && channels != 3) || values.size() < plane * channels)
    throw std::runtime_error("nothing to export yet");
  const int scale = std::max(1, (min_side + std::max(w, h) - 1) / std::max(w, h));
  const std::vector<std::uint8_t> rgb = image_rgb8(values, channels, w, h, colormap, scale, gap_grey);
  write_png_rgb(file, rgb.data(), w * scale, h * scale, 3);
}

void write_framebuffer_png(const std::filesystem::path& file, const std::vector<std::uint8_t>& rgba, int w, int h) {
  std::vector<std::uint8_t> rgb(static_cast<std::size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        rgb[(static_cast<std::size_t>(y) * w + x) * 3 + c] = rgba[(static_cast<std::size_t>(h - 1 - y) * w + x) * 4 + c];
  write_png_rgb(file, rgb.data(), w, h, 3);
}

void write_curves_csv(const std::filesystem::path& file, const History& history) {
  std::ostringstream out;
  out << "step,epoch,set,elbo,recon,kl,iwae,note\n";
  for (const StepRecord& r : history.steps)
    out << r.step << ',' << csv_float(r.epoch) << ",train," << csv_float(r.elbo) << ',' << csv_float(r.recon) << ','
        << csv_float(r.kl) << ",,\n";
  for (const EpochRecord& e : history.epochs)
    out << e.step << ',' << e.epoch << ",test," << csv_float(e.test_elbo) << ',' << csv_float(e.test_recon) << ','
        << csv_float(e.test_kl) << ',' << csv_float(e.test_iwae) << ",\n";
  for (const ChangeMarker& m : history.markers) out << m.step << ",,marker,,,,," << csv_text(m.text) << '\n';
  const std::string text = out.str();
  write_file_atomically(file, text.data(), text.size());
}

std::filesystem::path unique_export_path(const std::filesystem::path& dir, const std::string& stem, const std::string& ext) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create the export folder " + dir.string() + ": " + ec.message());
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  std::filesystem::path p = dir / (stem + "-" + stamp + ext);
  for (int n = 2; std::filesystem::exists(p); ++n) p = dir / (stem + "-" + stamp + "-" + std::to_string(n) + ext);
  return p;
}

}  // namespace vaelab::app
