#include "adapters/local_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <climits>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "adapters/manifest.h"
#include "adapters/object_directory.h"

namespace kvfs {
namespace {

constexpr const char* kObjectsDir = ObjectDirectory::kObjectsDir;

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

// Undoes the octal escapes (\040 for a space) of a /proc/self/mountinfo field.
std::string UnescapeMountField(const std::string& f) {
  std::string out;
  for (size_t i = 0; i < f.size(); ++i) {
    bool octal = f[i] == '\\' && i + 3 < f.size();
    for (size_t k = 1; octal && k <= 3; ++k) octal = f[i + k] >= '0' && f[i + k] <= '7';
    if (octal) {
      out += static_cast<char>((f[i + 1] - '0') * 64 + (f[i + 2] - '0') * 8 + (f[i + 3] - '0'));
      i += 3;
    } else {
      out += f[i];
    }
  }
  return out;
}

// True when `path` is `dir` or lies under it (both absolute, normalised).
bool PathWithin(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
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

std::string EnclosingKvfsMount(const std::string& path) {
  char resolved[PATH_MAX];
  if (!::realpath(path.c_str(), resolved)) return "";
  std::ifstream in("/proc/self/mountinfo");
  std::string line, best_point, best_type;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, field;
    if (!(fields >> id >> parent >> dev >> root >> point)) continue;
    point = UnescapeMountField(point);
    std::string fstype;
    while (fields >> field) {
      if (field == "-") {
        fields >> fstype;
        break;
      }
    }
    // The last matching line wins on equal length: later mounts hide earlier ones.
    if (PathWithin(resolved, point) && point.size() >= best_point.size()) {
      best_point = point;
      best_type = fstype;
    }
  }
  return best_type == "fuse.kvfs" ? best_point : "";
}

Result<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& root_in, const LocalStoreOptions& options) {
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::unique_ptr<FsClient> fs = MakePosixFsClient();
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    if (errno != ENOENT || !options.create_if_missing || options.read_only) return Status::FromErrno("store " + root);
    Status made = MakeDirs(*fs, root);
    if (!made.ok()) return Status::Error(made.err(), "store " + root + ": cannot create: " + made.message());
    if (::stat(root.c_str(), &st) != 0) return Status::FromErrno("store " + root);
  }
  if (!S_ISDIR(st.st_mode)) return Status::Error(ENOTDIR, "store " + root + ": not a directory");
  std::string kvfs_mount = EnclosingKvfsMount(root);
  if (!kvfs_mount.empty()) {
    return Status::Error(EXDEV, "store " + root + " is on the kvfs mount " + kvfs_mount +
                                    "; a store must be a directory of a local filesystem");
  }
  if (::access(root.c_str(), options.read_only ? (R_OK | X_OK) : (R_OK | W_OK | X_OK)) != 0) {
    return Status::FromErrno("store " + root);
  }

  std::string lock_path = root + "/.lock";
  int lock_fd = options.read_only ? ::open(lock_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                                  : ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (lock_fd < 0 && !(options.read_only && errno == ENOENT)) {
    return Status::FromErrno("store " + root + ": lock file");
  }
  if (lock_fd >= 0 && ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) return Status::Error(EBUSY, "store " + root + " is in use by another kvfs process");
    return Status::FromErrno(err, "store " + root + ": lock");
  }
  std::unique_ptr<LocalStore> store(new LocalStore(root, lock_fd, std::move(fs)));

  Result<StoreManifest> manifest = ReadManifest(root);
  int fan_out_levels = StoreManifest::Current().FanOutLevels();
  if (!manifest.ok()) {
    if (manifest.err() != ENOENT || options.read_only) {
      return Status::Error(manifest.err(), "store " + root + ": " + manifest.status().message());
    }
    bool ok = false;
    std::vector<std::string> existing = ListDir(root, &ok);
    for (const std::string& name : existing) {
      if (name == kObjectsDir) {
        return Status::Error(EPROTO, "store " + root + " has objects but no manifest; refusing to guess its format");
      }
    }
    KVFS_RETURN_IF_ERROR(WriteManifest(root, StoreManifest::Current()));
  } else {
    Status c = manifest->CheckCompatible();
    if (!c.ok()) return Status::Error(c.err(), "store " + root + ": " + c.message());
    fan_out_levels = manifest->FanOutLevels();
    if (manifest->NeedsUpgrade() && !options.read_only) {
      Status up = WriteManifest(root, manifest->Upgraded());
      if (!up.ok()) return Status::Error(up.err(), "store " + root + ": upgrading its manifest: " + up.message());
    }
  }
  // All 256 fan-out directories at once: a local mkdir or listing is cheap.
  KVFS_RETURN_IF_ERROR(store->dir_.SetUp({}, !options.read_only, fan_out_levels, true));
  if (options.read_only) return store;
  KVFS_RETURN_IF_ERROR(store->Probe(options.direct_io));
  // Sweep staging leftovers: versions that were being written when a previous
  // process stopped. We hold the lock, so none of them is in use.
  if (options.sweep_staging) {
    Result<std::vector<std::string>> names = store->dir_.ListStaging();
    if (!names.ok()) return Status::Error(names.err(), "store " + root + ": " + names.status().message());
    for (const std::string& name : *names) {
      if (store->dir_.RemoveStaging(name).ok()) store->swept_++;
    }
  }
  if (store->swept_ > 0) spdlog::info("store {}: removed {} unfinished staging files", root, store->swept_);
  store->unlinker_ = std::make_unique<DeferredUnlinker>(store->fs_.get());
  return store;
}

