// The shared tier (dfs: stores) across hosts, on a real GlusterFS volume: three
// kvfs mounts over one directory, through two independent GlusterFS clients.
// See shared_tier_fixture.h and docs/shared-tier.md (the contract under test).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/dfs/shared_tier_fixture.h"

namespace kvfs::dfs_test {
namespace {

using namespace kvfs::mounted_test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string Ok(const std::string& err) { return err.empty() ? "ok" : err; }

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Writes `data` to path (create/truncate, write, close) in a child.
std::string WriteIn(const std::string& path, const std::vector<uint8_t>& data) {
  return InChild([&] { return Ok(WriteFile(path, data)); });
}

// In a child: stat(path) shows data.size() and reading path gives exactly data.
std::string CheckIn(const std::string& path, const std::vector<uint8_t>& data) {
  return InChild([&]() -> std::string {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return ErrnoMessage("stat(" + path + ")");
    if (static_cast<size_t>(st.st_size) != data.size()) {
      return "stat(" + path + ").st_size = " + std::to_string(st.st_size) + ", want " + std::to_string(data.size());
    }
    return Ok(CheckFile(path, data));
  });
}

// In a child: open(path, O_RDONLY); "opened", or the errno's name.
std::string OpenResultIn(const std::string& path, int timeout_ms = 60 * 1000) {
  return InChild(
      [&]() -> std::string {
        Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) return ErrnoName(errno);
        return "opened";
      },
      timeout_ms);
}

std::string Key(const char* prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%03d", prefix, i);
  return buf;
}

void Info(const std::string& line) { std::cout << "[     info ] " << line << std::endl; }

// ---------------------------------------------------------------------------
// a. A key committed on one host is read byte-exact on the others right after
//    the writer's close: lookup misses read through to the DFS.

TEST_F(SharedTierTest, CrossHostWriteRead) {
  struct Case {
    const char* key;
    size_t size;
  };
  const Case cases[] = {{"empty", 0}, {"page-plus-one", 4096 + 1}, {"one-mib", kMiB}, {"sixteen-mib", 16 * kMiB}};
  uint64_t seed = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    auto data = MakeData(seed++, c.size);
    ASSERT_EQ(WriteIn(P(0, c.key), data), "ok");
    // No wait: the writer's close() was the commit.
    for (size_t h : {1, 2}) EXPECT_EQ(CheckIn(P(h, c.key), data), "ok") << "reading on " << host_id(h);
    EXPECT_EQ(CheckIn(P(0, c.key), data), "ok") << "reading on the writer, host0";
  }
  for (size_t h : {1, 2}) {
    std::string err;
    auto st = HostStats(h, &err);
    ASSERT_TRUE(st) << err;
    EXPECT_EQ(StoreString(*st, {"shared", "host_id"}), host_id(h));
    // The four keys reached this host from the DFS: by read-through at its
    // first lookup, or by the reconciler if that came first.
    EXPECT_GE(StoreU64(*st, {"shared", "read_through"}) + StoreU64(*st, {"shared", "remote_added"}), 4u)
        << "stats of " << host_id(h);
  }
}

// ---------------------------------------------------------------------------
// b. Listings show the keys of other hosts after a reconcile pass.

TEST_F(SharedTierTest, ListingShowsOtherHostsKeys) {
  auto data_for = [](const std::string& key) {
    uint64_t seed = std::hash<std::string>()(key);
    return MakeData(seed, 4096 + seed % 1000);
  };
  std::set<std::string> want_root, want_dir;
  // host0: a000..a039, and dir/c000..c009 in a directory it creates;
  // host1: b000..b039. Written concurrently.
  ChildProcess w0([&](Channel&) -> std::string {
    for (int i = 0; i < 40; ++i) {
      std::string err = WriteFile(P(0, Key("a", i)), data_for(Key("a", i)));
      if (!err.empty()) return err;
    }
    if (mkdir(P(0, "dir").c_str(), 0755) != 0) return ErrnoMessage("mkdir " + P(0, "dir"));
    for (int i = 0; i < 10; ++i) {
      std::string err = WriteFile(P(0, "dir/" + Key("c", i)), data_for("dir/" + Key("c", i)));
      if (!err.empty()) return err;
    }
    return "ok";
  });
  ChildProcess w1([&](Channel&) -> std::string {
    for (int i = 0; i < 40; ++i) {
      std::string err = WriteFile(P(1, Key("b", i)), data_for(Key("b", i)));
      if (!err.empty()) return err;
    }
    return "ok";
  });
  ASSERT_EQ(w0.Wait().Summary(), "ok");
  ASSERT_EQ(w1.Wait().Summary(), "ok");
  auto written = Clock::now();
  for (int i = 0; i < 40; ++i) {
    want_root.insert(Key("a", i));
    want_root.insert(Key("b", i));
  }
  want_root.insert("dir");
  for (int i = 0; i < 10; ++i) want_dir.insert(Key("c", i));

  auto missing = [](const std::set<std::string>& want, const std::vector<std::string>& got) {
    std::set<std::string> have(got.begin(), got.end());
    std::vector<std::string> out;
    for (const auto& w : want) {
      if (!have.count(w)) out.push_back(w);
    }
    return out;
  };
  std::string last;
  double elapsed = 0;
  bool listed = WaitFor(
      [&] {
        std::vector<std::string> root, dir;
        std::string err = ListDirInChild(P(2, ""), &root, 30000);
        if (err.empty()) err = ListDirInChild(P(2, "dir"), &dir, 30000);
        if (!err.empty()) {
          last = err;
          return false;
        }
        auto m1 = missing(want_root, root), m2 = missing(want_dir, dir);
        last = std::to_string(m1.size()) + " of the root's names and " + std::to_string(m2.size()) +
               " of dir/'s missing" + (m1.empty() ? "" : ", e.g. " + m1[0]) + (m2.empty() ? "" : ", e.g. dir/" + m2[0]);
        if (root.size() != want_root.size()) last += "; root lists " + std::to_string(root.size()) + " names";
        return m1.empty() && m2.empty() && root.size() == want_root.size() && dir.size() == want_dir.size();
      },
      10s, 100ms, &elapsed);
  ASSERT_TRUE(listed) << "host2 does not list the 81 names of host0 and host1 within 10 s: " << last;
  Info("host2 listed all keys " + std::to_string(SecondsSince(written)) + " s after the writers closed");
  for (const std::string& k :
       {Key("a", 0), Key("a", 39), Key("b", 0), Key("b", 39), std::string("dir/") + Key("c", 5)}) {
    EXPECT_EQ(CheckIn(P(2, k), data_for(k)), "ok");
  }
  // The writers see each other's keys as well.
  std::vector<std::string> names;
  EXPECT_TRUE(
      WaitFor([&] { return ListDirInChild(P(0, ""), &names).empty() && missing(want_root, names).empty(); }, 10s))
      << "host0 does not list host1's keys";
  EXPECT_TRUE(
      WaitFor([&] { return ListDirInChild(P(1, "dir"), &names).empty() && missing(want_dir, names).empty(); }, 10s))
      << "host1 does not list the keys in host0's directory";
  auto st = HostStats(2);
  ASSERT_TRUE(st);
  EXPECT_GE(StoreU64(*st, {"shared", "reconcile_passes"}), 1u);
}

