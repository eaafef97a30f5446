// Engine: file handles: create, open, write, flush, fsync, release.
#include "core/engine.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>
#include <thread>

#include "core/engine_internal.h"

namespace kvfs {
using namespace engine_detail;

// ---------------------------------------------------------------------------
// Open, write, commit, release.

Result<OpenResult> Engine::Create(uint64_t parent, std::string_view name, uint32_t mode, int flags, uint32_t uid,
                                  uint32_t gid, uint64_t thread) {
  KVFS_RETURN_IF_ERROR(CheckName(name));
  UniqueLock lk(mu_);
  Result<Inode*> dir = ChildForChangeLocked(parent, name);
  if (!dir.ok()) return dir.status();
  if (JoinKey(ns_.KeyOf(*dir), name).size() > kMaxKeyLength) return Status::Error(ENAMETOOLONG, "path too long");
  Inode* inode = ns_.Child(*dir, name);
  if (inode && !(flags & O_EXCL) && !inode->is_dir && WritesUnderCacheReaders(inode, flags)) {
    // Written in place while page-cache readers have it open: the key moves
    // to a fresh inode, which this CREATE's reply gives the kernel.
    lk.unlock();
    SupersedeUnderCacheReaders(flags, [&]() -> Inode* {
      mu_.AssertHeld();
      Result<Inode*> d = ChildForChangeLocked(parent, name);
      Inode* again = d.ok() ? ns_.Child(*d, name) : nullptr;
      return again && !again->is_dir ? again : nullptr;
    });
    lk.lock();
    dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    inode = ns_.Child(*dir, name);
  }
  if (inode) {
    if (inode->is_dir) return Status::Error(EISDIR, "is a directory");
    if (flags & O_EXCL) return Status::Error(EEXIST, "exists");
    if (inode->is_special()) return Status::Error(ENXIO, "a special file is not opened through kvfs");
    // An existing key opens as Open opens it: its read lease is taken with
    // no engine lock held (opening the object file is store I/O).
    const uint64_t ino = inode->ino;
    inode->nlookup++;  // the reference CREATE gives; keeps the inode alive unlocked
    lk.unlock();
    Result<OpenResult> r = Open(ino, flags & ~(O_CREAT | O_EXCL), thread);
    if (!r.ok()) Forget(ino, 1);
    return r;
  }
  Attributes attr;
  attr.mode = S_IFREG | (mode & 07777);
  attr.uid = uid;
  attr.gid = gid;
  InheritGroupLocked(*dir, &attr);
  attr.atime_ns = attr.mtime_ns = attr.ctime_ns = NowNs();
  inode = ns_.NewInode(false, attr);
  ns_.Attach(*dir, inode, std::string(name));
  // A new key starts a new (empty) version, as O_TRUNC does; it has no
  // version to lease, so nothing here touches a store.
  Result<OpenResult> r = OpenLocked(inode, (flags & ~O_EXCL) | O_TRUNC);
  if (r.ok()) {
    r->created = true;
    inode->nlookup++;
    r->handle->thread = thread;
    NoteDraftThreadLocked(r->handle, thread);
  } else {
    ns_.Detach(inode);
    ns_.Reap(inode);
  }
  if (r.ok() && !r->handle->writable) {
    // O_CREAT without write access: nothing can ever be written through
    // this handle, so the new key is its empty version, committed now.
    const uint64_t ino = inode->ino;
    lk.unlock();
    Status s = CommitDraft(inode, std::make_shared<Draft>());
    if (!s.ok()) {
      Release(r->handle);
      Forget(ino, 1);
      return s;
    }
    // The handle leases the version it made, as any reader does: a reopen
    // of the inode after an unlink (the kernel's open for FS_IOC_GETFLAGS,
    // /proc/self/fd/N) finds it instead of ESTALE.
    std::shared_ptr<Version> made;
    lk.lock();
    made = inode->committed;
    lk.unlock();
    Result<Lease> lease = made ? Lease::Take(made) : Result<Lease>(Lease());
    lk.lock();
    if (lease.ok() && *lease && !r->handle->lease) {
      r->handle->lease = std::move(*lease);
      inode->read_leases++;
    }
    r->attr = AttrOfLocked(inode, r->handle, thread);
  }
  return r;
}

void Engine::NoteAccessLocked(Inode* inode) {
  uint32_t si = inode->committed->store_index();
  space_->Access(si, inode->ino);
  shared_->NoteAccess(si, inode->committed->location());
}

Result<OpenResult> Engine::Open(uint64_t ino, int flags, uint64_t thread) {
  // Readers lease the version they read. So does a writer that keeps the
  // bytes (no O_TRUNC): its descriptor shows that version until it writes,
  // and a reopen of the inode after an unlink (the kernel's open for
  // FS_IOC_GETFLAGS, /proc/self/fd/N) must still find it; the lease also
  // keeps the base of its copy-on-write from eviction.
  const bool leases = (flags & O_ACCMODE) != O_WRONLY || (flags & O_TRUNC) == 0;
  // On a shared store another host may have replaced or removed the object.
  KVFS_RETURN_IF_ERROR(Revalidate(ino));
  // Opens repeated because page-cache readers left while a writer was
  // being sent to a fresh inode (below); bounded, as readers may keep coming.
  constexpr int kReadersLeftRetries = 4;
  int readers_left_retries = 0;
  bool lease_retried = false;
  // Opens repeated because the key was replaced while its lease was taken.
  constexpr int kSupersededRetries = 8;
  int superseded_retries = 0;
  while (true) {
    // Take the read lease first, with no engine lock held: opening the object
    // file is store I/O, and a slow store must not stall the whole mount.
    Lease lease;
    if (leases) {
      std::shared_ptr<Version> version;
      {
        MutexLock g(mu_);
        Inode* inode = ns_.Get(ino);
        if (!inode) return Status::Error(ENOENT, "stale inode");
        if (inode->is_dir) return Status::Error(EISDIR, "is a directory");
        if (inode->is_special()) return Status::Error(ENXIO, "a special file is not opened through kvfs");
        version = inode->committed;
        if (!version && !inode->linked()) version = inode->last_version.lock();
      }
      if (version) {
        Result<Lease> l = Lease::Take(version);
        if (!l.ok()) {
          bool replaced = l.err() == ENOENT || l.err() == ESTALE;
          if (replaced && !lease_retried) {
            // The object file was replaced under the index (a commit or a
            // rename is publishing): wait for that publish, then look again.
            lease_retried = true;
            MutexLock wait(publish_mu_);
            continue;
          }
          spdlog::error("open of {} failed: {}", version->location(), l.status().message());
          return Status::Error(replaced ? ESTALE : EIO, l.status().message());
        }
        lease = std::move(*l);
      }
    }
    UniqueLock lk(mu_);
    Inode* inode = ns_.Get(ino);
    if (!inode) return Status::Error(ENOENT, "stale inode");
    if (lease && inode->linked() && lease.version() != inode->committed) {
      // Replaced while the lease was being taken. Its object file may have
      // been opened after the replacement, from a location that by then
      // held a later version whose file reused the old one's inode number
      // (ext4 and XFS reuse freed inodes at once), which the identity check
      // cannot tell apart. Take the version that is current now.
      lk.unlock();
      lease.Reset();  // may close the object file: store I/O, not under mu_
      if (++superseded_retries <= kSupersededRetries) continue;
      return Status::Error(ESTALE, "replaced again and again while opening");
    }
    if (WritesUnderCacheReaders(inode, flags) || (inode->superseded && (flags & O_ACCMODE) != O_RDONLY)) {
      lk.unlock();
      // Checked again under the publish lock: when the page-cache readers
      // have left meanwhile (their RELEASE was still on its way), nothing is
      // superseded and the writer opens this inode after all. ESTALE there
      // would send the kernel's single retry back to the same inode, which
      // new readers may hold again by then (stress-ng's fanotify stressor
      // saw open(O_WRONLY) fail with ESTALE that way).
      bool moved = false;
      SupersedeUnderCacheReaders(flags, [&]() -> Inode* {
        mu_.AssertHeld();
        Inode* now = ns_.Get(ino);
        moved = now && (now->superseded || WritesUnderCacheReaders(now, flags));
        return now;
      });
      if (!moved && ++readers_left_retries <= kReadersLeftRetries) continue;
      return Status::Error(ESTALE, "the key moved to a fresh inode for its writer");
    }
    Result<OpenResult> r = OpenLocked(inode, flags, std::move(lease));
    if (r.ok()) {
      r->handle->thread = thread;
      NoteDraftThreadLocked(r->handle, thread);
    }
    return r;
  }
}

Result<OpenResult> Engine::OpenLocked(Inode* inode, int flags, Lease lease) {
  if (inode->is_dir) return Status::Error(EISDIR, "is a directory");
  // The kernel follows links and serves FIFOs, sockets and devices itself.
  if (inode->is_special()) return Status::Error(ENXIO, "a special file is not opened through kvfs");
  auto handle = std::make_unique<FileHandle>();
  int acc = flags & O_ACCMODE;
  handle->inode = inode;
  handle->readable = acc != O_WRONLY;
  handle->writable = acc != O_RDONLY;
  handle->append = (flags & O_APPEND) != 0;
  std::shared_ptr<Version> version = inode->committed;
  if (!inode->linked() && !version) {
    // The name was replaced or removed between the kernel's lookup and this
    // open. If another handle still reads that version, open it too (POSIX);
    // otherwise ESTALE makes the kernel look the name up again.
    version = inode->last_version.lock();
    if (!version && !inode->draft && !lease) return Status::Error(ESTALE, "replaced while opening");
  }
  if (lease) {
    // Taken by Open without the lock: the version current a moment ago.
    handle->lease = std::move(lease);
    inode->read_leases++;
    if (handle->lease.version() == inode->committed) NoteAccessLocked(inode);
  } else if (version && (handle->readable || !handle->writable)) {
    Result<Lease> lease = Lease::Take(version);
    if (!lease.ok()) {
      spdlog::error("open of {} failed: {}", version->location(), lease.status().message());
      return Status::Error(lease.err() == ENOENT || lease.err() == ESTALE ? ESTALE : EIO, lease.status().message());
    }
    handle->lease = std::move(*lease);
    inode->read_leases++;
    if (version == inode->committed) NoteAccessLocked(inode);
  }
  if (handle->writable) {
    inode->writer_expected_until_ns = 0;
    if (flags & O_TRUNC) {
      // A new version of its own; writers opened without O_TRUNC join it.
      inode->draft = NewDraftLocked(inode);
      handle->draft = inode->draft;
    } else if (inode->draft) {
      handle->draft = inode->draft;
    }
    if (handle->draft) {
      handle->draft->writers++;
      handle->draft->unflushed++;
    }
    inode->writers++;
  }
  inode->open_handles++;
  open_handles_.insert(handle.get());
  OpenResult r;
  r.attr = AttrOfLocked(inode, handle.get());
  ChooseCachingLocked(inode, handle.get(), flags, &r);
  r.handle = handle.release();
  return r;
}

void Engine::ChooseCachingLocked(Inode* inode, FileHandle* handle, int flags, OpenResult* r) {
  // Readers of different versions must never share the kernel's pages or its
  // file size, which belong to the inode. So the page cache serves only
  // (a) read-only handles of the current version while nobody writes the
  // key and no handle holds another version, and (b) the writers of a new
  // key, whose pages become the committed version's bytes.
  const bool allowed = options_.page_cache && !shared_->any() && (flags & O_DIRECT) == 0;
  std::shared_ptr<Version> cached = inode->cached_version.lock();
  const Version* mine = handle->lease ? handle->lease.version().get() : nullptr;
  bool keep = false;
  if (allowed && !handle->writable) {
    if (inode->writers == 0 && mine && handle->lease.version() == inode->committed &&
        inode->committed->leases() == inode->read_leases &&
        (inode->writer_expected_until_ns == 0 || NowNs() >= inode->writer_expected_until_ns)) {
      handle->page_cache = handle->cache_reader = true;
      keep = cached && cached.get() == mine;
      inode->cached_version = inode->committed;
    }
  } else if (allowed && handle->draft) {
    Draft* d = handle->draft.get();
    if (d->writers == 1 && !inode->committed && inode->open_handles == 1 && inode->cache_handles == 0) {
      d->page_cached = true;  // the first writer of a new key
      handle->page_cache = true;
    } else if (d->page_cached) {
      handle->page_cache = true;  // joins a new key's page-cache writers
      keep = true;
    }
  }
  if (handle->writable && handle->draft && !handle->page_cache) handle->draft->page_cached = false;
  if (handle->page_cache) {
    inode->cache_handles++;
    if (handle->cache_reader) inode->cache_readers++;
    page_cache_opens_.fetch_add(1, std::memory_order_relaxed);
  } else {
    // Bypasses the cache: keep what others may be reading from it.
    keep = inode->cache_handles > 0 || (cached && cached.get() == mine);
  }
  r->page_cache = handle->page_cache;
  r->keep_cache = keep;
}

void Engine::SupersedeUnderCacheReaders(int flags, const std::function<Inode*()>& find) {
  MutexLock publish(publish_mu_);
  MutexLock g(mu_);
  Inode* inode = find();
  if (inode && inode->linked() && WritesUnderCacheReaders(inode, flags)) SupersedeLocked(inode);
}

Status Engine::SendWriterToFreshInode(uint64_t ino, int flags) {
  SupersedeUnderCacheReaders(flags, [&] {
    mu_.AssertHeld();
    return ns_.Get(ino);
  });
  return Status::Error(ESTALE, "the key moved to a fresh inode for its writer");
}

bool Engine::WritesUnderCacheReaders(const Inode* inode, int flags) {
  return inode->cache_readers > 0 && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC));
}

