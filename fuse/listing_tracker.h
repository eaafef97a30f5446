// ListingTracker: the directories whose listing the kernel may hold in its
// readdir cache (FOPEN_CACHE_DIR), so that a name appearing in a directory
// nobody listed since its last invalidation costs no invalidation (and the
// commit behind it no wait for one: see KernelNotifier).
//
// A directory is marked when a READDIR or READDIRPLUS of it starts being
// served, before the engine is asked for its entries: a listing that can
// miss a change was therefore marked before that change asks TakeMarked.
// TakeMarked(dir) answers whether dir is marked, or being listed now, and
// clears the mark unless a listing of it is still being served; the caller
// then invalidates the kernel's cached listing.
//
// Memory: one small entry per directory listed since its last invalidation.
// Thread-safety: every method may be called from any thread (one mutex).
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace kvfs {

class ListingTracker {
 public:
  void ServeBegin(uint64_t dir);
  void ServeEnd(uint64_t dir);
  bool TakeMarked(uint64_t dir);

  // Marks dir for as long as it lives: one READDIR being served.
  class Serving {
   public:
    Serving(ListingTracker* tracker, uint64_t dir) : tracker_(tracker), dir_(dir) {
      if (tracker_) tracker_->ServeBegin(dir_);
    }
    ~Serving() {
      if (tracker_) tracker_->ServeEnd(dir_);
    }
    Serving(const Serving&) = delete;
    Serving& operator=(const Serving&) = delete;

   private:
    ListingTracker* tracker_;
    uint64_t dir_;
  };

 private:
  struct State {
    bool marked = false;
    uint32_t in_flight = 0;
  };
  std::mutex mu_;
  std::unordered_map<uint64_t, State> dirs_;
};

}  // namespace kvfs
