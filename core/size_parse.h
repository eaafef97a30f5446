// Parsing and printing of byte sizes as operators write them: "4096",
// "512K", "10GiB", "1.5T". Suffixes are binary (K = KiB = 1024). Pure and
// thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "adapters/status.h"

namespace kvfs {

// EINVAL with a message naming the text when it is not a size.
Result<uint64_t> ParseSize(const std::string& text);
// "1.5 GiB" style, for humans.
std::string FormatSize(uint64_t bytes);

}  // namespace kvfs
