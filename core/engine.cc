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

namespace kvfs {

// An open file: the inode, the access mode and the lease on the version it
// opened. Owned by the engine between Open/Create and Release.
class FileHandle {
 public:
  Inode* inode = nullptr;  // alive while open_handles > 0
  bool readable = false;
  bool writable = false;
  bool append = false;
  Lease lease;
  // Owners (FUSE lock_owner) that wrote through this handle; 0 = unknown.
  std::vector<uint64_t> writer_owners;  // guarded by Engine::mu_
  // The version this handle writes (shared with writers that joined it).
  std::shared_ptr<Draft> draft;  // guarded by Engine::mu_
  // The last commit attempted at a flush of this handle failed, and nothing
  // was written since: release must not publish that version after all.
  bool commit_failed = false;  // guarded by Engine::mu_
  // The chunks of the last read, for the next sequential read.
  std::mutex cache_mu;
  std::shared_ptr<const ChunkSpan> cache;  // guarded by cache_mu
};

namespace {

constexpr size_t kMaxNameLength = 255;

// st_ino of an open file, or 0.
uint64_t FileId(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

Status CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return Status::Error(EINVAL, "invalid name");
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name longer than 255 bytes");
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Status::Error(EINVAL, "invalid character in name");
  }
  return Status::Ok();
}

std::string JoinKey(const std::string& dir_key, std::string_view name) {
  return dir_key.empty() ? std::string(name) : dir_key + "/" + std::string(name);
}

// A 4 KiB aligned block, freed on scope exit.
struct AlignedBlock {
  uint8_t* data;
  AlignedBlock() : data(static_cast<uint8_t*>(std::aligned_alloc(4096, kHeaderSize))) { std::memset(data, 0, kHeaderSize); }
  ~AlignedBlock() { std::free(data); }
  AlignedBlock(const AlignedBlock&) = delete;
  AlignedBlock& operator=(const AlignedBlock&) = delete;
};

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

size_t ReadReply::bytes() const {
  size_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

namespace {
void EvictionsJson(std::ostringstream& o, const EvictionCounts& e) {
  o << "\"evictions\":{\"total\":" << e.total() << ",\"capacity\":" << e.capacity << ",\"watermark\":" << e.watermark
    << ",\"floor\":" << e.floor << ",\"bytes\":" << e.bytes << "}";
}
}  // namespace

std::string EngineStats::ToJson() const {
  std::ostringstream o;
  o << "{\"capacity_bytes\":" << capacity_bytes << ",\"used_bytes\":" << used_bytes
    << ",\"leased_bytes\":" << leased_bytes << ",\"pinned_bytes\":" << pinned_bytes << ",";
  EvictionsJson(o, evictions);
  o << ",\"enospc\":" << enospc << ",\"checksum_failures\":" << checksum_failures
    << ",\"quarantined\":" << quarantined << ",\"eviction_policy\":\"" << eviction_policy << "\"" << ",\"objects\":" << objects << ",\"inodes\":" << inodes
    << ",\"open_handles\":" << open_handles << ",\"reads\":" << reads << ",\"read_bytes\":" << read_bytes
    << ",\"writes\":" << writes << ",\"write_bytes\":" << write_bytes << ",\"commits\":" << commits
    << ",\"commit_failures\":" << commit_failures << ",\"group_commits\":" << group_commits
    << ",\"group_commit_jobs\":" << group_commit_jobs << ",\"lookups\":" << lookups
    << ",\"negative_lookups\":" << negative_lookups << ",\"pool_hits\":" << pool_hits
    << ",\"pool_misses\":" << pool_misses << ",\"pool_buffers\":" << pool_buffers
    << ",\"pool_buffer_bytes\":" << pool_buffer_bytes << ",\"io_in_flight\":" << io_in_flight
    << ",\"io_uring\":" << (io_uring ? "true" : "false") << ",\"stores\":[";
  for (size_t i = 0; i < stores.size(); ++i) {
    const StoreStats& s = stores[i];
    if (i) o << ",";
    o << "{\"name\":\"" << JsonEscape(s.name) << "\",\"capacity_bytes\":" << s.capacity_bytes
      << ",\"floor_bytes\":" << s.floor_bytes << ",\"objects\":" << s.objects << ",\"used_bytes\":" << s.used_bytes
      << ",\"leased_bytes\":" << s.leased_bytes << ",\"pinned_bytes\":" << s.pinned_bytes << ",";
    EvictionsJson(o, s.evictions);
    o << ",\"enospc\":" << s.enospc << ",\"checksum_failures\":" << s.checksum_failures
      << ",\"quarantined\":" << s.quarantined << ",\"fs_total_bytes\":" << s.fs_total_bytes
      << ",\"fs_free_bytes\":" << s.fs_free_bytes << ",\"direct_io\":" << (s.direct_io ? "true" : "false") << "}";
  }
  o << "]}";
  return o.str();
}

Engine::Engine(const EngineOptions& options, std::vector<std::unique_ptr<Store>> stores)
    : options_(options), stores_(std::move(stores)), account_(std::make_shared<SpaceAccount>()) {
  uint64_t total = 0;
  for (size_t i = 0; i < stores_.size(); ++i) {
    store_accounts_.push_back(std::make_shared<SpaceAccount>());
    auto rt = std::make_unique<StoreRuntime>();
    if (options_.store_limits.size() == stores_.size()) {
      rt->limits = options_.store_limits[i];
    } else {
      rt->limits.capacity_bytes = options_.capacity_bytes / stores_.size();
    }
    total += rt->limits.capacity_bytes;
    Result<StoreSpace> space = stores_[i]->Space();
    if (space.ok()) rt->fs_total_bytes = space->total_bytes;
    rt->policy = std::move(*MakeEvictionPolicy(options_.eviction_policy));
    runtime_.push_back(std::move(rt));
  }
  options_.capacity_bytes = total;
  pool_ = std::make_unique<BufferPool>(options_.buffer_size, options_.buffer_count);
  io_ = std::make_unique<IoExecutor>(pool_.get(), options_.use_io_uring);
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_evictor_ = true;
  }
  evictor_wake_.notify_all();
  if (evictor_.joinable()) evictor_.join();
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
  Result<std::unique_ptr<EvictionPolicy>> policy = MakeEvictionPolicy(options.eviction_policy);
  if (!policy.ok()) return policy.status();
  if (!(options.low_watermark > 0 && options.low_watermark <= options.high_watermark && options.high_watermark <= 1)) {
    return Status::Error(EINVAL, "watermarks must satisfy 0 < low <= high <= 1");
  }
  std::unique_ptr<Engine> engine(new Engine(options, std::move(stores)));
  KVFS_RETURN_IF_ERROR(engine->Rebuild());
  if (options.background_eviction) engine->evictor_ = std::thread([e = engine.get()] { e->EvictorLoop(); });
  return engine;
}

std::shared_ptr<Version> Engine::MakeVersion(uint32_t store_index, std::string location, ObjectHeader header,
                                             uint64_t file_id) {
  auto v = std::make_shared<Version>(stores_[store_index].get(), store_index, std::move(location), std::move(header),
                                     account_, store_accounts_[store_index]);
  v->file_id = file_id;
  return v;
}

uint32_t Engine::StoreIndexFor(const std::string& key) const {
  return JumpConsistentHash(HashKey(key).low, static_cast<uint32_t>(stores_.size()));
}

// ---------------------------------------------------------------------------
// Rebuild: the index is a function of what the stores hold.

Status Engine::Rebuild() {
  struct Found {
    uint32_t store_index;
    std::string location;
    ObjectHeader header;
    uint64_t file_id;
  };
  std::mutex found_mu;
  std::map<std::string, Found> best;  // by key
  std::vector<Found> losers;
  uint64_t skipped = 0;
  uint64_t scanned = 0;
  uint64_t max_generation = 0;
  std::vector<Status> scan_status(stores_.size());
  std::vector<std::thread> threads;
  int64_t started = NowNs();
  for (uint32_t si = 0; si < stores_.size(); ++si) {
    threads.emplace_back([&, si] {
      scan_status[si] = stores_[si]->Scan(
          [&](const ScannedObject& obj) {
            if (!obj.header.ok()) {
              spdlog::warn("{}: skipping {}: {}", stores_[si]->Describe(), obj.location, obj.header.status().message());
              std::lock_guard<std::mutex> g(found_mu);
              ++skipped;
              return;
            }
            const ObjectHeader& h = obj.header.value();
            if (h.kind == ObjectKind::kFile && obj.file_bytes < ObjectFootprint(h.size)) {
              spdlog::warn("{}: skipping {}: file holds {} bytes, header says {}", stores_[si]->Describe(),
                           obj.location, obj.file_bytes, ObjectFootprint(h.size));
              std::lock_guard<std::mutex> g(found_mu);
              ++skipped;
              return;
            }
            std::lock_guard<std::mutex> g(found_mu);
            if (++scanned % 100000 == 0) {
              spdlog::info("rebuild: {} objects scanned", scanned);
              if (options_.on_scan_progress) options_.on_scan_progress(scanned);
            }
            max_generation = std::max(max_generation, h.generation);
            Found f{si, obj.location, h, obj.file_id};
            auto it = best.find(h.key);
            if (it == best.end()) {
              best.emplace(h.key, std::move(f));
            } else if (it->second.header.generation < h.generation) {
              losers.push_back(std::move(it->second));
              it->second = std::move(f);
            } else {
              losers.push_back(std::move(f));
            }
          },
          options_.scan_threads);
    });
  }
  for (auto& t : threads) t.join();
  for (uint32_t si = 0; si < stores_.size(); ++si) {
    if (!scan_status[si].ok()) return Status::Error(scan_status[si].err(), stores_[si]->Describe() + ": scan failed: " + scan_status[si].message());
  }
  // Older copies of a key are leftovers of an interrupted rename: the newest wins.
  for (const Found& f : losers) {
    spdlog::info("{}: removing superseded copy {} of '{}'", stores_[f.store_index]->Describe(), f.location, f.header.key);
    stores_[f.store_index]->Remove(f.location);
  }

  // A rename interrupted between its header rewrite and its file move leaves
  // the object at the old key's place: put it where its key says.
  for (auto& [key, f] : best) {
    if (f.store_index != StoreIndexFor(key)) continue;  // a cross-store leftover: indexed where it is
    std::string expected = stores_[f.store_index]->LocationFor(HashKey(key));
    if (f.location == expected) continue;
    Status s = stores_[f.store_index]->Move(f.location, expected);
    if (s.ok()) {
      spdlog::info("{}: moved '{}' from {} to {}", stores_[f.store_index]->Describe(), key, f.location, expected);
      f.location = expected;
    } else {
      spdlog::warn("{}: cannot move '{}' to {}: {}", stores_[f.store_index]->Describe(), key, expected, s.message());
    }
  }

  std::lock_guard<std::mutex> g(mu_);
  next_generation_ = max_generation + 1;
  Attributes implicit_dir;
  implicit_dir.mode = S_IFDIR | 0755;
  implicit_dir.atime_ns = implicit_dir.mtime_ns = implicit_dir.ctime_ns = NowNs();
  ns_.root()->attr.atime_ns = ns_.root()->attr.mtime_ns = ns_.root()->attr.ctime_ns = implicit_dir.mtime_ns;
  for (auto& [key, f] : best) {  // sorted: a directory's record precedes its children
    const ObjectHeader& h = f.header;
    Attributes attr;
    attr.mode = h.mode;
    attr.uid = h.uid;
    attr.gid = h.gid;
    attr.mtime_ns = attr.atime_ns = h.mtime_ns;
    attr.ctime_ns = h.ctime_ns;
    bool is_dir = h.kind == ObjectKind::kDirectory;
    attr.mode = (attr.mode & 07777) | (is_dir ? S_IFDIR : S_IFREG);
    if (key.empty()) {
      if (is_dir) {
        ns_.root()->attr = attr;
        ns_.root()->committed = MakeVersion(f.store_index, f.location, h, f.file_id);
      }
      continue;
    }
    Inode* cur = ns_.root();
    bool conflict = false;
    size_t start = 0;
    std::string name;
    while (true) {
      size_t slash = key.find('/', start);
      name = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      if (slash == std::string::npos) break;
      Inode* next = ns_.Child(cur, name);
      if (!next) {
        next = ns_.NewInode(true, implicit_dir);
        ns_.Attach(cur, next, name);
      } else if (!next->is_dir) {
        conflict = true;
        break;
      }
      cur = next;
      start = slash + 1;
    }
    if (!conflict && CheckName(name).ok()) {
      Inode* existing = ns_.Child(cur, name);
      if (!existing) {
        Inode* inode = ns_.NewInode(is_dir, attr);
        inode->committed = MakeVersion(f.store_index, f.location, h, f.file_id);
        ns_.Attach(cur, inode, name);
        if (!is_dir) TrackCommitted(inode, nullptr);
        continue;
      }
      if (existing->is_dir && is_dir && !existing->committed) {
        existing->attr = attr;
        existing->committed = MakeVersion(f.store_index, f.location, h, f.file_id);
        continue;
      }
    }
    spdlog::warn("{}: object '{}' conflicts with another entry; left on the store, not indexed",
                 stores_[f.store_index]->Describe(), key);
    ++skipped;
  }
  double secs = static_cast<double>(NowNs() - started) / 1e9;
  spdlog::info("index rebuilt from {} store(s): {} objects, {} skipped, {:.2f}s", stores_.size(),
               account_->objects.load(), skipped, secs);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Attributes and lookups.

Attr Engine::AttrOfLocked(const Inode* inode, const FileHandle* handle) const {
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
  a.nlink = inode->linked() ? 1 : 0;
  if (handle && handle->draft) {
    a.size = handle->draft->size();
  } else if (handle && handle->lease) {
    a.size = handle->lease.version()->size();
    a.mtime_ns = handle->lease.version()->header.mtime_ns;
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
  std::lock_guard<std::mutex> g(mu_);
  Inode* dir = ns_.Get(parent);
  if (!dir) return Status::Error(ENOENT, "no such directory");
  if (!dir->is_dir) return Status::Error(ENOTDIR, "not a directory");
  Inode* child = ns_.Child(dir, name);
  if (!child || !child->visible()) {
    negative_lookups_.fetch_add(1, std::memory_order_relaxed);
    return Status::Error(ENOENT, "no such key");
  }
  child->nlookup++;
  return AttrOfLocked(child, nullptr);
}

void Engine::Forget(uint64_t ino, uint64_t n) {
  std::lock_guard<std::mutex> g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return;
  inode->nlookup -= std::min(n, inode->nlookup);
  ns_.Reap(inode);
}

Result<Attr> Engine::GetAttr(uint64_t ino, FileHandle* handle) {
  std::lock_guard<std::mutex> g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return Status::Error(ENOENT, "stale inode");
  if (inode->evicted && !handle) return Status::Error(ENOENT, "evicted");
  return AttrOfLocked(inode, handle);
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
// Store writes.

Status Engine::WriteObject(Store* store, const ObjectHeader& header, const Draft* draft,
                           std::unique_ptr<StagingFile>* out) {
  Result<std::unique_ptr<StagingFile>> staging = store->CreateStaging();
  if (!staging.ok()) return staging.status();
  AlignedBlock block;
  KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
  std::vector<IoRequest> reqs;
  int fd = (*staging)->fd();
  reqs.push_back(IoRequest{fd, block.data, kHeaderSize, 0, true});
  uint64_t size = draft ? draft->size_locked() : 0;
  for (size_t i = 0; draft && i < draft->chunk_count_locked() && i * kDraftChunkSize < size; ++i) {
    uint64_t start = i * kDraftChunkSize;
    size_t len = static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, size - start));
    len = (len + 4095) / 4096 * 4096;
    const uint8_t* chunk = draft->chunk_locked(i);
    reqs.push_back(IoRequest{fd, const_cast<uint8_t*>(chunk ? chunk : ZeroChunk()), len, kHeaderSize + start, true});
  }
  // Chunks past the last allocated one are holes up to `size`.
  for (size_t i = draft ? draft->chunk_count_locked() : 0; i * kDraftChunkSize < size; ++i) {
    uint64_t start = i * kDraftChunkSize;
    size_t len = static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, size - start));
    len = (len + 4095) / 4096 * 4096;
    reqs.push_back(IoRequest{fd, const_cast<uint8_t*>(ZeroChunk()), len, kHeaderSize + start, true});
  }
  // The chunk checksum table, after the data.
  uint64_t table_bytes = ChecksumTableBytes(size);
  std::unique_ptr<uint8_t, decltype(&std::free)> table(
      table_bytes ? static_cast<uint8_t*>(std::aligned_alloc(4096, table_bytes)) : nullptr, &std::free);
  if (table_bytes) {
    std::memset(table.get(), 0, table_bytes);
    for (uint64_t c = 0; c < ChunkCount(size); ++c) {
      uint64_t start = c * kChunkSize;
      size_t len = static_cast<size_t>(std::min<uint64_t>(kChunkSize, size - start));
      size_t di = start / kDraftChunkSize;
      const uint8_t* chunk = di < draft->chunk_count_locked() ? draft->chunk_locked(di) : nullptr;
      uint64_t h = XXH3_64bits((chunk ? chunk : ZeroChunk()) + start % kDraftChunkSize, len);
      std::memcpy(table.get() + c * 8, &h, 8);
    }
    reqs.push_back(IoRequest{fd, table.get(), table_bytes, ChecksumTableOffset(size), true});
  }
  KVFS_RETURN_IF_ERROR(io_->Run(reqs));
  *out = std::move(*staging);
  return Status::Ok();
}

