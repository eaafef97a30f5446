// Engine: rebuilding the index from the stores at open.
#include "core/engine.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <malloc.h>
#include <xxhash.h>

#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>
#include <thread>

#include "core/engine_internal.h"

namespace kvfs {
using namespace engine_detail;

// ---------------------------------------------------------------------------
// Rebuild: the index is a function of what the stores hold.

Status Engine::Rebuild() {
  struct Found {
    uint32_t store_index;
    std::string location;
    ObjectHeader header;
    uint64_t file_id;
  };
  std::mutex found_mu;
  std::map<std::string, Found> best;  // by key
  std::vector<Found> losers;
  uint64_t skipped = 0;
  uint64_t scanned = 0;
  uint64_t max_generation = 0;
  std::vector<Status> scan_status(stores_.size());
  std::vector<std::thread> threads;
  int64_t started = NowNs();
  for (uint32_t si = 0; si < stores_.size(); ++si) {
    threads.emplace_back([&, si] {
      scan_status[si] = stores_[si]->Scan(
          [&](const ScannedObject& obj) {
            if (!obj.header.ok()) {
              spdlog::warn("{}: skipping {}: {}", stores_[si]->Describe(), obj.location, obj.header.status().message());
              std::lock_guard<std::mutex> g(found_mu);
              ++skipped;
              return;
            }
            const ObjectHeader& h = obj.header.value();
            if (std::string bad = HeaderProblem(h); !bad.empty()) {
              // Not something kvfs wrote: a forged or damaged header. fsck
              // reports it; the mount leaves it alone.
              spdlog::warn("{}: skipping {}: {}", stores_[si]->Describe(), obj.location, bad);
              std::lock_guard<std::mutex> g(found_mu);
              ++skipped;
              return;
            }
            if (h.kind != ObjectKind::kDirectory && obj.file_bytes < ObjectFootprint(h.size)) {
              spdlog::warn("{}: skipping {}: file holds {} bytes, header says {}", stores_[si]->Describe(),
                           obj.location, obj.file_bytes, ObjectFootprint(h.size));
              std::lock_guard<std::mutex> g(found_mu);
              ++skipped;
              return;
            }
            if (stores_[si]->Shared() && obj.location != stores_[si]->LocationFor(HashKey(h.key))) {
              // On a shared store only objects where their key says are
              // indexed: another host may be renaming this one right now.
              return;
            }
            std::lock_guard<std::mutex> g(found_mu);
            if (++scanned % 100000 == 0) {
              spdlog::info("rebuild: {} objects scanned", scanned);
              if (options_.on_scan_progress) options_.on_scan_progress(scanned);
            }
            max_generation = std::max(max_generation, h.generation);
            Found f{si, obj.location, h, obj.file_id};
            auto it = best.find(h.key);
            if (it == best.end()) {
              best.emplace(h.key, std::move(f));
            } else if (it->second.header.generation < h.generation) {
              losers.push_back(std::move(it->second));
              it->second = std::move(f);
            } else {
              losers.push_back(std::move(f));
            }
          },
          options_.scan_threads);
    });
  }
  for (auto& t : threads) t.join();
  for (uint32_t si = 0; si < stores_.size(); ++si) {
    if (!scan_status[si].ok()) return Status::Error(scan_status[si].err(), stores_[si]->Describe() + ": scan failed: " + scan_status[si].message());
  }
  // Older copies of a key are leftovers of an interrupted rename: the newest wins.
  for (const Found& f : losers) {
    spdlog::info("{}: removing superseded copy {} of '{}'", stores_[f.store_index]->Describe(), f.location, f.header.key);
    Status removed = stores_[f.store_index]->Remove(f.location);
    // Left in place, the copy is found (and loses) again at the next start.
    if (!removed.ok() && removed.err() != ENOENT) {
      spdlog::warn("{}: cannot remove superseded copy {}: {}", stores_[f.store_index]->Describe(), f.location,
                   removed.message());
    }
  }

  // A rename interrupted between its header rewrite and its file move leaves
  // the object at the old key's place: put it where its key says.
  for (auto& [key, f] : best) {
    if (f.store_index != StoreIndexFor(key)) continue;  // a cross-store leftover: indexed where it is
    std::string expected = stores_[f.store_index]->LocationFor(HashKey(key));
    if (f.location == expected) continue;
    Status s = stores_[f.store_index]->Move(f.location, expected, true);
    if (s.ok()) {
      spdlog::info("{}: moved '{}' from {} to {}", stores_[f.store_index]->Describe(), key, f.location, expected);
      f.location = expected;
    } else {
      spdlog::warn("{}: cannot move '{}' to {}: {}", stores_[f.store_index]->Describe(), key, expected, s.message());
    }
  }

  MutexLock g(mu_);
  next_generation_ = max_generation + 1;
  ns_.root()->attr.atime_ns = ns_.root()->attr.mtime_ns = ns_.root()->attr.ctime_ns = NowNs();
  // Each entry of `best` is handed over to the index and freed as it goes,
  // so the scan's copies do not stay interleaved with the index in memory.
  while (!best.empty()) {  // sorted: a directory's record precedes its children
    auto node = best.extract(best.begin());
    const std::string& key = node.key();
    Found& f = node.mapped();
    Attributes attr = AttributesOf(f.header);
    bool is_dir = f.header.kind == ObjectKind::kDirectory;
    if (key.empty()) {
      if (is_dir) {
        ns_.root()->attr = attr;
        ns_.root()->committed = MakeVersion(f.store_index, f.location, f.header, f.file_id);
      }
      continue;
    }
    std::string name;
    if (Inode* cur = ParentForKeyLocked(key, &name)) {
      Inode* existing = ns_.Child(cur, name);
      if (!existing) {
        Inode* inode = ns_.NewInode(is_dir, attr);
        inode->committed = MakeVersion(f.store_index, f.location, f.header, f.file_id);
        ns_.Attach(cur, inode, std::move(name));
        if (!is_dir) TrackCommitted(inode, nullptr);
        continue;
      }
      if (existing->is_dir && is_dir && !existing->committed) {
        existing->attr = attr;
        existing->committed = MakeVersion(f.store_index, f.location, f.header, f.file_id);
        continue;
      }
    }
    spdlog::warn("{}: object '{}' conflicts with another entry; left on the store, not indexed",
                 stores_[f.store_index]->Describe(), key);
    ++skipped;
  }
  // Hand the scan's freed memory back to the system (a large store's scan
  // would otherwise stay in the daemon's resident set).
  ::malloc_trim(0);
  double secs = static_cast<double>(NowNs() - started) / 1e9;
  spdlog::info("index rebuilt from {} store(s): {} objects, {} skipped, {:.2f}s", stores_.size(),
               account_->objects.load(), skipped, secs);
  return Status::Ok();
}

}  // namespace kvfs
