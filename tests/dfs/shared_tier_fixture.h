// SharedTierTest: a googletest fixture that runs several kvfs "hosts" over one
// directory of a GlusterFS volume (a `dfs:` store), the way several inference
// hosts share one KV tier.
//
// The volume comes from packaging/gluster-up.sh (ctest's gluster_up fixture
// test), mounted twice as two independent GlusterFS clients at
// $KVFS_GLUSTER_DIR/mnt and $KVFS_GLUSTER_DIR/mnt2. Without KVFS_GLUSTER_DIR
// the tests are skipped.
//
// Layout. SetUp makes a fresh directory on the volume,
// $KVFS_GLUSTER_DIR/mnt/kv/<test>-<pid>-<n> (the store; through the second
// client it is .../mnt2/kv/<test>-<pid>-<n>), and a local folder
// ${TMPDIR:-/tmp}/kvfs-test-XXXXXX/ with one mountpoint per host (host0/,
// host1/, ...) and the hosts' log files (never on the DFS). It then mounts
// HostCount() hosts:
//   kvfs mount <local>/hostN --store dfs:<client>/kv/<dir>:<Capacity()>
//        --host-id hostN --dfs-refresh <RefreshSeconds()> --dfs-lease-ttl <LeaseTtlSeconds()>
//        --log-file <local>/hostN.log [ExtraMountArgs(N)]
// where <client> alternates between the two GlusterFS clients (host0: mnt,
// host1: mnt2, host2: mnt, ...), so hosts really go through different DFS
// clients. TearDown unmounts every host (`kvfs umount`, falling back to
// `umount -l`) even after failures, prints the tail of each host's log when
// the test failed, and removes both the local folder and the directory on
// the volume.
//
// I/O on the mounts goes through forked children (RunInChild, ChildProcess
// from mount_fixture.h), each with a deadline, so a hung mount fails a test
// instead of blocking it. Helpers that touch the DFS directly (listing
// staging/, summing objects/) also run in children.
//
// Thread-safety: none; the test process is single-threaded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::dfs_test {

using mounted_test::JsonValue;

class SharedTierTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Number of hosts SetUp mounts (default 3).
  virtual size_t HostCount() const { return 3; }
  // The cluster-wide capacity, the SIZE of dfs:DIR:SIZE (default 1G).
  virtual std::string Capacity() const { return "1G"; }
  // Extra `kvfs mount` arguments for host i.
  virtual std::vector<std::string> ExtraMountArgs(size_t host) const { return {}; }

  // --dfs-refresh of every host (default kRefreshSeconds).
  static constexpr double kRefreshSeconds = 0.3;
  virtual double RefreshSeconds() const { return kRefreshSeconds; }
  // --dfs-lease-ttl of every host (default 1.5 s).
  virtual double LeaseTtlSeconds() const { return 1.5; }

  // The GlusterFS state directory ($KVFS_GLUSTER_DIR).
  const std::string& gluster_dir() const { return gluster_dir_; }
  // The store directory as host i's DFS client sees it.
  std::string StoreDir(size_t host) const;
  // The store directory through the first client (what the test inspects).
  std::string StoreDir() const { return StoreDir(0); }
  // Path of `relative` inside host i's mount.
  std::string P(size_t host, std::string_view relative) const;
  const std::string& mnt(size_t host) const { return hosts_.at(host).mnt; }
  const std::string& log_path(size_t host) const { return hosts_.at(host).log; }
  const std::string& local_root() const { return local_root_; }
  std::string host_id(size_t host) const { return "host" + std::to_string(host); }
  size_t hosts() const { return hosts_.size(); }
  bool mounted(size_t host) const { return hosts_.at(host).mounted; }
  static std::string kvfs_binary();

  // The `kvfs mount` command line for host i.
  std::vector<std::string> MountCommand(size_t host) const;
  // Mounts host i; "" on success, else a description (command output and
  // the tail of its log).
  std::string MountHost(size_t host);
  // `kvfs umount`, falling back to `umount -l`; "" on a clean unmount.
  std::string UnmountHost(size_t host);
  // SIGKILLs host i's kvfs daemon, waits for it to be gone, then detaches
  // the dead mount (`umount -l`). "" on success.
  // pid: the daemon's pid when the caller looked it up beforehand (to kill
  // at a precise moment), else -1 to look it up now.
  std::string KillHost(size_t host, pid_t pid = -1);
  // The pid of host i's daemon: the root's user.kvfs.pid xattr (read in a
  // child, with a deadline), else the kvfs process whose command line is
  // `kvfs mount <host i's mountpoint> ...`. -1 when none is found.
  pid_t DaemonPid(size_t host) const;

  // `kvfs stats <mnt> --json`, parsed; nullopt (and *error) on failure.
  std::optional<JsonValue> HostStats(size_t host, std::string* error = nullptr) const;
  // The "stores"[0] object of `kvfs stats --json` (the dfs store), or nullptr.
  static const JsonValue* StoreOf(const JsonValue& stats);
  // stores[0].<path...> as a number / boolean / string; 0, false, "" when
  // missing. E.g. StoreU64(st, {"shared", "read_through"}).
  static uint64_t StoreU64(const JsonValue& stats, std::initializer_list<std::string_view> path);
  static bool StoreBool(const JsonValue& stats, std::initializer_list<std::string_view> path);
  static std::string StoreString(const JsonValue& stats, std::initializer_list<std::string_view> path);

  // Polls pred every `poll` until it returns true or `timeout` passes; true
  // when it did. The time it took goes to *elapsed_s when given.
  static bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                      std::chrono::milliseconds poll = std::chrono::milliseconds(50), double* elapsed_s = nullptr);

  // Names in DIR/staging (as seen through the first client), read in a
  // child; "" or an error.
  std::string StagingFiles(std::vector<std::string>* names) const;
  // Sum of the sizes of the files under DIR/objects, walked in a child.
  std::string ObjectBytes(uint64_t* bytes, uint64_t* files = nullptr) const;
  // Last `lines` lines of host i's log.
  std::string LogTail(size_t host, size_t lines = 40) const;

 private:
  struct Host {
    std::string mnt;
    std::string log;
    bool mounted = false;
  };
  std::string gluster_dir_;
  std::string store_name_;  // <test>-<pid>-<n>, the directory under kv/
  std::string local_root_;
  std::vector<Host> hosts_;
};

// Runs `fn` in a forked child with a deadline and returns what fn returned
// (the tests use "ok" for success); a child that timed out, died or exited
// badly gives a description of that instead (ChildOutcome::Summary).
std::string InChild(const std::function<std::string()>& fn, int timeout_ms = 60 * 1000);

// ListDir(dir) run in a forked child with a deadline; "" or an error.
std::string ListDirInChild(const std::string& dir, std::vector<std::string>* names, int timeout_ms = 60 * 1000);

}  // namespace kvfs::dfs_test
