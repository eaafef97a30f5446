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

Status Engine::WriteObject(Store* store, const ObjectHeader& header, const Draft* draft,
                           std::unique_ptr<StagingFile>* out) {
  // A draft that spilled already has its staging file, with the spilled
  // chunks in place: only the rest is written into it (out stays empty).
  auto* spill = draft ? static_cast<StagingSpill*>(draft->spill_locked()) : nullptr;
  StagingFile* file = nullptr;
  if (spill) {
    file = &spill->file();
  } else {
    Result<std::unique_ptr<StagingFile>> staging = store->CreateStaging();
    if (!staging.ok()) return staging.status();
    *out = std::move(*staging);
    file = out->get();
  }
  AlignedBlock block;
  KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
  std::vector<IoRequest> reqs;
  int fd = file->fd();
  reqs.push_back(IoRequest{fd, block.data, kHeaderSize, 0, true});
  uint64_t size = draft ? draft->size_locked() : 0;
  for (uint64_t start = 0; start < size; start += kDraftChunkSize) {
    size_t i = static_cast<size_t>(start / kDraftChunkSize);
    if (draft->spilled_locked(i)) continue;  // in the file already
    size_t len = static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, size - start));
    len = (len + 4095) / 4096 * 4096;
    const uint8_t* chunk = i < draft->chunk_count_locked() ? draft->chunk_locked(i) : nullptr;
    reqs.push_back(IoRequest{fd, const_cast<uint8_t*>(chunk ? chunk : ZeroChunk()), len, kHeaderSize + start, true});
  }
  // The chunk checksum table, after the data.
  uint64_t table_bytes = ChecksumTableBytes(size);
  std::unique_ptr<uint8_t, decltype(&std::free)> table(
      table_bytes ? static_cast<uint8_t*>(std::aligned_alloc(4096, table_bytes)) : nullptr, &std::free);
  std::unique_ptr<uint8_t, decltype(&std::free)> scratch(
      spill ? static_cast<uint8_t*>(std::aligned_alloc(4096, kDraftChunkSize)) : nullptr, &std::free);
  if (table_bytes) {
    static_assert(kChunkSize == kDraftSumUnit, "the draft keeps sums of the object's checksum unit");
    std::memset(table.get(), 0, table_bytes);
    for (uint64_t c = 0; c < ChunkCount(size); ++c) {
      uint64_t start = c * kChunkSize;
      size_t len = static_cast<size_t>(std::min<uint64_t>(kChunkSize, size - start));
      Result<uint64_t> h = draft->UnitChecksumLocked(c, len, scratch.get());
      if (!h.ok()) return h.status();
      std::memcpy(table.get() + c * 8, &*h, 8);
    }
    reqs.push_back(IoRequest{fd, table.get(), table_bytes, ChecksumTableOffset(size), true});
  }
  KVFS_RETURN_IF_ERROR(io_->Run(reqs));
  if (spill) {
    // Spilled chunks past the new end (a truncation) must not stay in the file.
    off_t length = static_cast<off_t>(table_bytes ? ChecksumTableOffset(size) + table_bytes : kHeaderSize);
    if (::ftruncate(fd, length) != 0) return Status::FromErrno("truncate " + file->path());
  }
  return Status::Ok();
}

