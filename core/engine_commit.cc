// Engine: writing objects to the stores, commit and group commit.
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

// ---------------------------------------------------------------------------
// Store writes.

Status Engine::WriteObject(Store* store, ObjectHeader* header, Draft* draft,
                           std::unique_ptr<StagingFile>* out) {
  header->format = kObjectFormatVersion;
  // A draft that spilled already has its staging file, with the spilled
  // chunks in place: only the rest is written into it (out stays empty).
  auto* spill = draft ? static_cast<StagingSpill*>(draft->spill_locked()) : nullptr;
  StagingFile* file = nullptr;
  if (spill) {
    file = &spill->file();
  } else {
    // Its size is known: a small object may be staged through the page
    // cache, a larger one preallocated. Not with holes, which must stay
    // holes in the file.
    const uint64_t size = draft ? draft->size_locked() : 0;
    bool holes = false;
    for (uint64_t start = 0; draft && !holes && start < size; start += kDraftChunkSize) {
      holes = draft->HoleLocked(static_cast<size_t>(start / kDraftChunkSize));
    }
    const uint64_t final_bytes = holes ? Store::kUnknownSize : ObjectFootprint(size);
    if (final_bytes <= Store::kBufferedStagingMax) return WriteSmallObject(store, header, draft, out);
    Result<std::unique_ptr<StagingFile>> staging = store->CreateStaging(final_bytes);
    if (!staging.ok()) return staging.status();
    *out = std::move(*staging);
    file = out->get();
  }
  // Everything the batch points into is kept by it, except the draft's
  // chunks, which are handed to it if it is abandoned (see below).
  auto batch = std::make_shared<DataBatch>();
  auto block = std::make_shared<AlignedBlock>();
  batch->Keep(block);
  int fd = file->fd();
  uint64_t size = draft ? draft->size_locked() : 0;
  for (uint64_t start = 0; start < size; start += kDraftChunkSize) {
    size_t i = static_cast<size_t>(start / kDraftChunkSize);
    if (draft->spilled_locked(i)) continue;  // in the file already
    if (draft->HoleLocked(i)) continue;      // stays a hole in the file
    size_t len = static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, size - start));
    len = (len + 4095) / 4096 * 4096;
    const uint8_t* chunk = i < draft->chunk_count_locked() ? draft->chunk_locked(i) : nullptr;
    batch->Write(fd, chunk ? chunk : ZeroChunk(), len, kHeaderSize + start);
  }
  // The chunk checksum table, after the data.
  uint64_t table_bytes = ChecksumTableBytes(size);
  std::shared_ptr<uint8_t> table(table_bytes ? static_cast<uint8_t*>(std::aligned_alloc(4096, table_bytes)) : nullptr,
                                 &std::free);
  std::shared_ptr<uint8_t> scratch(spill ? static_cast<uint8_t*>(std::aligned_alloc(4096, kDraftChunkSize)) : nullptr,
                                   &std::free);
  if (table_bytes) {
    static_assert(kChunkSize == kDraftSumUnit, "the draft keeps sums of the object's checksum unit");
    std::memset(table.get(), 0, table_bytes);
    Status summed = draft->UnitChecksumsLocked(table.get(), scratch.get());
    if (!summed.ok()) {
      if (spill->in_doubt()) {
        spill->KeepUntilTransfersEnd(scratch);  // a read back into it may still run
        draft->broken = true;
      }
      return summed;
    }
    batch->Keep(table);
    batch->Write(fd, table.get(), table_bytes, ChecksumTableOffset(size));
  }
  if (header->kind == ObjectKind::kFile) header->checksum = DataChecksumOfTable(table.get(), ChunkCount(size));
  KVFS_RETURN_IF_ERROR(EncodeHeader(*header, block->data));
  batch->Write(fd, block->data, kHeaderSize, 0);
  Status written = store->TransferData(*io_, batch);
  if (!written.ok()) {
    if (batch->abandoned() && draft) {
      // The writes may still be reading the draft's chunks: they go with
      // the batch (the draft keeps copies). A spilled draft's staging file
      // may still change under a retry: that version can no longer land.
      for (std::shared_ptr<const void>& chunk : draft->DetachChunksLocked()) batch->Keep(std::move(chunk));
      if (spill) draft->broken = true;
    }
    return written;
  }
  if (spill) {
    // Spilled chunks past the new end (a truncation) must not stay in the file.
    uint64_t length = table_bytes ? ChecksumTableOffset(size) + table_bytes : kHeaderSize;
    Status cut = store->TruncateData(fd, length);
    if (!cut.ok()) return Status::FromErrno(cut.err(), "truncate " + file->path() + ": " + cut.message());
  }
  return Status::Ok();
}