namespace {
uint64_t ChecksumDraftLocked(const Draft& draft) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  uint64_t size = draft.size_locked();
  for (uint64_t pos = 0; pos < size; pos += kDraftChunkSize) {
    size_t i = pos / kDraftChunkSize;
    size_t len = static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, size - pos));
    const uint8_t* chunk = i < draft.chunk_count_locked() ? draft.chunk_locked(i) : nullptr;
    XXH3_64bits_update(st, chunk ? chunk : ZeroChunk(), len);
  }
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}
}  // namespace

// ---------------------------------------------------------------------------
// Space: reservations, eviction, the background evictor.

uint64_t Engine::FloorBytes(uint32_t si) const {
  const StoreRuntime& rt = *runtime_[si];
  auto by_fraction = static_cast<uint64_t>(rt.limits.min_free_fraction * static_cast<double>(rt.fs_total_bytes));
  return std::max(rt.limits.min_free_bytes, by_fraction);
}

std::optional<Engine::EvictionCause> Engine::TryReserve(uint32_t si, uint64_t bytes) {
  StoreRuntime& rt = *runtime_[si];
  uint64_t floor = FloorBytes(si);
  uint64_t fs_free = UINT64_MAX;
  if (floor > 0) {
    Result<StoreSpace> space = stores_[si]->Space();
    if (space.ok()) fs_free = space->free_bytes;
  }
  uint64_t reserved = rt.reserved.load();
  while (true) {
    uint64_t used = store_accounts_[si]->used_bytes.load();
    if (used + reserved + bytes > rt.limits.capacity_bytes) return EvictionCause::kCapacity;
    // Reserved bytes may already be on the disk; counting them again errs on the safe side.
    if (floor > 0 && (fs_free < floor || fs_free - floor < reserved + bytes)) return EvictionCause::kFloor;
    if (rt.reserved.compare_exchange_weak(reserved, reserved + bytes)) return std::nullopt;
  }
}