Status LocalStore::Probe(bool want_direct) {
  std::string name = ".probe-" + std::to_string(::getpid()) + "-" + std::to_string(::time(nullptr));
  std::string path = dir_.StagingDir() + "/" + name;
  std::string moved = path + ".renamed";
  auto fail = [&](const std::string& what) {
    ::unlink(path.c_str());
    ::unlink(moved.c_str());
    return Status::Error(EIO, "store " + root_ + ": write probe failed: " + what);
  };
  void* out = std::aligned_alloc(4096, 4096);
  void* in = std::aligned_alloc(4096, 4096);
  std::unique_ptr<void, void (*)(void*)> out_guard(out, std::free), in_guard(in, std::free);
  if (!out || !in) return Status::Error(ENOMEM, "probe buffers");
  for (size_t i = 0; i < 4096; ++i) static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(i * 131 + 7);
  const int create = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  direct_io_ = false;
  int fd = -1;
  if (want_direct) {
    fd = ::open(path.c_str(), create | O_DIRECT, 0600);
    if (fd >= 0 && ::pwrite(fd, out, 4096, 0) == 4096) {
      direct_io_ = true;
    } else if (fd >= 0) {
      ::close(fd);
      ::unlink(path.c_str());
      fd = -1;
    }
  }
  if (!direct_io_) {
    if (want_direct) spdlog::warn("store {}: the filesystem does not support O_DIRECT; using buffered I/O", root_);
    fd = ::open(path.c_str(), create, 0600);
    if (fd < 0) return fail("create " + path + ": " + std::strerror(errno));
    if (::pwrite(fd, out, 4096, 0) != 4096) {
      int err = errno;
      ::close(fd);
      return fail("write: " + std::string(std::strerror(err)));
    }
  }
  bool synced = ::fdatasync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!synced) return fail("fdatasync: " + std::string(std::strerror(err)));
  if (::rename(path.c_str(), moved.c_str()) != 0) return fail("rename: " + std::string(std::strerror(errno)));
  fd = ::open(moved.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (direct_io_ ? O_DIRECT : 0));
  if (fd < 0) return fail("reopen: " + std::string(std::strerror(errno)));
  ssize_t n = ::pread(fd, in, 4096, 0);
  ::close(fd);
  if (n != 4096 || std::memcmp(in, out, 4096) != 0) return fail("the bytes read back differ from those written");
  if (::unlink(moved.c_str()) != 0) return fail("unlink: " + std::string(std::strerror(errno)));
  return Status::Ok();
}

