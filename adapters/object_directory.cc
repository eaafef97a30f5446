#include "adapters/object_directory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>

#include "adapters/aligned_buffer.h"

namespace kvfs {
namespace {

std::string Dirname(const std::string& path) { return path.substr(0, path.rfind('/')); }

// Why a file with this description is not usable as an object, or OK.
Status CheckObjectType(const FsStat& st, const std::string& what) {
  if (st.is_symlink) return Status::Error(ELOOP, what + " is a symbolic link; not followed");
  if (!st.is_regular) return Status::Error(EINVAL, what + " is not a regular file");
  return Status::Ok();
}

}  // namespace

ObjectDirectory::ObjectDirectory(std::string root, FsClient* fs)
    : root_(std::move(root)), fs_(fs), checked_(new std::atomic<bool>[65536]) {
  for (size_t i = 0; i < 65536; ++i) checked_[i].store(false, std::memory_order_relaxed);
}

int ObjectDirectory::FanOutIndex(const std::string& location) const {
  // objects/xx/<name>, or objects/xx/yy/<name>
  const size_t prefix = std::strlen(kObjectsDir) + 1;
  const size_t name_at = prefix + 3 * static_cast<size_t>(levels_);
  if (location.size() <= name_at || location.compare(0, prefix, std::string(kObjectsDir) + "/") != 0) return -1;
  if (location.find('/', name_at) != std::string::npos) return -1;
  int value = 0;
  for (int level = 0; level < levels_; ++level) {
    const size_t at = prefix + 3 * static_cast<size_t>(level);
    if (location[at + 2] != '/') return -1;
    for (size_t i : {at, at + 1}) {
      char c = location[i];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return -1;
      value = value * 16 + d;
    }
  }
  return value;
}

Status ObjectDirectory::CheckFanOut(const std::string& location) {
  int index = FanOutIndex(location);
  if (index >= 0 && checked_[index].load(std::memory_order_acquire)) return Status::Ok();
  // Every directory between the root and the file itself.
  bool all_exist = true;
  for (size_t slash = location.find('/'); slash != std::string::npos; slash = location.find('/', slash + 1)) {
    Status s = CheckRealDirectory(Abs(location.substr(0, slash)), "store " + root_ + ": " + location.substr(0, slash));
    if (s.err() == ENOENT) {
      all_exist = false;
      break;
    }
    KVFS_RETURN_IF_ERROR(s);
  }
  if (index >= 0 && all_exist) checked_[index].store(true, std::memory_order_release);
  return Status::Ok();
}

std::string ObjectDirectory::LocationFor(const KeyHash& h) const {
  std::string hex = h.Hex();
  if (levels_ == 2) return std::string(kObjectsDir) + "/" + hex.substr(0, 2) + "/" + hex.substr(2, 2) + "/" + hex;
  return std::string(kObjectsDir) + "/" + hex.substr(0, 2) + "/" + hex;
}

Status ObjectDirectory::CheckRealDirectory(const std::string& path, const std::string& what) const {
  Result<FsStat> st = fs_->Lstat(path);
  if (!st.ok()) return Status::Error(st.err(), what + ": " + st.status().message());
  if (st->is_symlink) {
    return Status::Error(ELOOP, what + " is a symbolic link; kvfs does not follow links inside a store");
  }
  if (!st->is_dir) return Status::Error(ENOTDIR, what + " is not a directory");
  return Status::Ok();
}

Status ObjectDirectory::SetUp(const std::vector<std::string>& extra, bool create, int fan_out_levels,
                              bool make_fan_out) {
  if (fan_out_levels != 1 && fan_out_levels != 2) {
    return Status::Error(EINVAL, "store " + root_ + ": unknown number of fan-out levels " + std::to_string(fan_out_levels));
  }
  levels_ = fan_out_levels;
  std::vector<std::string> dirs = {kObjectsDir, kStagingDir, kQuarantineDir};
  dirs.insert(dirs.end(), extra.begin(), extra.end());
  for (const std::string& sub : dirs) {
    std::string path = root_ + "/" + sub;
    if (create) {
      Status s = fs_->Mkdir(path);
      if (!s.ok() && s.err() != EEXIST) return Status::Error(s.err(), "store " + root_ + ": " + s.message());
    }
    KVFS_RETURN_IF_ERROR(CheckRealDirectory(path, "store " + root_ + ": " + sub + "/"));
  }
  return create && make_fan_out && levels_ == 1 ? MakeFanOutDirs() : Status::Ok();
}

Status ObjectDirectory::MakeFanOutDirs() {
  // One listing first: on a store that has them all (every mount after the
  // first) this costs no mkdir at all, which matters on a distributed
  // filesystem.
  Result<std::vector<std::string>> have = fs_->ListDir(Abs(kObjectsDir));
  if (!have.ok()) return Status::Error(have.err(), "store " + root_ + ": objects/: " + have.status().message());
  std::vector<bool> present(256, false);
  for (const std::string& name : *have) {
    if (int index = FanOutIndex(std::string(kObjectsDir) + "/" + name + "/-"); index >= 0) present[index] = true;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    if (present[i]) continue;
    const std::string location = std::string(kObjectsDir) + "/" + kHex[i >> 4] + kHex[i & 15];
    Status s = fs_->Mkdir(Abs(location));
    if (!s.ok() && s.err() != EEXIST) return Status::Error(s.err(), "store " + root_ + ": " + location + ": " + s.message());
  }
  return Status::Ok();
}

Result<std::unique_ptr<StagingFile>> ObjectDirectory::CreateStaging(const std::string& name, bool direct) {
  std::string path = StagingDir() + "/" + name;
  Result<int> fd = fs_->Open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | (direct ? O_DIRECT : 0), 0600);
  if (!fd.ok()) return Status::Error(fd.err(), "create staging file: " + fd.status().message());
  return std::make_unique<StagingFile>(*fd, path);
}