Status Engine::ReserveSpace(uint32_t si, uint64_t bytes) {
  for (int attempt = 0;; ++attempt) {
    std::optional<EvictionCause> why = TryReserve(si, bytes);
    if (!why) return Status::Ok();
    if (attempt >= options_.max_sync_evictions || !EvictOne(si, *why)) {
      runtime_[si]->enospc.fetch_add(1, std::memory_order_relaxed);
      return Status::Error(ENOSPC, *why == EvictionCause::kFloor
                                       ? "no space: the store's filesystem is at its free-space floor"
                                       : "no space: capacity reached and everything left is in use");
    }
  }
}

void Engine::ReleaseReservation(uint32_t si, uint64_t bytes) { runtime_[si]->reserved.fetch_sub(bytes); }

void Engine::TrackCommitted(Inode* inode, const Version* old_version) {
  if (old_version) runtime_[old_version->store_index()]->policy->Remove(inode->ino);
  if (inode->committed && !inode->is_dir) {
    runtime_[inode->committed->store_index()]->policy->Insert(inode->ino, inode->committed->footprint());
  }
}

void Engine::UntrackCommitted(Inode* inode) {
  if (inode->committed && !inode->is_dir) runtime_[inode->committed->store_index()]->policy->Remove(inode->ino);
}

bool Engine::EvictOne(uint32_t si, EvictionCause cause) {
  // publish_mu_ keeps a new version of the same key from being renamed into
  // the location between our index update and the file removal.
  std::lock_guard<std::mutex> publish(publish_mu_);
  std::shared_ptr<Version> victim;
  uint64_t parent_ino = 0, ino = 0;
  std::string name;
  {
    std::lock_guard<std::mutex> g(mu_);
    std::optional<uint64_t> id = runtime_[si]->policy->Evict([&](uint64_t candidate) {
      Inode* i = ns_.Get(candidate);
      return i && !i->is_dir && i->linked() && i->committed && i->committed->store_index() == si &&
             !i->committing && i->writers == 0 && i->committed->leases() == 0;
    });
    if (!id) return false;
    Inode* inode = ns_.Get(*id);
    victim = std::move(inode->committed);
    parent_ino = inode->parent->ino;
    name = inode->name;
    ino = inode->ino;
    inode->evicted = true;
    // SetVisible needs the old state: the inode was visible while it had a version.
    inode->committed = victim;
    ns_.Detach(inode);
    inode->committed.reset();
    ns_.Reap(inode);
  }
  Status s = victim->store()->Remove(victim->location);
  if (!s.ok() && s.err() != ENOENT) spdlog::warn("evict {}: {}", victim->location, s.message());
  StoreRuntime& rt = *runtime_[si];
  rt.evicted_bytes.fetch_add(victim->footprint(), std::memory_order_relaxed);
  switch (cause) {
    case EvictionCause::kCapacity: rt.evicted_capacity.fetch_add(1, std::memory_order_relaxed); break;
    case EvictionCause::kWatermark: rt.evicted_watermark.fetch_add(1, std::memory_order_relaxed); break;
    case EvictionCause::kFloor: rt.evicted_floor.fetch_add(1, std::memory_order_relaxed); break;
  }
  victim.reset();  // the space is back once no lease refers to it (none does)
  if (EngineObserver* o = observer_.load()) o->EntryEvicted(parent_ino, name, ino);
  return true;
}

size_t Engine::BackgroundPass() {
  size_t evicted = 0;
  for (uint32_t si = 0; si < stores_.size(); ++si) {
    StoreRuntime& rt = *runtime_[si];
    auto cap = static_cast<double>(rt.limits.capacity_bytes);
    auto used = [&] { return static_cast<double>(store_accounts_[si]->used_bytes.load() + rt.reserved.load()); };
    if (used() > cap * options_.high_watermark) {
      for (int n = 0; n < 4096 && used() > cap * options_.low_watermark; ++n) {
        if (!EvictOne(si, EvictionCause::kWatermark)) break;
        ++evicted;
      }
    }
    uint64_t floor = FloorBytes(si);
    if (floor > 0) {
      for (int n = 0; n < 4096; ++n) {
        Result<StoreSpace> space = stores_[si]->Space();
        if (!space.ok() || space->free_bytes >= floor) break;
        if (!EvictOne(si, EvictionCause::kFloor)) break;
        ++evicted;
      }
    }
  }
  return evicted;
}

size_t Engine::EvictNow() { return BackgroundPass(); }

void Engine::EvictorLoop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_evictor_) {
    evictor_wake_.wait_for(lk, std::chrono::milliseconds(100));
    if (stop_evictor_) break;
    lk.unlock();
    BackgroundPass();
    lk.lock();
  }
}

