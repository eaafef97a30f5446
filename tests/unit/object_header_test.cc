#include "adapters/object_header.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cstring>
#include <vector>

namespace kvfs {
namespace {

ObjectHeader SampleHeader() {
  ObjectHeader h;
  h.kind = ObjectKind::kFile;
  h.generation = 0x0102030405060708ULL;
  h.size = 3 * 1024 * 1024 + 7;
  h.checksum = 0xfedcba9876543210ULL;
  h.mode = S_IFREG | 0640;
  h.uid = 1001;
  h.gid = 2002;
  h.mtime_ns = 1700000000123456789LL;
  h.ctime_ns = -42;  // signed values survive too
  h.chunk_shift = kChunkShift;
  h.key = "model/layer-3/chunk-17";
  h.slot = 0;
  return h;
}

void ExpectSameFields(const ObjectHeader& got, const ObjectHeader& want) {
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.generation, want.generation);
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.checksum, want.checksum);
  EXPECT_EQ(got.chunk_shift, want.chunk_shift);
  EXPECT_EQ(got.mode, want.mode);
  EXPECT_EQ(got.uid, want.uid);
  EXPECT_EQ(got.gid, want.gid);
  EXPECT_EQ(got.mtime_ns, want.mtime_ns);
  EXPECT_EQ(got.ctime_ns, want.ctime_ns);
  EXPECT_EQ(got.key, want.key);
  EXPECT_EQ(got.slot, want.slot);
}

// Recomputes the trailing XXH3-64 of a slot after a test edited its bytes.
void ResealSlot(uint8_t* slot) {
  uint64_t sum = XXH3_64bits(slot, kHeaderSlotSize - 8);
  std::memcpy(slot + kHeaderSlotSize - 8, &sum, 8);
}

TEST(ObjectHeaderTest, SizesAreAsDocumented) {
  EXPECT_EQ(kHeaderSize, 4096u);
  EXPECT_EQ(kHeaderSlotSize * 2, kHeaderSize);
}

TEST(ObjectHeaderTest, RoundTripsEveryFieldInEitherSlot) {
  for (int slot : {0, 1}) {
    std::vector<uint8_t> block(kHeaderSize, 0);
    ObjectHeader h = SampleHeader();
    h.slot = slot;
    ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
    Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameFields(*got, h);
  }
}

TEST(ObjectHeaderTest, RoundTripsADirectoryRecordAndEmptyKey) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ObjectHeader h;
  h.kind = ObjectKind::kDirectory;
  h.generation = 1;
  h.mode = S_IFDIR | 0755;
  h.key = "";
  ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ExpectSameFields(*got, h);
}

TEST(ObjectHeaderTest, EncodeLeavesTheOtherSlotUntouched) {
  std::vector<uint8_t> block(kHeaderSize, 0xAB);
  ObjectHeader h = SampleHeader();
  h.slot = 0;
  ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
  for (size_t i = kHeaderSlotSize; i < kHeaderSize; ++i) ASSERT_EQ(block[i], 0xAB) << "byte " << i;
  std::vector<uint8_t> block2(kHeaderSize, 0xCD);
  h.slot = 1;
  ASSERT_TRUE(EncodeHeader(h, block2.data()).ok());
  for (size_t i = 0; i < kHeaderSlotSize; ++i) ASSERT_EQ(block2[i], 0xCD) << "byte " << i;
}

TEST(ObjectHeaderTest, KeyOfMaxLengthIsAcceptedAndOneMoreIsNot) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ObjectHeader h = SampleHeader();
  h.key.clear();
  for (size_t i = 0; i < kMaxKeyLength; ++i) h.key.push_back(static_cast<char>('a' + i % 26));
  ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->key, h.key);

  h.key.push_back('z');
  std::vector<uint8_t> block2(kHeaderSize, 0);
  Status s = EncodeHeader(h, block2.data());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENAMETOOLONG);
}

