// Fuzz target: the command-line parser (ParseCommandLine) on any argv,
// without mounting. The input is split at NUL bytes into arguments; a
// --config argument's "file" is the text of the path itself, so config
// files are fuzzed through the same door. The parser must never throw or
// crash; a refusal is exit code 2 and one line starting with "kvfs: "; an
// accepted mount stays inside the documented bounds.
#include <cmath>
#include <string>
#include <vector>

#include "fuse/cli.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args = {"kvfs"};
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
      if (args.size() > 64) return 0;
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  args.push_back(cur);
  kvfs::ConfigReader reader = [](const std::string& path) { return kvfs::ParseConfigText(path, "config file"); };
  kvfs::CliCommand c = kvfs::ParseCommandLine(args, reader);
  using A = kvfs::CliCommand::Action;
  if (c.action == A::kExit) {
    if (c.exit_code != 0) {
      if (c.exit_code != 2 || c.error.rfind("kvfs: ", 0) != 0) __builtin_trap();
      if (c.error.find('\n') != std::string::npos) __builtin_trap();
    }
    return 0;
  }
  if (c.action == A::kMount) {
    const kvfs::MountOptions& m = c.mount;
    if (m.mountpoint.empty()) __builtin_trap();
    if (m.buffer_count < 1 || m.buffer_count > 4096) __builtin_trap();
    if (m.buffer_size % (256 << 10) != 0 || m.buffer_count * m.buffer_size > (uint64_t{4} << 30)) __builtin_trap();
    if (m.max_request < 4096 || m.max_request > (1 << 20)) __builtin_trap();
    if (m.capacity && (*m.capacity < (1 << 20) || *m.capacity > (uint64_t{1} << 56))) __builtin_trap();
    for (double d : {m.store_deadline_s, m.sync_interval_s, m.dfs_refresh_s, m.dfs_lease_ttl_s}) {
      if (!std::isfinite(d) || d <= 0 || d > 3600) __builtin_trap();
    }
    for (double d : {m.entry_timeout, m.negative_timeout}) {
      if (!std::isfinite(d) || d < 0 || d > 3600) __builtin_trap();
    }
    if (!(m.low_watermark <= m.high_watermark) || m.high_watermark > 1) __builtin_trap();
    for (const std::string& s : m.stores) {
      if (s.empty()) __builtin_trap();
    }
    for (const std::string& o : m.fuse_options) {
      if (o.empty()) __builtin_trap();
    }
  }
  if ((c.action == A::kUmount || c.action == A::kStats) && c.mountpoint.empty()) __builtin_trap();
  return 0;
}
