// Engine: the namespace operations (lookup, attributes, mkdir, rmdir,
// unlink, rename and the moves of objects it implies, readdir).
#include "core/engine.h"

#include <fcntl.h>
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
#include "core/log_text.h"

namespace kvfs {
using namespace engine_detail;

Result<Attr> Engine::Lookup(uint64_t parent, std::string_view name, uint64_t thread, bool* refused_pending) {
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  lookups_.fetch_add(1, std::memory_order_relaxed);
  bool read_through_done = false;
  // A pending key's creator, asked about once (without the lock): the
  // pending inode and whether the asking thread's process created it.
  uint64_t asked_ino = 0;
  bool asker_created = false;
  while (true) {
    UniqueLock lk(mu_);
    Inode* dir = ns_.Get(parent);
    if (!dir) return Status::Error(ENOENT, "no such directory");
    if (!dir->is_dir) return Status::Error(ENOTDIR, "not a directory");
    Inode* child = ns_.Child(dir, name);
    if (child && child->visible()) {
      child->nlookup++;
      return AttrOfLocked(child, nullptr);
    }
    if (child && child->is_file()) {
      // Pending: invisible until its commit, except to the process that
      // created it (its first draft thread), and to it too once a close()
      // reported that its commit failed (until it writes again).
      ProcessTable* table = process_table_.load();
      const Draft* draft = child->draft.get();
      const uint32_t asker = KernelThreadId(thread);
      if (table && asker != 0 && draft && !draft->commit_failed && !draft->writer_threads.empty()) {
        const uint32_t creator = KernelThreadId(draft->writer_threads.front());
        if (asked_ino != child->ino) {
          asked_ino = child->ino;
          lk.unlock();
          asker_created = creator != 0 && table->SameProcess(asker, creator);
          continue;
        }
        if (asker_created) {
          child->nlookup++;
          Attr a = AttrOfLocked(child, nullptr, thread);
          a.size_in_flux = true;
          a.pending = true;
          return a;
        }
      }
      child->lookup_refused = true;
      if (refused_pending) *refused_pending = true;
    }
    // A shared store may hold the key although the index does not yet.
    if (shared_->any() && !read_through_done && CheckName(name).ok()) {
      std::string key = JoinKey(ns_.KeyOf(dir), name);
      uint32_t si = StoreIndexFor(key);
      if (shared_->shared(si)) {
        lk.unlock();
        read_through_done = true;
        Status found = ReadThrough(si, key);
        if (found.ok()) continue;
        if (found.err() != ENOENT) return found;
      }
    }
    negative_lookups_.fetch_add(1, std::memory_order_relaxed);
    return Status::Error(ENOENT, "no such key");
  }
}

void Engine::Forget(uint64_t ino, uint64_t n) {
  MutexLock g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return;
  inode->nlookup -= std::min(n, inode->nlookup);
  ns_.Reap(inode);
}

Result<Attr> Engine::GetAttr(uint64_t ino, FileHandle* handle, uint64_t thread) {
  MutexLock g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return Status::Error(ENOENT, "stale inode");
  if (inode->evicted && !handle) return Status::Error(ENOENT, "evicted");
  return AttrOfLocked(inode, handle, thread);
}

void Engine::NoteDraftThreadLocked(FileHandle* handle, uint64_t thread) {
  if (thread == 0 || !handle->draft) return;
  std::vector<uint64_t>& threads = handle->draft->writer_threads;
  if (threads.size() < 64 && std::find(threads.begin(), threads.end(), thread) == threads.end()) {
    threads.push_back(thread);
  }
}

ObjectHeader Engine::HeaderFor(const Inode* inode, const std::string& key) const {
  ObjectHeader h;
  h.kind = inode->is_dir ? ObjectKind::kDirectory : inode->is_special() ? ObjectKind::kSpecial : ObjectKind::kFile;
  h.mode = inode->attr.mode;
  h.rdev = inode->attr.rdev;
  h.uid = inode->attr.uid;
  h.gid = inode->attr.gid;
  h.mtime_ns = inode->attr.mtime_ns;
  h.ctime_ns = inode->attr.ctime_ns;
  h.key = key;
  return h;
}

void Engine::InheritGroupLocked(const Inode* dir, Attributes* attr) {
  if (!(dir->attr.mode & S_ISGID)) return;
  attr->gid = dir->attr.gid;
  if (S_ISDIR(attr->mode)) attr->mode |= S_ISGID;
}

Result<Inode*> Engine::ChildForChangeLocked(uint64_t parent, std::string_view name) {
  Inode* dir = ns_.Get(parent);
  if (!dir) return Status::Error(ENOENT, "no such directory");
  if (!dir->is_dir) return Status::Error(ENOTDIR, "not a directory");
  if (!dir->linked()) return Status::Error(ENOENT, "directory was removed");
  return dir;
}

// ---------------------------------------------------------------------------
// Namespace changes.

Result<Attr> Engine::SetAttr(uint64_t ino, const SetAttrRequest& req, FileHandle* handle) {
  if (req.size) {
    Inode* inode;
    std::shared_ptr<Draft> draft;
    bool temporary = false;
    {
      MutexLock g(mu_);
      inode = ns_.Get(ino);
      if (!inode) return Status::Error(ENOENT, "stale inode");
      if (inode->is_dir) return Status::Error(EISDIR, "is a directory");
      if (inode->is_special()) return Status::Error(EINVAL, "not a regular file");
      if (*req.size > options_.max_object_bytes) return Status::Error(EFBIG, "object too large");
      if (*req.size > options_.space.capacity_bytes) return Status::Error(ENOSPC, "larger than the capacity");
    }
    if (handle && handle->writable) {
      // ftruncate: part of the handle's version, committed with it.
      Result<std::shared_ptr<Draft>> d = DraftForWrite(handle);
      if (!d.ok()) return d.status();
      draft = *d;
    } else {
      // truncate(path, n): a new version of its own, committed now.
      FileHandle tmp;
      tmp.writable = true;
      {
        UniqueLock lk(mu_);
        inode = ns_.Get(ino);
        if (!inode) return Status::Error(ENOENT, "stale inode");
        // As in Open: the kernel, told ESTALE, truncates the fresh inode.
        if (WritesUnderCacheReaders(inode, O_WRONLY)) {
          lk.unlock();
          return SendWriterToFreshInode(ino, O_WRONLY);
        }
        tmp.inode = inode;
        inode->open_handles++;
        inode->writers++;
      }
      Result<std::shared_ptr<Draft>> d = DraftForWrite(&tmp);
      if (d.ok()) {
        draft = *d;
        temporary = true;
        KVFS_RETURN_IF_ERROR(draft->Truncate(*req.size));
        Status s = draft->writers == 1 ? CommitDraft(inode, draft) : Status::Ok();
        MutexLock g(mu_);
        draft->writers--;
        if (!tmp.flushed) draft->unflushed--;
        if (draft->writers == 0 && inode->draft == draft) inode->draft.reset();
        inode->writers--;
        inode->open_handles--;
        if (!s.ok()) return s;
      } else {
        MutexLock g(mu_);
        inode->writers--;
        inode->open_handles--;
        return d.status();
      }
    }
    if (!temporary) KVFS_RETURN_IF_ERROR(draft->Truncate(*req.size));
  }
  bool meta = req.mode || req.uid || req.gid || req.atime_ns || req.mtime_ns;
  if (meta) {
    MutexLock publish(publish_mu_);
    std::shared_ptr<Version> record;
    ObjectHeader header;
    Inode* inode;
    {
      MutexLock g(mu_);
      inode = ns_.Get(ino);
      if (!inode) return Status::Error(ENOENT, "stale inode");
      Attributes& a = inode->attr;
      if (req.mode) a.mode = (a.mode & S_IFMT) | (*req.mode & 07777);
      if (req.uid) a.uid = *req.uid;
      if (req.gid) a.gid = *req.gid;
      if (req.atime_ns) a.atime_ns = *req.atime_ns;
      if (req.mtime_ns) a.mtime_ns = *req.mtime_ns;
      a.ctime_ns = NowNs();
      if (inode->linked()) {
        record = inode->committed;
        header = HeaderFor(inode, ns_.KeyOf(inode));  // data fields: RewriteHeader takes the record's
      }
    }
    if (inode->linked()) {
      if (record) {
        KVFS_RETURN_IF_ERROR(RewriteHeader(record, header));
      } else if (inode->is_dir) {
        KVFS_RETURN_IF_ERROR(EnsureDirRecord(inode));
      }
      // A pending file gets its attributes at commit.
    }
  }
  MutexLock g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return Status::Error(ENOENT, "stale inode");
  return AttrOfLocked(inode, handle);
}

Status Engine::ClearSetIdBits(uint64_t ino) {
  SetAttrRequest r;
  {
    MutexLock g(mu_);
    Inode* inode = ns_.Get(ino);
    if (!inode) return Status::Error(ENOENT, "stale inode");
    if (!inode->is_file()) return Status::Ok();
    uint32_t clear = S_ISUID;
    if ((inode->attr.mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) clear |= S_ISGID;
    if (!(inode->attr.mode & clear)) return Status::Ok();
    r.mode = inode->attr.mode & 07777 & ~clear;
  }
  return SetAttr(ino, r, nullptr).status();
}

Result<Engine::RecordRoom> Engine::ReserveRecordRoom(uint64_t parent, std::string_view name, uint64_t footprint) {
  std::string key;
  {
    MutexLock g(mu_);
    Inode* dir = ns_.Get(parent);
    // A missing parent is reported by the caller's own checks.
    if (!dir || !dir->is_dir) return RecordRoom(space_.get(), 0, 0);
    key = JoinKey(ns_.KeyOf(dir), name);
  }
  const uint32_t store_index = StoreIndexFor(key);
  KVFS_RETURN_IF_ERROR(space_->Reserve(store_index, footprint));
  return RecordRoom(space_.get(), store_index, footprint);
}

Result<Attr> Engine::Mkdir(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid) {
  KVFS_RETURN_IF_ERROR(CheckName(name));
  // A directory's record counts against the capacity as a file does.
  Result<RecordRoom> room = ReserveRecordRoom(parent, name, ObjectFootprint(0));
  if (!room.ok()) return room.status();
  MutexLock publish(publish_mu_);
  ObjectHeader header;
  Attributes attr;
  {
    MutexLock g(mu_);
    Result<Inode*> dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    if (ns_.Child(*dir, name)) return Status::Error(EEXIST, "exists");
    std::string key = JoinKey(ns_.KeyOf(*dir), name);
    if (key.size() > kMaxKeyLength) return Status::Error(ENAMETOOLONG, "path too long");
    attr.mode = S_IFDIR | (mode & 07777);
    attr.uid = uid;
    attr.gid = gid;
    InheritGroupLocked(*dir, &attr);
    attr.atime_ns = attr.mtime_ns = attr.ctime_ns = NowNs();
    header.kind = ObjectKind::kDirectory;
    header.mode = attr.mode;
    header.uid = attr.uid;
    header.gid = attr.gid;
    header.mtime_ns = attr.mtime_ns;
    header.ctime_ns = attr.ctime_ns;
    header.key = key;
    header.generation = next_generation_++;
  }
  uint32_t store_index = StoreIndexFor(header.key);
  Result<std::shared_ptr<Version>> record = PublishRecord(store_index, header);
  if (!record.ok()) return Status::Error(record.err() == ENOSPC ? ENOSPC : EIO, record.status().message());
  return AttachRecordOrDrop(parent, name, /*is_dir=*/true, attr, *record);
}

Result<Attr> Engine::AttachRecordOrDrop(uint64_t parent, std::string_view name, bool is_dir, const Attributes& attr,
                                        const std::shared_ptr<Version>& record) {
  int lost = 0;  // the errno when the name was taken, or its directory removed, meanwhile
  {
    MutexLock g(mu_);
    Inode* dir = ns_.Get(parent);
    if (!dir || !dir->linked()) {
      lost = ENOENT;
    } else if (ns_.Child(dir, name)) {
      lost = EEXIST;
    } else {
      Inode* inode = ns_.NewInode(is_dir, attr);
      inode->committed = record;
      ns_.Attach(dir, inode, std::string(name));
      inode->nlookup++;
      return AttrOfLocked(inode, nullptr);
    }
  }
  // The new entry loses: its record goes with no index lock held.
  (void)RemoveObject(*record);
  return Status::Error(lost, lost == EEXIST ? "exists" : "directory was removed");
}

Status Engine::Rmdir(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  MutexLock publish(publish_mu_);
  std::shared_ptr<Version> record;
  {
    MutexLock g(mu_);
    Result<Inode*> dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    Inode* child = ns_.Child(*dir, name);
    if (!child || !child->visible()) return Status::Error(ENOENT, "no such directory");
    if (!child->is_dir) return Status::Error(ENOTDIR, "not a directory");
    if (!child->dir->empty()) return Status::Error(ENOTEMPTY, "directory not empty");
    record = child->committed;
  }
  if (record) {
    Status s = RemoveObject(*record);
    if (!s.ok() && s.err() != ENOENT) return Status::Error(EIO, s.message());
  }
  MutexLock g(mu_);
  Inode* child = ns_.Child(ns_.Get(parent), name);
  if (!child) return Status::Ok();
  if (!child->dir->empty()) {
    // A pending file appeared meanwhile; the record is gone but the directory stays (implicit).
    child->committed.reset();
    return Status::Error(ENOTEMPTY, "directory not empty");
  }
  ns_.Detach(child);
  child->committed.reset();
  ns_.Reap(child);
  return Status::Ok();
}

Status Engine::Unlink(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  MutexLock publish(publish_mu_);
  std::shared_ptr<Version> version;
  Inode* child;
  {
    MutexLock g(mu_);
    Result<Inode*> dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    child = ns_.Child(*dir, name);
    // A pending key can be unlinked by name: its writer holds the name.
    if (!child) return Status::Error(ENOENT, "no such key");
    if (child->is_dir) return Status::Error(EISDIR, "is a directory");
    version = child->committed;
  }
  if (version) {
    Status s = RemoveObject(*version);
    if (!s.ok() && s.err() != ENOENT) return Status::Error(EIO, s.message());
  }
  MutexLock g(mu_);
  ns_.Detach(child);
  UntrackCommitted(child);
  child->last_version = child->committed;
  child->committed.reset();
  ns_.Reap(child);
  return Status::Ok();
}

Result<std::shared_ptr<Version>> Engine::CopyToStore(const std::shared_ptr<Version>& version, uint32_t store_index,
                                                     ObjectHeader header) {
  Draft draft;
  {
    MutexLock dlk(draft.mutex());
    KVFS_RETURN_IF_ERROR(LoadDraft(version, &draft));
  }
  Store* store = stores_[store_index].get();
  std::unique_ptr<StagingFile> staging;
  {
    MutexLock dlk(draft.mutex());
    KVFS_RETURN_IF_ERROR(WriteObject(store, &header, &draft, &staging));
  }
  std::string location = store->LocationFor(HashKey(header.key));
  uint64_t file_id = FileId(store, staging->fd());
  KVFS_RETURN_IF_ERROR(PublishStaging(store_index, *staging, location));
  return MakeVersion(store_index, location, header, file_id);
}

Status Engine::MoveObject(Inode* inode, const std::string& from_key, const std::string& new_key) {
  std::shared_ptr<Version> v;
  ObjectHeader before, header;
  {
    MutexLock g(mu_);
    v = inode->committed;
    if (!v) return Status::Ok();
    before = v->header();
    before.key = from_key;
    before.rdev = inode->attr.rdev;  // kept by the inode, not the version
    header = before;
    header.key = new_key;
    header.generation = next_generation_++;
  }
  // First the object file claims the new key, in its spare header slot. A
  // crash after this leaves the file under the new key (the newer claim wins
  // at mount), before it the old key: one of the two names, never both.
  KVFS_RETURN_IF_ERROR(WriteSpareHeaderSlot(v.get(), before.key, header));
  uint32_t new_store = StoreIndexFor(new_key);
  if (new_store == v->store_index()) {
    std::string new_location = v->store()->LocationFor(HashKey(new_key));
    Status moved;
    {
      // Under mu_ so that no open looks for the object between the rename
      // and the index update.
      MutexLock g(mu_);
      moved = v->store()->Move(v->location(), new_location, !Deferred(v->store_index()));
      if (moved.ok()) {
        v->SetLocation(new_location, new_key);
        Dirtied(v->store_index());
      }
    }
    if (!moved.ok()) {
      // Put the old key back with a newer generation, so that a later mount
      // does not carry out the rename this call reports as failed.
      {
        MutexLock g(mu_);
        before.generation = next_generation_++;
      }
      (void)WriteSpareHeaderSlot(v.get(), new_key, before);
    }
    return moved;
  }
  // To another store: a copy with a newer generation than the claim, then the
  // source goes.
  {
    MutexLock g(mu_);
    header.generation = next_generation_++;
  }
  header.slot = 0;
  Result<std::shared_ptr<Version>> copy = CopyToStore(v, new_store, header);
  if (!copy.ok()) {
    // As above: the source keeps the old key, with a newer claim.
    {
      MutexLock g(mu_);
      before.generation = next_generation_++;
    }
    (void)WriteSpareHeaderSlot(v.get(), new_key, before);
    return copy.status();
  }
  Status s = RemoveObject(*v);
  if (!s.ok()) spdlog::warn("rename: old copy {} not removed: {}", v->location(), s.message());
  MutexLock g(mu_);
  std::shared_ptr<Version> old = std::move(inode->committed);
  inode->committed = *copy;
  if (!inode->is_dir) TrackCommitted(inode, old.get());
  return Status::Ok();
}

size_t Engine::LongestKeyBelowLocked(const Inode* dir) const {
  if (!dir->is_dir) return 0;
  std::vector<const Inode*> children;
  dir->dir->ForEachAfter(0, [&](uint64_t, Inode* child) {
    children.push_back(child);
    return true;
  });
  size_t longest = 0;
  for (const Inode* child : children) {
    size_t len = child->name.size();
    if (child->is_dir && !child->dir->empty()) len += 1 + LongestKeyBelowLocked(child);
    longest = std::max(longest, len);
  }
  return longest;
}

Status Engine::MoveTreeSteps(Inode* inode, const std::string& new_key, TreeMove* work) {
  std::string old_key;
  bool had_object;
  {
    MutexLock g(mu_);
    old_key = ns_.KeyOf(inode);
    had_object = inode->committed != nullptr;
  }
  KVFS_RETURN_IF_ERROR(MoveObject(inode, old_key, new_key));
  if (had_object) work->done.push_back({inode, old_key, new_key});
  if (!inode->is_dir) return Status::Ok();
  std::vector<std::pair<Inode*, std::string>> children;
  {
    // Each child is pinned (a lookup reference) until MoveTree is done, so
    // that a concurrent release cannot free it while it is worked on
    // without the lock.
    MutexLock g(mu_);
    inode->dir->ForEachAfter(0, [&](uint64_t, Inode* child) {
      child->nlookup++;
      work->pinned.push_back(child);
      children.emplace_back(child, child->name);
      return true;
    });
  }
  for (auto& [child, name] : children) {
    KVFS_RETURN_IF_ERROR(MoveTreeSteps(child, new_key + "/" + name, work));
  }
  return Status::Ok();
}

Status Engine::MoveTree(Inode* inode, const std::string& new_key) {
  TreeMove work;
  {
    MutexLock g(mu_);
    inode->nlookup++;
    work.pinned.push_back(inode);
  }
  Status result = MoveTreeSteps(inode, new_key, &work);
  if (!result.ok()) {
    // Undo, newest first: each moved object goes back to its old key. The
    // namespace was not changed, so the store then matches it again.
    for (size_t i = work.done.size(); i-- > 0;) {
      const TreeMove::Step& step = work.done[i];
      Status back = MoveObject(step.inode, step.to_key, step.from_key);
      if (!back.ok()) {
        spdlog::error("a failed rename could not be undone: '{}' is left as '{}': {}", EscapeForLog(step.from_key),
                      EscapeForLog(step.to_key), back.message());
      }
    }
  }
  MutexLock g(mu_);
  for (Inode* node : work.pinned) {
    node->nlookup--;
    ns_.Reap(node);
  }
  return result;
}

Status Engine::Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                      unsigned flags) {
  constexpr unsigned kNoReplace = 1;  // RENAME_NOREPLACE
  if (flags & ~kNoReplace) return Status::Error(EINVAL, "unsupported rename flags");
  KVFS_RETURN_IF_ERROR(CheckName(name));
  KVFS_RETURN_IF_ERROR(CheckName(new_name));
  MutexLock publish(publish_mu_);
  Inode* src;
  Inode* dst;
  std::string new_key;
  std::shared_ptr<Version> dst_version;
  {
    MutexLock g(mu_);
    Result<Inode*> dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    Result<Inode*> new_dir = ChildForChangeLocked(new_parent, new_name);
    if (!new_dir.ok()) return new_dir.status();
    src = ns_.Child(*dir, name);
    if (!src) return Status::Error(ENOENT, "no such key");
    dst = ns_.Child(*new_dir, new_name);
    if (dst == src) return Status::Ok();
    if (dst && (flags & kNoReplace)) return Status::Error(EEXIST, "target exists");
    if (src->is_dir) {
      if (ns_.IsAncestor(src, *new_dir)) return Status::Error(EINVAL, "cannot move a directory into itself");
      if (dst && !dst->is_dir) return Status::Error(ENOTDIR, "target is not a directory");
      if (dst && !dst->dir->empty()) return Status::Error(ENOTEMPTY, "target directory not empty");
    } else if (dst && dst->is_dir) {
      return Status::Error(EISDIR, "target is a directory");
    }
    new_key = JoinKey(ns_.KeyOf(*new_dir), new_name);
    if (new_key.size() > kMaxKeyLength) return Status::Error(ENAMETOOLONG, "path too long");
    // Every key below a moved directory must fit too, checked before
    // anything moves.
    if (src->is_dir && !src->dir->empty() && new_key.size() + 1 + LongestKeyBelowLocked(src) > kMaxKeyLength) {
      return Status::Error(ENAMETOOLONG, "a key below the directory would be too long");
    }
    if (dst) dst_version = dst->committed;
    // Pin both inodes (a lookup reference) while we work without mu_.
    src->nlookup++;
    if (dst) dst->nlookup++;
  }
  struct Unpin {
    Engine* e;
    Inode* src;
    Inode* dst;
    ~Unpin() {
      MutexLock g(e->mu_);
      for (Inode* i : {src, dst}) {
        if (!i) continue;
        i->nlookup--;
        e->ns_.Reap(i);
      }
    }
  } unpin{this, src, dst};
  KVFS_RETURN_IF_ERROR(MoveTree(src, new_key));
  bool src_has_object;
  {
    MutexLock g(mu_);
    src_has_object = src->committed != nullptr;
  }
  if (dst_version && !src_has_object) {
    // Nothing was moved onto the target's location: remove its object explicitly.
    Status s = RemoveObject(*dst_version);
    if (!s.ok() && s.err() != ENOENT) return Status::Error(EIO, s.message());
  }
  MutexLock g(mu_);
  if (dst) {
    ns_.Detach(dst);
    UntrackCommitted(dst);
    dst->last_version = dst->committed;
    dst->committed.reset();
    ns_.Reap(dst);
  }
  if (!src->linked()) {
    // A pending key whose writers all left while we worked: it is gone.
    return Status::Error(ENOENT, "no such key");
  }
  ns_.Detach(src);
  ns_.Attach(ns_.Get(new_parent), src, std::string(new_name));
  src->attr.ctime_ns = NowNs();
  return Status::Ok();
}

Status Engine::ReadDir(uint64_t ino, uint64_t offset, bool plus, const std::function<bool(const DirEntry&)>& emit) {
  MutexLock g(mu_);
  Inode* dir = ns_.Get(ino);
  if (!dir) return Status::Error(ENOENT, "stale inode");
  if (!dir->is_dir) return Status::Error(ENOTDIR, "not a directory");
  if (offset < 1) {
    DirEntry e{".", AttrOfLocked(dir, nullptr), 1};
    if (!emit(e)) return Status::Ok();
  }
  if (offset < 2) {
    Inode* parent = dir->parent ? dir->parent : dir;
    DirEntry e{"..", AttrOfLocked(parent, nullptr), 2};
    if (!emit(e)) return Status::Ok();
  }
  // One entry reused for every child: its name keeps its capacity.
  DirEntry e;
  dir->dir->ForEachAfter(std::max<uint64_t>(offset, 2), [&](uint64_t seq, Inode* child) {
    mu_.AssertHeld();
    if (!child->visible()) return true;
    e.name.assign(child->name);
    if (plus) {
      e.attr = AttrOfLocked(child, nullptr);
    } else {
      e.attr = Attr{};
      e.attr.ino = child->ino;
      e.attr.mode = child->attr.mode;
    }
    e.next_offset = seq;
    if (!emit(e)) return false;
    if (plus) child->nlookup++;
    return true;
  });
  return Status::Ok();
}

}  // namespace kvfs