Inode* Engine::SupersedeLocked(Inode* old) {
  Inode* fresh = ns_.NewInode(false, old->attr);
  fresh->committed = old->committed;
  UntrackCommitted(old);
  ns_.Replace(old, fresh);
  TrackCommitted(fresh, nullptr);
  old->last_version = old->committed;
  old->committed.reset();
  old->superseded = true;
  fresh->writer_expected_until_ns = NowNs() + 1000000000LL;
  superseded_inodes_.fetch_add(1, std::memory_order_relaxed);
  return fresh;
}

// Gives a writable handle without a draft its own copy-on-write draft of the
// committed version (or joins the inode's current draft).
Result<std::shared_ptr<Draft>> Engine::DraftForWrite(FileHandle* handle) {
  UniqueLock lk(mu_);
  Inode* inode = handle->inode;
  if (handle->draft && handle->draft->consumed()) {
    // Its staging file became the committed object (the draft had spilled):
    // later writes go to a new copy-on-write draft of what was committed,
    // once that commit has switched the index.
    commit_done_.wait(lk, [&] { return !inode->committing; });
    if (handle->draft->consumed()) {
      std::shared_ptr<Draft> old = std::move(handle->draft);
      old->writers--;
      if (!handle->flushed) old->unflushed--;
      handle->flushed = true;
      if (inode->draft == old) inode->draft.reset();
    }
  }
  if (handle->draft) return handle->draft;
  if (inode->draft && !inode->draft->consumed()) {
    if (inode->draft->broken) return Status::Error(EIO, "the version being written is damaged (its base could not be loaded, or its staging file timed out)");
    if (!handle->page_cache) inode->draft->page_cached = false;  // a writer that bypasses the cache joins
    handle->draft = inode->draft;
    handle->draft->writers++;
    handle->draft->unflushed++;
    handle->flushed = false;
    NoteDraftThreadLocked(handle, handle->thread);
    return handle->draft;
  }
  auto draft = NewDraftLocked(inode);
  inode->draft = draft;
  handle->draft = draft;
  draft->writers++;
  draft->unflushed++;
  handle->flushed = false;
  NoteDraftThreadLocked(handle, handle->thread);
  std::shared_ptr<Version> base = inode->committed;
  UniqueLock dlk(draft->mutex());
  lk.unlock();
  if (base) {
    Status s = LoadDraft(base, draft.get());
    if (!s.ok()) {
      // Writers that joined meanwhile must not commit a half-loaded copy.
      draft->broken = true;
      dlk.unlock();
      lk.lock();
      draft->writers--;
      draft->unflushed--;
      handle->draft.reset();
      if (inode->draft == draft) inode->draft.reset();
      return Status::Error(EIO, s.message());
    }
  }
  return draft;
}

