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

namespace kvfs {
using namespace engine_detail;

size_t ReadReply::bytes() const {
  size_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

Engine::Engine(const EngineOptions& options, std::vector<std::unique_ptr<Store>> stores)
    : options_(options), stores_(std::move(stores)), account_(std::make_shared<SpaceAccount>()) {
  for (size_t i = 0; i < stores_.size(); ++i) {
    store_accounts_.push_back(std::make_shared<SpaceAccount>());
    auto home = std::make_shared<VersionHome>();
    home->store = stores_[i].get();
    home->store_index = static_cast<uint32_t>(i);
    home->total = account_;
    home->store_account = store_accounts_.back();
    homes_.push_back(std::move(home));
    integrity_.push_back(std::make_unique<IntegrityCounters>());
  }
  std::vector<Store*> all;
  for (auto& s : stores_) all.push_back(s.get());
  shared_ = std::make_unique<SharedTier>(all, options_.shared_refresh, static_cast<SharedIndex*>(this));
  inode_by_location_.resize(stores_.size());
  publisher_ = std::make_unique<PublishQueue>(
      publish_mu_, options_.group_commit, [this](uint32_t si) { return Deferred(si); },
      [this](uint32_t si) { Dirtied(si); });
  pool_ = std::make_unique<BufferPool>(options_.buffer_size, options_.buffer_count);
  io_ = std::make_unique<IoExecutor>(pool_.get(), options_.use_io_uring);
  if (options_.read_ahead_bytes > 0) read_ahead_ = std::make_unique<ReadAhead>(2);
  if (options_.durability == EngineOptions::Durability::kBackground) {
    std::vector<Store*> raw;
    for (auto& s : stores_) raw.push_back(s.get());
    background_sync_ = std::make_unique<BackgroundSync>(std::move(raw), options_.sync_interval);
  }
}

Engine::~Engine() {
  read_ahead_.reset();  // its reads use the pool, the executor and the stores
  // The reconciler and the evictor call into each other's parts and into
  // the index: both stop before anything goes.
  shared_->Stop();
  if (space_) space_->StopEvictor();
  background_sync_.reset();  // flushes what is still pending
}

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options, std::vector<std::unique_ptr<Store>> stores) {
  if (stores.empty()) return Status::Error(EINVAL, "at least one store is required");
  if (options.buffer_size == 0 || options.buffer_size % kChunkSize != 0) {
    return Status::Error(EINVAL, "buffer size must be a positive multiple of 256 KiB");
  }
  if (options.read_segment_bytes == 0 || options.read_segment_bytes % 4096 != 0) {
    return Status::Error(EINVAL, "read segment size must be a positive multiple of 4096");
  }
  if (!options.store_limits.empty() && options.store_limits.size() != stores.size()) {
    return Status::Error(EINVAL, "store_limits must have one entry per store");
  }
  std::unique_ptr<Engine> engine(new Engine(options, std::move(stores)));
  SpaceManager::Options space;
  space.capacity_bytes = options.capacity_bytes;
  space.store_limits = options.store_limits;
  space.eviction_policy = options.eviction_policy;
  space.high_watermark = options.high_watermark;
  space.low_watermark = options.low_watermark;
  space.max_sync_evictions = options.max_sync_evictions;
  std::vector<Store*> raw;
  for (auto& s : engine->stores_) raw.push_back(s.get());
  Result<std::unique_ptr<SpaceManager>> manager = SpaceManager::Create(space, raw, engine->store_accounts_, engine.get());
  if (!manager.ok()) return manager.status();
  engine->space_ = std::move(*manager);
  engine->options_.capacity_bytes = engine->space_->capacity_bytes();
  KVFS_RETURN_IF_ERROR(engine->Rebuild());
  if (options.shared_refresh.count() <= 0) return Status::Error(EINVAL, "the shared-store refresh interval must be positive");
  engine->shared_->Start();
  if (options.background_eviction) engine->space_->StartEvictor();
  return engine;
}

std::shared_ptr<Version> Engine::MakeVersion(uint32_t store_index, const std::string& location,
                                             const ObjectHeader& header, uint64_t file_id) {
  auto v = std::make_shared<Version>(homes_[store_index], location, header.key, header);
  v->file_id = file_id;
  return v;
}

uint32_t Engine::StoreIndexFor(const std::string& key) const {
  return JumpConsistentHash(HashKey(key).low, static_cast<uint32_t>(stores_.size()));
}

// ---------------------------------------------------------------------------
// Attributes and lookups.

Attr Engine::AttrOfLocked(const Inode* inode, const FileHandle* handle, uint64_t thread) const {
  Attr a;
  a.ino = inode->ino;
  a.mode = inode->attr.mode;
  a.uid = inode->attr.uid;
  a.gid = inode->attr.gid;
  a.atime_ns = inode->attr.atime_ns;
  a.mtime_ns = inode->attr.mtime_ns;
  a.ctime_ns = inode->attr.ctime_ns;
  if (inode->is_dir) {
    a.nlink = 2;
    a.size = 4096;
    a.blocks = 8;
    return a;
  }
  a.nlink = inode->linked() || inode->superseded ? 1 : 0;
  a.size_in_flux = inode->draft != nullptr && inode->writers > 0;
  const std::vector<uint64_t>* threads = inode->draft ? &inode->draft->writer_threads : nullptr;
  if (handle && handle->draft) {
    a.size = handle->draft->size();
  } else if (!handle && thread != 0 && threads &&
             std::find(threads->begin(), threads->end(), thread) != threads->end()) {
    a.size = inode->draft->size();  // a writer's fstat
  } else if (handle && handle->lease) {
    a.size = handle->lease.version()->size();
    a.mtime_ns = handle->lease.version()->mtime_ns();
  } else if (inode->committed) {
    a.size = inode->committed->size();
  } else if (std::shared_ptr<Version> last = inode->last_version.lock()) {
    a.size = last->size();
  } else if (inode->draft) {
    a.size = inode->draft->size();
  }
  a.blocks = ObjectFootprint(a.size) / 512;
  return a;
}

Result<Attr> Engine::Lookup(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  lookups_.fetch_add(1, std::memory_order_relaxed);
  bool read_through_done = false;
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
    if (child) child->lookup_refused = true;  // pending: invisible until its commit
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
  h.kind = inode->is_dir ? ObjectKind::kDirectory : ObjectKind::kFile;
  h.mode = inode->attr.mode;
  h.uid = inode->attr.uid;
  h.gid = inode->attr.gid;
  h.mtime_ns = inode->attr.mtime_ns;
  h.ctime_ns = inode->attr.ctime_ns;
  h.key = key;
  return h;
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
      if (*req.size > options_.max_object_bytes) return Status::Error(EFBIG, "object too large");
      if (*req.size > options_.capacity_bytes) return Status::Error(ENOSPC, "larger than the capacity");
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
        header = HeaderFor(inode, ns_.KeyOf(inode));
        if (record) {
          header.size = record->size();
          header.checksum = record->checksum();
        }
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

Result<Attr> Engine::Mkdir(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid) {
  KVFS_RETURN_IF_ERROR(CheckName(name));
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
    attr.atime_ns = attr.mtime_ns = attr.ctime_ns = NowNs();
    header.kind = ObjectKind::kDirectory;
    header.mode = attr.mode;
    header.uid = uid;
    header.gid = gid;
    header.mtime_ns = attr.mtime_ns;
    header.ctime_ns = attr.ctime_ns;
    header.key = key;
    header.generation = next_generation_++;
  }
  uint32_t store_index = StoreIndexFor(header.key);
  Result<std::shared_ptr<Version>> record = PublishRecord(store_index, header);
  if (!record.ok()) return Status::Error(record.err() == ENOSPC ? ENOSPC : EIO, record.status().message());
  int lost = 0;  // the errno when the directory lost its name meanwhile
  {
    MutexLock g(mu_);
    Inode* dir = ns_.Get(parent);
    if (!dir || !dir->linked() || ns_.Child(dir, name)) {
      lost = dir ? EEXIST : ENOENT;
    } else {
      Inode* inode = ns_.NewInode(true, attr);
      inode->committed = *record;
      ns_.Attach(dir, inode, std::string(name));
      inode->nlookup++;
      return AttrOfLocked(inode, nullptr);
    }
  }
  // A file of that name was created meanwhile: the directory loses. Its
  // record goes with no index lock held (store I/O never runs under mu_).
  (void)RemoveObject(**record);
  return Status::Error(lost, "exists");
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
    auto dlk = draft.lock();
    KVFS_RETURN_IF_ERROR(LoadDraft(version, &draft));
  }
  Store* store = stores_[store_index].get();
  std::unique_ptr<StagingFile> staging;
  {
    auto dlk = draft.lock();
    KVFS_RETURN_IF_ERROR(WriteObject(store, header, &draft, &staging));
  }
  std::string location = store->LocationFor(HashKey(header.key));
  uint64_t file_id = FileId(staging->fd());
  KVFS_RETURN_IF_ERROR(PublishStaging(store_index, *staging, location));
  return MakeVersion(store_index, location, header, file_id);
}

