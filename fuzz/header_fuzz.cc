// Fuzz target: DecodeHeader must never crash or read out of bounds on any
// bytes a damaged store could hold, and whatever it accepts must encode back
// to a header that decodes to the same fields.
#include <cstring>
#include <vector>

#include "adapters/object_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> block(kvfs::kHeaderSize, 0);
  std::memcpy(block.data(), data, std::min(size, block.size()));
  kvfs::Result<kvfs::ObjectHeader> h = kvfs::DecodeHeader(block.data(), std::min(size, block.size()));
  if (!h.ok()) return 0;
  std::vector<uint8_t> again(kvfs::kHeaderSize, 0);
  kvfs::ObjectHeader copy = *h;
  copy.slot = 0;
  if (!kvfs::EncodeHeader(copy, again.data()).ok()) __builtin_trap();
  kvfs::Result<kvfs::ObjectHeader> back = kvfs::DecodeHeader(again.data(), again.size());
  if (!back.ok() || back->key != h->key || back->size != h->size || back->generation != h->generation ||
      back->checksum != h->checksum || back->mode != h->mode) {
    __builtin_trap();
  }
  return 0;
}
