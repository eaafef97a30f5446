#include "adapters/data_batch.h"

#include <fcntl.h>
#include <unistd.h>

#include <map>

namespace kvfs {

DataBatch::~DataBatch() {
  for (int fd : pinned_fds_) ::close(fd);
}

bool DataBatch::writes() const {
  for (const IoRequest& r : requests) {
    if (r.write) return true;
  }
  return false;
}

bool DataBatch::PinDescriptors() {
  std::map<int, int> dup_of;
  for (IoRequest& r : requests) {
    auto it = dup_of.find(r.fd);
    if (it == dup_of.end()) {
      int d = ::fcntl(r.fd, F_DUPFD_CLOEXEC, 0);
      if (d < 0) return false;
      pinned_fds_.push_back(d);
      it = dup_of.emplace(r.fd, d).first;
    }
    r.fd = it->second;
  }
  return true;
}

}  // namespace kvfs
