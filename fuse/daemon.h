// The kvfs daemon and the CLI actions that talk to a running one.
//
// RunMount opens the stores, rebuilds the index, mounts and serves until
// unmounted. Without `foreground` it forks: the parent returns 0 only once
// the child has mounted (or prints the child's one-line error and returns 1),
// so a script can use the mount as soon as `kvfs mount` exits. Nothing is
// left mounted when start-up fails. A dead kvfs mount on the mountpoint
// (its daemon was killed) is detached first, so that a restart succeeds.
// In the foreground, kvfs tells a service manager when the mount is ready
// and when it stops (fuse/service_notify.h); SIGTERM, SIGINT and SIGHUP
// unmount and end it with exit code 0.
//
// RunUmount unmounts and waits until the daemon has exited (so its stores can
// be opened again at once). RunStats reads live figures from the daemon via
// the mount root's user.kvfs.stats attributes.
//
// ParseStoreSpec is pure (it lives with the command line, fuse/cli.cc).
//
// These functions print their own one-line errors to stderr and return a
// process exit code. Not thread-safe (they own the process).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvfs {

inline constexpr const char* kDefaultStoreDir = "/var/lib/kvfs/store";

// Where mounts of a dfs: store log unless --log-file says otherwise.
inline constexpr const char* kDfsLogDir = "/var/log/kvfs";

struct MountOptions {
  std::string mountpoint;
  // "DIR" or "DIR:SIZE" (a capacity for that store), optionally prefixed
  // with "local:" (the default) or "dfs:" (a directory on a distributed
  // filesystem shared with other hosts; then the only store, and its SIZE
  // is the cluster-wide capacity); empty: kDefaultStoreDir.
  std::vector<std::string> stores;
  // The mount's capacity, shared evenly by the stores without their own
  // SIZE; empty: each such store gets half of its filesystem.
  std::optional<uint64_t> capacity;
  // Free-space floor on each store's filesystem: bytes, or a fraction of the
  // filesystem's size when min_free_fraction is set.
  uint64_t min_free_bytes = 0;
  double min_free_fraction = 0.02;
  std::string eviction_policy = "s3fifo";
  double high_watermark = 0.95;
  double low_watermark = 0.90;
  bool foreground = false;
  // Mount over a directory that is not empty (its entries are hidden while
  // mounted); `-o nonempty`. Without it such a mountpoint is refused.
  bool nonempty = false;
  std::vector<std::string> fuse_options;
  std::string log_file;                 // empty: stderr (foreground) or <first store>/kvfs.log
  std::string log_level = "info";
  // Readahead set on the mount's bdi (0: leave the kernel's). Only page-cache
  // handles read ahead; 1 MiB measured slower than the kernel's default.
  unsigned read_ahead_kb = 0;
  // FUSE request sizing: the largest WRITE (and, through the kernel's page
  // limit, READ) request, and how many background requests (readahead,
  // async direct I/O) the kernel keeps in flight.
  uint64_t max_request = 1 << 20;
  // Bytes the daemon reads ahead for a sequential reader that bypasses the
  // page cache (0: off).
  uint64_t daemon_read_ahead = 2 << 20;
  unsigned max_background = 12;
  // Open files one uid may hold on the mount (0: a quarter of what the
  // daemon serves, see fuse/handle_quota.h).
  uint64_t max_handles_per_user = 0;
  size_t buffer_count = 64;
  uint64_t buffer_size = 1 << 20;
  bool io_uring = true;
  bool direct_io = true;
  // Let the kernel cache committed versions' pages (see docs/contract.md).
  bool page_cache = true;
  // Let the kernel cache directory listings (invalidated on every change).
  bool readdir_cache = true;
  uint32_t verify_one_in = 1;
  // "file", "group" or "each": see EngineOptions::CommitFlush.
  std::string commit_flush = "file";
  // "background" (default): a commit is published at close and flushed to
  // the drive within sync_interval_s; "close": flushed before close returns.
  std::string durability = "background";
  double sync_interval_s = 1.0;
  // Deadline of each store operation (0: none).
  double store_deadline_s = 30.0;
  // Kernel caching of names and of committed file attributes; every change
  // the kernel did not make itself is invalidated by kvfs.
  double entry_timeout = 60.0;
  double negative_timeout = 60.0;
  // Shared (dfs:) stores: this host's name (default: the hostname), how often
  // to reconcile with the other hosts, and after how long without renewal
  // the evictor lease passes to another host. The kernel then caches names
  // and attributes for at most dfs_cache_timeout.
  std::string host_id;
  double dfs_refresh_s = 2.0;
  double dfs_lease_ttl_s = 10.0;
  double dfs_cache_timeout = 1.0;
  // "ADDR:PORT" to serve Prometheus metrics on (GET /metrics); empty: off.
  // Checked by the command line (fuse/listen_address.h).
  std::string metrics_listen;
};

// "DIR" or "DIR:SIZE" as given to --store.
struct StoreSpec {
  bool dfs = false;
  std::string dir;
  std::optional<uint64_t> capacity;
};
StoreSpec ParseStoreSpec(const std::string& spec);

int RunMount(const MountOptions& options);
int RunUmount(const std::string& mountpoint);
// Prints the stats once, or with watch_seconds > 0 a line of rates per
// interval (reads, MiB read, commits and evictions per second, and the
// share of lookups that found their key), watch_count lines (0: until
// SIGINT or SIGTERM, which exit 0).
int RunStats(const std::string& mountpoint, bool json, double watch_seconds = 0, uint64_t watch_count = 0);
// Offline check of a store; exit 0 clean, 1 problems found, 2 could not check.
int RunFsck(const std::string& store_dir, bool repair, bool json);

}  // namespace kvfs
