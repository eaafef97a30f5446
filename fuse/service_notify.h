// Start-up and shutdown notices to a service manager, in the datagram
// protocol of systemd's sd_notify(3): when the environment variable
// NOTIFY_SOCKET names a unix datagram socket, a notice is one datagram of
// newline-separated KEY=VALUE assignments (READY=1, STOPPING=1, STATUS=...,
// MAINPID=...) sent to it. NOTIFY_SOCKET is either an absolute path or, when
// it starts with '@', a name in the abstract socket namespace (the '@'
// stands for the leading NUL byte). Without NOTIFY_SOCKET nothing is sent.
//
// kvfs sends READY=1 (with MAINPID and a STATUS line) once a new mount has
// answered its first request, and STOPPING=1 when it starts to unmount; a
// `Type=notify` unit (packaging/kvfs@.service) therefore counts as started
// only when the mount is usable.
//
// ParseNotifySocket is pure. NotifyServiceManager reads the environment and
// sends one datagram from a socket of its own; it is thread-safe as long as
// nobody changes NOTIFY_SOCKET at the same time.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <string>

#include "adapters/status.h"

namespace kvfs {

// A notify socket's address, ready for sendto(2).
struct NotifyAddress {
  sockaddr_un addr{};
  socklen_t length = 0;
};

// The address named by a NOTIFY_SOCKET value. EINVAL for an empty value, a
// relative path, or a name too long for sockaddr_un.
Result<NotifyAddress> ParseNotifySocket(const std::string& value);

// Sends `state` ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. Ok when it was
// sent or when NOTIFY_SOCKET is not set; otherwise the error of the address
// or of socket(2)/sendto(2), with a message naming the socket.
Status NotifyServiceManager(const std::string& state);

}  // namespace kvfs
