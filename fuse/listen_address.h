// The value of --metrics-listen: an IPv4 address and a TCP port, written
// "IPV4:PORT" (127.0.0.1:9100; 0.0.0.0:9100 for every interface). Port 0
// asks the kernel for a free port. Host names are refused (the server binds
// to an address, and a name that resolves differently later would be a
// surprise), and so is IPv6: Debian's civetweb, which serves /metrics, is
// built without it. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "adapters/status.h"

namespace kvfs {

struct ListenAddress {
  std::string address;  // dotted IPv4
  uint16_t port = 0;
  // "127.0.0.1:9100", with the given port.
  std::string HostPort(int port) const;
};

// EINVAL with the reason when `text` is not IPV4:PORT.
Result<ListenAddress> ParseListenAddress(const std::string& text);

}  // namespace kvfs
