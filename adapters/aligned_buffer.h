// AlignedBuffer: heap memory aligned for O_DIRECT (4 KiB), freed on scope
// exit. For the stores' small direct transfers (header blocks, probes).
// Not thread-safe (one owner).
#pragma once

#include <cstddef>
#include <cstdlib>

namespace kvfs {

struct AlignedBuffer {
  void* p = nullptr;
  explicit AlignedBuffer(size_t n) { p = std::aligned_alloc(4096, (n + 4095) / 4096 * 4096); }
  ~AlignedBuffer() { std::free(p); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

}  // namespace kvfs
