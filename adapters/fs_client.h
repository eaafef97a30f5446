// FsClient: the small filesystem interface a shared (DFS) store is written
// against, so that the store's layout and protocol do not depend on how the
// distributed filesystem is reached.
//
// PosixFsClient goes through the kernel: a DFS mounted with its own FUSE or
// kernel client (CephFS, GlusterFS, JuiceFS, Lustre, 3FS's FUSE). A native
// client (3FS USRBIO, librados, libgfapi) can implement the same calls
// without a mount. Descriptors returned by Open must support pread/pwrite,
// fdatasync and io_uring reads, because the engine moves object bytes with
// them; a native client that has no kernel descriptors would add its own
// data path next to this interface.
//
// Paths are absolute. Every call reports failures as Status with the errno
// the filesystem gave. Thread-safety: implementations must allow concurrent
// calls from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adapters/file_identity.h"
#include "adapters/status.h"
#include "adapters/store.h"

namespace kvfs {

// What a client's stat calls report: FileStatus's fields (ino, birth_ns,
// size, mode, mtime_ns and the file_id() they give) and the file's type.
// A client reports birth_ns for every call on a file or for none (file_id()
// must not change between two calls on one file), and the same as statx(2)
// on a descriptor Open gave (Store::FileIdOf takes identities that way).
struct FsStat : FileStatus {
  bool is_dir = false;
  bool is_regular = false;
  bool is_symlink = false;  // only ever true from Lstat
};

class FsClient {
 public:
  virtual ~FsClient() = default;
  virtual std::string Describe() const = 0;
  // open(2): a descriptor the caller closes with ::close.
  virtual Result<int> Open(const std::string& path, int flags, mode_t mode = 0600) = 0;
  virtual Result<FsStat> Stat(const std::string& path) = 0;
  virtual Result<FsStat> StatFd(int fd) = 0;
  // Like Stat, but a symlink at path is described itself (is_symlink), not
  // followed. The default asks the kernel (lstat(2)); a client that does not
  // go through the kernel's VFS overrides it.
  virtual Result<FsStat> Lstat(const std::string& path);
  // EEXIST when the directory exists. New directories are 0700: store
  // directories are private to the daemon's user.
  virtual Status Mkdir(const std::string& path) = 0;
  // Atomic replace of `to`.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // Atomic create of `to` as another name of `from`; EEXIST when `to` exists.
  // The primitive that lets exactly one of several hosts create a name.
  virtual Status Link(const std::string& from, const std::string& to) = 0;
  virtual Status Unlink(const std::string& path) = 0;
  // Names in a directory, without "." and "..".
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // Makes the entries of a directory durable (a no-op where the DFS has no
  // such notion).
  virtual Status SyncDir(const std::string& path) = 0;
  virtual Result<StoreSpace> StatFs(const std::string& path) = 0;
  // Takes an exclusive lock on the file at path (created if missing) without
  // waiting: a descriptor that holds it until closed, or EAGAIN when another
  // holder (any host, any process, another descriptor of this process) has
  // it. The lock must be released by the DFS when its holder dies.
  virtual Result<int> TryLockExclusive(const std::string& path) = 0;
};

std::unique_ptr<FsClient> MakePosixFsClient();

// Helpers on top of any FsClient.
// mkdir -p; existing directories are fine.
Status MakeDirs(FsClient& fs, const std::string& path);
// Writes a whole small file (created or truncated) and fdatasyncs it.
Status WriteSmallFile(FsClient& fs, const std::string& path, const std::string& text);
// Replaces a small file atomically: writes tmp, then renames it over path.
// Other clients of a DFS see the new contents at once (a new inode), where an
// in-place rewrite can stay hidden behind their page cache (GlusterFS).
Status ReplaceSmallFile(FsClient& fs, const std::string& path, const std::string& tmp, const std::string& text);
// Reads a whole small file (at most max_bytes).
Result<std::string> ReadSmallFile(FsClient& fs, const std::string& path, size_t max_bytes = 1 << 20);
// Runs fn while holding the exclusive lock on lock_path, retrying the lock
// for up to `wait`; ETIMEDOUT when it could not be taken in time. Used for
// the rare decisions that exactly one host must make (creating the manifest,
// taking over the evictor lease): on some DFSs (GlusterFS's distribute
// layer) two hosts racing link() onto one new name can both succeed.
Status WithExclusiveLock(FsClient& fs, const std::string& lock_path, std::chrono::milliseconds wait,
                         const std::function<Status()>& fn);

}  // namespace kvfs
