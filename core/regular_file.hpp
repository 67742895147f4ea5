// Reading files only when they are regular files: a FIFO opened for reading waits for a writer,
// and a device such as /dev/zero or /dev/urandom never ends, so both are refused before anything is
// read, and open itself never blocks. Long reads check a cancel flag between chunks.
// Not writing: see atomic_file.hpp.
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace vaelab {

// Set by another thread to stop a read (the reader throws vaelab::Error "… reading was cancelled").
using CancelFlag = std::atomic<bool>;

// "a folder", "a character device", "a FIFO (named pipe)", … for messages.
const char* file_type_name(std::filesystem::file_type type);

// An open regular file, read from the start; closes itself.
class RegularFile {
 public:
  // `expected` names what the file should be, for messages ("a checkpoint file"). Throws
  // vaelab::Error "<file>: …" when it does not exist, is a folder, a FIFO, a device or a socket, or
  // cannot be opened.
  RegularFile(const std::filesystem::path& file, const std::string& expected);
  ~RegularFile();
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;

  std::uint64_t size() const { return size_; }
  const std::string& name() const { return name_; }
  // Reads up to n bytes; returns how many were read (< n only at the end of the file). Throws on a
  // read error, or when `cancel` is set.
  std::size_t read(void* dst, std::size_t n, const CancelFlag* cancel = nullptr);
  // Gives up the descriptor (e.g. to zlib's gzdopen, which closes it); the object is empty after.
  int release();

 private:
  std::string name_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// The whole of a regular file, refused (vaelab::Error "<file>: …") when it is larger than max_bytes,
// before anything is allocated. `expected` as for RegularFile.
std::vector<std::uint8_t> read_regular_file(const std::filesystem::path& file, const std::string& expected,
                                            std::uint64_t max_bytes, const CancelFlag* cancel = nullptr);

}  // namespace vaelab
