// Namespace: the in-memory index of kvfs: inodes, directories and the
// current version of every key.
//
// Every name under the mount is an Inode. A special inode (symbolic link,
// FIFO, socket, device node) is a record only: committed when created, its
// `committed` Version is its record on the store. A file inode points at its
// committed Version (null while a new key is still being written: such an
// inode is "pending" and invisible to lookup and readdir) and at the Draft its
// writers are filling. A directory inode owns a Directory: its children by
// name, and by a per-directory sequence number that serves as the readdir
// offset, so that paging stays correct while entries come and go (entries
// added during a listing get larger numbers; removed ones are simply absent).
// The per-key structures are kept small: the index of a store with millions
// of keys lives in the daemon's memory.
//
// Inode lifetime: an inode lives while it is linked into a directory, or the
// kernel still holds lookups on it (nlookup > 0), or a file handle is open on
// it. Reap() frees it when none of these holds. The root is never freed.
//
// Thread-safety: none. The Engine guards a Namespace with its index mutex.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/draft.h"
#include "core/version.h"

namespace kvfs {

inline constexpr uint64_t kRootIno = 1;

struct Attributes {
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint32_t mode = 0;  // including the type: S_IFREG, S_IFDIR, or a special record's
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t rdev = 0;  // device records only (ObjectHeader::rdev)
};

struct Inode;

// A directory's children, by name and in listing order. Each child is kept
// once per view: a hash set of Inode pointers keyed by the child's own name
// (no copy of the name), and an append-only array of (sequence, child) in
// sequence order, where a removed child leaves a hole until holes outnumber
// children and the array is compacted (sequence numbers never change, so
// readdir offsets stay valid across compaction).
class Directory {
 public:
  Inode* Find(std::string_view name) const;
  // Adds child under child->name with the next sequence number (stored in
  // child->dir_seq). The name must not be present.
  void Add(Inode* child);
  void Remove(Inode* child);
  // fresh takes old's name and listing position; old leaves.
  void Replace(Inode* old, Inode* fresh);
  bool empty() const { return by_name_.empty(); }
  size_t size() const { return by_name_.size(); }
  // Calls fn(seq, child) for each child with a sequence number above
  // `after`, in order, until fn returns false. fn must not add or remove
  // children.
  template <typename Fn>
  void ForEachAfter(uint64_t after, Fn&& fn) const;

  size_t visible_entries = 0;

 private:
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view n) const noexcept { return std::hash<std::string_view>{}(n); }
    size_t operator()(const Inode* i) const noexcept;
  };
  struct NameEq {
    using is_transparent = void;
    bool operator()(const Inode* a, const Inode* b) const noexcept { return a == b; }
    bool operator()(std::string_view n, const Inode* i) const noexcept;
    bool operator()(const Inode* i, std::string_view n) const noexcept { return (*this)(n, i); }
  };
  std::unordered_set<Inode*, NameHash, NameEq> by_name_;
  std::vector<std::pair<uint64_t, Inode*>> by_seq_;  // null child: removed
  size_t holes_ = 0;
  uint64_t next_seq_ = 3;  // offsets 1 and 2 are "." and ".."
};

struct Inode {
  // Fields are ordered for packing: the index holds one Inode per key.
  uint64_t ino = 0;
  Inode* parent = nullptr;  // null for the root and for unlinked inodes
  std::string name;
  uint64_t dir_seq = 0;
  Attributes attr;
  uint64_t nlookup = 0;

  // Files: the committed version (null while pending) and the draft.
  // Directories: `committed` is the directory's record on its store, if any.
  std::shared_ptr<Version> committed;
  std::shared_ptr<Draft> draft;
  // The last committed version of an unlinked file, for fstat through a
  // descriptor that outlives the name (the kernel asks without a handle).
  std::weak_ptr<Version> last_version;
  // The committed version whose bytes the kernel's page cache may hold for
  // this inode (expired or another version: the cache is stale).
  std::weak_ptr<Version> cached_version;
  std::unique_ptr<Directory> dir;

  uint32_t open_handles = 0;
  uint32_t read_leases = 0;  // handles holding a lease on some version
  uint32_t writers = 0;      // open handles with write access
  uint32_t cache_handles = 0;  // open handles served through the kernel's page cache
  uint32_t cache_readers = 0;  // those of them reading a committed version
  bool is_dir = false;
  bool committing = false;  // a commit is writing this inode's draft out
  bool evicted = false;     // removed by the evictor (stat by inode gives ENOENT)
  // Handed its key to a fresh inode (see Engine::SupersedeLocked): it only
  // serves the handles that still read through it.
  bool superseded = false;
  // A lookup of this pending key was answered ENOENT (the kernel may cache
  // that answer until the key's first commit invalidates it).
  bool lookup_refused = false;
  // A writer was sent to this inode (a fresh one, see superseded): until
  // then (CLOCK_REALTIME ns), readers do not take the page cache, so that
  // the writer does not find page-cache readers again.
  int64_t writer_expected_until_ns = 0;

  bool linked() const { return parent != nullptr || ino == kRootIno; }
  // A symbolic link, FIFO, socket or device node: a namespace-only record
  // (committed at creation, never written, opened or evicted).
  bool is_special() const { return !is_dir && !S_ISREG(attr.mode); }
  // A regular file (a key with data versions).
  bool is_file() const { return !is_dir && S_ISREG(attr.mode); }
  bool visible() const { return is_dir || committed != nullptr; }
};

template <typename Fn>
void Directory::ForEachAfter(uint64_t after, Fn&& fn) const {
  auto it = std::upper_bound(by_seq_.begin(), by_seq_.end(), after,
                             [](uint64_t seq, const std::pair<uint64_t, Inode*>& e) { return seq < e.first; });
  for (; it != by_seq_.end(); ++it) {
    if (it->second && !fn(it->first, it->second)) return;
  }
}

class Namespace {
 public:
  Namespace();

  Inode* root() { return root_; }
  Inode* Get(uint64_t ino) const;
  // The child called name, pending or not; null if none.
  Inode* Child(const Inode* dir, std::string_view name) const;
  Inode* NewInode(bool is_dir, const Attributes& attr);
  // Links child into dir under name, at the end of the listing order.
  void Attach(Inode* dir, Inode* child, std::string name);
  // Unlinks child from its directory (it stays alive, see Reap).
  void Detach(Inode* child);
  // Puts fresh (unlinked) where old is, under old's name and at old's place
  // in the listing order; old becomes unlinked.
  void Replace(Inode* old, Inode* fresh);
  // Marks a pending file visible (after its first commit) or back.
  void SetVisible(Inode* child, bool was_visible);
  // Frees inode if it is unlinked, unreferenced and unopened.
  void Reap(Inode* inode);
  // The key of an inode: its path from the root without a leading '/'.
  std::string KeyOf(const Inode* inode) const;
  bool IsAncestor(const Inode* maybe_ancestor, const Inode* inode) const;
  size_t inode_count() const { return inodes_.size(); }
  // Calls fn for every inode (linked or not), in no particular order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const auto& [ino, inode] : inodes_) fn(const_cast<Inode*>(&inode));
  }

 private:
  // Inodes live in the map's nodes (stable addresses, one allocation each).
  std::unordered_map<uint64_t, Inode> inodes_;
  Inode* root_ = nullptr;
  uint64_t next_ino_ = kRootIno + 1;
};

}  // namespace kvfs
