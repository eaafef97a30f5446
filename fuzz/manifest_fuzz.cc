// Fuzz target: StoreManifest::Parse must never crash on any text, and a
// manifest it accepts must serialize and parse back to the same fields.
#include <string>

#include "adapters/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  kvfs::Result<kvfs::StoreManifest> m = kvfs::StoreManifest::Parse(text);
  if (!m.ok()) return 0;
  (void)m->CheckCompatible();
  kvfs::Result<kvfs::StoreManifest> back = kvfs::StoreManifest::Parse(m->Serialize());
  if (!back.ok() || back->format != m->format || back->seed != m->seed) __builtin_trap();
  return 0;
}