Status Engine::CommitDraft(Inode* inode, std::shared_ptr<Draft> draft) {
  std::unique_lock<std::mutex> lk(mu_);
  commit_done_.wait(lk, [&] { return !inode->committing; });
  if (!draft->dirty()) return Status::Ok();
  if (!inode->linked()) {
    // The name is gone: nothing to publish. The bytes vanish with the inode.
    draft->set_dirty(false);
    return Status::Ok();
  }
  inode->committing = true;
  int64_t now = NowNs();
  inode->attr.mtime_ns = inode->attr.ctime_ns = now;
  std::string key = ns_.KeyOf(inode);
  ObjectHeader header = HeaderFor(inode, key);
  header.generation = next_generation_++;
  uint32_t store_index = StoreIndexFor(key);
  lk.unlock();

  auto finish = [&](Status s) {
    std::lock_guard<std::mutex> g(mu_);
    inode->committing = false;
    commit_done_.notify_all();
    if (s.ok()) commits_.fetch_add(1, std::memory_order_relaxed);
    else commit_failures_.fetch_add(1, std::memory_order_relaxed);
    return s;
  };

  Store* store = stores_[store_index].get();
  std::unique_ptr<StagingFile> staging;
  uint64_t footprint;
  {
    auto dlk = draft->lock();
    header.size = draft->size_locked();
    footprint = ObjectFootprint(header.size);
    if (header.size > options_.max_object_bytes) return finish(Status::Error(EFBIG, "object too large"));
    Status reserved = ReserveSpace(store_index, footprint);
    if (!reserved.ok()) return finish(reserved);
    header.checksum = ChecksumDraftLocked(*draft);
    Status s = WriteObject(store, header, draft.get(), &staging);
    if (!s.ok()) {
      ReleaseReservation(store_index, footprint);
      spdlog::error("commit of '{}' failed: {}", key, s.message());
      return finish(Status::Error(s.err() == ENOSPC ? ENOSPC : EIO, s.message()));
    }
    draft->set_dirty_locked(false);
  }
  // Phase 3, run by whichever committer leads the next group commit (see
  // PublishBatch): fix the header if the file was renamed meanwhile, move the
  // staging file into place, and, once durable, switch the index.
  std::string location;
  uint64_t file_id = 0;
  bool published = false;
  PublishJob job;
  job.link = [&](bool alone) -> Status {
    std::string now_key;
    bool linked;
    {
      std::lock_guard<std::mutex> g(mu_);
      linked = inode->linked();
      if (linked) now_key = ns_.KeyOf(inode);
    }
    if (!linked) return Status::Ok();  // unlinked meanwhile: nothing to publish
    if (now_key != key) {
      // Renamed while its bytes were being written: fix the header (and the store).
      header.key = now_key;
      key = now_key;
      uint32_t now_store = StoreIndexFor(now_key);
      if (now_store != store_index) {
        // Moving the reservation cannot evict here (publish_mu_ is held): the
        // new store may briefly go over by this one object.
        ReleaseReservation(store_index, footprint);
        runtime_[now_store]->reserved.fetch_add(footprint);
        store_index = now_store;
        store = stores_[store_index].get();
        auto dlk = draft->lock();
        KVFS_RETURN_IF_ERROR(WriteObject(store, header, draft.get(), &staging));
      } else {
        AlignedBlock block;
        KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
        if (::pwrite(staging->fd(), block.data, kHeaderSize, 0) != static_cast<ssize_t>(kHeaderSize)) {
          return Status::FromErrno(EIO, "rewrite header");
        }
      }
    }
    job.store = store;
    location = store->LocationFor(HashKey(key));
    file_id = FileId(staging->fd());
    published = true;
    // With group commit, SyncAll (one flush for the group) follows.
    return options_.group_commit ? store->Link(*staging, location) : store->Publish(*staging, location);
  };
  job.store = store;
  uint64_t parent_ino = 0;
  std::string name;
  // Runs under publish_mu_ once the new file is in place (and durable, unless
  // the job reports a sync failure): switch the index to the new version.
  job.complete = [&] {
    if (!published) return;  // unlinked while being written: nothing was published
    std::shared_ptr<Version> version = MakeVersion(store_index, location, header, file_id);
    std::shared_ptr<Version> old;
    {
      std::lock_guard<std::mutex> g(mu_);
      bool was_visible = inode->visible();
      old = std::move(inode->committed);
      inode->committed = version;
      ns_.SetVisible(inode, was_visible);
      TrackCommitted(inode, old.get());
      if (!was_visible && inode->parent) {
        parent_ino = inode->parent->ino;
        name = inode->name;
      }
    }
    if (old && (old->store_index() != store_index || old->location != location)) {
      // The previous version sat elsewhere (a leftover of an interrupted
      // rename): remove it, or it would come back at the next mount.
      Status r = old->store()->Remove(old->location, false);
      if (!r.ok() && r.err() != ENOENT) spdlog::warn("remove superseded {}: {}", old->location, r.message());
    }
  };
  Status s = RunPublishJob(&job);
  ReleaseReservation(store_index, footprint);
  if (!s.ok()) {
    if (!job.linked) draft->set_dirty(true);
    spdlog::error("commit of '{}' failed: {}", key, s.message());
    return finish(Status::Error(s.err() == ENOSPC || s.err() == ETIMEDOUT ? s.err() : EIO, s.message()));
  }
  Status done = finish(Status::Ok());
  if (EngineObserver* o = observer_.load()) {
    o->VersionCommitted(inode->ino);
    if (parent_ino != 0) o->EntryAppeared(parent_ino, name);
  }
  return done;
}

Status Engine::RunPublishJob(PublishJob* job) {
  {
    std::lock_guard<std::mutex> g(publish_queue_mu_);
    publish_queue_.push_back(job);
  }
  std::lock_guard<std::mutex> publish(publish_mu_);
  if (!job->done) PublishBatch();  // this committer leads the group
  return job->result;
}

void Engine::PublishBatch() {
  std::vector<PublishJob*> batch;
  {
    std::lock_guard<std::mutex> g(publish_queue_mu_);
    batch.assign(publish_queue_.begin(), publish_queue_.end());
    publish_queue_.clear();
  }
  const bool alone = batch.size() == 1;
  for (PublishJob* j : batch) j->result = j->link(alone);
  if (options_.group_commit) {
    // One flush for the whole group: every linked file and rename is durable after it.
    std::vector<Store*> synced;
    for (PublishJob* j : batch) {
      if (!j->result.ok() || std::find(synced.begin(), synced.end(), j->store) != synced.end()) continue;
      synced.push_back(j->store);
      Status st = j->store->SyncAll();
      if (st.ok()) continue;
      // In place but maybe not durable: the writers get the error (as fsync would).
      for (PublishJob* k : batch) {
        if (k->store == j->store && k->result.ok()) {
          k->linked = true;
          k->result = Status::Error(EIO, st.message());
        }
      }
    }
  }
  group_commits_.fetch_add(1, std::memory_order_relaxed);
  group_commit_jobs_.fetch_add(batch.size(), std::memory_order_relaxed);
  for (PublishJob* j : batch) {
    if (j->result.ok()) j->linked = true;
    if (j->linked && j->complete) j->complete();
    j->done = true;
  }
}

Result<std::shared_ptr<Version>> Engine::PublishRecord(uint32_t store_index, ObjectHeader header) {
  Store* store = stores_[store_index].get();
  std::unique_ptr<StagingFile> staging;
  KVFS_RETURN_IF_ERROR(WriteObject(store, header, nullptr, &staging));
  std::string location = store->LocationFor(HashKey(header.key));
  uint64_t file_id = FileId(staging->fd());
  KVFS_RETURN_IF_ERROR(store->Publish(*staging, location));
  return MakeVersion(store_index, location, header, file_id);
}

