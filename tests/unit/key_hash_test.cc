#include "adapters/key_hash.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <array>
#include <cctype>
#include <set>
#include <string>
#include <vector>

namespace kvfs {
namespace {

std::vector<std::string> ManyKeys(size_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) keys.push_back("model-a/layer-" + std::to_string(i % 61) + "/chunk-" + std::to_string(i));
  return keys;
}

TEST(KeyHashTest, DeterministicForSameKey) {
  KeyHash a = HashKey("a/b/chunk-7");
  KeyHash b = HashKey(std::string("a/b/") + "chunk-7");
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.Hex(), b.Hex());
  EXPECT_FALSE(a.low == 0 && a.high == 0);
}

TEST(KeyHashTest, DifferentKeysGiveDifferentHashes) {
  std::set<std::pair<uint64_t, uint64_t>> seen;
  std::vector<std::string> keys = ManyKeys(10000);
  keys.push_back("");
  keys.push_back("a");
  keys.push_back("A");
  keys.push_back("a/");
  for (const std::string& k : keys) {
    KeyHash h = HashKey(k);
    EXPECT_TRUE(seen.insert({h.low, h.high}).second) << "collision for key " << k;
  }
  EXPECT_NE(HashKey("x/y"), HashKey("x/z"));
  EXPECT_NE(HashKey("chunk-1"), HashKey("chunk-10"));
}

TEST(KeyHashTest, IsXxh3_128WithTheManifestSeed) {
  // Placement must be identical on every host and after every restart: the
  // manifest records "xxh3-128" and kHashSeed, so HashKey must be exactly that.
  EXPECT_STREQ(kHashAlgorithm, "xxh3-128");
  for (const std::string& k : {std::string("a/b/chunk-7"), std::string(""), std::string(300, 'k')}) {
    XXH128_hash_t want = XXH3_128bits_withSeed(k.data(), k.size(), kHashSeed);
    KeyHash got = HashKey(k);
    EXPECT_EQ(got.low, want.low64) << k;
    EXPECT_EQ(got.high, want.high64) << k;
  }
}

TEST(KeyHashTest, HexIs32LowercaseHexDigitsHighHalfFirst) {
  for (const std::string& k : ManyKeys(200)) {
    std::string hex = HashKey(k).Hex();
    ASSERT_EQ(hex.size(), 32u) << k;
    for (char c : hex) {
      EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << "bad char '" << c << "' in " << hex;
    }
  }
  KeyHash h{0x1ULL, 0xABCDEF0123456789ULL};
  EXPECT_EQ(h.Hex(), "abcdef01234567890000000000000001");
  KeyHash zero{};
  EXPECT_EQ(zero.Hex(), std::string(32, '0'));
  KeyHash ones{~0ULL, ~0ULL};
  EXPECT_EQ(ones.Hex(), std::string(32, 'f'));
}

TEST(JumpConsistentHashTest, SingleBucketIsAlwaysZero) {
  for (const std::string& k : ManyKeys(1000)) EXPECT_EQ(JumpConsistentHash(HashKey(k).low, 1), 0u);
  EXPECT_EQ(JumpConsistentHash(0, 1), 0u);
  EXPECT_EQ(JumpConsistentHash(~0ULL, 1), 0u);
}

TEST(JumpConsistentHashTest, InRangeAndStable) {
  std::vector<std::string> keys = ManyKeys(10000);
  for (uint32_t buckets : {2u, 3u, 4u, 7u, 16u, 1000u}) {
    for (const std::string& k : keys) {
      uint64_t h = HashKey(k).low;
      uint32_t b = JumpConsistentHash(h, buckets);
      ASSERT_LT(b, buckets);
      ASSERT_EQ(b, JumpConsistentHash(h, buckets)) << "unstable for " << k;
    }
  }
  for (uint64_t h : {0ULL, 1ULL, ~0ULL, 0x8000000000000000ULL}) {
    EXPECT_LT(JumpConsistentHash(h, 5), 5u);
  }
}

TEST(JumpConsistentHashTest, AddingABucketOnlyMovesKeysToTheNewBucket) {
  std::vector<std::string> keys = ManyKeys(10000);
  for (uint32_t n = 1; n <= 12; ++n) {
    size_t moved = 0;
    for (const std::string& k : keys) {
      uint64_t h = HashKey(k).low;
      uint32_t before = JumpConsistentHash(h, n);
      uint32_t after = JumpConsistentHash(h, n + 1);
      if (before != after) {
        ++moved;
        ASSERT_EQ(after, n) << "key " << k << " moved from " << before << " to " << after << " going from " << n
                            << " to " << n + 1 << " buckets";
      }
    }
    // About 1/(n+1) of the keys move: never none, never most of them.
    double expected = static_cast<double>(keys.size()) / (n + 1);
    EXPECT_GT(static_cast<double>(moved), expected * 0.8) << "n=" << n;
    EXPECT_LT(static_cast<double>(moved), expected * 1.2) << "n=" << n;
  }
}

TEST(JumpConsistentHashTest, RoughlyUniformOverFourBuckets) {
  std::array<size_t, 4> counts{};
  std::vector<std::string> keys = ManyKeys(10000);
  for (const std::string& k : keys) counts[JumpConsistentHash(HashKey(k).low, 4)]++;
  for (size_t b = 0; b < 4; ++b) {
    EXPECT_GT(counts[b], 2250u) << "bucket " << b;
    EXPECT_LT(counts[b], 2750u) << "bucket " << b;
  }
}

}  // namespace
}  // namespace kvfs