Status Engine::WriteSmallObject(Store* store, ObjectHeader* header, Draft* draft,
                                std::unique_ptr<StagingFile>* out) {
  // The whole file is built in memory, a copy of the draft's bytes (at most
  // Store::kBufferedStagingMax), and handed over in one call: creating the
  // staging file and writing it cost one store round trip.
  const uint64_t size = draft ? draft->size_locked() : 0;
  const size_t bytes = static_cast<size_t>(ObjectFootprint(size));
  std::shared_ptr<uint8_t> image(static_cast<uint8_t*>(std::aligned_alloc(4096, bytes)), &std::free);
  if (!image) return Status::Error(ENOMEM, "no memory for a staging image");
  std::memset(image.get(), 0, bytes);
  for (uint64_t start = 0; start < size; start += kDraftChunkSize) {
    // Nothing spilled: a chunk's memory, or zeros.
    Result<const uint8_t*> chunk = draft->ChunkBytesLocked(static_cast<size_t>(start / kDraftChunkSize), nullptr);
    if (!chunk.ok()) return chunk.status();
    std::memcpy(image.get() + kHeaderSize + start, *chunk, static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, size - start)));
  }
  uint8_t* table = image.get() + ChecksumTableOffset(size);
  if (draft) KVFS_RETURN_IF_ERROR(draft->UnitChecksumsLocked(table, nullptr));
  if (header->kind == ObjectKind::kFile) header->checksum = DataChecksumOfTable(table, ChunkCount(size));
  KVFS_RETURN_IF_ERROR(EncodeHeader(*header, image.get()));
  Result<std::unique_ptr<StagingFile>> staging = store->CreateStagingWith(*io_, image, bytes);
  if (!staging.ok()) return staging.status();
  *out = std::move(*staging);
  return Status::Ok();
}

std::shared_ptr<Draft> Engine::NewDraftLocked(Inode* inode) {
  uint32_t store_index = StoreIndexFor(ns_.KeyOf(inode));
  Store* store = stores_[store_index].get();
  // Given to the constructor, not to SetSpill: that takes the draft's lock,
  // which is above mu_ in the lock order.
  IoExecutor* io = io_.get();
  return std::make_shared<Draft>([store, io, store_index]() -> Result<std::unique_ptr<DraftSpill>> {
    Result<std::unique_ptr<StagingFile>> staging = store->CreateStaging(Store::kUnknownSize);
    if (!staging.ok()) return staging.status();
    return std::unique_ptr<DraftSpill>(std::make_unique<StagingSpill>(store, io, store_index, std::move(*staging)));
  });
}

// The publish step of one commit (see PublishQueue). Built by the committer
// with everything the step needs; Place and Complete run on the group's
// leader, under publish_mu_, while the committer waits in PublishQueue::Run.
class Engine::CommitJob final : public PublishJob {
 public:
  CommitJob(Engine& engine, uint32_t store_index, Inode* inode, std::shared_ptr<Draft> draft, ObjectHeader header,
            std::string key, StagingFile* staging, bool spilled)
      : PublishJob(engine.stores_[store_index].get(), store_index),
        engine_(engine),
        inode_(inode),
        draft_(std::move(draft)),
        header_(std::move(header)),
        key_(std::move(key)),
        staging_(staging),
        spilled_(spilled) {}

