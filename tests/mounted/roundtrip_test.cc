// Byte-exact round trips through a real mount: buffered and O_DIRECT writes
// and reads, preadv in odd pieces, and verification from another process.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class RoundTripTest : public MountedTest {};

// The sizes the contract cares about: empty, tiny, around one page, just
// over a buffer-pool buffer, and a large KV chunk.
const std::vector<size_t>& Sizes() {
  static const std::vector<size_t> sizes = {0, 1, 4095, 4096, kMiB + 1, 64 * kMiB};
  return sizes;
}

uint64_t SeedFor(size_t size, int variant) { return size * 31 + static_cast<uint64_t>(variant) * 1000003; }

std::string Name(const char* prefix, size_t size) { return std::string(prefix) + "_" + std::to_string(size); }

std::string CheckSize(const std::string& path, size_t want) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return ErrnoMessage("stat(" + path + ")");
  if (!S_ISREG(st.st_mode)) return path + " is not a regular file";
  if (static_cast<size_t>(st.st_size) != want) {
    return path + ": st_size " + std::to_string(st.st_size) + " != " + std::to_string(want);
  }
  return "";
}

// Reads [start, EOF) of fd with preadv calls of three iovecs each, cycling
// through `pieces` for the iovec lengths, and compares with want. Then checks
// that a preadv at EOF returns 0. direct: buffers are 4 KiB aligned.
std::string PreadvCheck(int fd, const std::vector<uint8_t>& want, size_t start, const std::vector<size_t>& pieces) {
  size_t max_piece = *std::max_element(pieces.begin(), pieces.end());
  AlignedBuffer b0(max_piece), b1(max_piece), b2(max_piece);
  uint8_t* bufs[3] = {b0.data(), b1.data(), b2.data()};
  size_t offset = start;
  size_t next_piece = 0;
  while (offset < want.size()) {
    iovec iov[3];
    size_t requested = 0;
    for (int i = 0; i < 3; ++i) {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = pieces[next_piece++ % pieces.size()];
      requested += iov[i].iov_len;
    }
    ssize_t n = preadv(fd, iov, 3, static_cast<off_t>(offset));
    if (n < 0) return ErrnoMessage("preadv(offset " + std::to_string(offset) + ")");
    size_t expect_n = std::min(requested, want.size() - offset);
    if (static_cast<size_t>(n) != expect_n) {
      return "preadv(offset " + std::to_string(offset) + ", " + std::to_string(requested) + " bytes) returned " +
             std::to_string(n) + ", expected " + std::to_string(expect_n);
    }
    size_t left = static_cast<size_t>(n);
    size_t at = offset;
    for (int i = 0; i < 3 && left > 0; ++i) {
      size_t len = std::min(left, iov[i].iov_len);
      std::string err = CompareBytes(bufs[i], len, want.data() + at, len);
      if (!err.empty()) return "preadv at offset " + std::to_string(at) + ", iovec " + std::to_string(i) + ": " + err;
      at += len;
      left -= len;
    }
    offset += static_cast<size_t>(n);
  }
  iovec tail{bufs[0], pieces[0]};
  ssize_t n = preadv(fd, &tail, 1, static_cast<off_t>(std::max(want.size(), start)));
  if (n != 0) return "preadv at EOF returned " + std::to_string(n) + " (expected 0): " + ErrnoName(errno);
  return "";
}

TEST_F(RoundTripTest, BufferedWriteBufferedRead) {
  for (size_t size : Sizes()) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string path = P(Name("buffered", size));
    const auto data = MakeData(SeedFor(size, 1), size);
    // An odd chunk size, so FUSE write payloads are unaligned.
    ASSERT_EQ(WriteFile(path, data, 100003), "");
    EXPECT_EQ(CheckSize(path, size), "");
    EXPECT_EQ(CheckFile(path, data), "");
  }
}

TEST_F(RoundTripTest, DirectWriteDirectRead) {
  for (size_t size : Sizes()) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string path = P(Name("direct", size));
    const auto data = MakeData(SeedFor(size, 2), size);
    ASSERT_EQ(WriteFileDirect(path, data), "");
    EXPECT_EQ(CheckSize(path, size), "");
    EXPECT_EQ(CheckFileDirect(path, data), "");
    // O_DIRECT reads in 4 KiB units too (many small aligned requests).
    if (size <= kMiB + 1) {
      std::vector<uint8_t> got;
      ASSERT_EQ(ReadFileDirect(path, &got, 4096), "");
      EXPECT_EQ(CompareBytes(got, data), "");
    }
  }
}

