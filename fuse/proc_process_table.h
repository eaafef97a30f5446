// ProcProcessTable: the ProcessTable (core/process_table.h) of a mount,
// answered from /proc.
//  - SameProcess(a, b): /proc/<a>/task/<b> exists (b is a thread of a's
//    thread group) - one stat.
//  - HoldsWritableDescriptor(thread, ino): walks /proc/<thread>/fd; a
//    descriptor counts when its link names a path below the mountpoint (as
//    the daemon sees it) and its /proc/<thread>/fdinfo says inode `ino` and
//    an access mode other than read-only - one readlink per descriptor,
//    one small read per descriptor on this mount. A process holding more
//    than max_descriptors descriptors is not walked (about a microsecond
//    per descriptor, on every close of a handle nothing was written
//    through: 10 ms for a process holding 10,000): the answer is "no".
// Reading another user's /proc/<pid>/fd needs the daemon to be root (or
// allowed to ptrace the process); when it is not, or the thread has
// exited, the answer is "no". A process in another mount namespace whose
// paths the daemon cannot name is also answered "no".
//
// Thread-safety: stateless after construction; safe from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "core/process_table.h"

namespace kvfs {

class ProcProcessTable : public ProcessTable {
 public:
  // mountpoint: the absolute, resolved path the file system is mounted on.
  // proc_root: where procfs is mounted (tests may point it elsewhere).
  // max_descriptors: the largest descriptor table walked (see above).
  static constexpr uint64_t kDefaultMaxDescriptors = 256;
  explicit ProcProcessTable(std::string mountpoint, std::string proc_root = "/proc",
                            uint64_t max_descriptors = kDefaultMaxDescriptors);

  bool SameProcess(uint32_t a, uint32_t b) override;
  bool HoldsWritableDescriptor(uint32_t thread, uint64_t ino) override;

 private:
  std::string mount_prefix_;  // the mountpoint with a trailing '/'
  std::string proc_root_;
  uint64_t max_descriptors_;
};

}  // namespace kvfs
