#include "adapters/io_ring.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::AlignedBuffer;
using testing::TempDir;

// Opens path for read/write, with O_DIRECT when asked and supported.
int OpenFile(const std::string& path, bool direct) {
  int flags = O_RDWR | O_CREAT | O_CLOEXEC;
  if (direct) {
    int fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
    if (fd >= 0) return fd;
  }
  return ::open(path.c_str(), flags, 0644);
}

struct Mode {
  bool io_uring;
  bool fixed_buffers;
  bool direct;
};

std::string ModeName(const ::testing::TestParamInfo<Mode>& info) {
  return std::string(info.param.io_uring ? "Uring" : "Syscalls") + (info.param.fixed_buffers ? "Fixed" : "Plain") +
         (info.param.direct ? "Direct" : "Buffered");
}

class IoExecutorTest : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  TempDir dir_;
};

TEST_P(IoExecutorTest, WriteThenReadBackManyRequests) {
  const Mode mode = GetParam();
  constexpr size_t kBuf = 256 << 10;
  constexpr size_t kFile = 6 * (1 << 20) + 3 * kBuf;  // several MiB, not a power of two
  constexpr size_t kRequests = kFile / kBuf;
  BufferPool pool(kBuf, 8);
  IoExecutor io(mode.fixed_buffers ? &pool : nullptr, mode.io_uring, 16);
  std::string path = dir_.Sub("data");
  int fd = OpenFile(path, mode.direct);
  ASSERT_GE(fd, 0);

  // Write: batches of pool buffers (fixed) or one batch of many plain requests.
  if (mode.fixed_buffers) {
    for (size_t first = 0; first < kRequests; first += pool.count()) {
      std::vector<PooledBuffer> bufs;
      std::vector<IoRequest> reqs;
      for (size_t i = first; i < std::min(kRequests, first + pool.count()); ++i) {
        bufs.push_back(pool.Acquire());
        ASSERT_GE(bufs.back().index(), 0);
        testing::FillPattern(bufs.back().data(), kBuf, 42, i * kBuf);
        IoRequest r;
        r.fd = fd;
        r.buf = bufs.back().data();
        r.len = kBuf;
        r.offset = i * kBuf;
        r.write = true;
        r.buf_index = bufs.back().index();
        reqs.push_back(r);
      }
      Status s = io.Run(reqs);
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (const IoRequest& r : reqs) EXPECT_EQ(r.done, kBuf);
    }
  } else {
    AlignedBuffer src(kFile);
    testing::FillPattern(src.data(), kFile, 42);
    // Many small requests: more than the queue depth.
    constexpr size_t kSmall = 16 << 10;
    std::vector<IoRequest> reqs;
    for (size_t off = 0; off < kFile; off += kSmall) {
      IoRequest r;
      r.fd = fd;
      r.buf = src.data() + off;
      r.len = kSmall;
      r.offset = off;
      r.write = true;
      reqs.push_back(r);
    }
    ASSERT_GT(reqs.size(), 16u);
    Status s = io.Run(reqs);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (const IoRequest& r : reqs) EXPECT_EQ(r.done, kSmall);
  }
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), kFile);

  // Read back in segments into separate buffers, then compare every byte.
  AlignedBuffer dst(kFile);
  std::memset(dst.data(), 0xEE, kFile);
  if (mode.fixed_buffers) {
    for (size_t first = 0; first < kRequests; first += pool.count()) {
      std::vector<PooledBuffer> bufs;
      std::vector<IoRequest> reqs;
      for (size_t i = first; i < std::min(kRequests, first + pool.count()); ++i) {
        bufs.push_back(pool.Acquire());
        std::memset(bufs.back().data(), 0xEE, kBuf);
        IoRequest r;
        r.fd = fd;
        r.buf = bufs.back().data();
        r.len = kBuf;
        r.offset = i * kBuf;
        r.buf_index = bufs.back().index();
        reqs.push_back(r);
      }
      Status s = io.Run(reqs);
      ASSERT_TRUE(s.ok()) << s.ToString();
      for (size_t j = 0; j < reqs.size(); ++j) {
        ASSERT_EQ(reqs[j].done, kBuf);
        std::memcpy(dst.data() + reqs[j].offset, bufs[j].data(), kBuf);
      }
    }
  } else {
    constexpr size_t kSeg = 64 << 10;
    std::vector<IoRequest> reqs;
    for (size_t off = 0; off < kFile; off += kSeg) {
      IoRequest r;
      r.fd = fd;
      r.buf = dst.data() + off;
      r.len = kSeg;
      r.offset = off;
      r.done = 12345;  // must be reset by Run
      reqs.push_back(r);
    }
    Status s = io.Run(reqs);
    ASSERT_TRUE(s.ok()) << s.ToString();
    for (const IoRequest& r : reqs) ASSERT_EQ(r.done, kSeg);
  }
  ::close(fd);
  std::vector<uint8_t> want = testing::Pattern(42, kFile);
  for (size_t i = 0; i < kFile; ++i) {
    ASSERT_EQ(dst.data()[i], want[i]) << "first wrong byte at " << i;
  }
  EXPECT_EQ(io.in_flight(), 0u);
  if (mode.io_uring) {
    EXPECT_TRUE(io.using_io_uring()) << "io_uring fell back to syscalls on a kernel that supports it";
  } else {
    EXPECT_FALSE(io.using_io_uring());
  }
}