Result<std::shared_ptr<Draft>> Engine::DraftForChange(FileHandle* handle, uint64_t owner, uint64_t thread) {
  if (!handle->writable) return Status::Error(EBADF, "handle not open for writing");
  Result<std::shared_ptr<Draft>> draft = DraftForWrite(handle);
  if (!draft.ok()) return draft.status();
  if ((*draft)->broken) return Status::Error(EIO, "the version being written is damaged (its base could not be loaded, or its staging file timed out)");
  MutexLock g(mu_);
  auto& owners = handle->writer_owners;
  if (std::find(owners.begin(), owners.end(), owner) == owners.end()) owners.push_back(owner);
  NoteDraftThreadLocked(handle, thread);
  handle->commit_failed = false;
  (*draft)->commit_failed = false;
  if (handle->flushed) {
    handle->flushed = false;
    (*draft)->unflushed++;
  }
  return draft;
}

Result<size_t> Engine::Write(FileHandle* handle, uint64_t offset, const void* data, size_t size, uint64_t owner,
                             uint64_t thread) {
  Result<std::shared_ptr<Draft>> draft = DraftForChange(handle, owner, thread);
  if (!draft.ok()) return draft.status();
  if (handle->append) offset = (*draft)->size();
  if (offset + size > options_.max_object_bytes) return Status::Error(EFBIG, "object too large");
  if (offset + size > options_.space.capacity_bytes) return Status::Error(ENOSPC, "object larger than the capacity");
  Status written = (*draft)->Write(offset, data, size);
  // A store that did not answer in time is an I/O error to the writer, as at commit.
  if (!written.ok()) return Status::Error(written.err() == ETIMEDOUT ? EIO : written.err(), written.message());
  writes_.fetch_add(1, std::memory_order_relaxed);
  write_bytes_.fetch_add(size, std::memory_order_relaxed);
  return size;
}

