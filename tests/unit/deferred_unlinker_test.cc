// DeferredUnlinker: files are unlinked by its thread, counted as pending
// until then, unlinked inline once the queue is full, and all of them by
// the time the destructor returns; Drain waits for what was queued before
// it, not for what others keep queueing. The FsClient records unlinks and can hold
// one path's unlink until the test lets it go.
#include "adapters/deferred_unlinker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace kvfs {
namespace {

class RecordingFs final : public FsClient {
 public:
  std::string Describe() const override { return "recording"; }
  Result<int> Open(const std::string&, int, mode_t) override { return Status::Error(ENOSYS, "not here"); }
  Result<FsStat> Stat(const std::string&) override { return Status::Error(ENOSYS, "not here"); }
  Result<FsStat> StatFd(int) override { return Status::Error(ENOSYS, "not here"); }
  Status Mkdir(const std::string&) override { return Status::Error(ENOSYS, "not here"); }
  Status Rename(const std::string&, const std::string&) override { return Status::Error(ENOSYS, "not here"); }
  Status Link(const std::string&, const std::string&) override { return Status::Error(ENOSYS, "not here"); }
  Result<std::vector<std::string>> ListDir(const std::string&) override { return Status::Error(ENOSYS, "not here"); }
  Status SyncDir(const std::string&) override { return Status::Error(ENOSYS, "not here"); }
  Result<StoreSpace> StatFs(const std::string&) override { return Status::Error(ENOSYS, "not here"); }
  Result<int> TryLockExclusive(const std::string&) override { return Status::Error(ENOSYS, "not here"); }

  Status Unlink(const std::string& path) override {
    std::unique_lock<std::mutex> lk(mu_);
    if (path == held_) {
      holding_ = true;
      changed_.notify_all();
      changed_.wait(lk, [this] { return held_.empty(); });
      holding_ = false;
    }
    unlinked_.push_back(path);
    unlinked_by_.push_back(std::this_thread::get_id());
    changed_.notify_all();
    lk.unlock();
    if (on_unlink) on_unlink(path);
    return Status::Ok();
  }
  // Called after each unlink, with no lock held (set before any unlink).
  std::function<void(const std::string&)> on_unlink;

  void Hold(const std::string& path) {
    std::lock_guard<std::mutex> g(mu_);
    held_ = path;
  }
  void WaitUntilHolding() {
    std::unique_lock<std::mutex> lk(mu_);
    changed_.wait(lk, [this] { return holding_; });
  }
  void Let() {
    std::lock_guard<std::mutex> g(mu_);
    held_.clear();
    changed_.notify_all();
  }
  std::vector<std::string> unlinked() {
    std::lock_guard<std::mutex> g(mu_);
    return unlinked_;
  }
  std::vector<std::thread::id> unlinked_by() {
    std::lock_guard<std::mutex> g(mu_);
    return unlinked_by_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::string held_;
  bool holding_ = false;
  std::vector<std::string> unlinked_;
  std::vector<std::thread::id> unlinked_by_;
};

TEST(DeferredUnlinkerTest, FilesArePendingUntilTheThreadUnlinksThem) {
  RecordingFs fs;
  DeferredUnlinker unlinker(&fs);
  fs.Hold("a");
  unlinker.Add("a", 1000);
  unlinker.Add("b", 24);
  fs.WaitUntilHolding();
  EXPECT_EQ(unlinker.pending_bytes(), 1024u);
  EXPECT_FALSE(unlinker.Drain(std::chrono::milliseconds(1))) << "drained while an unlink was held";
  fs.Let();
  EXPECT_TRUE(unlinker.Drain(std::chrono::seconds(30)));
  EXPECT_EQ(unlinker.pending_bytes(), 0u);
  EXPECT_EQ(fs.unlinked(), (std::vector<std::string>{"a", "b"}));
  for (std::thread::id by : fs.unlinked_by()) EXPECT_NE(by, std::this_thread::get_id());
}

// Each unlink queues another file: a stream that never lets the queue
// empty (removals by other writers, at capacity). Drain still returns once
// the files queued before it are gone.
TEST(DeferredUnlinkerTest, DrainWaitsOnlyForWhatWasQueuedBeforeIt) {
  RecordingFs fs;
  std::atomic<bool> streaming{true};
  std::atomic<int> streamed{0};
  DeferredUnlinker* target = nullptr;
  fs.on_unlink = [&](const std::string&) {
    if (streaming) target->Add("s" + std::to_string(streamed++), 1);
  };
  DeferredUnlinker unlinker(&fs);
  target = &unlinker;
  unlinker.Add("first", 1);
  unlinker.Add("second", 1);
  EXPECT_TRUE(unlinker.Drain(std::chrono::seconds(5))) << "Drain waited for files queued after it";
  const std::vector<std::string> done = fs.unlinked();
  EXPECT_NE(std::find(done.begin(), done.end(), "second"), done.end());
  streaming = false;
}

TEST(DeferredUnlinkerTest, WaitPendingAtMostReturnsOnceEnoughIsFreed) {
  RecordingFs fs;
  DeferredUnlinker unlinker(&fs);
  fs.Hold("c");
  unlinker.Add("a", 100);
  unlinker.Add("b", 10);
  unlinker.Add("c", 1000);
  unlinker.Add("d", 1);
  fs.WaitUntilHolding();  // a and b are gone, c is held
  EXPECT_TRUE(unlinker.WaitPendingAtMost(1001, std::chrono::seconds(5)));
  EXPECT_FALSE(unlinker.WaitPendingAtMost(1000, std::chrono::milliseconds(1))) << "c and d still pending";
  fs.Let();
  EXPECT_TRUE(unlinker.WaitPendingAtMost(0, std::chrono::seconds(30)));
  EXPECT_EQ(unlinker.pending_bytes(), 0u);
}

TEST(DeferredUnlinkerTest, AFullQueueUnlinksInline) {
  RecordingFs fs;
  DeferredUnlinker unlinker(&fs, /*max_queued=*/1);
  fs.Hold("a");
  unlinker.Add("a", 1);
  fs.WaitUntilHolding();  // "a" is off the queue, its unlink held
  unlinker.Add("b", 1);   // queued
  unlinker.Add("c", 1);   // the queue is full: unlinked here
  std::vector<std::string> now = fs.unlinked();
  ASSERT_EQ(now, std::vector<std::string>{"c"});
  EXPECT_EQ(fs.unlinked_by().front(), std::this_thread::get_id());
  fs.Let();
  EXPECT_TRUE(unlinker.Drain(std::chrono::seconds(30)));
  const std::vector<std::string> all = fs.unlinked();
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()), (std::set<std::string>{"a", "b", "c"}));
}

TEST(DeferredUnlinkerTest, EverythingQueuedIsUnlinkedWhenTheDestructorReturns) {
  RecordingFs fs;
  std::thread let;
  {
    DeferredUnlinker unlinker(&fs);
    fs.Hold("first");
    unlinker.Add("first", 1);
    fs.WaitUntilHolding();
    for (int i = 0; i < 100; ++i) unlinker.Add("f" + std::to_string(i), 1);
    // Let the held unlink go, before or while the destructor waits for it.
    let = std::thread([&] { fs.Let(); });
  }
  let.join();
  EXPECT_EQ(fs.unlinked().size(), 101u);
}

}  // namespace
}  // namespace kvfs