Status Engine::RewriteHeader(const std::shared_ptr<Version>& version, ObjectHeader header) {
  ObjectHeader old;
  {
    std::lock_guard<std::mutex> g(mu_);
    old = version->header;
    header.generation = next_generation_++;
  }
  header.slot = 1 - old.slot;
  AlignedBlock block;
  KVFS_RETURN_IF_ERROR(EncodeHeader(old, block.data));
  KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
  KVFS_RETURN_IF_ERROR(version->store()->WriteHeaderBlock(version->location, block.data));
  std::lock_guard<std::mutex> g(mu_);
  version->header = header;
  return Status::Ok();
}

Status Engine::EnsureDirRecord(Inode* dir) {
  ObjectHeader header;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (dir->committed) return Status::Ok();
    header = HeaderFor(dir, ns_.KeyOf(dir));
    header.generation = next_generation_++;
  }
  Result<std::shared_ptr<Version>> v = PublishRecord(StoreIndexFor(header.key), header);
  if (!v.ok()) return v.status();
  std::lock_guard<std::mutex> g(mu_);
  dir->committed = *v;
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Reads.

// A chunk-aligned range [start, end) of an object's data, read into
// consecutive pool buffers and verified against the chunk checksums.
struct ChunkSpan {
  uint64_t start = 0;
  uint64_t end = 0;
  size_t buffer_size = 0;
  std::vector<PooledBuffer> buffers;
};

namespace {
// Appends the slices of span that hold data bytes [offset, end) to out.
void AppendSlices(const std::shared_ptr<const ChunkSpan>& span, uint64_t offset, uint64_t end, ReadReply* out) {
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t rel = pos - span->start;
    size_t b = static_cast<size_t>(rel / span->buffer_size);
    size_t in = static_cast<size_t>(rel % span->buffer_size);
    size_t len = static_cast<size_t>(std::min<uint64_t>(span->buffer_size - in, end - pos));
    out->iov.push_back(iovec{span->buffers[b].data() + in, len});
    pos += len;
  }
  out->span = span;
}
}  // namespace

Result<std::shared_ptr<ChunkSpan>> Engine::ReadChunks(Version* v, uint64_t offset, uint64_t end) {
  uint64_t object_size = v->size();
  auto span = std::make_shared<ChunkSpan>();
  span->buffer_size = pool_->buffer_size();
  span->start = offset / kChunkSize * kChunkSize;
  span->end = std::min((end + kChunkSize - 1) / kChunkSize * kChunkSize, RoundUp4K(object_size));
  const size_t segment = options_.read_segment_bytes;
  std::vector<IoRequest> reqs;
  std::vector<uint64_t> req_start;  // data offset of each request
  for (uint64_t pos = span->start; pos < span->end;) {
    PooledBuffer buf = pool_->Acquire();
    size_t n = static_cast<size_t>(std::min<uint64_t>(span->buffer_size, span->end - pos));
    for (size_t s = 0; s < n; s += segment) {
      size_t len = std::min(segment, n - s);
      reqs.push_back(IoRequest{v->fd(), buf.data() + s, len, kHeaderSize + pos + s, false, buf.index()});
      req_start.push_back(pos + s);
    }
    span->buffers.push_back(std::move(buf));
    pos += n;
  }
  Status s = io_->Run(reqs);
  if (!s.ok()) return Status::Error(EIO, s.message());
  for (size_t i = 0; i < reqs.size(); ++i) {
    uint64_t needed = object_size > req_start[i] ? std::min<uint64_t>(reqs[i].len, object_size - req_start[i]) : 0;
    if (reqs[i].done < needed) return Status::Error(EBADMSG, "object is shorter on the store than its header says");
  }
  uint32_t one_in = options_.verify_one_in;
  if (one_in == 0) return span;
  Result<std::shared_ptr<const std::vector<uint64_t>>> sums = v->ChunkChecksums();
  if (!sums.ok()) return Status::Error(sums.err() == EBADMSG ? EBADMSG : EIO, sums.status().message());
  for (uint64_t c = span->start / kChunkSize; c * kChunkSize < std::min(span->end, object_size); ++c) {
    if (one_in > 1 && verify_counter_.fetch_add(1, std::memory_order_relaxed) % one_in != 0) continue;
    uint64_t rel = c * kChunkSize - span->start;
    const uint8_t* p = span->buffers[rel / span->buffer_size].data() + rel % span->buffer_size;
    size_t len = static_cast<size_t>(std::min<uint64_t>(kChunkSize, object_size - c * kChunkSize));
    if (c >= (*sums)->size() || XXH3_64bits(p, len) != (**sums)[c]) {
      runtime_[v->store_index()]->checksum_failures.fetch_add(1, std::memory_order_relaxed);
      return Status::Error(EBADMSG, "checksum mismatch in chunk " + std::to_string(c) + " of " + v->location);
    }
  }
  return span;
}

void Engine::QuarantineVersion(Inode* inode, const std::shared_ptr<Version>& v, const std::string& why) {
  if (!v->MarkCorrupt()) return;  // already handled
  spdlog::error("{} on {}: {}; quarantining it", v->location, v->store()->Describe(), why);
  uint64_t parent_ino = 0;
  std::string name;
  {
    std::lock_guard<std::mutex> publish(publish_mu_);
    {
      std::lock_guard<std::mutex> g(mu_);
      if (inode->committed != v || !inode->linked()) return;  // replaced or gone meanwhile
      UntrackCommitted(inode);
      parent_ino = inode->parent->ino;
      name = inode->name;
      ns_.Detach(inode);
      inode->last_version = inode->committed;
      inode->committed.reset();
      inode->evicted = true;
    }
    Status s = v->store()->Quarantine(v->location);
    if (!s.ok()) spdlog::error("quarantine of {} failed: {}", v->location, s.message());
    runtime_[v->store_index()]->quarantined.fetch_add(1, std::memory_order_relaxed);
  }
  if (EngineObserver* o = observer_.load()) o->EntryEvicted(parent_ino, name, inode->ino);
}

Status Engine::Read(FileHandle* handle, uint64_t offset, size_t size, ReadReply* out) {
  if (!handle->readable) return Status::Error(EBADF, "handle not open for reading");
  reads_.fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<Draft> draft;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (handle->draft) draft = handle->draft;
    else if (!handle->lease && handle->inode->draft) draft = handle->inode->draft;
  }
  if (draft) {
    out->owned.resize(size);
    size_t n = draft->Read(offset, size, out->owned.data());
    out->owned.resize(n);
    if (n) out->iov.push_back(iovec{out->owned.data(), n});
    read_bytes_.fetch_add(n, std::memory_order_relaxed);
    return Status::Ok();
  }
  if (!handle->lease) return Status::Ok();  // a pending key with nothing written
  const std::shared_ptr<Version>& v = handle->lease.version();
  if (offset >= v->size() || size == 0) return Status::Ok();
  uint64_t end = std::min<uint64_t>(offset + size, v->size());
  std::shared_ptr<const ChunkSpan> span;
  {
    // Sequential reads smaller than a chunk are served from the chunks the
    // previous read of this handle already fetched and verified.
    std::lock_guard<std::mutex> g(handle->cache_mu);
    if (handle->cache && offset >= handle->cache->start && end <= handle->cache->end) span = handle->cache;
  }
  if (!span) {
    Result<std::shared_ptr<ChunkSpan>> r = ReadChunks(v.get(), offset, end);
    if (!r.ok()) {
      spdlog::error("read of {} on {} failed: {}", v->location, v->store()->Describe(), r.status().message());
      // EBADMSG marks damage to the object itself (not a failing device).
      if (r.err() == EBADMSG) QuarantineVersion(handle->inode, v, r.status().message());
      return Status::Error(EIO, r.status().message());
    }
    span = *r;
    std::lock_guard<std::mutex> g(handle->cache_mu);
    handle->cache = span;
  }
  AppendSlices(span, offset, end, out);
  read_bytes_.fetch_add(end - offset, std::memory_order_relaxed);
  return Status::Ok();
}