TEST_P(IoExecutorTest, ReadSpanningEofReturnsBytesAvailable) {
  const Mode mode = GetParam();
  std::string path = dir_.Sub("short");
  std::vector<uint8_t> content = testing::Pattern(7, 10000);
  ASSERT_TRUE(testing::WriteFile(path, content.data(), content.size()));
  int fd = mode.direct ? ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC) : -1;
  if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  BufferPool pool(16384, 4);
  IoExecutor io(mode.fixed_buffers ? &pool : nullptr, mode.io_uring);

  PooledBuffer a = pool.Acquire(), b = pool.Acquire(), c = pool.Acquire();
  std::memset(a.data(), 0xEE, 16384);
  std::vector<IoRequest> reqs(3);
  reqs[0] = IoRequest{fd, a.data(), 16384, 0, false, mode.fixed_buffers ? a.index() : -1, 0};
  reqs[1] = IoRequest{fd, b.data(), 8192, 8192, false, mode.fixed_buffers ? b.index() : -1, 0};
  reqs[2] = IoRequest{fd, c.data(), 4096, 12288, false, mode.fixed_buffers ? c.index() : -1, 0};
  Status s = io.Run(reqs);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(reqs[0].done, 10000u);
  EXPECT_EQ(reqs[1].done, 10000u - 8192u);
  EXPECT_EQ(reqs[2].done, 0u) << "a read wholly past EOF transfers nothing";
  EXPECT_TRUE(std::equal(content.begin(), content.end(), a.data()));
  EXPECT_TRUE(std::equal(content.begin() + 8192, content.end(), b.data()));
  ::close(fd);
}