Status Engine::Fallocate(FileHandle* handle, int mode, uint64_t offset, uint64_t length, uint64_t owner,
                         uint64_t thread) {
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  const bool punch = (mode & FALLOC_FL_PUNCH_HOLE) != 0;
  const bool zero = (mode & FALLOC_FL_ZERO_RANGE) != 0;
  if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) != 0 || (punch && zero) ||
      (punch && !keep_size)) {
    return Status::Error(EOPNOTSUPP, "fallocate mode not supported");
  }
  if (!handle->writable) return Status::Error(EBADF, "handle not open for writing");
  if (length == 0) return Status::Error(EINVAL, "empty range");
  if (offset > options_.max_object_bytes || length > options_.max_object_bytes - offset) {
    return Status::Error(EFBIG, "object too large");
  }
  const uint64_t end = offset + length;
  if (!keep_size && end > options_.space.capacity_bytes) return Status::Error(ENOSPC, "object larger than the capacity");
  if (!punch && !zero) {
    // Allocation only: kvfs keeps no blocks for a version before it is
    // written, so this is the size change (or nothing, with KEEP_SIZE).
    if (keep_size) return Status::Ok();
    MutexLock g(mu_);
    if (end <= AttrOfLocked(handle->inode, handle).size) return Status::Ok();
  }
  Result<std::shared_ptr<Draft>> draft = DraftForChange(handle, owner, thread);
  if (!draft.ok()) return draft.status();
  if (punch || zero) {
    const uint64_t size = (*draft)->size();
    // Zeros over [from, to); past the old size the growth below gives them.
    uint64_t from = offset;
    const uint64_t to = std::min(end, size);
    if (from < to && to == size) {
      // Zeros up to the end: a cut and a regrowth leave holes, where
      // writing zeros would store every byte.
      KVFS_RETURN_IF_ERROR((*draft)->Truncate(from));
      KVFS_RETURN_IF_ERROR((*draft)->Truncate(size));
      from = to;
    }
    static const std::vector<uint8_t> kZeros(kDraftChunkSize, 0);
    for (uint64_t pos = from; pos < to;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kZeros.size(), to - pos));
      Status written = (*draft)->Write(pos, kZeros.data(), n);
      if (!written.ok()) return Status::Error(written.err() == ETIMEDOUT ? EIO : written.err(), written.message());
      pos += n;
    }
  }
  if (!keep_size && end > (*draft)->size()) KVFS_RETURN_IF_ERROR((*draft)->Truncate(end));
  return Status::Ok();
}

