// ObjectHeader: the self-describing 4 KiB block at the start of every object
// file on a store.
//
// An object file is
//   [4 KiB header][data, padded to 4 KiB][chunk checksum table, padded to 4 KiB]
// The data starts at offset 4096 so O_DIRECT reads of it need no bounce
// buffer. The table holds one XXH3-64 per 256 KiB chunk of data (little
// endian), so a read can verify exactly the chunks it touches. The header's
// checksum covers all of the data: in format 2 (what this build writes), a
// file's is XXH3-64 of its chunk checksum table (DataChecksumOfTable), so a
// version that changes a few chunks of a large object needs only those
// chunks hashed again; a symbolic link's is XXH3-64 of its target. In format
// 1 (written by older builds, still read and rewritten as format 1) it is
// XXH3-64 of all data bytes. Because every header carries the key,
// size, checksums and metadata, a store can be rescanned into the index with
// no separate database.
//
// The 4 KiB block holds two 2 KiB slots. A header update (rename, chmod,
// utimens) writes the whole block with the new header in the slot that is not
// current and the old one left as it was, so a torn write still leaves one
// valid slot: Decode picks the valid slot with the highest generation. Each
// slot ends with an XXH3-64 checksum of its bytes.
//
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "adapters/status.h"

namespace kvfs {

inline constexpr size_t kHeaderSize = 4096;
inline constexpr size_t kHeaderSlotSize = 2048;
// The format this build writes, and the oldest it reads (see the top).
inline constexpr uint32_t kObjectFormatVersion = 2;
inline constexpr uint32_t kOldestObjectFormat = 1;
// Longest key (path relative to the mount root) a header can hold.
inline constexpr size_t kMaxKeyLength = 1536;

// kSpecial: a namespace-only record of a symbolic link, FIFO, socket or
// device node; its type is in `mode` (S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR,
// S_IFBLK). A symbolic link's target is the record's data (`size` bytes,
// checksummed like a file's); the others have no data. Builds older than
// this kind skip such records at mount with a warning ("unknown object
// kind") and leave them on the store.
enum class ObjectKind : uint32_t { kFile = 1, kDirectory = 2, kSpecial = 3 };

// Longest symbolic link target, in bytes (PATH_MAX without its NUL).
inline constexpr size_t kMaxLinkTargetLength = 4095;

struct ObjectHeader {
  // Which format the header was decoded from / is written in; it says how
  // `checksum` was computed (see the top). A header rewritten for an
  // existing object keeps that object's format.
  uint32_t format = kObjectFormatVersion;
  ObjectKind kind = ObjectKind::kFile;
  uint64_t generation = 0;    // version number; higher wins
  uint64_t size = 0;          // data bytes (without header or padding)
  uint64_t checksum = 0;      // of the data (see the top)
  uint32_t chunk_shift = 18;  // log2 of the checksum chunk size
  uint32_t mode = 0;          // full st_mode including type bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  // Device number of a kSpecial character or block device record, in the
  // kernel's 32-bit encoding (as FUSE passes it); 0 otherwise. Stored after
  // the key area, where older headers hold zeros.
  uint32_t rdev = 0;
  std::string key;
  // Which slot this header was decoded from / should be written to (0 or 1).
  int slot = 0;
};

// Writes header into slot header.slot of block (kHeaderSize bytes), leaving
// the other slot untouched. Fails with ENAMETOOLONG if the key is too long,
// EINVAL for a format this build does not read.
Status EncodeHeader(const ObjectHeader& header, uint8_t* block);

// Decodes the current header from a kHeaderSize block: the valid slot with
// the highest generation. EINVAL (with a reason) when neither slot is valid,
// EPROTO when the format version is newer than this build understands.
// Formats kOldestObjectFormat to kObjectFormatVersion are read.
Result<ObjectHeader> DecodeHeader(const uint8_t* block, size_t len);
// Whether status is DecodeHeader's answer to a header of a newer format (not
// some other EPROTO, such as a read error from a network filesystem).
bool IsNewerFormat(const Status& status);

// Longest name of one key component, as the engine enforces it.
inline constexpr size_t kMaxComponentLength = 255;
// No object holds more data bytes (larger sizes would overflow the
// footprint sums).
inline constexpr uint64_t kMaxObjectDataBytes = uint64_t{1} << 56;

// Empty when a decoded header is one kvfs could have written, else why not:
// its key (empty on a file, over kMaxKeyLength, a NUL, an absolute path, an
// empty, "." or ".." component, a component over kMaxComponentLength) or
// its size (over kMaxObjectDataBytes). A store is not trusted to hold only
// what kvfs wrote: the mount and fsck refuse such headers. (A key below a
// key that is a file is refused too, but that needs the other keys.)
std::string HeaderProblem(const ObjectHeader& header);

inline constexpr uint32_t kChunkShift = 18;
inline constexpr uint64_t kChunkSize = uint64_t{1} << kChunkShift;  // 256 KiB

inline uint64_t RoundUp4K(uint64_t n) { return (n + 4095) / 4096 * 4096; }
// Number of checksummed chunks of an object with data_size bytes.
inline uint64_t ChunkCount(uint64_t data_size) { return (data_size + kChunkSize - 1) / kChunkSize; }
// Where the chunk checksum table starts in the object file, and its padded size.
inline uint64_t ChecksumTableOffset(uint64_t data_size) { return kHeaderSize + RoundUp4K(data_size); }
inline uint64_t ChecksumTableBytes(uint64_t data_size) { return RoundUp4K(ChunkCount(data_size) * 8); }

// The format-2 checksum of a file's data: XXH3-64 of its chunk checksum
// table, `chunks` entries of 8 bytes (little endian) as the table holds them.
uint64_t DataChecksumOfTable(const uint8_t* table, uint64_t chunks);
// Whether header.checksum is DataChecksumOfTable of the object's table
// (format 2 and later, files); otherwise it is XXH3-64 of the data bytes.
inline bool ChecksumIsOfTable(const ObjectHeader& header) {
  return header.format >= 2 && header.kind == ObjectKind::kFile;
}

// Bytes an object with `data_size` data bytes occupies on a store: header,
// data and checksum table, each rounded up to 4 KiB.
inline uint64_t ObjectFootprint(uint64_t data_size) {
  return kHeaderSize + RoundUp4K(data_size) + ChecksumTableBytes(data_size);
}

}  // namespace kvfs
