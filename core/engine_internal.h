// Engine internals shared by the files that implement the Engine (engine.cc,
// engine_namespace.cc, engine_files.cc, engine_commit.cc, engine_read.cc,
// engine_space.cc, engine_shared.cc, engine_rebuild.cc): the FileHandle, the
// StagingSpill of a draft, the ChunkSpan of a read, and small helpers. Not
// part of the engine's interface; include only from core/engine*.cc.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/engine.h"

namespace kvfs {

// An open file: the inode, the access mode and the lease on the version it
// opened. Owned by the engine between Open/Create and Release.
class FileHandle {
 public:
  Inode* inode = nullptr;  // alive while open_handles > 0
  bool readable = false;
  bool writable = false;
  bool append = false;
  Lease lease;
  // Owners (FUSE lock_owner) that wrote through this handle; 0 = unknown.
  std::vector<uint64_t> writer_owners;  // guarded by Engine::mu_
  // The version this handle writes (shared with writers that joined it).
  std::shared_ptr<Draft> draft;  // guarded by Engine::mu_
  // The last commit attempted at a flush of this handle failed, and nothing
  // was written since: release must not publish that version after all.
  bool commit_failed = false;  // guarded by Engine::mu_
  // Flushed since its last write (counted out of its draft's `unflushed`).
  bool flushed = false;  // guarded by Engine::mu_
  // Set when the open never reached the caller: release commits nothing.
  bool abandoned = false;  // guarded by Engine::mu_
  // Served through the kernel's page cache (counted in the inode's
  // cache_handles, and cache_readers when it reads a committed version).
  bool page_cache = false;    // set at open
  bool cache_reader = false;  // set at open
  // The thread that opened it (0: unknown), recorded in its draft.
  uint64_t thread = 0;  // set at open
  // The chunks of the last read, for the next sequential read, and the
  // read ahead of it (see Engine::MaybeReadAhead).
  Mutex cache_mu;  // a leaf: taken with no other lock, or after mu_
  std::shared_ptr<const ChunkSpan> cache KVFS_GUARDED_BY(cache_mu);
  std::shared_ptr<Prefetch> ahead KVFS_GUARDED_BY(cache_mu);
  uint64_t next_offset KVFS_GUARDED_BY(cache_mu) = 0;  // where a sequential read goes on
  // How far the reader has asked already: the furthest end of the reads of
  // its current pass (a reader that keeps several reads in flight, io_uring
  // or AIO, has asked for the bytes up to there, so read-ahead starts
  // beyond it). A read that lands far from it (further than the bytes in
  // flight and a read-ahead: a seek, a footer read, a new pass from the
  // start) starts a new pass. bytes_in_flight: of the reads being served.
  uint64_t requested_end KVFS_GUARDED_BY(cache_mu) = 0;
  uint64_t bytes_in_flight KVFS_GUARDED_BY(cache_mu) = 0;
};

// Where a draft's chunks spill: the staging file of its version, on the
// store the key belonged to when the draft first spilled. The commit writes
// the header, what is still in memory and the checksum table into the same
// file and publishes it; the file stays open here, so the draft can still
// read its spilled chunks (now the published object's bytes). Its bytes move
// through the store's TransferData (so deadlines and faults apply); a
// transfer given up on (abandoned, see DataBatch) makes it in_doubt(), and
// memory the draft hands over then stays with that transfer until it ends.
class StagingSpill final : public DraftSpill {
 public:
  StagingSpill(Store* store, IoExecutor* io, uint32_t store_index, std::unique_ptr<StagingFile> file)
      : store_(store), io_(io), store_index_(store_index), file_(std::move(file)) {}
  Status Write(uint64_t offset, const uint8_t* data, size_t len) override {
    return Transfer(true, offset, const_cast<uint8_t*>(data), len);
  }
  Status Read(uint64_t offset, uint8_t* data, size_t len) override { return Transfer(false, offset, data, len); }
  bool in_doubt() const override { return abandoned_ != nullptr; }
  void KeepUntilTransfersEnd(std::shared_ptr<const void> memory) override {
    if (abandoned_) abandoned_->Keep(std::move(memory));
  }
  uint32_t store_index() const { return store_index_; }
  StagingFile& file() { return *file_; }