Status Engine::Flush(FileHandle* handle, uint64_t owner, uint64_t other_owner) {
  if (!handle->writable) return Status::Ok();
  std::shared_ptr<Draft> draft;
  bool asked = false;       // the ProcessTable's answer is in (see below)
  bool may_commit = true;   // its answer: this close may publish
  while (true) {
    UniqueLock lk(mu_);
    if (asked && handle->draft != draft) return Status::Ok();  // committed meanwhile (fsync)
    draft = handle->draft;
    if (!draft) return Status::Ok();
    const auto& owners = handle->writer_owners;
    bool closer_wrote = owners.empty() || owner == 0 ||
                        std::find(owners.begin(), owners.end(), owner) != owners.end() ||
                        (other_owner != 0 && std::find(owners.begin(), owners.end(), other_owner) != owners.end()) ||
                        std::find(owners.begin(), owners.end(), uint64_t{0}) != owners.end();
    if (!closer_wrote) return Status::Ok();
    // Another writer of the version still open and unflushed: this close
    // cannot commit whatever the answer, so the walk below is not needed.
    // (Many descriptors of one new key, closed one by one, would otherwise
    // walk the closer's descriptor table once each.)
    const bool others_unflushed = draft->unflushed > (handle->flushed ? 0u : 1u);
    if (owners.empty() && !asked && !others_unflushed) {
      // Nothing written through this handle: ask, without the lock, whether
      // this close is the opener's last descriptor, then look again.
      const uint64_t ino = handle->inode->ino;
      lk.unlock();
      may_commit = FlusherMayCommitUnwritten(handle, other_owner, ino);
      asked = true;
      continue;
    }
    if (!handle->flushed) {
      handle->flushed = true;
      draft->unflushed--;
    }
    // Another descriptor of this open file (or a process that shares it)
    // writes on: the handle counts as flushed, so that another writer's
    // close is not held up by it, but the version waits for that last close
    // (a write after this marks the handle unflushed again).
    if (!may_commit) return Status::Ok();
    // Other writers of the same version still open and unflushed: the last
    // of them commits.
    if (draft->unflushed > 0) return Status::Ok();
    if (draft->broken) return Status::Error(EIO, "the version being written is damaged (its base could not be loaded, or its staging file timed out)");
    break;
  }
  Status s = CommitDraft(handle->inode, draft);
  MutexLock g(mu_);
  handle->commit_failed = !s.ok();
  draft->commit_failed = !s.ok();
  return s;
}

