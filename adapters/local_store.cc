#include "adapters/local_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "adapters/manifest.h"

namespace kvfs {
namespace {

constexpr const char* kObjectsDir = "objects";
constexpr const char* kStagingDir = "staging";
constexpr const char* kQuarantineDir = "quarantine";

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return Status::FromErrno("mkdir " + path);
  return Status::Ok();
}

std::vector<std::string> ListDir(const std::string& path, bool* ok) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  *ok = d != nullptr;
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  return names;
}

// Checks whether the filesystem at dir accepts O_DIRECT opens and writes.
bool ProbeDirectIo(const std::string& dir) {
  std::string probe = dir + "/.direct-probe-" + std::to_string(::getpid());
  int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  void* buf = nullptr;
  bool ok = false;
  if (::posix_memalign(&buf, 4096, 4096) == 0) {
    std::memset(buf, 0, 4096);
    ok = ::pwrite(fd, buf, 4096, 0) == 4096;
    std::free(buf);
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return ok;
}

}  // namespace

StagingFile::~StagingFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!published_) ::unlink(path_.c_str());
}

Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync " + dir);
  return Status::Ok();
}

Result<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& root_in, const LocalStoreOptions& options) {
  std::error_code ec;
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    if (errno != ENOENT || !options.create_if_missing) return Status::FromErrno("store " + root);
    std::filesystem::create_directories(root, ec);
    if (ec) return Status::Error(ec.value(), "store " + root + ": cannot create: " + ec.message());
    if (::stat(root.c_str(), &st) != 0) return Status::FromErrno("store " + root);
  }
  if (!S_ISDIR(st.st_mode)) return Status::Error(ENOTDIR, "store " + root + ": not a directory");
  if (::access(root.c_str(), R_OK | W_OK | X_OK) != 0) return Status::FromErrno("store " + root);

  int lock_fd = ::open((root + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return Status::FromErrno("store " + root + ": lock file");
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) return Status::Error(EBUSY, "store " + root + " is in use by another kvfs process");
    return Status::FromErrno(err, "store " + root + ": lock");
  }
  auto fail = [&](Status s) -> Result<std::unique_ptr<LocalStore>> {
    ::close(lock_fd);
    return s;
  };

  Result<StoreManifest> manifest = ReadManifest(root);
  if (!manifest.ok()) {
    if (manifest.err() != ENOENT) return fail(Status::Error(manifest.err(), "store " + root + ": " + manifest.status().message()));
    bool ok = false;
    std::vector<std::string> existing = ListDir(root, &ok);
    for (const std::string& name : existing) {
      if (name == kObjectsDir) {
        return fail(Status::Error(EPROTO, "store " + root + " has objects but no manifest; refusing to guess its format"));
      }
    }
    Status w = WriteManifest(root, StoreManifest::Current());
    if (!w.ok()) return fail(w);
  } else {
    Status c = manifest->CheckCompatible();
    if (!c.ok()) return fail(Status::Error(c.err(), "store " + root + ": " + c.message()));
  }
  for (const char* sub : {kObjectsDir, kStagingDir, kQuarantineDir}) {
    Status s = MakeDir(root + "/" + sub);
    if (!s.ok()) return fail(s);
  }
  bool direct = options.direct_io && ProbeDirectIo(root + "/" + kStagingDir);
  if (options.direct_io && !direct) {
    spdlog::warn("store {}: the filesystem does not support O_DIRECT; using buffered I/O", root);
  }
  std::unique_ptr<LocalStore> store(new LocalStore(root, lock_fd, direct));
  // Sweep staging leftovers: versions that were being written when a previous
  // process stopped. We hold the lock, so none of them is in use.
  bool ok = false;
  for (const std::string& name : options.sweep_staging ? ListDir(root + "/" + kStagingDir, &ok)
                                                       : std::vector<std::string>{}) {
    if (::unlink((root + "/" + kStagingDir + "/" + name).c_str()) == 0) store->swept_++;
  }
  if (store->swept_ > 0) spdlog::info("store {}: removed {} unfinished staging files", root, store->swept_);
  return store;
}

LocalStore::~LocalStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string LocalStore::LocationFor(const KeyHash& h) const {
  std::string hex = h.Hex();
  return std::string(kObjectsDir) + "/" + hex.substr(0, 2) + "/" + hex.substr(2, 2) + "/" + hex;
}

