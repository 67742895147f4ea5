// Writing a file so that a crash never leaves it half-written (temporary file, fsync, rename), and
// checking a save target before the work that produces its bytes. Shared by checkpoints, the
// safetensors export, the app's settings and image exports. Not reading: see regular_file.hpp.
#pragma once
#include <cstddef>
#include <filesystem>

namespace vaelab {

// Where a save to `file` lands: `file` itself when it is absent or a regular file, or the end of
// its chain of symbolic links (so the link stays and its target gets the new bytes). Throws
// vaelab::Error naming the path when that is anything else: a folder, a device, a FIFO, a socket,
// or a chain of links that loops.
std::filesystem::path resolve_save_target(const std::filesystem::path& file);

// Checks that a save to `file` can succeed, before the work that produces its bytes: the target
// resolves (resolve_save_target) and its folder takes a new file (one is created and removed).
// Also removes the stale temporaries of that folder. Returns the resolved target. Throws
// vaelab::Error saying why the save would fail.
std::filesystem::path check_save_target(const std::filesystem::path& file);

// Writes bytes to the resolved target of `file` atomically: a temporary "<name>.tmp.<pid>" in the
// target's folder, fsync, rename over the target. Then removes the stale temporaries of that
// folder. Throws vaelab::Error (the target is untouched when anything fails).
void write_file_atomically(const std::filesystem::path& file, const void* bytes, std::size_t size);

// Removes the "<name>.tmp.<digits>" files in `dir` that no writer holds (left by a writer killed
// mid-write). Best effort: it never throws. Returns how many it removed.
int remove_stale_temporaries(const std::filesystem::path& dir);

}  // namespace vaelab
