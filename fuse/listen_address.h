// The value of --metrics-listen: an IP address and a TCP port, written
// "IPV4:PORT" (127.0.0.1:9100) or "[IPV6]:PORT" ([::1]:9100). Port 0 asks
// the kernel for a free port. Host names are refused (the server binds to
// an address, and a name that resolves differently later would be a
// surprise). Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "adapters/status.h"

namespace kvfs {

struct ListenAddress {
  std::string address;  // without brackets
  bool ipv6 = false;
  uint16_t port = 0;
  // "127.0.0.1:9100" or "[::1]:9100", with the given port.
  std::string HostPort(int port) const;
};

// EINVAL with the reason when `text` is not IPV4:PORT or [IPV6]:PORT.
Result<ListenAddress> ParseListenAddress(const std::string& text);

}  // namespace kvfs