Result<std::unique_ptr<StagingFile>> LocalStore::CreateStaging() {
  std::string path = root_ + "/" + kStagingDir + "/" + std::to_string(::getpid()) + "-" +
                     std::to_string(staging_counter_.fetch_add(1)) + ".tmp";
  int flags = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | (direct_io_ ? O_DIRECT : 0);
  int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) return Status::FromErrno("create staging file " + path);
  return std::make_unique<StagingFile>(fd, path);
}

Status LocalStore::EnsureParentDirs(const std::string& location, bool sync) {
  size_t pos = 0;
  while ((pos = location.find('/', pos + 1)) != std::string::npos) {
    std::string dir = Abs(location.substr(0, pos));
    if (::mkdir(dir.c_str(), 0755) == 0) {
      // Make the new directory entry itself durable (or leave it to SyncAll).
      if (sync) KVFS_RETURN_IF_ERROR(SyncDirectory(dir.substr(0, dir.rfind('/'))));
    } else if (errno != EEXIST) {
      return Status::FromErrno("mkdir " + dir);
    }
  }
  return Status::Ok();
}

Status LocalStore::Publish(StagingFile& file, const std::string& location) {
  if (::fdatasync(file.fd()) != 0) return Status::FromErrno("fdatasync " + file.path());
  std::string dst = Abs(location);
  if (::rename(file.path().c_str(), dst.c_str()) != 0) {
    if (errno != ENOENT) return Status::FromErrno("rename " + file.path() + " -> " + dst);
    KVFS_RETURN_IF_ERROR(EnsureParentDirs(location));
    if (::rename(file.path().c_str(), dst.c_str()) != 0) return Status::FromErrno("rename " + file.path() + " -> " + dst);
  }
  file.MarkPublished();
  return SyncDirectory(dst.substr(0, dst.rfind('/')));
}

Status LocalStore::Link(StagingFile& file, const std::string& location) {
  std::string dst = Abs(location);
  if (::rename(file.path().c_str(), dst.c_str()) != 0) {
    if (errno != ENOENT) return Status::FromErrno("rename " + file.path() + " -> " + dst);
    KVFS_RETURN_IF_ERROR(EnsureParentDirs(location, false));
    if (::rename(file.path().c_str(), dst.c_str()) != 0) return Status::FromErrno("rename " + file.path() + " -> " + dst);
  }
  file.MarkPublished();
  return Status::Ok();
}

Status LocalStore::SyncAll() {
  if (::syncfs(lock_fd_) != 0) return Status::FromErrno("syncfs " + root_);
  return Status::Ok();
}

Result<int> LocalStore::OpenForRead(const std::string& location) {
  int fd = ::open(Abs(location).c_str(), O_RDONLY | O_CLOEXEC | (direct_io_ ? O_DIRECT : 0));
  if (fd < 0) return Status::FromErrno("open " + Abs(location));
  return fd;
}

Status LocalStore::WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) {
  std::string path = Abs(location);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | (direct_io_ ? O_DIRECT : 0));
  if (fd < 0) return Status::FromErrno("open " + path);
  void* aligned = nullptr;
  if (::posix_memalign(&aligned, 4096, kHeaderSize) != 0) {
    ::close(fd);
    return Status::Error(ENOMEM, "header buffer");
  }
  std::memcpy(aligned, block, kHeaderSize);
  ssize_t n = ::pwrite(fd, aligned, kHeaderSize, 0);
  int err = errno;
  std::free(aligned);
  Status s;
  if (n != static_cast<ssize_t>(kHeaderSize)) s = Status::FromErrno(n < 0 ? err : EIO, "write header " + path);
  else if (sync && ::fdatasync(fd) != 0) s = Status::FromErrno("fdatasync " + path);
  ::close(fd);
  return s;
}