Status ObjectDirectory::EnsureParentDirs(const std::string& location, bool sync) {
  size_t pos = 0;
  while ((pos = location.find('/', pos + 1)) != std::string::npos) {
    std::string dir = Abs(location.substr(0, pos));
    Status s = fs_->Mkdir(dir);
    if (s.ok()) {
      // Make the new directory entry itself durable (or leave it to the
      // store's next flush).
      if (sync) KVFS_RETURN_IF_ERROR(fs_->SyncDir(Dirname(dir)));
    } else if (s.err() == EEXIST) {
      KVFS_RETURN_IF_ERROR(CheckRealDirectory(dir, "store " + root_ + ": " + location.substr(0, pos)));
    } else {
      return s;
    }
  }
  return Status::Ok();
}

Status ObjectDirectory::RenameIntoPlace(const std::string& from, const std::string& location, bool sync_new_dirs) {
  KVFS_RETURN_IF_ERROR(CheckFanOut(location));
  Status s = fs_->Rename(from, Abs(location));
  if (s.ok() || s.err() != ENOENT) return s;
  KVFS_RETURN_IF_ERROR(EnsureParentDirs(location, sync_new_dirs));
  return fs_->Rename(from, Abs(location));
}

Status ObjectDirectory::Move(const std::string& from, const std::string& to, bool sync_new_dirs) {
  KVFS_RETURN_IF_ERROR(CheckFanOut(from));
  KVFS_RETURN_IF_ERROR(CheckFanOut(to));
  Status s = fs_->Rename(Abs(from), Abs(to));
  if (s.ok()) return s;
  if (s.err() != ENOENT || !fs_->Lstat(Abs(from)).ok()) return s;
  KVFS_RETURN_IF_ERROR(EnsureParentDirs(to, sync_new_dirs));
  return fs_->Rename(Abs(from), Abs(to));
}

Status ObjectDirectory::Remove(const std::string& location) { return fs_->Unlink(Abs(location)); }

