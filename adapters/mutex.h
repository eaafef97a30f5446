// Lock types that Clang's thread-safety analysis understands (see
// adapters/thread_annotations.h): Mutex (a std::mutex), MutexLock (held for
// a scope, like std::lock_guard), UniqueLock (held for a scope but may be
// dropped and taken again, like std::unique_lock) and CondVar (a
// std::condition_variable that waits on a UniqueLock). Same costs as the
// standard types they wrap. Thread-safe as those are.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "adapters/thread_annotations.h"

namespace kvfs {

class KVFS_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() KVFS_ACQUIRE() { mu_.lock(); }
  void unlock() KVFS_RELEASE() { mu_.unlock(); }
  bool try_lock() KVFS_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis that the caller holds this lock (no effect at run
  // time). For callbacks run under a lock their caller took, e.g. a lambda
  // passed to a function that calls it with the index mutex held.
  void AssertHeld() const KVFS_THREAD_ANNOTATION(assert_capability(this)) {}

 private:
  friend class UniqueLock;
  std::mutex mu_;
};

class KVFS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) KVFS_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() KVFS_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

class KVFS_SCOPED_CAPABILITY UniqueLock {
 public:
  explicit UniqueLock(Mutex& mu) KVFS_ACQUIRE(mu) : lk_(mu.mu_) {}
  ~UniqueLock() KVFS_RELEASE() {}
  UniqueLock(const UniqueLock&) = delete;
  UniqueLock& operator=(const UniqueLock&) = delete;
  void lock() KVFS_ACQUIRE() { lk_.lock(); }
  void unlock() KVFS_RELEASE() { lk_.unlock(); }
  bool owns_lock() const { return lk_.owns_lock(); }

 private:
  friend class CondVar;
  std::unique_lock<std::mutex> lk_;
};

// Waits release the lock while blocked and hold it again when they return,
// as std::condition_variable's do.
class CondVar {
 public:
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }
  void wait(UniqueLock& lk) { cv_.wait(lk.lk_); }
  template <class Pred>
  void wait(UniqueLock& lk, Pred pred) {
    cv_.wait(lk.lk_, pred);
  }
  template <class Rep, class Period>
  std::cv_status wait_for(UniqueLock& lk, const std::chrono::duration<Rep, Period>& d) {
    return cv_.wait_for(lk.lk_, d);
  }
  template <class Rep, class Period, class Pred>
  bool wait_for(UniqueLock& lk, const std::chrono::duration<Rep, Period>& d, Pred pred) {
    return cv_.wait_for(lk.lk_, d, pred);
  }

 private:
  std::condition_variable cv_;
};

}  // namespace kvfs
