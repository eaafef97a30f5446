// kvfs through mount(8): an fstab line of type fuse.kvfs and
// `mount -t fuse.kvfs` go through mount.fuse3, which runs
// `kvfs SOURCE MOUNTPOINT -o OPTIONS` through /bin/sh. The mount must come
// up with the options of the line, serve files, and go away with
// umount(8), the daemon exiting.
//
// Finding the kvfs under test: mount(8) drops PATH from the environment of
// its helpers, so /bin/sh looks `kvfs` up in its default path, which starts
// with /usr/local/sbin and /usr/local/bin. Each test therefore runs in a
// child with a private mount namespace in which a folder holding a link to
// the build's kvfs is bind-mounted over those two directories; nothing
// outside the child sees that, or the kvfs mount made inside it. The child
// always unmounts what it mounted, and the test kills the daemon if a
// failed child left it running.
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

// Polls until the process is gone; false after the deadline.
bool WaitGone(pid_t pid, std::chrono::seconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (true) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

class FstabTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    if (HasFatalFailure()) return;
    if (access("/sbin/mount.fuse3", X_OK) != 0 && access("/usr/sbin/mount.fuse3", X_OK) != 0) {
      GTEST_SKIP() << "mount.fuse3 is not installed";
    }
    mnt2_ = root() + "/mnt2";
    store2_ = root() + "/store2";
    bin_ = root() + "/bin";
    for (const std::string& d : {mnt2_, store2_, bin_}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0) << ErrnoMessage("mkdir " + d);
    ASSERT_EQ(symlink(kvfs_binary().c_str(), (bin_ + "/kvfs").c_str()), 0) << ErrnoMessage("symlink");
  }

  void TearDown() override {
    if (daemon_pid_ > 0 && !WaitGone(daemon_pid_, std::chrono::seconds(0))) {
      ADD_FAILURE() << "the daemon (pid " << daemon_pid_ << ") outlived the test; killing it";
      kill(daemon_pid_, SIGTERM);
      if (!WaitGone(daemon_pid_, std::chrono::seconds(10))) kill(daemon_pid_, SIGKILL);
    }
    MountedTest::TearDown();
  }

  // Runs `steps` in a child inside a private mount namespace where `kvfs` is
  // the build's. `steps` returns "" or what failed; whatever it leaves
  // mounted at mnt2_ is unmounted before the child ends.
  void RunInNamespace(const std::function<std::string(Channel&)>& steps) {
    ChildProcess child([&](Channel& ch) -> std::string {
      if (unshare(CLONE_NEWNS) != 0) return ErrnoMessage("unshare(CLONE_NEWNS)");
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return ErrnoMessage("make / private");
      for (const char* dir : {"/usr/local/sbin", "/usr/local/bin"}) {
        if (mount(bin_.c_str(), dir, nullptr, MS_BIND, nullptr) != 0) return ErrnoMessage(std::string("bind ") + dir);
      }
      std::string error = steps(ch);
      if (CountMountsAt(mnt2_) > 0) {
        RunCommand({"/bin/umount", "-l", mnt2_});
        if (error.empty()) error = "something was left mounted at " + mnt2_;
      }
      return error.empty() ? "ok" : error;
    });
    // The child tells the daemon's pid as soon as it knows it.
    std::optional<std::string> msg = child.channel().Recv(90 * 1000);
    if (msg && msg->rfind("pid ", 0) == 0) {
      daemon_pid_ = static_cast<pid_t>(atoi(msg->c_str() + 4));
      if (child.channel().Recv(90 * 1000) == std::optional<std::string>("gone")) daemon_pid_ = 0;
    }
    ChildOutcome outcome = child.Wait(120 * 1000);
    EXPECT_EQ(outcome.Summary(), "ok");
  }

  // Inside the namespace: the mount serves a file and has `capacity`; then
  // umount(8) takes it down and the daemon exits. "" or what failed.
  std::string UseThenUmount(Channel& ch, uint64_t capacity) {
    if (!IsKvfsMounted(mnt2_)) return mnt2_ + " is not a fuse.kvfs mount";
    char buf[32] = {0};
    ssize_t n = getxattr(mnt2_.c_str(), "user.kvfs.pid", buf, sizeof buf - 1);
    pid_t pid = n > 0 ? static_cast<pid_t>(atoi(buf)) : 0;
    if (pid <= 0) return ErrnoMessage("getxattr user.kvfs.pid");
    ch.Send("pid " + std::to_string(pid));
    std::string e = WriteFile(mnt2_ + "/chunk", MakeData(7, 300000));
    if (e.empty()) e = CheckFile(mnt2_ + "/chunk", MakeData(7, 300000));
    if (!e.empty()) return e;
    CommandResult stats = RunCommand({kvfs_binary(), "stats", mnt2_, "--json"});
    std::string json_error;
    std::optional<JsonValue> v = ParseJson(stats.out, &json_error);
    const JsonValue* c = v ? v->Find("capacity_bytes") : nullptr;
    if (!c || c->AsU64() != capacity) return "capacity is not " + std::to_string(capacity) + ": " + stats.Describe();
    CommandResult u = RunCommand({"/bin/umount", mnt2_});
    if (u.exit_code != 0) return "umount: " + u.Describe();
    if (CountMountsAt(mnt2_) != 0) return "still mounted after umount";
    if (!WaitGone(pid, std::chrono::seconds(30))) return "the daemon did not exit after umount";
    ch.Send("gone");
    return "";
  }

  std::string mnt2_, store2_, bin_;
  pid_t daemon_pid_ = 0;
};

TEST_F(FstabTest, FstabLineMountsWithItsOptions) {
  const std::string fstab = root() + "/fstab";
  std::ofstream(fstab) << "# test fstab\n"
                       << store2_ << " " << mnt2_
                       << " fuse.kvfs capacity=48M,allow_other,_netdev,nofail,store_deadline=10,noatime 0 0\n";
  RunInNamespace([&](Channel& ch) -> std::string {
    CommandResult r = RunCommand({"/bin/mount", "-T", fstab, mnt2_}, 60 * 1000);
    if (r.exit_code != 0) return "mount -T: " + r.Describe();
    return UseThenUmount(ch, 48 * kMiB);
  });
}

TEST_F(FstabTest, MountDashTWithStoresInOptions) {
  RunInNamespace([&](Channel& ch) -> std::string {
    CommandResult r = RunCommand(
        {"/bin/mount", "-t", "fuse.kvfs", "kvfs", mnt2_, "-o", "store=" + store2_ + ",capacity=40M,entry_timeout=1"},
        60 * 1000);
    if (r.exit_code != 0) return "mount -t: " + r.Describe();
    return UseThenUmount(ch, 40 * kMiB);
  });
}

TEST_F(FstabTest, BadOptionInFstabFailsAndLeavesNothingMounted) {
  const std::string fstab = root() + "/fstab";
  std::ofstream(fstab) << store2_ << " " << mnt2_ << " fuse.kvfs capacity=lots 0 0\n";
  RunInNamespace([&](Channel&) -> std::string {
    CommandResult r = RunCommand({"/bin/mount", "-T", fstab, mnt2_}, 60 * 1000);
    if (r.exit_code == 0) return "mount -T succeeded: " + r.Describe();
    if (r.err.find("capacity") == std::string::npos) return "no word of capacity: " + r.Describe();
    return "";
  });
  EXPECT_EQ(CountMountsAt(mnt2_), 0);
}

}  // namespace
}  // namespace kvfs::mounted_test
