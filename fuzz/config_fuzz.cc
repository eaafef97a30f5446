// Fuzz target: ParseConfigText must never crash, hang or read out of bounds
// on any bytes given as a config file; whatever it accepts has a key, at
// least one value and a line inside the text for every entry, and every
// error is one line naming a line of the file.
#include <string>
#include <string_view>

#include "fuse/config_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  kvfs::Result<std::vector<kvfs::ConfigEntry>> r = kvfs::ParseConfigText(text, "fuzz.toml");
  if (!r.ok()) {
    const std::string& m = r.status().message();
    if (m.rfind("fuzz.toml line ", 0) != 0 || m.find('\n') != std::string::npos) __builtin_trap();
    return 0;
  }
  size_t lines = 1;
  for (char c : text) lines += c == '\n';
  for (const kvfs::ConfigEntry& e : *r) {
    if (e.key.empty() || e.values.empty()) __builtin_trap();
    if (e.line < 1 || static_cast<size_t>(e.line) > lines) __builtin_trap();
  }
  return 0;
}
