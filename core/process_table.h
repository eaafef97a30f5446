// ProcessTable: what only the operating system knows about the processes
// behind requests. A file system request names the calling *thread*; two
// POSIX promises need its *process*:
//  - a process sees the file it created by path before the file is
//    committed (every other process still gets ENOENT), and
//  - closing one of several descriptors a process holds on one open file
//    (a shell's `>` redirection: open, dup2, close) does not publish the
//    version while the process can still write through another.
// The engine asks only on those rare paths (a lookup of a key still being
// written, a close of a handle nothing was written through), because each
// answer costs system calls. Without a ProcessTable the engine behaves as
// if every answer were "no" (a pending key is invisible to everyone, every
// such close commits).
//
// Thread ids are the kernel's (gettid(), FUSE's request pid), in the
// daemon's pid namespace. Answers are best effort: a thread that has exited
// or cannot be inspected gives "no".
//
// Thread-safety: implementations must be safe to call from any thread; the
// engine never calls them while holding one of its locks.
#pragma once

#include <cstdint>

namespace kvfs {

class ProcessTable {
 public:
  virtual ~ProcessTable() = default;
  // Whether threads a and b belong to one process (a == b: true).
  virtual bool SameProcess(uint32_t a, uint32_t b) = 0;
  // Whether thread's process holds a descriptor open for writing on the
  // mount's inode `ino` (the descriptor being closed no longer counts: the
  // kernel has taken it out of the table before it asks).
  virtual bool HoldsWritableDescriptor(uint32_t thread, uint64_t ino) = 0;
};

}  // namespace kvfs