  // Takes the inode's current name and attributes into the header (it may
  // have been renamed, chmod'ed or touched while its bytes were written;
  // those belong to the new version too) and links the staging file at the
  // name's location. Nothing is published when the name is gone.
  Status Place() override {
    std::string now_key;
    bool linked;
    bool attrs_changed = false;
    {
      MutexLock g(engine_.mu_);
      linked = inode_->linked();
      if (linked) now_key = engine_.ns_.KeyOf(inode_);
      const Attributes& a = inode_->attr;
      attrs_changed = a.mode != header_.mode || a.uid != header_.uid || a.gid != header_.gid ||
                      a.mtime_ns != header_.mtime_ns || a.ctime_ns != header_.ctime_ns;
      if (attrs_changed) {
        header_.mode = a.mode;
        header_.uid = a.uid;
        header_.gid = a.gid;
        header_.mtime_ns = a.mtime_ns;
        header_.ctime_ns = a.ctime_ns;
      }
    }
    if (!linked) return Status::Ok();  // unlinked meanwhile: nothing to publish
    if (now_key != key_ || attrs_changed) {
      // Only the header changes: the staging file stays on the store it was
      // written to, even if the new key hashes to another one (the index
      // records where an object is; its next commit moves it home).
      header_.key = now_key;
      key_ = now_key;
      auto block = std::make_shared<AlignedBlock>();
      KVFS_RETURN_IF_ERROR(EncodeHeader(header_, block->data));
      auto batch = std::make_shared<DataBatch>();
      batch->Keep(block);
      batch->Write(staging_->fd(), block->data, kHeaderSize, 0);
      Status w = store()->TransferData(*engine_.io_, batch);
      if (!w.ok() && batch->abandoned()) {
        // A late header write could land after a retry's: a spilled draft's
        // staging file (the one a retry would publish) is no longer safe.
        if (spilled_) draft_->broken = true;
      }
      if (!w.ok()) return Status::FromErrno(w.err(), "rewrite header: " + w.message());
      if (batch->requests[0].done != kHeaderSize) return Status::Error(EIO, "rewrite header: short write");
    }
    location_ = store()->LocationFor(HashKey(key_));
    file_id_ = FileId(store(), staging_->fd());
    published_ = true;
    // With group commit, SyncAll (one flush for the group) follows; with
    // file flushes, the committer's SyncPublished once the group is done;
    // with deferred syncs, the background sync's.
    return engine_.options_.commit_flush != EngineOptions::CommitFlush::kEach || engine_.Deferred(store_index())
               ? store()->PublishUnsynced(*staging_, location_)
               : store()->Publish(*staging_, location_);
  }

  // The store renamed the file into place, then failed (a flush after it).
  bool PlacedAnyway() const override { return published_ && staging_->published(); }

  // The new file is in place (and durable, unless result() says the flush
  // failed): the index switches to the new version.
  void Complete() override {
    if (!published_) return;  // unlinked while being written: nothing was published
    std::shared_ptr<Version> version = engine_.MakeVersion(store_index(), location_, header_, file_id_);
    std::shared_ptr<Version> old;
    {
      MutexLock g(engine_.mu_);
      bool was_visible = inode_->visible();
      old = std::move(inode_->committed);
      inode_->committed = version;
      // Pages a new key's writers left in the kernel's cache are this version's bytes.
      if (draft_->page_cached) inode_->cached_version = version;
      engine_.ns_.SetVisible(inode_, was_visible);
      engine_.TrackCommitted(inode_, old.get());
      if (!was_visible && inode_->parent) {
        appeared_in = inode_->parent->ino;
        appeared_as = inode_->name;
        name_was_refused = inode_->lookup_refused;
      }
    }
    if (old && (old->store_index() != store_index() || old->location() != location_)) {
      // The previous version sat elsewhere (a leftover of an interrupted
      // rename): remove it, or it would come back at the next mount.
      Status r = old->store()->Remove(old->location(), false);
      if (!r.ok() && r.err() != ENOENT) spdlog::warn("remove superseded {}: {}", old->location(), r.message());
    }
  }

  const std::string& key() const { return key_; }
  // After the publish step: whether the file went into place (a key
  // unlinked meanwhile publishes nothing).
  bool published() const { return published_; }

  // Set by Complete when this commit made the key visible: the kernel hears
  // of the new name once the committer holds no lock.
  uint64_t appeared_in = 0;
  std::string appeared_as;
  bool name_was_refused = false;

 private:
  Engine& engine_;
  Inode* const inode_;
  const std::shared_ptr<Draft> draft_;
  ObjectHeader header_;
  std::string key_;
  StagingFile* const staging_;
  const bool spilled_;  // staging_ is the draft's spill file
  std::string location_;
  uint64_t file_id_ = 0;
  bool published_ = false;
};