Status Engine::LoadDraft(const std::shared_ptr<Version>& version, Draft* draft) {
  Result<Lease> lease = Lease::Take(version);
  if (!lease.ok()) return lease.status();
  for (uint64_t off = 0; off < version->size(); off += kDraftChunkSize) {
    uint64_t end = std::min<uint64_t>(off + kDraftChunkSize, version->size());
    Result<std::shared_ptr<ChunkSpan>> span = ReadChunks(version.get(), off, end);
    if (!span.ok()) return Status::Error(EIO, span.status().message());
    ReadReply r;
    AppendSlices(*span, off, end, &r);
    uint64_t pos = off;
    for (const iovec& v : r.iov) {
      KVFS_RETURN_IF_ERROR(draft->WriteLocked(pos, v.iov_base, v.iov_len));
      pos += v.iov_len;
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Open, write, commit, release.

Result<OpenResult> Engine::Create(uint64_t parent, std::string_view name, uint32_t mode, int flags, uint32_t uid,
                                  uint32_t gid) {
  KVFS_RETURN_IF_ERROR(CheckName(name));
  std::unique_lock<std::mutex> lk(mu_);
  Result<Inode*> dir = ChildForChangeLocked(parent, name);
  if (!dir.ok()) return dir.status();
  if (JoinKey(ns_.KeyOf(*dir), name).size() > kMaxKeyLength) return Status::Error(ENAMETOOLONG, "path too long");
  Inode* inode = ns_.Child(*dir, name);
  bool created = false;
  if (inode) {
    if (inode->is_dir) return Status::Error(EISDIR, "is a directory");
    if (flags & O_EXCL) return Status::Error(EEXIST, "exists");
  } else {
    Attributes attr;
    attr.mode = S_IFREG | (mode & 07777);
    attr.uid = uid;
    attr.gid = gid;
    attr.atime_ns = attr.mtime_ns = attr.ctime_ns = NowNs();
    inode = ns_.NewInode(false, attr);
    ns_.Attach(*dir, inode, std::string(name));
    created = true;
  }
  // A new key starts a new (empty) version, as O_TRUNC does.
  Result<OpenResult> r = OpenLocked(inode, (flags & ~O_EXCL) | (created ? O_TRUNC : 0));
  if (!r.ok() && r.err() == ESTALE && !created) {
    // As in Open: let the publish in progress finish, then try once more.
    uint64_t ino = inode->ino;
    inode->nlookup++;  // keep it alive while unlocked
    lk.unlock();
    { std::lock_guard<std::mutex> wait(publish_mu_); }
    lk.lock();
    inode = ns_.Get(ino);
    inode->nlookup--;
    r = OpenLocked(inode, flags & ~O_EXCL);
  }
  if (r.ok()) {
    inode->nlookup++;
  } else if (created) {
    ns_.Detach(inode);
    ns_.Reap(inode);
  }
  return r;
}

Result<OpenResult> Engine::Open(uint64_t ino, int flags) {
  const bool reads = (flags & O_ACCMODE) != O_WRONLY;
  for (int attempt = 0;; ++attempt) {
    // Take the read lease first, with no engine lock held: opening the object
    // file is store I/O, and a slow store must not stall the whole mount.
    Lease lease;
    if (reads) {
      std::shared_ptr<Version> version;
      {
        std::lock_guard<std::mutex> g(mu_);
        Inode* inode = ns_.Get(ino);
        if (!inode) return Status::Error(ENOENT, "stale inode");
        if (inode->is_dir) return Status::Error(EISDIR, "is a directory");
        version = inode->committed;
        if (!version && !inode->linked()) version = inode->last_version.lock();
      }
      if (version) {
        Result<Lease> l = Lease::Take(version);
        if (!l.ok()) {
          bool replaced = l.err() == ENOENT || l.err() == ESTALE;
          if (replaced && attempt == 0) {
            // The object file was replaced under the index (a commit or a
            // rename is publishing): wait for that publish, then look again.
            std::lock_guard<std::mutex> wait(publish_mu_);
            continue;
          }
          spdlog::error("open of {} failed: {}", version->location, l.status().message());
          return Status::Error(replaced ? ESTALE : (l.err() == ETIMEDOUT ? ETIMEDOUT : EIO), l.status().message());
        }
        lease = std::move(*l);
      }
    }
    std::lock_guard<std::mutex> g(mu_);
    Inode* inode = ns_.Get(ino);
    if (!inode) return Status::Error(ENOENT, "stale inode");
    return OpenLocked(inode, flags, std::move(lease));
  }
}

Result<OpenResult> Engine::OpenLocked(Inode* inode, int flags, Lease lease) {
  if (inode->is_dir) return Status::Error(EISDIR, "is a directory");
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
    if (handle->lease.version() == inode->committed) {
      runtime_[inode->committed->store_index()]->policy->Access(inode->ino);
    }
  } else if (version && (handle->readable || !handle->writable)) {
    Result<Lease> lease = Lease::Take(version);
    if (!lease.ok()) {
      spdlog::error("open of {} failed: {}", version->location, lease.status().message());
      return Status::Error(lease.err() == ENOENT || lease.err() == ESTALE ? ESTALE : EIO, lease.status().message());
    }
    handle->lease = std::move(*lease);
    inode->read_leases++;
    if (version == inode->committed) runtime_[version->store_index()]->policy->Access(inode->ino);
  }
  if (handle->writable) {
    if (flags & O_TRUNC) {
      // A new version of its own; writers opened without O_TRUNC join it.
      inode->draft = std::make_shared<Draft>();
      handle->draft = inode->draft;
    } else if (inode->draft) {
      handle->draft = inode->draft;
    }
    if (handle->draft) handle->draft->writers++;
    inode->writers++;
  }
  inode->open_handles++;
  open_handles_++;
  OpenResult r;
  r.attr = AttrOfLocked(inode, handle.get());
  r.page_cache = !handle->writable && inode->writers == 0 && handle->lease &&
                 handle->lease.version() == inode->committed && inode->committed->leases() == inode->read_leases;
  r.handle = handle.release();
  return r;
}

// Gives a writable handle without a draft its own copy-on-write draft of the
// committed version (or joins the inode's current draft).
Result<std::shared_ptr<Draft>> Engine::DraftForWrite(FileHandle* handle) {
  std::unique_lock<std::mutex> lk(mu_);
  if (handle->draft) return handle->draft;
  Inode* inode = handle->inode;
  if (inode->draft) {
    handle->draft = inode->draft;
    handle->draft->writers++;
    return handle->draft;
  }
  auto draft = std::make_shared<Draft>();
  inode->draft = draft;
  handle->draft = draft;
  draft->writers++;
  std::shared_ptr<Version> base = inode->committed;
  auto dlk = draft->lock();
  lk.unlock();
  if (base) {
    Status s = LoadDraft(base, draft.get());
    if (!s.ok()) {
      dlk.unlock();
      lk.lock();
      draft->writers--;
      handle->draft.reset();
      if (inode->draft == draft) inode->draft.reset();
      return Status::Error(EIO, s.message());
    }
  }
  return draft;
}

Result<size_t> Engine::Write(FileHandle* handle, uint64_t offset, const void* data, size_t size, uint64_t owner) {
  if (!handle->writable) return Status::Error(EBADF, "handle not open for writing");
  {
    std::lock_guard<std::mutex> g(mu_);
    auto& owners = handle->writer_owners;
    if (std::find(owners.begin(), owners.end(), owner) == owners.end()) owners.push_back(owner);
  }
  Result<std::shared_ptr<Draft>> draft = DraftForWrite(handle);
  if (!draft.ok()) return draft.status();
  {
    std::lock_guard<std::mutex> g(mu_);
    handle->commit_failed = false;
  }
  if (handle->append) offset = (*draft)->size();
  if (offset + size > options_.max_object_bytes) return Status::Error(EFBIG, "object too large");
  if (offset + size > options_.capacity_bytes) return Status::Error(ENOSPC, "object larger than the capacity");
  KVFS_RETURN_IF_ERROR((*draft)->Write(offset, data, size));
  writes_.fetch_add(1, std::memory_order_relaxed);
  write_bytes_.fetch_add(size, std::memory_order_relaxed);
  return size;
}

Status Engine::Flush(FileHandle* handle, uint64_t owner) {
  if (!handle->writable) return Status::Ok();
  std::shared_ptr<Draft> draft;
  {
    std::lock_guard<std::mutex> g(mu_);
    draft = handle->draft;
    // Other writers of the same version: the last of them commits.
    if (!draft || draft->writers > 1) return Status::Ok();
    const auto& owners = handle->writer_owners;
    bool closer_wrote = owners.empty() || owner == 0 ||
                        std::find(owners.begin(), owners.end(), owner) != owners.end() ||
                        std::find(owners.begin(), owners.end(), uint64_t{0}) != owners.end();
    if (!closer_wrote) return Status::Ok();
  }
  Status s = CommitDraft(handle->inode, draft);
  std::lock_guard<std::mutex> g(mu_);
  handle->commit_failed = !s.ok();
  return s;
}

Status Engine::Fsync(FileHandle* handle) {
  if (!handle->writable) return Status::Ok();
  std::shared_ptr<Draft> draft;
  {
    std::lock_guard<std::mutex> g(mu_);
    draft = handle->draft;
  }
  if (!draft) return Status::Ok();
  return CommitDraft(handle->inode, draft);
}

void Engine::Release(FileHandle* handle) {
  std::unique_ptr<FileHandle> owned(handle);
  Inode* inode = handle->inode;
  std::shared_ptr<Draft> to_commit;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (handle->draft && handle->draft->writers == 1 && handle->draft->dirty() && !handle->commit_failed) {
      to_commit = handle->draft;
    }
  }
  if (to_commit) {
    // Released without a successful flush: commit now (best effort).
    Status s = CommitDraft(inode, to_commit);
    if (!s.ok()) spdlog::warn("commit at release of inode {} failed: {}", inode->ino, s.message());
  }
  Lease lease = std::move(handle->lease);
  std::lock_guard<std::mutex> g(mu_);
  if (handle->draft) {
    handle->draft->writers--;
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
  lease.Reset();
  inode->open_handles--;
  open_handles_--;
  ns_.Reap(inode);
}

// ---------------------------------------------------------------------------
// Namespace changes.

Result<Attr> Engine::SetAttr(uint64_t ino, const SetAttrRequest& req, FileHandle* handle) {
  if (req.size) {
    Inode* inode;
    std::shared_ptr<Draft> draft;
    bool temporary = false;
    {
      std::lock_guard<std::mutex> g(mu_);
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
      tmp.inode = inode;
      tmp.writable = true;
      {
        std::lock_guard<std::mutex> g(mu_);
        inode->open_handles++;
        inode->writers++;
      }
      Result<std::shared_ptr<Draft>> d = DraftForWrite(&tmp);
      if (d.ok()) {
        draft = *d;
        temporary = true;
        KVFS_RETURN_IF_ERROR(draft->Truncate(*req.size));
        Status s = draft->writers == 1 ? CommitDraft(inode, draft) : Status::Ok();
        std::lock_guard<std::mutex> g(mu_);
        draft->writers--;
        if (draft->writers == 0 && inode->draft == draft) inode->draft.reset();
        inode->writers--;
        inode->open_handles--;
        if (!s.ok()) return s;
      } else {
        std::lock_guard<std::mutex> g(mu_);
        inode->writers--;
        inode->open_handles--;
        return d.status();
      }
    }
    if (!temporary) KVFS_RETURN_IF_ERROR(draft->Truncate(*req.size));
  }
  bool meta = req.mode || req.uid || req.gid || req.atime_ns || req.mtime_ns;
  if (meta) {
    std::lock_guard<std::mutex> publish(publish_mu_);
    std::shared_ptr<Version> record;
    ObjectHeader header;
    Inode* inode;
    {
      std::lock_guard<std::mutex> g(mu_);
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
          header.size = record->header.size;
          header.checksum = record->header.checksum;
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
  std::lock_guard<std::mutex> g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return Status::Error(ENOENT, "stale inode");
  return AttrOfLocked(inode, handle);
}

Result<Attr> Engine::Mkdir(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid) {
  KVFS_RETURN_IF_ERROR(CheckName(name));
  std::lock_guard<std::mutex> publish(publish_mu_);
  ObjectHeader header;
  Attributes attr;
  {
    std::lock_guard<std::mutex> g(mu_);
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
  std::lock_guard<std::mutex> g(mu_);
  Inode* dir = ns_.Get(parent);
  if (!dir || !dir->linked() || ns_.Child(dir, name)) {
    // A file of that name was created meanwhile: the directory loses.
    stores_[store_index]->Remove((*record)->location);
    return Status::Error(dir ? EEXIST : ENOENT, "exists");
  }
  Inode* inode = ns_.NewInode(true, attr);
  inode->committed = *record;
  ns_.Attach(dir, inode, std::string(name));
  inode->nlookup++;
  return AttrOfLocked(inode, nullptr);
}

Status Engine::Rmdir(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  std::lock_guard<std::mutex> publish(publish_mu_);
  std::shared_ptr<Version> record;
  {
    std::lock_guard<std::mutex> g(mu_);
    Result<Inode*> dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    Inode* child = ns_.Child(*dir, name);
    if (!child || !child->visible()) return Status::Error(ENOENT, "no such directory");
    if (!child->is_dir) return Status::Error(ENOTDIR, "not a directory");
    if (!child->dir->by_name.empty()) return Status::Error(ENOTEMPTY, "directory not empty");
    record = child->committed;
  }
  if (record) {
    Status s = record->store()->Remove(record->location);
    if (!s.ok() && s.err() != ENOENT) return Status::Error(EIO, s.message());
  }
  std::lock_guard<std::mutex> g(mu_);
  Inode* child = ns_.Child(ns_.Get(parent), name);
  if (!child) return Status::Ok();
  if (!child->dir->by_name.empty()) {
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
  std::lock_guard<std::mutex> publish(publish_mu_);
  std::shared_ptr<Version> version;
  Inode* child;
  {
    std::lock_guard<std::mutex> g(mu_);
    Result<Inode*> dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    child = ns_.Child(*dir, name);
    // A pending key can be unlinked by name: its writer holds the name.
    if (!child) return Status::Error(ENOENT, "no such key");
    if (child->is_dir) return Status::Error(EISDIR, "is a directory");
    version = child->committed;
  }
  if (version) {
    Status s = version->store()->Remove(version->location);
    if (!s.ok() && s.err() != ENOENT) return Status::Error(EIO, s.message());
  }
  std::lock_guard<std::mutex> g(mu_);
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
  KVFS_RETURN_IF_ERROR(store->Publish(*staging, location));
  return MakeVersion(store_index, location, header, file_id);
}

Status Engine::MoveObject(Inode* inode, const std::string& new_key) {
  std::shared_ptr<Version> v;
  ObjectHeader header;
  {
    std::lock_guard<std::mutex> g(mu_);
    v = inode->committed;
    if (!v) return Status::Ok();
    header = v->header;
    header.key = new_key;
    header.generation = next_generation_++;
  }
  uint32_t new_store = StoreIndexFor(new_key);
  if (new_store == v->store_index()) {
    ObjectHeader old;
    {
      std::lock_guard<std::mutex> g(mu_);
      old = v->header;
    }
    header.slot = 1 - old.slot;
    AlignedBlock block;
    KVFS_RETURN_IF_ERROR(EncodeHeader(old, block.data));
    KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
    KVFS_RETURN_IF_ERROR(v->store()->WriteHeaderBlock(v->location, block.data));
    std::string new_location = v->store()->LocationFor(HashKey(new_key));
    // Under mu_ so that no open looks for the object between the rename and
    // the index update.
    std::lock_guard<std::mutex> g(mu_);
    Status moved = v->store()->Move(v->location, new_location);
    if (!moved.ok()) {
      // Put the old key back in a newer slot, so that a later mount does not
      // carry out the rename this call reports as failed.
      ObjectHeader back = old;
      back.slot = header.slot;
      back.generation = next_generation_++;
      AlignedBlock undo;
      if (EncodeHeader(old, undo.data).ok() && EncodeHeader(back, undo.data).ok() &&
          v->store()->WriteHeaderBlock(v->location, undo.data).ok()) {
        v->header = back;
      }
      return moved;
    }
    v->location = new_location;
    v->header = header;
    return Status::Ok();
  }
  header.slot = 0;
  Result<std::shared_ptr<Version>> copy = CopyToStore(v, new_store, header);
  if (!copy.ok()) return copy.status();
  Status s = v->store()->Remove(v->location);
  if (!s.ok()) spdlog::warn("rename: old copy {} not removed: {}", v->location, s.message());
  std::lock_guard<std::mutex> g(mu_);
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
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [seq, child] : inode->dir->by_seq) children.emplace_back(child, child->name);
  }
  for (auto& [child, name] : children) KVFS_RETURN_IF_ERROR(MoveTree(child, new_key + "/" + name));
  return Status::Ok();
}

Status Engine::Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                      unsigned flags) {
  constexpr unsigned kNoReplace = 1;  // RENAME_NOREPLACE
  if (flags & ~kNoReplace) return Status::Error(EINVAL, "unsupported rename flags");
  KVFS_RETURN_IF_ERROR(CheckName(name));
  KVFS_RETURN_IF_ERROR(CheckName(new_name));
  std::lock_guard<std::mutex> publish(publish_mu_);
  Inode* src;
  Inode* dst;
  std::string new_key;
  std::shared_ptr<Version> dst_version;
  {
    std::lock_guard<std::mutex> g(mu_);
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
      if (dst && !dst->dir->by_name.empty()) return Status::Error(ENOTEMPTY, "target directory not empty");
    } else if (dst && dst->is_dir) {
      return Status::Error(EISDIR, "target is a directory");
    }
    new_key = JoinKey(ns_.KeyOf(*new_dir), new_name);
    if (new_key.size() > kMaxKeyLength) return Status::Error(ENAMETOOLONG, "path too long");
    if (dst) dst_version = dst->committed;
  }
  KVFS_RETURN_IF_ERROR(MoveTree(src, new_key));
  bool src_has_object;
  {
    std::lock_guard<std::mutex> g(mu_);
    src_has_object = src->committed != nullptr;
  }
  if (dst_version && !src_has_object) {
    // Nothing was moved onto the target's location: remove its object explicitly.
    Status s = dst_version->store()->Remove(dst_version->location);
    if (!s.ok() && s.err() != ENOENT) return Status::Error(EIO, s.message());
  }
  std::lock_guard<std::mutex> g(mu_);
  if (dst) {
    ns_.Detach(dst);
    UntrackCommitted(dst);
    dst->last_version = dst->committed;
    dst->committed.reset();
    ns_.Reap(dst);
  }
  ns_.Detach(src);
  ns_.Attach(ns_.Get(new_parent), src, std::string(new_name));
  src->attr.ctime_ns = NowNs();
  return Status::Ok();
}

Status Engine::ReadDir(uint64_t ino, uint64_t offset, bool plus, const std::function<bool(const DirEntry&)>& emit) {
  std::lock_guard<std::mutex> g(mu_);
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
  for (auto it = dir->dir->by_seq.upper_bound(std::max<uint64_t>(offset, 2)); it != dir->dir->by_seq.end(); ++it) {
    Inode* child = it->second;
    if (!child->visible()) continue;
    DirEntry e{child->name, AttrOfLocked(child, nullptr), it->first};
    if (!emit(e)) break;
    if (plus) child->nlookup++;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Debugging surface.

Result<std::string> Engine::GetXattr(uint64_t ino, const std::string& name) {
  if (ino == kRootIno && name == "user.kvfs.stats") return Stats().ToJson();
  if (ino == kRootIno && name == "user.kvfs.pid") return std::to_string(::getpid());
  if (ino == kRootIno && (name == "user.kvfs.capacity" || name == "user.kvfs.used" || name == "user.kvfs.pinned" ||
                          name == "user.kvfs.evictions")) {
    EngineStats st = Stats();
    if (name == "user.kvfs.capacity") return std::to_string(st.capacity_bytes);
    if (name == "user.kvfs.used") return std::to_string(st.used_bytes);
    if (name == "user.kvfs.pinned") return std::to_string(st.pinned_bytes);
    return "capacity=" + std::to_string(st.evictions.capacity) + " watermark=" + std::to_string(st.evictions.watermark) +
           " floor=" + std::to_string(st.evictions.floor);
  }
  std::lock_guard<std::mutex> g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return Status::Error(ENOENT, "stale inode");
  std::string key = ns_.KeyOf(inode);
  const Version* v = inode->committed.get();
  char hex[32];
  if (name == "user.kvfs.key") return key;
  if (name == "user.kvfs.key_hash") return HashKey(key).Hex();
  if (name == "user.kvfs.open_handles") return std::to_string(inode->open_handles);
  if (name == "user.kvfs.state") {
    if (inode->is_dir) return std::string("directory");
    if (inode->draft && inode->draft->dirty()) return std::string(v ? "committed+writing" : "writing");
    return std::string("committed");
  }
  if (v) {
    if (name == "user.kvfs.store") return v->store()->Describe();
    if (name == "user.kvfs.location") return v->location;
    if (name == "user.kvfs.version") return std::to_string(v->header.generation);
    if (name == "user.kvfs.size") return std::to_string(v->size());
    if (name == "user.kvfs.footprint") return std::to_string(v->footprint());
    if (name == "user.kvfs.leases") return std::to_string(v->leases());
    if (name == "user.kvfs.checksum" && !inode->is_dir) {
      std::snprintf(hex, sizeof(hex), "xxh3:%016" PRIx64, v->header.checksum);
      return std::string(hex);
    }
  }
  return Status::Error(ENODATA, "no such attribute");
}

Result<std::vector<std::string>> Engine::ListXattr(uint64_t ino) {
  std::lock_guard<std::mutex> g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode) return Status::Error(ENOENT, "stale inode");
  std::vector<std::string> names = {"user.kvfs.key", "user.kvfs.key_hash", "user.kvfs.open_handles", "user.kvfs.state"};
  if (inode->committed) {
    for (const char* n : {"user.kvfs.store", "user.kvfs.location", "user.kvfs.version", "user.kvfs.size",
                          "user.kvfs.footprint", "user.kvfs.leases"}) {
      names.emplace_back(n);
    }
    if (!inode->is_dir) names.emplace_back("user.kvfs.checksum");
  }
  if (ino == kRootIno) {
    for (const char* n : {"user.kvfs.stats", "user.kvfs.pid", "user.kvfs.capacity", "user.kvfs.used",
                          "user.kvfs.pinned", "user.kvfs.evictions"}) {
      names.emplace_back(n);
    }
  }
  return names;
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
  s.group_commits = group_commits_.load();
  s.group_commit_jobs = group_commit_jobs_.load();
  s.lookups = lookups_.load();
  s.negative_lookups = negative_lookups_.load();
  s.pool_hits = pool_->hits();
  s.pool_misses = pool_->misses();
  s.pool_buffers = pool_->count();
  s.pool_buffer_bytes = pool_->buffer_size();
  s.io_in_flight = io_->in_flight();
  s.io_uring = io_->using_io_uring();
  {
    std::lock_guard<std::mutex> g(mu_);
    s.open_handles = open_handles_;
    s.inodes = ns_.inode_count();
  }
  s.eviction_policy = options_.eviction_policy;
  for (size_t i = 0; i < stores_.size(); ++i) {
    StoreStats st;
    const StoreRuntime& rt = *runtime_[i];
    st.name = stores_[i]->Describe();
    st.capacity_bytes = rt.limits.capacity_bytes;
    st.floor_bytes = FloorBytes(static_cast<uint32_t>(i));
    st.objects = store_accounts_[i]->objects.load();
    st.used_bytes = store_accounts_[i]->used_bytes.load();
    st.leased_bytes = store_accounts_[i]->leased_bytes.load();
    st.pinned_bytes = st.leased_bytes + rt.reserved.load();
    st.evictions.capacity = rt.evicted_capacity.load();
    st.evictions.watermark = rt.evicted_watermark.load();
    st.evictions.floor = rt.evicted_floor.load();
    st.evictions.bytes = rt.evicted_bytes.load();
    st.enospc = rt.enospc.load();
    st.checksum_failures = rt.checksum_failures.load();
    st.quarantined = rt.quarantined.load();
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
    s.stores.push_back(std::move(st));
  }
  return s;
}

}  // namespace kvfs
