// The engine's unit tests' common driver: opening an Engine over LocalStores
// in a scratch directory, and whole-file put/get through the Engine's file
// operations, the way the FUSE layer calls them. Test-only. The free
// functions are as thread-safe as the Engine calls they make; an
// EngineDriver is driven by one thread at a time.
#pragma once

#include <fcntl.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "core/engine.h"
#include "tests/unit/test_util.h"

namespace kvfs::testing {

// "OK", or the errno and message of a failed status, for test messages.
inline std::string ErrText(const Status& s) {
  return s.ok() ? "OK" : std::to_string(s.err()) + " " + s.ToString();
}

// Creates (or truncates) parent/name, writes data in odd-sized pieces,
// flushes (the commit) and releases. Returns the inode number.
inline Result<uint64_t> PutFile(Engine& e, uint64_t parent, const std::string& name, const std::vector<uint8_t>& data,
                                uint32_t mode = 0644, size_t piece = 128 * 1024 + 3) {
  Result<OpenResult> c = e.Create(parent, name, mode, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  if (!c.ok()) return c.status();
  FileHandle* h = c->handle;
  uint64_t ino = c->attr.ino;
  for (size_t off = 0; off < data.size();) {
    size_t n = std::min(piece, data.size() - off);
    Result<size_t> w = e.Write(h, off, data.data() + off, n);
    if (!w.ok() || *w != n) {
      e.Release(h);
      return w.ok() ? Status::Error(EIO, "short write") : w.status();
    }
    off += n;
  }
  Status f = e.Flush(h);
  e.Release(h);
  if (!f.ok()) return f;
  return ino;
}

// One Read call of [offset, offset+size) through a handle, its iov slices
// concatenated.
inline Result<std::vector<uint8_t>> ReadOnce(Engine& e, FileHandle* h, uint64_t offset, size_t size) {
  ReadReply reply;
  Status s = e.Read(h, offset, size, &reply);
  if (!s.ok()) return s;
  std::vector<uint8_t> out;
  for (const iovec& v : reply.iov) {
    const uint8_t* p = static_cast<const uint8_t*>(v.iov_base);
    out.insert(out.end(), p, p + v.iov_len);
  }
  if (out.size() != reply.bytes()) return Status::Error(EIO, "ReadReply::bytes() disagrees with its iov");
  return out;
}

// Reads a handle to end of file in `chunk`-sized requests.
inline Result<std::vector<uint8_t>> ReadAll(Engine& e, FileHandle* h, size_t chunk = 128 * 1024) {
  std::vector<uint8_t> all;
  for (int guard = 0; guard < 1000000; ++guard) {
    Result<std::vector<uint8_t>> part = ReadOnce(e, h, all.size(), chunk);
    if (!part.ok()) return part.status();
    if (part->empty()) return all;
    all.insert(all.end(), part->begin(), part->end());
  }
  return Status::Error(EIO, "read never reached end of file");
}

// Lookup + Open(O_RDONLY) + ReadAll + Release + Forget. EIO when the bytes
// read disagree with the size the lookup gave.
inline Result<std::vector<uint8_t>> GetFile(Engine& e, uint64_t parent, const std::string& name,
                                            size_t chunk = 128 * 1024) {
  Result<Attr> a = e.Lookup(parent, name);
  if (!a.ok()) return a.status();
  Result<OpenResult> o = e.Open(a->ino, O_RDONLY);
  if (!o.ok()) {
    e.Forget(a->ino, 1);
    return o.status();
  }
  Result<std::vector<uint8_t>> data = ReadAll(e, o->handle, chunk);
  e.Release(o->handle);
  e.Forget(a->ino, 1);
  if (data.ok() && data->size() != a->size) return Status::Error(EIO, "read size differs from the attributes");
  return data;
}

// An Engine over `stores` LocalStores under one scratch directory. Open
// again reuses the same store directories (a restart).
class EngineDriver {
 public:
  // Options the engine's unit tests start from: a small pool.
  static EngineOptions TestDefaults() {
    EngineOptions o;
    o.buffer_count = 16;
    return o;
  }

  Status Open(size_t stores = 1, uint64_t capacity = 1ULL << 30, EngineOptions options = TestDefaults()) {
    engine_.reset();
    if (!dir_.ok()) return Status::Error(EIO, "no scratch directory");
    roots_.clear();
    std::vector<std::unique_ptr<Store>> list;
    for (size_t i = 0; i < stores; ++i) {
      roots_.push_back(dir_.Sub("store" + std::to_string(i)));
      Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(roots_.back(), LocalStoreOptions{});
      if (!s.ok()) return s.status();
      list.push_back(std::move(*s));
    }
    options.capacity_bytes = capacity;
    Result<std::unique_ptr<Engine>> e = Engine::Open(options, std::move(list));
    if (!e.ok()) return e.status();
    engine_ = std::move(*e);
    return Status::Ok();
  }
  void Close() { engine_.reset(); }

  Engine& engine() { return *engine_; }
  bool open() const { return engine_ != nullptr; }
  const std::string& root(size_t i) const { return roots_.at(i); }
  const TempDir& dir() const { return dir_; }

  Result<uint64_t> Put(const std::string& name, const std::vector<uint8_t>& data, uint64_t parent = kRootIno) {
    return PutFile(*engine_, parent, name, data);
  }
  Result<std::vector<uint8_t>> Get(const std::string& name, uint64_t parent = kRootIno) {
    return GetFile(*engine_, parent, name);
  }

 private:
  TempDir dir_;
  std::vector<std::string> roots_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace kvfs::testing
