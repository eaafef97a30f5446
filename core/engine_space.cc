// Engine: its side of space management (SpaceHost): taking the object the
// policy gives up out of the index and off the store, and the shared tier's
// room requests. Limits, reservations and the evictor live in SpaceManager.
#include "core/engine.h"

#include <spdlog/spdlog.h>

#include <string>

#include "core/engine_internal.h"

namespace kvfs {

bool Engine::MayEvict(uint32_t si) const { return shared_->MayEvict(si); }

void Engine::AskForRoom(uint32_t si, int64_t delta) { shared_->AskForRoom(si, delta); }

bool Engine::WaitForRoom(uint32_t si) {
  return shared_->shared(si) && shared_->WaitForPass(options_.shared_refresh * 3);
}

uint64_t Engine::RoomAskedOfUs(uint32_t si) const { return shared_->RoomAskedOfUs(si); }

void Engine::TrackCommitted(Inode* inode, const Version* old_version) {
  if (old_version) space_->Untrack(old_version->store_index(), inode->ino);
  // Only files are evicted: directories and special records stay.
  if (inode->committed && inode->is_file()) {
    space_->Track(inode->committed->store_index(), inode->ino, inode->committed->footprint());
  }
}

void Engine::UntrackCommitted(Inode* inode) {
  if (inode->committed && inode->is_file()) space_->Untrack(inode->committed->store_index(), inode->ino);
}

bool Engine::EvictOne(uint32_t si, EvictionCause cause) {
  if (!MayEvict(si)) return false;
  uint64_t parent_ino = 0, ino = 0;
  std::string name;
  {
    // publish_mu_ keeps a new version of the same key from being renamed into
    // the location between our index update and the file removal.
    MutexLock publish(publish_mu_);
    std::shared_ptr<Version> victim;
    {
      MutexLock g(mu_);
      std::optional<uint64_t> id = space_->PickVictim(si, [&](uint64_t candidate) {
        mu_.AssertHeld();
        Inode* i = ns_.Get(candidate);
        return i && !i->is_dir && i->linked() && i->committed && i->committed->store_index() == si &&
               !i->committing && i->writers == 0 && i->committed->leases() == 0;
      });
      if (!id) return false;
      Inode* inode = ns_.Get(*id);
      parent_ino = inode->parent->ino;
      name = inode->name;
      ino = inode->ino;
      inode->evicted = true;
      ns_.Detach(inode);  // while it still has its version: Detach counts it as visible
      victim = std::move(inode->committed);
      ns_.Reap(inode);
    }
    // On a shared store another host may have put a new version there since
    // this index last looked: that one is not the victim.
    bool replaced = false;
    if (shared_->shared(si)) {
      Result<ListedObject> now = victim->store()->StatObject(victim->location());
      replaced = !now.ok() || now->file_id != victim->file_id;
    }
    Status s = replaced ? Status::Ok() : victim->store()->Remove(victim->location(), /*sync=*/false);
    if (!s.ok() && s.err() != ENOENT) spdlog::warn("evict {}: {}", victim->location(), s.message());
    space_->CountEviction(si, cause, victim->footprint());
    victim.reset();  // the space is back once no lease refers to it (none does)
  }
  // The kernel hears of it with no engine lock held.
  if (EngineObserver* o = observer_.load()) o->EntryEvicted(parent_ino, name, ino);
  return true;
}

size_t Engine::EvictNow() { return space_->EvictionPass(); }

}  // namespace kvfs
