// The user.kvfs.* extended attributes: kvfs's debugging surface for
// `getfattr`. Every inode answers user.kvfs.key, key_hash, open_handles and
// state; one with a committed version also store, location, version, size,
// footprint, leases and (files) checksum; the root also stats (JSON),
// stats.text, pid, capacity, used, pinned and evictions.
//
// One table backs both calls, so ListDebugXattrs names exactly the
// attributes that GetDebugXattr answers for the same inode at that moment.
// Errors: ENOENT for an inode the engine does not know, ENODATA for a
// user.* name the inode does not have, EOPNOTSUPP for any name outside the
// user. namespace (kvfs keeps none there). Thread-safe (reads the engine through its
// thread-safe Inspect and Stats); includes no FUSE header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.h"

namespace kvfs {

Result<std::string> GetDebugXattr(const Engine& engine, uint64_t ino, const std::string& name);
Result<std::vector<std::string>> ListDebugXattrs(const Engine& engine, uint64_t ino);

}  // namespace kvfs
