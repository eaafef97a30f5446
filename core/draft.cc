#include "core/draft.h"

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

namespace {
// Chunks come from the kernel page aligned and zero, and go back to a small
// cache when a draft is done with them: mapping fresh memory for every
// object costs a page fault and a page clear per 4 KiB written, and an unmap.
// A chunk enters the cache zeroed over the bytes its draft may have written,
// so every chunk handed out reads as zeros.
class ChunkCache {
 public:
  static ChunkCache& Get() {
    static ChunkCache* cache = new ChunkCache;  // never destroyed: drafts may outlive statics
    return *cache;
  }
  uint8_t* Take() {
    {
      std::lock_guard<std::mutex> g(mu_);
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
  void Give(uint8_t* c, size_t dirty) {
    if (!c) return;
    std::memset(c, 0, std::min(dirty, kDraftChunkSize));
    {
      std::lock_guard<std::mutex> g(mu_);
      if (free_.size() < kLimit) {
        free_.push_back(c);
        return;
      }
    }
    ::munmap(c, kDraftChunkSize);
  }

 private:
  static constexpr size_t kLimit = 16;  // 16 MiB kept at most
  std::mutex mu_;
  std::vector<uint8_t*> free_;
};
}  // namespace

void Draft::FreeChunk(size_t index) {
  uint64_t start = static_cast<uint64_t>(index) * kDraftChunkSize;
  size_t dirty = high_water_ > start ? static_cast<size_t>(std::min<uint64_t>(kDraftChunkSize, high_water_ - start)) : 0;
  ChunkCache::Get().Give(chunks_[index], dirty);
  chunks_[index] = nullptr;
}

Draft::~Draft() {
  for (size_t i = 0; i < chunks_.size(); ++i) FreeChunk(i);
}

uint8_t* Draft::ChunkFor(size_t index) {
  if (index >= chunks_.size()) chunks_.resize(index + 1, nullptr);
  if (!chunks_[index]) chunks_[index] = ChunkCache::Get().Take();
  return chunks_[index];
}

Status Draft::Write(uint64_t off, const void* data, size_t len) {
  std::lock_guard<std::mutex> g(mu_);
  return WriteLocked(off, data, len);
}

Status Draft::WriteLocked(uint64_t off, const void* data, size_t len) {
  const uint8_t* src = static_cast<const uint8_t*>(data);
  uint64_t pos = off;
  size_t left = len;
  while (left > 0) {
    size_t index = pos / kDraftChunkSize;
    size_t in_chunk = pos % kDraftChunkSize;
    size_t n = std::min(left, kDraftChunkSize - in_chunk);
    uint8_t* chunk = ChunkFor(index);
    if (!chunk) return Status::Error(ENOMEM, "out of staging memory");
    std::memcpy(chunk + in_chunk, src, n);
    src += n;
    pos += n;
    left -= n;
  }
  if (off + len > size_.load(std::memory_order_relaxed)) size_.store(off + len, std::memory_order_release);
  high_water_ = std::max<uint64_t>(high_water_, off + len);
  dirty_ = true;
  return Status::Ok();
}

Status Draft::Truncate(uint64_t size) {
  std::lock_guard<std::mutex> g(mu_);
  size_t keep = static_cast<size_t>((size + kDraftChunkSize - 1) / kDraftChunkSize);
  for (size_t i = keep; i < chunks_.size(); ++i) FreeChunk(i);
  if (chunks_.size() > keep) chunks_.resize(keep);
  // Zero the tail of the last kept chunk so growing again reads zeros.
  if (size % kDraftChunkSize != 0 && keep > 0 && chunks_.size() == keep && chunks_[keep - 1]) {
    size_t from = size % kDraftChunkSize;
    std::memset(chunks_[keep - 1] + from, 0, kDraftChunkSize - from);
  }
  size_.store(size, std::memory_order_release);
  dirty_ = true;
  return Status::Ok();
}

size_t Draft::Read(uint64_t off, size_t len, uint8_t* out) const {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t size = size_.load(std::memory_order_relaxed);
  if (off >= size) return 0;
  size_t total = static_cast<size_t>(std::min<uint64_t>(len, size - off));
  size_t copied = 0;
  while (copied < total) {
    uint64_t pos = off + copied;
    size_t index = pos / kDraftChunkSize;
    size_t in_chunk = pos % kDraftChunkSize;
    size_t n = std::min(total - copied, kDraftChunkSize - in_chunk);
    if (index < chunks_.size() && chunks_[index]) std::memcpy(out + copied, chunks_[index] + in_chunk, n);
    else std::memset(out + copied, 0, n);
    copied += n;
  }
  return total;
}

uint64_t Draft::memory_bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t n = 0;
  for (uint8_t* c : chunks_) n += c ? kDraftChunkSize : 0;
  return n;
}

}  // namespace kvfs