bool Engine::FlusherMayCommitUnwritten(const FileHandle* handle, uint64_t flusher, uint64_t ino) {
  // Nothing was written through the handle: committing now publishes an
  // empty (or truncated) version. That is right for a creat() + close(),
  // but wrong when the closed descriptor was only one of the file's: a
  // shell's `> key` opens, dup2()s and closes before the command writes,
  // and a forked child that inherited the descriptor may exit first.
  ProcessTable* table = process_table_.load();
  const uint32_t closer = KernelThreadId(flusher);
  const uint32_t opener = KernelThreadId(handle->thread);
  if (!table || closer == 0 || opener == 0) return true;
  if (!table->SameProcess(closer, opener)) return false;
  return !table->HoldsWritableDescriptor(closer, ino);
}

Status Engine::Fsync(FileHandle* handle) {
  std::shared_ptr<Draft> draft;
  if (handle->writable) {
    MutexLock g(mu_);
    draft = handle->draft;
  }
  if (draft) KVFS_RETURN_IF_ERROR(CommitDraft(handle->inode, draft));
  // The committed version (and every earlier change) is durable before fsync returns.
  if (background_sync_) return background_sync_->SyncDirty();
  if (!draft && options_.commit_flush == EngineOptions::CommitFlush::kFile) {
    // With file flushes a version is readable a moment before its writer's
    // fsync of it ends: an fsync through another handle flushes the store.
    Store* store = nullptr;
    {
      MutexLock g(mu_);
      if (handle->inode->committed) store = handle->inode->committed->store();
    }
    if (store) {
      Status s = store->SyncAll();
      if (!s.ok()) return Status::Error(EIO, s.message());
    }
  }
  return Status::Ok();
}

