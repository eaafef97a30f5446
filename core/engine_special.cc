// Engine: special files. Symbolic links, FIFOs, sockets and device nodes
// are namespace-only records: like a directory's record, a header-only
// object on the key's store (kind ObjectKind::kSpecial, the type in the
// mode, a device's number in rdev), written and published before the call
// returns, so they are visible to every process at once and found again
// by the rebuild after a restart. A symbolic link's target is its record's
// data (checksummed like a file's bytes). kvfs never opens them: the kernel
// follows links and serves FIFOs, sockets and devices itself.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <string>

#include "core/engine.h"
#include "core/engine_internal.h"

namespace kvfs {
using namespace engine_detail;

Result<Attr> Engine::Symlink(uint64_t parent, std::string_view name, std::string_view target, uint32_t uid,
                             uint32_t gid) {
  if (target.empty()) return Status::Error(ENOENT, "empty symbolic link target");
  if (target.size() > kMaxLinkTargetLength) return Status::Error(ENAMETOOLONG, "symbolic link target too long");
  if (target.find('\0') != std::string_view::npos) return Status::Error(EINVAL, "NUL in symbolic link target");
  Attributes attr;
  attr.mode = S_IFLNK | 0777;
  attr.uid = uid;
  attr.gid = gid;
  return MakeSpecial(parent, name, attr, target);
}

Result<Attr> Engine::Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint32_t rdev, uint32_t uid,
                           uint32_t gid) {
  const uint32_t type = mode & S_IFMT;
  if (type == S_IFREG || type == 0) {
    // An empty regular file: what open(O_CREAT | O_EXCL | O_RDONLY) and a
    // close would leave, committed before the reply.
    Result<OpenResult> r = Create(parent, name, mode & 07777, O_CREAT | O_EXCL | O_RDONLY, uid, gid);
    if (!r.ok()) return r.status();
    Attr a = r->attr;
    Release(r->handle);
    return a;
  }
  if (type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK) {
    return Status::Error(EINVAL, "mknod of an unsupported file type");
  }
  Attributes attr;
  attr.mode = type | (mode & 07777);
  attr.uid = uid;
  attr.gid = gid;
  attr.rdev = (type == S_IFCHR || type == S_IFBLK) ? rdev : 0;
  return MakeSpecial(parent, name, attr, std::string_view());
}

Result<Attr> Engine::MakeSpecial(uint64_t parent, std::string_view name, const Attributes& requested,
                                 std::string_view target) {
  KVFS_RETURN_IF_ERROR(CheckName(name));
  // A record counts against the capacity as a file does.
  Result<RecordRoom> room = ReserveRecordRoom(parent, name, ObjectFootprint(target.size()));
  if (!room.ok()) return room.status();
  MutexLock publish(publish_mu_);
  Attributes attr = requested;
  ObjectHeader header;
  {
    MutexLock g(mu_);
    Result<Inode*> dir = ChildForChangeLocked(parent, name);
    if (!dir.ok()) return dir.status();
    if (ns_.Child(*dir, name)) return Status::Error(EEXIST, "exists");
    std::string key = JoinKey(ns_.KeyOf(*dir), name);
    if (key.size() > kMaxKeyLength) return Status::Error(ENAMETOOLONG, "path too long");
    InheritGroupLocked(*dir, &attr);
    attr.atime_ns = attr.mtime_ns = attr.ctime_ns = NowNs();
    header.kind = ObjectKind::kSpecial;
    header.mode = attr.mode;
    header.uid = attr.uid;
    header.gid = attr.gid;
    header.rdev = attr.rdev;
    header.mtime_ns = attr.mtime_ns;
    header.ctime_ns = attr.ctime_ns;
    header.size = target.size();
    header.checksum = target.empty() ? 0 : XXH3_64bits(target.data(), target.size());
    header.key = std::move(key);
    header.generation = next_generation_++;
  }
  const uint32_t store_index = StoreIndexFor(header.key);
  Result<std::shared_ptr<Version>> record = Status::Error(EIO, "not written");
  if (target.empty()) {
    record = PublishRecord(store_index, header);
  } else {
    // The target is the record's data, written as a commit writes a file's.
    Draft draft;
    Store* store = stores_[store_index].get();
    std::unique_ptr<StagingFile> staging;
    Status written;
    {
      MutexLock dlk(draft.mutex());
      written = draft.WriteLocked(0, target.data(), target.size());
      if (written.ok()) written = WriteObject(store, &header, &draft, &staging);
    }
    if (written.ok()) {
      std::string location = store->LocationFor(HashKey(header.key));
      uint64_t file_id = FileId(store, staging->fd());
      written = PublishStaging(store_index, *staging, location);
      if (written.ok()) record = MakeVersion(store_index, location, header, file_id);
    }
    if (!written.ok()) record = written;
  }
  if (!record.ok()) return Status::Error(record.err() == ENOSPC ? ENOSPC : EIO, record.status().message());
  return AttachRecordOrDrop(parent, name, /*is_dir=*/false, attr, *record);
}

Result<std::string> Engine::Readlink(uint64_t ino) {
  std::shared_ptr<Version> version;
  uint64_t size = 0, checksum = 0;
  {
    MutexLock g(mu_);
    Inode* inode = ns_.Get(ino);
    if (!inode) return Status::Error(ENOENT, "stale inode");
    if (inode->is_dir || !S_ISLNK(inode->attr.mode)) return Status::Error(EINVAL, "not a symbolic link");
    version = inode->committed;
    if (!version) version = inode->last_version.lock();
    if (!version) return Status::Error(ENOENT, "symbolic link removed");
    size = version->size();
    checksum = version->checksum();
  }
  if (size == 0 || size > kMaxLinkTargetLength) return Status::Error(EIO, "symbolic link record without a target");
  Result<Lease> lease = Lease::Take(version);
  if (!lease.ok()) {
    bool gone = lease.err() == ENOENT || lease.err() == ESTALE;
    return Status::Error(gone ? ENOENT : EIO, lease.status().message());
  }
  // The target sits in the first data block; the descriptor may be O_DIRECT,
  // so the whole aligned block is read, through the store (its deadline and
  // faults apply) into memory the batch owns.
  void* raw = nullptr;
  if (::posix_memalign(&raw, 4096, kHeaderSize) != 0) return Status::Error(ENOMEM, "symbolic link target");
  std::shared_ptr<uint8_t> buf(static_cast<uint8_t*>(raw), &std::free);
  auto batch = std::make_shared<DataBatch>();
  batch->Keep(buf);
  batch->Read(version->fd(), buf.get(), kHeaderSize, kHeaderSize);
  Status read = version->store()->TransferData(*io_, batch);
  if (!read.ok()) return Status::Error(EIO, "read of symbolic link " + version->location() + ": " + read.message());
  if (batch->requests[0].done < size) return Status::Error(EIO, "symbolic link record is short");
  if (XXH3_64bits(buf.get(), size) != checksum) return Status::Error(EIO, "symbolic link target fails its checksum");
  return std::string(reinterpret_cast<const char*>(buf.get()), size);
}

}  // namespace kvfs