TEST(ObjectHeaderTest, CorruptedOnlyValidSlotIsAnError) {
  ObjectHeader h = SampleHeader();
  h.slot = 0;
  std::vector<uint8_t> clean(kHeaderSize, 0);
  ASSERT_TRUE(EncodeHeader(h, clean.data()).ok());
  // Flip one bit anywhere in the slot: in a fixed field, in the key, in the
  // unused tail and in the checksum itself.
  for (size_t pos : {size_t{20}, size_t{30}, size_t{90}, size_t{1500}, kHeaderSlotSize - 1}) {
    std::vector<uint8_t> block = clean;
    block[pos] ^= 0x10;
    Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
    EXPECT_FALSE(got.ok()) << "corruption at byte " << pos << " went unnoticed";
    EXPECT_EQ(got.err(), EINVAL) << "byte " << pos;
  }
}

TEST(ObjectHeaderTest, AllZeroBlockAndShortBufferAreErrors) {
  std::vector<uint8_t> zero(kHeaderSize, 0);
  Result<ObjectHeader> got = DecodeHeader(zero.data(), zero.size());
  EXPECT_FALSE(got.ok());
  EXPECT_EQ(got.err(), EINVAL);

  std::vector<uint8_t> block(kHeaderSize, 0);
  ASSERT_TRUE(EncodeHeader(SampleHeader(), block.data()).ok());
  Result<ObjectHeader> shortened = DecodeHeader(block.data(), kHeaderSize - 1);
  EXPECT_FALSE(shortened.ok());
  EXPECT_EQ(shortened.err(), EINVAL);
}

TEST(ObjectHeaderTest, PicksTheHigherGeneration) {
  for (int newer_slot : {0, 1}) {
    std::vector<uint8_t> block(kHeaderSize, 0);
    ObjectHeader older = SampleHeader();
    older.generation = 5;
    older.key = "old/name";
    older.slot = 1 - newer_slot;
    ObjectHeader newer = SampleHeader();
    newer.generation = 6;
    newer.key = "new/name";
    newer.mode = S_IFREG | 0600;
    newer.slot = newer_slot;
    ASSERT_TRUE(EncodeHeader(older, block.data()).ok());
    ASSERT_TRUE(EncodeHeader(newer, block.data()).ok());
    Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->generation, 6u);
    EXPECT_EQ(got->key, "new/name");
    EXPECT_EQ(got->mode, static_cast<uint32_t>(S_IFREG | 0600));
    EXPECT_EQ(got->slot, newer_slot);
  }
}

TEST(ObjectHeaderTest, CorruptNewerSlotFallsBackToOlder) {
  for (int newer_slot : {0, 1}) {
    std::vector<uint8_t> block(kHeaderSize, 0);
    ObjectHeader older = SampleHeader();
    older.generation = 10;
    older.key = "before/rename";
    older.slot = 1 - newer_slot;
    ObjectHeader newer = SampleHeader();
    newer.generation = 11;
    newer.key = "after/rename";
    newer.slot = newer_slot;
    ASSERT_TRUE(EncodeHeader(older, block.data()).ok());
    ASSERT_TRUE(EncodeHeader(newer, block.data()).ok());
    // A torn write: the tail half of the newer slot is garbage.
    uint8_t* s = block.data() + newer_slot * kHeaderSlotSize;
    std::memset(s + 100, 0x5A, 600);
    Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->generation, 10u);
    EXPECT_EQ(got->key, "before/rename");
    EXPECT_EQ(got->slot, 1 - newer_slot);
  }
}

TEST(ObjectHeaderTest, BadMagicIsRejectedEvenWithAValidChecksum) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ASSERT_TRUE(EncodeHeader(SampleHeader(), block.data()).ok());
  block[0] ^= 0xFF;
  ResealSlot(block.data());
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  EXPECT_FALSE(got.ok());
  EXPECT_EQ(got.err(), EINVAL);
}

