// Default implementations of the Store methods that shared stores refine.
#include "adapters/store.h"

#include "adapters/file_identity.h"
#include "adapters/io_ring.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace kvfs {

Result<StoreSpace> FilesystemSpace(const std::string& path) {
  struct statvfs sv;
  if (::statvfs(path.c_str(), &sv) != 0) return Status::FromErrno("statvfs " + path);
  StoreSpace s;
  s.total_bytes = static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize;
  s.free_bytes = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  return s;
}

Result<ListedObject> Store::StatObject(const std::string& location) {
  Result<int> fd = OpenForRead(location);
  if (!fd.ok()) return fd.status();
  Result<FileStatus> st = StatDescriptor(*fd);
  ::close(*fd);
  if (!st.ok()) return Status::Error(st.err(), st.status().message() + " " + location);
  ListedObject o;
  o.location = location;
  o.file_id = st->file_id();
  o.file_bytes = st->size;
  return o;
}

Result<ScannedObject> Store::ReadObject(const std::string& location) {
  Result<int> fd = OpenForRead(location);
  if (!fd.ok()) return fd.status();
  ScannedObject obj;
  obj.location = location;
  Result<FileStatus> st = StatDescriptor(*fd);
  if (st.ok()) {
    obj.file_bytes = st->size;
    obj.file_id = st->file_id();
  }
  // The descriptor may be O_DIRECT: read into an aligned block.
  void* block = std::aligned_alloc(4096, kHeaderSize);
  if (!block) {
    ::close(*fd);
    return Status::Error(ENOMEM, "header buffer");
  }
  ssize_t n = ::pread(*fd, block, kHeaderSize, 0);
  int err = errno;
  ::close(*fd);
  if (n < 0) obj.header = Status::FromErrno(err, "read header " + location);
  else obj.header = DecodeHeader(static_cast<uint8_t*>(block), static_cast<size_t>(n));
  std::free(block);
  return obj;
}

Status Store::List(const std::function<void(const ListedObject&)>& fn, int threads) {
  return Scan(
      [&](const ScannedObject& s) {
        ListedObject o;
        o.location = s.location;
        o.file_id = s.file_id;
        o.file_bytes = s.file_bytes;
        fn(o);
      },
      threads);
}

Status Store::TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch) { return io.Run(batch); }

Result<std::unique_ptr<StagingFile>> Store::CreateStagingWith(IoExecutor& io, std::shared_ptr<const uint8_t> image,
                                                              size_t image_bytes) {
  Result<std::unique_ptr<StagingFile>> file = CreateStaging(image_bytes);
  if (!file.ok()) return file;
  auto batch = std::make_shared<DataBatch>();
  batch->Keep(image);
  batch->Write((*file)->fd(), image.get(), image_bytes, 0);
  Status written = TransferData(io, batch);
  if (!written.ok()) return written;  // the staging file goes with `file`
  if (batch->requests[0].done != image_bytes) return Status::Error(EIO, "write " + (*file)->path() + ": short write");
  return file;
}

Result<uint64_t> Store::FileIdOf(int fd) {
  Result<FileStatus> st = StatDescriptor(fd);
  if (!st.ok()) return st.status();
  return st->file_id();
}

Status Store::TruncateData(int fd, uint64_t length) {
  while (::ftruncate(fd, static_cast<off_t>(length)) != 0) {
    if (errno != EINTR) return Status::FromErrno("ftruncate");
  }
  return Status::Ok();
}

}  // namespace kvfs
