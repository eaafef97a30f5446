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
// Chunks come straight from the kernel: page aligned, and zero without a
// memset (only the pages a write touches are ever faulted in).
uint8_t* NewChunk() {
  void* p = ::mmap(nullptr, kDraftChunkSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}
void FreeChunk(uint8_t* c) {
  if (c) ::munmap(c, kDraftChunkSize);
}
}  // namespace

Draft::~Draft() {
  for (uint8_t* c : chunks_) FreeChunk(c);
}

uint8_t* Draft::ChunkFor(size_t index) {
  if (index >= chunks_.size()) chunks_.resize(index + 1, nullptr);
  if (!chunks_[index]) chunks_[index] = NewChunk();
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
  dirty_ = true;
  return Status::Ok();
}

Status Draft::Truncate(uint64_t size) {
  std::lock_guard<std::mutex> g(mu_);
  size_t keep = static_cast<size_t>((size + kDraftChunkSize - 1) / kDraftChunkSize);
  for (size_t i = keep; i < chunks_.size(); ++i) FreeChunk(chunks_[i]);
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
