#include "fuse/fuse_ops.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuse/debug_xattrs.h"
#include "fuse/device_io.h"

namespace kvfs {
namespace {

// The calling thread's identity for the engine (FUSE passes the thread id
// as the request's pid), tagged so that it never equals a lock owner. Direct
// writes carry the writing process's lock owner; the kernel's page-cache
// writes carry none, so those are recorded under this identity, which a
// FLUSH or GETATTR from the same thread matches.
constexpr uint64_t kThreadOwnerTag = 1ULL << 63;
uint64_t ThreadOwner(fuse_req_t req) { return kThreadOwnerTag | static_cast<uint32_t>(fuse_req_ctx(req)->pid); }

FuseContext* Ctx(fuse_req_t req) { return static_cast<FuseContext*>(fuse_req_userdata(req)); }
Engine* Eng(fuse_req_t req) { return Ctx(req)->engine; }
FileHandle* Handle(fuse_file_info* fi) { return fi ? reinterpret_cast<FileHandle*>(fi->fh) : nullptr; }

timespec ToTimespec(int64_t ns) {
  timespec ts;
  ts.tv_sec = ns / 1000000000LL;
  ts.tv_nsec = ns % 1000000000LL;
  return ts;
}

int64_t FromTimespec(const timespec& ts) { return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec; }

struct stat ToStat(const Attr& a) {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_rdev = a.rdev;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_blksize = 1 << 20;
  st.st_atim = ToTimespec(a.atime_ns);
  st.st_mtim = ToTimespec(a.mtime_ns);
  st.st_ctim = ToTimespec(a.ctime_ns);
  return st;
}

// Committed file attributes may be cached: kvfs invalidates them at every
// commit, and the kernel itself drops them when a writer writes or truncates.
double AttrTimeout(fuse_req_t req, const Attr& a) {
  if (a.size_in_flux) return 0;  // writers and everyone else see different sizes
  return S_ISDIR(a.mode) ? Ctx(req)->dir_attr_timeout : Ctx(req)->entry_timeout;
}

fuse_entry_param ToEntry(fuse_req_t req, const Attr& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = a.ino;
  e.generation = 1;
  e.attr = ToStat(a);
  e.attr_timeout = AttrTimeout(req, a);
  e.entry_timeout = Ctx(req)->entry_timeout;
  return e;
}

void ReplyStatus(fuse_req_t req, const Status& s) { fuse_reply_err(req, s.ok() ? 0 : s.err()); }

void OnInit(void* userdata, fuse_conn_info* conn) {
  auto* ctx = static_cast<FuseContext*>(userdata);
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  // A link's target never changes (a new link is a new inode): the kernel
  // may keep it.
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // kvfs decides when cached pages and listings are stale (FOPEN_KEEP_CACHE
  // per open, invalidations at commits and evictions); the kernel's own
  // guess from a changed mtime would drop the pages a writer just left.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->max_write = ctx->max_write;
  conn->max_read = 0;
  conn->max_background = ctx->max_background;
  conn->congestion_threshold = ctx->max_background * 3 / 4;
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  bool refused_pending = false;
  Result<Attr> a = Eng(req)->Lookup(parent, name, ThreadOwner(req), &refused_pending);
  if (a.ok()) {
    fuse_entry_param e = ToEntry(req, *a);
    // A key still being written, found by its creator: nobody else may
    // find the name through the kernel's cache.
    if (a->pending) e.entry_timeout = 0;
    fuse_reply_entry(req, &e);
  } else if (a.err() == ENOENT) {
    // Negative entry: the kernel remembers the miss for negative_timeout,
    // except for a key being written, whose creator must still find it.
    fuse_entry_param e;
    std::memset(&e, 0, sizeof(e));
    e.ino = 0;
    e.entry_timeout = refused_pending ? 0 : Ctx(req)->negative_timeout;
    fuse_reply_entry(req, &e);
  } else {
    fuse_reply_err(req, a.err());
  }
}

void OnForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Eng(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OnForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Eng(req)->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Result<Attr> a = Eng(req)->GetAttr(ino, Handle(fi), ThreadOwner(req));
  if (!a.ok()) return ReplyStatus(req, a.status());
  struct stat st = ToStat(*a);
  fuse_reply_attr(req, &st, AttrTimeout(req, *a));
}

void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  SetAttrRequest r;
  if (to_set & FUSE_SET_ATTR_MODE) r.mode = attr->st_mode;
  if (to_set & FUSE_SET_ATTR_UID) r.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) r.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) r.size = static_cast<uint64_t>(attr->st_size);
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) r.atime_ns = FromTimespec(now);
  else if (to_set & FUSE_SET_ATTR_ATIME) r.atime_ns = FromTimespec(attr->st_atim);
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) r.mtime_ns = FromTimespec(now);
  else if (to_set & FUSE_SET_ATTR_MTIME) r.mtime_ns = FromTimespec(attr->st_mtim);
  Result<Attr> a = Eng(req)->SetAttr(ino, r, Handle(fi));
  if (a.ok() && RequestClearsSetId()) {
    // A truncate or chown that must drop the set-ID bits (FATTR_KILL_SUIDGID).
    Status cleared = Eng(req)->ClearSetIdBits(ino);
    if (!cleared.ok()) return ReplyStatus(req, cleared);
    a = Eng(req)->GetAttr(ino, Handle(fi), ThreadOwner(req));
  }
  if (!a.ok()) return ReplyStatus(req, a.status());
  struct stat st = ToStat(*a);
  fuse_reply_attr(req, &st, AttrTimeout(req, *a));
}

void OnMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  const fuse_ctx* c = fuse_req_ctx(req);
  Result<Attr> a = Eng(req)->Mkdir(parent, name, mode, c->uid, c->gid);
  if (!a.ok()) return ReplyStatus(req, a.status());
  fuse_entry_param e = ToEntry(req, *a);
  fuse_reply_entry(req, &e);
}

void OnRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) { ReplyStatus(req, Eng(req)->Rmdir(parent, name)); }

void OnUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) { ReplyStatus(req, Eng(req)->Unlink(parent, name)); }

void OnRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  ReplyStatus(req, Eng(req)->Rename(parent, name, newparent, newname, flags));
}

// Hard links are refused with EPERM, the errno Linux documents for a
// filesystem that does not support them: a key names one object.
void OnLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EPERM); }

void ReplyNewEntry(fuse_req_t req, const Result<Attr>& a) {
  if (!a.ok()) return ReplyStatus(req, a.status());
  fuse_entry_param e = ToEntry(req, *a);
  fuse_reply_entry(req, &e);
}

void OnSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  const fuse_ctx* c = fuse_req_ctx(req);
  ReplyNewEntry(req, Eng(req)->Symlink(parent, name, target, c->uid, c->gid));
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) {
  Result<std::string> target = Eng(req)->Readlink(ino);
  if (!target.ok()) return ReplyStatus(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OnMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  const fuse_ctx* c = fuse_req_ctx(req);
  // FUSE carries the device number in the kernel's 32-bit encoding, which
  // stat's reply carries back unchanged.
  ReplyNewEntry(req, Eng(req)->Mknod(parent, name, mode, static_cast<uint32_t>(rdev), c->uid, c->gid));
}

void FillOpenReply(fuse_req_t req, fuse_file_info* fi, const OpenResult& r) {
  fi->fh = reinterpret_cast<uint64_t>(r.handle);
  // The engine decides which handles the kernel may serve from its page
  // cache, and whether pages cached before this open are still this
  // handle's bytes.
  fi->direct_io = r.page_cache ? 0 : 1;
  fi->keep_cache = r.keep_cache ? 1 : 0;
  // A read-only handle's FLUSH does nothing in kvfs: spare its round trip.
  fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY ? 1 : 0;
}

// Charges an open to its user's quota (see HandleQuota); the reply errno on
// refusal, else 0. Pair with Bind or Unreserve.
int ReserveHandle(fuse_req_t req) {
  HandleQuota* q = Ctx(req)->handle_quota;
  if (!q) return 0;
  Status s = q->Reserve(fuse_req_ctx(req)->uid);
  if (s.ok()) return 0;
  // Logged for the 1st, 2nd, 4th, 8th... refusal: a user hammering the
  // mount cannot flood the log.
  uint64_t n = q->refused();
  if ((n & (n - 1)) == 0) spdlog::warn("open refused ({} refusals so far): {}", n, s.message());
  return s.err();
}

void UnreserveHandle(fuse_req_t req) {
  if (HandleQuota* q = Ctx(req)->handle_quota) q->Unreserve(fuse_req_ctx(req)->uid);
}

void BindHandle(fuse_req_t req, const fuse_file_info* fi) {
  if (HandleQuota* q = Ctx(req)->handle_quota) q->Bind(fi->fh, fuse_req_ctx(req)->uid);
}

void ReleaseHandle(fuse_req_t req, const fuse_file_info* fi) {
  if (HandleQuota* q = Ctx(req)->handle_quota) q->Release(fi->fh);
}

void OnCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  const fuse_ctx* c = fuse_req_ctx(req);
  if (int err = ReserveHandle(req)) return (void)fuse_reply_err(req, err);
  Result<OpenResult> r = Eng(req)->Create(parent, name, mode, fi->flags, c->uid, c->gid, ThreadOwner(req));
  if (!r.ok()) {
    UnreserveHandle(req);
    return ReplyStatus(req, r.status());
  }
  if (!r->created && RequestClearsSetId()) {
    // O_TRUNC of an existing file by a caller without CAP_FSETID.
    Status cleared = Eng(req)->ClearSetIdBits(r->attr.ino);
    if (cleared.ok()) {
      Result<Attr> now = Eng(req)->GetAttr(r->attr.ino, r->handle, ThreadOwner(req));
      if (now.ok()) r->attr = *now;
    } else {
      spdlog::warn("could not clear the set-ID bits of inode {}: {}", r->attr.ino, cleared.message());
    }
  }
  FillOpenReply(req, fi, *r);
  BindHandle(req, fi);
  fuse_entry_param e = ToEntry(req, r->attr);
  // The new key is not committed yet: do not let the kernel keep the name.
  e.entry_timeout = 0;
  // A new key's inode is the creator's alone until its commit, which
  // invalidates these attributes; meanwhile the kernel keeps the size its
  // own writes made. Caching them saves the GETATTR of the permission check
  // at open. An existing key's inode is shared with its readers: its
  // attributes (the new version's size) must not be cached.
  e.attr_timeout = r->created ? Ctx(req)->entry_timeout : 0;
  if (fuse_reply_create(req, &e, fi) != 0) {
    // The kernel dropped the request (the caller was interrupted): undo.
    ReleaseHandle(req, fi);
    Eng(req)->Abandon(r->handle);
    Eng(req)->Forget(r->attr.ino, 1);
  }
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (int err = ReserveHandle(req)) return (void)fuse_reply_err(req, err);
  Result<OpenResult> r = Eng(req)->Open(ino, fi->flags, ThreadOwner(req));
  if (!r.ok()) {
    UnreserveHandle(req);
    return ReplyStatus(req, r.status());
  }
  if (RequestClearsSetId()) {
    // O_TRUNC by a caller without CAP_FSETID (FUSE_OPEN_KILL_SUIDGID).
    Status cleared = Eng(req)->ClearSetIdBits(ino);
    if (!cleared.ok()) {
      Eng(req)->Release(r->handle);
      UnreserveHandle(req);
      return ReplyStatus(req, cleared);
    }
  }
  FillOpenReply(req, fi, *r);
  BindHandle(req, fi);
  if (fuse_reply_open(req, fi) != 0) {
    ReleaseHandle(req, fi);
    Eng(req)->Abandon(r->handle);
  }
}

void OnRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  ReadReply reply;
  Status s = Eng(req)->Read(Handle(fi), static_cast<uint64_t>(off), size, &reply);
  if (!s.ok()) return ReplyStatus(req, s);
  if (reply.iov.empty()) {
    fuse_reply_buf(req, nullptr, 0);
  } else {
    fuse_reply_iov(req, reply.iov.data(), static_cast<int>(reply.iov.size()));
  }
}

void OnWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  if (RequestClearsSetId()) {
    // A writer without CAP_FSETID (FUSE_WRITE_KILL_SUIDGID): the set-ID bits go first.
    Status cleared = Eng(req)->ClearSetIdBits(ino);
    if (!cleared.ok()) return ReplyStatus(req, cleared);
  }
  uint64_t owner = fi->lock_owner != 0 ? fi->lock_owner : ThreadOwner(req);
  Result<size_t> n = Eng(req)->Write(Handle(fi), static_cast<uint64_t>(off), buf, size, owner, ThreadOwner(req));
  if (!n.ok()) return ReplyStatus(req, n.status());
  fuse_reply_write(req, *n);
}

void OnFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  if (offset < 0 || length <= 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  uint64_t owner = fi->lock_owner != 0 ? fi->lock_owner : ThreadOwner(req);
  ReplyStatus(req, Eng(req)->Fallocate(Handle(fi), mode, static_cast<uint64_t>(offset), static_cast<uint64_t>(length),
                                       owner, ThreadOwner(req)));
}

void OnFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  ReplyStatus(req, Eng(req)->Flush(Handle(fi), fi->lock_owner, ThreadOwner(req)));
}

void OnFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) { ReplyStatus(req, Eng(req)->Fsync(Handle(fi))); }

void OnRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  // The quota first: once the engine frees the handle, its address (fi->fh)
  // may be handed to another open at once.
  ReleaseHandle(req, fi);
  Eng(req)->Release(Handle(fi));
  fuse_reply_err(req, 0);
}

// The kernel (READDIRPLUS_AUTO) asks for the first part of every listing
// with attributes, whether or not anyone will stat the entries; later parts
// only after lookups in the directory advised it. With a reader's large
// buffer (glibc sizes it from st_blksize: 1 MiB here) that first part
// holds thousands of entries, and the kernel updates a dentry and an inode
// for each. So a READDIRPLUS at offset 0 is answered with at most this many
// bytes of entries (about 200); the rest of the listing comes in plain
// READDIRs, or in full READDIRPLUS replies once lookups ask for them.
constexpr size_t kSpeculativePlusBytes = 32 << 10;

