// kvfs under a service manager (the systemd unit packaging/kvfs@.service is
// Type=notify): the real kvfs, started in the foreground with NOTIFY_SOCKET
// naming a unix datagram socket of the test, must send READY=1 only once
// the mount answers, and STOPPING=1 when it is unmounted, by `kvfs umount`
// or by SIGTERM (systemctl stop), after which it exits 0 with the mount gone
// and the data kept. Both forms of NOTIFY_SOCKET are used: an abstract name
// ("@...") and a path. And what Restart=on-failure relies on: after the
// daemon was killed, a new `kvfs mount` detaches the dead mount it left.
//
// The fixture's own mount is taken down first; the test then runs its own
// daemon on the same mountpoint and store. If the test fails half-way, the
// daemon is killed and TearDown detaches whatever it left mounted.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

// A unix datagram socket standing in for systemd's notify socket.
class NotifyListener {
 public:
  // name: "@NAME" (abstract) or an absolute path. "" or what failed in *error.
  explicit NotifyListener(const std::string& name, std::string* error) : name_(name) {
    fd_.Reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd_.valid()) {
      *error = ErrnoMessage("socket");
      return;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (name.size() >= sizeof addr.sun_path) {
      *error = "socket name too long: " + name;
      return;
    }
    std::memcpy(addr.sun_path, name.data(), name.size());
    const bool abstract = name[0] == '@';
    if (abstract) addr.sun_path[0] = '\0';
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (abstract ? 0 : 1));
    if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) *error = ErrnoMessage("bind " + name);
  }
  const std::string& name() const { return name_; }

  // The next datagram, or nullopt after timeout_ms (0: only what is there).
  std::optional<std::string> Recv(int timeout_ms) {
    pollfd p{fd_.get(), POLLIN, 0};
    int rc;
    do {
      rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0) return std::nullopt;
    char buf[4096];
    ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  std::string name_;
  Fd fd_;
};

