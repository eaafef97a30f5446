// Helpers shared by the unit tests: scratch directories, aligned buffers,
// deterministic byte patterns and status text. Test-only; not thread-safe
// unless stated.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <xxhash.h>

#include "adapters/object_header.h"
#include "adapters/status.h"

// KVFS_TEST_SANITIZED: this test binary is built with a sanitizer.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KVFS_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KVFS_TEST_SANITIZED 1
#endif
#endif

namespace kvfs::testing {

// How many times longer than in a plain build the tests that time a store
// deadline make it (and the stalls that exceed it, and the bounds they
// check): a sanitizer build runs every store call several times slower, and
// a busy machine can hold such a build's threads for a few hundred ms, so a
// 200 ms deadline there fails calls the test expects to succeed. A plain
// build gets twice the base: this machine's shared virtual disk has held a
// healthy 300 KiB write past 200 ms.
#ifdef KVFS_TEST_SANITIZED
inline constexpr int kTimingScale = 4;
#else
inline constexpr int kTimingScale = 2;
#endif

// "OK", or the errno and message of a failed status, for test messages.
inline std::string ErrText(const Status& s) {
  return s.ok() ? "OK" : std::to_string(s.err()) + " " + s.ToString();
}

// A fresh directory under ${TMPDIR:-/tmp}, removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/kvfs-unit-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* p = ::mkdtemp(buf.data());
    if (p) path_ = p;
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A 4096-aligned, zero-filled heap buffer.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t size) : size_(size) {
    size_t alloc = size == 0 ? 4096 : (size + 4095) / 4096 * 4096;
    data_ = static_cast<uint8_t*>(std::aligned_alloc(4096, alloc));
    std::memset(data_, 0, alloc);
  }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_;
  size_t size_;
};

// Deterministic, position- and seed-dependent bytes (not a short period, so
// misplaced ranges are detected).
// The checksum a format-2 header carries for a file holding `data`: XXH3-64
// of its chunk checksum table (adapters/object_header.h).
inline uint64_t DataChecksum(const uint8_t* data, size_t len) {
  std::vector<uint8_t> table(ChunkCount(len) * 8);
  for (uint64_t c = 0; c * kChunkSize < len; ++c) {
    const uint64_t sum = XXH3_64bits(data + c * kChunkSize, static_cast<size_t>(std::min<uint64_t>(kChunkSize, len - c * kChunkSize)));
    std::memcpy(table.data() + c * 8, &sum, 8);  // little endian host
  }
  return DataChecksumOfTable(table.data(), ChunkCount(len));
}
inline uint64_t DataChecksum(const std::vector<uint8_t>& data) { return DataChecksum(data.data(), data.size()); }

// The header of the object file at path, or an error.
inline Result<ObjectHeader> ReadObjectHeader(const std::string& path) {
  std::vector<uint8_t> block(kHeaderSize);
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Status::FromErrno("open " + path);
  const bool ok = ::pread(fd, block.data(), kHeaderSize, 0) == static_cast<ssize_t>(kHeaderSize);
  ::close(fd);
  if (!ok) return Status::Error(EIO, "short header");
  return DecodeHeader(block.data(), block.size());
}

// Rewrites the header slot h.slot of the object file at path as h (as an
// older build or a damaged drive might have left it), durably.
inline bool RewriteObjectHeader(const std::string& path, const ObjectHeader& h) {
  std::vector<uint8_t> block(kHeaderSize);
  int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return false;
  bool ok = ::pread(fd, block.data(), kHeaderSize, 0) == static_cast<ssize_t>(kHeaderSize) &&
            EncodeHeader(h, block.data()).ok() &&
            ::pwrite(fd, block.data(), kHeaderSize, 0) == static_cast<ssize_t>(kHeaderSize) && ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

inline uint8_t PatternByte(uint64_t seed, uint64_t pos) {
  uint64_t x = (pos + 1) * 0x9E3779B97F4A7C15ULL ^ (seed * 0xD1B54A32D192ED03ULL);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 32;
  return static_cast<uint8_t>(x);
}

inline std::vector<uint8_t> Pattern(uint64_t seed, size_t len, uint64_t start = 0) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = PatternByte(seed, start + i);
  return v;
}

inline void FillPattern(uint8_t* p, size_t len, uint64_t seed, uint64_t start = 0) {
  for (size_t i = 0; i < len; ++i) p[i] = PatternByte(seed, start + i);
}

// Writes a whole regular file with ordinary buffered I/O.
inline bool WriteFile(const std::string& path, const void* data, size_t len) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::write(fd, p + done, len - done);
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return true;
}

inline bool WriteFile(const std::string& path, const std::string& text) {
  return WriteFile(path, text.data(), text.size());
}

inline bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Number of regular files directly in dir (0 when it does not exist).
inline size_t CountFiles(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) ++n;
  }
  return n;
}

}  // namespace kvfs::testing
