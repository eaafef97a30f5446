#include "adapters/dfs_store.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "adapters/aligned_buffer.h"
#include "adapters/manifest.h"
#include "adapters/object_directory.h"

namespace kvfs {
namespace {

constexpr const char* kObjectsDir = ObjectDirectory::kObjectsDir;
constexpr const char* kStagingDir = ObjectDirectory::kStagingDir;
constexpr const char* kClusterDir = "cluster";
constexpr const char* kProbeDir = "probe";

}  // namespace

bool ValidHostId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id[0] == '.') return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

Result<std::unique_ptr<DfsStore>> DfsStore::Open(const std::string& root_in, const DfsStoreOptions& options,
                                                 std::unique_ptr<FsClient> fs) {
  if (!ValidHostId(options.host_id)) {
    return Status::Error(EINVAL, "host id '" + options.host_id + "' must be letters, digits, '.', '-' or '_'");
  }
  if (!fs) fs = MakePosixFsClient();
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  Result<FsStat> st = fs->Stat(root);
  if (!st.ok()) {
    if (st.err() == ENOENT && !options.create_root) {
      return Status::Error(ENOENT, "store " + root + " does not exist (is the distributed filesystem mounted?)");
    }
    if (st.err() != ENOENT || !options.create_if_missing) return Status::Error(st.err(), "store " + root + ": " + st.status().message());
    KVFS_RETURN_IF_ERROR(MakeDirs(*fs, root));
    st = fs->Stat(root);
    if (!st.ok()) return Status::Error(st.err(), "store " + root + ": " + st.status().message());
  }
  if (!st->is_dir) return Status::Error(ENOTDIR, "store " + root + ": not a directory");
  if (::access(root.c_str(), R_OK | W_OK | X_OK) != 0 && fs->Describe() == "posix") {
    return Status::FromErrno("store " + root);
  }
  std::unique_ptr<DfsStore> store(new DfsStore(root, options.host_id, std::move(fs)));
  std::random_device rd;
  store->nonce_ = std::to_string(rd() % 1000000);
  Result<int> fan_out_levels = store->SetUpManifest(options.create_if_missing);
  if (!fan_out_levels.ok()) return fan_out_levels.status();
  // Fan-out directories on first use: every host lists each one at every
  // mount and every reconcile pass, and on a distributed filesystem each
  // listing is a round trip to its servers, so empty ones are not made.
  KVFS_RETURN_IF_ERROR(store->dir_.SetUp({kClusterDir, kProbeDir}, true, *fan_out_levels, false));
  KVFS_RETURN_IF_ERROR(store->Probe(options.direct_io));
  if (options.sweep_staging) store->SweepOwnStaging();
  store->cluster_ = std::make_unique<DfsCluster>(store->fs_.get(), root + "/" + kClusterDir,
                                                 root + "/" + kStagingDir, options.host_id, options.lease_ttl,
                                                 options.abandoned_after);
  return store;
}

