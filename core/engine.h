// Engine: kvfs as a library, and its front door. It implements every file
// operation in terms of inode numbers and names, the way the FUSE low-level
// API asks for them, without depending on FUSE. Tests and benchmarks drive
// it directly.
//
// Contract (see docs/contract.md for the user-visible version):
//  - A created or O_TRUNC-opened file starts a new version in a Draft.
//    Writes go to the draft. The version is committed when the last writer
//    flushes (or at fsync): data and header are written with O_DIRECT to a
//    staging file, then renamed into place and the index switched (made
//    durable at once, or by the background flush; see EngineOptions).
//    Until then other handles see the previous version, and a new key is
//    invisible to every other process (Lookup gives ENOENT, ReadDir skips it).
//  - Opening a file takes a Lease on its current version. Unlink or
//    replacement removes the name at once; leased bytes stay readable through
//    the handle until it is released, then their space is returned.
//  - Directories are persisted as header-only records, so empty directories
//    survive restarts. The index is rebuilt from the stores at Start.
//
// Parts, each with its own header, state and lock (docs/architecture.md
// follows a read and a commit through them):
//  - Namespace (core/namespace.h): the index of inodes and names, under mu_;
//  - SpaceManager (core/space_manager.h): capacity, floors, reservations,
//    the eviction policies and the evictor thread; the Engine is its
//    SpaceHost (engine_space.cc: taking a victim out of the index);
//  - PublishQueue (core/publish_queue.h): the publish step of commits, in
//    groups; a commit's step is an Engine::CommitJob (engine_commit.cc);
//  - SharedTier (core/shared_tier.h): the reconciler and the evictor lease
//    of shared stores; the Engine is its SharedIndex (engine_shared.cc);
//  - BackgroundSync, ReadAhead, BufferPool and IoExecutor (their headers).
// The Engine's own files: engine.cc (life cycle, attributes, debugging
// surface, statistics), engine_namespace.cc (lookup, mkdir, rmdir, unlink,
// rename, readdir, setattr), engine_special.cc (symbolic links, FIFOs,
// sockets and device nodes), engine_files.cc (create, open, write, flush,
// release, page-cache choices), engine_commit.cc (commit and store writes),
// engine_read.cc (reads, read-ahead, quarantine), engine_rebuild.cc (the
// index from the stores at start).
//
// Thread-safety: every public method may be called from any thread at any
// time. Lock order (a thread holding a lock takes only locks below it):
//  1. a Draft's lock. A commit holds it while it reserves space, which may
//     evict under publish_mu_ and mu_, so no code takes a draft's lock while
//     holding mu_, except on a draft nobody else can see yet. The group's
//     leader (PublishQueue) may lock another committer's draft under
//     publish_mu_: that committer waits for the leader and holds none.
//  2. publish_mu_: namespace changes that touch a store, and the publish
//     step of every commit (PublishQueue runs its groups under it).
//  3. mu_: the index (Namespace, next_generation_, open handles).
//  4. leaves, held only briefly and never while taking another engine
//     lock: SpaceManager's policy_mu_, a Version's lease mutex
//     (LeaseState::mu; held across the store calls that open the version's
//     descriptor and read its checksum table, so only 5 is taken under it),
//     the draft chunk cache's lock (draft.cc), a FileHandle's cache_mu,
//     PublishQueue's queue_mu_, SharedTier's access_mu_ and mu_,
//     SpaceManager's evictor_mu_, BackgroundSync's, ReadAhead's and
//     BufferPool's own locks, and the locks that collect the results of a
//     parallel store scan (engine_rebuild.cc, engine_shared.cc, fsck.cc).
//  5. the stores' own locks (adapters/), taken only inside a store call.
// Store I/O happens with no engine lock held, except publish renames, syncs
// and removals under publish_mu_, a draft's spill and write-out under its
// lock, and a lease's open under the version's lease mutex (never under
// mu_: a store that stalls must not stall lookups). Clang's thread-safety
// analysis checks the annotated parts of this order
// (packaging/thread-safety-check.sh).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "adapters/mutex.h"
#include "adapters/store.h"
#include "core/background_sync.h"
#include "adapters/buffer_pool.h"
#include "core/engine_types.h"
#include "adapters/io_ring.h"
#include "core/namespace.h"
#include "core/process_table.h"
#include "core/publish_queue.h"
#include "core/read_ahead.h"
#include "core/shared_tier.h"
#include "core/space_manager.h"