Status Engine::CommitDraft(Inode* inode, std::shared_ptr<Draft> draft) {
  const auto started = std::chrono::steady_clock::now();
  UniqueLock lk(mu_);
  commit_done_.wait(lk, [&] { return !inode->committing; });
  if (!draft->dirty()) return Status::Ok();
  if (draft->broken) {
    // Incomplete bytes, or a staging file a timed-out write may still change.
    commit_failures_.fetch_add(1, std::memory_order_relaxed);
    return Status::Error(EIO, "the version being written is damaged and cannot be committed");
  }
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
    MutexLock g(mu_);
    inode->committing = false;
    commit_done_.notify_all();
    if (s.ok()) {
      commits_.fetch_add(1, std::memory_order_relaxed);
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
      commit_latency_.Record(static_cast<uint64_t>(ns.count()));
    } else {
      commit_failures_.fetch_add(1, std::memory_order_relaxed);
    }
    return s;
  };

  {
    Result<bool> times_only = CommitAsTimesOnly(inode, draft.get());
    if (!times_only.ok()) {
      spdlog::error("commit of '{}' failed: {}", key, times_only.status().message());
      return finish(Status::Error(times_only.err() == ENOSPC ? ENOSPC : EIO, times_only.status().message()));
    }
    if (*times_only) {
      Status done = finish(Status::Ok());
      if (EngineObserver* o = observer_.load()) o->VersionCommitted(inode->ino);
      return done;
    }
  }

  Store* store = nullptr;
  std::unique_ptr<StagingFile> staging;  // when the draft did not spill
  StagingFile* staging_file = nullptr;   // what gets published
  uint64_t footprint;
  bool spilled = false;
  {
    UniqueLock dlk(draft->mutex());
    // A draft that spilled publishes its staging file, on the store it was
    // made on (the key may hash elsewhere after a rename; its next commit
    // moves it home).
    auto* spill = static_cast<StagingSpill*>(draft->spill_locked());
    spilled = spill != nullptr;
    if (spill) store_index = spill->store_index();
    store = stores_[store_index].get();
    header.size = draft->size_locked();
    footprint = ObjectFootprint(header.size);
    if (header.size > options_.max_object_bytes) return finish(Status::Error(EFBIG, "object too large"));
    Status reserved = space_->Reserve(store_index, footprint);
    if (!reserved.ok()) return finish(reserved);
    Status s = WriteObject(store, &header, draft.get(), &staging);
    if (!s.ok()) {
      space_->Release(store_index, footprint);
      spdlog::error("commit of '{}' failed: {}", key, s.message());
      return finish(Status::Error(s.err() == ENOSPC ? ENOSPC : EIO, s.message()));
    }
    staging_file = spill ? &spill->file() : staging.get();
    // The staging file now becomes the object: no more spilling into it.
    if (spill) draft->set_consumed(true);
    draft->set_dirty(false);
  }
  // The publish step, run by whichever committer leads the next group (see
  // PublishQueue): fix the header if the file was renamed meanwhile, move the
  // staging file into place, and, once durable, switch the index.
  CommitJob job(*this, store_index, inode, draft, std::move(header), key, staging_file, spilled);
  Status s = publisher_->Run(&job);
  if (s.ok() && job.published() && options_.commit_flush == EngineOptions::CommitFlush::kFile &&
      !Deferred(store_index)) {
    // The version is in place and in the index; it is durable once its file
    // is (the rename goes with it). A failure leaves it published but maybe
    // not durable, as a failed group flush does: EIO.
    Status synced = store->SyncPublished(*staging_file);
    if (!synced.ok()) s = Status::Error(EIO, "flush " + job.key() + ": " + synced.message());
  }
  space_->Release(store_index, footprint);
  if (!s.ok()) {
    if (!job.linked()) {
      draft->set_dirty(true);
      if (spilled) draft->set_consumed(false);
    }
    spdlog::error("commit of '{}' failed: {}", job.key(), s.message());
    // A store that did not answer in time (ETIMEDOUT) is an I/O error to the caller.
    return finish(Status::Error(s.err() == ENOSPC ? ENOSPC : EIO, s.message()));
  }
  Status done = finish(Status::Ok());
  if (EngineObserver* o = observer_.load()) {
    o->VersionCommitted(inode->ino);
    if (job.appeared_in != 0) o->EntryAppeared(job.appeared_in, job.appeared_as, job.name_was_refused);
  }
  return done;
}

