// Exports from the app and vaelab-train: images to PNG (grey through the same colormap tables as the
// shader, colour as it is), the framebuffer to PNG, and the training curves to CSV. Files are
// written atomically. UI-free (no GL or ImGui), so the headless trainer links it too. Not an image loader.
#pragma once
#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/history.hpp"

namespace vaelab::app {

// values: `channels` planes of h rows of w floats in [0, 1] (< 0 in the first plane: gap, written
// as `gap_grey`). One channel goes through the colormap; three are red, green and blue, clamped
// to [0, 1]. Scaled up by an integer factor with nearest neighbours so the longest side is at
// least min_side. Throws on failure.
void write_image_png(const std::filesystem::path& file, const std::vector<float>& values, int channels, int w, int h,
                     int colormap, int min_side = 256, std::uint8_t gap_grey = 32);
// rgba: w·h·4 bytes, rows bottom to top (as glReadPixels gives them).
void write_framebuffer_png(const std::filesystem::path& file, const std::vector<std::uint8_t>& rgba, int w, int h);
// One long table: step, epoch, set (train / test / marker), elbo, recon, kl, iwae, note.
void write_curves_csv(const std::filesystem::path& file, const History& history);

// dir/stem-YYYYmmdd-HHMMSS[-n].ext, not yet existing; creates dir.
std::filesystem::path unique_export_path(const std::filesystem::path& dir, const std::string& stem, const std::string& ext);

}  // namespace vaelab::app
