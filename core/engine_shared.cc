// Engine: stores shared with other hosts (Store::Shared(), a DFS directory).
//
// Other hosts add, replace and remove objects behind this engine's back. The
// engine keeps its index close to the store in four ways:
//  - read-through: a lookup that misses asks the store for the key's object;
//  - revalidation: an open compares the object file at the key's location
//    with the indexed one (one stat) and follows a replacement or removal;
//  - reconciliation: every `shared_refresh` the reconciler lists the store
//    (names and identities, no data) and applies what changed;
//  - the evictor lease: only the host holding it evicts (see DfsCluster); it
//    is renewed every `shared_refresh` by a thread of its own, so that a long
//    listing never lets it lapse;
//    the others admit commits while the shared capacity has room, and
//    publish their access counts for the holder's eviction policy.
// Objects are indexed only where their key says they belong, so an object
// being renamed by another host (header rewritten, file not yet moved) is
// never indexed under two names.
//
// Locks: as in engine.h. Remote changes are applied under publish_mu_ (so no
// local commit of the same location interleaves) after a fresh stat of the
// location, then under mu_; notifications go out with no lock held.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>

#include "core/engine.h"
#include "core/engine_internal.h"

namespace kvfs {
using namespace engine_detail;

void Engine::SendNotices(const std::vector<Notice>& notices) {
  EngineObserver* o = observer_.load();
  if (!o) return;
  for (const Notice& n : notices) {
    switch (n.kind) {
      case Notice::kAppeared: o->EntryAppeared(n.parent_ino, n.name, true); break;
      case Notice::kReplaced: o->VersionCommitted(n.ino); break;
      case Notice::kRemoved: o->EntryEvicted(n.parent_ino, n.name, n.ino); break;
    }
  }
}

Inode* Engine::ParentForKeyLocked(const std::string& key, std::string* leaf, std::vector<Notice>* notices) {
  Inode* cur = ns_.root();
  size_t start = 0;
  while (true) {
    size_t slash = key.find('/', start);
    std::string name = key.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (slash == std::string::npos) {
      *leaf = std::move(name);
      return CheckName(*leaf).ok() ? cur : nullptr;
    }
    if (!CheckName(name).ok()) return nullptr;
    Inode* next = ns_.Child(cur, name);
    if (!next) {
      Attributes implicit_dir;
      implicit_dir.mode = S_IFDIR | 0755;
      implicit_dir.atime_ns = implicit_dir.mtime_ns = implicit_dir.ctime_ns = NowNs();
      next = ns_.NewInode(true, implicit_dir);
      ns_.Attach(cur, next, name);
      if (notices) notices->push_back({Notice::kAppeared, cur->ino, name, next->ino});
    } else if (!next->is_dir) {
      return nullptr;
    }
    cur = next;
    start = slash + 1;
  }
}

void Engine::ApplyRemote(uint32_t si, const ScannedObject& obj, std::vector<Notice>* notices) {
  if (!obj.header.ok()) return;
  const ObjectHeader& h = obj.header.value();
  const bool is_dir = h.kind == ObjectKind::kDirectory;
  if (!HeaderProblem(h).empty()) return;  // not something kvfs wrote
  if (!is_dir && obj.file_bytes < ObjectFootprint(h.size)) return;  // not a whole object
  if (StoreIndexFor(h.key) != si || obj.location != stores_[si]->LocationFor(HashKey(h.key))) return;
  if (h.key.empty() && !is_dir) return;
  // Still the file at the location? (A local commit may have replaced it
  // since it was read; commits publish under publish_mu_, which we hold.)
  Result<ListedObject> now = stores_[si]->StatObject(obj.location);
  if (!now.ok() || now->file_id != obj.file_id) return;
  MutexLock g(mu_);
  next_generation_ = std::max(next_generation_, h.generation + 1);
  if (h.key.empty()) {
    if (!ns_.root()->committed) ns_.root()->committed = MakeVersion(si, obj.location, h, obj.file_id);
    return;
  }
  std::string leaf;
  Inode* parent = ParentForKeyLocked(h.key, &leaf, notices);
  if (!parent) return;
  Inode* existing = ns_.Child(parent, leaf);
  if (!existing) {
    Inode* inode = ns_.NewInode(is_dir, AttributesOf(h));
    inode->committed = MakeVersion(si, obj.location, h, obj.file_id);
    ns_.Attach(parent, inode, leaf);
    if (!is_dir) TrackCommitted(inode, nullptr);
    shared_->Count(si, SharedTier::Remote::kAdded);
    notices->push_back({Notice::kAppeared, parent->ino, leaf, inode->ino});
    return;
  }
  if (existing->is_dir != is_dir) return;  // a name clash between hosts: the local entry stays
  if (is_dir) {
    // A record written (again) by another host: index that file, so the
    // next pass does not read it again.
    if (!existing->committed || existing->committed->file_id != obj.file_id) {
      existing->committed = MakeVersion(si, obj.location, h, obj.file_id);
    }
    return;
  }
  if (existing->committed && existing->committed->location() == obj.location &&
      existing->committed->file_id == obj.file_id) {
    return;  // already indexed
  }
  if (existing->committing) return;  // a local commit of this key is landing; the next pass looks again
  bool was_visible = existing->visible();
  std::shared_ptr<Version> old = std::move(existing->committed);
  existing->committed = MakeVersion(si, obj.location, h, obj.file_id);
  existing->attr = AttributesOf(h);
  ns_.SetVisible(existing, was_visible);
  TrackCommitted(existing, old.get());
  if (was_visible) {
    shared_->Count(si, SharedTier::Remote::kReplaced);
    notices->push_back({Notice::kReplaced, 0, "", existing->ino});
  } else {
    shared_->Count(si, SharedTier::Remote::kAdded);
    notices->push_back({Notice::kAppeared, parent->ino, leaf, existing->ino});
  }
}

void Engine::RemoveRemote(uint64_t ino, const std::string& location, uint64_t file_id, std::vector<Notice>* notices) {
  MutexLock g(mu_);
  Inode* inode = ns_.Get(ino);
  if (!inode || !inode->linked() || inode->ino == kRootIno || !inode->committed) return;
  if (inode->committed->location() != location || inode->committed->file_id != file_id) return;
  uint32_t si = inode->committed->store_index();
  if (inode->is_dir) {
    // The record is gone; the directory stays while it has entries here.
    if (!inode->dir->empty()) {
      inode->committed.reset();
      return;
    }
  } else if (inode->committing || inode->writers > 0) {
    return;  // being written here: this host's commit decides
  }
  uint64_t parent_ino = inode->parent->ino;
  std::string name = inode->name;
  UntrackCommitted(inode);
  inode->evicted = true;
  ns_.Detach(inode);  // while it still has its version: Detach counts it as visible
  inode->last_version = inode->committed;
  inode->committed.reset();
  ns_.Reap(inode);
  shared_->Count(si, SharedTier::Remote::kRemoved);
  notices->push_back({Notice::kRemoved, parent_ino, name, ino});
}

Status Engine::ReadThrough(uint32_t si, const std::string& key) {
  Result<ScannedObject> obj = stores_[si]->ReadObject(stores_[si]->LocationFor(HashKey(key)));
  if (!obj.ok() && obj.err() != ENOENT) {
    return Status::Error(EIO, "the shared store did not answer: " + obj.status().message());
  }
  if (!obj.ok() || !obj->header.ok() || obj->header->key != key) return Status::Error(ENOENT, "no such key");
  std::vector<Notice> notices;
  {
    MutexLock publish(publish_mu_);
    ApplyRemote(si, *obj, &notices);
  }
  if (notices.empty()) return Status::Ok();
  shared_->Count(si, SharedTier::Remote::kReadThrough);
  // The kernel is looking this very name up, so it holds no entry to
  // invalidate (and an entry invalidation now would wait for the directory
  // lock that lookup holds). A listing of the directory it cached before
  // lacks the name, though: only that is dropped.
  EngineObserver* o = observer_.load();
  if (!o) return Status::Ok();
  for (const Notice& n : notices) {
    if (n.kind == Notice::kAppeared) o->ListingChanged(n.parent_ino);
    if (n.kind == Notice::kReplaced) o->VersionCommitted(n.ino);
  }
  return Status::Ok();
}

Status Engine::Revalidate(uint64_t ino) {
  if (!shared_->any()) return Status::Ok();
  uint32_t si;
  std::string location;
  uint64_t file_id;
  {
    MutexLock g(mu_);
    Inode* inode = ns_.Get(ino);
    if (!inode || inode->is_dir || !inode->committed || !inode->linked()) return Status::Ok();
    si = inode->committed->store_index();
    if (!stores_[si]->Shared()) return Status::Ok();
    location = inode->committed->location();
    file_id = inode->committed->file_id;
  }
  Result<ListedObject> now = stores_[si]->StatObject(location);
  if (now.ok() && now->file_id == file_id) return Status::Ok();
  if (!now.ok() && now.err() != ENOENT) {
    return Status::Error(EIO, "the shared store did not answer: " + now.status().message());
  }
  std::vector<Notice> notices;
  if (!now.ok()) {
    MutexLock publish(publish_mu_);
    Result<ListedObject> again = stores_[si]->StatObject(location);
    if (!again.ok() && again.err() == ENOENT) RemoveRemote(ino, location, file_id, &notices);
  } else {
    Result<ScannedObject> obj = stores_[si]->ReadObject(location);
    if (!obj.ok() && obj.err() != ENOENT) {
      return Status::Error(EIO, "the shared store did not answer: " + obj.status().message());
    }
    if (obj.ok()) {
      MutexLock publish(publish_mu_);
      ApplyRemote(si, *obj, &notices);
    }
  }
  SendNotices(notices);
  return Status::Ok();
}

bool Engine::ReconcileStore(uint32_t si, bool holder) {
  std::unordered_map<std::string, ListedObject> listed;
  std::mutex listed_mu;
  Status s = stores_[si]->List(
      [&](const ListedObject& o) {
        std::lock_guard<std::mutex> g(listed_mu);
        listed.emplace(o.location, o);
      },
      options_.scan_threads);
  if (!s.ok()) {
    spdlog::warn("{}: reconciliation failed: {}", stores_[si]->Describe(), s.message());
    return false;
  }
  struct Known {
    uint64_t ino;
    uint64_t file_id;
  };
  std::unordered_map<std::string, Known> known;
  {
    MutexLock g(mu_);
    ns_.ForEach([&](Inode* inode) {
      if (inode->linked() && inode->committed && inode->committed->store_index() == si) {
        known[inode->committed->location()] = Known{inode->ino, inode->committed->file_id};
      }
    });
  }
  std::vector<Notice> notices;
  for (const auto& [location, o] : listed) {
    auto it = known.find(location);
    if (it != known.end() && it->second.file_id == o.file_id) continue;
    Result<ScannedObject> obj = stores_[si]->ReadObject(location);
    if (!obj.ok()) continue;
    MutexLock publish(publish_mu_);
    ApplyRemote(si, *obj, &notices);
  }
  for (const auto& [location, k] : known) {
    if (listed.count(location)) continue;
    MutexLock publish(publish_mu_);
    Result<ListedObject> again = stores_[si]->StatObject(location);
    if (!again.ok() && again.err() == ENOENT) RemoveRemote(k.ino, location, k.file_id, &notices);
  }
  if (holder) {
    // For the holder's use of other hosts' access counts (ApplyRemoteAccesses).
    std::unordered_map<std::string, uint64_t> by_location;
    by_location.reserve(known.size());
    for (auto& [location, k] : known) by_location.emplace(location, k.ino);
    MutexLock g(mu_);
    inode_by_location_[si].swap(by_location);
  }
  SendNotices(notices);
  return true;
}

void Engine::ApplyRemoteAccesses(uint32_t si, const std::map<std::string, uint64_t>& counts) {
  MutexLock g(mu_);
  const std::unordered_map<std::string, uint64_t>& by_location = inode_by_location_[si];
  for (const auto& [location, n] : counts) {
    auto it = by_location.find(location);
    if (it == by_location.end()) continue;
    Inode* inode = ns_.Get(it->second);
    if (!inode || !inode->committed || inode->committed->location() != location) continue;
    space_->Access(si, inode->ino, static_cast<uint32_t>(std::min<uint64_t>(n, 3)));
  }
}

bool Engine::WaitForReconcile(std::chrono::milliseconds timeout) { return shared_->WaitForPass(timeout); }

}  // namespace kvfs
