// Engine: the read path (verified chunks through the buffer pool) and quarantine.
#include "core/engine.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "core/engine_internal.h"

namespace kvfs {
using namespace engine_detail;

namespace {

// Whether the n bytes at p are all zero.
bool IsAllZero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  return n == 0 || (b[0] == 0 && std::memcmp(b, b + 1, n - 1) == 0);
}

}  // namespace

// ---------------------------------------------------------------------------
// Reads.


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
  // The batch keeps the span (and so its pool buffers) alive for as long as
  // the I/O may run, even past a deadline after which this returns.
  auto batch = std::make_shared<DataBatch>();
  batch->Keep(span);
  std::vector<IoRequest>& reqs = batch->requests;
  std::vector<uint64_t> req_start;  // data offset of each request
  for (uint64_t pos = span->start; pos < span->end;) {
    PooledBuffer buf = pool_->Acquire();
    size_t n = static_cast<size_t>(std::min<uint64_t>(span->buffer_size, span->end - pos));
    for (size_t s = 0; s < n; s += segment) {
      size_t len = std::min(segment, n - s);
      batch->Read(v->fd(), buf.data() + s, len, kHeaderSize + pos + s, buf.index());
      req_start.push_back(pos + s);
    }
    span->buffers.push_back(std::move(buf));
    pos += n;
  }
  Status s = v->store()->TransferData(*io_, batch);
  if (!s.ok()) return Status::Error(EIO, s.message());  // a device error: the object is not blamed
  for (size_t i = 0; i < reqs.size(); ++i) {
    uint64_t needed = object_size > req_start[i] ? std::min<uint64_t>(reqs[i].len, object_size - req_start[i]) : 0;
    if (reqs[i].done < needed) return Status::Error(EBADMSG, "object is shorter on the store than its header says");
  }
  uint32_t one_in = options_.verify_one_in;
  if (one_in == 0) return span;
  Result<std::shared_ptr<const std::vector<uint64_t>>> sums = v->ChunkChecksums(*io_);
  if (!sums.ok()) return Status::Error(sums.err() == EBADMSG ? EBADMSG : EIO, sums.status().message());
  for (uint64_t c = span->start / kChunkSize; c * kChunkSize < std::min(span->end, object_size); ++c) {
    if (one_in > 1 && verify_counter_.fetch_add(1, std::memory_order_relaxed) % one_in != 0) continue;
    uint64_t rel = c * kChunkSize - span->start;
    const uint8_t* p = span->buffers[rel / span->buffer_size].data() + rel % span->buffer_size;
    size_t len = static_cast<size_t>(std::min<uint64_t>(kChunkSize, object_size - c * kChunkSize));
    if (c >= (*sums)->size() || XXH3_64bits(p, len) != (**sums)[c]) {
      if (v->MarkChecksumFailure()) integrity_[v->store_index()]->checksum_failures.fetch_add(1, std::memory_order_relaxed);
      return Status::Error(EBADMSG, "checksum mismatch in chunk " + std::to_string(c) + " of " + v->location());
    }
  }
  return span;
}

void Engine::QuarantineVersion(Inode* inode, const std::shared_ptr<Version>& v, const std::string& why) {
  if (!v->MarkCorrupt()) return;  // already handled
  spdlog::error("{} on {}: {}; quarantining it", v->location(), v->store()->Describe(), why);
  uint64_t parent_ino = 0;
  std::string name;
  {
    MutexLock publish(publish_mu_);
    {
      MutexLock g(mu_);
      if (inode->committed != v || !inode->linked()) return;  // replaced or gone meanwhile
      UntrackCommitted(inode);
      parent_ino = inode->parent->ino;
      name = inode->name;
      ns_.Detach(inode);
      inode->last_version = inode->committed;
      inode->committed.reset();
      inode->evicted = true;
    }
    Status s = v->store()->Quarantine(v->location());
    if (!s.ok()) spdlog::error("quarantine of {} failed: {}", v->location(), s.message());
    integrity_[v->store_index()]->quarantined.fetch_add(1, std::memory_order_relaxed);
  }
  if (EngineObserver* o = observer_.load()) o->EntryEvicted(parent_ino, name, inode->ino);
}

