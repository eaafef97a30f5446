// The FUSE low-level operations of kvfs: each callback translates one kernel
// request into an Engine call and the Engine's Status into a reply errno.
//
// Inode numbers are the Engine's; fi->fh carries the Engine's FileHandle.
// Cache policy (see docs/contract.md): file attributes are never cached by
// the kernel (attr timeout 0), so stat always shows the committed version;
// positive entries are cached for `entry_timeout`, negative ones for
// `negative_timeout`, and a key's first commit invalidates any cached
// negative entry before close() returns. Readers get the page cache only
// when no other version of the file is open (Engine::Open decides); writers
// always bypass it.
//
// Thread-safety: callbacks run on libfuse's worker threads concurrently; all
// shared state lives in the Engine. Notifications to the kernel are sent with
// no engine lock held.
#pragma once

#include <fuse_lowlevel.h>

#include "core/engine.h"

namespace kvfs {

struct FuseContext {
  Engine* engine = nullptr;
  fuse_session* session = nullptr;  // set once mounted, for notifications
  double entry_timeout = 1.0;
  double negative_timeout = 1.0;
  double dir_attr_timeout = 1.0;
  unsigned max_write = 1 << 20;
  unsigned max_background = 12;
  // Let the kernel cache directory listings (FOPEN_CACHE_DIR + KEEP_CACHE on
  // every opendir). Correct only with a KernelNotifier attached: it drops a
  // directory's cached listing whenever a name appears or goes without the
  // kernel's doing (a commit, an eviction, another host's change).
  bool readdir_cache = true;
};

// The operations table; pass a FuseContext* as userdata to fuse_session_new.
const fuse_lowlevel_ops& KvfsOperations();

}  // namespace kvfs
