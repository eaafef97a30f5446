// The engine's unit tests' common driver: opening an Engine over LocalStores
// in a scratch directory, and whole-file put/get through the Engine's file
// operations, the way the FUSE layer calls them (PutFile, GetFile, ReadAll,
// ReadOnce, with PutOptions for fixtures that write differently), plus
// ASSERT_OK. Fixtures with their own stores (faulty, shared, power loss)
// use the free functions on their own Engine. Test-only. The free
// functions are as thread-safe as the Engine calls they make; an
// EngineDriver is driven by one thread at a time.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "adapters/local_store.h"
#include "core/engine.h"
#include "tests/unit/test_util.h"

namespace kvfs::testing {

// Fails the test unless the Status expression is OK, printing its errno and
// message.
#define ASSERT_OK(expr)                                                                 \
  do {                                                                                  \
    const ::kvfs::Status assert_ok_status_ = (expr);                                    \
    ASSERT_TRUE(assert_ok_status_.ok()) << ::kvfs::testing::ErrText(assert_ok_status_); \
  } while (0)

// How WriteData and PutFile write. The defaults suit most tests; a fixture
// that needs to mirror a particular writer sets the fields it cares about.
struct PutOptions {
  uint32_t mode = 0644;
  // Bytes per Write call. The default is odd, so pieces straddle chunk and
  // buffer edges; kOneWrite writes everything in one call.
  size_t piece = 128 * 1024 + 3;
  uint64_t owner = 0;   // the lock owner given to Write and Flush (0: unknown)
  bool fsync = false;   // Fsync the handle before the Flush
  bool forget = false;  // drop the lookup reference that Create took, at the end
};
inline constexpr size_t kOneWrite = SIZE_MAX;

// Writes data through h at offset `at`, in options.piece-sized calls.
inline Status WriteData(Engine& e, FileHandle* h, const std::vector<uint8_t>& data, const PutOptions& options = {},
                        uint64_t at = 0) {
  for (size_t off = 0; off < data.size();) {
    size_t n = std::min(options.piece, data.size() - off);
    Result<size_t> w = e.Write(h, at + off, data.data() + off, n, options.owner);
    if (!w.ok()) return w.status();
    if (*w != n) return Status::Error(EIO, "short write");
    off += n;
  }
  return Status::Ok();
}

// Creates (or truncates) parent/name and writes data; the handle stays open
// and nothing is committed yet. When a write fails, the handle is released
// (and with options.forget, the lookup reference dropped) before returning
// the error.
inline Result<OpenResult> CreateAndWrite(Engine& e, uint64_t parent, const std::string& name,
                                         const std::vector<uint8_t>& data, const PutOptions& options = {}) {
  Result<OpenResult> c = e.Create(parent, name, options.mode, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  if (!c.ok()) return c.status();
  Status w = WriteData(e, c->handle, data, options);
  if (!w.ok()) {
    e.Release(c->handle);
    if (options.forget) e.Forget(c->attr.ino, 1);
    return w;
  }
  return c;
}

// Creates (or truncates) parent/name, writes data, optionally fsyncs,
// flushes (the commit) and releases. Returns the inode number, or the first
// error.
inline Result<uint64_t> PutFile(Engine& e, uint64_t parent, const std::string& name, const std::vector<uint8_t>& data,
                                const PutOptions& options = {}) {
  Result<OpenResult> c = CreateAndWrite(e, parent, name, data, options);
  if (!c.ok()) return c.status();
  FileHandle* h = c->handle;
  uint64_t ino = c->attr.ino;
  Status s = options.fsync ? e.Fsync(h) : Status::Ok();
  if (s.ok()) s = e.Flush(h, options.owner);
  e.Release(h);
  if (options.forget) e.Forget(ino, 1);
  if (!s.ok()) return s;
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
// read disagree with the size the open gave (on a shared store an open may
// find a newer version than the lookup did).
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
  if (data.ok() && data->size() != o->attr.size) return Status::Error(EIO, "read size differs from the attributes");
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
    options.space.capacity_bytes = capacity;
    Result<std::unique_ptr<Engine>> e = Engine::Start(options, std::move(list));
    if (!e.ok()) return e.status();
    engine_ = std::move(*e);
    return Status::Ok();
  }
  void Close() { engine_.reset(); }
  // Lets go of the engine without destroying it, for a test that leaves
  // threads stuck inside it: the rest of the suite can still run.
  void Abandon() { (void)engine_.release(); }

  Engine& engine() { return *engine_; }
  bool open() const { return engine_ != nullptr; }
  // The store directories of the last Open (kept after Close).
  const std::string& root(size_t i) const { return roots_.at(i); }
  const std::vector<std::string>& roots() const { return roots_; }
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

// Starts an engine with options o over one LocalStore in directory dir,
// wrapped in a W (a store wrapper built from the LocalStore, e.g. one that
// records or alters calls); *wrapper points at it for as long as the engine
// lives.
template <class W>
Result<std::unique_ptr<Engine>> StartOverWrappedLocalStore(const std::string& dir, const EngineOptions& o,
                                                           W** wrapper) {
  Result<std::unique_ptr<LocalStore>> local = LocalStore::Open(dir, LocalStoreOptions{});
  if (!local.ok()) return local.status();
  auto owned = std::make_unique<W>(std::move(*local));
  *wrapper = owned.get();
  std::vector<std::unique_ptr<Store>> stores;
  stores.push_back(std::move(owned));
  return Engine::Start(o, std::move(stores));
}

// Records what an Engine tells its observer (EngineObserver), under mu.
class RecordingObserver : public EngineObserver {
 public:
  void EntryAppeared(uint64_t parent_ino, const std::string& name, bool) override {
    std::lock_guard<std::mutex> g(mu);
    appeared.emplace_back(parent_ino, name);
  }
  void EntryEvicted(uint64_t parent_ino, const std::string& name, uint64_t ino) override {
    std::lock_guard<std::mutex> g(mu);
    evicted.emplace_back(parent_ino, name);
  }
  void VersionCommitted(uint64_t ino) override {
    std::lock_guard<std::mutex> g(mu);
    committed.push_back(ino);
  }
  void ListingChanged(uint64_t dir_ino) override {
    std::lock_guard<std::mutex> g(mu);
    listings_changed.push_back(dir_ino);
  }
  std::mutex mu;
  std::vector<std::pair<uint64_t, std::string>> appeared, evicted;
  std::vector<uint64_t> committed, listings_changed;
};

}  // namespace kvfs::testing
