#include "core/version.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace kvfs {

Version::Version(std::shared_ptr<const VersionHome> home, const std::string& location, std::string_view key,
                 const ObjectHeader& hdr)
    : home_(std::move(home)),
      size_(hdr.size),
      checksum_(hdr.checksum),
      format_(static_cast<uint8_t>(hdr.format)),
      kind_(hdr.kind) {
  SetLocation(location, key);
  set_header(hdr);
  for (SpaceAccount* a : {home_->total.get(), home_->store_account.get()}) {
    if (!a) continue;
    a->used_bytes.fetch_add(footprint());
    if (kind_ == ObjectKind::kFile) a->objects.fetch_add(1);
  }
}

Version::~Version() {
  LeaseState* st = lease_state_.load();
  if (st && st->fd >= 0) ::close(st->fd);
  delete st;
  for (SpaceAccount* a : {home_->total.get(), home_->store_account.get()}) {
    if (!a) continue;
    a->used_bytes.fetch_sub(footprint());
    if (kind_ == ObjectKind::kFile) a->objects.fetch_sub(1);
  }
}

ObjectHeader Version::header() const {
  ObjectHeader h;
  h.kind = kind_;
  h.generation = generation_;
  h.size = size_;
  h.checksum = checksum_;
  h.chunk_shift = chunk_shift_;
  h.mode = mode_;
  h.uid = uid_;
  h.gid = gid_;
  h.mtime_ns = mtime_ns_;
  h.ctime_ns = ctime_ns_;
  h.slot = slot_;
  h.format = format_;
  return h;
}

void Version::set_header(const ObjectHeader& h) {
  generation_ = h.generation;
  chunk_shift_ = static_cast<uint8_t>(h.chunk_shift);
  mode_ = h.mode;
  uid_ = h.uid;
  gid_ = h.gid;
  mtime_ns_ = h.mtime_ns;
  ctime_ns_ = h.ctime_ns;
  slot_ = static_cast<uint8_t>(h.slot);
}

std::string Version::location() const {
  return location_path_ ? *location_path_ : home_->store->LocationFor(location_hash_);
}

void Version::SetLocation(const std::string& location, std::string_view key) {
  KeyHash h = HashKey(key);
  if (home_->store->LocationFor(h) == location) {
    location_hash_ = h;
    location_path_.reset();
  } else {
    location_path_ = std::make_unique<std::string>(location);
  }
}

Version::LeaseState& Version::State() {
  LeaseState* st = lease_state_.load(std::memory_order_acquire);
  if (st) return *st;
  auto* fresh = new LeaseState;
  if (lease_state_.compare_exchange_strong(st, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread installed one first: st now points at it
  return *st;
}

int Version::fd() const {
  LeaseState* st = lease_state_.load(std::memory_order_acquire);
  return st ? st->fd : -1;
}

Status Version::AddLease() {
  LeaseState& st = State();
  MutexLock g(st.mu);
  if (st.leases == 0) {
    std::string loc = location();
    Result<int> fd = home_->store->OpenForRead(loc);
    if (!fd.ok()) return fd.status();
    if (file_id != 0) {
      Result<uint64_t> id = home_->store->FileIdOf(*fd);
      if (!id.ok()) {
        ::close(*fd);
        return Status::FromErrno(id.err(), "identify " + loc + ": " + id.status().message());
      }
      if (*id != file_id) {
        // The location already holds another version (a replace is under way).
        ::close(*fd);
        return Status::Error(ESTALE, loc + " holds another version");
      }
    }
    st.fd = *fd;
    if (home_->total) home_->total->leased_bytes.fetch_add(footprint());
    if (home_->store_account) home_->store_account->leased_bytes.fetch_add(footprint());
  }
  ++st.leases;
  return Status::Ok();
}

void Version::DropLease() {
  LeaseState* state = lease_state_.load(std::memory_order_acquire);
  if (!state) return;  // never leased
  LeaseState& st = *state;
  MutexLock g(st.mu);
  if (st.leases == 0) return;
  if (--st.leases == 0) {
    if (st.fd >= 0) ::close(st.fd);
    st.fd = -1;
    st.checksums.reset();
    if (home_->total) home_->total->leased_bytes.fetch_sub(footprint());
    if (home_->store_account) home_->store_account->leased_bytes.fetch_sub(footprint());
  }
}

Result<std::shared_ptr<const std::vector<uint64_t>>> Version::ChunkChecksums(IoExecutor& io) {
  LeaseState& st = State();
  MutexLock g(st.mu);
  if (st.checksums) return st.checksums;
  if (st.fd < 0) return Status::Error(EBADF, "no lease");
  uint64_t count = ChunkCount(size_);
  uint64_t bytes = ChecksumTableBytes(size_);
  auto table = std::make_shared<std::vector<uint64_t>>(count);
  if (count > 0) {
    void* raw = nullptr;
    if (::posix_memalign(&raw, 4096, bytes) != 0) return Status::Error(ENOMEM, "checksum table");
    // Owned by the batch: a read given up on at a deadline may still fill it.
    std::shared_ptr<uint8_t> buf(static_cast<uint8_t*>(raw), &std::free);
    auto batch = std::make_shared<DataBatch>();
    batch->Keep(buf);
    batch->Read(st.fd, buf.get(), bytes, ChecksumTableOffset(size_));
    Status s = home_->store->TransferData(io, batch);
    if (!s.ok()) return Status::FromErrno(s.err(), "read checksum table of " + location() + ": " + s.message());
    // A short file is damage, not a device error.
    if (batch->requests[0].done < bytes) return Status::Error(EBADMSG, "read checksum table of " + location() + ": short");
    ObjectHeader h;
    h.kind = kind_;
    h.format = format_;
    if (ChecksumIsOfTable(h) && DataChecksumOfTable(buf.get(), count) != checksum_) {
      return Status::Error(EBADMSG, "checksum table of " + location() + " does not match its header");
    }
    std::memcpy(table->data(), buf.get(), count * 8);
  }
  st.checksums = std::move(table);
  return st.checksums;
}

uint32_t Version::leases() const {
  LeaseState* st = lease_state_.load(std::memory_order_acquire);
  if (!st) return 0;
  MutexLock g(st->mu);
  return st->leases;
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
