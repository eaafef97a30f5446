#include "adapters/key_hash.h"

#include <xxhash.h>

#include <cstdio>

namespace kvfs {

std::string KeyHash::Hex() const {
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return std::string(buf, 32);
}

KeyHash HashKey(std::string_view key) {
  XXH128_hash_t h = XXH3_128bits_withSeed(key.data(), key.size(), kHashSeed);
  return KeyHash{h.low64, h.high64};
}

uint32_t JumpConsistentHash(uint64_t hash, uint32_t buckets) {
  int64_t b = -1;
  int64_t j = 0;
  while (j < static_cast<int64_t>(buckets)) {
    b = j;
    hash = hash * 2862933555777941757ULL + 1;
    j = static_cast<int64_t>(static_cast<double>(b + 1) *
                             (static_cast<double>(1LL << 31) / static_cast<double>((hash >> 33) + 1)));
  }
  return static_cast<uint32_t>(b);
}

}  // namespace kvfs