void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  // Marked before the engine is asked (see ListingTracker).
  ListingTracker::Serving serving(Ctx(req)->readdir_cache ? Ctx(req)->listings : nullptr, ino);
  if (plus && off == 0) size = std::min(size, kSpeculativePlusBytes);
  // Not zeroed: each entry is written whole, padding included.
  std::unique_ptr<char[]> buf(new char[size]);
  size_t used = 0;
  Status s = Eng(req)->ReadDir(ino, static_cast<uint64_t>(off), plus, [&](const DirEntry& d) {
    size_t need;
    if (plus) {
      fuse_entry_param e = ToEntry(req, d.attr);
      if (d.name == "." || d.name == "..") {
        // The kernel does not take references on these.
        e.ino = 0;
      }
      need = fuse_add_direntry_plus(req, buf.get() + used, size - used, d.name.c_str(), &e,
                                    static_cast<off_t>(d.next_offset));
    } else {
      // A plain entry carries only the inode number and the file type.
      struct stat st;
      st.st_ino = d.attr.ino;
      st.st_mode = d.attr.mode;
      need = fuse_add_direntry(req, buf.get() + used, size - used, d.name.c_str(), &st,
                               static_cast<off_t>(d.next_offset));
    }
    if (need > size - used) return false;
    used += need;
    return true;
  });
  if (!s.ok()) return ReplyStatus(req, s);
  fuse_reply_buf(req, buf.get(), used);
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  fi->fh = 0;
  if (Ctx(req)->readdir_cache) {
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
  }
  fuse_reply_open(req, fi);
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  ReadDirCommon(req, ino, size, off, false);
}

void OnReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  ReadDirCommon(req, ino, size, off, true);
}

void OnStatfs(fuse_req_t req, fuse_ino_t) {
  EngineStats s = Eng(req)->Stats();
  struct statvfs sv;
  std::memset(&sv, 0, sizeof(sv));
  const uint64_t bs = 4096;
  uint64_t free_bytes = s.capacity_bytes > s.used_bytes ? s.capacity_bytes - s.used_bytes : 0;
  uint64_t fs_free = 0;
  for (const StoreStats& st : s.stores) fs_free += st.fs_free_bytes;
  free_bytes = std::min(free_bytes, fs_free);
  sv.f_bsize = bs;
  sv.f_frsize = bs;
  sv.f_blocks = s.capacity_bytes / bs;
  sv.f_bfree = free_bytes / bs;
  sv.f_bavail = free_bytes / bs;
  sv.f_files = s.inodes + free_bytes / bs;
  sv.f_ffree = free_bytes / bs;
  sv.f_favail = sv.f_ffree;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

void ReplyXattr(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) fuse_reply_xattr(req, value.size());
  else if (size < value.size()) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, value.data(), value.size());
}

void OnGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Result<std::string> v = GetDebugXattr(*Eng(req), ino, name);
  if (!v.ok()) return ReplyStatus(req, v.status());
  ReplyXattr(req, *v, size);
}

void OnListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Result<std::vector<std::string>> names = ListDebugXattrs(*Eng(req), ino);
  if (!names.ok()) return ReplyStatus(req, names.status());
  std::string list;
  for (const std::string& n : *names) {
    list += n;
    list.push_back('\0');
  }
  ReplyXattr(req, list, size);
}

void OnSetxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { fuse_reply_err(req, ENOTSUP); }
void OnRemovexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, ENOTSUP); }

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.forget = OnForget;
  ops.forget_multi = OnForgetMulti;
  ops.getattr = OnGetattr;
  ops.setattr = OnSetattr;
  ops.mkdir = OnMkdir;
  ops.rmdir = OnRmdir;
  ops.unlink = OnUnlink;
  ops.rename = OnRename;
  ops.link = OnLink;
  ops.symlink = OnSymlink;
  ops.readlink = OnReadlink;
  ops.mknod = OnMknod;
  ops.create = OnCreate;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.write = OnWrite;
  ops.flush = OnFlush;
  ops.fallocate = OnFallocate;
  ops.fsync = OnFsync;
  ops.release = OnRelease;
  ops.opendir = OnOpendir;
  ops.readdir = OnReaddir;
  ops.readdirplus = OnReaddirplus;
  ops.statfs = OnStatfs;
  ops.getxattr = OnGetxattr;
  ops.listxattr = OnListxattr;
  ops.setxattr = OnSetxattr;
  ops.removexattr = OnRemovexattr;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& KvfsOperations() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace kvfs
