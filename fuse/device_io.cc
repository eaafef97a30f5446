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
constexpr uint32_t kInitExt = 1u << 30;                     // FUSE_INIT_EXT
constexpr uint32_t kDirectIoAllowMmapFlags2 = 1u << (36 - 32);  // FUSE_DIRECT_IO_ALLOW_MMAP
constexpr size_t kInHeaderBytes = 40;
constexpr size_t kOutHeaderBytes = 16;
constexpr size_t kInitInFlagsOffset = 12;
constexpr size_t kInitInFlags2Offset = 16;
constexpr size_t kInitOutFlagsOffset = 12;
constexpr size_t kInitOutFlags2Offset = 32;

std::atomic<uint64_t> init_unique{0};
std::atomic<bool> kernel_offers{false};

ssize_t DeviceRead(int fd, void* buf, size_t len, void*) {
  ssize_t n = ::read(fd, buf, len);
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
      kernel_offers.store((flags & kInitExt) && (flags2 & kDirectIoAllowMmapFlags2));
      init_unique.store(unique);
    }
  }
  return n;
}

ssize_t DeviceWritev(int fd, struct iovec* iov, int count, void*) {
  uint64_t want = init_unique.load();
  if (want != 0 && kernel_offers.load() && count >= 2 && iov[0].iov_len >= kOutHeaderBytes &&
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
      flags |= kInitExt;
      flags2 |= kDirectIoAllowMmapFlags2;
      std::memcpy(out + kInitOutFlagsOffset, &flags, 4);
      std::memcpy(out + kInitOutFlags2Offset, &flags2, 4);
    }
  }
  return ::writev(fd, iov, count);
}

}  // namespace

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
