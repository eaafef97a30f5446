// A store that cannot work is refused at mount with one clear error instead
// of failing every commit later (or deadlocking): a store on another kvfs
// mount, a store inside the mountpoint, a mountpoint inside its store. The
// daemon's log in the store is private (0600), like the store's directories
// (0700). `kvfs fsck` checks a store on a read-only filesystem.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class StoreSafetyMountTest : public MountedTest {
 protected:
  // Runs a `kvfs mount` that must fail with one line on stderr containing
  // `want`, leaving nothing mounted at `mountpoint`.
  void ExpectRefusedMount(const std::vector<std::string>& args, const std::string& mountpoint, const std::string& want) {
    std::vector<std::string> argv = {kvfs_binary(), "mount"};
    argv.insert(argv.end(), args.begin(), args.end());
    int before = CountMountsAt(mountpoint);
    CommandResult r = RunCommand(argv, 30 * 1000);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(r.timed_out) << r.Describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr must be exactly one line: [" << r.err << "]";
    EXPECT_NE(r.err.find(want), std::string::npos) << r.Describe();
    int after = CountMountsAt(mountpoint);
    EXPECT_EQ(after, before) << "a refused mount left something mounted at " << mountpoint;
    while (after-- > before) RunCommand({"/bin/umount", "-l", mountpoint});
  }

  std::string MakeDir(const std::string& path) {
    EXPECT_EQ(mkdir(path.c_str(), 0755), 0) << ErrnoMessage("mkdir " + path);
    return path;
  }

  static mode_t ModeOf(const std::string& path) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return 0;
    return st.st_mode & 07777;
  }
};

TEST_F(StoreSafetyMountTest, StoreOnAnotherKvfsMountIsRefused) {
  const std::string mnt2 = MakeDir(root() + "/mnt2");
  const std::string inner = MakeDir(P("inner-store"));
  ExpectRefusedMount({mnt2, "--store", inner}, mnt2, "kvfs mount");
  // The fixture's mount is unharmed.
  EXPECT_TRUE(IsKvfsMounted(mnt()));
  ASSERT_EQ(WriteFile(P("after"), MakeData(2, 6000)), "");
  EXPECT_EQ(CheckFile(P("after"), MakeData(2, 6000)), "");
}

TEST_F(StoreSafetyMountTest, StoreInsideTheMountpointIsRefused) {
  const std::string mnt2 = MakeDir(root() + "/mnt2");
  const std::string store = MakeDir(mnt2 + "/store");
  ExpectRefusedMount({mnt2, "--store", store}, mnt2, "inside the mountpoint");
}

TEST_F(StoreSafetyMountTest, MountpointInsideItsStoreIsRefused) {
  const std::string store = MakeDir(root() + "/store2");
  const std::string mnt2 = MakeDir(store + "/mnt");
  ExpectRefusedMount({mnt2, "--store", store}, mnt2, "inside the store");
}

TEST_F(StoreSafetyMountTest, LogAndStoreDirectoriesArePrivate) {
  ASSERT_EQ(WriteFile(P("k"), MakeData(1, 5000)), "");
  EXPECT_EQ(ModeOf(store_path() + "/kvfs.log"), 0600u);
  for (const char* sub : {"objects", "staging", "quarantine"}) {
    EXPECT_EQ(ModeOf(store_path() + "/" + sub), 0700u) << sub;
  }
}

// Detaches a mount on destruction, whatever the test did.
struct ScopedBind {
  std::string path;
  bool mounted = false;
  ~ScopedBind() {
    if (mounted) umount2(path.c_str(), MNT_DETACH);
  }
};

TEST_F(StoreSafetyMountTest, FsckChecksAReadOnlyStore) {
  ASSERT_EQ(WriteFile(P("a"), MakeData(1, 300000)), "");
  ASSERT_EQ(WriteFile(P("b"), MakeData(2, 10)), "");
  ASSERT_EQ(Unmount(), "");
  ScopedBind ro;
  ro.path = MakeDir(root() + "/ro-store");
  if (mount(store_path().c_str(), ro.path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    GTEST_SKIP() << ErrnoMessage("bind mount");
  }
  ro.mounted = true;
  ASSERT_EQ(mount(nullptr, ro.path.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0)
      << ErrnoMessage("remount read-only");
  CommandResult r = RunCommand({kvfs_binary(), "fsck", "--store", ro.path});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("clean"), std::string::npos) << r.Describe();
  EXPECT_NE(r.out.find("(2 files"), std::string::npos) << r.Describe();
  // Repair needs to write: it fails cleanly (exit 2) on the read-only store.
  CommandResult rep = RunCommand({kvfs_binary(), "fsck", "--store", ro.path, "--repair"});
  EXPECT_EQ(rep.exit_code, 2) << rep.Describe();
  EXPECT_FALSE(rep.err.empty()) << rep.Describe();
}

}  // namespace
}  // namespace kvfs::mounted_test
