// The kvfs config file (`kvfs mount --config FILE`): a small subset of TOML
// that names mount options by their long flag names.
//
//   # comment
//   [mount]                       # optional; keys may also sit above it
//   store = ["/nvme0/kvfs",       # an array may span lines
//            "/nvme1/kvfs"]
//   capacity = "6T"               # "basic" or 'literal' strings
//   high-watermark = 0.95         # bare numbers, booleans and words (6T)
//   io-uring = false
//
// What is refused, with an error naming the file and the line: a key with no
// value (`capacity =`), an empty array, a key given twice (also once above
// [mount] and once under it), a section other than [mount] or [mount] twice,
// inline tables, nested arrays, quoted or dotted keys, text after a value,
// an unterminated string or array, control characters and NUL bytes. Which
// keys exist is not known here: the command line checks the keys and their
// values (see fuse/cli.h).
//
// LoadConfigFile reads only regular files of at most kMaxConfigBytes, so a
// directory, a FIFO or /dev/zero given as the config file is an error, never
// a hang. Everything here is pure except LoadConfigFile (which reads the
// file) and thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/status.h"

namespace kvfs {

inline constexpr size_t kMaxConfigBytes = 1 << 20;

// One `key = value` line. An array gives several values; a scalar gives one.
struct ConfigEntry {
  std::string key;  // as written
  std::vector<std::string> values;
  int line = 0;  // 1-based line of the key
};

// Parses config text. `name` (the file's path) prefixes every error message:
// "NAME line N: ...". EINVAL on any error.
Result<std::vector<ConfigEntry>> ParseConfigText(std::string_view text, const std::string& name);

// Reads and parses the file at `path`. Errors: the errno of open/read,
// EINVAL for a file that is not a regular file, larger than kMaxConfigBytes,
// or that does not parse. Messages start with "config file PATH".
Result<std::vector<ConfigEntry>> LoadConfigFile(const std::string& path);

}  // namespace kvfs