namespace kvfs {


class Engine : private SpaceHost, private SharedIndex {
 public:
  // Takes ownership of the stores (at least one), rebuilds the index from
  // them, and returns a ready engine.
  static Result<std::unique_ptr<Engine>> Start(const EngineOptions& options,
                                              std::vector<std::unique_ptr<Store>> stores);
  ~Engine();

  void SetObserver(EngineObserver* observer) { observer_.store(observer); }
  // Answers which thread belongs to which process (see core/process_table.h);
  // null (the default): a pending key is invisible to its creator too, and
  // every flush of a handle with no writes commits. Outlives the engine.
  void SetProcessTable(ProcessTable* table) { process_table_.store(table); }

  // Namespace. Lookup, Mkdir and Create add one kernel lookup reference to
  // the inode they return; Forget drops n of them.
  // A key still being written (pending) is found only by the process that
  // created it: `thread` is the asking thread (0: unknown; see GetAttr), and
  // its answer has pending and size_in_flux set (the kernel must keep
  // neither the name nor the attributes). Anyone
  // else gets ENOENT, with *refused_pending set (when given) so that the
  // front end does not let the kernel keep that miss either: the creator's
  // next lookup must reach the engine.
  Result<Attr> Lookup(uint64_t parent, std::string_view name, uint64_t thread = 0,
                      bool* refused_pending = nullptr);
  void Forget(uint64_t ino, uint64_t n);
  // With a handle, attributes as that handle sees them (its draft or leased
  // version); without, the committed state.
  // `thread` identifies the asking thread (0: unknown); its low 32 bits are
  // the kernel's thread id (FUSE's request pid): a thread that opened or
  // wrote the key's draft sees the draft's size even without a handle
  // (fstat reaches the engine without one).
  Result<Attr> GetAttr(uint64_t ino, FileHandle* handle, uint64_t thread = 0);
  Result<Attr> SetAttr(uint64_t ino, const SetAttrRequest& request, FileHandle* handle);
  // Clears a file's set-user-ID bit, and its set-group-ID bit when group
  // execute is set too (without it the bit is not a privilege), as a write,
  // truncate or chown by a caller without CAP_FSETID must (the kernel says
  // when). Persisted as a chmod is. Nothing to do: OK at once.
  Status ClearSetIdBits(uint64_t ino);
  Result<Attr> Mkdir(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid);
  // Special files (engine_special.cc): namespace-only records, committed
  // (visible to everyone, persisted on the key's store like a directory's
  // record) before the call returns, removed by Unlink, moved by Rename.
  // A symbolic link's target is its record's data: 1 to 4095 bytes
  // (ENOENT when empty, ENAMETOOLONG when longer).
  Result<Attr> Symlink(uint64_t parent, std::string_view name, std::string_view target, uint32_t uid, uint32_t gid);
  // EINVAL when ino is not a symbolic link; EIO when its record cannot be
  // read or fails its checksum.
  Result<std::string> Readlink(uint64_t ino);
  // mode's type: S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK make a record (rdev
  // kept for the device types); S_IFREG makes an empty file, committed at
  // once as creat() followed by close() would; any other type: EINVAL.
  Result<Attr> Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint32_t rdev, uint32_t uid,
                     uint32_t gid);
  Status Rmdir(uint64_t parent, std::string_view name);
  Status Unlink(uint64_t parent, std::string_view name);
  // flags: RENAME_NOREPLACE is honoured; RENAME_EXCHANGE gives EINVAL.
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                unsigned flags);

  // Files. flags are open(2) flags.
  // `thread` identifies the opening thread (0: unknown), see GetAttr.
  Result<OpenResult> Create(uint64_t parent, std::string_view name, uint32_t mode, int flags, uint32_t uid,
                            uint32_t gid, uint64_t thread = 0);
  // ESTALE when the inode no longer stands for the key: it was replaced or
  // removed between the kernel's lookup and this open (twice in a row), or
  // the open writes in place while page-cache readers hold it and the key
  // moved to a fresh inode. The kernel looks the name up again and retries.
  // Create answers the same for an existing key, which it opens as Open does.
  Result<OpenResult> Open(uint64_t ino, int flags, uint64_t thread = 0);
  Status Read(FileHandle* handle, uint64_t offset, size_t size, ReadReply* out);
  // owner identifies the writing process (FUSE lock_owner: one value per
  // file table, shared by threads, different in a forked child); 0 = unknown.
  // thread identifies the writing thread (0: unknown), see GetAttr.
  Result<size_t> Write(FileHandle* handle, uint64_t offset, const void* data, size_t size, uint64_t owner = 0,
                       uint64_t thread = 0);
  // fallocate(2) on a handle open for writing: mode 0 grows the handle's
  // version to offset + length (never shrinks it; kvfs keeps no blocks for
  // bytes not yet written, so only the capacity is checked), KEEP_SIZE alone
  // checks and changes nothing, PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE (with or
  // without KEEP_SIZE) write zeros over the range, within the size when
  // KEEP_SIZE is given. Like a write, it becomes part of the version
  // committed at close. EOPNOTSUPP for other modes (COLLAPSE_RANGE,
  // INSERT_RANGE, UNSHARE_RANGE); EBADF, EINVAL, EFBIG, ENOSPC as write.
  Status Fallocate(FileHandle* handle, int mode, uint64_t offset, uint64_t length, uint64_t owner = 0,
                   uint64_t thread = 0);
  // Commits the draft when this handle is its last writer. A flush from an
  // owner that never wrote through the handle (a forked child closing its
  // inherited copy) does not commit. A handle with no writes yet (an empty
  // or truncated version) commits at a flush from its opener's process
  // that holds no other descriptor for writing on the file; a flush from
  // another process, or while the process can still write through a
  // duplicate (a shell's `>`: open, dup2, close), leaves the commit to a
  // later flush or the release. Without a ProcessTable, or with an unknown
  // thread, it commits at any flush. other_owner is a second identity of the
  // flusher (0: none), the flushing thread's: writes that arrive without a
  // lock owner (the kernel's page-cache writes) are recorded under the
  // writing thread's identity, which the flush passes here.
  Status Flush(FileHandle* handle, uint64_t owner = 0, uint64_t other_owner = 0);
  // Commits the draft now (other writers keep writing into a new version).
  Status Fsync(FileHandle* handle);
  void Release(FileHandle* handle);
  // Releases a handle whose open never reached the caller (the kernel dropped
  // the reply): nothing it started is committed.
  void Abandon(FileHandle* handle);

  // Directories: calls emit for entries with offset > `offset` in listing
  // order until it returns false. With plus, each emitted entry carries its
  // full attributes and gains a lookup reference (only when emit returns
  // true); without, only its inode number and mode are set (all a plain
  // listing reports).
  Status ReadDir(uint64_t ino, uint64_t offset, bool plus, const std::function<bool(const DirEntry&)>& emit);

  // Debugging surface: what the index holds for an inode. ENOENT when the
  // inode is not known.
  Result<InodeInfo> Inspect(uint64_t ino) const;

  EngineStats Stats() const;
  const EngineOptions& options() const { return options_; }
  // Runs one pass of the background evictor now (tests use it instead of
  // waiting for the evictor thread). Returns the number of objects evicted.
  size_t EvictNow();
  size_t store_count() const { return stores_.size(); }
  // Shared stores: waits until the reconciler has completed a whole pass
  // that started after this call (tests use it instead of sleeping). False
  // on timeout or when there is no shared store.
  bool WaitForReconcile(std::chrono::milliseconds timeout);
  // Background durability: waits until every change made before this call
  // has been flushed by the background sync (tests use it instead of
  // sleeping). True at once in kClose mode; false on timeout.
  bool WaitForBackgroundSync(std::chrono::milliseconds timeout);

 private:
  Engine(const EngineOptions& options, std::vector<std::unique_ptr<Store>> stores);
  Status Rebuild();

  // Helpers below document which locks they expect.
  Attr AttrOfLocked(const Inode* inode, const FileHandle* handle, uint64_t thread = 0) const KVFS_REQUIRES(mu_);
  // Records a thread that opened or wrote a handle's draft (see GetAttr).
  static void NoteDraftThreadLocked(FileHandle* handle, uint64_t thread);              // mu_
  // Flush of a handle nothing was written through: whether the flushing
  // thread is the opener's process and holds no other descriptor for
  // writing on the file (see Flush). Asks the ProcessTable; takes no lock.
  bool FlusherMayCommitUnwritten(const FileHandle* handle, uint64_t flusher, uint64_t ino);
  // Room for a new namespace record (a directory's or a special file's, of
  // `footprint` bytes) under parent/name, reserved on the store its key
  // hashes to before the caller takes publish_mu_ (a reservation may evict,
  // which takes it); the reservation is returned when the result goes, by
  // which time the record's version is charged to the store's account.
  // ENOSPC when the store has no room even after eviction.
  class RecordRoom {
   public:
    RecordRoom(SpaceManager* space, uint32_t store, uint64_t bytes) : space_(space), store_(store), bytes_(bytes) {}
    RecordRoom(RecordRoom&& o) noexcept : space_(o.space_), store_(o.store_), bytes_(o.bytes_) { o.bytes_ = 0; }
    RecordRoom(const RecordRoom&) = delete;
    RecordRoom& operator=(const RecordRoom&) = delete;
    RecordRoom& operator=(RecordRoom&&) = delete;
    ~RecordRoom() {
      if (bytes_) space_->Release(store_, bytes_);
    }

   private:
    SpaceManager* space_;
    uint32_t store_;
    uint64_t bytes_;
  };
  Result<RecordRoom> ReserveRecordRoom(uint64_t parent, std::string_view name, uint64_t footprint)
      KVFS_EXCLUDES(publish_mu_, mu_);
  Result<Inode*> ChildForChangeLocked(uint64_t parent, std::string_view name) KVFS_REQUIRES(mu_);
  // With `lease` (taken by the caller without the lock) the handle reads that
  // version; otherwise the current one is leased here, under the lock.
  Result<OpenResult> OpenLocked(Inode* inode, int flags, Lease lease = Lease()) KVFS_REQUIRES(mu_);
  Result<std::shared_ptr<Draft>> DraftForWrite(FileHandle* handle) KVFS_EXCLUDES(publish_mu_, mu_);
  // DraftForWrite for a change through the handle (a write, a fallocate):
  // EBADF unless writable, EIO for a broken draft; records the owner and
  // thread as a writer's and marks the handle unflushed.
  Result<std::shared_ptr<Draft>> DraftForChange(FileHandle* handle, uint64_t owner, uint64_t thread)
      KVFS_EXCLUDES(publish_mu_, mu_);
  // A key is about to be written in place while page-cache readers have its
  // inode open. The kernel's file size belongs to the inode, so the writer
  // must not share it with them: the key moves to a fresh inode (same
  // version, same place in its directory) and the old one keeps serving only
  // its open handles, as if unlinked. Returns the fresh inode. The caller
  // then answers ESTALE (the kernel looks the name up again and opens the
  // fresh inode) or, for a CREATE, replies with the fresh inode.
  Inode* SupersedeLocked(Inode* old) KVFS_REQUIRES(publish_mu_, mu_);
  // Whether an open with these flags (or a truncate) writes the inode in
  // place while page-cache readers have it open.
  static bool WritesUnderCacheReaders(const Inode* inode, int flags);
  // For an open (or truncate) of ino that writes under page-cache readers:
  // moves the key to a fresh inode (takes publish_mu_ and mu_) and returns
  // ESTALE, so that the kernel looks the name up again and retries on the
  // fresh inode.
  Status SendWriterToFreshInode(uint64_t ino, int flags) KVFS_EXCLUDES(publish_mu_, mu_);
  // The common part: takes publish_mu_ and mu_, finds the inode again with
  // `find` (called under mu_; null: gone) and supersedes it if it is still
  // linked and still written under page-cache readers.
  void SupersedeUnderCacheReaders(int flags, const std::function<Inode*()>& find) KVFS_EXCLUDES(publish_mu_, mu_);
  // Decides how the kernel may cache a handle just opened on inode.
  void ChooseCachingLocked(Inode* inode, FileHandle* handle, int flags, OpenResult* r) KVFS_REQUIRES(mu_);
  uint32_t StoreIndexFor(const std::string& key) const;
  Status CommitDraft(Inode* inode, std::shared_ptr<Draft> draft) KVFS_EXCLUDES(publish_mu_, mu_);
  // The commit of an empty version over an empty one (an O_TRUNC open of an
  // empty key, closed without a write): the bytes stay the same, so the
  // committed version's header takes the new times (and attributes) in
  // place, as a chmod would, instead of a new object file. False (nothing
  // done) when the committed version is not empty, not at its key's
  // location, or on a shared store: then the commit goes the full way.
  // Called by CommitDraft with inode->committing set; holds the draft's
  // lock throughout (writes wait), and marks the draft clean when done.
  Result<bool> CommitAsTimesOnly(Inode* inode, Draft* draft) KVFS_EXCLUDES(publish_mu_, mu_);
  // The publish step of a commit (engine_commit.cc), run by PublishQueue.
  class CommitJob;
  // Puts a staging file in place at location: durably (Store::Publish), or
  // linked and left to the background sync when the store's syncs are deferred.
  Status PublishStaging(uint32_t store_index, StagingFile& staging, const std::string& location) KVFS_EXCLUDES(mu_);
  // Removes a version's object file (durably unless the store's syncs are deferred).
  Status RemoveObject(const Version& version) KVFS_EXCLUDES(mu_);
  // A new draft of inode, which spills to a staging file on the key's store.
  std::shared_ptr<Draft> NewDraftLocked(Inode* inode) KVFS_REQUIRES(mu_);
  // Writes a draft's version (header, bytes, checksum table) into a staging
  // file: the draft's spill file when it has one (out stays empty), a new
  // staging file in *out otherwise. The header is written in the current
  // format (header->format set so), a file's with its checksum derived from
  // the table written (header->checksum set so); the caller records that
  // header for the version.
  Status WriteObject(Store* store, ObjectHeader* header, Draft* draft,
                     std::unique_ptr<StagingFile>* out) KVFS_REQUIRES(draft->mutex());
  // WriteObject's path for a draft that did not spill, has no holes and
  // whose file is at most Store::kBufferedStagingMax: the file is built in
  // memory and handed to Store::CreateStagingWith (one store call).
  Status WriteSmallObject(Store* store, ObjectHeader* header, Draft* draft,
                          std::unique_ptr<StagingFile>* out) KVFS_REQUIRES(draft->mutex());
  Result<std::shared_ptr<Version>> PublishRecord(uint32_t store_index, ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  Status RewriteHeader(const std::shared_ptr<Version>& version, ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  // Writes header (generation already assigned) into the slot of the object's
  // header block that is not current, keeping the current one, then makes it
  // the version's header: a torn write leaves the old header valid. The
  // index keeps no key in a version's header: current_key is the current
  // header's key. The data fields (size, checksum, format) are the
  // version's own whatever header says: only names, attributes and times
  // change in a rewrite.
  Status WriteSpareHeaderSlot(Version* version, const std::string& current_key, ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  Status LoadDraft(const std::shared_ptr<Version>& version, Draft* draft) KVFS_EXCLUDES(mu_) KVFS_REQUIRES(draft->mutex());
  // Whether data bytes [off, end) of a leased version are a hole in its
  // object file and its chunk checksums say zeros there, so the range need
  // not be read (a read would give zeros). Asked only of a local store: an
  // lseek on a distributed filesystem has no deadline.
  bool StoredHole(Version* v, uint64_t off, uint64_t end);
  // Reads and verifies the chunks covering [offset, end) of a leased version.
  // EBADMSG when the object is damaged (checksum, short file), EIO when the
  // store failed.
  Result<std::shared_ptr<ChunkSpan>> ReadChunks(Version* version, uint64_t offset, uint64_t end) KVFS_EXCLUDES(publish_mu_, mu_);
  // After a read of [offset, end) through handle (served from span_end's
  // chunks): when the handle reads sequentially, starts reading the next
  // read_ahead_bytes in the background, from past both span_end and every
  // read of the handle's current pass that has arrived (a reader with
  // several reads in flight is not read ahead of twice; see
  // FileHandle::requested_end).
  void MaybeReadAhead(FileHandle* handle, const std::shared_ptr<Version>& v, uint64_t offset, uint64_t end,
                      uint64_t span_end) KVFS_EXCLUDES(publish_mu_, mu_);
  // Takes a corrupt version out of service: EIO was returned, now the name
  // goes and the file moves to the store's quarantine.
  void QuarantineVersion(Inode* inode, const std::shared_ptr<Version>& version, const std::string& why) KVFS_EXCLUDES(publish_mu_, mu_);
  // Moves inode's committed object from the key it carries (from_key) to
  // to_key, on the store to_key hashes to; nothing when it has none. On
  // failure the object keeps from_key.
  Status MoveObject(Inode* inode, const std::string& from_key, const std::string& to_key) KVFS_REQUIRES(publish_mu_);
  // Moves the objects of inode and of everything under it to keys under
  // new_key (the namespace is left to the caller). All or nothing: when one
  // move fails, those done are moved back (a failure of that is logged) and
  // the first error is returned.
  Status MoveTree(Inode* inode, const std::string& new_key) KVFS_REQUIRES(publish_mu_);
  // What MoveTree did so far: the inodes it pinned, and the moves to undo.
  struct TreeMove {
    std::vector<Inode*> pinned;
    struct Step {
      Inode* inode;
      std::string from_key, to_key;
    };
    std::vector<Step> done;
  };
  // The work of MoveTree, recursively, recorded in *work; inode is pinned.
  Status MoveTreeSteps(Inode* inode, const std::string& new_key, TreeMove* work) KVFS_REQUIRES(publish_mu_);
  // The longest key below dir, relative to dir ("a/b" for dir/a/b).
  size_t LongestKeyBelowLocked(const Inode* dir) const KVFS_REQUIRES(mu_);
  Result<std::shared_ptr<Version>> CopyToStore(const std::shared_ptr<Version>& version, uint32_t store_index,
                                               ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  // A version of header.key's object at location on store store_index.
  std::shared_ptr<Version> MakeVersion(uint32_t store_index, const std::string& location,
                                       const ObjectHeader& header, uint64_t file_id = 0);
  ObjectHeader HeaderFor(const Inode* inode, const std::string& key) const KVFS_REQUIRES(mu_);
  // A new entry of dir: in a set-group-ID directory it takes the
  // directory's group, and a new directory also the set-group-ID bit.
  static void InheritGroupLocked(const Inode* dir, Attributes* attr);  // mu_
  Status EnsureDirRecord(Inode* dir) KVFS_REQUIRES(publish_mu_);
  // Creates the special record attr describes (with target as its data,
  // for a link) under parent/name.
  Result<Attr> MakeSpecial(uint64_t parent, std::string_view name, const Attributes& attr, std::string_view target)
      KVFS_EXCLUDES(publish_mu_, mu_);
  // The last step of Mkdir and MakeSpecial, once the new entry's record is
  // published: attaches a new inode (a directory when is_dir) with attr and
  // the record as parent/name, gives it one lookup reference and returns its
  // attributes. When the name was taken meanwhile (a file created: Create
  // does not take publish_mu_) it fails with EEXIST, and with ENOENT when the
  // directory lost its name (every unlink or rename of a directory takes
  // publish_mu_, which the caller holds, so today that cannot happen; the
  // answer stays right if that changes); either way the record is removed
  // again, with no index lock held (store I/O never runs under mu_).
  Result<Attr> AttachRecordOrDrop(uint64_t parent, std::string_view name, bool is_dir, const Attributes& attr,
                                  const std::shared_ptr<Version>& record) KVFS_REQUIRES(publish_mu_)
      KVFS_EXCLUDES(mu_);
  // SpaceHost: what the space manager asks of the engine.
  bool MayEvict(uint32_t store_index) const override;
  // Takes the object the policy gives up out of the index and off the store.
  bool EvictOne(uint32_t store_index, EvictionCause cause) override KVFS_EXCLUDES(publish_mu_, mu_);
  void AskForRoom(uint32_t store_index, int64_t delta) override;
  bool WaitForRoom(uint32_t store_index) override;
  uint64_t RoomAskedOfUs(uint32_t store_index) const override;
  void TrackCommitted(Inode* inode, const Version* old_version) KVFS_REQUIRES(mu_);
  // An open of the committed version: tells the policy (and, on a shared
  // store, the access counts this host publishes).
  void NoteAccessLocked(Inode* inode) KVFS_REQUIRES(mu_);
  void UntrackCommitted(Inode* inode) KVFS_REQUIRES(mu_);

  // --- Shared stores (engine_shared.cc). ---------------------------------
  // A change the kernel must hear of, sent once no lock is held.
  struct Notice {
    enum Kind { kAppeared, kReplaced, kRemoved } kind;
    uint64_t parent_ino;
    std::string name;
    uint64_t ino;
  };
  void SendNotices(const std::vector<Notice>& notices) KVFS_EXCLUDES(publish_mu_, mu_);
  // The directory that holds key's last component (created as implicit
  // directories where missing), and that component; null on a name clash.
  // Each directory it creates is added to `notices` (when given) as appeared,
  // so that a listing of its parent cached by the kernel is dropped.
  Inode* ParentForKeyLocked(const std::string& key, std::string* leaf, std::vector<Notice>* notices = nullptr)
      KVFS_REQUIRES(mu_);
  // Indexes an object another host published at its key's location (new
  // key, new version or directory record) if it is still the file there.
  void ApplyRemote(uint32_t store_index, const ScannedObject& obj, std::vector<Notice>* notices) KVFS_REQUIRES(publish_mu_);
  // Drops an indexed object that is gone from the store (if still indexed
  // with that identity and not being written here).
  void RemoveRemote(uint64_t ino, const std::string& location, uint64_t file_id,
                    std::vector<Notice>* notices) KVFS_REQUIRES(publish_mu_);
  // Looks key up on a shared store: OK when it was found and indexed,
  // ENOENT when the store has no such key, EIO when the store failed.
  Status ReadThrough(uint32_t store_index, const std::string& key) KVFS_EXCLUDES(publish_mu_, mu_);
  // Before an open: follows a replacement or removal of the object by
  // another host. EIO when the store does not answer.
  Status Revalidate(uint64_t ino) KVFS_EXCLUDES(publish_mu_, mu_);
  // SharedIndex: what the shared tier's reconciler asks of the index.
  bool ReconcileStore(uint32_t store_index, bool holder) override KVFS_EXCLUDES(publish_mu_, mu_);
  void ApplyRemoteAccesses(uint32_t store_index, const std::map<std::string, uint64_t>& counts) override KVFS_EXCLUDES(publish_mu_, mu_);
  std::unique_ptr<SharedTier> shared_;  // the reconciler and the evictor lease of shared stores
  // Per store, for the evictor lease holder: the inode indexed at each
  // location as of the last reconciliation.
  std::vector<std::unordered_map<std::string, uint64_t>> inode_by_location_ KVFS_GUARDED_BY(mu_);

  EngineOptions options_;
  std::vector<std::unique_ptr<Store>> stores_;
  std::vector<std::shared_ptr<SpaceAccount>> store_accounts_;
  std::shared_ptr<SpaceAccount> account_;
  std::vector<std::shared_ptr<const VersionHome>> homes_;  // per store: what its Versions share
  std::unique_ptr<SpaceManager> space_;  // set by Open, before the rebuild
  // Per-store integrity counters.
  struct IntegrityCounters {
    std::atomic<uint64_t> checksum_failures{0}, quarantined{0};
  };
  std::vector<std::unique_ptr<IntegrityCounters>> integrity_;
  std::atomic<uint64_t> verify_counter_{0};
  // Durability. Whether changes on a store are flushed later by
  // background_sync_ (kBackground on a local store) or before each call
  // returns; Deferred is set at construction and never changes.
  bool Deferred(uint32_t store_index) const { return background_sync_ && !stores_[store_index]->Shared(); }
  // Records an un-flushed change on a store whose syncs are deferred.
  void Dirtied(uint32_t store_index) {
    if (Deferred(store_index)) background_sync_->MarkDirty(store_index);
  }
  std::unique_ptr<BackgroundSync> background_sync_;  // null in kClose mode
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<IoExecutor> io_;
  std::unique_ptr<ReadAhead> read_ahead_;  // null when read_ahead_bytes is 0
  std::atomic<EngineObserver*> observer_{nullptr};
  std::atomic<ProcessTable*> process_table_{nullptr};

  Mutex publish_mu_ KVFS_ACQUIRED_BEFORE(mu_);
  std::unique_ptr<PublishQueue> publisher_;  // group commit, under publish_mu_
  mutable Mutex mu_;
  CondVar commit_done_;  // with mu_: an inode's `committing` went false
  std::atomic<uint64_t> page_cache_opens_{0}, superseded_inodes_{0};
  Namespace ns_ KVFS_GUARDED_BY(mu_);
  uint64_t next_generation_ KVFS_GUARDED_BY(mu_) = 1;
  // Every handle Open/Create returned and Release has not freed yet; the
  // destructor releases those the kernel never did.
  std::unordered_set<FileHandle*> open_handles_ KVFS_GUARDED_BY(mu_);

  std::atomic<uint64_t> reads_{0}, read_bytes_{0}, writes_{0}, write_bytes_{0};
  std::atomic<uint64_t> commits_{0}, commit_failures_{0}, lookups_{0}, negative_lookups_{0};
  // Nanoseconds per Read call (every call, failed ones included) and per
  // successful commit (CommitDraft, from its start to the commit reported).
  Histogram read_latency_{Histogram::LatencyBoundsNs()};
  Histogram commit_latency_{Histogram::LatencyBoundsNs()};
};

}  // namespace kvfs
