// Key hashing: the one function that maps a key to a store and to a place in
// that store.
//
// A key is the path of an object relative to the mount root ("a/b/chunk-7").
// Its hash is XXH3-128 with a fixed seed; the seed and the algorithm name are
// recorded in every store's manifest, so every host and every restart agrees
// on placement. The store is chosen by jump consistent hash over the low 64
// bits, which moves only 1/n of the keys when an n-th store is added.
// All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kvfs {

// Identifies the hash scheme in manifests; bump when placement changes.
inline constexpr const char* kHashAlgorithm = "xxh3-128";
inline constexpr uint64_t kHashSeed = 0x6b7666732d763031ULL;  // "kvfs-v01"

struct KeyHash {
  uint64_t low = 0;
  uint64_t high = 0;
  // 32 lowercase hex digits, high half first; used as the object's file name.
  std::string Hex() const;
  bool operator==(const KeyHash&) const = default;
};

KeyHash HashKey(std::string_view key);

// Jump consistent hash (Lamping & Veach): a bucket in [0, buckets).
// buckets must be >= 1.
uint32_t JumpConsistentHash(uint64_t hash, uint32_t buckets);

}  // namespace kvfs