// The KEY=VALUE lines of a notice, as a list of lines.
std::vector<std::string> Lines(const std::string& notice) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= notice.size()) {
    size_t nl = notice.find('\n', start);
    if (nl == std::string::npos) nl = notice.size();
    if (nl > start) out.push_back(notice.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

bool HasLine(const std::string& notice, const std::string& line) {
  for (const std::string& l : Lines(notice)) {
    if (l == line) return true;
  }
  return false;
}

bool HasPrefix(const std::string& notice, const std::string& prefix) {
  for (const std::string& l : Lines(notice)) {
    if (l.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// Waits (without polling) until the child `pid` exits, then reaps it.
// Returns its exit code, or -1 (timeout or killed by a signal).
int WaitExit(pid_t pid, int timeout_ms) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int rc;
    do {
      rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    close(pidfd);
    if (rc <= 0) return -1;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class ServiceNotifyTest : public MountedTest {
 protected:
  void TearDown() override {
    if (daemon_ > 0) {  // a failed test left it running
      kill(daemon_, SIGKILL);
      WaitExit(daemon_, kDefaultTimeoutMs);
      daemon_ = -1;
    }
    MountedTest::TearDown();
  }

  // Starts `kvfs mount --foreground` on the fixture's mountpoint and store
  // with NOTIFY_SOCKET=notify_socket.
  void StartDaemon(const std::string& notify_socket) {
    std::vector<std::string> args = {kvfs_binary(), "mount",      mnt(),         "--store", store_path(0),
                                     "--foreground", "--log-file", store_path(0) + "/kvfs.log"};
    const std::string out = root() + "/daemon.out";
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << ErrnoMessage("fork");
    if (pid == 0) {
      int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0 || null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
      setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    daemon_ = pid;
  }

  // Receives notices until READY=1 (failing on anything else that matters)
  // and checks, at that moment, that the mount answers with this daemon's
  // pid.
  void ExpectReady(NotifyListener& listener) {
    while (true) {
      std::optional<std::string> notice = listener.Recv(kDefaultTimeoutMs);
      ASSERT_TRUE(notice.has_value()) << "no READY=1 from kvfs; its output: " << FileTail(root() + "/daemon.out");
      ASSERT_FALSE(HasLine(*notice, "STOPPING=1")) << *notice;
      if (!HasLine(*notice, "READY=1")) continue;
      // The mount must answer now, not merely soon.
      ASSERT_TRUE(IsKvfsMounted(mnt())) << "READY=1 came before the mount was in /proc/mounts";
      char buf[32] = {0};
      ssize_t n = getxattr(mnt().c_str(), "user.kvfs.pid", buf, sizeof buf - 1);
      ASSERT_GT(n, 0) << ErrnoMessage("getxattr user.kvfs.pid right after READY=1");
      EXPECT_EQ(std::atoi(buf), daemon_);
      EXPECT_TRUE(HasLine(*notice, "MAINPID=" + std::to_string(daemon_))) << *notice;
      EXPECT_TRUE(HasPrefix(*notice, "STATUS=serving " + mnt())) << *notice;
      return;
    }
  }

  // The next notice must carry STOPPING=1; then the daemon exits 0 with
  // nothing left mounted.
  void ExpectStoppedCleanly(NotifyListener& listener) {
    std::optional<std::string> notice = listener.Recv(kDefaultTimeoutMs);
    ASSERT_TRUE(notice.has_value()) << "no STOPPING=1 from kvfs";
    EXPECT_TRUE(HasLine(*notice, "STOPPING=1")) << *notice;
    const pid_t pid = daemon_;
    daemon_ = -1;
    EXPECT_EQ(WaitExit(pid, kDefaultTimeoutMs), 0) << FileTail(root() + "/daemon.out");
    EXPECT_FALSE(IsKvfsMounted(mnt()));
    EXPECT_FALSE(listener.Recv(0).has_value()) << "a notice after STOPPING=1";
  }

  pid_t daemon_ = -1;
};

TEST_F(ServiceNotifyTest, ReadyOnceTheMountAnswersAndStoppingAtUmount) {
  ASSERT_EQ(Unmount(), "");
  std::string error;
  NotifyListener listener("@kvfs-notify-test-" + std::to_string(getpid()) + "-" + root().substr(root().rfind('-') + 1),
                          &error);
  ASSERT_EQ(error, "");
  ASSERT_NO_FATAL_FAILURE(StartDaemon(listener.name()));
  ASSERT_NO_FATAL_FAILURE(ExpectReady(listener));

  const std::vector<uint8_t> data = MakeData(7, 3 * kMiB + 123);
  ASSERT_EQ(WriteFile(P("chunk"), data), "");
  ASSERT_EQ(CheckFile(P("chunk"), data), "");
  EXPECT_FALSE(listener.Recv(0).has_value()) << "a notice while serving";

  CommandResult r = RunCommand({kvfs_binary(), "umount", mnt()});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectStoppedCleanly(listener));
}

TEST_F(ServiceNotifyTest, SigtermUnmountsKeepsTheDataAndExitsZero) {
  ASSERT_EQ(Unmount(), "");
  std::string error;
  NotifyListener listener(root() + "/notify.sock", &error);
  ASSERT_EQ(error, "");
  ASSERT_NO_FATAL_FAILURE(StartDaemon(listener.name()));
  ASSERT_NO_FATAL_FAILURE(ExpectReady(listener));

  const std::vector<uint8_t> data = MakeData(8, 2 * kMiB + 5);
  ASSERT_EQ(WriteFile(P("chunk"), data), "");

  // What `systemctl stop` does.
  ASSERT_EQ(kill(daemon_, SIGTERM), 0) << ErrnoMessage("kill");
  ASSERT_NO_FATAL_FAILURE(ExpectStoppedCleanly(listener));

  // The stores were closed cleanly: a new mount finds the file.
  ASSERT_EQ(Mount(), "");
  EXPECT_EQ(CheckFile(P("chunk"), data), "");
}

// systemd's Restart=on-failure after the daemon was killed: the new
// `kvfs mount` detaches the dead mount it left and serves the stores again.
class ServiceRestartTest : public MountedTest {};

TEST_F(ServiceRestartTest, MountAfterACrashDetachesTheDeadMount) {
  const std::vector<uint8_t> data = MakeData(9, kMiB + 77);
  ASSERT_EQ(WriteFile(P("chunk"), data), "");
  char buf[32] = {0};
  ASSERT_GT(getxattr(mnt().c_str(), "user.kvfs.pid", buf, sizeof buf - 1), 0) << ErrnoMessage("getxattr");
  const pid_t pid = std::atoi(buf);
  ASSERT_GT(pid, 0);
  // Not our child (kvfs mount forked it): wait on a pidfd.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(pidfd, 0) << ErrnoMessage("pidfd_open");
  ASSERT_EQ(kill(pid, SIGKILL), 0) << ErrnoMessage("kill");
  pollfd p{pidfd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, kDefaultTimeoutMs), 1) << "the daemon did not die";
  close(pidfd);
  // The dead endpoint: still in the mount table, and every request to it
  // fails.
  ASSERT_TRUE(IsKvfsMounted(mnt()));
  errno = 0;
  EXPECT_LT(getxattr(mnt().c_str(), "user.kvfs.pid", buf, sizeof buf - 1), 0);
  ASSERT_EQ(errno, ENOTCONN) << ErrnoMessage("getxattr on the dead mount");

  CommandResult r = RunCommand(MountCommand());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("detached the dead kvfs mount on " + mnt()), std::string::npos) << r.out;
  EXPECT_EQ(CountMountsAt(mnt()), 1);
  EXPECT_EQ(CheckFile(P("chunk"), data), "");
}

// A live kvfs mount on the mountpoint is not detached: the mount is refused.
TEST_F(ServiceRestartTest, MountLeavesALiveMountAlone) {
  CommandResult r = RunCommand(MountCommand());
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("already mounted"), std::string::npos) << r.Describe();
  EXPECT_EQ(CountMountsAt(mnt()), 1);
}

}  // namespace
}  // namespace kvfs::mounted_test
