// The service-manager notices (fuse/service_notify.h): NOTIFY_SOCKET's two
// address forms, and one datagram per notice to a socket of the test.
#include "fuse/service_notify.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace kvfs {
namespace {

// Sets NOTIFY_SOCKET for one test and restores what was there.
class ScopedNotifySocket {
 public:
  explicit ScopedNotifySocket(const char* value) {
    const char* old = getenv("NOTIFY_SOCKET");
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value) setenv("NOTIFY_SOCKET", value, 1);
    else unsetenv("NOTIFY_SOCKET");
  }
  ~ScopedNotifySocket() {
    if (had_) setenv("NOTIFY_SOCKET", old_.c_str(), 1);
    else unsetenv("NOTIFY_SOCKET");
  }

 private:
  bool had_ = false;
  std::string old_;
};

// A bound datagram socket; fd -1 on failure.
int BindDatagram(const std::string& name) {
  Result<NotifyAddress> a = ParseNotifySocket(name);
  if (!a.ok()) return -1;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&a->addr), a->length) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string RecvOne(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 10000) != 1) return "(nothing)";
  char buf[512];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  return n < 0 ? "(recv failed)" : std::string(buf, static_cast<size_t>(n));
}

TEST(ServiceNotifyTest, ParsesPathsAndAbstractNames) {
  Result<NotifyAddress> path = ParseNotifySocket("/run/systemd/notify");
  ASSERT_TRUE(path.ok()) << path.status().message();
  EXPECT_EQ(path->addr.sun_family, AF_UNIX);
  EXPECT_STREQ(path->addr.sun_path, "/run/systemd/notify");
  EXPECT_EQ(path->length, offsetof(sockaddr_un, sun_path) + std::strlen("/run/systemd/notify") + 1);

  Result<NotifyAddress> abstract = ParseNotifySocket("@kvfs/x");
  ASSERT_TRUE(abstract.ok()) << abstract.status().message();
  EXPECT_EQ(abstract->addr.sun_path[0], '\0');
  EXPECT_EQ(std::string(abstract->addr.sun_path + 1, 6), "kvfs/x");
  EXPECT_EQ(abstract->length, offsetof(sockaddr_un, sun_path) + 7);  // no terminating NUL
}

TEST(ServiceNotifyTest, RefusesWhatIsNotAnAddress) {
  EXPECT_EQ(ParseNotifySocket("").status().err(), EINVAL);
  EXPECT_EQ(ParseNotifySocket("@").status().err(), EINVAL);
  EXPECT_EQ(ParseNotifySocket("relative/sock").status().err(), EINVAL);
  const size_t room = sizeof(sockaddr_un{}.sun_path);
  EXPECT_EQ(ParseNotifySocket("/" + std::string(room - 1, 'a')).status().err(), EINVAL);  // no room for NUL
  EXPECT_TRUE(ParseNotifySocket("/" + std::string(room - 2, 'a')).ok());
  EXPECT_TRUE(ParseNotifySocket("@" + std::string(room - 1, 'a')).ok());
  EXPECT_EQ(ParseNotifySocket("@" + std::string(room, 'a')).status().err(), EINVAL);
}

TEST(ServiceNotifyTest, SendsOneDatagramToAnAbstractSocket) {
  const std::string name = "@kvfs-unit-notify-" + std::to_string(getpid());
  int fd = BindDatagram(name);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ScopedNotifySocket env(name.c_str());
  ASSERT_TRUE(NotifyServiceManager("READY=1\nSTATUS=serving").ok());
  EXPECT_EQ(RecvOne(fd), "READY=1\nSTATUS=serving");
  ASSERT_TRUE(NotifyServiceManager("STOPPING=1").ok());
  EXPECT_EQ(RecvOne(fd), "STOPPING=1");
  close(fd);
}

TEST(ServiceNotifyTest, SendsToAPathSocket) {
  char dir[] = "/tmp/kvfs-notify-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string name = std::string(dir) + "/notify";
  int fd = BindDatagram(name);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  {
    ScopedNotifySocket env(name.c_str());
    ASSERT_TRUE(NotifyServiceManager("READY=1").ok());
    EXPECT_EQ(RecvOne(fd), "READY=1");
  }
  close(fd);
  unlink(name.c_str());
  // Nobody listening any more: the error names the socket.
  {
    ScopedNotifySocket env(name.c_str());
    Status s = NotifyServiceManager("READY=1");
    EXPECT_EQ(s.err(), ENOENT);
    EXPECT_NE(s.message().find(name), std::string::npos) << s.message();
  }
  rmdir(dir);
}

TEST(ServiceNotifyTest, WithoutNotifySocketNothingIsSent) {
  ScopedNotifySocket env(nullptr);
  EXPECT_TRUE(NotifyServiceManager("READY=1").ok());
  ScopedNotifySocket bad("not-absolute");
  EXPECT_EQ(NotifyServiceManager("READY=1").err(), EINVAL);
}

}  // namespace
}  // namespace kvfs
