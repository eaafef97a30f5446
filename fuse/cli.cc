#include "fuse/cli.h"

#include <CLI/CLI.hpp>

#include <cctype>
#include <iostream>

#include "adapters/dfs_store.h"
#include "core/size_parse.h"
#include "fuse/daemon.h"

namespace kvfs {
namespace {

int Misuse(const std::string& message) {
  std::cerr << "kvfs: " << message << " (see kvfs --help)" << std::endl;
  return 2;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"kvfs: a KV-cache offload tier as a FUSE filesystem"};
  app.require_subcommand(1);

  MountOptions mo;
  std::string capacity_text, buffer_size_text = "1M", max_request_text = "1M", read_ahead_text = "2M";
  CLI::App* mount = app.add_subcommand("mount", "mount kvfs on MOUNTPOINT");
  mount->add_option("mountpoint", mo.mountpoint, "directory to mount on")->required();
  mount->add_option("--store", mo.stores,
                    std::string("store directory, optionally DIR:SIZE; repeat to spread keys over several drives "
                                "(default ") + kDefaultStoreDir + "); dfs:DIR[:SIZE] for a directory on a distributed "
                                "filesystem shared with other hosts");
  mount->add_option("--capacity", capacity_text, "bytes the mount may use, e.g. 200G (default: half of each store's filesystem)");
  std::string min_free_text = "2%";
  mount->add_option("--min-free", min_free_text,
                    "free-space floor on each store's filesystem: SIZE or PERCENT% of the filesystem (default 2%)");
  mount->add_option("--eviction", mo.eviction_policy, "eviction policy: s3fifo (default), lru, sieve")
      ->check(CLI::IsMember({"s3fifo", "lru", "sieve"}));
  mount->add_option("--high-watermark", mo.high_watermark, "background eviction starts above this fraction of capacity")
      ->check(CLI::Range(0.01, 1.0));
  mount->add_option("--low-watermark", mo.low_watermark, "background eviction stops below this fraction of capacity")
      ->check(CLI::Range(0.01, 1.0));
  mount->add_flag("--foreground,-f", mo.foreground, "stay in the foreground and log to stderr");
  mount->add_option("-o", mo.fuse_options, "FUSE mount options, e.g. allow_other")->delimiter(',');
  mount->add_option("--log-file", mo.log_file, "log file (default: <first store>/kvfs.log; stderr in the foreground)");
  mount->add_option("--log-level", mo.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  mount->add_option("--read-ahead-kb", mo.read_ahead_kb, "kernel readahead for the mount, KiB (0, default: leave the kernel's)");
  mount->add_option("--daemon-read-ahead", read_ahead_text,
                    "bytes the daemon reads ahead for a sequential reader that bypasses the page cache "
                    "(O_DIRECT), 0 to 64M (default 2M; 0: off)");
  mount->add_option("--max-request", max_request_text,
                    "largest FUSE read/write request, 4K to 1M in 4K steps (default 1M)");
  mount->add_option("--max-background", mo.max_background,
                    "FUSE requests the kernel keeps in flight in the background (default 12, the kernel's)")
      ->check(CLI::Range(1, 65535));
  mount->add_option("--buffers", mo.buffer_count, "number of registered read buffers")->check(CLI::Range(1, 65536));
  mount->add_option("--buffer-size", buffer_size_text, "size of each read buffer, a multiple of 256K (default 1M)");
  mount->add_option("--io-uring", mo.io_uring, "use io_uring for store I/O (true/false)");
  mount->add_option("--direct-io", mo.direct_io, "use O_DIRECT on the stores (true/false)");
  mount->add_option("--store-deadline", mo.store_deadline_s,
                    "seconds a store operation may take before it fails with ETIMEDOUT (0: no deadline; default 30)")
      ->check(CLI::Range(0.0, 86400.0));
  mount->add_option("--group-commit", mo.group_commit,
                    "commits meeting at the publish step share one syncfs (true, default; needs ext4/XFS) or each "
                    "fdatasync + fsync its directory (false)");
  mount->add_option("--durability", mo.durability,
                    "background (default): a commit at close is atomic and visible at once, and flushed to the "
                    "drive within --sync-interval; close: flushed before close() returns")
      ->check(CLI::IsMember({"background", "close"}));
  mount->add_option("--sync-interval", mo.sync_interval_s,
                    "background durability: seconds at most between a commit and its flush (default 1)")
      ->check(CLI::Range(0.001, 3600.0));
  mount->add_option("--verify-one-in", mo.verify_one_in,
                    "verify the checksum of one chunk in N read from the stores (1: all, default; 0: none)");
  mount->add_option("--page-cache", mo.page_cache,
                    "let the kernel cache committed versions' pages (true/false, default true; false: every read "
                    "comes from the drive)");
  mount->add_option("--readdir-cache", mo.readdir_cache,
                    "let the kernel cache directory listings, dropped on every change (true/false, default true)");
  mount->add_option("--host-id", mo.host_id, "this host's name on a dfs: store (default: the hostname)");
  mount->add_option("--dfs-refresh", mo.dfs_refresh_s,
                    "seconds between reconciliations with the other hosts of a dfs: store (default 2)")
      ->check(CLI::Range(0.05, 3600.0));
  mount->add_option("--dfs-lease-ttl", mo.dfs_lease_ttl_s,
                    "seconds without renewal after which another host takes over eviction on a dfs: store (default 10)")
      ->check(CLI::Range(0.2, 36000.0));
  mount->add_option("--entry-timeout", mo.entry_timeout, "seconds the kernel may cache a name")->check(CLI::Range(0.0, 3600.0));
  mount->add_option("--negative-timeout", mo.negative_timeout, "seconds the kernel may cache a missing name")
      ->check(CLI::Range(0.0, 3600.0));
  // The config file belongs to the top-level app (CLI11 reads config files
  // there) and is accepted after `mount` through fallthrough. Its keys are
  // the long flag names, at top level or under [mount].
  app.set_config("--config", "", "TOML file with any mount option (command-line flags win)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  mount->fallthrough();

  std::string umount_point;
  CLI::App* umount = app.add_subcommand("umount", "unmount kvfs from MOUNTPOINT and wait for the daemon to exit");
  umount->add_option("mountpoint", umount_point, "mounted directory")->required();

  std::string fsck_store;
  bool fsck_repair = false, fsck_json = false;
  CLI::App* fsck = app.add_subcommand("fsck", "check an unmounted store; exit 0 if clean, 1 if not");
  fsck->add_option("--store", fsck_store, "store directory")->required();
  fsck->add_flag("--repair", fsck_repair, "quarantine corrupt objects, drop superseded copies and staging leftovers");
  fsck->add_flag("--json", fsck_json, "print the summary as JSON");

  std::string stats_point;
  bool stats_json = false;
  CLI::App* stats = app.add_subcommand("stats", "print live figures of a mounted kvfs");
  stats->add_option("mountpoint", stats_point, "mounted directory")->required();
  stats->add_flag("--json", stats_json, "print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (what.empty()) what = "invalid command line";
    const std::string ini = "INI was not able to parse ";
    if (what.rfind(ini, 0) == 0) what = "config file: unknown key '" + what.substr(ini.size()) + "' (mount keys go under [mount])";
    return Misuse(what);
  }

  if (mount->parsed()) {
    if (!capacity_text.empty()) {
      Result<uint64_t> cap = ParseSize(capacity_text);
      if (!cap.ok()) return Misuse("--capacity: " + cap.status().message());
      if (*cap < (1 << 20)) return Misuse("--capacity must be at least 1M");
      mo.capacity = *cap;
    }
    if (!min_free_text.empty() && min_free_text.back() == '%') {
      try {
        size_t used = 0;
        double pct = std::stod(min_free_text.substr(0, min_free_text.size() - 1), &used);
        if (used != min_free_text.size() - 1 || pct < 0 || pct > 90) throw std::invalid_argument("pct");
        mo.min_free_fraction = pct / 100.0;
        mo.min_free_bytes = 0;
      } catch (const std::exception&) {
        return Misuse("--min-free: '" + min_free_text + "' is not a percentage between 0% and 90%");
      }
    } else {
      Result<uint64_t> floor = ParseSize(min_free_text);
      if (!floor.ok()) return Misuse("--min-free: " + floor.status().message());
      mo.min_free_bytes = *floor;
      mo.min_free_fraction = 0;
    }
    if (mo.low_watermark > mo.high_watermark) return Misuse("--low-watermark must not exceed --high-watermark");
    for (const std::string& s : mo.stores) {
      size_t colon = s.rfind(':');
      if (colon != std::string::npos && colon + 1 < s.size() && !ParseStoreSpec(s).capacity &&
          std::isdigit(static_cast<unsigned char>(s[colon + 1]))) {
        return Misuse("--store " + s + ": '" + s.substr(colon + 1) + "' is not a size");
      }
    }
    if (!mo.host_id.empty() && !ValidHostId(mo.host_id)) {
      return Misuse("--host-id '" + mo.host_id + "': use letters, digits, '.', '-' and '_' only");
    }
    Result<uint64_t> bs = ParseSize(buffer_size_text);
    if (!bs.ok()) return Misuse("--buffer-size: " + bs.status().message());
    if (*bs == 0 || *bs % (256 << 10) != 0 || *bs > (64 << 20)) {
      return Misuse("--buffer-size must be a multiple of 256K, at most 64M");
    }
    mo.buffer_size = *bs;
    Result<uint64_t> mr = ParseSize(max_request_text);
    if (!mr.ok()) return Misuse("--max-request: " + mr.status().message());
    if (*mr < 4096 || *mr % 4096 != 0 || *mr > (1 << 20)) {
      return Misuse("--max-request must be a multiple of 4K between 4K and 1M");
    }
    mo.max_request = *mr;
    Result<uint64_t> ra = ParseSize(read_ahead_text);
    if (!ra.ok()) return Misuse("--daemon-read-ahead: " + ra.status().message());
    if (*ra > (64 << 20)) return Misuse("--daemon-read-ahead must be at most 64M");
    mo.daemon_read_ahead = *ra;
    return RunMount(mo);
  }
  if (umount->parsed()) return RunUmount(umount_point);
  if (fsck->parsed()) return RunFsck(fsck_store, fsck_repair, fsck_json);
  if (stats->parsed()) return RunStats(stats_point, stats_json);
  return Misuse("unknown command");
}

}  // namespace kvfs
