#include "core/draft.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

namespace kvfs {

const uint8_t* ZeroChunk() {
  static uint8_t* zeros = [] {
    void* p = std::aligned_alloc(4096, kDraftChunkSize);
    std::memset(p, 0, kDraftChunkSize);
    return static_cast<uint8_t*>(p);
  }();
  return zeros;
}

uint64_t ZeroChecksum(size_t len) {
  static const uint64_t unit = XXH3_64bits(ZeroChunk(), kDraftSumUnit);
  return len == kDraftSumUnit ? unit : XXH3_64bits(ZeroChunk(), len);
}

namespace {
// Chunks come from the kernel page aligned and zero, and go back to a small
// cache when a draft is done with them: mapping fresh memory for every
// object costs a page fault and a page clear per 4 KiB written, and an unmap.
// A chunk enters the cache zeroed over the bytes its draft may have written,
// so every chunk handed out reads as zeros. Thread-safe: its list is
// guarded by a leaf mutex (see the lock order in core/engine.h).
class ChunkCache {
 public:
  static ChunkCache& Get() {
    static ChunkCache* cache = new ChunkCache;  // never destroyed: drafts may outlive statics
    return *cache;
  }
  uint8_t* Take() KVFS_EXCLUDES(mu_) {
    {
      MutexLock g(mu_);
      if (!free_.empty()) {
        uint8_t* c = free_.back();
        free_.pop_back();
        return c;
      }
    }
    void* p = ::mmap(nullptr, kDraftChunkSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  // dirty: how many leading bytes of c may be non-zero.
  void Give(uint8_t* c, size_t dirty) KVFS_EXCLUDES(mu_) {
    if (!c) return;
    std::memset(c, 0, std::min(dirty, kDraftChunkSize));
    {
      MutexLock g(mu_);
      if (free_.size() < kLimit) {
        free_.push_back(c);
        return;
      }
    }
    ::munmap(c, kDraftChunkSize);
  }

 private:
  static constexpr size_t kLimit = 16;  // 16 MiB kept at most
  Mutex mu_;  // a leaf: taken under a draft's lock, or with none
  std::vector<uint8_t*> free_ KVFS_GUARDED_BY(mu_);
};
}  // namespace

namespace {
std::atomic<uint64_t> g_draft_memory{0};

// Shared ownership of a chunk that leaves its draft; back to the cache at the end.
std::shared_ptr<const void> ChunkOwner(uint8_t* c) {
  return std::shared_ptr<const void>(c, [](const void* p) {
    ChunkCache::Get().Give(static_cast<uint8_t*>(const_cast<void*>(p)), kDraftChunkSize);
  });
}
}  // namespace

bool Draft::HandOverIfInDoubt(uint8_t* c) const {
  if (!spill_ || !spill_->in_doubt()) return false;
  // Called from const readers too: `broken` is a flag, not the draft's bytes.
  const_cast<Draft*>(this)->broken = true;
  spill_->KeepUntilTransfersEnd(ChunkOwner(c));
  return true;
}

std::vector<std::shared_ptr<const void>> Draft::DetachChunksLocked() {
  std::vector<std::shared_ptr<const void>> out;
  for (uint8_t*& c : chunks_) {
    if (!c) continue;
    uint8_t* copy = ChunkCache::Get().Take();
    if (!copy) {
      // No memory for a copy: the bytes go with the transfer, and the draft,
      // missing them, can no longer be committed.
      out.push_back(ChunkOwner(c));
      c = nullptr;
      resident_--;
      g_draft_memory.fetch_sub(kDraftChunkSize, std::memory_order_relaxed);
      broken = true;
      continue;
    }
    std::memcpy(copy, c, kDraftChunkSize);
    out.push_back(ChunkOwner(c));
    c = copy;
  }
  return out;
}

uint64_t Draft::total_memory_bytes() { return g_draft_memory.load(std::memory_order_relaxed); }

void Draft::SetSpill(DraftSpillFactory factory) {
  MutexLock g(mu_);
  spill_factory_ = std::move(factory);
}

void Draft::FreeChunk(size_t index) {
  if (!chunks_[index]) return;
  uint64_t start = static_cast<uint64_t>(index) * kDraftChunkSize;
  size_t dirty = high_water_ > start ? static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, high_water_ - start)) : 0;
  ChunkCache::Get().Give(chunks_[index], dirty);
  chunks_[index] = nullptr;
  resident_--;
  g_draft_memory.fetch_sub(kDraftChunkSize, std::memory_order_relaxed);
}

Draft::~Draft() {
  for (size_t i = 0; i < chunks_.size(); ++i) FreeChunk(i);
}

Result<uint8_t*> Draft::ChunkFor(size_t index) {
  if (index >= chunks_.size()) chunks_.resize(index + 1, nullptr);
  if (chunks_[index]) return chunks_[index];
  uint8_t* c = ChunkCache::Get().Take();
  if (!c) return Status::Error(ENOMEM, "out of staging memory");
  if (spilled_locked(index)) {
    // Written again: back into memory.
    Status s = spill_->Read(static_cast<uint64_t>(index) * kDraftChunkSize, c, kDraftChunkSize);
    if (!s.ok()) {
      if (!HandOverIfInDoubt(c)) ChunkCache::Get().Give(c, kDraftChunkSize);
      return Status::Error(EIO, "reading a spilled chunk back: " + s.message());
    }
    spilled_[index] = false;
  }
  chunks_[index] = c;
  resident_++;
  first_resident_hint_ = std::min(first_resident_hint_, index);
  g_draft_memory.fetch_add(kDraftChunkSize, std::memory_order_relaxed);
  return c;
}

Status Draft::SpillChunkLocked(size_t index) {
  if (!spill_) {
    Result<std::unique_ptr<DraftSpill>> made = spill_factory_();
    if (!made.ok()) return made.status();
    spill_ = std::move(*made);
  }
  const uint8_t* c = chunks_[index];
  Status written = spill_->Write(static_cast<uint64_t>(index) * kDraftChunkSize, c, kDraftChunkSize);
  if (!written.ok()) {
    if (spill_->in_doubt()) {
      // The write may still read the chunk: it goes with it; the draft keeps a copy.
      for (std::shared_ptr<const void>& owner : DetachChunksLocked()) spill_->KeepUntilTransfersEnd(std::move(owner));
      broken = true;
    }
    return written;
  }
  if (spilled_.size() <= index) spilled_.resize(index + 1, false);
  if (on_target_.size() <= index) on_target_.resize(index + 1, false);
  on_target_[index] = true;
  if (sums_.size() <= index) sums_.resize(index + 1);
  for (size_t u = 0; u < kDraftSumsPerChunk; ++u) sums_[index][u] = XXH3_64bits(c + u * kDraftSumUnit, kDraftSumUnit);
  spilled_[index] = true;
  FreeChunk(index);
  return Status::Ok();
}

Status Draft::SpillLocked(size_t keep) {
  if (!spill_factory_ || consumed_.load()) return Status::Ok();
  size_t limit = g_draft_memory.load(std::memory_order_relaxed) > kDraftMemoryBudget ? 1 : kDraftResidentChunks;
  for (size_t i = first_resident_hint_; i < chunks_.size() && resident_ > limit; ++i) {
    if (i == keep || !chunks_[i]) continue;
    KVFS_RETURN_IF_ERROR(SpillChunkLocked(i));
  }
  // Chunks below the first one still in memory stay out of it.
  while (first_resident_hint_ < chunks_.size() && !chunks_[first_resident_hint_]) ++first_resident_hint_;
  return Status::Ok();
}

Status Draft::Write(uint64_t off, const void* data, size_t len) {
  MutexLock g(mu_);
  return WriteLocked(off, data, len);
}

Status Draft::WriteLocked(uint64_t off, const void* data, size_t len) {
  const uint8_t* src = static_cast<const uint8_t*>(data);
  uint64_t pos = off;
  size_t left = len;
  size_t last = 0;
  while (left > 0) {
    size_t index = pos / kDraftChunkSize;
    size_t in_chunk = pos % kDraftChunkSize;
    size_t n = std::min(left, kDraftChunkSize - in_chunk);
    Result<uint8_t*> chunk = ChunkFor(index);
    if (!chunk.ok()) return chunk.status();
    std::memcpy(*chunk + in_chunk, src, n);
    src += n;
    pos += n;
    left -= n;
    last = index;
  }
  if (off + len > size_.load(std::memory_order_relaxed)) size_.store(off + len, std::memory_order_release);
  high_water_ = std::max<uint64_t>(high_water_, off + len);
  dirty_ = true;
  return len > 0 ? SpillLocked(last) : Status::Ok();
}

Status Draft::Truncate(uint64_t size) {
  MutexLock g(mu_);
  size_t keep = static_cast<size_t>((size + kDraftChunkSize - 1) / kDraftChunkSize);
  for (size_t i = keep; i < chunks_.size(); ++i) FreeChunk(i);
  if (chunks_.size() > keep) chunks_.resize(keep);
  if (spilled_.size() > keep) spilled_.resize(keep);
  // Zero the tail of the last kept chunk so growing again reads zeros.
  if (size % kDraftChunkSize != 0 && keep > 0 && (spilled_locked(keep - 1) || (chunks_.size() == keep && chunks_[keep - 1]))) {
    Result<uint8_t*> last = ChunkFor(keep - 1);
    if (!last.ok()) return last.status();
    size_t from = size % kDraftChunkSize;
    std::memset(*last + from, 0, kDraftChunkSize - from);
  }
  size_.store(size, std::memory_order_release);
  dirty_ = true;
  return Status::Ok();
}

void Draft::ExtendLocked(uint64_t size) {
  if (size <= size_.load(std::memory_order_relaxed)) return;
  size_.store(size, std::memory_order_release);
  dirty_ = true;
}

size_t Draft::Read(uint64_t off, size_t len, uint8_t* out) const {
  MutexLock g(mu_);
  uint64_t size = size_.load(std::memory_order_relaxed);
  if (off >= size) return 0;
  size_t total = static_cast<size_t>(std::min<uint64_t>(len, size - off));
  size_t copied = 0;
  uint8_t* scratch = nullptr;
  while (copied < total) {
    uint64_t pos = off + copied;
    size_t index = pos / kDraftChunkSize;
    size_t in_chunk = pos % kDraftChunkSize;
    size_t n = std::min(total - copied, kDraftChunkSize - in_chunk);
    if (index < chunks_.size() && chunks_[index]) {
      std::memcpy(out + copied, chunks_[index] + in_chunk, n);
    } else if (spilled_locked(index)) {
      if (!scratch) scratch = ChunkCache::Get().Take();
      if (!scratch || !spill_->Read(static_cast<uint64_t>(index) * kDraftChunkSize, scratch, kDraftChunkSize).ok()) {
        if (scratch && HandOverIfInDoubt(scratch)) scratch = nullptr;
        total = copied;  // a short read; the caller sees fewer bytes
        break;
      }
      std::memcpy(out + copied, scratch + in_chunk, n);
    } else {
      std::memset(out + copied, 0, n);
    }
    copied += n;
  }
  if (scratch) ChunkCache::Get().Give(scratch, kDraftChunkSize);
  return total;
}

Result<const uint8_t*> Draft::ChunkBytesLocked(size_t i, uint8_t* scratch) const {
  if (i < chunks_.size() && chunks_[i]) return static_cast<const uint8_t*>(chunks_[i]);
  if (spilled_locked(i)) {
    KVFS_RETURN_IF_ERROR(spill_->Read(static_cast<uint64_t>(i) * kDraftChunkSize, scratch, kDraftChunkSize));
    return static_cast<const uint8_t*>(scratch);
  }
  return ZeroChunk();
}

Result<uint64_t> Draft::UnitChecksumLocked(uint64_t u, size_t len, uint8_t* scratch) const {
  size_t i = static_cast<size_t>(u / kDraftSumsPerChunk);
  size_t k = static_cast<size_t>(u % kDraftSumsPerChunk);
  if (spilled_locked(i) && len == kDraftSumUnit) return sums_[i][k];
  if (ReadsAsZerosLocked(i)) return ZeroChecksum(len);
  Result<const uint8_t*> bytes = ChunkBytesLocked(i, scratch);
  if (!bytes.ok()) return bytes.status();
  return XXH3_64bits(*bytes + k * kDraftSumUnit, len);
}

Status Draft::UnitChecksumsLocked(uint8_t* table, uint8_t* scratch) const {
  const uint64_t size = size_.load(std::memory_order_relaxed);
  for (uint64_t u = 0; u * kDraftSumUnit < size; ++u) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kDraftSumUnit, size - u * kDraftSumUnit));
    Result<uint64_t> h = UnitChecksumLocked(u, len, scratch);
    if (!h.ok()) return h.status();
    std::memcpy(table + u * 8, &*h, 8);
  }
  return Status::Ok();
}

uint64_t Draft::memory_bytes() const {
  MutexLock g(mu_);
  return static_cast<uint64_t>(resident_) * kDraftChunkSize;
}

}  // namespace kvfs