TEST_P(IoExecutorTest, BadFdIsAnErrorNotAHang) {
  const Mode mode = GetParam();
  BufferPool pool(4096, 2);
  IoExecutor io(mode.fixed_buffers ? &pool : nullptr, mode.io_uring);
  PooledBuffer buf = pool.Acquire();
  int idx = mode.fixed_buffers ? buf.index() : -1;

  // A descriptor number that is not open. A high number, so that the ring
  // the executor creates on first use cannot be given the same number.
  int fd = 1000;
  while (::fcntl(fd, F_GETFD) != -1) ++fd;
  std::vector<IoRequest> reqs(1);
  reqs[0] = IoRequest{fd, buf.data(), 4096, 0, false, idx, 0};
  Status s = io.Run(reqs);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), EBADF) << s.ToString();

  // Negative fd.
  reqs[0] = IoRequest{-1, buf.data(), 4096, 0, false, idx, 0};
  s = io.Run(reqs);
  EXPECT_FALSE(s.ok());

  // Writing through a read-only descriptor, mixed with good reads.
  std::string path = dir_.Sub("ro");
  std::vector<uint8_t> content = testing::Pattern(3, 8192);
  ASSERT_TRUE(testing::WriteFile(path, content.data(), content.size()));
  int ro = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  AlignedBuffer other(8192);
  std::vector<IoRequest> mixed(3);
  mixed[0] = IoRequest{ro, other.data(), 4096, 0, false, -1, 0};
  mixed[1] = IoRequest{ro, buf.data(), 4096, 0, true, idx, 0};
  mixed[2] = IoRequest{ro, other.data() + 4096, 4096, 4096, false, -1, 0};
  s = io.Run(mixed);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), EBADF) << s.ToString();
  EXPECT_EQ(mixed[1].done, 0u);
  ::close(ro);
  // The file was not modified by the refused write.
  std::vector<uint8_t> after(8192);
  int rfd = ::open(path.c_str(), O_RDONLY);
  ASSERT_EQ(::pread(rfd, after.data(), 8192, 0), 8192);
  ::close(rfd);
  EXPECT_EQ(after, content);

  // The executor still works after errors.
  int wfd = ::open(dir_.Sub("after").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(wfd, 0);
  std::memset(buf.data(), 0x5C, 4096);
  reqs[0] = IoRequest{wfd, buf.data(), 4096, 4096, true, idx, 0};
  ASSERT_TRUE(io.Run(reqs).ok());
  EXPECT_EQ(reqs[0].done, 4096u);
  struct stat st;
  ASSERT_EQ(::fstat(wfd, &st), 0);
  EXPECT_EQ(st.st_size, 8192);
  ::close(wfd);
  EXPECT_EQ(io.in_flight(), 0u);
}

TEST_P(IoExecutorTest, EmptyBatchIsOk) {
  IoExecutor io(nullptr, GetParam().io_uring);
  std::vector<IoRequest> none;
  EXPECT_TRUE(io.Run(none).ok());
}

// The io_uring instances this process has open: the descriptors whose link
// reads "anon_inode:[io_uring]".
std::set<int> IoUringFds() {
  std::set<int> fds;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    char target[64];
    ssize_t n = ::readlink(entry.path().c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (std::string_view(target, static_cast<size_t>(n)) == "anon_inode:[io_uring]") {
      fds.insert(std::atoi(entry.path().filename().c_str()));
    }
  }
  return fds;
}

