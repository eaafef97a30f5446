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

}  // namespace kvfs
