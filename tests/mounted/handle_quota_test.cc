// The per-user cap on open files (--max-handles-per-user): with allow_other,
// one user holding handles cannot use up the daemon's descriptors for the
// others. Users other than root are played by forked children that drop to
// another uid.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

constexpr int kPerUser = 16;
constexpr uid_t kUserA = 65534;  // nobody
constexpr uid_t kUserB = 65533;

class HandleQuotaTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override {
    return {"--max-handles-per-user", std::to_string(kPerUser), "-o", "allow_other"};
  }
  void SetUp() override {
    MountedTest::SetUp();
    // The test folder is private (0700): let the other users reach the mount.
    ASSERT_EQ(chmod(root().c_str(), 0755), 0) << ErrnoMessage("chmod of the test folder");
  }
};

// In a child: become uid (and the same gid), or say why not.
std::string BecomeUser(uid_t uid) {
  if (setresgid(uid, uid, uid) != 0) return ErrnoMessage("setresgid");
  if (setresuid(uid, uid, uid) != 0) return ErrnoMessage("setresuid");
  return "";
}

// The kernel sends RELEASE after close() has returned, so a handle's slot
// comes back a moment after its close: retries an open refused with EMFILE
// for up to 10 s.
int OpenOnceReleased(const std::string& path) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (true) {
    int fd = open(path.c_str(), O_RDONLY);
    if (fd >= 0 || errno != EMFILE || std::chrono::steady_clock::now() > deadline) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling RELEASE, bounded
  }
}

// Opens path read-only n times; the descriptors go to fds.
std::string OpenMany(const std::string& path, int n, std::vector<int>* fds) {
  for (int i = 0; i < n; ++i) {
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return ErrnoMessage("open #" + std::to_string(i + 1));
    fds->push_back(fd);
  }
  return "";
}

TEST_F(HandleQuotaTest, OneUserAtTheCapDoesNotStopOthers) {
  const std::string path = P("shared");
  const std::vector<uint8_t> data = MakeData(5, 8192);
  ASSERT_EQ(WriteFile(path, data), "");
  ASSERT_EQ(chmod(path.c_str(), 0644), 0) << ErrnoMessage("chmod");

  // User A takes every handle it may, and one more is refused with EMFILE.
  ChildProcess a([&](Channel& ch) -> std::string {
    if (std::string e = BecomeUser(kUserA); !e.empty()) return e;
    std::vector<int> fds;
    if (std::string e = OpenMany(path, kPerUser, &fds); !e.empty()) return e;
    errno = 0;
    int extra = open(path.c_str(), O_RDONLY);
    if (extra >= 0) return "open beyond the cap succeeded";
    if (errno != EMFILE) return ErrnoMessage("open beyond the cap (want EMFILE)");
    ch.Send("full");
    if (std::string e = ch.Expect("close-one"); !e.empty()) return e;
    close(fds.back());
    fds.pop_back();
    int again = OpenOnceReleased(path);
    if (again < 0) return ErrnoMessage("open after a close");
    ch.Send("reopened");
    if (std::string e = ch.Expect("done"); !e.empty()) return e;
    return "ok";  // the descriptors close at exit
  });
  ASSERT_EQ(a.channel().Expect("full"), "");

  // Meanwhile user B and root still open (and read) the same key.
  EXPECT_EQ(RunInChild([&] {
              if (std::string e = BecomeUser(kUserB); !e.empty()) return e;
              std::vector<int> fds;
              std::string e = OpenMany(path, kPerUser, &fds);
              for (int fd : fds) close(fd);
              return e.empty() ? std::string("ok") : e;
            }).Summary(),
            "ok");
  EXPECT_EQ(CheckFile(path, data), "");

  a.channel().Send("close-one");
  EXPECT_EQ(a.channel().Expect("reopened"), "");
  a.channel().Send("done");
  EXPECT_EQ(a.Wait().Summary(), "ok");

  // A's handles were all given back when its process exited.
  EXPECT_EQ(RunInChild([&] {
              if (std::string e = BecomeUser(kUserA); !e.empty()) return e;
              std::vector<int> fds;
              for (int i = 0; i < kPerUser; ++i) {
                int fd = OpenOnceReleased(path);
                if (fd < 0) return ErrnoMessage("open #" + std::to_string(i + 1));
                fds.push_back(fd);
              }
              for (int fd : fds) close(fd);
              return std::string("ok");
            }).Summary(),
            "ok");
}

// Writers count too: a user cannot hold more drafts open than the cap.
TEST_F(HandleQuotaTest, CreatesCountAgainstTheCap) {
  ASSERT_EQ(chmod(mnt().c_str(), 0777), 0) << ErrnoMessage("chmod of the mount's root");
  EXPECT_EQ(RunInChild([&] {
              if (std::string e = BecomeUser(kUserA); !e.empty()) return e;
              std::vector<int> fds;
              for (int i = 0; i < kPerUser; ++i) {
                int fd = open(P("new-" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0600);
                if (fd < 0) return ErrnoMessage("create #" + std::to_string(i + 1));
                fds.push_back(fd);
              }
              errno = 0;
              int extra = open(P("one-too-many").c_str(), O_CREAT | O_WRONLY, 0600);
              if (extra >= 0) return std::string("create beyond the cap succeeded");
              if (errno != EMFILE) return ErrnoMessage("create beyond the cap (want EMFILE)");
              for (int fd : fds) {
                if (close(fd) != 0) return ErrnoMessage("close");
              }
              // The refused create left nothing behind; once the closes
              // reached the daemon, a retry works.
              if (access(P("one-too-many").c_str(), F_OK) == 0) return std::string("refused create left a file");
              auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
              int fd;
              while ((fd = open(P("one-too-many").c_str(), O_CREAT | O_WRONLY, 0600)) < 0 && errno == EMFILE &&
                     std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling RELEASE, bounded
              }
              if (fd < 0) return ErrnoMessage("create after closing");
              close(fd);
              return std::string("ok");
            }).Summary(),
            "ok");
}

}  // namespace
}  // namespace kvfs::mounted_test