TEST_F(RoundTripTest, MixedBufferedAndDirect) {
  for (size_t size : Sizes()) {
    SCOPED_TRACE("size " + std::to_string(size));
    const auto a = MakeData(SeedFor(size, 3), size);
    const auto b = MakeData(SeedFor(size, 4), size);
    ASSERT_EQ(WriteFile(P(Name("b2d", size)), a), "");
    ASSERT_EQ(WriteFileDirect(P(Name("d2b", size)), b), "");
    EXPECT_EQ(CheckFileDirect(P(Name("b2d", size)), a), "");
    EXPECT_EQ(CheckFile(P(Name("d2b", size)), b), "");
  }
}

TEST_F(RoundTripTest, PreadvInPieces) {
  // Piece lengths straddle page and buffer-pool boundaries.
  const std::vector<size_t> odd_pieces = {1, 4095, 4097, 65536, 1000003, 7, 262144 + 5};
  const std::vector<size_t> aligned_pieces = {4096, 8192, kMiB, 3 * 4096, 256 * 1024};
  for (size_t size : Sizes()) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string path = P(Name("preadv", size));
    const auto data = MakeData(SeedFor(size, 5), size);
    ASSERT_EQ(WriteFile(path, data), "");

    Fd fd(open(path.c_str(), O_RDONLY));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("open " + path);
    EXPECT_EQ(PreadvCheck(fd.get(), data, 0, odd_pieces), "");
    // Unaligned start offsets.
    for (size_t start : {size_t{7}, size_t{4095}, size_t{4097}, kMiB - 3}) {
      if (start >= size) continue;
      SCOPED_TRACE("start " + std::to_string(start));
      EXPECT_EQ(PreadvCheck(fd.get(), data, start, odd_pieces), "");
    }

    Fd dfd(open(path.c_str(), O_RDONLY | O_DIRECT));
    ASSERT_TRUE(dfd.valid()) << ErrnoMessage("open O_DIRECT " + path);
    EXPECT_EQ(PreadvCheck(dfd.get(), data, 0, aligned_pieces), "");
    if (size > 8192) {
      EXPECT_EQ(PreadvCheck(dfd.get(), data, 8192, aligned_pieces), "");
    }
  }
}

TEST_F(RoundTripTest, VerifiedByAnotherProcess) {
  // The test process writes (half buffered, half O_DIRECT); a child reads.
  for (size_t size : Sizes()) {
    ASSERT_EQ(WriteFile(P(Name("pw_buf", size)), MakeData(SeedFor(size, 6), size)), "");
    ASSERT_EQ(WriteFileDirect(P(Name("pw_dio", size)), MakeData(SeedFor(size, 7), size)), "");
  }
  ChildOutcome reader = RunInChild([this]() -> std::string {
    for (size_t size : Sizes()) {
      const auto a = MakeData(SeedFor(size, 6), size);
      const auto b = MakeData(SeedFor(size, 7), size);
      for (const auto& err : {CheckSize(P(Name("pw_buf", size)), size), CheckFile(P(Name("pw_buf", size)), a),
                              CheckFileDirect(P(Name("pw_buf", size)), a), CheckSize(P(Name("pw_dio", size)), size),
                              CheckFile(P(Name("pw_dio", size)), b), CheckFileDirect(P(Name("pw_dio", size)), b)}) {
        if (!err.empty()) return err;
      }
    }
    return "ok";
  });
  EXPECT_EQ(reader.Summary(), "ok");

  // And the other way round: a child writes, the test process reads.
  ChildOutcome writer = RunInChild([this]() -> std::string {
    for (size_t size : Sizes()) {
      std::string err = WriteFile(P(Name("cw_buf", size)), MakeData(SeedFor(size, 8), size), 65536 + 1);
      if (err.empty()) err = WriteFileDirect(P(Name("cw_dio", size)), MakeData(SeedFor(size, 9), size));
      if (!err.empty()) return err;
    }
    return "ok";
  });
  ASSERT_EQ(writer.Summary(), "ok");
  for (size_t size : Sizes()) {
    SCOPED_TRACE("size " + std::to_string(size));
    EXPECT_EQ(CheckFile(P(Name("cw_buf", size)), MakeData(SeedFor(size, 8), size)), "");
    EXPECT_EQ(CheckFileDirect(P(Name("cw_dio", size)), MakeData(SeedFor(size, 9), size)), "");
  }
}

TEST_F(RoundTripTest, MaximalNameRoundTrips) {
  // 255 bytes is the longest legal name.
  const std::string name(255, 'k');
  const auto data = MakeData(255, 12345);
  ASSERT_EQ(WriteFile(P(name), data), "");
  EXPECT_EQ(CheckFile(P(name), data), "");
  std::vector<std::string> names;
  ASSERT_EQ(ListDir(mnt(), &names), "");
  EXPECT_NE(std::find(names.begin(), names.end(), name), names.end());
}

}  // namespace
}  // namespace kvfs::mounted_test
