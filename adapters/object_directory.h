// ObjectDirectory: the on-store layout shared by every store kind, in one
// place. A store root holds
//   objects/xx/<hash>       published objects; xx = the first two hex digits
//                           of the key hash (256 fan-out directories, made
//                           when the store is set up, or on first use)
//   staging/<name>          versions being written (names chosen by the store)
//   quarantine/<base>.<tag> objects moved out of the namespace as damaged
// Stores made by earlier builds use two fan-out levels, objects/xx/yy/<hash>
// (65,536 leaf directories, made on first use); the manifest says which, and
// SetUp is told. Such a store keeps its layout.
// LocalStore and DfsStore own one each and add what is theirs (the lock, the
// manifest, cluster files, durability rules); everything that touches the
// three directories above goes through this class.
//
// Contract: nothing in the layout is followed as a symbolic link, and nothing
// that is not a regular file is opened as an object.
// - SetUp refuses a layout directory (objects/, staging/, quarantine/, or an
//   extra one the store names) that is a symlink or not a directory: ELOOP
//   or ENOTDIR, with the path in the message. Directories it creates are
//   0700 (private to the daemon's user).
// - Walk refuses a fan-out directory (objects/xx, or objects/xx/yy) that is a
//   symlink or not a directory, with ELOOP or ENOTDIR: the store is not
//   used, because a later publish would write through such a link. Renames
//   into objects/ and opens of objects check the fan-out directories of the
//   location the same way (once per directory: a checked one is remembered).
// - Object files are opened with O_NOFOLLOW and O_NONBLOCK (a FIFO planted in
//   objects/ cannot block) and must be regular files: ELOOP for a symlink,
//   EINVAL for anything else. Scan reports those through
//   ScannedObject::header like any other unreadable object.
// - Staging names are single path components; RemoveStaging removes only
//   the entry itself, never what a symlink points to.
//
// Paths given and returned are "locations" relative to the root, except
// where a function says "absolute". All filesystem access goes through the
// FsClient, which the caller owns and which must outlive this object.
//
// Thread-safety: SetUp is called once, before any other method. After it,
// every method may be called concurrently from any thread; the only mutable
// state is the set of fan-out directories already checked (atomic flags).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adapters/fs_client.h"
#include "adapters/key_hash.h"
#include "adapters/status.h"
#include "adapters/store.h"

namespace kvfs {

class ObjectDirectory {
 public:
  static constexpr const char* kObjectsDir = "objects";
  static constexpr const char* kStagingDir = "staging";
  static constexpr const char* kQuarantineDir = "quarantine";

  ObjectDirectory(std::string root, FsClient* fs);

  const std::string& root() const { return root_; }
  FsClient& fs() const { return *fs_; }
  std::string Abs(const std::string& location) const { return root_ + "/" + location; }
  std::string StagingDir() const { return root_ + "/" + kStagingDir; }
  std::string QuarantineDir() const { return root_ + "/" + kQuarantineDir; }

  // objects/xx/<hex of h> (objects/xx/yy/<hex of h> in a two-level store):
  // the same on every host that uses the store.
  std::string LocationFor(const KeyHash& h) const;

  // Sets the number of fan-out levels (1 or 2, from the store's manifest;
  // EINVAL otherwise). With create, makes objects/, staging/, quarantine/
  // and each of `extra` (names directly under the root) where missing, mode
  // 0700, and with make_fan_out (a one-level store only) the 256 fan-out
  // directories, so that no publish waits for a mkdir; then checks that each
  // of the named directories is a real directory (not a symlink). Fan-out
  // directories not made here are made on first use. Errors: ELOOP,
  // ENOTDIR, ENOENT (missing and not created), or what mkdir/lstat said.
  Status SetUp(const std::vector<std::string>& extra, bool create, int fan_out_levels, bool make_fan_out);
  int fan_out_levels() const { return levels_; }

  // Creates a new staging file staging/<name> (O_EXCL, O_NOFOLLOW, mode
  // 0600), O_DIRECT when direct.
  Result<std::unique_ptr<StagingFile>> CreateStaging(const std::string& name, bool direct);