LocalStore::~LocalStore() {
  unlinker_.reset();  // while the store is still locked
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string LocalStore::NextStagingName(const char* suffix) {
  return std::to_string(::getpid()) + "-" + std::to_string(staging_counter_.fetch_add(1)) + suffix;
}

Status LocalStore::RenameOver(const std::string& location, const std::function<Status()>& rename) {
  std::string kept;
  if (unlinker_) {
    kept = NextStagingName(".gone");
    if (!dir_.LinkIntoStaging(location, kept).ok()) kept.clear();  // nothing there to replace
  }
  Status renamed = rename();
  if (kept.empty()) return renamed;
  const std::string path = dir_.StagingDir() + "/" + kept;
  if (!renamed.ok()) {
    (void)fs_->Unlink(path);  // the object is still at location
    return renamed;
  }
  Result<FsStat> st = fs_->Lstat(path);
  unlinker_->Add(path, st.ok() ? st->size : 0);
  return renamed;
}

std::string LocalStore::LocationFor(const KeyHash& h) const { return dir_.LocationFor(h); }

Result<std::unique_ptr<StagingFile>> LocalStore::CreateStaging(uint64_t final_bytes) {
  const bool small = final_bytes != kUnknownSize && final_bytes <= kBufferedStagingMax;
  const bool direct = direct_io_ && !small;
  Result<std::unique_ptr<StagingFile>> file = dir_.CreateStaging(NextStagingName(".tmp"), direct);
  if (file.ok() && direct && final_bytes != kUnknownSize) {
    // Its blocks allocated up front: the O_DIRECT writes that fill it then
    // extend nothing. ext4 runs extending direct writes one at a time, so
    // the header, data and checksum writes of one commit queued together
    // waited for each other (a 256 KiB object: ~500 µs against ~310).
    // Best effort: the writes report any real lack of space.
    (void)::fallocate((*file)->fd(), 0, 0, static_cast<off_t>(final_bytes));
  }
  return file;
}

Result<std::unique_ptr<StagingFile>> LocalStore::CreateStagingWith(IoExecutor& io, std::shared_ptr<const uint8_t> image,
                                                                   size_t image_bytes) {
  // A small file is staged through the page cache (CreateStaging): a plain
  // pwrite on this thread costs less than a trip through io_uring.
  return Store::CreateStagingWith(image_bytes <= kBufferedStagingMax ? syscall_io_ : io, std::move(image), image_bytes);
}

Status LocalStore::Publish(StagingFile& file, const std::string& location) {
  if (::fdatasync(file.fd()) != 0) return Status::FromErrno("fdatasync " + file.path());
  KVFS_RETURN_IF_ERROR(RenameOver(location, [&] { return dir_.RenameIntoPlace(file.path(), location, true); }));
  file.MarkPublished();
  return dir_.SyncParent(location);
}

Status LocalStore::PublishUnsynced(StagingFile& file, const std::string& location) {
  KVFS_RETURN_IF_ERROR(RenameOver(location, [&] { return dir_.RenameIntoPlace(file.path(), location, false); }));
  file.MarkPublished();
  return Status::Ok();
}

Status LocalStore::SyncAll() {
  if (lock_fd_ < 0) return Status::Error(EROFS, "store " + root_ + " is open read-only");
  if (::syncfs(lock_fd_) != 0) return Status::FromErrno("syncfs " + root_);
  return Status::Ok();
}

Status LocalStore::SyncPublished(StagingFile& file) {
  if (::fsync(file.fd()) != 0) return Status::FromErrno("fsync " + file.path());
  return Status::Ok();
}

Result<int> LocalStore::OpenForRead(const std::string& location) {
  return dir_.OpenObject(location, O_RDONLY | (direct_io_ ? O_DIRECT : 0));
}

Status LocalStore::WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) {
  return dir_.WriteHeaderBlock(location, block, direct_io_, sync);
}

Status LocalStore::Move(const std::string& from, const std::string& to, bool sync) {
  KVFS_RETURN_IF_ERROR(RenameOver(to, [&] { return dir_.Move(from, to, sync); }));
  if (!sync) return Status::Ok();
  KVFS_RETURN_IF_ERROR(dir_.SyncParent(to));
  if (from.substr(0, from.rfind('/')) != to.substr(0, to.rfind('/'))) KVFS_RETURN_IF_ERROR(dir_.SyncParent(from));
  return Status::Ok();
}

Status LocalStore::Remove(const std::string& location, bool sync) {
  if (!unlinker_) {
    KVFS_RETURN_IF_ERROR(dir_.Remove(location));
    return sync ? dir_.SyncParent(location) : Status::Ok();
  }
  // Out of objects/ by a rename, unlinked in the background.
  Result<FsStat> st = fs_->Lstat(dir_.Abs(location));
  if (!st.ok()) return st.status();
  const std::string name = NextStagingName(".gone");
  KVFS_RETURN_IF_ERROR(dir_.MoveToStaging(location, name));
  unlinker_->Add(dir_.StagingDir() + "/" + name, st->size);
  return sync ? dir_.SyncParent(location) : Status::Ok();
}

Status LocalStore::Quarantine(const std::string& location) { return dir_.Quarantine(location, "", true); }

Status LocalStore::Scan(const std::function<void(const ScannedObject&)>& fn, int threads) {
  // Headers are read through the page cache: a scan reads 4 KiB per object.
  return dir_.Scan(fn, threads, false);
}

Result<std::vector<std::string>> LocalStore::ListStaging() const { return dir_.ListStaging(); }

Status LocalStore::RemoveStaging(const std::string& name) { return dir_.RemoveStaging(name); }

void LocalStore::SettleRemovals(std::chrono::milliseconds timeout) {
  if (unlinker_) unlinker_->Drain(timeout);
}

uint64_t LocalStore::PendingRemovalBytes() const { return unlinker_ ? unlinker_->pending_bytes() : 0; }

void LocalStore::WaitForRemovals(uint64_t leave_at_most, std::chrono::milliseconds timeout) {
  if (unlinker_) unlinker_->WaitPendingAtMost(leave_at_most, timeout);
}

Result<StoreSpace> LocalStore::Space() const {
  Result<StoreSpace> space = FilesystemSpace(root_);
  // Removed objects still waiting for their unlink are as good as free.
  if (space.ok() && unlinker_) space->free_bytes += unlinker_->pending_bytes();
  return space;
}

}  // namespace kvfs
