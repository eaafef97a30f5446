// KernelNotifier: tells the kernel about namespace changes it did not make
// itself, so that its dentry cache never shows a stale answer.
//
//  - EntryAppeared (a key's first commit) is sent at once, from the thread
//    that committed, before close() returns: a negative entry cached by
//    another process's earlier stat must not hide the new key.
//  - EntryEvicted is queued and sent by the notifier's own thread, never
//    from a thread that is serving a request (the kernel takes the parent
//    directory's lock to process it).
//
// Thread-safety: the observer methods may be called from any thread with no
// engine lock held. Start() after the session is mounted; Stop() before it is
// destroyed.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "fuse/fuse_ops.h"

namespace kvfs {

class KernelNotifier final : public EngineObserver {
 public:
  explicit KernelNotifier(FuseContext* ctx) : ctx_(ctx) {}
  ~KernelNotifier() override { Stop(); }

  void Start();
  void Stop();
  void EntryAppeared(uint64_t parent_ino, const std::string& name) override;
  void EntryEvicted(uint64_t parent_ino, const std::string& name, uint64_t ino) override;
  // Sent at once: the kernel caches file attributes for entry_timeout, and a
  // stat after close() must show the committed version.
  void VersionCommitted(uint64_t ino) override;

 private:
  void Loop();
  void InvalidateEntry(uint64_t parent_ino, const std::string& name);

  FuseContext* ctx_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::pair<uint64_t, std::string>> queue_;  // guarded by mu_
  bool stop_ = false;                                    // guarded by mu_
  std::thread thread_;
};

}  // namespace kvfs
