#include "adapters/status.h"

#include <cstring>

namespace kvfs {

Status Status::FromErrno(const std::string& what) { return FromErrno(errno, what); }

Status Status::FromErrno(int err, const std::string& what) {
  if (err == 0) err = EIO;
  return Status(err, what + ": " + std::strerror(err));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_.empty() ? std::string(std::strerror(err_)) : message_;
}

std::string ErrnoName(int err) {
  const char* name = ::strerrorname_np(err);
  return name ? std::string(name) : std::to_string(err);
}

}  // namespace kvfs