std::set<int> Minus(const std::set<int>& a, const std::set<int>& b) {
  std::set<int> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

// The executor keeps its rings to itself, but each ring is an io_uring
// descriptor of this process. The threads run their first two batches one
// thread at a time: the descriptor that appears during a thread's first batch
// is its ring, and none may appear during its second (the ring is reused).
// Then all threads run more batches at once, and while they are all still
// alive the process holds exactly one new ring per thread, all different;
// once they have exited, their rings are gone.
TEST_P(IoExecutorTest, ConcurrentThreadsEachGetTheirOwnRing) {
  const Mode mode = GetParam();
  BufferPool pool(64 << 10, 32);
  IoExecutor io(mode.fixed_buffers ? &pool : nullptr, mode.io_uring, 8);
  constexpr int kThreads = 4;
  constexpr int kRounds = 5;
  constexpr size_t kSize = 1 << 20;
  const std::set<int> before = IoUringFds();

  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;      // the thread whose first batches may run; kThreads: all done
  int finished = 0;  // threads done with every round, waiting to exit
  bool may_exit = false;
  std::vector<std::set<int>> opened_first(kThreads), opened_second(kThreads);
  std::atomic<int> failures{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string path = dir_.Sub("thread-" + std::to_string(t));
      int fd = OpenFile(path, mode.direct);
      if (fd < 0) failures++;
      // One batch writing 1 MiB in pool-sized requests, one reading it back.
      auto round = [&](int r) {
        if (fd < 0) return;
        std::vector<PooledBuffer> bufs;
        std::vector<IoRequest> reqs;
        for (size_t off = 0; off < kSize; off += pool.buffer_size()) {
          bufs.push_back(pool.Acquire());  // may be a miss: then index -1
          testing::FillPattern(bufs.back().data(), pool.buffer_size(), t * 10 + r, off);
          reqs.push_back(IoRequest{fd, bufs.back().data(), pool.buffer_size(), off, true,
                                   mode.fixed_buffers ? bufs.back().index() : -1, 0});
        }
        if (!io.Run(reqs).ok()) failures++;
        for (auto& b : bufs) std::memset(b.data(), 0, pool.buffer_size());
        for (auto& q : reqs) q.write = false;
        if (!io.Run(reqs).ok()) failures++;
        for (size_t i = 0; i < bufs.size(); ++i) {
          if (reqs[i].done != pool.buffer_size()) failures++;
          std::vector<uint8_t> want = testing::Pattern(t * 10 + r, pool.buffer_size(), reqs[i].offset);
          if (std::memcmp(bufs[i].data(), want.data(), want.size()) != 0) failures++;
        }
      };
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return turn == t; });
      }
      std::set<int> start = IoUringFds();
      round(0);
      std::set<int> after_first = IoUringFds();
      round(1);
      std::set<int> after_second = IoUringFds();
      opened_first[t] = Minus(after_first, start);
      opened_second[t] = Minus(after_second, after_first);
      {
        std::unique_lock<std::mutex> lk(mu);
        ++turn;
        cv.notify_all();
        cv.wait(lk, [&] { return turn == kThreads; });
      }
      for (int r = 2; r < kRounds; ++r) round(r);
      {
        std::unique_lock<std::mutex> lk(mu);
        ++finished;
        cv.notify_all();
        cv.wait(lk, [&] { return may_exit; });
      }
      if (fd >= 0) ::close(fd);
    });
  }
  std::set<int> while_alive;
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return finished == kThreads; });
    while_alive = IoUringFds();
    may_exit = true;
    cv.notify_all();
  }
  for (auto& th : threads) th.join();
  const std::set<int> after = IoUringFds();
  EXPECT_EQ(failures.load(), 0);

  if (!mode.io_uring || !io.using_io_uring()) {
    // pread/pwrite: no ring at all.
    for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(opened_first[t].empty() && opened_second[t].empty()) << t;
    EXPECT_EQ(while_alive, before);
    if (mode.io_uring) GTEST_SKIP() << "io_uring is unavailable here; rings could not be compared";
    return;
  }
  std::set<int> rings;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(opened_first[t].size(), 1u) << "thread " << t << "'s first batch should open exactly its ring";
    EXPECT_TRUE(opened_second[t].empty()) << "thread " << t << " opened another ring instead of reusing its own";
    rings.insert(opened_first[t].begin(), opened_first[t].end());
  }
  EXPECT_EQ(rings.size(), static_cast<size_t>(kThreads)) << "two threads share a ring";
  EXPECT_EQ(Minus(while_alive, before), rings) << "the concurrent batches opened other rings";
  EXPECT_TRUE(Minus(before, while_alive).empty());
  EXPECT_EQ(after, before) << "rings outlived their threads";
}

// A thread that uses executor after executor (as the engine's tests do, one
// engine each) keeps no ring of an executor that is gone once it sets up its
// next ring: at most the last destroyed executor's ring is left. Counted on
// a thread of the test's own, so that rings of other tests' threads (which
// may still be finishing stalled I/O) cannot blur the count.
TEST(IoExecutorRingsTest, ARingOfADestroyedExecutorGoesWhenTheThreadSetsUpItsNext) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  int fd = OpenFile(dir.Sub("f"), false);
  ASSERT_GE(fd, 0);
  bool io_uring = true;
  std::vector<size_t> rings;  // the thread's rings after each executor's batch
  std::thread t([&] {
    for (int i = 0; i < 12 && io_uring; ++i) {
      BufferPool pool(64 << 10, 4);
      IoExecutor io(&pool, true, 8);
      PooledBuffer b = pool.Acquire();
      std::memset(b.data(), i, pool.buffer_size());
      IoRequest req{fd, b.data(), pool.buffer_size(), 0, true, b.index(), 0};
      EXPECT_TRUE(io.Run(std::span<IoRequest>(&req, 1)).ok());
      io_uring = io.using_io_uring();
      rings.push_back(IoExecutor::RingsOfThisThread());
    }
  });
  t.join();
  ::close(fd);
  if (!io_uring) GTEST_SKIP() << "io_uring is unavailable here";
  ASSERT_EQ(rings.size(), 12u);
  for (size_t i = 0; i < rings.size(); ++i) {
    EXPECT_EQ(rings[i], 1u) << "rings held while executor " << i << " runs: those of destroyed executors stay";
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, IoExecutorTest,
                         ::testing::Values(Mode{true, true, true}, Mode{true, false, true}, Mode{true, true, false},
                                           Mode{false, true, true}, Mode{false, false, false}),
                         ModeName);