TEST(ObjectHeaderTest, FutureFormatVersionIsEproto) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ASSERT_TRUE(EncodeHeader(SampleHeader(), block.data()).ok());
  // The slot starts with the 8-byte magic followed by the 32-bit format version.
  uint32_t format = 0;
  std::memcpy(&format, block.data() + 8, 4);
  ASSERT_EQ(format, kObjectFormatVersion) << "slot layout changed: update this test";
  uint32_t future = kObjectFormatVersion + 1;
  std::memcpy(block.data() + 8, &future, 4);
  ResealSlot(block.data());
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  EXPECT_FALSE(got.ok());
  EXPECT_EQ(got.err(), EPROTO);
  EXPECT_TRUE(IsNewerFormat(got.status())) << got.status().ToString();
  // Any other EPROTO (a read error of a network filesystem) is not one.
  EXPECT_FALSE(IsNewerFormat(Status::Error(EPROTO, "read header objects/ab/x: Protocol error")));
  EXPECT_FALSE(IsNewerFormat(Status::Ok()));
}

// Format 1 (older builds) is read and written back as format 1; a format
// this build does not know is never written.
TEST(ObjectHeaderTest, OlderFormatRoundTripsAndUnknownFormatsAreNotWritten) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ObjectHeader h = SampleHeader();
  EXPECT_EQ(h.format, kObjectFormatVersion);
  h.format = kOldestObjectFormat;
  ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
  uint32_t format = 0;
  std::memcpy(&format, block.data() + 8, 4);
  EXPECT_EQ(format, kOldestObjectFormat);
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->format, kOldestObjectFormat);
  ExpectSameFields(*got, h);
  for (uint32_t bad : {0u, kObjectFormatVersion + 1}) {
    h.format = bad;
    EXPECT_EQ(EncodeHeader(h, block.data()).err(), EINVAL) << "format " << bad;
  }
  EXPECT_TRUE(ChecksumIsOfTable(SampleHeader()));
  ObjectHeader link = SampleHeader();
  link.kind = ObjectKind::kSpecial;
  EXPECT_FALSE(ChecksumIsOfTable(link)) << "a link's checksum is of its target";
  h = SampleHeader();
  h.format = 1;
  EXPECT_FALSE(ChecksumIsOfTable(h));
}

TEST(ObjectHeaderTest, ValidOlderSlotWinsOverFutureFormatSlot) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ObjectHeader a = SampleHeader();
  a.generation = 3;
  a.slot = 0;
  ObjectHeader b = SampleHeader();
  b.generation = 4;
  b.slot = 1;
  ASSERT_TRUE(EncodeHeader(a, block.data()).ok());
  ASSERT_TRUE(EncodeHeader(b, block.data()).ok());
  uint32_t future = kObjectFormatVersion + 7;
  std::memcpy(block.data() + kHeaderSlotSize + 8, &future, 4);
  ResealSlot(block.data() + kHeaderSlotSize);
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->generation, 3u);
  EXPECT_EQ(got->slot, 0);
}

TEST(ObjectHeaderTest, ObjectFootprint) {
  // [4 KiB header][data rounded up to 4 KiB][one 8-byte checksum per 256 KiB
  // chunk, rounded up to 4 KiB].
  EXPECT_EQ(kChunkSize, 256u * 1024);
  EXPECT_EQ(ObjectFootprint(0), 4096u);
  EXPECT_EQ(ObjectFootprint(1), 4096u + 4096u + 4096u);
  EXPECT_EQ(ObjectFootprint(4095), 4096u + 4096u + 4096u);
  EXPECT_EQ(ObjectFootprint(4096), 4096u + 4096u + 4096u);
  EXPECT_EQ(ObjectFootprint(4097), 4096u + 8192u + 4096u);
  EXPECT_EQ(ObjectFootprint(kChunkSize), 4096u + kChunkSize + 4096u);
  // 512 chunks = 4096 bytes of table: still one page; 513 need two.
  EXPECT_EQ(ObjectFootprint(512 * kChunkSize), 4096u + 512 * kChunkSize + 4096u);
  EXPECT_EQ(ObjectFootprint(512 * kChunkSize + 1), 4096u + 512 * kChunkSize + 4096u + 8192u);
  EXPECT_EQ(ObjectFootprint(3 * 1024 * 1024 + 7), 4096u + 3 * 1024 * 1024 + 4096u + 4096u);
}

