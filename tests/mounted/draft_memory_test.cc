// The daemon's memory does not grow with the size or number of files being
// written: drafts spill to their staging files. Measured as the daemon's
// peak resident set (VmHWM) after writing far more than that.

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class DraftMemoryTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--capacity", "4G", "--min-free", "1G"}; }

  // The daemon's peak resident set, in MiB (0 when unknown).
  uint64_t DaemonPeakMiB() {
    char buf[32] = {};
    ssize_t n = getxattr(mnt().c_str(), "user.kvfs.pid", buf, sizeof(buf) - 1);
    if (n <= 0) return 0;
    std::ifstream status("/proc/" + std::string(buf, static_cast<size_t>(n)) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) / 1024;
    }
    return 0;
  }
};

// The registered read buffers (64 MiB) and the rest of the daemon stay well
// under this; without spilling, either test below would pass 512 MiB.
constexpr uint64_t kPeakLimitMiB = 320;

TEST_F(DraftMemoryTest, OneLargeFileKeepsTheDaemonSmall) {
  const std::string path = P("large");
  std::vector<uint8_t> block = MakeData(1, 4 * kMiB);
  {
    Fd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("open");
    for (int i = 0; i < 192; ++i) {  // 768 MiB
      ASSERT_EQ(write(fd.get(), block.data(), block.size()), static_cast<ssize_t>(block.size())) << ErrnoMessage("write");
    }
    ASSERT_EQ(fd.Close(), 0) << ErrnoMessage("close");
  }
  uint64_t peak = DaemonPeakMiB();
  ASSERT_GT(peak, 0u);
  std::cout << "daemon peak RSS after writing 768 MiB: " << peak << " MiB" << std::endl;
  EXPECT_LT(peak, kPeakLimitMiB) << "the daemon's peak RSS after writing 768 MiB";
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 768 * static_cast<off_t>(kMiB));
  // Spot-check the bytes: the first and last blocks.
  Fd fd(open(path.c_str(), O_RDONLY));
  ASSERT_TRUE(fd.valid());
  std::vector<uint8_t> got(block.size());
  ASSERT_EQ(pread(fd.get(), got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, block);
  ASSERT_EQ(pread(fd.get(), got.data(), got.size(), 764 * static_cast<off_t>(kMiB)), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, block);
}

TEST_F(DraftMemoryTest, ManyConcurrentWritersKeepTheDaemonSmall) {
  constexpr int kWriters = 32;
  std::vector<std::unique_ptr<ChildProcess>> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.push_back(std::make_unique<ChildProcess>([&, w](Channel& ch) -> std::string {
      const std::string path = P("w" + std::to_string(w));
      std::vector<uint8_t> data = MakeData(static_cast<uint64_t>(w), 32 * kMiB);
      Fd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644));
      if (!fd.valid()) return ErrnoMessage("open");
      // All of them hold a half-written file at once before anyone closes.
      if (write(fd.get(), data.data(), 16 * kMiB) != static_cast<ssize_t>(16 * kMiB)) return ErrnoMessage("write");
      ch.Send("half");
      if (std::string e = ch.Expect("go", 120000); !e.empty()) return e;
      if (write(fd.get(), data.data() + 16 * kMiB, 16 * kMiB) != static_cast<ssize_t>(16 * kMiB)) {
        return ErrnoMessage("write");
      }
      if (fd.Close() != 0) return ErrnoMessage("close");
      std::string e = CheckFile(path, data);
      return e.empty() ? "ok" : e;
    }));
  }
  for (auto& w : writers) ASSERT_EQ(w->channel().Expect("half", 120000), "");
  for (auto& w : writers) w->channel().Send("go");
  for (auto& w : writers) EXPECT_EQ(w->Wait(300000).Summary(), "ok");
  uint64_t peak = DaemonPeakMiB();
  ASSERT_GT(peak, 0u);
  std::cout << "daemon peak RSS with " << kWriters << " writers of 32 MiB: " << peak << " MiB" << std::endl;
  EXPECT_LT(peak, kPeakLimitMiB) << "the daemon's peak RSS with " << kWriters << " writers of 32 MiB";
}

}  // namespace
}  // namespace kvfs::mounted_test