void Engine::AttachSpillLocked(Inode* inode, Draft* draft) {
  uint32_t store_index = StoreIndexFor(ns_.KeyOf(inode));
  Store* store = stores_[store_index].get();
  draft->SetSpill([store, store_index]() -> Result<std::unique_ptr<DraftSpill>> {
    Result<std::unique_ptr<StagingFile>> staging = store->CreateStaging();
    if (!staging.ok()) return staging.status();
    return std::unique_ptr<DraftSpill>(std::make_unique<StagingSpill>(store_index, std::move(*staging)));
  });
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

  Store* store = nullptr;
  std::unique_ptr<StagingFile> staging;  // when the draft did not spill
  StagingFile* staging_file = nullptr;   // what gets published
  uint64_t footprint;
  bool spilled = false;
  {
    auto dlk = draft->lock();
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
    std::unique_ptr<uint8_t, decltype(&std::free)> scratch(
        spill ? static_cast<uint8_t*>(std::aligned_alloc(4096, kDraftChunkSize)) : nullptr, &std::free);
    Result<uint64_t> sum = draft->ChecksumLocked(scratch.get());
    Status s = sum.status();
    if (sum.ok()) {
      header.checksum = *sum;
      s = WriteObject(store, header, draft.get(), &staging);
    }
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
  // Phase 3, run by whichever committer leads the next group commit (see
  // PublishBatch): fix the header if the file was renamed meanwhile, move the
  // staging file into place, and, once durable, switch the index.
  std::string location;
  uint64_t file_id = 0;
  bool published = false;
  PublishJob job;
  job.link = [&]() -> Status {
    std::string now_key;
    bool linked;
    bool attrs_changed = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      linked = inode->linked();
      if (linked) now_key = ns_.KeyOf(inode);
      // chmod/chown/utimens while the bytes were being written belong to
      // the new version too.
      const Attributes& a = inode->attr;
      attrs_changed = a.mode != header.mode || a.uid != header.uid || a.gid != header.gid ||
                      a.mtime_ns != header.mtime_ns || a.ctime_ns != header.ctime_ns;
      if (attrs_changed) {
        header.mode = a.mode;
        header.uid = a.uid;
        header.gid = a.gid;
        header.mtime_ns = a.mtime_ns;
        header.ctime_ns = a.ctime_ns;
      }
    }
    if (!linked) return Status::Ok();  // unlinked meanwhile: nothing to publish
    if (now_key != key || attrs_changed) {
      // Renamed while its bytes were being written: fix the header (and the store).
      // Only the header changes: the staging file stays on the store it was
      // written to, even if the new key hashes to another one (the index
      // records where an object is; its next commit moves it home).
      header.key = now_key;
      key = now_key;
      AlignedBlock block;
      KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
      if (::pwrite(staging_file->fd(), block.data, kHeaderSize, 0) != static_cast<ssize_t>(kHeaderSize)) {
        return Status::FromErrno(EIO, "rewrite header");
      }
    }
    location = store->LocationFor(HashKey(key));
    file_id = FileId(staging_file->fd());
    published = true;
    // With group commit, SyncAll (one flush for the group) follows; with
    // deferred syncs, the background sync's.
    return options_.group_commit || Deferred(store_index) ? store->Link(*staging_file, location)
                                                          : store->Publish(*staging_file, location);
  };
  job.store = store;
  job.store_index = store_index;
  uint64_t parent_ino = 0;
  std::string name;
  bool name_was_refused = false;
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
      // Pages a new key's writers left in the kernel's cache are this version's bytes.
      if (draft->page_cached) inode->cached_version = version;
      ns_.SetVisible(inode, was_visible);
      TrackCommitted(inode, old.get());
      if (!was_visible && inode->parent) {
        parent_ino = inode->parent->ino;
        name = inode->name;
        name_was_refused = inode->lookup_refused;
      }
    }
    if (old && (old->store_index() != store_index || old->location() != location)) {
      // The previous version sat elsewhere (a leftover of an interrupted
      // rename): remove it, or it would come back at the next mount.
      Status r = old->store()->Remove(old->location(), false);
      if (!r.ok() && r.err() != ENOENT) spdlog::warn("remove superseded {}: {}", old->location(), r.message());
    }
  };
  Status s = RunPublishJob(&job);
  space_->Release(store_index, footprint);
  if (!s.ok()) {
    if (!job.linked) {
      draft->set_dirty(true);
      if (spilled) draft->set_consumed(false);
    }
    spdlog::error("commit of '{}' failed: {}", key, s.message());
    // A store that did not answer in time (ETIMEDOUT) is an I/O error to the caller.
    return finish(Status::Error(s.err() == ENOSPC ? ENOSPC : EIO, s.message()));
  }
  Status done = finish(Status::Ok());
  if (EngineObserver* o = observer_.load()) {
    o->VersionCommitted(inode->ino);
    if (parent_ino != 0) o->EntryAppeared(parent_ino, name, name_was_refused);
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
  for (PublishJob* j : batch) j->result = j->link();
  for (PublishJob* j : batch) {
    if (j->result.ok()) Dirtied(j->store_index);
  }
  if (options_.group_commit) {
    // One flush for the whole group: every linked file and rename is durable after it.
    std::vector<Store*> synced;
    for (PublishJob* j : batch) {
      if (!j->result.ok() || Deferred(j->store_index) ||
          std::find(synced.begin(), synced.end(), j->store) != synced.end()) {
        continue;
      }
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
  KVFS_RETURN_IF_ERROR(PublishStaging(store_index, *staging, location));
  return MakeVersion(store_index, location, header, file_id);
}

Status Engine::PublishStaging(uint32_t store_index, StagingFile& staging, const std::string& location) {
  Store* store = stores_[store_index].get();
  if (!Deferred(store_index)) return store->Publish(staging, location);
  KVFS_RETURN_IF_ERROR(store->Link(staging, location));
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
    std::lock_guard<std::mutex> g(mu_);
    current = version->header();
  }
  current.key = current_key;
  header.slot = 1 - current.slot;
  AlignedBlock block;
  KVFS_RETURN_IF_ERROR(EncodeHeader(current, block.data));
  KVFS_RETURN_IF_ERROR(EncodeHeader(header, block.data));
  KVFS_RETURN_IF_ERROR(
      version->store()->WriteHeaderBlock(version->location(), block.data, !Deferred(version->store_index())));
  Dirtied(version->store_index());
  std::lock_guard<std::mutex> g(mu_);
  version->set_header(header);
  return Status::Ok();
}

Status Engine::RewriteHeader(const std::shared_ptr<Version>& version, ObjectHeader header) {
  {
    std::lock_guard<std::mutex> g(mu_);
    header.generation = next_generation_++;
  }
  std::string key = header.key;  // a header rewrite keeps the key
  return WriteSpareHeaderSlot(version.get(), key, std::move(header));
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

}  // namespace kvfs
