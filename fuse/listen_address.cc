#include "fuse/listen_address.h"

#include <arpa/inet.h>

#include <cctype>

namespace kvfs {

std::string ListenAddress::HostPort(int p) const { return address + ":" + std::to_string(p); }

Result<ListenAddress> ParseListenAddress(const std::string& text) {
  auto invalid = [&](const std::string& why) {
    return Status::Error(EINVAL, "'" + text + "' " + why + " (expected IPV4:PORT, e.g. 127.0.0.1:9100)");
  };
  if (!text.empty() && text.front() == '[') return invalid("is IPv6, which the metrics server does not support");
  size_t colon = text.rfind(':');
  if (text.empty() || colon == std::string::npos) return invalid("has no port");
  std::string host = text.substr(0, colon);
  std::string port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5) return invalid("has no valid port");
  for (char c : port_text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return invalid("has no valid port");
  }
  unsigned long port = std::stoul(port_text);
  if (port > 65535) return invalid("has a port above 65535");
  in_addr v4;
  if (host.empty() || ::inet_pton(AF_INET, host.c_str(), &v4) != 1) {
    return invalid("is not an IPv4 address (host names are not accepted)");
  }
  ListenAddress a;
  a.address = host;
  a.port = static_cast<uint16_t>(port);
  return a;
}

}  // namespace kvfs