Result<int> DfsStore::SetUpManifest(bool create_if_missing) {
  const std::string path = root_ + "/" + kManifestFileName;
  Result<std::string> text = ReadSmallFile(*fs_, path, 64 << 10);
  if (!text.ok() && text.err() == ENOENT) {
    if (!create_if_missing) return Status::Error(ENOENT, "store " + root_ + " has no manifest");
    // Decided under the cluster lock, with the manifest read again there: a
    // host that started at the same moment may have created the store (its
    // manifest and then objects/) since our first read.
    Status cd = fs_->Mkdir(root_ + "/" + kClusterDir);
    if (!cd.ok() && cd.err() != EEXIST) return Status::Error(cd.err(), "store " + root_ + ": " + cd.message());
    Status w = WithExclusiveLock(*fs_, root_ + "/" + kClusterDir + "/lock", std::chrono::milliseconds(10000), [&] {
      if (fs_->Stat(path).ok()) return Status::Ok();  // another host was first
      Result<std::vector<std::string>> names = fs_->ListDir(root_);
      if (!names.ok()) return names.status();
      for (const std::string& n : *names) {
        if (n == kObjectsDir) {
          return Status::Error(EPROTO, "has objects but no manifest; refusing to guess its format");
        }
      }
      std::string tmp = path + "." + host_id_ + "." + std::to_string(::getpid()) + ".tmp";
      Status s = WriteSmallFile(*fs_, tmp, StoreManifest::Current().Serialize());
      if (s.ok()) s = fs_->Link(tmp, path);
      (void)fs_->Unlink(tmp);
      if (s.ok()) (void)fs_->SyncDir(root_);
      return s;
    });
    if (!w.ok()) return Status::Error(w.err(), "store " + root_ + ": " + w.message());
    text = ReadSmallFile(*fs_, path, 64 << 10);
  }
  if (!text.ok()) return Status::Error(text.err(), "store " + root_ + ": " + text.status().message());
  Result<StoreManifest> manifest = StoreManifest::Parse(*text);
  if (!manifest.ok()) return Status::Error(EPROTO, "store " + root_ + ": " + manifest.status().message());
  Status c = manifest->CheckCompatible();
  if (!c.ok()) return Status::Error(c.err(), "store " + root_ + ": " + c.message());
  if (manifest->NeedsUpgrade() && create_if_missing) {
    // Under the cluster lock, with the manifest read again there (another
    // host may be upgrading it too).
    Status w = WithExclusiveLock(*fs_, root_ + "/" + kClusterDir + "/lock", std::chrono::milliseconds(10000), [&] {
      Result<std::string> now = ReadSmallFile(*fs_, path, 64 << 10);
      if (!now.ok()) return now.status();
      Result<StoreManifest> current = StoreManifest::Parse(*now);
      if (!current.ok()) return current.status();
      if (!current->NeedsUpgrade()) return Status::Ok();
      std::string tmp = path + "." + host_id_ + "." + std::to_string(::getpid()) + ".tmp";
      Status s = WriteSmallFile(*fs_, tmp, current->Upgraded().Serialize());
      if (s.ok()) s = fs_->Rename(tmp, path);
      if (!s.ok()) (void)fs_->Unlink(tmp);
      if (s.ok()) s = fs_->SyncDir(root_);
      return s;
    });
    if (!w.ok()) return Status::Error(w.err(), "store " + root_ + ": upgrading its manifest: " + w.message());
  }
  return manifest->FanOutLevels();
}

Status DfsStore::Probe(bool want_direct) {
  std::random_device rd;
  std::string path = root_ + "/" + kProbeDir + "/" + host_id_ + "~" + std::to_string(::getpid()) + "~" +
                     std::to_string((static_cast<uint64_t>(rd()) << 32) | rd());
  auto fail = [&](const std::string& what) {
    (void)fs_->Unlink(path);
    return Status::Error(EIO, "store " + root_ + ": startup probe failed: " + what);
  };
  AlignedBuffer out(4096), in(4096);
  if (!out.p || !in.p) return Status::Error(ENOMEM, "probe buffers");
  for (size_t i = 0; i < 4096; ++i) static_cast<uint8_t*>(out.p)[i] = static_cast<uint8_t>(i * 131 + 7);
  direct_io_ = false;
  Result<int> fd = Status::Error(EINVAL, "unset");
  if (want_direct) {
    fd = fs_->Open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
    if (fd.ok()) {
      if (::pwrite(*fd, out.p, 4096, 0) == 4096) {
        direct_io_ = true;
      } else {
        ::close(*fd);
        (void)fs_->Unlink(path);
        fd = Status::Error(EINVAL, "no O_DIRECT");
      }
    }
  }
  if (!direct_io_) {
    if (want_direct) spdlog::warn("store {}: the filesystem does not support O_DIRECT; using buffered I/O", root_);
    fd = fs_->Open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (!fd.ok()) return fail(fd.status().message());
    if (::pwrite(*fd, out.p, 4096, 0) != 4096) {
      ::close(*fd);
      return fail("write: " + std::string(std::strerror(errno)));
    }
  }
  bool synced = ::fdatasync(*fd) == 0;
  int err = errno;
  ::close(*fd);
  if (!synced) return fail("fdatasync: " + std::string(std::strerror(err)));
  fd = fs_->Open(path, O_RDONLY | (direct_io_ ? O_DIRECT : 0));
  if (!fd.ok()) return fail(fd.status().message());
  ssize_t n = ::pread(*fd, in.p, 4096, 0);
  ::close(*fd);
  if (n != 4096 || std::memcmp(in.p, out.p, 4096) != 0) return fail("the bytes read back differ from those written");
  Status u = fs_->Unlink(path);
  if (!u.ok()) return Status::Error(EIO, "store " + root_ + ": startup probe failed: " + u.message());
  return Status::Ok();
}