// A batch with a deadline whose read never completes by itself (an empty
// pipe): Run gives up at about the deadline with ETIMEDOUT, marks the batch
// abandoned, and the thread's ring keeps the batch (and the pool buffer it
// holds) alive until the read's completion arrives; then the buffer returns.
TEST(IoExecutorDeadlineTest, StuckReadTimesOutAndKeepsItsBufferUntilItEnds) {
  BufferPool pool(1 << 20, 2);
  IoExecutor io(&pool, true);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  auto batch = std::make_shared<DataBatch>();
  auto buffer = std::make_shared<PooledBuffer>(pool.Acquire());
  ASSERT_GE(buffer->index(), 0);
  batch->Read(p[0], buffer->data(), 4096, 0, buffer->index());
  batch->Keep(std::move(buffer));
  batch->deadline = DataBatch::Clock::now() + std::chrono::milliseconds(100);
  std::weak_ptr<DataBatch> watch = batch;
  auto start = std::chrono::steady_clock::now();
  Status s = io.Run(batch);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!io.using_io_uring()) {
    ::close(p[0]);
    ::close(p[1]);
    EXPECT_EQ(s.err(), ENOTSUP) << "without io_uring a deadline cannot be kept, and no I/O is done";
    GTEST_SKIP() << "io_uring is unavailable here";
  }
  EXPECT_EQ(s.err(), ETIMEDOUT) << s.message();
  EXPECT_GE(elapsed, 0.09);
  EXPECT_LT(elapsed, 2.0);
  EXPECT_TRUE(batch->abandoned());
  batch.reset();
  EXPECT_FALSE(watch.expired()) << "an abandoned batch was freed while its read was in flight";
  EXPECT_EQ(pool.in_use(), 1u) << "the buffer of a read in flight went back to the pool";
  // The read ends (cancelled at the deadline, or given a byte now).
  ASSERT_EQ(::write(p[1], "x", 1), 1);
  EXPECT_EQ(io.ReapAbandoned(std::chrono::seconds(10)), 0u);
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(pool.in_use(), 0u);
  ::close(p[0]);
  ::close(p[1]);
}

// Without a deadline the same executor still runs batches to completion
// after one was abandoned (its completion does not confuse the next batch).
TEST(IoExecutorDeadlineTest, LaterBatchesIgnoreAbandonedCompletions) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  BufferPool pool(1 << 20, 2);
  IoExecutor io(&pool, true);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  auto stuck = std::make_shared<DataBatch>();
  auto scratch = std::make_shared<std::vector<uint8_t>>(4096);
  stuck->Read(p[0], scratch->data(), 4096, 0);
  stuck->Keep(scratch);
  stuck->deadline = DataBatch::Clock::now() + std::chrono::milliseconds(50);
  Status s = io.Run(stuck);
  if (!io.using_io_uring()) GTEST_SKIP() << "io_uring is unavailable here";
  ASSERT_EQ(s.err(), ETIMEDOUT);
  ASSERT_EQ(::write(p[1], "y", 1), 1);  // let it end whenever

  std::string path = dir.Sub("f");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> out(64 << 10), in(64 << 10);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i * 7 + 1);
  for (int round = 0; round < 4; ++round) {
    auto w = std::make_shared<DataBatch>();
    w->Write(fd, out.data(), out.size(), 0);
    ASSERT_TRUE(io.Run(w).ok());
    EXPECT_EQ(w->requests[0].done, out.size());
    auto r = std::make_shared<DataBatch>();
    r->Read(fd, in.data(), in.size(), 0);
    ASSERT_TRUE(io.Run(r).ok());
    EXPECT_EQ(r->requests[0].done, in.size());
    EXPECT_EQ(in, out);
  }
  EXPECT_EQ(io.ReapAbandoned(std::chrono::seconds(10)), 0u);
  ::close(fd);
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
}  // namespace kvfs