// A key a lookup read through from the DFS is in its directory's listing at
// once, even when that listing was cached by the kernel before and no
// reconcile pass comes (the next is ten minutes away): the lookup itself
// drops the cached listing. (Without that, host2 of the test above could
// list the root without "dir" for good, once a listing of dir/ had read the
// directory through before a pass found it.)
class SlowReconcileTest : public SharedTierTest {
 protected:
  size_t HostCount() const override { return 2; }
  double RefreshSeconds() const override { return 600; }
  double LeaseTtlSeconds() const override { return 1800; }
};

TEST_F(SlowReconcileTest, AListingCachedBeforeAReadThroughShowsTheNameAfterIt) {
  // host1's first pass (at mount) is over: the names can reach it only by
  // its lookups.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = HostStats(1);
        return st && StoreU64(*st, {"shared", "reconcile_passes"}) >= 1;
      },
      10s))
      << "host1's first reconcile pass did not end";
  std::vector<std::string> names;
  ASSERT_EQ(ListDirInChild(P(1, ""), &names), "");
  ASSERT_TRUE(names.empty()) << "host1's root lists " << names.size() << " names before anything was written";
  auto data = MakeData(400, 3 * 4096 + 7);
  ASSERT_EQ(WriteIn(P(0, "k"), data), "ok");
  ASSERT_EQ(InChild([&] { return mkdir(P(0, "d").c_str(), 0755) == 0 ? "ok" : ErrnoMessage("mkdir"); }), "ok");
  // host1 finds both by lookups.
  ASSERT_EQ(CheckIn(P(1, "k"), data), "ok");
  ASSERT_EQ(InChild([&]() -> std::string {
              struct stat st {};
              if (stat(P(1, "d").c_str(), &st) != 0) return ErrnoMessage("stat");
              return S_ISDIR(st.st_mode) ? "ok" : "not a directory";
            }),
            "ok");
  std::string last;
  bool listed = WaitFor(
      [&] {
        std::string err = ListDirInChild(P(1, ""), &names);
        std::sort(names.begin(), names.end());
        last = err;
        for (const auto& n : names) last += " " + n;
        return err.empty() && names == std::vector<std::string>{"d", "k"};
      },
      5s);
  EXPECT_TRUE(listed) << "host1's root lists:" << last;
  auto st = HostStats(1);
  ASSERT_TRUE(st);
  EXPECT_EQ(StoreU64(*st, {"shared", "read_through"}), 2u) << "the lookups did not read the names through";
}

// ---------------------------------------------------------------------------
// c. Deletes and replacements on one host are followed by the others, while
//    a handle opened before keeps reading the version it opened.

