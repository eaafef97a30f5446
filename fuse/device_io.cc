#include "fuse/device_io.h"

#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

namespace kvfs {
namespace {

// From the kernel's FUSE protocol (include/uapi/linux/fuse.h), which the
// Debian 12 headers predate.
constexpr uint32_t kOpInit = 26;
constexpr uint32_t kOpSetattr = 4;
constexpr uint32_t kOpOpen = 14;
constexpr uint32_t kOpWrite = 16;
constexpr uint32_t kOpCreate = 35;
constexpr uint32_t kInitExt = 1u << 30;                     // FUSE_INIT_EXT
constexpr uint32_t kHandleKillprivV2 = 1u << 28;            // FUSE_HANDLE_KILLPRIV_V2
constexpr uint32_t kDirectIoAllowMmapFlags2 = 1u << (36 - 32);  // FUSE_DIRECT_IO_ALLOW_MMAP
// Where each request's clear-the-set-ID-bits flag sits in its body, and the bit.
constexpr size_t kWriteFlagsOffset = 20;      // fuse_write_in.write_flags
constexpr uint32_t kWriteKillSuidgid = 1u << 2;
constexpr size_t kSetattrValidOffset = 0;     // fuse_setattr_in.valid
constexpr uint32_t kFattrKillSuidgid = 1u << 11;
constexpr size_t kOpenOpenFlagsOffset = 4;    // fuse_open_in.open_flags
constexpr size_t kCreateOpenFlagsOffset = 12; // fuse_create_in.open_flags
constexpr uint32_t kOpenKillSuidgid = 1u << 0;
constexpr size_t kInHeaderBytes = 40;
constexpr size_t kOutHeaderBytes = 16;
constexpr size_t kInitInFlagsOffset = 12;
constexpr size_t kInitInFlags2Offset = 16;
constexpr size_t kInitOutFlagsOffset = 12;
constexpr size_t kInitOutFlags2Offset = 32;

std::atomic<uint64_t> init_unique{0};
std::atomic<bool> kernel_offers_mmap{false};
std::atomic<bool> kernel_offers_killpriv{false};
thread_local bool request_clears_set_id = false;

// The 32-bit field at offset in a request's body, or 0 when it is shorter.
uint32_t BodyField(const uint8_t* p, ssize_t n, size_t offset) {
  if (n < static_cast<ssize_t>(kInHeaderBytes + offset + 4)) return 0;
  uint32_t v;
  std::memcpy(&v, p + kInHeaderBytes + offset, 4);
  return v;
}

ssize_t DeviceRead(int fd, void* buf, size_t len, void*) {
  ssize_t n = ::read(fd, buf, len);
  request_clears_set_id = false;
  if (n >= static_cast<ssize_t>(kInHeaderBytes)) {
    const auto* p = static_cast<const uint8_t*>(buf);
    uint32_t opcode;
    std::memcpy(&opcode, p + 4, 4);
    switch (opcode) {
      case kOpWrite: request_clears_set_id = BodyField(p, n, kWriteFlagsOffset) & kWriteKillSuidgid; break;
      case kOpSetattr: request_clears_set_id = BodyField(p, n, kSetattrValidOffset) & kFattrKillSuidgid; break;
      case kOpOpen: request_clears_set_id = BodyField(p, n, kOpenOpenFlagsOffset) & kOpenKillSuidgid; break;
      case kOpCreate: request_clears_set_id = BodyField(p, n, kCreateOpenFlagsOffset) & kOpenKillSuidgid; break;
      default: break;
    }
  }
  if (n >= static_cast<ssize_t>(kInHeaderBytes + kInitInFlags2Offset + 4)) {
    const auto* p = static_cast<const uint8_t*>(buf);
    uint32_t opcode;
    std::memcpy(&opcode, p + 4, 4);
    if (opcode == kOpInit) {
      uint64_t unique;
      uint32_t flags, flags2;
      std::memcpy(&unique, p + 8, 8);
      std::memcpy(&flags, p + kInHeaderBytes + kInitInFlagsOffset, 4);
      std::memcpy(&flags2, p + kInHeaderBytes + kInitInFlags2Offset, 4);
      kernel_offers_mmap.store((flags & kInitExt) && (flags2 & kDirectIoAllowMmapFlags2));
      kernel_offers_killpriv.store(flags & kHandleKillprivV2);
      init_unique.store(unique);
    }
  }
  return n;
}

ssize_t DeviceWritev(int fd, struct iovec* iov, int count, void*) {
  uint64_t want = init_unique.load();
  if (want != 0 && (kernel_offers_mmap.load() || kernel_offers_killpriv.load()) && count >= 2 && iov[0].iov_len >= kOutHeaderBytes &&
      iov[1].iov_len >= kInitOutFlags2Offset + 4) {
    auto* h = static_cast<uint8_t*>(iov[0].iov_base);
    uint64_t unique;
    int32_t error;
    std::memcpy(&error, h + 4, 4);
    std::memcpy(&unique, h + 8, 8);
    if (unique == want && error == 0 && init_unique.compare_exchange_strong(want, 0)) {
      auto* out = static_cast<uint8_t*>(iov[1].iov_base);
      uint32_t flags, flags2;
      std::memcpy(&flags, out + kInitOutFlagsOffset, 4);
      std::memcpy(&flags2, out + kInitOutFlags2Offset, 4);
      if (kernel_offers_mmap.load()) {
        flags |= kInitExt;
        flags2 |= kDirectIoAllowMmapFlags2;
      }
      if (kernel_offers_killpriv.load()) flags |= kHandleKillprivV2;
      std::memcpy(out + kInitOutFlagsOffset, &flags, 4);
      std::memcpy(out + kInitOutFlags2Offset, &flags2, 4);
    }
  }
  return ::writev(fd, iov, count);
}

}  // namespace

bool RequestClearsSetId() { return request_clears_set_id; }

bool InstallDeviceIo(fuse_session* se) {
  static const fuse_custom_io io = [] {
    fuse_custom_io i;
    std::memset(&i, 0, sizeof(i));
    i.read = DeviceRead;
    i.writev = DeviceWritev;
    return i;
  }();
  return fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0;
}

}  // namespace kvfs
