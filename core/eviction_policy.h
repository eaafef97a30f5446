// EvictionPolicy: decides which committed object a store gives up when it
// needs room. Objects are identified by an opaque id (the engine uses inode
// numbers) and carry their footprint in bytes.
//
// Policies:
//  - "lru":    least recently used first. A scan (many objects touched once)
//              pushes everything older out.
//  - "s3fifo": S3-FIFO (Yang et al., SOSP'23): a small FIFO (10% of the
//              bytes) for new objects, a main FIFO for objects touched again
//              while in the small one, and a ghost FIFO of recently evicted
//              ids; a one-hit scan leaves the main FIFO (the hot set) alone.
//  - "sieve":  SIEVE (Zhang et al., NSDI'24): one FIFO with a visited bit and
//              a moving hand.
//
// Evict() takes a predicate that says whether an id may go now (not leased,
// not being committed); pinned objects are passed over and kept. Evict looks
// at a bounded number of entries per call, so an all-pinned cache answers
// "nothing" quickly instead of spinning.
//
// Thread-safety: none; the engine calls a policy under its index mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "adapters/status.h"

namespace kvfs {

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual const char* name() const = 0;
  // A new object (or a new version of one: Remove first).
  virtual void Insert(uint64_t id, uint64_t bytes) = 0;
  // The object was opened or read.
  virtual void Access(uint64_t id) = 0;
  // The object is gone (unlinked, replaced); unknown ids are ignored.
  virtual void Remove(uint64_t id) = 0;
  // Picks a victim for which can_evict(id) holds, forgets it and returns it;
  // nullopt when none was found within the scan bound.
  virtual std::optional<uint64_t> Evict(const std::function<bool(uint64_t)>& can_evict) = 0;
  virtual size_t size() const = 0;
};

// "lru", "s3fifo" or "sieve"; EINVAL for anything else.
Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(const std::string& name);
std::vector<std::string> EvictionPolicyNames();

}  // namespace kvfs