  // Renames the absolute path `from` to location (replacing), creating the
  // fan-out directories when they are missing; with sync_new_dirs, each new
  // directory's entry is made durable (its parent is fsync'ed).
  Status RenameIntoPlace(const std::string& from, const std::string& location, bool sync_new_dirs);
  // Renames one location to another (replacing), creating the fan-out
  // directories of `to` when missing. ENOENT when `from` does not exist.
  Status Move(const std::string& from, const std::string& to, bool sync_new_dirs);
  // Unlinks the object at location. ENOENT when none.
  Status Remove(const std::string& location);
  // Moves the entry at location (whatever it is; a symlink moves as the
  // link) into quarantine/ as <base>.<tag>.<unix time> (<base>.<unix time>
  // when tag is empty) and syncs quarantine/; with sync_source, also the
  // directory it left.
  Status Quarantine(const std::string& location, const std::string& tag, bool sync_source);
  // fsync of the directory holding location.
  Status SyncParent(const std::string& location);

  // Opens the object at location with `flags` (O_RDONLY or O_WRONLY, plus
  // O_DIRECT as the store uses), never following a symlink and never
  // blocking on a FIFO. ENOENT when none; ELOOP for a symlink; EINVAL for
  // anything that is not a regular file.
  Result<int> OpenObject(const std::string& location, int flags);
  // Overwrites the 4 KiB header block of the object at location; with sync,
  // fdatasyncs it.
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool direct, bool sync);
  // Reads the header block of the object at location, with its identity and
  // size. ENOENT when none; other open errors as OpenObject.
  Result<ScannedObject> ReadObject(const std::string& location, bool direct);
  // The identity and size of the object at location, without following a
  // symlink. ENOENT when none; ELOOP / EINVAL as OpenObject.
  Result<ListedObject> StatObject(const std::string& location);

  // Calls fn(location) for every entry of every leaf directory of objects/,
  // from up to `threads` threads (fn must be thread-safe). A fan-out
  // directory that vanishes meanwhile is skipped; one that is a symlink or
  // not a directory, or that cannot be listed, makes Walk return that error
  // (after the rest of the walk).
  Status Walk(const std::function<void(const std::string&)>& fn, int threads);
  // Walk + ReadObject: every object with its decoded header; an object that
  // vanished meanwhile is skipped, any other failure is reported in
  // ScannedObject::header.
  Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads, bool direct);

  // Names in staging/.
  Result<std::vector<std::string>> ListStaging() const;
  // Unlinks staging/<name>; EINVAL for a name that is not one component.
  Status RemoveStaging(const std::string& name);
  // Renames the object at location to staging/<name> (the name is gone from
  // objects/ at once; the file is the caller's to unlink). ENOENT when none.
  Status MoveToStaging(const std::string& location, const std::string& name);
  // Makes staging/<name> another name of the object at location, so that a
  // rename over location does not free the object's blocks. ENOENT when none.
  Status LinkIntoStaging(const std::string& location, const std::string& name);

 private:
  // Creates the fan-out directories of location that are missing.
  Status EnsureParentDirs(const std::string& location, bool sync);
  // OK when path is a directory and not a symlink.
  Status CheckRealDirectory(const std::string& path, const std::string& what) const;
  // OK when every directory on the way to location (objects/, objects/xx,
  // objects/xx/yy) is a real directory or does not exist yet.
  Status CheckFanOut(const std::string& location);
  // The fan-out directory of location as an index (xx, or xx * 256 + yy in
  // a two-level store), or -1 when location has another form.
  int FanOutIndex(const std::string& location) const;
  // Makes the 256 fan-out directories of a one-level store that are missing.
  Status MakeFanOutDirs();

  std::string root_;
  FsClient* fs_;
  int levels_ = 1;
  std::unique_ptr<std::atomic<bool>[]> checked_;  // by FanOutIndex
};

}  // namespace kvfs
