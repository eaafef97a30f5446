#include "adapters/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <thread>
#include <vector>

namespace kvfs {
namespace {

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 4096 == 0; }

TEST(BufferPoolTest, IovecsDescribeDisjointAlignedBuffers) {
  BufferPool pool(64 << 10, 8);
  EXPECT_EQ(pool.buffer_size(), 64u << 10);
  EXPECT_EQ(pool.count(), 8u);
  ASSERT_EQ(pool.iovecs().size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_TRUE(Aligned(pool.iovecs()[i].iov_base)) << i;
    EXPECT_EQ(pool.iovecs()[i].iov_len, 64u << 10);
    if (i > 0) {
      auto prev = static_cast<uint8_t*>(pool.iovecs()[i - 1].iov_base);
      auto cur = static_cast<uint8_t*>(pool.iovecs()[i].iov_base);
      EXPECT_GE(static_cast<size_t>(cur > prev ? cur - prev : prev - cur), 64u << 10);
    }
  }
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.hits(), 0u);
  EXPECT_EQ(pool.misses(), 0u);
}

TEST(BufferPoolTest, AcquireGivesAlignedRegisteredBuffersAndCountsHits) {
  BufferPool pool(16384, 4);
  std::vector<PooledBuffer> held;
  std::set<int> indexes;
  for (int i = 0; i < 4; ++i) {
    PooledBuffer b = pool.Acquire();
    ASSERT_NE(b.data(), nullptr);
    EXPECT_TRUE(Aligned(b.data()));
    ASSERT_GE(b.index(), 0);
    ASSERT_LT(b.index(), 4);
    EXPECT_TRUE(indexes.insert(b.index()).second) << "index handed out twice";
    // The buffer is the registered iovec of its index.
    EXPECT_EQ(b.data(), pool.iovecs()[b.index()].iov_base);
    std::memset(b.data(), i + 1, pool.buffer_size());  // whole buffer is writable
    held.push_back(std::move(b));
  }
  EXPECT_EQ(pool.hits(), 4u);
  EXPECT_EQ(pool.misses(), 0u);
  EXPECT_EQ(pool.in_use(), 4u);
  // Buffers do not overlap: each still holds what was written to it.
  for (int i = 0; i < 4; ++i) {
    for (size_t j = 0; j < pool.buffer_size(); j += 511) ASSERT_EQ(held[i].data()[j], i + 1);
  }
}

TEST(BufferPoolTest, ExhaustedPoolHandsOutAlignedMissBuffers) {
  BufferPool pool(8192, 2);
  PooledBuffer a = pool.Acquire();
  PooledBuffer b = pool.Acquire();
  PooledBuffer c = pool.Acquire();
  PooledBuffer d = pool.Acquire();
  EXPECT_GE(a.index(), 0);
  EXPECT_GE(b.index(), 0);
  EXPECT_EQ(c.index(), -1);
  EXPECT_EQ(d.index(), -1);
  ASSERT_NE(c.data(), nullptr);
  EXPECT_TRUE(Aligned(c.data()));
  EXPECT_TRUE(Aligned(d.data()));
  EXPECT_NE(c.data(), d.data());
  std::memset(c.data(), 0xAA, 8192);
  EXPECT_EQ(pool.hits(), 2u);
  EXPECT_EQ(pool.misses(), 2u);
  EXPECT_EQ(pool.in_use(), 2u) << "temporary buffers are not pool buffers";
  c.Reset();
  EXPECT_EQ(c.data(), nullptr);
  EXPECT_EQ(pool.in_use(), 2u);
}

TEST(BufferPoolTest, ReleasedBuffersGoBackToThePool) {
  BufferPool pool(4096, 3);
  {
    PooledBuffer a = pool.Acquire();
    PooledBuffer b = pool.Acquire();
    EXPECT_EQ(pool.in_use(), 2u);
    a.Reset();
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(a.index(), -1);
    EXPECT_EQ(pool.in_use(), 1u);
  }
  EXPECT_EQ(pool.in_use(), 0u);
  // After release every buffer can be acquired again as a hit.
  std::vector<PooledBuffer> all;
  for (int i = 0; i < 3; ++i) all.push_back(pool.Acquire());
  for (auto& b : all) EXPECT_GE(b.index(), 0);
  EXPECT_EQ(pool.misses(), 0u);
  EXPECT_EQ(pool.hits(), 5u);
  all.clear();
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(BufferPoolTest, MoveTransfersOwnershipWithoutDoubleRelease) {
  BufferPool pool(4096, 2);
  PooledBuffer a = pool.Acquire();
  int idx = a.index();
  uint8_t* data = a.data();
  PooledBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);  // NOLINT: checking the moved-from state
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.index(), idx);
  EXPECT_EQ(pool.in_use(), 1u);
  PooledBuffer c = pool.Acquire();
  EXPECT_EQ(pool.in_use(), 2u);
  c = std::move(b);  // c's old buffer goes back, b's moves in
  EXPECT_EQ(pool.in_use(), 1u);
  EXPECT_EQ(c.index(), idx);
  c.Reset();
  b.Reset();
  EXPECT_EQ(pool.in_use(), 0u);
  // Both buffers are free exactly once: two hits, then a miss.
  PooledBuffer x = pool.Acquire(), y = pool.Acquire(), z = pool.Acquire();
  EXPECT_GE(x.index(), 0);
  EXPECT_GE(y.index(), 0);
  EXPECT_NE(x.index(), y.index());
  EXPECT_EQ(z.index(), -1);
}

TEST(BufferPoolTest, ConcurrentAcquireRelease) {
  BufferPool pool(4096, 16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 2000; ++i) {
        PooledBuffer a = pool.Acquire();
        PooledBuffer b = pool.Acquire();
        a.data()[0] = static_cast<uint8_t>(t);
        b.data()[4095] = static_cast<uint8_t>(i);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.hits() + pool.misses(), 8u * 2000 * 2);
  std::set<int> indexes;
  std::vector<PooledBuffer> all;
  for (int i = 0; i < 16; ++i) {
    all.push_back(pool.Acquire());
    EXPECT_TRUE(indexes.insert(all.back().index()).second);
  }
  EXPECT_EQ(indexes.count(-1), 0u) << "a pool buffer was lost under concurrency";
}

}  // namespace
}  // namespace kvfs
