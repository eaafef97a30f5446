// DeviceIo: the reads and writes of /dev/fuse, done for libfuse through its
// custom-I/O hook, so that kvfs can use protocol features libfuse 3.14 has
// no name for:
//  - FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6+), which lets a file opened with
//    FOPEN_DIRECT_IO be mmap'ed MAP_SHARED. kvfs opens most files with
//    FOPEN_DIRECT_IO (see docs/contract.md), so without it
//    `mmap(PROT_READ, MAP_SHARED)` would fail with ENODEV;
//  - FUSE_HANDLE_KILLPRIV_V2 (Linux 5.11+): the kernel tells kvfs when a
//    write, truncate, chown or O_TRUNC open must clear the set-user-ID and
//    set-group-ID bits (the caller lacks CAP_FSETID, or it is a chown), in
//    request fields libfuse does not pass on: the hook reads them and
//    RequestClearsSetId() answers for the request being handled.
//
// The hook passes every message through unchanged except the reply to
// FUSE_INIT, where it sets the flags the kernel offered.
// Thread-safety: libfuse calls read and writev from its worker threads, and
// a worker handles the request it read before it reads the next one; the
// per-request flag is thread-local, the rest atomics.
#pragma once

#include <fuse_lowlevel.h>

namespace kvfs {

// Installs the hook on a mounted session (after fuse_session_mount).
// Returns false when libfuse refused it (the session then works as before).
bool InstallDeviceIo(fuse_session* se);

// Whether the request the calling worker thread is handling (the last one
// it read from /dev/fuse) carries FUSE_WRITE_KILL_SUIDGID (WRITE),
// FATTR_KILL_SUIDGID (SETATTR) or FUSE_OPEN_KILL_SUIDGID (OPEN, CREATE).
// Always false without the hook, or when the kernel lacks KILLPRIV_V2.
bool RequestClearsSetId();

}  // namespace kvfs
