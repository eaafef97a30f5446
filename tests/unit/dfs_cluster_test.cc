// Unit tests of kvfs::DfsCluster, the coordination of the hosts sharing a
// DfsStore through files in its cluster/ directory. "Hosts" are DfsStore
// instances with different host ids on one scratch directory, with a short
// lease ttl: exactly one holds the evictor lease; a holder that keeps
// renewing is never replaced; one that stops is replaced after about the ttl
// (on the watcher's own clock) with a higher epoch, and steps down when it
// comes back; access counts published by one host are collected once by
// another; SweepAbandoned removes other hosts' old staging files and access
// logs but never this host's staging files.
//
// Timing: no sleep is used as synchronisation; waits are polling loops with
// short pauses and generous deadlines.
#include "adapters/dfs_cluster.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "adapters/dfs_store.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using std::chrono::milliseconds;
using testing::PathExists;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kTtl{300};

using testing::ErrText;

std::set<std::string> Entries(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

// Names of the lease files (evictor.<epoch>) in the cluster directory.
std::vector<std::string> LeaseFiles(const std::string& root) {
  std::vector<std::string> out;
  for (const std::string& n : Entries(root + "/cluster")) {
    if (n.rfind("evictor.", 0) == 0) out.push_back(n);
  }
  return out;
}

// Sets a file's mtime (and atime) to `age` before now.
bool Age(const std::string& path, std::chrono::seconds age) {
  timespec ts[2];
  clock_gettime(CLOCK_REALTIME, &ts[0]);
  ts[0].tv_sec -= age.count();
  ts[1] = ts[0];
  return ::utimensat(AT_FDCWD, path.c_str(), ts, 0) == 0;
}

class DfsClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  std::string Root() const { return dir_.Sub("shared"); }

  std::unique_ptr<DfsStore> OpenHost(const std::string& host, milliseconds ttl = kTtl,
                                     std::chrono::seconds abandoned_after = std::chrono::seconds(3600)) {
    DfsStoreOptions o;
    o.host_id = host;
    o.lease_ttl = ttl;
    o.abandoned_after = abandoned_after;
    Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), o);
    EXPECT_TRUE(s.ok()) << host << ": " << ErrText(s.status());
    if (!s.ok()) return nullptr;
    return std::move(*s);
  }

  static DfsCluster* ClusterOf(DfsStore* s) {
    auto* c = dynamic_cast<DfsCluster*>(s->cluster());
    EXPECT_NE(c, nullptr);
    return c;
  }

  TempDir dir_;
};

TEST_F(DfsClusterTest, ClusterIsThisHosts) {
  auto a = OpenHost("hostA");
  ASSERT_TRUE(a);
  DfsCluster* ca = ClusterOf(a.get());
  ASSERT_TRUE(ca);
  EXPECT_EQ(ca->host_id(), "hostA");
  EXPECT_EQ(ca->EvictorHolder(), "");  // nobody seen yet
  EXPECT_EQ(ca->epoch(), 0u);
  EXPECT_TRUE(LeaseFiles(Root()).empty());
}

TEST_F(DfsClusterTest, ExactlyOneHostHoldsTheLease) {
  auto a = OpenHost("hostA");
  auto b = OpenHost("hostB");
  ASSERT_TRUE(a && b);
  DfsCluster* ca = ClusterOf(a.get());
  DfsCluster* cb = ClusterOf(b.get());
  EXPECT_TRUE(ca->RenewEvictorLease());
  EXPECT_FALSE(cb->RenewEvictorLease());
  EXPECT_TRUE(ca->RenewEvictorLease());
  EXPECT_FALSE(cb->RenewEvictorLease());
  EXPECT_EQ(ca->EvictorHolder(), "hostA");
  EXPECT_EQ(cb->EvictorHolder(), "hostA");
  EXPECT_EQ(ca->epoch(), 1u);
  EXPECT_EQ(cb->epoch(), 1u);
  EXPECT_EQ(LeaseFiles(Root()), std::vector<std::string>{"evictor.00000000000000000001"});
}