TEST_F(SharedTierTest, DeletePropagates) {
  // --- deletion, no handle open on the reading host: the next open fails.
  const std::string plain = "deleted";
  auto p = MakeData(300, kMiB + 5);
  ASSERT_EQ(WriteIn(P(0, plain), p), "ok");
  ASSERT_EQ(CheckIn(P(1, plain), p), "ok");  // host1 indexes it, its kernel caches the name
  ASSERT_EQ(InChild([&] { return unlink(P(0, plain).c_str()) == 0 ? "ok" : ErrnoMessage("unlink"); }), "ok");
  EXPECT_EQ(OpenResultIn(P(1, plain)), "ENOENT") << "host1's first open after host0 deleted the key";

  // --- deletion while a reader on host1 holds an fd across it.
  const std::string key = "doomed";
  auto a = MakeData(301, 3 * kMiB + 123);
  ASSERT_EQ(WriteIn(P(0, key), a), "ok");
  ASSERT_EQ(CheckIn(P(1, key), a), "ok");
  ChildProcess holder([&](Channel& ch) -> std::string {
    Fd fd(open(P(1, key).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoMessage("open " + P(1, key));
    ch.Send("opened");
    std::string e = ch.Expect("read", 120000);
    if (!e.empty()) return e;
    e = CheckFd(fd.get(), a);
    return e.empty() ? "ok" : "the fd opened before the delete: " + e;
  });
  ASSERT_EQ(holder.channel().Expect("opened", 60000), "");

  ASSERT_EQ(InChild([&] { return unlink(P(0, key).c_str()) == 0 ? "ok" : ErrnoMessage("unlink"); }), "ok");
  auto deleted = Clock::now();
  std::string first = OpenResultIn(P(1, key));
  std::string last = first;
  bool gone = first == "ENOENT" || WaitFor(
                                       [&] {
                                         last = OpenResultIn(P(1, key));
                                         return last == "ENOENT";
                                       },
                                       10s);
  EXPECT_TRUE(gone) << "host1 still opens the key 10 s after host0 deleted it; last open: " << last;
  Info("delete with an fd held on host1: host1's first open after the unlink gave " + first + "; ENOENT " +
       std::to_string(SecondsSince(deleted)) + " s after the unlink");
  // host2 indexed the key by reconciling (it never opened it): lookups and
  // stat follow within --dfs-refresh + 1 s.
  std::string stat2;
  EXPECT_TRUE(WaitFor(
      [&] {
        stat2 = InChild([&] { return ErrnoName(StatErrno(P(2, key))); });
        return stat2 == "ENOENT";
      },
      std::chrono::milliseconds(static_cast<int>(kRefreshSeconds * 1000) + 2000)))
      << "stat of the deleted key on host2 gives " << stat2;
  ASSERT_TRUE(holder.channel().Send("read"));
  EXPECT_EQ(holder.Wait().Summary(), "ok");

  // --- replacement
  const std::string key2 = "replaced";
  auto old_data = MakeData(302, 2 * kMiB + 7);
  auto new_data = MakeData(303, 5 * kMiB + 11);  // a different size, too
  ASSERT_EQ(WriteIn(P(0, key2), old_data), "ok");
  ASSERT_EQ(CheckIn(P(1, key2), old_data), "ok");
  ChildProcess old_reader([&](Channel& ch) -> std::string {
    Fd fd(open(P(1, key2).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoMessage("open " + P(1, key2));
    ch.Send("opened");
    std::string e = ch.Expect("read", 120000);
    if (!e.empty()) return e;
    e = CheckFd(fd.get(), old_data);
    return e.empty() ? "ok" : "the fd opened before the replacement: " + e;
  });
  ASSERT_EQ(old_reader.channel().Expect("opened", 60000), "");
  ASSERT_EQ(WriteIn(P(0, key2), new_data), "ok");
  // A new open on host1 follows the replacement at once (opens revalidate).
  EXPECT_EQ(InChild([&] { return Ok(CheckFile(P(1, key2), new_data)); }), "ok")
      << "host1's first open after host0 replaced the key";
  // stat through host1's cached name follows within refresh + 1 s.
  std::string size_seen;
  EXPECT_TRUE(WaitFor(
      [&] {
        size_seen = InChild([&]() -> std::string {
          struct stat st {};
          if (stat(P(1, key2).c_str(), &st) != 0) return ErrnoMessage("stat");
          return std::to_string(st.st_size);
        });
        return size_seen == std::to_string(new_data.size());
      },
      5s))
      << "host1's stat shows size " << size_seen << ", want " << new_data.size();
  // host2 (which may have indexed the old version by reconciling) also
  // follows at open.
  EXPECT_EQ(InChild([&] { return Ok(CheckFile(P(2, key2), new_data)); }), "ok") << "host2's first open";
  ASSERT_TRUE(old_reader.channel().Send("read"));
  EXPECT_EQ(old_reader.Wait().Summary(), "ok");
  auto st = HostStats(1);
  ASSERT_TRUE(st);
  EXPECT_GE(StoreU64(*st, {"shared", "remote_removed"}), 1u);
}

// ---------------------------------------------------------------------------
// d. Two hosts write one key at the same moment: every host then reads one
//    whole version, the same one, never a mix; nothing is left in staging/.

TEST_F(SharedTierTest, ConcurrentWritersOneKey) {
  const std::string key = "contended";
  constexpr int kRounds = 10;
  constexpr size_t kSize = 8 * kMiB;
  std::map<std::string, int> winners;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<uint8_t> payload[2] = {MakeData(4000 + round * 2, kSize), MakeData(4001 + round * 2, kSize)};
    auto writer = [&](size_t host) {
      return [&, host](Channel& ch) -> std::string {
        ch.Send("ready");
        std::string e = ch.Expect("go", 60000);
        if (!e.empty()) return e;
        return Ok(WriteFile(P(host, key), payload[host]));
      };
    };
    ChildProcess w0(writer(0)), w1(writer(1));
    ASSERT_EQ(w0.channel().Expect("ready", 30000), "");
    ASSERT_EQ(w1.channel().Expect("ready", 30000), "");
    ASSERT_TRUE(w0.channel().Send("go"));
    ASSERT_TRUE(w1.channel().Send("go"));
    ASSERT_EQ(w0.Wait().Summary(), "ok") << "host0's writer";
    ASSERT_EQ(w1.Wait().Summary(), "ok") << "host1's writer";
    std::string seen[3];
    for (size_t h : {2, 0, 1}) {
      seen[h] = InChild([&]() -> std::string {
        std::vector<uint8_t> got;
        std::string err = ReadFile(P(h, key), &got);
        if (!err.empty()) return err;
        if (got == payload[0]) return "host0's";
        if (got == payload[1]) return "host1's";
        return "a mix: vs host0's: " + CompareBytes(got, payload[0]) + "; vs host1's: " + CompareBytes(got, payload[1]);
      });
      EXPECT_TRUE(seen[h] == "host0's" || seen[h] == "host1's") << host_id(h) << " read " << seen[h];
    }
    EXPECT_EQ(seen[0], seen[2]) << "host0 and host2 read different versions";
    EXPECT_EQ(seen[1], seen[2]) << "host1 and host2 read different versions";
    winners[seen[2]]++;
    if (HasFatalFailure()) return;
  }
  std::string summary;
  for (const auto& [who, n] : winners) summary += who + " version won " + std::to_string(n) + "x; ";
  Info(summary);
  for (size_t h = 0; h < hosts(); ++h) ASSERT_EQ(UnmountHost(h), "") << host_id(h);
  std::vector<std::string> staging;
  ASSERT_EQ(StagingFiles(&staging), "");
  std::string list;
  for (const auto& n : staging) list += n + " ";
  EXPECT_TRUE(staging.empty()) << "staging/ after clean unmounts: " << list;
}

// ---------------------------------------------------------------------------
// e. A kvfs killed mid-write never publishes a partial object, and sweeps its
//    own staging leftovers when it mounts again.

TEST_F(SharedTierTest, KilledHostMidWrite) {
  // --- a version half-written on host0 when its kvfs dies
  const std::string key = "victim";
  auto a = MakeData(501, 4 * kMiB + 99);
  auto b = MakeData(502, 4 * kMiB + 99);
  ASSERT_EQ(WriteIn(P(1, key), a), "ok");
  ChildProcess half_writer([&](Channel& ch) -> std::string {
    Fd fd(open(P(0, key).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    if (!fd.valid()) return ErrnoMessage("open(O_WRONLY|O_TRUNC) " + P(0, key));
    size_t half = b.size() / 2, off = 0;
    while (off < half) {
      ssize_t n = write(fd.get(), b.data() + off, std::min<size_t>(kMiB, half - off));
      if (n <= 0) return ErrnoMessage("write");
      off += static_cast<size_t>(n);
    }
    ch.Send("half");
    ch.Recv(120000);  // until told to finish (the daemon is dead by then)
    fd.Close();       // fails with ENOTCONN; nothing to check
    return "ok";
  });
  ASSERT_EQ(half_writer.channel().Expect("half", 60000), "");
  ASSERT_EQ(KillHost(0), "");
  half_writer.channel().Send("finish");
  EXPECT_EQ(half_writer.Wait(60000).Summary(), "ok");
  for (size_t h : {1, 2}) EXPECT_EQ(CheckIn(P(h, key), a), "ok") << "reading on " << host_id(h);

  std::vector<std::string> staging;
  ASSERT_EQ(StagingFiles(&staging), "");
  size_t leftovers =
      std::count_if(staging.begin(), staging.end(), [](const std::string& n) { return n.rfind("host0~", 0) == 0; });
  Info("host0's staging files after the first kill: " + std::to_string(leftovers));
  ASSERT_EQ(MountHost(0), "");
  ASSERT_EQ(StagingFiles(&staging), "");
  for (const auto& n : staging) EXPECT_NE(n.rfind("host0~", 0), 0u) << "not swept at remount: staging/" << n;
  EXPECT_EQ(CheckIn(P(0, key), a), "ok") << "host0 after its remount";

  // --- a stream of commits on host0 when its kvfs dies
  constexpr int kKeys = 200;
  constexpr size_t kSize = 256 * 1024;
  pid_t daemon = DaemonPid(0);
  ASSERT_GT(daemon, 0);
  ChildProcess stream([&](Channel& ch) -> std::string {
    // Through a descriptor of the mount's root: once the killed mount is
    // detached, a path under the mountpoint would reach the bare directory
    // beneath, and writes there would succeed and be counted as commits.
    Fd root(open(P(0, "").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root.valid()) return ErrnoMessage("open " + P(0, ""));
    const std::string via = "/proc/self/fd/" + std::to_string(root.get()) + "/";
    for (int i = 0; i < kKeys; ++i) {
      std::string err = WriteFile(via + Key("k", i), MakeData(1000 + i, kSize));
      if (!err.empty()) return "stopped at " + Key("k", i) + ": " + err;
      ch.Send(std::to_string(i));
    }
    return "all written";
  });
  std::set<int> done;
  while (done.size() < 50) {
    auto m = stream.channel().Recv(60000);
    ASSERT_TRUE(m) << "the writer on host0 stopped after " << done.size() << " keys";
    done.insert(std::stoi(*m));
  }
  ASSERT_EQ(KillHost(0, daemon), "");
  while (auto m = stream.channel().Recv(0)) done.insert(std::stoi(*m));
  ChildOutcome outcome = stream.Wait(60000);
  Info("the writer reported " + std::to_string(done.size()) +
       " keys committed before the kill; it ended with: " + outcome.Summary());

  // host2 lists every committed key (and maybe the one in flight), and every
  // key it lists reads back whole.
  std::vector<std::string> names;
  std::string last;
  EXPECT_TRUE(WaitFor(
      [&] {
        last = ListDirInChild(P(2, ""), &names, 30000);
        if (!last.empty()) return false;
        std::set<std::string> have(names.begin(), names.end());
        for (int i : done) {
          if (!have.count(Key("k", i))) {
            last = Key("k", i) + " missing";
            return false;
          }
        }
        return true;
      },
      10s))
      << "host2 does not list all keys host0 committed: " << last;
  std::vector<int> listed;
  for (const auto& n : names) {
    if (n.size() == 4 && n[0] == 'k') listed.push_back(std::stoi(n.substr(1)));
  }
  EXPECT_GE(listed.size(), done.size());
  EXPECT_EQ(InChild(
                [&]() -> std::string {
                  for (int i : listed) {
                    std::string err = CheckFile(P(2, Key("k", i)), MakeData(1000 + i, kSize));
                    if (!err.empty()) return err;
                  }
                  return "ok";
                },
                120000),
            "ok");
  Info("host2 lists " + std::to_string(listed.size()) + " of the keys; all read back whole");

  ASSERT_EQ(StagingFiles(&staging), "");
  leftovers =
      std::count_if(staging.begin(), staging.end(), [](const std::string& n) { return n.rfind("host0~", 0) == 0; });
  Info("host0's staging files after the second kill: " + std::to_string(leftovers));
  // kvfs writes a version to staging/ only while committing it, so a kill
  // rarely leaves one behind: add leftovers as a killed kvfs would leave them
  // (<host>~<pid>~<n>.tmp of a process that is gone), next to ones that must
  // stay: another host's, and one of a process of this host that still runs.
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  ASSERT_GT(gone, 0);
  ASSERT_EQ(waitpid(gone, nullptr, 0), gone);
  const std::string mine_dead = "host0~" + std::to_string(gone) + "~7.tmp";
  const std::string mine_alive = "host0~" + std::to_string(getpid()) + "~7.tmp";
  const std::string theirs_dead = "host1~" + std::to_string(gone) + "~7.tmp";
  ASSERT_EQ(InChild([&]() -> std::string {
              for (const std::string& n : {mine_dead, mine_alive, theirs_dead}) {
                std::string err = WriteFile(StoreDir() + "/staging/" + n, MakeData(9, 100000));
                if (!err.empty()) return err;
              }
              return "ok";
            }),
            "ok");
  ASSERT_EQ(MountHost(0), "");
  ASSERT_EQ(StagingFiles(&staging), "");
  std::set<std::string> left(staging.begin(), staging.end());
  for (const auto& n : staging) {
    if (n != mine_alive) {
      EXPECT_NE(n.rfind("host0~", 0), 0u) << "not swept at remount: staging/" << n;
    }
  }
  EXPECT_TRUE(left.count(mine_alive)) << "swept the staging file of a live process of this host";
  EXPECT_TRUE(left.count(theirs_dead)) << "swept another host's staging file";
  EXPECT_EQ(InChild(
                [&]() -> std::string {
                  for (int i : listed) {
                    std::string err = CheckFile(P(0, Key("k", i)), MakeData(1000 + i, kSize));
                    if (!err.empty()) return err;
                  }
                  return "ok";
                },
                120000),
            "ok")
      << "host0 after its remount";
}

// ---------------------------------------------------------------------------
// f. Exactly one host evicts; when its kvfs dies another takes over, and the
//    store comes back under its cluster-wide capacity.

// The lease files (cluster/evictor.<epoch>) present now.
std::string LeaseFiles(const std::string& store_dir, std::vector<std::string>* leases) {
  std::vector<std::string> names;
  std::string err = ListDirInChild(store_dir + "/cluster", &names);
  leases->clear();
  for (const auto& n : names) {
    if (n.rfind("evictor.", 0) == 0) leases->push_back(n);
  }
  std::sort(leases->begin(), leases->end());
  return err;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : " ") + n;
  return s.empty() ? "(none)" : s;
}

// A longer lease ttl than the fixture's 1.5 s: on this 2-core VM a kvfs
// reconcile pass over GlusterFS takes ~7 ms per object, more under write
// load, and the lease is renewed once per pass, so with 1.5 s a holder that
// is alive loses the lease under write load (passes of over a second).
//
// Fails with kvfs as of 920001a, by the lease renewal bug described at
// EvictorLeaseStaysWithLiveHolder: the lease flaps between the two
// survivors, both evict, and the final non-holder's eviction count is not 0.
class EvictorTest : public SharedTierTest {
 protected:
  std::string Capacity() const override { return "48M"; }
  double LeaseTtlSeconds() const override { return 5.0; }
};

TEST_F(EvictorTest, EvictorTakeover) {
  // Which hosts hold the lease, as their stats say.
  auto holders = [&](const std::vector<size_t>& which, std::vector<size_t>* out, std::string* why) {
    out->clear();
    std::set<std::string> named;
    for (size_t h : which) {
      std::string err;
      auto st = HostStats(h, &err);
      if (!st) {
        *why = err;
        return false;
      }
      if (StoreBool(*st, {"shared", "holds_evictor"})) out->push_back(h);
      named.insert(StoreString(*st, {"shared", "evictor_holder"}));
    }
    *why = std::to_string(out->size()) + " hosts hold the lease; holders named: ";
    for (const auto& n : named) *why += "'" + n + "' ";
    return out->size() == 1 && named.size() == 1 && *named.begin() == host_id(out->front());
  };
  std::vector<size_t> held;
  std::string why;
  ASSERT_TRUE(WaitFor(
      [&] {
        return holders({0, 1, 2}, &held, &why);
      },
      8s, 100ms))
      << "not exactly one evictor among the three hosts: " << why;
  const size_t first = held[0];
  Info("evictor: " + host_id(first));

  ASSERT_EQ(KillHost(first), "");
  auto killed = Clock::now();
  std::vector<size_t> survivors;
  for (size_t h = 0; h < 3; ++h) {
    if (h != first) survivors.push_back(h);
  }
  auto takeover_limit = std::chrono::milliseconds(static_cast<int>(LeaseTtlSeconds() * 1000) + 5000);
  ASSERT_TRUE(WaitFor([&] { return holders(survivors, &held, &why); }, takeover_limit, 100ms))
      << "no single survivor took the lease within ttl + 5 s: " << why;
  const size_t holder = held[0];
  const size_t other = survivors[0] == holder ? survivors[1] : survivors[0];
  Info(host_id(holder) + " took the evictor lease " + std::to_string(SecondsSince(killed)) + " s after " +
       host_id(first) + "'s kvfs was killed (lease ttl " + std::to_string(LeaseTtlSeconds()) + " s)");

  std::vector<std::string> leases_before, leases_after;
  ASSERT_EQ(LeaseFiles(StoreDir(), &leases_before), "");

  // ~150 MiB of 1 MiB keys through both survivors at once. A non-holder's
  // commit may get ENOSPC when the holder has not made room within three
  // reconcile passes; such a write is retried (and counted).
  constexpr int kPerHost = 75;
  auto writer = [&](size_t host) {
    return [&, host](Channel&) -> std::string {
      int enospc = 0;
      for (int i = 0; i < kPerHost; ++i) {
        std::string path = P(host, "h" + std::to_string(host) + "-" + Key("", i));
        auto data = MakeData(host * 1000 + i, kMiB);
        auto deadline = Clock::now() + 30s;
        for (;;) {
          std::string err = WriteFile(path, data);
          if (err.empty()) break;
          if (err.find("ENOSPC") == std::string::npos || Clock::now() > deadline) return err;
          ++enospc;
          std::this_thread::sleep_for(100ms);
        }
      }
      return "ok " + std::to_string(enospc);
    };
  };
  auto start = Clock::now();
  ChildProcess wa(writer(holder)), wb(writer(other));
  std::string ra = wa.Wait(300000).Summary(), rb = wb.Wait(300000).Summary();
  ASSERT_EQ(ra.rfind("ok ", 0), 0u) << "writer on " << host_id(holder) << " (holder): " << ra;
  ASSERT_EQ(rb.rfind("ok ", 0), 0u) << "writer on " << host_id(other) << ": " << rb;
  Info("wrote 150 MiB in " + std::to_string(SecondsSince(start)) + " s; ENOSPC retries: holder " + ra.substr(3) +
       ", non-holder " + rb.substr(3));

  const uint64_t capacity = 48 * kMiB;
  uint64_t bytes = 0, files = 0;
  std::string err;
  EXPECT_TRUE(WaitFor(
      [&] {
        err = ObjectBytes(&bytes, &files);
        return err.empty() && bytes <= capacity;
      },
      30s, 200ms))
      << "objects/ holds " << bytes << " bytes in " << files << " files, capacity " << capacity << " " << err;
  Info("objects/: " + std::to_string(bytes) + " bytes in " + std::to_string(files) + " files");

  auto hs = HostStats(holder, &err);
  ASSERT_TRUE(hs) << err;
  auto os = HostStats(other, &err);
  ASSERT_TRUE(os) << err;
  EXPECT_TRUE(StoreBool(*hs, {"shared", "holds_evictor"})) << host_id(holder) << " lost the lease";
  EXPECT_FALSE(StoreBool(*os, {"shared", "holds_evictor"}));
  EXPECT_GT(StoreU64(*hs, {"evictions", "total"}), 0u) << "the holder evicted nothing";
  EXPECT_EQ(StoreU64(*os, {"evictions", "total"}), 0u) << "the non-holder evicted";
  Info("evictions: holder " + std::to_string(StoreU64(*hs, {"evictions", "total"})) + ", non-holder " +
       std::to_string(StoreU64(*os, {"evictions", "total"})));
  // The holder was alive throughout: nobody took the lease over.
  ASSERT_EQ(LeaseFiles(StoreDir(), &leases_after), "");
  EXPECT_EQ(JoinNames(leases_after), JoinNames(leases_before)) << "the lease changed hands while its holder was alive";
}

// The lease stays with a live holder: with two idle hosts (the fixture's
// --dfs-refresh 0.3, --dfs-lease-ttl 1.5), nobody takes it over and the two
// never both report holding it.
//
// Fails with kvfs as of 920001a: the holder renews by rewriting
// cluster/evictor.<epoch> in place (DfsCluster::RenewEvictorLease ->
// WriteSmallFile: same inode, usually the same size), and the other
// GlusterFS client keeps serving that file's old bytes from its page cache
// (buffered reads; O_DIRECT reads see the new bytes). The watcher there sees
// no renewals, takes the lease after the ttl, and the lease flaps between
// live hosts, both evicting for a while (see also EvictorTakeover).
class LeaseTest : public SharedTierTest {
 protected:
  size_t HostCount() const override { return 2; }
};

TEST_F(LeaseTest, EvictorLeaseStaysWithLiveHolder) {
  ASSERT_EQ(InChild([&]() -> std::string {
              for (int i = 0; i < 10; ++i) {
                std::string err = WriteFile(P(0, Key("s", i)), MakeData(i, 4096));
                if (!err.empty()) return err;
              }
              return "ok";
            }),
            "ok");
  std::vector<std::string> before, now;
  ASSERT_EQ(LeaseFiles(StoreDir(), &before), "");
  ASSERT_EQ(before.size(), 1u) << JoinNames(before);
  int both = 0, none = 0, samples = 0;
  // Four lease ttls.
  auto end = Clock::now() + std::chrono::milliseconds(static_cast<int>(LeaseTtlSeconds() * 4000));
  while (Clock::now() < end) {
    std::string err;
    auto s0 = HostStats(0, &err);
    ASSERT_TRUE(s0) << err;
    auto s1 = HostStats(1, &err);
    ASSERT_TRUE(s1) << err;
    bool h0 = StoreBool(*s0, {"shared", "holds_evictor"}), h1 = StoreBool(*s1, {"shared", "holds_evictor"});
    both += h0 && h1;
    none += !h0 && !h1;
    ++samples;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(LeaseFiles(StoreDir(), &now), "");
  EXPECT_EQ(JoinNames(now), JoinNames(before)) << "the lease changed hands while both hosts were alive";
  EXPECT_EQ(both, 0) << "both hosts reported holds_evictor in " << both << " of " << samples << " samples";
  Info(std::to_string(samples) + " samples: both holding " + std::to_string(both) + ", neither " +
       std::to_string(none) + "; lease files before " + JoinNames(before) + ", after " + JoinNames(now));
}

// ---------------------------------------------------------------------------
// g. Stores and flags kvfs must refuse: one error line, nothing mounted,
//    nothing changed.

class OneHostTest : public SharedTierTest {
 protected:
  size_t HostCount() const override { return 1; }
};

// kvfs processes serving (or starting to serve) `mountpoint`.
int KvfsProcessesFor(const std::string& mountpoint) {
  int n = 0;
  DIR* proc = opendir("/proc");
  if (!proc) return -1;
  while (dirent* e = readdir(proc)) {
    if (std::atoi(e->d_name) <= 0) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/cmdline");
    std::vector<std::string> argv;
    std::string arg;
    while (std::getline(in, arg, '\0')) argv.push_back(arg);
    if (argv.size() > 2 && argv[1] == "mount" && argv[2] == mountpoint) ++n;
  }
  closedir(proc);
  return n;
}

TEST_F(OneHostTest, BadStoreRefused) {
  // A valid manifest, as host0 wrote it.
  std::string manifest = InChild([&]() -> std::string {
    std::ifstream in(StoreDir() + "/kvfs-manifest.toml");
    if (!in) return "cannot read " + StoreDir() + "/kvfs-manifest.toml";
    return "ok\n" + std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  });
  ASSERT_EQ(manifest.rfind("ok\n", 0), 0u) << manifest;
  manifest = manifest.substr(3);
  ASSERT_NE(manifest.find("\nformat = "), std::string::npos) << manifest;

  std::string mnt = local_root() + "/refused";
  ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
  auto mount_cmd = [&](const std::string& store, const std::string& host) {
    return std::vector<std::string>{kvfs_binary(),
                                    "mount",
                                    mnt,
                                    "--store",
                                    "dfs:" + store,
                                    "--host-id",
                                    host,
                                    "--dfs-refresh",
                                    "0.3",
                                    "--dfs-lease-ttl",
                                    "1.5",
                                    "--log-file",
                                    local_root() + "/refused.log"};
  };
  auto expect_refused = [&](const std::vector<std::string>& argv, const std::string& want_in_message) {
    CommandResult r = RunCommand(argv, 60000);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(r.timed_out);
    EXPECT_TRUE(r.out.empty() || r.out.find("mounted") == std::string::npos) << r.Describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "want one error line: " << r.Describe();
    EXPECT_NE(r.err.find(want_in_message), std::string::npos) << r.Describe();
    EXPECT_EQ(CountMountsAt(mnt), 0) << "something is mounted at " << mnt;
    EXPECT_EQ(KvfsProcessesFor(mnt), 0) << "a kvfs process for " << mnt << " is still running";
    if (CountMountsAt(mnt) > 0) RunCommand({"/bin/umount", "-l", mnt});
    Info("refused (exit " + std::to_string(r.exit_code) + "): " + r.err.substr(0, r.err.find('\n')));
  };

  struct Bad {
    const char* dir;
    std::string text;
    const char* message;
  };
  std::string format99 = manifest;
  size_t f = format99.find("\nformat = ");
  format99.replace(f, format99.find('\n', f + 1) - f, "\nformat = 99");
  const Bad bads[] = {
      {"format99", format99, "format 99"},
      {"unknown-field", manifest + "colour = \"blue\"\n", "colour"},
  };
  for (const Bad& bad : bads) {
    SCOPED_TRACE(bad.dir);
    std::string dir = StoreDir() + "/" + bad.dir;
    ASSERT_EQ(InChild([&]() -> std::string {
                if (mkdir(dir.c_str(), 0755) != 0) return ErrnoMessage("mkdir " + dir);
                std::ofstream out(dir + "/kvfs-manifest.toml");
                out << bad.text;
                out.close();
                return out ? "ok" : "cannot write the manifest";
              }),
              "ok");
    expect_refused(mount_cmd(dir, "host9"), bad.message);
    // The refused store is left as it was: same manifest, no layout created.
    std::vector<std::string> names;
    ASSERT_EQ(ListDirInChild(dir, &names), "");
    EXPECT_EQ(names, std::vector<std::string>{"kvfs-manifest.toml"});
    std::string now = InChild([&]() -> std::string {
      std::ifstream in(dir + "/kvfs-manifest.toml");
      return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    });
    EXPECT_EQ(now, bad.text);
  }

  // Host ids that would break the names in staging/ and cluster/.
  std::string fresh = StoreDir() + "/fresh";
  expect_refused(mount_cmd(fresh, "bad/id"), "--host-id");
  expect_refused(mount_cmd(fresh, ".hidden"), "--host-id");
  // --dfs-refresh must be at most a third of the lease ttl.
  auto argv = mount_cmd(fresh, "host9");
  argv[8] = "1";  // --dfs-refresh 1 with --dfs-lease-ttl 1.5
  expect_refused(argv, "--dfs-refresh");
  EXPECT_EQ(InChild([&] { return StatErrno(fresh) == ENOENT ? "ok" : "refused mounts created " + fresh; }), "ok");

  // host0 is unaffected.
  auto data = MakeData(7, 10000);
  EXPECT_EQ(WriteIn(P(0, "still-fine"), data), "ok");
  EXPECT_EQ(CheckIn(P(0, "still-fine"), data), "ok");
}

// ---------------------------------------------------------------------------
// h. The DFS stops answering (both brick servers stopped): with a store
//    deadline, kvfs answers with errors instead of hanging, its stats still
//    answer, and it works again, without a restart, once the DFS is back.

std::vector<pid_t> BrickPids(const std::string& gluster_dir) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (!proc) return pids;
  while (dirent* e = readdir(proc)) {
    pid_t pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream comm(std::string("/proc/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name != "glusterfsd") continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find(gluster_dir + "/brick") != std::string::npos) pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

class DfsStopsTest : public SharedTierTest {
 protected:
  size_t HostCount() const override { return 1; }
  std::vector<std::string> ExtraMountArgs(size_t) const override { return {"--store-deadline", "2"}; }

  // SIGSTOPs both brick servers; the guard SIGCONTs them (also when the test
  // fails half-way).
  struct Stopped {
    std::vector<pid_t> pids;
    Clock::time_point since = Clock::now();
    void Resume() {
      for (pid_t p : pids) kill(p, SIGCONT);
      pids.clear();
    }
    ~Stopped() { Resume(); }
  };
  void StopBricks(Stopped* stopped) {
    std::vector<pid_t> bricks = BrickPids(gluster_dir());
    ASSERT_EQ(bricks.size(), 2u) << "want the two glusterfsd brick processes of " << gluster_dir();
    for (pid_t p : bricks) {
      stopped->pids.push_back(p);
      ASSERT_EQ(kill(p, SIGSTOP), 0) << ErrnoMessage("SIGSTOP brick");
    }
    stopped->since = Clock::now();
  }
  // host0's open handles reach 0 (the kernel sends RELEASE asynchronously
  // after close(2)).
  void WaitNoOpenHandles() {
    uint64_t open = 0;
    ASSERT_TRUE(WaitFor(
        [&] {
          auto st = HostStats(0);
          const JsonValue* h = st ? st->Find("open_handles") : nullptr;
          open = h ? h->AsU64() : 1;
          return h && open == 0;
        },
        10s))
        << "host0 still has " << open << " open handles";
  }
  // After the bricks resume: host0 writes and reads keys again, without a
  // restart, within 60 s.
  void ExpectWorksAgain(const std::vector<uint8_t>& before) {
    auto resumed = Clock::now();
    auto after = MakeData(802, 300000);
    std::string last;
    bool works = WaitFor(
        [&] {
          last = InChild(
              [&] {
                std::string e = WriteFile(P(0, "after"), after);
                if (e.empty()) e = CheckFile(P(0, "after"), after);
                if (e.empty()) e = CheckFile(P(0, "before"), before);
                return Ok(e);
              },
              30000);
          return last == "ok";
        },
        60s, 500ms);
    EXPECT_TRUE(works) << "kvfs does not work again within 60 s of the DFS coming back: " << last;
    Info("host0 works again " + std::to_string(SecondsSince(resumed)) + " s after the bricks resumed");
  }
};

// In a child: stat(path); "exists" or the errno's name.
std::string StatResultIn(const std::string& path) {
  return InChild(
      [&]() -> std::string {
        struct stat st {};
        return stat(path.c_str(), &st) == 0 ? "exists" : ErrnoName(errno);
      },
      60000);
}

TEST_F(DfsStopsTest, DfsStopsAnswering) {
  auto before = MakeData(801, 300000);
  ASSERT_EQ(WriteIn(P(0, "before"), before), "ok");
  ASSERT_EQ(CheckIn(P(0, "before"), before), "ok");
  // The reader's RELEASE must not be in flight when the DFS stops: closing
  // an object file then blocks the whole mount (CloseWhileDfsStopsAnswering).
  ASSERT_NO_FATAL_FAILURE(WaitNoOpenHandles());

  Stopped stopped;
  ASSERT_NO_FATAL_FAILURE(StopBricks(&stopped));
  // A lookup of a key that is not indexed must ask the DFS (read-through).
  auto t = Clock::now();
  std::string lookup = StatResultIn(P(0, "never-written"));
  double lookup_s = SecondsSince(t);
  // An open of an indexed key revalidates against the DFS.
  t = Clock::now();
  std::string open = OpenResultIn(P(0, "before"), 60000);
  double open_s = SecondsSince(t);
  Info("bricks stopped: lookup of a new key gave " + lookup + " after " + std::to_string(lookup_s) +
       " s; open of an existing key gave " + open + " after " + std::to_string(open_s) + " s");
  // The store deadline is 2 s: an error, well before GlusterFS itself gives
  // up on the bricks (network.ping-timeout 5 s in gluster-up.sh).
  EXPECT_TRUE(lookup == "EIO" || lookup == "ETIMEDOUT" || lookup == "ENOENT") << lookup;
  EXPECT_LT(lookup_s, 5.0);
  EXPECT_TRUE(open == "EIO" || open == "ETIMEDOUT" || open == "ENOTCONN") << open;
  EXPECT_LT(open_s, 5.0);
  t = Clock::now();
  std::string err;
  auto st = HostStats(0, &err);
  double stats_s = SecondsSince(t);
  ASSERT_TRUE(st) << "kvfs stats while the DFS does not answer: " << err;
  // Not bounded by the store deadline (kvfs as of 920001a): stats waits for
  // the evictor lease's mutex, which the lease renewal holds across DFS
  // calls that have no deadline, until GlusterFS gives up on the bricks.
  EXPECT_LT(stats_s, 15.0);
  Info("kvfs stats answered in " + std::to_string(stats_s) + " s; health: calls " +
       std::to_string(StoreU64(*st, {"health", "calls"})) + ", failures " +
       std::to_string(StoreU64(*st, {"health", "failures"})) + ", timeouts " +
       std::to_string(StoreU64(*st, {"health", "timeouts"})));
  EXPECT_GT(StoreU64(*st, {"health", "timeouts"}), 0u);

  Info("bricks were stopped for " + std::to_string(SecondsSince(stopped.since)) + " s");
  stopped.Resume();
  ExpectWorksAgain(before);
}

// A reader closes its file while the DFS does not answer. The close itself
// returns at once (the kernel sends RELEASE asynchronously), and the mount
// must go on answering within the store deadline.
//
// Fails with kvfs as of 920001a: Engine::Release drops the read lease (which
// close(2)s the object's descriptor on the DFS) while holding the engine's
// index mutex mu_; GlusterFS's close blocks until the client gives up on the
// bricks, and every lookup, open and getattr on the mount waits for mu_.
TEST_F(DfsStopsTest, CloseWhileDfsStopsAnswering) {
  auto before = MakeData(801, 300000);
  ASSERT_EQ(WriteIn(P(0, "before"), before), "ok");
  ChildProcess reader([&](Channel& ch) -> std::string {
    Fd fd(open(P(0, "before").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoMessage("open");
    std::string e = CheckFd(fd.get(), before);
    if (!e.empty()) return e;
    ch.Send("opened");
    e = ch.Expect("close", 60000);
    if (!e.empty()) return e;
    return fd.Close() == 0 ? "ok" : ErrnoMessage("close");
  });
  ASSERT_EQ(reader.channel().Expect("opened", 60000), "");

  Stopped stopped;
  ASSERT_NO_FATAL_FAILURE(StopBricks(&stopped));
  ASSERT_TRUE(reader.channel().Send("close"));
  EXPECT_EQ(reader.Wait(30000).Summary(), "ok");
  auto t = Clock::now();
  std::string lookup = StatResultIn(P(0, "never-written"));
  double lookup_s = SecondsSince(t);
  Info("bricks stopped, a reader closed: lookup of a new key gave " + lookup + " after " + std::to_string(lookup_s) +
       " s");
  EXPECT_TRUE(lookup == "EIO" || lookup == "ETIMEDOUT" || lookup == "ENOENT") << lookup;
  EXPECT_LT(lookup_s, 5.0) << "the lookup waited beyond the 2 s store deadline";
  Info("bricks were stopped for " + std::to_string(SecondsSince(stopped.since)) + " s");
  stopped.Resume();
  ExpectWorksAgain(before);
}

}  // namespace
}  // namespace kvfs::dfs_test