void Engine::Abandon(FileHandle* handle) {
  {
    MutexLock g(mu_);
    handle->abandoned = true;
  }
  Release(handle);
}

void Engine::Release(FileHandle* handle) {
  std::unique_ptr<FileHandle> owned(handle);
  Inode* inode = handle->inode;
  std::shared_ptr<Draft> to_commit;
  {
    // Leave the draft and decide, in one step, whether this was its last
    // writer and the version still needs its commit (no flush committed it).
    MutexLock g(mu_);
    if (std::shared_ptr<Draft> d = handle->draft) {
      if (!handle->flushed) d->unflushed--;
      d->writers--;
      if (d->writers == 0 && d->dirty() && !d->broken && !handle->commit_failed && !handle->abandoned) to_commit = d;
    }
  }
  if (to_commit) {
    // Released without a successful flush: commit now (best effort). The
    // handle still pins the inode (open_handles) until the end.
    Status s = CommitDraft(inode, to_commit);
    if (!s.ok()) spdlog::warn("commit at release of inode {} failed: {}", inode->ino, s.message());
  }
  Lease lease = std::move(handle->lease);
  {
    MutexLock g(mu_);
    if (handle->draft) {
      if (handle->draft->writers == 0 && inode->draft == handle->draft) inode->draft.reset();
      handle->draft.reset();
    }
    if (handle->writable) {
      inode->writers--;
      if (inode->writers == 0 && !inode->committed && !inode->committing && inode->linked()) {
        // A new key whose writers all left without a commit: it never existed.
        ns_.Detach(inode);
      }
    }
    if (lease) inode->read_leases--;
    if (handle->page_cache) {
      inode->cache_handles--;
      if (handle->cache_reader) inode->cache_readers--;
    }
    inode->open_handles--;
    open_handles_.erase(handle);
    ns_.Reap(inode);
  }
  // The last lease closes the object's descriptor: store I/O (a hung network
  // filesystem can block close), so never under mu_.
  lease.Reset();
}

}  // namespace kvfs
