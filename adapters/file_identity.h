// File identity: what tells an object file from the one that held its
// location (or its inode number) before.
//
// A version remembers the identity of its object file (Version::file_id,
// ListedObject::file_id), and every check that the file at a location, or an
// open descriptor, is still that version's compares identities. The inode
// number alone is not enough: ext4 and XFS hand a freed inode number to the
// next file created, so a key replaced twice can hold, at its location, a
// file with the first version's number. Where the file system reports a
// birth time (statx STATX_BTIME: ext4 with large inodes, XFS, Btrfs, tmpfs),
// the identity pairs the number with it; elsewhere (most FUSE and network
// clients) it is the inode number, which those file systems do not recycle
// quickly (GlusterFS derives it from the file's GFID, CephFS never reuses).
//
// A file system reports a birth time for all its files or for none, so the
// identities of one file taken by path and by descriptor always agree.
// Thread-safety: free functions, no state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "adapters/status.h"

namespace kvfs {

// The identity of the file with inode number ino and birth time birth_ns
// (0: not reported). Never 0 for a nonzero ino; ino itself without a birth
// time.
uint64_t FileIdentity(uint64_t ino, int64_t birth_ns);

// What statx(2) says of a file (the fields the stores use).
struct FileStatus {
  uint64_t ino = 0;
  int64_t birth_ns = 0;  // 0 where the file system does not report it
  uint64_t size = 0;
  mode_t mode = 0;
  int64_t mtime_ns = 0;
  uint64_t file_id() const { return FileIdentity(ino, birth_ns); }
};

// statx of an open descriptor; of a path, following a final symlink or not.
Result<FileStatus> StatDescriptor(int fd);
Result<FileStatus> StatPath(const std::string& path, bool follow_symlink);

}  // namespace kvfs