 private:
  Status Transfer(bool write, uint64_t offset, uint8_t* data, size_t len) {
    auto batch = std::make_shared<DataBatch>();
    if (write) batch->Write(file_->fd(), data, len, kHeaderSize + offset);
    else batch->Read(file_->fd(), data, len, kHeaderSize + offset);
    Status s = store_->TransferData(*io_, batch);
    if (!s.ok()) {
      // The memory is the draft's: it hands it over (KeepUntilTransfersEnd).
      if (batch->abandoned()) abandoned_ = batch;
      return Status::FromErrno(s.err(), (write ? "spill write " : "spill read ") + file_->path() + ": " + s.message());
    }
    size_t done = batch->requests[0].done;
    if (done < len) {
      if (write) return Status::Error(EIO, "spill write made no progress");
      std::memset(data + done, 0, len - done);  // past the end: never written
    }
    return Status::Ok();
  }
  Store* store_;
  IoExecutor* io_;
  uint32_t store_index_;
  std::unique_ptr<StagingFile> file_;
  // The latest transfer given up on (null when none): what handed-over memory joins.
  std::shared_ptr<DataBatch> abandoned_;
};

// A chunk-aligned range [start, end) of an object's data, read into
// consecutive pool buffers and verified against the chunk checksums.
struct ChunkSpan {
  uint64_t start = 0;
  uint64_t end = 0;
  size_t buffer_size = 0;
  std::vector<PooledBuffer> buffers;
};

namespace engine_detail {

constexpr size_t kMaxNameLength = 255;

// Identity of a file the store opened (adapters/file_identity.h), or 0
// (unknown) when the store cannot tell.
inline uint64_t FileId(Store* store, int fd) {
  Result<uint64_t> id = store->FileIdOf(fd);
  return id.ok() ? *id : 0;
}

// The kernel's id of a thread, from the engine's `thread` identities (whose
// low 32 bits carry it; 0: unknown).
inline uint32_t KernelThreadId(uint64_t thread) { return static_cast<uint32_t>(thread); }

inline int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

inline Status CheckName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return Status::Error(EINVAL, "invalid name");
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name longer than 255 bytes");
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Status::Error(EINVAL, "invalid character in name");
  }
  return Status::Ok();
}

inline std::string JoinKey(const std::string& dir_key, std::string_view name) {
  return dir_key.empty() ? std::string(name) : dir_key + "/" + std::string(name);
}

// An inode's attributes as an object header records them.
inline Attributes AttributesOf(const ObjectHeader& h) {
  Attributes attr;
  bool is_dir = h.kind == ObjectKind::kDirectory;
  // A special record's type is in its mode (checked by DecodeHeader).
  uint32_t type = h.kind == ObjectKind::kSpecial ? (h.mode & S_IFMT) : is_dir ? S_IFDIR : S_IFREG;
  attr.mode = (h.mode & 07777) | type;
  attr.rdev = h.rdev;
  attr.uid = h.uid;
  attr.gid = h.gid;
  attr.mtime_ns = attr.atime_ns = h.mtime_ns;
  attr.ctime_ns = h.ctime_ns;
  return attr;
}

// A 4 KiB aligned block, freed on scope exit (held by shared_ptr where a
// DataBatch keeps it).
struct AlignedBlock {
  uint8_t* data;
  AlignedBlock() : data(static_cast<uint8_t*>(std::aligned_alloc(4096, kHeaderSize))) { std::memset(data, 0, kHeaderSize); }
  ~AlignedBlock() { std::free(data); }
  AlignedBlock(const AlignedBlock&) = delete;
  AlignedBlock& operator=(const AlignedBlock&) = delete;
};

}  // namespace engine_detail
}  // namespace kvfs
