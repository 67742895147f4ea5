// The atomic file write and the save-target checks (see atomic_file.hpp). A writer holds an
// exclusive flock on its temporary file from creation to rename; the kernel drops the lock when
// the process dies however it dies, so a temporary whose lock can be taken is one nobody writes.
#include "core/atomic_file.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "core/regular_file.hpp"

namespace vaelab {

namespace {

namespace fs = std::filesystem;

// Links followed before a chain counts as a loop (the kernel's own limit, SYMLOOP_MAX).
constexpr int kMaxLinkHops = 40;

[[noreturn]] void refuse(const fs::path& file, const std::string& what, int err = 0) {
  throw Error("cannot write '" + file.string() + "': " + what + (err ? ": " + std::string(std::strerror(err)) : ""));
}

fs::path folder_of(const fs::path& file) { return file.has_parent_path() ? file.parent_path() : fs::path("."); }

fs::path temporary_for(const fs::path& target) {
  return folder_of(target) / (target.filename().string() + ".tmp." + std::to_string(::getpid()));
}

bool is_temporary_name(const std::string& name) {
  const std::size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0 || at + 5 == name.size()) return false;
  return name.find_first_not_of("0123456789", at + 5) == std::string::npos;
}

// Creates (truncating) and locks the temporary; retries if a cleaner in another process unlinked
// it between our open and our flock (it could take the lock in that instant).
int create_locked_temporary(const fs::path& tmp) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return -1;
    struct stat st {};
    if (::flock(fd, LOCK_EX) == 0 && ::fstat(fd, &st) == 0 && st.st_nlink > 0) return fd;
    ::close(fd);
  }
  errno = EAGAIN;
  return -1;
}

void sync_folder(const fs::path& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

fs::path resolve_save_target(const fs::path& file) {
  if (file.filename().empty()) refuse(file, "the path names a folder, not a file");
  fs::path target = file;
  for (int hops = 0;; ++hops) {
    std::error_code ec;
    const fs::file_status st = fs::symlink_status(target, ec);
    if (st.type() == fs::file_type::not_found || st.type() == fs::file_type::regular) return target;
    if (ec) refuse(file, "cannot inspect '" + target.string() + "'", ec.value());
    if (st.type() != fs::file_type::symlink) {
      const std::string via = target == file ? "it" : "its link target '" + target.string() + "'";
      refuse(file, via + " is " + file_type_name(st.type()) + ", not a regular file; vaelab saves only to a file");
    }
    if (hops == kMaxLinkHops) refuse(file, "its symbolic links form a loop or a chain too long to follow");
    const fs::path next = fs::read_symlink(target, ec);
    if (ec) refuse(file, "cannot read the symbolic link '" + target.string() + "'", ec.value());
    target = next.is_absolute() ? next : folder_of(target) / next;
    if (target.filename().empty()) refuse(file, "its symbolic link names a folder, not a file");
  }
}

fs::path check_save_target(const fs::path& file) {
  const fs::path target = resolve_save_target(file);
  const fs::path tmp = temporary_for(target);
  const int fd = create_locked_temporary(tmp);
  if (fd < 0) {
    const int err = errno;
    refuse(file, "cannot create a file in '" + folder_of(target).string() + "'", err);
  }
  ::unlink(tmp.c_str());
  ::close(fd);
  remove_stale_temporaries(folder_of(target));
  return target;
}

void write_file_atomically(const fs::path& file, const void* bytes, std::size_t size) {
  const fs::path target = resolve_save_target(file);
  const fs::path dir = folder_of(target);
  const fs::path tmp = temporary_for(target);

  // O_EXCL would refuse a stale temporary left by a crashed run with the same pid; truncating is
  // fine. The lock is held until after the rename: other savers see this file as in use.
  const int fd = create_locked_temporary(tmp);
  if (fd < 0) refuse(file, "cannot create the temporary file '" + tmp.string() + "'", errno);
  std::FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    const int err = errno;
    ::unlink(tmp.c_str());
    ::close(fd);
    refuse(file, "cannot create the temporary file '" + tmp.string() + "'", err);
  }
  auto abandon = [&](const std::string& what, int err) {
    ::unlink(tmp.c_str());
    std::fclose(f);
    refuse(file, what, err);
  };
  if (size > 0 && std::fwrite(bytes, 1, size, f) != size) abandon("writing failed", errno);
  if (std::fflush(f) != 0) abandon("writing failed", errno);
  if (::fsync(::fileno(f)) != 0) abandon("flushing to disk failed", errno);
  if (std::rename(tmp.c_str(), target.c_str()) != 0) abandon("renaming the temporary file failed", errno);
  // The data is on disk and in place; closing (and so unlocking) cannot lose it any more.
  std::fclose(f);
  remove_stale_temporaries(dir);
  // Make the rename itself durable; a failure here cannot undo the write, so it is not an error.
  sync_folder(dir);
}

int remove_stale_temporaries(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!is_temporary_name(it->path().filename().string())) continue;
    // Non-blocking, not following links: a FIFO or a link with a temporary's name is not ours.
    const int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat st {};
    // Unlink while holding the lock, so a writer never loses a temporary it has locked.
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        ::unlink(it->path().c_str()) == 0)
      ++removed;
    ::close(fd);
  }
  return removed;
}

}  // namespace vaelab
