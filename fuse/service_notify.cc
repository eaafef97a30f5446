#include "fuse/service_notify.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace kvfs {

Result<NotifyAddress> ParseNotifySocket(const std::string& value) {
  if (value.empty()) return Status::Error(EINVAL, "NOTIFY_SOCKET is empty");
  const bool abstract = value[0] == '@';
  if (!abstract && value[0] != '/') {
    return Status::Error(EINVAL, "NOTIFY_SOCKET " + value + ": neither an absolute path nor @NAME");
  }
  if (abstract && value.size() == 1) return Status::Error(EINVAL, "NOTIFY_SOCKET @: no name after '@'");
  NotifyAddress a;
  a.addr.sun_family = AF_UNIX;
  // A path needs room for its terminating NUL; an abstract name does not
  // have one (its length is in the address length).
  const size_t room = sizeof(a.addr.sun_path) - (abstract ? 0 : 1);
  if (value.size() > room) return Status::Error(EINVAL, "NOTIFY_SOCKET " + value + ": name too long");
  std::memcpy(a.addr.sun_path, value.data(), value.size());
  if (abstract) a.addr.sun_path[0] = '\0';
  a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size() + (abstract ? 0 : 1));
  return a;
}

Status NotifyServiceManager(const std::string& state) {
  const char* env = std::getenv("NOTIFY_SOCKET");
  if (env == nullptr) return Status::Ok();
  const std::string value = env;
  Result<NotifyAddress> address = ParseNotifySocket(value);
  if (!address.ok()) return address.status();
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("NOTIFY_SOCKET " + value + ": socket");
  ssize_t n;
  do {
    n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address->addr),
                 address->length);
  } while (n < 0 && errno == EINTR);
  Status s = Status::Ok();
  if (n < 0) {
    s = Status::FromErrno("NOTIFY_SOCKET " + value + ": sendto");
  } else if (static_cast<size_t>(n) != state.size()) {
    s = Status::Error(EMSGSIZE, "NOTIFY_SOCKET " + value + ": short send");
  }
  ::close(fd);
  return s;
}

}  // namespace kvfs
