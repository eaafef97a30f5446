#include "fuse/debug_xattrs.h"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <optional>

#include "adapters/key_hash.h"
#include "core/namespace.h"
#include "fuse/stats_format.h"

namespace kvfs {
namespace {

// What one attribute is computed from: the inode, and for the root the
// engine's statistics (taken once per call, when an attribute needs them).
struct Subject {
  const Engine& engine;
  uint64_t ino;
  InodeInfo info;
  mutable std::optional<EngineStats> stats;
  const EngineStats& Stats() const {
    if (!stats) stats = engine.Stats();
    return *stats;
  }
};

enum class Scope { kEveryInode, kVersion, kFileVersion, kRoot };

struct DebugXattr {
  const char* name;
  Scope scope;
  std::string (*value)(const Subject&);
};

bool Applies(Scope scope, const Subject& s) {
  switch (scope) {
    case Scope::kEveryInode: return true;
    case Scope::kVersion: return s.info.has_version;
    case Scope::kFileVersion: return s.info.has_version && !s.info.is_dir;
    case Scope::kRoot: return s.ino == kRootIno;
  }
  return false;
}

std::string Checksum(const Subject& s) {
  char hex[32];
  // "xxh3-chunks:" when it is the checksum of the chunk checksum table.
  std::snprintf(hex, sizeof(hex), "%s:%016" PRIx64, s.info.checksum_of_table ? "xxh3-chunks" : "xxh3", s.info.checksum);
  return hex;
}

std::string State(const Subject& s) {
  if (s.info.is_dir) return "directory";
  if (s.info.writing) return s.info.has_version ? "committed+writing" : "writing";
  return "committed";
}

std::string Evictions(const Subject& s) {
  const EvictionCounts& e = s.Stats().evictions;
  return "capacity=" + std::to_string(e.capacity) + " watermark=" + std::to_string(e.watermark) +
         " floor=" + std::to_string(e.floor);
}

const DebugXattr kTable[] = {
    {"user.kvfs.key", Scope::kEveryInode, [](const Subject& s) { return s.info.key; }},
    {"user.kvfs.key_hash", Scope::kEveryInode, [](const Subject& s) { return HashKey(s.info.key).Hex(); }},
    {"user.kvfs.open_handles", Scope::kEveryInode, [](const Subject& s) { return std::to_string(s.info.open_handles); }},
    {"user.kvfs.state", Scope::kEveryInode, State},
    {"user.kvfs.store", Scope::kVersion, [](const Subject& s) { return s.info.store; }},
    {"user.kvfs.location", Scope::kVersion, [](const Subject& s) { return s.info.location; }},
    {"user.kvfs.version", Scope::kVersion, [](const Subject& s) { return std::to_string(s.info.generation); }},
    {"user.kvfs.size", Scope::kVersion, [](const Subject& s) { return std::to_string(s.info.size); }},
    {"user.kvfs.footprint", Scope::kVersion, [](const Subject& s) { return std::to_string(s.info.footprint); }},
    {"user.kvfs.leases", Scope::kVersion, [](const Subject& s) { return std::to_string(s.info.leases); }},
    {"user.kvfs.checksum", Scope::kFileVersion, Checksum},
    {"user.kvfs.stats", Scope::kRoot, [](const Subject& s) { return FormatStatsJson(s.Stats()); }},
    {"user.kvfs.stats.text", Scope::kRoot, [](const Subject& s) { return FormatStatsText(s.Stats()); }},
    {"user.kvfs.pid", Scope::kRoot, [](const Subject&) { return std::to_string(::getpid()); }},
    {"user.kvfs.capacity", Scope::kRoot, [](const Subject& s) { return std::to_string(s.Stats().capacity_bytes); }},
    {"user.kvfs.used", Scope::kRoot, [](const Subject& s) { return std::to_string(s.Stats().used_bytes); }},
    {"user.kvfs.pinned", Scope::kRoot, [](const Subject& s) { return std::to_string(s.Stats().pinned_bytes); }},
    {"user.kvfs.evictions", Scope::kRoot, Evictions},
};

Result<Subject> SubjectOf(const Engine& engine, uint64_t ino) {
  Result<InodeInfo> info = engine.Inspect(ino);
  if (!info.ok()) return info.status();
  return Subject{engine, ino, std::move(*info), std::nullopt};
}

}  // namespace

Result<std::string> GetDebugXattr(const Engine& engine, uint64_t ino, const std::string& name) {
  Result<Subject> s = SubjectOf(engine, ino);
  if (!s.ok()) return s.status();
  if (name.rfind("user.", 0) != 0) {
    // No attribute is ever kept in another namespace (security.*, system.*,
    // trusted.*): the answer the kernel gives for a namespace a filesystem
    // does not serve. Tools take it as "not supported on this device" and
    // stop asking: `ls -l` otherwise asks every entry for security.selinux
    // and system.posix_acl_access, a round trip each.
    return Status::Error(EOPNOTSUPP, "kvfs keeps no attributes outside the user. namespace");
  }
  for (const DebugXattr& x : kTable) {
    if (name == x.name && Applies(x.scope, *s)) return x.value(*s);
  }
  return Status::Error(ENODATA, "no such attribute");
}

Result<std::vector<std::string>> ListDebugXattrs(const Engine& engine, uint64_t ino) {
  Result<Subject> s = SubjectOf(engine, ino);
  if (!s.ok()) return s.status();
  std::vector<std::string> names;
  for (const DebugXattr& x : kTable) {
    if (Applies(x.scope, *s)) names.emplace_back(x.name);
  }
  return names;
}

}  // namespace kvfs