Status ObjectDirectory::SyncParent(const std::string& location) { return fs_->SyncDir(Dirname(Abs(location))); }

Status ObjectDirectory::Quarantine(const std::string& location, const std::string& tag, bool sync_source) {
  std::string base = location.substr(location.rfind('/') + 1);
  std::string dst = QuarantineDir() + "/" + base + (tag.empty() ? "" : "." + tag) + "." + std::to_string(::time(nullptr));
  Status s = fs_->Rename(Abs(location), dst);
  if (!s.ok()) return Status::Error(s.err(), "quarantine: " + s.message());
  KVFS_RETURN_IF_ERROR(fs_->SyncDir(QuarantineDir()));
  return sync_source ? SyncParent(location) : Status::Ok();
}

Result<int> ObjectDirectory::OpenObject(const std::string& location, int flags) {
  std::string path = Abs(location);
  KVFS_RETURN_IF_ERROR(CheckFanOut(location));
  Result<int> fd = fs_->Open(path, flags | O_NOFOLLOW | O_NONBLOCK);
  if (!fd.ok()) {
    // O_NOFOLLOW on a symlink: ELOOP from the kernel; say what it was.
    if (fd.err() == ELOOP) return Status::Error(ELOOP, path + " is a symbolic link; not followed");
    return fd.status();
  }
  Result<FsStat> st = fs_->StatFd(*fd);
  Status type = st.ok() ? CheckObjectType(*st, path) : st.status();
  // O_NONBLOCK only guarded the open; I/O on the object is ordinary
  // (io_uring would answer EAGAIN instead of waiting on an O_NONBLOCK file).
  // (F_SETFL takes the status flags we opened with, O_NONBLOCK left out.)
  if (type.ok() && ::fcntl(*fd, F_SETFL, flags & ~O_NONBLOCK) != 0) type = Status::FromErrno("fcntl " + path);
  if (!type.ok()) {
    ::close(*fd);
    return type;
  }
  return fd;
}

Status ObjectDirectory::WriteHeaderBlock(const std::string& location, const uint8_t* block, bool direct, bool sync) {
  Result<int> fd = OpenObject(location, O_WRONLY | (direct ? O_DIRECT : 0));
  if (!fd.ok()) return fd.status();
  AlignedBuffer buf(kHeaderSize);
  if (!buf.p) {
    ::close(*fd);
    return Status::Error(ENOMEM, "header buffer");
  }
  std::memcpy(buf.p, block, kHeaderSize);
  ssize_t n = ::pwrite(*fd, buf.p, kHeaderSize, 0);
  int err = errno;
  Status s;
  if (n != static_cast<ssize_t>(kHeaderSize)) s = Status::FromErrno(n < 0 ? err : EIO, "write header " + Abs(location));
  else if (sync && ::fdatasync(*fd) != 0) s = Status::FromErrno("fdatasync " + Abs(location));
  ::close(*fd);
  return s;
}

Result<ScannedObject> ObjectDirectory::ReadObject(const std::string& location, bool direct) {
  Result<int> fd = OpenObject(location, O_RDONLY | (direct ? O_DIRECT : 0));
  if (!fd.ok()) return fd.status();
  ScannedObject obj;
  obj.location = location;
  Result<FsStat> st = fs_->StatFd(*fd);
  if (st.ok()) {
    obj.file_bytes = st->size;
    obj.file_id = st->file_id();
  }
  // The descriptor may be O_DIRECT: read into an aligned block.
  AlignedBuffer block(kHeaderSize);
  if (!block.p) {
    ::close(*fd);
    return Status::Error(ENOMEM, "header buffer");
  }
  ssize_t n = ::pread(*fd, block.p, kHeaderSize, 0);
  int err = errno;
  ::close(*fd);
  if (n < 0) obj.header = Status::FromErrno(err, "read header " + Abs(location));
  else obj.header = DecodeHeader(static_cast<uint8_t*>(block.p), static_cast<size_t>(n));
  return obj;
}

