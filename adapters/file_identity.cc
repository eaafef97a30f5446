#include "adapters/file_identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cstring>

namespace kvfs {

uint64_t FileIdentity(uint64_t ino, int64_t birth_ns) {
  if (birth_ns == 0 || ino == 0) return ino;
  uint64_t parts[2] = {ino, static_cast<uint64_t>(birth_ns)};
  uint64_t id = XXH3_64bits(parts, sizeof parts);
  return id != 0 ? id : 1;
}

namespace {

Result<FileStatus> Statx(int dirfd, const char* path, int flags, const std::string& what) {
  struct statx stx;
  std::memset(&stx, 0, sizeof stx);
  if (::statx(dirfd, path, flags, STATX_BASIC_STATS | STATX_BTIME, &stx) != 0) return Status::FromErrno(what);
  FileStatus s;
  s.ino = stx.stx_ino;
  s.size = stx.stx_size;
  s.mode = stx.stx_mode;
  s.mtime_ns = static_cast<int64_t>(stx.stx_mtime.tv_sec) * 1000000000LL + stx.stx_mtime.tv_nsec;
  if (stx.stx_mask & STATX_BTIME) {
    s.birth_ns = static_cast<int64_t>(stx.stx_btime.tv_sec) * 1000000000LL + stx.stx_btime.tv_nsec;
  }
  return s;
}

}  // namespace

Result<FileStatus> StatDescriptor(int fd) { return Statx(fd, "", AT_EMPTY_PATH, "fstat"); }

Result<FileStatus> StatPath(const std::string& path, bool follow_symlink) {
  return Statx(AT_FDCWD, path.c_str(), follow_symlink ? 0 : AT_SYMLINK_NOFOLLOW,
               (follow_symlink ? "stat " : "lstat ") + path);
}

}  // namespace kvfs