TEST(ObjectHeaderTest, ChecksumTableGeometry) {
  EXPECT_EQ(ChunkCount(0), 0u);
  EXPECT_EQ(ChunkCount(1), 1u);
  EXPECT_EQ(ChunkCount(kChunkSize), 1u);
  EXPECT_EQ(ChunkCount(kChunkSize + 1), 2u);
  EXPECT_EQ(ChecksumTableOffset(0), kHeaderSize);
  EXPECT_EQ(ChecksumTableOffset(1), kHeaderSize + 4096u);
  EXPECT_EQ(ChecksumTableOffset(10000), kHeaderSize + 12288u);
  EXPECT_EQ(ChecksumTableBytes(0), 0u);
  EXPECT_EQ(ChecksumTableBytes(1), 4096u);
  EXPECT_EQ(ChecksumTableBytes(600 * kChunkSize), 8192u);
  for (uint64_t n : {0ULL, 1ULL, 4096ULL, 5000000ULL}) {
    EXPECT_EQ(ObjectFootprint(n), ChecksumTableOffset(n) + ChecksumTableBytes(n)) << n;
  }
}

}  // namespace
}  // namespace kvfs

namespace kvfs {
namespace {

TEST(ObjectHeaderTest, SpecialRecordsRoundTripTheirTypeAndDeviceNumber) {
  for (uint32_t type : {S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK}) {
    std::vector<uint8_t> block(kHeaderSize, 0);
    ObjectHeader h = SampleHeader();
    h.kind = ObjectKind::kSpecial;
    h.size = 0;
    h.checksum = 0;
    h.mode = type | 0640;
    h.rdev = type == S_IFCHR || type == S_IFBLK ? 0x00100203u : 0;
    ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
    Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
    ASSERT_TRUE(got.ok()) << got.status().message();
    ExpectSameFields(*got, h);
    EXPECT_EQ(got->rdev, h.rdev);
  }
}

TEST(ObjectHeaderTest, SymbolicLinkRecordHoldsItsTargetLengthAsData) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ObjectHeader h = SampleHeader();
  h.kind = ObjectKind::kSpecial;
  h.mode = S_IFLNK | 0777;
  h.size = kMaxLinkTargetLength;
  ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->size, kMaxLinkTargetLength);
  // A link without a target, or a longer one than a path, is not a record.
  for (uint64_t bad : {uint64_t{0}, uint64_t{kMaxLinkTargetLength + 1}}) {
    h.size = bad;
    ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
    EXPECT_FALSE(DecodeHeader(block.data(), block.size()).ok()) << bad;
  }
}

TEST(ObjectHeaderTest, SpecialRecordOfARegularOrUnknownTypeIsRejected) {
  for (uint32_t mode : {uint32_t{S_IFREG | 0644}, uint32_t{S_IFDIR | 0755}, uint32_t{0644}}) {
    std::vector<uint8_t> block(kHeaderSize, 0);
    ObjectHeader h = SampleHeader();
    h.kind = ObjectKind::kSpecial;
    h.size = 0;
    h.mode = mode;
    ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
    EXPECT_FALSE(DecodeHeader(block.data(), block.size()).ok()) << mode;
  }
}

// Headers written before rdev existed hold zeros after the key area: they
// decode as before, with rdev 0.
TEST(ObjectHeaderTest, HeaderWithoutDeviceNumberDecodesWithZero) {
  std::vector<uint8_t> block(kHeaderSize, 0);
  ObjectHeader h = SampleHeader();
  h.rdev = 0x1234;
  ASSERT_TRUE(EncodeHeader(h, block.data()).ok());
  std::memset(block.data() + kHeaderSlotSize - 16, 0, 8);  // the extension bytes, as an old encoder left them
  ResealSlot(block.data());
  Result<ObjectHeader> got = DecodeHeader(block.data(), block.size());
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->rdev, 0u);
  ExpectSameFields(*got, h);
}

}  // namespace
}  // namespace kvfs