TEST_F(DfsClusterTest, RacingFirstRenewalsElectOneHolder) {
  constexpr int kHosts = 6;
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    TempDir dir;
    ASSERT_TRUE(dir.ok());
    std::vector<std::unique_ptr<DfsStore>> hosts;
    for (int i = 0; i < kHosts; ++i) {
      DfsStoreOptions o;
      o.host_id = "host" + std::to_string(i);
      o.lease_ttl = kTtl;
      Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(dir.path(), o);
      ASSERT_TRUE(s.ok()) << ErrText(s.status());
      hosts.push_back(std::move(*s));
    }
    std::atomic<int> ready{0};
    std::vector<int> won(kHosts, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < kHosts; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kHosts) std::this_thread::yield();
        won[i] = hosts[i]->cluster()->RenewEvictorLease() ? 1 : 0;
      });
    }
    for (auto& t : threads) t.join();
    int winners = 0;
    std::string winner;
    for (int i = 0; i < kHosts; ++i) {
      winners += won[i];
      if (won[i]) winner = "host" + std::to_string(i);
    }
    EXPECT_EQ(winners, 1);
    // Everyone agrees once they have looked again.
    for (int i = 0; i < kHosts; ++i) {
      bool holds = hosts[i]->cluster()->RenewEvictorLease();
      EXPECT_EQ(holds, won[i] == 1) << "host" << i;
      EXPECT_EQ(hosts[i]->cluster()->EvictorHolder(), winner) << "host" << i;
    }
  }
}

TEST_F(DfsClusterTest, RenewingHolderIsNeverReplaced) {
  auto a = OpenHost("hostA");
  auto b = OpenHost("hostB");
  ASSERT_TRUE(a && b);
  DfsCluster* ca = ClusterOf(a.get());
  DfsCluster* cb = ClusterOf(b.get());
  ASSERT_TRUE(ca->RenewEvictorLease());
  // Renew well within ttl/3, alternating with the watcher, for > 3 ttl.
  auto until = Clock::now() + 3 * kTtl + milliseconds(50);
  int rounds = 0;
  while (Clock::now() < until) {
    ASSERT_TRUE(ca->RenewEvictorLease()) << "the holder lost the lease after " << rounds << " rounds";
    ASSERT_FALSE(cb->RenewEvictorLease()) << "the watcher took over a live holder after " << rounds << " rounds";
    ++rounds;
    std::this_thread::sleep_for(kTtl / 15);
  }
  EXPECT_GT(rounds, 10);
  EXPECT_EQ(ca->epoch(), 1u);
  EXPECT_EQ(cb->epoch(), 1u);
  EXPECT_EQ(cb->EvictorHolder(), "hostA");
  EXPECT_EQ(LeaseFiles(Root()).size(), 1u);
}

