// Offline consistency check of one store (`kvfs fsck`).
//
// CheckStore reads every object file of a store in full: it decodes the
// header, checks the file is as long as the header says, verifies the chunk
// checksum table and the whole-object checksum, finds keys claimed by more
// than one file (an interrupted rename) and staging files left by an
// interrupted commit. It also reports keys no kvfs writes (forged headers):
// absolute keys, "." or ".." or empty components, NUL bytes, names or
// components over the limits, and keys that lie under a key that is a file.
// Names from the store appear in problem lines with control characters
// escaped. Without repair nothing on the store is written, so a store opened
// read-only (LocalStoreOptions::read_only) can be checked. With repair, it
// quarantines corrupt objects and bad keys, removes the superseded copy of
// duplicated keys and deletes staging leftovers; the store is then what a
// mount would serve. Objects in a format newer than this build reads (a
// newer kvfs wrote them) are counted and listed, never verified, repaired
// or counted as damage.
//
// The store must not be in use (LocalStore's lock guarantees it).
// Not thread-safe; runs its own worker threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "adapters/store.h"

namespace kvfs {

struct FsckReport {
  uint64_t objects = 0;       // valid files, directory records and special records
  uint64_t files = 0;
  uint64_t directories = 0;
  uint64_t special = 0;       // symbolic links, FIFOs, sockets, device nodes
  uint64_t bytes = 0;         // data bytes of valid files
  uint64_t corrupt = 0;       // bad header, short file, impossible size, checksum mismatch, not a regular file
  uint64_t bad_keys = 0;      // headers whose key the engine cannot have written (see CheckStore)
  uint64_t duplicates = 0;    // superseded copies of a key
  uint64_t staging_leftovers = 0;
  uint64_t newer_format = 0;  // left alone (see CheckStore)
  uint64_t repaired = 0;      // problems fixed (with repair)
  std::vector<std::string> problems;  // one line each, for humans
  bool clean() const { return corrupt == 0 && bad_keys == 0 && duplicates == 0 && staging_leftovers == 0; }
  std::string ToText() const;
  std::string ToJson() const;
};

Result<FsckReport> CheckStore(Store& store, bool repair, int threads = 4);

}  // namespace kvfs
