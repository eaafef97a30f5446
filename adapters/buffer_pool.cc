#include "adapters/buffer_pool.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace kvfs {

PooledBuffer& PooledBuffer::operator=(PooledBuffer&& o) noexcept {
  if (this != &o) {
    Reset();
    pool_ = o.pool_;
    data_ = o.data_;
    index_ = o.index_;
    o.pool_ = nullptr;
    o.data_ = nullptr;
    o.index_ = -1;
  }
  return *this;
}

void PooledBuffer::Reset() {
  if (pool_ && data_) pool_->Release(data_, index_);
  pool_ = nullptr;
  data_ = nullptr;
  index_ = -1;
}

BufferPool::BufferPool(size_t buffer_size, size_t count) : buffer_size_(buffer_size) {
  region_bytes_ = buffer_size * count;
  if (region_bytes_ > 0) {
    void* p = ::mmap(nullptr, region_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    region_ = static_cast<uint8_t*>(p);
  }
  for (size_t i = 0; i < count; ++i) {
    iovecs_.push_back(iovec{region_ + i * buffer_size, buffer_size});
    free_.push_back(static_cast<int>(count - 1 - i));
  }
}

BufferPool::~BufferPool() {
  // A buffer still on loan here belongs to an I/O batch given up on at a
  // deadline, which the kernel may still fill: the region stays mapped.
  if (region_ && in_use() == 0) ::munmap(region_, region_bytes_);
}

PooledBuffer BufferPool::Acquire() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!free_.empty()) {
      int idx = free_.back();
      free_.pop_back();
      hits_.fetch_add(1, std::memory_order_relaxed);
      return PooledBuffer(this, region_ + static_cast<size_t>(idx) * buffer_size_, idx);
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  void* p = std::aligned_alloc(4096, buffer_size_);
  if (!p) throw std::bad_alloc();
  return PooledBuffer(this, static_cast<uint8_t*>(p), -1);
}

void BufferPool::Release(uint8_t* data, int index) {
  if (index < 0) {
    std::free(data);
    return;
  }
  std::lock_guard<std::mutex> g(mu_);
  free_.push_back(index);
}

size_t BufferPool::in_use() const {
  std::lock_guard<std::mutex> g(mu_);
  return iovecs_.size() - free_.size();
}

}  // namespace kvfs
