#include "core/version.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace kvfs {

Version::Version(Store* store, uint32_t store_index, std::string loc, ObjectHeader hdr,
                 std::shared_ptr<SpaceAccount> account, std::shared_ptr<SpaceAccount> store_account)
    : location(std::move(loc)),
      header(std::move(hdr)),
      store_(store),
      store_index_(store_index),
      size_(header.size),
      footprint_(ObjectFootprint(header.kind == ObjectKind::kFile ? header.size : 0)),
      account_(std::move(account)),
      store_account_(std::move(store_account)) {
  for (SpaceAccount* a : {account_.get(), store_account_.get()}) {
    if (!a) continue;
    a->used_bytes.fetch_add(footprint_);
    if (header.kind == ObjectKind::kFile) a->objects.fetch_add(1);
  }
}

Version::~Version() {
  if (fd_ >= 0) ::close(fd_);
  for (SpaceAccount* a : {account_.get(), store_account_.get()}) {
    if (!a) continue;
    a->used_bytes.fetch_sub(footprint_);
    if (header.kind == ObjectKind::kFile) a->objects.fetch_sub(1);
  }
}

Status Version::AddLease() {
  std::lock_guard<std::mutex> g(mu_);
  if (leases_ == 0) {
    Result<int> fd = store_->OpenForRead(location);
    if (!fd.ok()) return fd.status();
    struct stat st;
    if (file_id != 0 && (::fstat(*fd, &st) != 0 || static_cast<uint64_t>(st.st_ino) != file_id)) {
      // The location already holds another version (a replace is under way).
      ::close(*fd);
      return Status::Error(ESTALE, location + " holds another version");
    }
    fd_ = *fd;
    if (account_) account_->leased_bytes.fetch_add(footprint_);
    if (store_account_) store_account_->leased_bytes.fetch_add(footprint_);
  }
  ++leases_;
  return Status::Ok();
}

void Version::DropLease() {
  std::lock_guard<std::mutex> g(mu_);
  if (leases_ == 0) return;
  if (--leases_ == 0) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    checksums_.reset();
    if (account_) account_->leased_bytes.fetch_sub(footprint_);
    if (store_account_) store_account_->leased_bytes.fetch_sub(footprint_);
  }
}

Result<std::shared_ptr<const std::vector<uint64_t>>> Version::ChunkChecksums() {
  std::lock_guard<std::mutex> g(mu_);
  if (checksums_) return checksums_;
  if (fd_ < 0) return Status::Error(EBADF, "no lease");
  uint64_t count = ChunkCount(size_);
  uint64_t bytes = ChecksumTableBytes(size_);
  auto table = std::make_shared<std::vector<uint64_t>>(count);
  if (count > 0) {
    void* buf = nullptr;
    if (::posix_memalign(&buf, 4096, bytes) != 0) return Status::Error(ENOMEM, "checksum table");
    uint64_t done = 0;
    while (done < bytes) {
      ssize_t n = ::pread(fd_, static_cast<uint8_t*>(buf) + done, bytes - done,
                          static_cast<off_t>(ChecksumTableOffset(size_) + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : EBADMSG;  // a short file is damage, not a device error
        std::free(buf);
        return Status::FromErrno(err, "read checksum table of " + location);
      }
      done += static_cast<uint64_t>(n);
    }
    std::memcpy(table->data(), buf, count * 8);
    std::free(buf);
  }
  checksums_ = std::move(table);
  return checksums_;
}

uint32_t Version::leases() const {
  std::lock_guard<std::mutex> g(mu_);
  return leases_;
}

Result<Lease> Lease::Take(std::shared_ptr<Version> v) {
  KVFS_RETURN_IF_ERROR(v->AddLease());
  Lease l;
  l.version_ = std::move(v);
  return l;
}

Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    Reset();
    version_ = std::move(o.version_);
  }
  return *this;
}

void Lease::Reset() {
  if (version_) version_->DropLease();
  version_.reset();
}

}  // namespace kvfs