Status Engine::MoveObject(Inode* inode, const std::string& new_key) {
  std::shared_ptr<Version> v;
  ObjectHeader before, header;
  {
    MutexLock g(mu_);
    v = inode->committed;
    if (!v) return Status::Ok();
    before = v->header();
    before.key = ns_.KeyOf(inode);
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
  if (!copy.ok()) return copy.status();
  Status s = RemoveObject(*v);
  if (!s.ok()) spdlog::warn("rename: old copy {} not removed: {}", v->location(), s.message());
  MutexLock g(mu_);
  std::shared_ptr<Version> old = std::move(inode->committed);
  inode->committed = *copy;
  if (!inode->is_dir) TrackCommitted(inode, old.get());
  return Status::Ok();
}

Status Engine::MoveTree(Inode* inode, const std::string& new_key) {
  KVFS_RETURN_IF_ERROR(MoveObject(inode, new_key));
  if (!inode->is_dir) return Status::Ok();
  std::vector<std::pair<Inode*, std::string>> children;
  {
    // Each child is pinned (a lookup reference) while it is worked on
    // without the lock, so a concurrent release cannot free it.
    MutexLock g(mu_);
    inode->dir->ForEachAfter(0, [&](uint64_t, Inode* child) {
      child->nlookup++;
      children.emplace_back(child, child->name);
      return true;
    });
  }
  Status result;
  for (auto& [child, name] : children) {
    if (result.ok()) result = MoveTree(child, new_key + "/" + name);
    MutexLock g(mu_);
    child->nlookup--;
    ns_.Reap(child);
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
  dir->dir->ForEachAfter(std::max<uint64_t>(offset, 2), [&](uint64_t seq, Inode* child) {
    mu_.AssertHeld();
    if (!child->visible()) return true;
    DirEntry e{child->name, AttrOfLocked(child, nullptr), seq};
    if (!emit(e)) return false;
    if (plus) child->nlookup++;
    return true;
  });
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Debugging surface.

Result<InodeInfo> Engine::Inspect(uint64_t ino) const {
  MutexLock g(mu_);
  const Inode* inode = ns_.Get(ino);
  if (!inode) return Status::Error(ENOENT, "stale inode");
  InodeInfo info;
  info.key = ns_.KeyOf(inode);
  info.is_dir = inode->is_dir;
  info.open_handles = inode->open_handles;
  info.writing = inode->draft && inode->draft->dirty();
  if (const Version* v = inode->committed.get()) {
    info.has_version = true;
    info.store = v->store()->Describe();
    info.location = v->location();
    info.generation = v->generation();
    info.size = v->size();
    info.footprint = v->footprint();
    info.leases = v->leases();
    info.checksum = v->checksum();
  }
  return info;
}

EngineStats Engine::Stats() const {
  EngineStats s;
  s.capacity_bytes = options_.capacity_bytes;
  s.used_bytes = account_->used_bytes.load();
  s.leased_bytes = account_->leased_bytes.load();
  s.objects = account_->objects.load();
  s.reads = reads_.load();
  s.read_bytes = read_bytes_.load();
  s.writes = writes_.load();
  s.write_bytes = write_bytes_.load();
  s.commits = commits_.load();
  s.commit_failures = commit_failures_.load();
  s.group_commits = publisher_->groups();
  s.group_commit_jobs = publisher_->jobs();
  s.durability = background_sync_ ? "background" : "close";
  if (background_sync_) {
    s.background_syncs = background_sync_->syncs();
    s.background_sync_failures = background_sync_->failures();
    s.stores_not_durable = background_sync_->dirty_stores();
  }
  s.lookups = lookups_.load();
  s.negative_lookups = negative_lookups_.load();
  s.page_cache_opens = page_cache_opens_.load();
  s.superseded_inodes = superseded_inodes_.load();
  s.pool_hits = pool_->hits();
  s.pool_misses = pool_->misses();
  s.pool_buffers = pool_->count();
  s.pool_buffer_bytes = pool_->buffer_size();
  s.io_in_flight = io_->in_flight();
  s.io_uring = io_->using_io_uring();
  {
    MutexLock g(mu_);
    s.open_handles = open_handles_;
    s.inodes = ns_.inode_count();
  }
  s.eviction_policy = options_.eviction_policy;
  for (size_t i = 0; i < stores_.size(); ++i) {
    StoreStats st;
    SpaceManager::StoreCounters room = space_->Counters(static_cast<uint32_t>(i));
    st.name = stores_[i]->Describe();
    st.capacity_bytes = room.limits.capacity_bytes;
    st.floor_bytes = room.floor_bytes;
    st.objects = store_accounts_[i]->objects.load();
    st.used_bytes = store_accounts_[i]->used_bytes.load();
    st.leased_bytes = store_accounts_[i]->leased_bytes.load();
    st.pinned_bytes = st.leased_bytes + room.reserved_bytes;
    st.evictions = room.evictions;
    st.enospc = room.enospc;
    st.checksum_failures = integrity_[i]->checksum_failures.load();
    st.quarantined = integrity_[i]->quarantined.load();
    s.checksum_failures += st.checksum_failures;
    s.quarantined += st.quarantined;
    s.pinned_bytes += st.pinned_bytes;
    s.evictions.capacity += st.evictions.capacity;
    s.evictions.watermark += st.evictions.watermark;
    s.evictions.floor += st.evictions.floor;
    s.evictions.bytes += st.evictions.bytes;
    s.enospc += st.enospc;
    st.direct_io = stores_[i]->DirectIo();
    Result<StoreSpace> space = stores_[i]->Space();
    if (space.ok()) {
      st.fs_total_bytes = space->total_bytes;
      st.fs_free_bytes = space->free_bytes;
    }
    st.health = stores_[i]->Health();
    if (shared_->shared(static_cast<uint32_t>(i))) {
      SharedTier::StoreState sh = shared_->State(static_cast<uint32_t>(i));
      st.shared = true;
      st.host_id = sh.host_id;
      st.evictor_holder = sh.evictor_holder;
      st.holds_evictor = sh.holds_evictor;
      st.reconcile_passes = sh.reconcile_passes;
      st.reconcile_failures = sh.reconcile_failures;
      st.remote_added = sh.remote_added;
      st.remote_replaced = sh.remote_replaced;
      st.remote_removed = sh.remote_removed;
      st.read_through = sh.read_through;
    }
    s.stores.push_back(std::move(st));
  }
  return s;
}

}  // namespace kvfs
