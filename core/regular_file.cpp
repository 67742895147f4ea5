// Opening for reading with O_NONBLOCK (so a FIFO cannot block open), then fstat on the descriptor:
// the type checked is the type of the file read, with no gap between check and open.
#include "core/regular_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace vaelab {

namespace {

namespace fs = std::filesystem;

// One read(2) at most this large, so a cancel flag is seen a few times a second at disk speed.
constexpr std::size_t kChunkBytes = std::size_t{16} << 20;

fs::file_type type_of(mode_t mode) {
  if (S_ISREG(mode)) return fs::file_type::regular;
  if (S_ISDIR(mode)) return fs::file_type::directory;
  if (S_ISCHR(mode)) return fs::file_type::character;
  if (S_ISBLK(mode)) return fs::file_type::block;
  if (S_ISFIFO(mode)) return fs::file_type::fifo;
  if (S_ISSOCK(mode)) return fs::file_type::socket;
  return fs::file_type::unknown;
}

}  // namespace

const char* file_type_name(fs::file_type type) {
  switch (type) {
    case fs::file_type::regular: return "a regular file";
    case fs::file_type::directory: return "a folder";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::fifo: return "a FIFO (named pipe)";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::symlink: return "a symbolic link";
    default: return "not a regular file";
  }
}

RegularFile::RegularFile(const fs::path& file, const std::string& expected) : name_(file.string()) {
  auto fail = [&](const std::string& what) { throw Error(name_ + ": " + what); };
  fd_ = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) {
    const int err = errno;
    if (err == ENOENT) fail("file does not exist");
    fail("cannot open: " + std::string(std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fail("cannot read: " + std::string(std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail("is " + std::string(file_type_name(type_of(st.st_mode))) + ", not " + expected +
         "; vaelab reads only regular files");
  }
  // Regular files never block; clearing the flag keeps reads plain.
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
  size_ = static_cast<std::uint64_t>(st.st_size);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

int RegularFile::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

std::size_t RegularFile::read(void* dst, std::size_t n, const CancelFlag* cancel) {
  auto* out = static_cast<unsigned char*>(dst);
  std::size_t got = 0;
  while (got < n) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw Error(name_ + ": reading was cancelled");
    const ssize_t r = ::read(fd_, out + got, std::min(n - got, kChunkBytes));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw Error(name_ + ": cannot read: " + std::strerror(errno));
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

std::vector<std::uint8_t> read_regular_file(const fs::path& file, const std::string& expected,
                                            std::uint64_t max_bytes, const CancelFlag* cancel) {
  RegularFile f(file, expected);
  if (f.size() > max_bytes)
    throw Error(f.name() + ": the file is " + std::to_string(f.size()) + " bytes, more than the " +
                std::to_string(max_bytes) + " vaelab reads as " + expected);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(f.size()));
  const std::size_t got = f.read(bytes.data(), bytes.size(), cancel);
  // A file that shrank while being read: what was read is what the file holds now.
  bytes.resize(got);
  return bytes;
}

}  // namespace vaelab
