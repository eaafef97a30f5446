// Capacity: committed, unleased objects are evicted to stay under the
// mount's capacity; leased objects never are; a write that cannot get space
// fails with ENOSPC and harms nothing else. Never wrong bytes.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

constexpr uint64_t kCapacity = 32 * kMiB;

class CapacityTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--capacity", "32M"}; }

  uint64_t Used() {
    JsonValue stats;
    Stats(&stats);
    const JsonValue* used = stats.Find("used_bytes");
    return used == nullptr ? ~0ULL : used->AsU64();
  }
};

std::string ObjectName(int i) { return "obj" + std::to_string(i); }
std::vector<uint8_t> ObjectData(int i) { return MakeData(800 + i, 4 * kMiB + 100 * i); }

// A child that opens path, checks it, and holds it open until "done".
ChildProcess::Body Holder(const std::string& path, const std::vector<uint8_t>& want) {
  return [path, &want](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_RDONLY));
    if (!fd.valid()) return ErrnoMessage("open " + path);
    std::string err = CheckFd(fd.get(), want);
    if (!err.empty()) return err;
    ch.Send("holding");
    for (;;) {
      auto msg = ch.Recv();
      if (!msg || *msg == "done") break;
      err = CheckFd(fd.get(), want);
      ch.Send(err.empty() ? "same" : err);
    }
    return "ok";
  };
}

TEST_F(CapacityTest, EvictsUnleasedObjectsToStayUnderCapacity) {
  JsonValue stats;
  ASSERT_NO_FATAL_FAILURE(Stats(&stats));
  ASSERT_NE(stats.Find("capacity_bytes"), nullptr);
  EXPECT_EQ(stats.Find("capacity_bytes")->AsU64(), kCapacity);

  constexpr int kObjects = 12;  // ~48 MiB through a 32 MiB mount
  for (int i = 0; i < kObjects; ++i) {
    ASSERT_EQ(WriteFile(P(ObjectName(i)), ObjectData(i)), "") << "write " << i << " must evict, not fail";
    uint64_t used = Used();
    EXPECT_LE(used, kCapacity) << "after object " << i;
  }
  int present = 0;
  for (int i = 0; i < kObjects; ++i) {
    int err = StatErrno(P(ObjectName(i)));
    if (err == ENOENT) continue;
    ASSERT_EQ(err, 0) << ErrnoName(err);
    ++present;
    // Whatever is still there is byte-exact.
    EXPECT_EQ(CheckFileDirect(P(ObjectName(i)), ObjectData(i)), "");
  }
  EXPECT_LT(present, kObjects) << "nothing was evicted";
  EXPECT_GE(present, 1);
  EXPECT_EQ(CheckFile(P(ObjectName(kObjects - 1)), ObjectData(kObjects - 1)), "") << "the newest object was evicted";
}

TEST_F(CapacityTest, LeasedObjectIsNeverEvicted) {
  const auto pinned = MakeData(900, 8 * kMiB + 1);
  ASSERT_EQ(WriteFile(P("pinned"), pinned), "");
  ChildProcess holder(Holder(P("pinned"), pinned));
  ASSERT_EQ(holder.channel().Expect("holding"), "");

  for (int i = 0; i < 10; ++i) ASSERT_EQ(WriteFile(P(ObjectName(i)), ObjectData(i)), "") << i;
  EXPECT_LE(Used(), kCapacity);
  // Still there by name, and still readable through the held handle.
  EXPECT_EQ(StatErrno(P("pinned")), 0);
  holder.channel().Send("check");
  EXPECT_EQ(holder.channel().Recv().value_or("timeout"), "same");
  EXPECT_EQ(RunInChild([&] {
              std::string e = CheckFileDirect(P("pinned"), pinned);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  holder.channel().Send("done");
  EXPECT_EQ(holder.Wait().Summary(), "ok");
}

TEST_F(CapacityTest, WriteThatCannotFitFailsWithEnospc) {
  const auto pinned = MakeData(901, 8 * kMiB);
  ASSERT_EQ(WriteFile(P("pinned"), pinned), "");
  ChildProcess holder(Holder(P("pinned"), pinned));
  ASSERT_EQ(holder.channel().Expect("holding"), "");

  // 40 MiB can never fit in 32 MiB: some write() or the close() must fail
  // with ENOSPC, and with nothing else.
  const auto huge = MakeData(902, 40 * kMiB);
  int first_error = 0;
  std::string where;
  {
    Fd fd(open(P("huge").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("open huge");
    for (size_t off = 0; off < huge.size() && first_error == 0; off += kMiB) {
      if (write(fd.get(), huge.data() + off, kMiB) < 0) {
        first_error = errno;
        where = "write at " + std::to_string(off);
      }
    }
    if (fd.Close() != 0 && first_error == 0) {
      first_error = errno;
      where = "close";
    }
  }
  EXPECT_EQ(ErrnoName(first_error), "ENOSPC") << where;
  EXPECT_EQ(StatErrno(P("huge")), ENOENT) << "a failed commit must not publish anything";

  // Nothing else was harmed: the pinned object is intact, and a write that
  // fits still works.
  holder.channel().Send("check");
  EXPECT_EQ(holder.channel().Recv().value_or("timeout"), "same");
  EXPECT_EQ(CheckFile(P("pinned"), pinned), "");
  ASSERT_EQ(WriteFile(P("small"), MakeData(903, 3 * kMiB)), "");
  EXPECT_EQ(CheckFile(P("small"), MakeData(903, 3 * kMiB)), "");
  holder.channel().Send("done");
  EXPECT_EQ(holder.Wait().Summary(), "ok");
  EXPECT_LE(Used(), kCapacity);
}

}  // namespace
}  // namespace kvfs::mounted_test