Result<bool> Engine::CommitAsTimesOnly(Inode* inode, Draft* draft) {
  // Held to the end, as the full commit holds it: a write into the draft
  // meanwhile would otherwise be marked clean below and never committed.
  MutexLock dlk(draft->mutex());
  if (draft->size_locked() != 0 || draft->spill_locked() != nullptr) return false;
  MutexLock publish(publish_mu_);  // no rename or other commit moves the object meanwhile
  std::shared_ptr<Version> record;
  ObjectHeader header;
  {
    MutexLock g(mu_);
    record = inode->committed;
    if (!record || !inode->linked() || record->size() != 0) return false;
    const std::string key = ns_.KeyOf(inode);
    const uint32_t si = StoreIndexFor(key);
    if (record->store_index() != si || stores_[si]->Shared() || record->location() != stores_[si]->LocationFor(HashKey(key))) {
      return false;
    }
    header = HeaderFor(inode, key);  // with the times CommitDraft set; data fields: RewriteHeader takes the record's
  }
  KVFS_RETURN_IF_ERROR(RewriteHeader(record, header));
  draft->set_dirty(false);
  return true;
}

Result<std::shared_ptr<Version>> Engine::PublishRecord(uint32_t store_index, ObjectHeader header) {
  Store* store = stores_[store_index].get();
  std::unique_ptr<StagingFile> staging;
  Draft none;  // a header-only record: no data
  {
    MutexLock dlk(none.mutex());
    KVFS_RETURN_IF_ERROR(WriteObject(store, &header, &none, &staging));
  }
  std::string location = store->LocationFor(HashKey(header.key));
  uint64_t file_id = FileId(store, staging->fd());
  KVFS_RETURN_IF_ERROR(PublishStaging(store_index, *staging, location));
  return MakeVersion(store_index, location, header, file_id);
}

Status Engine::PublishStaging(uint32_t store_index, StagingFile& staging, const std::string& location) {
  Store* store = stores_[store_index].get();
  if (!Deferred(store_index)) return store->Publish(staging, location);
  KVFS_RETURN_IF_ERROR(store->PublishUnsynced(staging, location));
  Dirtied(store_index);
  return Status::Ok();
}

Status Engine::RemoveObject(const Version& version) {
  Status s = version.store()->Remove(version.location(), !Deferred(version.store_index()));
  if (s.ok()) Dirtied(version.store_index());
  return s;
}

bool Engine::WaitForBackgroundSync(std::chrono::milliseconds timeout) {
  return !background_sync_ || background_sync_->WaitDurable(timeout);
}

Status Engine::WriteSpareHeaderSlot(Version* version, const std::string& current_key, ObjectHeader header) {
  ObjectHeader current;
  {
    MutexLock g(mu_);
    current = version->header();
  }
  current.key = current_key;
  current.rdev = header.rdev;  // a record's device number never changes; the version does not keep it
  // The data, and so its size, checksum and format, are the version's own.
  header.size = current.size;
  header.checksum = current.checksum;
  header.format = current.format;
  header.slot = 1 - current.slot;
  AlignedBlock block;
  KVFS_RETURN_IF_ERROR(EncodeHeader(current, block.data));
  KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
  KVFS_RETURN_IF_ERROR(
      version->store()->WriteHeaderBlock(version->location(), block.data, !Deferred(version->store_index())));
  Dirtied(version->store_index());
  MutexLock g(mu_);
  version->set_header(header);
  return Status::Ok();
}

Status Engine::RewriteHeader(const std::shared_ptr<Version>& version, ObjectHeader header) {
  {
    MutexLock g(mu_);
    header.generation = next_generation_++;
  }
  std::string key = header.key;  // a header rewrite keeps the key
  return WriteSpareHeaderSlot(version.get(), key, std::move(header));
}

Status Engine::EnsureDirRecord(Inode* dir) {
  ObjectHeader header;
  {
    MutexLock g(mu_);
    if (dir->committed) return Status::Ok();
    header = HeaderFor(dir, ns_.KeyOf(dir));
    header.generation = next_generation_++;
  }
  Result<std::shared_ptr<Version>> v = PublishRecord(StoreIndexFor(header.key), header);
  if (!v.ok()) return v.status();
  MutexLock g(mu_);
  dir->committed = *v;
  return Status::Ok();
}

}  // namespace kvfs
