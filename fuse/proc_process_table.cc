// ProcProcessTable: see proc_process_table.h.
#include "fuse/proc_process_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

namespace kvfs {
namespace {

// The fdinfo fields kvfs needs: "flags:" (octal) and "ino:" (decimal).
struct FdInfo {
  bool ok = false;
  unsigned long flags = 0;
  uint64_t ino = 0;
};

FdInfo ReadFdInfo(int fdinfo_dir, const char* name) {
  FdInfo info;
  int fd = ::openat(fdinfo_dir, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return info;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return info;
  buf[n] = '\0';
  bool have_flags = false, have_ino = false;
  for (char* line = buf; line && *line;) {
    char* next = std::strchr(line, '\n');
    if (next) *next++ = '\0';
    if (std::strncmp(line, "flags:", 6) == 0) {
      info.flags = std::strtoul(line + 6, nullptr, 8);
      have_flags = true;
    } else if (std::strncmp(line, "ino:", 4) == 0) {
      info.ino = std::strtoull(line + 4, nullptr, 10);
      have_ino = true;
    }
    line = next;
  }
  info.ok = have_flags && have_ino;
  return info;
}

}  // namespace

ProcProcessTable::ProcProcessTable(std::string mountpoint, std::string proc_root, uint64_t max_descriptors)
    : mount_prefix_(std::move(mountpoint)), proc_root_(std::move(proc_root)), max_descriptors_(max_descriptors) {
  if (mount_prefix_.empty() || mount_prefix_.back() != '/') mount_prefix_ += '/';
}

bool ProcProcessTable::SameProcess(uint32_t a, uint32_t b) {
  if (a == 0 || b == 0) return false;
  if (a == b) return true;
  std::string path = proc_root_ + "/" + std::to_string(a) + "/task/" + std::to_string(b);
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool ProcProcessTable::HoldsWritableDescriptor(uint32_t thread, uint64_t ino) {
  if (thread == 0) return false;
  const std::string base = proc_root_ + "/" + std::to_string(thread);
  int fd_dir = ::open((base + "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_dir < 0) return false;
  // The kernel reports a process's number of descriptors as the size of
  // its fd directory (since Linux 6.2; 0 before, when the walk below counts).
  struct stat dir_st {};
  if (::fstat(fd_dir, &dir_st) == 0 && static_cast<uint64_t>(dir_st.st_size) > max_descriptors_) {
    ::close(fd_dir);
    return false;
  }
  DIR* d = ::fdopendir(fd_dir);  // owns fd_dir from here
  if (!d) {
    ::close(fd_dir);
    return false;
  }
  int info_dir = -1;  // opened at the first descriptor on the mount
  bool found = false;
  uint64_t seen = 0;
  char target[4096];
  while (!found) {
    dirent* e = ::readdir(d);
    if (!e) break;
    if (e->d_name[0] == '.') continue;
    if (++seen > max_descriptors_) break;  // past the bound: "no", as for a table that cannot be read
    ssize_t n = ::readlinkat(::dirfd(d), e->d_name, target, sizeof target);
    if (n <= 0 || static_cast<size_t>(n) >= sizeof target) continue;
    if (std::string_view(target, static_cast<size_t>(n)).substr(0, mount_prefix_.size()) != mount_prefix_) continue;
    if (info_dir < 0 && (info_dir = ::open((base + "/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) break;
    FdInfo info = ReadFdInfo(info_dir, e->d_name);
    found = info.ok && info.ino == ino && (info.flags & O_ACCMODE) != O_RDONLY;
  }
  ::closedir(d);
  if (info_dir >= 0) ::close(info_dir);
  return found;
}

}  // namespace kvfs
