// The FUSE low-level operations of kvfs: each callback translates one kernel
// request into an Engine call and the Engine's Status into a reply errno.
//
// Inode numbers are the Engine's; fi->fh carries the Engine's FileHandle.
// Cache policy (see docs/contract.md, "Kernel caching"): names and the
// attributes of committed files are cached for `entry_timeout` (not those of
// a key being written: its writers and everyone else see different sizes),
// missing names for `negative_timeout`; kvfs invalidates what the kernel
// cannot know (KernelNotifier). Directory listings are cached when
// `readdir_cache` is on. The Engine decides per open whether the kernel may
// serve a handle from its page cache and keep the pages it holds
// (OpenResult::page_cache and keep_cache -> FOPEN_DIRECT_IO and
// FOPEN_KEEP_CACHE); read-only handles skip FLUSH.
//
// Thread-safety: callbacks run on libfuse's worker threads concurrently; all
// shared state lives in the Engine. Notifications to the kernel are sent with
// no engine lock held.
#pragma once

#include <fuse_lowlevel.h>

#include "core/engine.h"
#include "fuse/handle_quota.h"
#include "fuse/listing_tracker.h"

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
  // With readdir_cache: which directories' listings the kernel may hold
  // (marked by every READDIR served); null: assume every one.
  ListingTracker* listings = nullptr;
  // Caps the open files of each user (and of all together); null: no cap.
  HandleQuota* handle_quota = nullptr;
};

// The operations table; pass a FuseContext* as userdata to fuse_session_new.
const fuse_lowlevel_ops& KvfsOperations();

}  // namespace kvfs
