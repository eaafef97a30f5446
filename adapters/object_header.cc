#include "adapters/object_header.h"

#include <sys/stat.h>
#include <xxhash.h>

#include <cstring>
#include <string_view>

namespace kvfs {
namespace {

constexpr char kMagic[8] = {'K', 'V', 'F', 'S', 'O', 'B', 'J', '1'};
// How DecodeHeader's EPROTO begins (IsNewerFormat).
constexpr std::string_view kNewerFormat = "newer object format ";
// Fixed fields: magic 8, format 4, kind 4, generation 8, size 8, checksum 8,
// mode 4, uid 4, gid 4, chunk_shift 4, mtime 8, ctime 8, key_len 4 = 80 bytes.
constexpr size_t kFixedBytes = 80;
constexpr size_t kSlotChecksumOffset = kHeaderSlotSize - 8;
// Fields added after format 1 was fixed live after the key area, in bytes
// that older encoders left zero (so an old header decodes with them 0):
// rdev 4 at 2032, then 4 reserved bytes.
constexpr size_t kRdevOffset = kSlotChecksumOffset - 8;
static_assert(kFixedBytes + kMaxKeyLength <= kRdevOffset);

void Put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void Put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t Get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t Get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

struct SlotResult {
  bool valid = false;
  bool too_new = false;
  std::string reason;
  ObjectHeader header;
};

SlotResult DecodeSlot(const uint8_t* s, int slot) {
  SlotResult r;
  if (std::memcmp(s, kMagic, sizeof(kMagic)) != 0) { r.reason = "bad magic"; return r; }
  if (XXH3_64bits(s, kSlotChecksumOffset) != Get64(s + kSlotChecksumOffset)) {
    r.reason = "header checksum mismatch";
    return r;
  }
  uint32_t format = Get32(s + 8);
  if (format < kOldestObjectFormat || format > kObjectFormatVersion) {
    r.too_new = format > kObjectFormatVersion;
    r.reason = (r.too_new ? std::string(kNewerFormat) : "unknown object format ") + std::to_string(format);
    return r;
  }
  ObjectHeader& h = r.header;
  h.format = format;
  uint32_t kind = Get32(s + 12);
  if (kind != static_cast<uint32_t>(ObjectKind::kFile) &&
      kind != static_cast<uint32_t>(ObjectKind::kDirectory) && kind != static_cast<uint32_t>(ObjectKind::kSpecial)) {
    r.reason = "unknown object kind";
    return r;
  }
  h.kind = static_cast<ObjectKind>(kind);
  h.generation = Get64(s + 16);
  h.size = Get64(s + 24);
  h.checksum = Get64(s + 32);
  h.mode = Get32(s + 40);
  h.uid = Get32(s + 44);
  h.gid = Get32(s + 48);
  h.chunk_shift = Get32(s + 52);
  if (h.chunk_shift != kChunkShift) { r.reason = "unsupported chunk size"; return r; }
  h.mtime_ns = static_cast<int64_t>(Get64(s + 56));
  h.ctime_ns = static_cast<int64_t>(Get64(s + 64));
  uint32_t key_len = Get32(s + 72);
  if (key_len > kMaxKeyLength) { r.reason = "key length out of range"; return r; }
  h.key.assign(reinterpret_cast<const char*>(s + kFixedBytes), key_len);
  h.rdev = Get32(s + kRdevOffset);
  if (h.kind == ObjectKind::kSpecial) {
    uint32_t type = h.mode & S_IFMT;
    if (type != S_IFLNK && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK) {
      r.reason = "special record of an unknown file type";
      return r;
    }
    if (type != S_IFLNK && h.size != 0) { r.reason = "special record with data"; return r; }
    if (type == S_IFLNK && (h.size == 0 || h.size > kMaxLinkTargetLength)) {
      r.reason = "symbolic link target length out of range";
      return r;
    }
  }
  h.slot = slot;
  r.valid = true;
  return r;
}

}  // namespace

Status EncodeHeader(const ObjectHeader& h, uint8_t* block) {
  if (h.key.size() > kMaxKeyLength) return Status::Error(ENAMETOOLONG, "key too long for header");
  if (h.slot != 0 && h.slot != 1) return Status::Error(EINVAL, "bad header slot");
  if (h.format < kOldestObjectFormat || h.format > kObjectFormatVersion) {
    return Status::Error(EINVAL, "unknown object format " + std::to_string(h.format));
  }
  uint8_t* s = block + h.slot * kHeaderSlotSize;
  std::memset(s, 0, kHeaderSlotSize);
  std::memcpy(s, kMagic, sizeof(kMagic));
  Put32(s + 8, h.format);
  Put32(s + 12, static_cast<uint32_t>(h.kind));
  Put64(s + 16, h.generation);
  Put64(s + 24, h.size);
  Put64(s + 32, h.checksum);
  Put32(s + 40, h.mode);
  Put32(s + 44, h.uid);
  Put32(s + 48, h.gid);
  Put32(s + 52, h.chunk_shift);
  Put64(s + 56, static_cast<uint64_t>(h.mtime_ns));
  Put64(s + 64, static_cast<uint64_t>(h.ctime_ns));
  Put32(s + 72, static_cast<uint32_t>(h.key.size()));
  std::memcpy(s + kFixedBytes, h.key.data(), h.key.size());
  Put32(s + kRdevOffset, h.rdev);
  Put64(s + kSlotChecksumOffset, XXH3_64bits(s, kSlotChecksumOffset));
  return Status::Ok();
}

Result<ObjectHeader> DecodeHeader(const uint8_t* block, size_t len) {
  if (len < kHeaderSize) return Status::Error(EINVAL, "truncated header");
  SlotResult a = DecodeSlot(block, 0);
  SlotResult b = DecodeSlot(block + kHeaderSlotSize, 1);
  if (a.valid && b.valid) return a.header.generation >= b.header.generation ? a.header : b.header;
  if (a.valid) return a.header;
  if (b.valid) return b.header;
  if (a.too_new || b.too_new) return Status::Error(EPROTO, a.too_new ? a.reason : b.reason);
  return Status::Error(EINVAL, a.reason);
}

bool IsNewerFormat(const Status& status) {
  return status.err() == EPROTO && status.message().rfind(kNewerFormat, 0) == 0;
}

uint64_t DataChecksumOfTable(const uint8_t* table, uint64_t chunks) {
  return XXH3_64bits(table, static_cast<size_t>(chunks * 8));
}

std::string HeaderProblem(const ObjectHeader& h) {
  if (h.kind == ObjectKind::kFile && h.size > kMaxObjectDataBytes) {
    return "header says " + std::to_string(h.size) + " data bytes, more than any object can hold";
  }
  const std::string& key = h.key;
  if (key.empty()) return h.kind == ObjectKind::kDirectory ? "" : "empty key on a file";
  if (key.size() > kMaxKeyLength) return "key longer than " + std::to_string(kMaxKeyLength) + " bytes";
  if (key.find('\0') != std::string::npos) return "key holds a NUL byte";
  if (key.front() == '/') return "key is an absolute path";
  size_t start = 0;
  while (true) {
    size_t slash = key.find('/', start);
    std::string_view part(key.data() + start, (slash == std::string::npos ? key.size() : slash) - start);
    if (part.empty()) return "key has an empty component";
    if (part == "." || part == "..") return "key has a '" + std::string(part) + "' component";
    if (part.size() > kMaxComponentLength) {
      return "key has a component longer than " + std::to_string(kMaxComponentLength) + " bytes";
    }
    if (slash == std::string::npos) return "";
    start = slash + 1;
  }
}

}  // namespace kvfs