void DfsStore::SweepOwnStaging() {
  Result<std::vector<std::string>> names = dir_.ListStaging();
  if (!names.ok()) return;
  const std::string mine = host_id_ + "~";
  for (const std::string& name : *names) {
    if (name.rfind(mine, 0) != 0) continue;
    // <host>~<pid>~<n>.tmp: only files of processes of this host that are gone.
    pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + mine.size()));
    // (A predecessor that had our pid, as in a restarted container, is left
    // to the evicting host's sweep of files abandoned for long.)
    if (pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM)) continue;
    if (dir_.RemoveStaging(name).ok()) ++swept_;
  }
  if (swept_ > 0) spdlog::info("store {}: removed {} unfinished staging files of this host", root_, swept_);
}

std::string DfsStore::LocationFor(const KeyHash& h) const { return dir_.LocationFor(h); }

Result<std::unique_ptr<StagingFile>> DfsStore::CreateStaging(uint64_t /*final_bytes*/) {
  // Always as configured: each publish syncs its own file on a DFS, and a
  // DFS client's page cache is not another host's.
  return dir_.CreateStaging(host_id_ + "~" + std::to_string(::getpid()) + "~" + nonce_ + "-" +
                                std::to_string(staging_counter_.fetch_add(1)) + ".tmp",
                            direct_io_);
}

Status DfsStore::PublishUnsynced(StagingFile& file, const std::string& location) {
  // Durable on its own, the rename included: a DFS's servers are reached by
  // neither syncfs (SyncAll) nor an fsync of the file (SyncPublished), and
  // a DFS does not promise that a file's fsync carries its rename.
  if (::fdatasync(file.fd()) != 0) return Status::FromErrno("fdatasync " + file.path());
  KVFS_RETURN_IF_ERROR(dir_.RenameIntoPlace(file.path(), location, false));
  file.MarkPublished();
  return dir_.SyncParent(location);
}

Status DfsStore::Publish(StagingFile& file, const std::string& location) { return PublishUnsynced(file, location); }

Result<int> DfsStore::OpenForRead(const std::string& location) {
  return dir_.OpenObject(location, O_RDONLY | (direct_io_ ? O_DIRECT : 0));
}

Result<ListedObject> DfsStore::StatObject(const std::string& location) { return dir_.StatObject(location); }

// A DFS store makes header writes and renames durable one by one whatever
// `sync` says: SyncAll cannot reach the DFS's servers.
Status DfsStore::WriteHeaderBlock(const std::string& location, const uint8_t* block, bool /*sync*/) {
  return dir_.WriteHeaderBlock(location, block, direct_io_, true);
}

Status DfsStore::Move(const std::string& from, const std::string& to, bool /*sync*/) {
  KVFS_RETURN_IF_ERROR(dir_.Move(from, to, false));
  return dir_.SyncParent(to);
}

Status DfsStore::Remove(const std::string& location, bool sync) {
  KVFS_RETURN_IF_ERROR(dir_.Remove(location));
  return sync ? dir_.SyncParent(location) : Status::Ok();
}

Status DfsStore::Quarantine(const std::string& location) { return dir_.Quarantine(location, host_id_, false); }

Status DfsStore::Scan(const std::function<void(const ScannedObject&)>& fn, int threads) {
  return dir_.Scan(fn, threads, direct_io_);
}

Status DfsStore::List(const std::function<void(const ListedObject&)>& fn, int threads) {
  std::mutex fn_mu;
  return dir_.Walk(
      [&](const std::string& location) {
        Result<ListedObject> o = StatObject(location);
        if (!o.ok()) return;  // gone meanwhile (or unreadable: the next pass retries)
        std::lock_guard<std::mutex> g(fn_mu);
        fn(*o);
      },
      threads);
}

Result<std::vector<std::string>> DfsStore::ListStaging() const { return dir_.ListStaging(); }

Status DfsStore::RemoveStaging(const std::string& name) { return dir_.RemoveStaging(name); }

}  // namespace kvfs
