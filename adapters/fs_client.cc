// PosixFsClient: FsClient over the kernel's VFS (a mounted DFS).
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "adapters/fs_client.h"

namespace kvfs {
namespace {

Result<FsStat> FromStatus(const Result<FileStatus>& r) {
  if (!r.ok()) return r.status();
  FsStat s;
  static_cast<FileStatus&>(s) = *r;
  s.is_dir = S_ISDIR(r->mode);
  s.is_regular = S_ISREG(r->mode);
  s.is_symlink = S_ISLNK(r->mode);
  return s;
}

class PosixFsClient final : public FsClient {
 public:
  std::string Describe() const override { return "posix"; }

  Result<int> Open(const std::string& path, int flags, mode_t mode) override {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) return Status::FromErrno("open " + path);
    return fd;
  }
  Result<FsStat> Stat(const std::string& path) override { return FromStatus(StatPath(path, true)); }
  Result<FsStat> StatFd(int fd) override { return FromStatus(StatDescriptor(fd)); }
  Status Mkdir(const std::string& path) override {
    if (::mkdir(path.c_str(), 0700) != 0) return Status::FromErrno("mkdir " + path);
    return Status::Ok();
  }
  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return Status::FromErrno("rename " + from + " -> " + to);
    return Status::Ok();
  }
  Status Link(const std::string& from, const std::string& to) override {
    if (::link(from.c_str(), to.c_str()) != 0) return Status::FromErrno("link " + from + " -> " + to);
    return Status::Ok();
  }
  Status Unlink(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path);
    return Status::Ok();
  }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (!d) return Status::FromErrno("opendir " + path);
    std::vector<std::string> names;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
      errno = 0;
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return Status::FromErrno(err, "readdir " + path);
    return names;
  }
  Status SyncDir(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open " + path);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    // Some network filesystems do not implement fsync on directories; their
    // namespace operations are then synchronous on the servers already.
    if (rc != 0 && err != EINVAL && err != ENOSYS && err != EOPNOTSUPP) return Status::FromErrno(err, "fsync " + path);
    return Status::Ok();
  }
  Result<int> TryLockExclusive(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno("open " + path);
    // flock: per open file description, so it excludes other descriptors of
    // this process too; network filesystems forward it to their servers.
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      return Status::Error(err == EWOULDBLOCK ? EAGAIN : err, "lock " + path + ": " + std::strerror(err));
    }
    return fd;
  }
  Result<StoreSpace> StatFs(const std::string& path) override { return FilesystemSpace(path); }
};

}  // namespace

Result<FsStat> FsClient::Lstat(const std::string& path) { return FromStatus(StatPath(path, false)); }

std::unique_ptr<FsClient> MakePosixFsClient() { return std::make_unique<PosixFsClient>(); }

Status MakeDirs(FsClient& fs, const std::string& path) {
  size_t pos = 0;
  while (true) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (!prefix.empty()) {
      Status s = fs.Mkdir(prefix);
      if (!s.ok() && s.err() != EEXIST) return s;
    }
    if (pos == std::string::npos) return Status::Ok();
  }
}

Status WriteSmallFile(FsClient& fs, const std::string& path, const std::string& text) {
  Result<int> fd = fs.Open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!fd.ok()) return fd.status();
  size_t done = 0;
  Status s;
  while (done < text.size()) {
    ssize_t n = ::write(*fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      s = Status::FromErrno("write " + path);
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (s.ok() && ::fdatasync(*fd) != 0) s = Status::FromErrno("fdatasync " + path);
  ::close(*fd);
  return s;
}

Status WithExclusiveLock(FsClient& fs, const std::string& lock_path, std::chrono::milliseconds wait,
                         const std::function<Status()>& fn) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    Result<int> fd = fs.TryLockExclusive(lock_path);
    if (fd.ok()) {
      Status s = fn();
      ::close(*fd);
      return s;
    }
    if (fd.err() != EAGAIN) return fd.status();
    if (std::chrono::steady_clock::now() >= deadline) return Status::Error(ETIMEDOUT, "lock " + lock_path + " is busy");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // another host holds it for a moment
  }
}

Status ReplaceSmallFile(FsClient& fs, const std::string& path, const std::string& tmp, const std::string& text) {
  Status s = WriteSmallFile(fs, tmp, text);
  if (s.ok()) s = fs.Rename(tmp, path);
  if (!s.ok()) (void)fs.Unlink(tmp);
  return s;
}

Result<std::string> ReadSmallFile(FsClient& fs, const std::string& path, size_t max_bytes) {
  Result<int> fd = fs.Open(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  std::string out;
  char buf[16384];
  while (out.size() < max_bytes) {
    ssize_t n = ::read(*fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Status::FromErrno("read " + path);
      ::close(*fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(*fd);
  return out;
}

}  // namespace kvfs
