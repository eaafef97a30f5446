// Engine: its life cycle (Start, the destructor), placement of keys on
// stores, the attributes of an inode, the debugging surface and the
// statistics.
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
      publish_mu_, options_.commit_flush == EngineOptions::CommitFlush::kGroup, [this](uint32_t si) { return Deferred(si); },
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
  // Handles the kernel never released: the session ended before their
  // RELEASE came (a stop by signal right after a close; the kernel sends
  // RELEASE asynchronously). Release them as the kernel would have, while
  // everything they use is still there.
  std::vector<FileHandle*> unreleased;
  {
    MutexLock g(mu_);
    unreleased.assign(open_handles_.begin(), open_handles_.end());
  }
  for (FileHandle* handle : unreleased) Release(handle);
  read_ahead_.reset();  // its reads use the pool, the executor and the stores
  // The reconciler and the evictor call into each other's parts and into
  // the index: both stop before anything goes.
  shared_->Stop();
  if (space_) space_->StopEvictor();
  background_sync_.reset();  // flushes what is still pending
}

Result<std::unique_ptr<Engine>> Engine::Start(const EngineOptions& options, std::vector<std::unique_ptr<Store>> stores) {
  if (stores.empty()) return Status::Error(EINVAL, "at least one store is required");
  if (options.buffer_size == 0 || options.buffer_size % kChunkSize != 0) {
    return Status::Error(EINVAL, "buffer size must be a positive multiple of 256 KiB");
  }
  if (options.read_segment_bytes == 0 || options.read_segment_bytes % 4096 != 0) {
    return Status::Error(EINVAL, "read segment size must be a positive multiple of 4096");
  }
  if (!options.space.store_limits.empty() && options.space.store_limits.size() != stores.size()) {
    return Status::Error(EINVAL, "store_limits must have one entry per store");
  }
  std::unique_ptr<Engine> engine(new Engine(options, std::move(stores)));
  std::vector<Store*> raw;
  for (auto& s : engine->stores_) raw.push_back(s.get());
  Result<std::unique_ptr<SpaceManager>> manager =
      SpaceManager::Create(options.space, raw, engine->store_accounts_, engine.get());
  if (!manager.ok()) return manager.status();
  engine->space_ = std::move(*manager);
  engine->options_.space.capacity_bytes = engine->space_->capacity_bytes();
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
  a.rdev = inode->attr.rdev;
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
  } else if (handle && handle->lease && handle->readable) {
    // A reader sees its version. A write-only handle's lease only keeps its
    // base: what it would write over is the committed version (below).
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
    info.checksum_of_table = v->format() >= 2 && v->kind() == ObjectKind::kFile;
  }
  return info;
}

EngineStats Engine::Stats() const {
  EngineStats s;
  s.capacity_bytes = options_.space.capacity_bytes;
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
  s.pool_in_use = pool_->in_use();
  s.pool_buffer_bytes = pool_->buffer_size();
  s.io_in_flight = io_->in_flight();
  s.io_uring = io_->using_io_uring();
  s.read_latency_ns = read_latency_.Snapshot();
  s.commit_latency_ns = commit_latency_.Snapshot();
  s.eviction_batch_objects = space_->EvictionBatches();
  {
    MutexLock g(mu_);
    s.open_handles = open_handles_.size();
    s.inodes = ns_.inode_count();
  }
  s.eviction_policy = options_.space.eviction_policy;
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