Status Engine::Read(FileHandle* handle, uint64_t offset, size_t size, ReadReply* out) {
  if (!handle->readable) return Status::Error(EBADF, "handle not open for reading");
  reads_.fetch_add(1, std::memory_order_relaxed);
  // Every counted read lands in the latency histogram, however it returns.
  struct LatencyRecorder {
    Histogram& histogram;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    ~LatencyRecorder() {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
      histogram.Record(static_cast<uint64_t>(ns.count()));
    }
  } latency{read_latency_};
  std::shared_ptr<Draft> draft;
  {
    MutexLock g(mu_);
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
  std::shared_ptr<Prefetch> ahead;
  // This read is in flight (for MaybeReadAhead) until it returns.
  struct InFlight {
    InFlight(FileHandle* h, uint64_t b) : handle(h), bytes(b) {}
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;
    FileHandle* handle;
    uint64_t bytes;
    ~InFlight() {
      MutexLock g(handle->cache_mu);
      handle->bytes_in_flight -= bytes;
    }
  };
  std::optional<InFlight> in_flight;
  {
    MutexLock g(handle->cache_mu);
    const uint64_t spread = handle->bytes_in_flight + options_.read_ahead_bytes;
    if (offset + spread < handle->requested_end || offset > handle->requested_end + spread) {
      handle->requested_end = end;  // a new pass
    } else {
      handle->requested_end = std::max(handle->requested_end, end);
    }
    handle->bytes_in_flight += end - offset;
    in_flight.emplace(handle, end - offset);  // its destructor takes cache_mu: made in place
    // Sequential reads smaller than a chunk are served from the chunks the
    // previous read of this handle already fetched and verified, or from
    // what was read ahead of it.
    if (handle->cache && offset >= handle->cache->start && end <= handle->cache->end) {
      span = handle->cache;
    } else if (handle->ahead && offset >= handle->ahead->start() && end <= handle->ahead->end()) {
      ahead = handle->ahead;
    }
  }
  if (!span && ahead) {
    std::shared_ptr<ChunkSpan> got = ahead->Wait();
    if (got && offset >= got->start && end <= got->end) {
      span = got;
      MutexLock g(handle->cache_mu);
      handle->cache = span;
      if (handle->ahead == ahead) handle->ahead.reset();
    }
  }
  if (!span) {
    Result<std::shared_ptr<ChunkSpan>> r = ReadChunks(v.get(), offset, end);
    if (!r.ok()) {
      spdlog::error("read of {} on {} failed: {}", v->location(), v->store()->Describe(), r.status().message());
      // EBADMSG marks damage to the object itself (not a failing device).
      if (r.err() == EBADMSG) QuarantineVersion(handle->inode, v, r.status().message());
      return Status::Error(EIO, r.status().message());
    }
    span = *r;
    MutexLock g(handle->cache_mu);
    handle->cache = span;
  }
  AppendSlices(span, offset, end, out);
  read_bytes_.fetch_add(end - offset, std::memory_order_relaxed);
  MaybeReadAhead(handle, v, offset, end, span->end);
  return Status::Ok();
}

void Engine::MaybeReadAhead(FileHandle* handle, const std::shared_ptr<Version>& v, uint64_t offset, uint64_t end,
                            uint64_t span_end) {
  if (!read_ahead_) return;
  std::shared_ptr<Prefetch> p;
  {
    MutexLock g(handle->cache_mu);
    bool sequential = offset == handle->next_offset;
    handle->next_offset = end;
    // Past what this read fetched, and past what the reader has asked for
    // in this pass (its own reads fetch that: reading it again here would
    // only double the drive's work).
    const uint64_t start = std::max(span_end, handle->requested_end);
    if (!sequential || start >= v->size()) return;
    if (handle->ahead && handle->ahead->end() > start) return;  // already ahead
    p = std::make_shared<Prefetch>(start, std::min<uint64_t>(start + options_.read_ahead_bytes, v->size()));
    handle->ahead = p;
  }
  // The task holds a lease of its own: the handle may be released first.
  Result<Lease> lease = Lease::Take(v);
  if (!lease.ok()) {
    p->Finish(nullptr);
    return;
  }
  auto held = std::make_shared<Lease>(std::move(*lease));
  bool queued = read_ahead_->Submit([this, p, held]() mutable {
    Result<std::shared_ptr<ChunkSpan>> r = ReadChunks(held->version().get(), p->start(), p->end());
    // The lease ends before the reader goes on: once its reads have
    // returned and its handle is released, nothing of it holds the version.
    held.reset();
    p->Finish(r.ok() ? *r : nullptr);  // a failed read ahead is not used; the reader's own read reports it
  });
  if (!queued) p->Finish(nullptr);
}

bool Engine::StoredHole(Version* v, uint64_t off, uint64_t end) {
  if (v->store()->Shared()) return false;
  errno = 0;
  off_t data = ::lseek(v->fd(), static_cast<off_t>(kHeaderSize + off), SEEK_DATA);
  if (data < 0 && errno != ENXIO) return false;  // no SEEK_DATA here: read it
  if (data >= 0 && static_cast<uint64_t>(data) < kHeaderSize + end) return false;
  // A hole where the checksums say data would be damage: the read reports it.
  Result<std::shared_ptr<const std::vector<uint64_t>>> sums = v->ChunkChecksums(*io_);
  if (!sums.ok()) return false;
  for (uint64_t c = off / kChunkSize; c * kChunkSize < end; ++c) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(kChunkSize, v->size() - c * kChunkSize));
    if (c >= (*sums)->size() || (**sums)[c] != ZeroChecksum(len)) return false;
  }
  return true;
}

Status Engine::LoadDraft(const std::shared_ptr<Version>& version, Draft* draft) {
  Result<Lease> lease = Lease::Take(version);
  if (!lease.ok()) return lease.status();
  for (uint64_t off = 0; off < version->size(); off += kDraftChunkSize) {
    uint64_t end = std::min<uint64_t>(off + kDraftChunkSize, version->size());
    if (StoredHole(version.get(), off, end)) continue;  // stays a hole in the draft
    Result<std::shared_ptr<ChunkSpan>> span = ReadChunks(version.get(), off, end);
    if (!span.ok()) return Status::Error(EIO, span.status().message());
    ReadReply r;
    AppendSlices(*span, off, end, &r);
    uint64_t pos = off;
    for (const iovec& v : r.iov) {
      // Zeros (a hole of a sparse version, most often) stay a hole in the
      // draft: no memory, nothing spilled, nothing written at commit.
      if (!IsAllZero(v.iov_base, v.iov_len)) KVFS_RETURN_IF_ERROR(draft->WriteLocked(pos, v.iov_base, v.iov_len));
      pos += v.iov_len;
    }
  }
  draft->ExtendLocked(version->size());
  return Status::Ok();
}

}  // namespace kvfs
