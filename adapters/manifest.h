// StoreManifest: the small text file at the root of every store that says how
// the store is laid out, so that a kvfs build never misreads a store written
// by another build or another host.
//
// The file is a TOML subset: one `name = value` per line, strings quoted.
// A store is refused when its manifest names a format, hash algorithm, seed
// or layout this build does not use. Pure functions plus file I/O; the
// functions are thread-safe, the file itself is written at store creation
// and at a format upgrade (temporary name, fsync, rename, fsync of the
// directory).
#pragma once

#include <cstdint>
#include <string>

#include "adapters/status.h"

namespace kvfs {

inline constexpr const char* kManifestFileName = "kvfs-manifest.toml";
// Store format 2: its objects may be in object format 2 (object_header.h).
// A format-1 store (made by an older build) is read as it is and upgraded,
// its manifest rewritten as format 2, when this build opens it for writing,
// before it writes any object: an older build then refuses the store with
// a clear error instead of skipping the objects it cannot read (and its
// fsck --repair quarantining them).
inline constexpr uint32_t kStoreFormatVersion = 2;
inline constexpr uint32_t kOldestStoreFormat = 1;
// The layout new stores get: one level of 256 fan-out directories (a local
// store makes them all when it is created, so no publish waits for a mkdir;
// a shared store makes each on first use, see ObjectDirectory::SetUp).
inline constexpr const char* kStoreLayout = "objects/xx/<hash128>";
// The layout of stores made by earlier builds (65,536 leaf directories, made
// on first use). Still read and written as it is; never converted.
inline constexpr const char* kTwoLevelStoreLayout = "objects/xx/yy/<hash128>";

struct StoreManifest {
  uint32_t format = kStoreFormatVersion;
  std::string hash = "";
  uint64_t seed = 0;
  std::string layout = "";

  // The manifest this build writes for a new store.
  static StoreManifest Current();
  std::string Serialize() const;
  // Parses the text of a manifest; EINVAL with the offending line on bad syntax.
  static Result<StoreManifest> Parse(const std::string& text);
  // OK when this build can use a store with this manifest; EPROTO otherwise,
  // with a message naming the field that differs. Both layouts above are
  // usable, and store formats kOldestStoreFormat to kStoreFormatVersion.
  Status CheckCompatible() const;
  // Whether a writable open must rewrite it as Upgraded() first.
  bool NeedsUpgrade() const { return format < kStoreFormatVersion; }
  StoreManifest Upgraded() const {
    StoreManifest m = *this;
    m.format = kStoreFormatVersion;
    return m;
  }
  // How many fan-out directory levels the layout has: 1 for kStoreLayout, 2
  // for kTwoLevelStoreLayout, 0 for a layout this build does not know.
  int FanOutLevels() const;
};

// Reads DIR/kvfs-manifest.toml; ENOENT when there is none.
Result<StoreManifest> ReadManifest(const std::string& dir);
// Writes DIR/kvfs-manifest.toml durably and atomically.
Status WriteManifest(const std::string& dir, const StoreManifest& manifest);

}  // namespace kvfs
