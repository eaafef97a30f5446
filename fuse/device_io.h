// DeviceIo: the reads and writes of /dev/fuse, done for libfuse through its
// custom-I/O hook, so that kvfs can ask the kernel for an INIT feature that
// libfuse 3.14 has no name for: FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6+),
// which lets a file opened with FOPEN_DIRECT_IO be mmap'ed MAP_SHARED.
// kvfs opens every file with FOPEN_DIRECT_IO (see docs/contract.md), so
// without it `mmap(PROT_READ, MAP_SHARED)` would fail with ENODEV.
//
// The hook passes every message through unchanged except the reply to
// FUSE_INIT, where it sets the flag when the kernel offered it.
// Thread-safety: libfuse calls read and writev from its worker threads;
// the only shared state is an atomic.
#pragma once

#include <fuse_lowlevel.h>

namespace kvfs {

// Installs the hook on a mounted session (after fuse_session_mount).
// Returns false when libfuse refused it (the session then works as before).
bool InstallDeviceIo(fuse_session* se);

}  // namespace kvfs