Result<ListedObject> ObjectDirectory::StatObject(const std::string& location) {
  Result<FsStat> st = fs_->Lstat(Abs(location));
  if (!st.ok()) return st.status();
  KVFS_RETURN_IF_ERROR(CheckObjectType(*st, Abs(location)));
  ListedObject o;
  o.location = location;
  o.file_id = st->file_id();
  o.file_bytes = st->size;
  return o;
}

Status ObjectDirectory::Walk(const std::function<void(const std::string&)>& fn, int threads) {
  Result<std::vector<std::string>> top = fs_->ListDir(Abs(kObjectsDir));
  if (!top.ok()) return top.status();
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  Status first_error;
  auto note = [&](const Status& s) {
    std::lock_guard<std::mutex> g(err_mu);
    if (first_error.ok()) first_error = s;
  };
  // Lists a fan-out directory into *out; false when it has vanished or must
  // not be used (then the reason is noted).
  auto list_fanout = [&](const std::string& location, std::vector<std::string>* out) {
    Status real = CheckRealDirectory(Abs(location), "store " + root_ + ": " + location);
    if (!real.ok()) {
      if (real.err() != ENOENT) note(real);
      return false;
    }
    Result<std::vector<std::string>> names = fs_->ListDir(Abs(location));
    if (!names.ok()) {
      if (names.err() != ENOENT) note(names.status());
      return false;
    }
    *out = std::move(*names);
    return true;
  };
  // Lists the leaf directory `leaf` and hands its entries to fn.
  auto visit_leaf = [&](const std::string& leaf, std::vector<std::string>* files) {
    if (!list_fanout(leaf, files)) return;
    // Every level is a real directory: publishes into it need not check again.
    if (int index = FanOutIndex(leaf + "/-"); index >= 0) checked_[index].store(true, std::memory_order_release);
    for (const std::string& name : *files) fn(leaf + "/" + name);
  };
  auto worker = [&] {
    std::vector<std::string> mids, files;
    for (size_t i = next.fetch_add(1); i < top->size(); i = next.fetch_add(1)) {
      std::string l1 = std::string(kObjectsDir) + "/" + (*top)[i];
      if (levels_ == 1) {
        visit_leaf(l1, &files);
        continue;
      }
      if (!list_fanout(l1, &mids)) continue;
      for (const std::string& mid : mids) visit_leaf(l1 + "/" + mid, &files);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  return first_error;
}

Status ObjectDirectory::Scan(const std::function<void(const ScannedObject&)>& fn, int threads, bool direct) {
  return Walk(
      [&](const std::string& location) {
        Result<ScannedObject> obj = ReadObject(location, direct);
        if (!obj.ok()) {
          if (obj.err() == ENOENT) return;  // removed meanwhile
          ScannedObject bad;
          bad.location = location;
          bad.header = obj.status();
          fn(bad);
          return;
        }
        fn(*obj);
      },
      threads);
}

Result<std::vector<std::string>> ObjectDirectory::ListStaging() const { return fs_->ListDir(StagingDir()); }

namespace {
bool IsStagingName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}
}  // namespace

Status ObjectDirectory::RemoveStaging(const std::string& name) {
  if (!IsStagingName(name)) return Status::Error(EINVAL, "bad staging name");
  return fs_->Unlink(StagingDir() + "/" + name);
}

Status ObjectDirectory::MoveToStaging(const std::string& location, const std::string& name) {
  if (!IsStagingName(name)) return Status::Error(EINVAL, "bad staging name");
  KVFS_RETURN_IF_ERROR(CheckFanOut(location));
  return fs_->Rename(Abs(location), StagingDir() + "/" + name);
}

Status ObjectDirectory::LinkIntoStaging(const std::string& location, const std::string& name) {
  if (!IsStagingName(name)) return Status::Error(EINVAL, "bad staging name");
  KVFS_RETURN_IF_ERROR(CheckFanOut(location));
  return fs_->Link(Abs(location), StagingDir() + "/" + name);
}

}  // namespace kvfs