Status LocalStore::Move(const std::string& from, const std::string& to, bool sync) {
  std::string src = Abs(from), dst = Abs(to);
  if (::rename(src.c_str(), dst.c_str()) != 0) {
    if (errno != ENOENT || ::access(src.c_str(), F_OK) != 0) return Status::FromErrno("rename " + src + " -> " + dst);
    KVFS_RETURN_IF_ERROR(EnsureParentDirs(to, sync));
    if (::rename(src.c_str(), dst.c_str()) != 0) return Status::FromErrno("rename " + src + " -> " + dst);
  }
  if (!sync) return Status::Ok();
  KVFS_RETURN_IF_ERROR(SyncDirectory(dst.substr(0, dst.rfind('/'))));
  std::string src_dir = src.substr(0, src.rfind('/'));
  if (src_dir != dst.substr(0, dst.rfind('/'))) KVFS_RETURN_IF_ERROR(SyncDirectory(src_dir));
  return Status::Ok();
}

Status LocalStore::Remove(const std::string& location, bool sync) {
  std::string path = Abs(location);
  if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path);
  return sync ? SyncDirectory(path.substr(0, path.rfind('/'))) : Status::Ok();
}

Status LocalStore::Quarantine(const std::string& location) {
  std::string src = Abs(location);
  std::string base = location.substr(location.rfind('/') + 1);
  std::string dst = root_ + "/" + kQuarantineDir + "/" + base + "." + std::to_string(::time(nullptr));
  if (::rename(src.c_str(), dst.c_str()) != 0) return Status::FromErrno("quarantine " + src);
  KVFS_RETURN_IF_ERROR(SyncDirectory(root_ + "/" + kQuarantineDir));
  return SyncDirectory(src.substr(0, src.rfind('/')));
}

Status LocalStore::Scan(const std::function<void(const ScannedObject&)>& fn, int threads) {
  bool ok = false;
  std::string objects = root_ + "/" + kObjectsDir;
  std::vector<std::string> top = ListDir(objects, &ok);
  if (!ok) return Status::FromErrno("list " + objects);
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  Status first_error;
  auto worker = [&] {
    void* block = nullptr;
    if (::posix_memalign(&block, 4096, kHeaderSize) != 0) return;
    for (size_t i = next.fetch_add(1); i < top.size(); i = next.fetch_add(1)) {
      std::string l1 = std::string(kObjectsDir) + "/" + top[i];
      bool ok1 = false;
      for (const std::string& mid : ListDir(Abs(l1), &ok1)) {
        std::string l2 = l1 + "/" + mid;
        bool ok2 = false;
        for (const std::string& name : ListDir(Abs(l2), &ok2)) {
          ScannedObject obj;
          obj.location = l2 + "/" + name;
          int fd = ::open(Abs(obj.location).c_str(), O_RDONLY | O_CLOEXEC);
          if (fd < 0) {
            obj.header = Status::FromErrno("open " + Abs(obj.location));
          } else {
            struct stat st;
            if (::fstat(fd, &st) == 0) {
              obj.file_bytes = static_cast<uint64_t>(st.st_size);
              obj.file_id = static_cast<uint64_t>(st.st_ino);
            }
            ssize_t n = ::pread(fd, block, kHeaderSize, 0);
            if (n < 0) obj.header = Status::FromErrno("read header " + Abs(obj.location));
            else obj.header = DecodeHeader(static_cast<uint8_t*>(block), static_cast<size_t>(n));
            ::close(fd);
          }
          fn(obj);
        }
        if (!ok2) {
          std::lock_guard<std::mutex> g(err_mu);
          if (first_error.ok()) first_error = Status::FromErrno("list " + Abs(l2));
        }
      }
    }
    std::free(block);
  };
  std::vector<std::thread> pool;
  int n = std::max(1, threads);
  for (int t = 1; t < n; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  return first_error;
}

Result<std::vector<std::string>> LocalStore::ListStaging() const {
  bool ok = false;
  std::vector<std::string> names = ListDir(root_ + "/" + kStagingDir, &ok);
  if (!ok) return Status::FromErrno("list " + root_ + "/" + kStagingDir);
  return names;
}

Status LocalStore::RemoveStaging(const std::string& name) {
  if (name.find('/') != std::string::npos) return Status::Error(EINVAL, "bad staging name");
  std::string path = root_ + "/" + kStagingDir + "/" + name;
  if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path);
  return Status::Ok();
}

Result<StoreSpace> LocalStore::Space() const { return FilesystemSpace(root_); }

}  // namespace kvfs