TEST_F(DfsClusterTest, WatcherTakesOverAfterTtlWhenHolderStops) {
  auto a = OpenHost("hostA");
  auto b = OpenHost("hostB");
  ASSERT_TRUE(a && b);
  DfsCluster* ca = ClusterOf(a.get());
  DfsCluster* cb = ClusterOf(b.get());
  ASSERT_TRUE(ca->RenewEvictorLease());
  ASSERT_FALSE(cb->RenewEvictorLease());
  ASSERT_TRUE(ca->RenewEvictorLease());
  uint64_t epoch_before = cb->epoch();
  ASSERT_EQ(epoch_before, 1u);

  // A stops renewing now. B watches until it takes over.
  auto stopped = Clock::now();
  bool took_over = false;
  auto deadline = stopped + 10 * kTtl;
  while (Clock::now() < deadline) {
    if (cb->RenewEvictorLease()) {
      took_over = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  auto waited = Clock::now() - stopped;
  ASSERT_TRUE(took_over) << "no takeover within 10 ttl";
  EXPECT_GE(waited, kTtl) << "took over before a whole ttl without renewals";
  EXPECT_GT(cb->epoch(), epoch_before);
  EXPECT_EQ(cb->EvictorHolder(), "hostB");
  // The old epoch's file is gone: one lease file, the new epoch's.
  EXPECT_EQ(LeaseFiles(Root()), std::vector<std::string>{"evictor.00000000000000000002"});

  // A comes back: its renewal fails (it steps down) and it names B.
  EXPECT_FALSE(ca->RenewEvictorLease());
  EXPECT_EQ(ca->EvictorHolder(), "hostB");
  EXPECT_EQ(ca->epoch(), cb->epoch());
  EXPECT_FALSE(ca->RenewEvictorLease());
  EXPECT_TRUE(cb->RenewEvictorLease());
  EXPECT_FALSE(ca->RenewEvictorLease());
  EXPECT_EQ(LeaseFiles(Root()).size(), 1u) << "the old holder recreated its lease file";

  // And the roles reverse when B stops in turn.
  auto deadline2 = Clock::now() + 10 * kTtl;
  bool back = false;
  while (Clock::now() < deadline2) {
    if (ca->RenewEvictorLease()) {
      back = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(back);
  EXPECT_EQ(ca->epoch(), 3u);
  EXPECT_FALSE(cb->RenewEvictorLease());
  EXPECT_EQ(cb->EvictorHolder(), "hostA");
}

TEST_F(DfsClusterTest, HolderThatWasNotReplacedKeepsTheLeaseAfterAPause) {
  // A holder that paused longer than the ttl while nobody watched still
  // holds the lease (no other host took over); it simply renews.
  auto a = OpenHost("hostA");
  auto b = OpenHost("hostB");
  ASSERT_TRUE(a && b);
  DfsCluster* ca = ClusterOf(a.get());
  ASSERT_TRUE(ca->RenewEvictorLease());
  auto resume = Clock::now() + 2 * kTtl;
  while (Clock::now() < resume) std::this_thread::sleep_for(milliseconds(10));
  EXPECT_TRUE(ca->RenewEvictorLease());
  // The watcher arriving now sees renewals going on and does not take over.
  DfsCluster* cb = ClusterOf(b.get());
  EXPECT_FALSE(cb->RenewEvictorLease());
  EXPECT_EQ(cb->EvictorHolder(), "hostA");
}

TEST_F(DfsClusterTest, AccessCountsArePublishedAndCollectedOnce) {
  auto a = OpenHost("hostA");
  auto b = OpenHost("hostB");
  auto c = OpenHost("hostC");
  ASSERT_TRUE(a && b && c);
  ClusterCoordinator* ca = a->cluster();
  ClusterCoordinator* cb = b->cluster();
  ClusterCoordinator* cc = c->cluster();

  Result<std::map<std::string, uint64_t>> none = cb->CollectAccesses();
  ASSERT_TRUE(none.ok()) << ErrText(none.status());
  EXPECT_TRUE(none->empty());

  std::map<std::string, uint64_t> first = {{"objects/aa/bb/x1", 3}, {"objects/cc/dd/x2", 1}};
  ASSERT_TRUE(ca->PublishAccesses(first).ok());
  EXPECT_TRUE(PathExists(Root() + "/cluster/access.hostA"));
  Result<std::map<std::string, uint64_t>> got = cb->CollectAccesses();
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_EQ(*got, first);
  // Not again until A publishes again.
  got = cb->CollectAccesses();
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty()) << "the same counts were collected twice";
  // An empty publication changes nothing.
  ASSERT_TRUE(ca->PublishAccesses({}).ok());
  got = cb->CollectAccesses();
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
  // A host never collects its own counts.
  got = ca->CollectAccesses();
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());

  // A and C publish: B gets both, merged.
  ASSERT_TRUE(ca->PublishAccesses({{"objects/aa/bb/x1", 5}}).ok());
  ASSERT_TRUE(cc->PublishAccesses({{"objects/aa/bb/x1", 2}, {"objects/ee/ff/x3", 7}}).ok());
  got = cb->CollectAccesses();
  ASSERT_TRUE(got.ok());
  std::map<std::string, uint64_t> merged = {{"objects/aa/bb/x1", 7}, {"objects/ee/ff/x3", 7}};
  EXPECT_EQ(*got, merged);
  got = cb->CollectAccesses();
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
  // No temporaries left in the cluster directory.
  for (const std::string& n : Entries(Root() + "/cluster")) EXPECT_NE(n.rfind("tmp.", 0), 0u) << n;
}

TEST_F(DfsClusterTest, QuickSuccessivePublicationsAreEachCollected) {
  // Publications of the same size in quick succession: the collector must not
  // take the second for the first (same size, same coarse mtime, and possibly
  // a reused inode number).
  auto a = OpenHost("hostA");
  auto b = OpenHost("hostB");
  ASSERT_TRUE(a && b);
  int missed = 0;
  for (int i = 0; i < 200; ++i) {
    std::map<std::string, uint64_t> counts = {{"objects/aa/bb/k", static_cast<uint64_t>(1 + i % 9)}};
    ASSERT_TRUE(a->cluster()->PublishAccesses(counts).ok());
    Result<std::map<std::string, uint64_t>> got = b->cluster()->CollectAccesses();
    ASSERT_TRUE(got.ok());
    if (*got != counts) ++missed;
  }
  EXPECT_EQ(missed, 0) << "publications the collector did not see";
}

TEST_F(DfsClusterTest, SweepAbandonedRemovesOtherHostsOldFilesOnly) {
  // hostB sweeps, with everything counting as abandoned at once.
  auto b = OpenHost("hostB", kTtl, std::chrono::seconds(0));
  ASSERT_TRUE(b);
  const std::string staging = Root() + "/staging/";
  const std::string cluster = Root() + "/cluster/";
  const std::vector<std::string> others = {"hostA~123~0.tmp", "hostC~1~7.tmp", "hostBB~5~0.tmp"};
  const std::vector<std::string> mine = {"hostB~123~0.tmp", "hostB~" + std::to_string(::getpid()) + "~99.tmp"};
  for (const auto& n : others) ASSERT_TRUE(testing::WriteFile(staging + n, "x"));
  for (const auto& n : mine) ASSERT_TRUE(testing::WriteFile(staging + n, "x"));
  ASSERT_TRUE(testing::WriteFile(cluster + "access.hostA", "1 objects/aa/bb/x\n"));
  ASSERT_TRUE(testing::WriteFile(cluster + "tmp.hostA.1.0", "holder hostA\n"));
  for (const auto& n : others) ASSERT_TRUE(Age(staging + n, std::chrono::seconds(10)));
  for (const auto& n : mine) ASSERT_TRUE(Age(staging + n, std::chrono::seconds(10)));
  ASSERT_TRUE(Age(cluster + "access.hostA", std::chrono::seconds(10)));
  ASSERT_TRUE(Age(cluster + "tmp.hostA.1.0", std::chrono::seconds(10)));
  // A lease file is not a leftover.
  ASSERT_TRUE(b->cluster()->RenewEvictorLease());
  ASSERT_EQ(LeaseFiles(Root()).size(), 1u);
  ASSERT_TRUE(Age(cluster + LeaseFiles(Root())[0], std::chrono::seconds(10)));

  uint64_t removed = b->cluster()->SweepAbandoned();
  EXPECT_EQ(removed, others.size() + 2);
  for (const auto& n : others) EXPECT_FALSE(PathExists(staging + n)) << n;
  for (const auto& n : mine) EXPECT_TRUE(PathExists(staging + n)) << "this host's staging file was swept: " << n;
  EXPECT_FALSE(PathExists(cluster + "access.hostA"));
  EXPECT_FALSE(PathExists(cluster + "tmp.hostA.1.0"));
  EXPECT_EQ(LeaseFiles(Root()).size(), 1u);
  EXPECT_TRUE(b->cluster()->RenewEvictorLease());
  EXPECT_EQ(b->cluster()->SweepAbandoned(), 0u);
}

TEST_F(DfsClusterTest, SweepAbandonedKeepsRecentFiles) {
  auto b = OpenHost("hostB", kTtl, std::chrono::seconds(3600));
  ASSERT_TRUE(b);
  const std::string staging = Root() + "/staging/";
  ASSERT_TRUE(testing::WriteFile(staging + "hostA~1~0.tmp", "x"));  // fresh
  ASSERT_TRUE(testing::WriteFile(staging + "hostA~1~1.tmp", "x"));
  ASSERT_TRUE(Age(staging + "hostA~1~1.tmp", std::chrono::seconds(1800)));  // old, not yet abandoned
  ASSERT_TRUE(testing::WriteFile(staging + "hostA~1~2.tmp", "x"));
  ASSERT_TRUE(Age(staging + "hostA~1~2.tmp", std::chrono::seconds(7200)));  // abandoned
  EXPECT_EQ(b->cluster()->SweepAbandoned(), 1u);
  EXPECT_TRUE(PathExists(staging + "hostA~1~0.tmp"));
  EXPECT_TRUE(PathExists(staging + "hostA~1~1.tmp"));
  EXPECT_FALSE(PathExists(staging + "hostA~1~2.tmp"));
}

}  // namespace
}  // namespace kvfs
