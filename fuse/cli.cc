#include "fuse/cli.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "adapters/dfs_store.h"
#include "core/size_parse.h"
#include "fuse/listen_address.h"

#ifndef KVFS_VERSION
#define KVFS_VERSION "unknown"
#endif

namespace kvfs {
namespace {

// Bounds of the mount options (documented in the README's configuration
// table; keep the two in step).
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kMinCapacity = kMiB;
constexpr uint64_t kMaxCapacity = uint64_t{1} << 56;  // 64 PiB
constexpr uint64_t kMaxBufferPool = uint64_t{4} << 30;   // --buffers x --buffer-size
constexpr uint64_t kMaxBufferSize = 64 * kMiB;
constexpr uint64_t kMaxDaemonReadAhead = 64 * kMiB;

// A parse failure inside this file: the one line to print.
struct CliError {
  std::string message;
};

std::string FormatNumber(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A decimal number of seconds (or a fraction) within [lo, hi]: rejects
// NaN, infinities, hex floats and trailing text, which CLI11's Range lets by.
CLI::Validator Bounded(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        if (s.empty()) return "empty value";
        for (char c : s) {
          if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' || c == 'e' ||
                c == 'E')) {
            return "'" + s + "' is not a number";
          }
        }
        char* end = nullptr;
        errno = 0;
        double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) {
          return "'" + s + "' is not a number";
        }
        if (v < lo || v > hi) return s + " is out of range (" + FormatNumber(lo) + " to " + FormatNumber(hi) + ")";
        return std::string();
      },
      "NUMBER in [" + FormatNumber(lo) + ", " + FormatNumber(hi) + "]");
}

// A whole number within [lo, hi] (no sign, no fraction).
CLI::Validator Whole(uint64_t lo, uint64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        if (s.empty()) return "empty value";
        if (s.size() > 19) return s + " is out of range (" + std::to_string(lo) + " to " + std::to_string(hi) + ")";
        for (char c : s) {
          if (!std::isdigit(static_cast<unsigned char>(c))) return "'" + s + "' is not a whole number";
        }
        uint64_t v = std::strtoull(s.c_str(), nullptr, 10);
        if (v < lo || v > hi) return s + " is out of range (" + std::to_string(lo) + " to " + std::to_string(hi) + ")";
        return std::string();
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// true/false and the other spellings CLI11 accepts for a boolean.
CLI::Validator Boolean() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        static const std::set<std::string> words = {"true", "false", "1", "0", "on", "off", "yes", "no"};
        std::string lower;
        for (char c : s) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
        if (!words.count(lower)) return "'" + s + "' is not true or false";
        s = lower;
        return std::string();
      },
      "BOOL");
}

// `-o` items that belong to mount(8) or mount.fuse3 rather than to the
// filesystem; dropped when they reach kvfs.
bool IsMountHelperOption(const std::string& item) {
  static const std::set<std::string> names = {"_netdev", "nofail", "noauto", "auto", "defaults", "user",
                                              "nouser", "users", "owner", "group", "rw"};
  if (names.count(item)) return true;
  return item.rfind("x-", 0) == 0 || item.rfind("comment=", 0) == 0;
}

// FUSE options kvfs sets itself or that break its request sizing.
bool IsReservedFuseOption(const std::string& key) {
  static const std::set<std::string> names = {"fsname", "subtype", "fd", "blkdev", "blksize",
                                              "user_id", "group_id", "rootmode"};
  return names.count(key) > 0;
}

std::string Normalize(std::string key) {
  for (char& c : key) {
    if (c == '_') c = '-';
  }
  return key;
}

// The mount option called `key` (long name, '_' or '-'), or nullptr.
CLI::Option* FindOption(CLI::App* mount, const std::string& key) {
  const std::string k = Normalize(key);
  if (k.empty() || k == "help") return nullptr;
  for (CLI::Option* opt : mount->get_options()) {
    for (const std::string& l : opt->get_lnames()) {
      if (l == k) return opt;
    }
  }
  return nullptr;
}

bool IsFlag(const CLI::Option* opt) { return opt->get_expected_max() == 0; }
bool IsMulti(const CLI::Option* opt) { return opt->get_items_expected_max() > 1; }

class Parser {
 public:
  explicit Parser(const ConfigReader& read_config) : read_config_(read_config) {}

  CliCommand Parse(std::vector<std::string> args);

 private:
  void BuildApp();
  CliCommand FinishMount();
  void ApplyFuseOptionItems();
  void ApplyConfigFile();
  // Sets `opt` from a source other than its flag. `where` names the source
  // in error messages.
  void Apply(CLI::Option* opt, const std::vector<std::string>& values, const std::string& where);
  // How to name an option in an error message: "--capacity", "-o capacity"
  // or "FILE line N (capacity)".
  std::string Where(const std::string& long_name) const {
    auto it = where_.find(long_name);
    return it == where_.end() ? "--" + long_name : it->second;
  }
  uint64_t Size(const std::string& long_name, const std::string& text, uint64_t lo, uint64_t hi);

  const ConfigReader& read_config_;
  CLI::App app_{"kvfs: a KV-cache offload tier as a FUSE filesystem"};
  CLI::App* mount_ = nullptr;
  CLI::App* umount_ = nullptr;
  CLI::App* fsck_ = nullptr;
  CLI::App* stats_ = nullptr;
  std::map<std::string, std::string> where_;
  std::set<CLI::Option*> from_command_line_;

  CliCommand cmd_;
  std::string config_path_;
  std::string capacity_text_, buffer_size_text_ = "1M", max_request_text_ = "1M", read_ahead_text_ = "2M";
  std::string min_free_text_ = "2%";
};

void Parser::BuildApp() {
  MountOptions& mo = cmd_.mount;
  app_.require_subcommand(1);
  app_.set_version_flag("--version", std::string("kvfs ") + KVFS_VERSION);

  mount_ = app_.add_subcommand("mount", "mount kvfs on MOUNTPOINT");
  // Not required here: a config file may name it instead (FinishMount
  // checks that one of the two does).
  mount_->add_option("mountpoint", mo.mountpoint,
                     "directory to mount on (or mountpoint = \"DIR\" in the --config file)");
  mount_->add_option("--store", mo.stores,
                     std::string("store directory, optionally DIR:SIZE; repeat to spread keys over several drives "
                                 "(default ") + kDefaultStoreDir + "); dfs:DIR[:SIZE] for a directory on a distributed "
                                 "filesystem shared with other hosts");
  mount_->add_option("--capacity", capacity_text_,
                     "bytes the mount may use, 1M to 64P, e.g. 200G (default: half of each store's filesystem)");
  mount_->add_option("--min-free", min_free_text_,
                     "free-space floor on each store's filesystem: SIZE or PERCENT% (0% to 90%) of the filesystem "
                     "(default 2%)");
  mount_->add_option("--eviction", mo.eviction_policy, "eviction policy: s3fifo (default), lru, sieve")
      ->check(CLI::IsMember({"s3fifo", "lru", "sieve"}));
  mount_->add_option("--high-watermark", mo.high_watermark,
                     "background eviction starts above this fraction of capacity, 0.01 to 1 (default 0.95)")
      ->check(Bounded(0.01, 1.0));
  mount_->add_option("--low-watermark", mo.low_watermark,
                     "background eviction stops below this fraction of capacity, 0.01 to 1 (default 0.90)")
      ->check(Bounded(0.01, 1.0));
  mount_->add_flag("--foreground,-f", mo.foreground, "stay in the foreground and log to stderr");
  mount_->add_option("-o", mo.fuse_options,
                     "comma-separated: FUSE mount options (allow_other, ...) and any mount option as key=value "
                     "(capacity=6T, store=/nvme0/kvfs, ...)")
      ->delimiter(',');
  mount_->add_option("--log-file", mo.log_file, "log file (default: <first store>/kvfs.log; stderr in the foreground)");
  mount_->add_option("--log-level", mo.log_level, "trace, debug, info, warn, error, critical, off (default info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  mount_->add_option("--read-ahead-kb", mo.read_ahead_kb,
                     "kernel readahead for the mount, KiB, 0 to 65536 (0, default: leave the kernel's)")
      ->check(Whole(0, 65536));
  mount_->add_option("--daemon-read-ahead", read_ahead_text_,
                     "bytes the daemon reads ahead for a sequential reader (O_DIRECT, or the kernel's "
                     "read-ahead for a page-cache reader), 0 to 64M (default 2M; 0: off)");
  mount_->add_option("--max-request", max_request_text_,
                     "largest FUSE read/write request, 4K to 1M in 4K steps (default 1M)");
  mount_->add_option("--max-background", mo.max_background,
                     "FUSE requests the kernel keeps in flight in the background, 1 to 4096 (default 12)")
      ->check(Whole(1, 4096));
  mount_->add_option("--max-handles-per-user", mo.max_handles_per_user,
                     "open files one user (uid, root included) may hold on the mount, 16 to 16777216 (default: a "
                     "quarter of what the daemon's descriptor limit serves); more opens fail with EMFILE")
      ->check(Whole(16, 16777216));
  mount_->add_option("--buffers", mo.buffer_count,
                     "number of registered read buffers, 1 to 4096, at most 4G in all (default 64)")
      ->check(Whole(1, 4096));
  mount_->add_option("--buffer-size", buffer_size_text_,
                     "size of each read buffer, a multiple of 256K up to 64M (default 1M)");
  mount_->add_option("--io-uring", mo.io_uring, "use io_uring for store I/O (true/false)")->check(Boolean());
  mount_->add_option("--direct-io", mo.direct_io, "use O_DIRECT on the stores (true/false)")->check(Boolean());
  mount_->add_option("--store-deadline", mo.store_deadline_s,
                     "seconds a store operation may take before it fails with ETIMEDOUT, 0.1 to 3600 (default 30)")
      ->check(Bounded(0.1, 3600.0));
  mount_->add_option("--commit-flush", mo.commit_flush,
                     "how a durable commit is flushed: file (default: rename, then fsync the object; ext4/XFS), "
                     "group (commits meeting at the publish step share one syncfs; ext4/XFS) or each (fdatasync, "
                     "rename, fsync of the directory; any filesystem)")
      ->check(CLI::IsMember({"file", "group", "each"}));
  mount_->add_option("--durability", mo.durability,
                     "background (default): a commit at close is atomic and visible at once, and flushed to the "
                     "drive within --sync-interval; close: flushed before close() returns")
      ->check(CLI::IsMember({"background", "close"}));
  mount_->add_option("--sync-interval", mo.sync_interval_s,
                     "background durability: seconds at most between a commit and its flush, 0.01 to 600 (default 1)")
      ->check(Bounded(0.01, 600.0));
  mount_->add_option("--verify-one-in", mo.verify_one_in,
                     "verify the checksum of one chunk in N read from the stores, 0 to 1000000 (1: all, default; "
                     "0: none)")
      ->check(Whole(0, 1000000));
  mount_->add_option("--page-cache", mo.page_cache,
                     "let the kernel cache committed versions' pages (true/false, default true; false: every read "
                     "comes from the drive)")
      ->check(Boolean());
  mount_->add_option("--readdir-cache", mo.readdir_cache,
                     "let the kernel cache directory listings, dropped on every change (true/false, default true)")
      ->check(Boolean());
  mount_->add_option("--host-id", mo.host_id, "this host's name on a dfs: store (default: the hostname)");
  mount_->add_option("--dfs-refresh", mo.dfs_refresh_s,
                     "seconds between reconciliations with the other hosts of a dfs: store, 0.05 to 600 (default 2)")
      ->check(Bounded(0.05, 600.0));
  mount_->add_option("--dfs-lease-ttl", mo.dfs_lease_ttl_s,
                     "seconds without renewal after which another host takes over eviction on a dfs: store, "
                     "0.2 to 3600 (default 10)")
      ->check(Bounded(0.2, 3600.0));
  mount_->add_option("--entry-timeout", mo.entry_timeout,
                     "seconds the kernel may cache a name, 0 to 3600 (default 60)")
      ->check(Bounded(0.0, 3600.0));
  mount_->add_option("--negative-timeout", mo.negative_timeout,
                     "seconds the kernel may cache a missing name, 0 to 3600 (default 60)")
      ->check(Bounded(0.0, 3600.0));
  mount_->add_option("--metrics-listen", mo.metrics_listen,
                     "serve Prometheus metrics over HTTP at http://ADDR:PORT/metrics; ADDR is an IPv4 address "
                     "(127.0.0.1, or 0.0.0.0 for every interface), PORT 0 to 65535 (0: a free port, printed when "
                     "mounted) (default: off)");
  mount_->add_option("--config", config_path_,
                     "TOML file with mount options under [mount], keys named like the long flags, and mountpoint "
                     "(the command line wins)");

  umount_ = app_.add_subcommand("umount", "unmount kvfs from MOUNTPOINT and wait for the daemon to exit");
  umount_->add_option("mountpoint", cmd_.mountpoint, "mounted directory")->required();

  fsck_ = app_.add_subcommand("fsck", "check an unmounted store; exit 0 if clean, 1 if not, 2 if it cannot run");
  fsck_->add_option("--store", cmd_.fsck_store, "store directory")->required();
  fsck_->add_flag("--repair", cmd_.fsck_repair, "quarantine corrupt objects, drop superseded copies and staging leftovers");
  fsck_->add_flag("--json", cmd_.json, "print the summary as JSON");

  stats_ = app_.add_subcommand("stats", "print live figures of a mounted kvfs");
  stats_->add_option("mountpoint", cmd_.mountpoint, "mounted directory")->required();
  stats_->add_flag("--json", cmd_.json, "print JSON");
  stats_->add_option("--watch", cmd_.watch_seconds,
                     "redraw every SECONDS (0.1 to 3600) with rates per second, until interrupted")
      ->check(Bounded(0.1, 3600.0));
  stats_->add_option("--count", cmd_.watch_count, "with --watch: stop after N lines of rates (1 to 1000000)")
      ->check(Whole(1, 1000000));
}

CliCommand Parser::Parse(std::vector<std::string> args) {
  if (args.empty()) args.push_back("kvfs");
  // mount.fuse3 runs `kvfs SOURCE MOUNTPOINT -o OPTS` for `mount -t
  // fuse.kvfs SOURCE MOUNTPOINT` and fstab lines. SOURCE is the first store
  // ("kvfs" or "none": the stores come from -o store=...).
  static const std::set<std::string> subcommands = {"mount", "umount", "stats", "fsck"};
  if (args.size() >= 3 && !subcommands.count(args[1]) && !args[1].empty() && args[1][0] != '-' &&
      !args[2].empty() && args[2][0] != '-') {
    const std::string& source = args[1];
    bool placeholder = source == "kvfs" || source == "none";
    bool store_like = source.find('/') != std::string::npos || source.rfind("dfs:", 0) == 0 ||
                      source.rfind("local:", 0) == 0;
    if (placeholder || store_like) {
      std::vector<std::string> rewritten = {args[0], "mount", args[2]};
      if (!placeholder) {
        rewritten.push_back("--store");
        rewritten.push_back(source);
      }
      rewritten.insert(rewritten.end(), args.begin() + 3, args.end());
      args = std::move(rewritten);
    }
  }

  if (args.size() >= 2 && !args[1].empty() && args[1][0] != '-' && !subcommands.count(args[1])) {
    throw CliError{"unknown command '" + args[1] + "' (mount, umount, stats or fsck)"};
  }
  // CLI11 drops empty items of a delimited option: catch `-o ''` and `-o a,,b` here.
  for (size_t i = 1; i < args.size(); ++i) {
    std::string value;
    if (args[i] == "-o" && i + 1 < args.size()) value = args[i + 1];
    else if (args[i].rfind("-o", 0) == 0 && args[i].size() > 2 && args[i][2] != '-') value = args[i].substr(2);
    else continue;
    if (value.empty() || value.front() == ',' || value.back() == ',' || value.find(",,") != std::string::npos) {
      throw CliError{"-o '" + value + "': empty option (two commas in a row?)"};
    }
  }

  BuildApp();
  std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);  // CLI11 takes them backwards
  std::ostringstream out, err;
  try {
    app_.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      app_.exit(e, out, err);
      cmd_.exit_code = 0;
      cmd_.out = out.str();
      return cmd_;
    }
    throw CliError{e.what()};
  }
  if (mount_->parsed()) return FinishMount();
  if (umount_->parsed() || stats_->parsed()) {
    if (cmd_.mountpoint.empty()) throw CliError{"the mountpoint is empty"};
    if (umount_->parsed()) {
      cmd_.action = CliCommand::Action::kUmount;
      return cmd_;
    }
    if (stats_->count("--count") && !stats_->count("--watch")) throw CliError{"--count needs --watch"};
    if (cmd_.json && stats_->count("--watch")) throw CliError{"--watch prints text only (no --json)"};
    cmd_.action = CliCommand::Action::kStats;
    return cmd_;
  }
  if (fsck_->parsed()) {
    if (cmd_.fsck_store.empty()) throw CliError{"--store: empty value"};
    cmd_.action = CliCommand::Action::kFsck;
    return cmd_;
  }
  throw CliError{"unknown command"};
}

void Parser::Apply(CLI::Option* opt, const std::vector<std::string>& values, const std::string& where) {
  if (values.empty()) throw CliError{where + ": no value"};
  if (!IsMulti(opt) && values.size() > 1) throw CliError{where + ": takes one value, not a list"};
  std::vector<std::string> vs = values;
  if (IsFlag(opt)) {
    std::string v = vs[0];
    std::string error = Boolean()(v);
    if (!error.empty()) throw CliError{where + ": " + error};
    vs[0] = v;
  }
  for (const std::string& v : vs) {
    if (v.empty()) throw CliError{where + ": empty value"};
    opt->add_result(v);
  }
  try {
    opt->run_callback();
  } catch (const CLI::Error& e) {
    std::string what = e.what();
    // CLI11's messages start with the option's name; say where it came from.
    const std::string name = opt->get_name();
    if (what.rfind(name + ": ", 0) == 0) what.erase(0, name.size() + 2);
    throw CliError{where + ": " + what};
  }
}

void Parser::ApplyFuseOptionItems() {
  MountOptions& mo = cmd_.mount;
  std::vector<std::string> fuse_items;
  std::map<CLI::Option*, std::vector<std::string>> values;
  std::vector<CLI::Option*> order;
  for (const std::string& item : mo.fuse_options) {
    if (item.empty()) throw CliError{"-o: empty option (two commas in a row?)"};
    if (IsMountHelperOption(item)) continue;
    if (item == "nonempty") {  // kvfs's own check; libfuse 3 no longer knows it
      mo.nonempty = true;
      continue;
    }
    size_t eq = item.find('=');
    std::string key = item.substr(0, eq);
    CLI::Option* opt = FindOption(mount_, key);
    if (opt == nullptr || opt->get_lnames().empty() || opt == mount_->get_option("-o")) {
      if (IsReservedFuseOption(key)) throw CliError{"-o " + item + ": kvfs sets " + key + " itself"};
      fuse_items.push_back(item);
      continue;
    }
    const std::string name = opt->get_lnames().front();
    if (from_command_line_.count(opt)) throw CliError{"-o " + key + " and --" + name + " both given"};
    if (values.count(opt) && !IsMulti(opt)) throw CliError{"-o " + key + " given twice"};
    if (eq == std::string::npos) {
      if (!IsFlag(opt)) throw CliError{"-o " + key + " needs a value (-o " + key + "=VALUE)"};
      values[opt].push_back("true");
    } else {
      values[opt].push_back(item.substr(eq + 1));
      if (values[opt].back().empty()) throw CliError{"-o " + key + ": empty value"};
    }
    if (std::find(order.begin(), order.end(), opt) == order.end()) order.push_back(opt);
  }
  mo.fuse_options = fuse_items;
  for (CLI::Option* opt : order) {
    const std::string name = opt->get_lnames().front();
    where_[name] = "-o " + name;
    if (name == "config") {
      config_path_ = values[opt].back();
      continue;
    }
    Apply(opt, values[opt], "-o " + name);
  }
}

void Parser::ApplyConfigFile() {
  Result<std::vector<ConfigEntry>> entries = read_config_(config_path_);
  if (!entries.ok()) throw CliError{entries.status().message()};
  std::map<CLI::Option*, int> seen;
  const std::string file = "config file " + config_path_;
  for (const ConfigEntry& e : *entries) {
    const std::string at = file + " line " + std::to_string(e.line);
    if (e.key == "mountpoint") {
      // The positional MOUNTPOINT; a systemd unit names only the file.
      if (e.values.size() != 1) throw CliError{at + " (mountpoint): takes one value, not a list"};
      if (e.values[0].empty()) throw CliError{at + " (mountpoint): empty value"};
      if (cmd_.mount.mountpoint.empty()) cmd_.mount.mountpoint = e.values[0];  // the command line wins
      continue;
    }
    CLI::Option* opt = e.key == "o" ? mount_->get_option("-o") : FindOption(mount_, e.key);
    if (opt == nullptr || (opt->get_lnames().empty() && e.key != "o")) {
      throw CliError{at + ": unknown key '" + e.key + "' (keys are the long names of kvfs mount's flags)"};
    }
    if (opt == mount_->get_option("--config")) throw CliError{at + ": a config file cannot name another one"};
    auto [it, inserted] = seen.emplace(opt, e.line);
    if (!inserted) {
      throw CliError{at + ": '" + e.key + "' is given twice (first on line " + std::to_string(it->second) + ")"};
    }
    if (e.key == "o") {
      // FUSE options add to those of the command line.
      for (const std::string& value : e.values) {
        std::stringstream items(value);
        std::string item;
        if (value.empty()) throw CliError{at + " (o): empty value"};
        while (std::getline(items, item, ',')) {
          if (item.empty()) throw CliError{at + " (o): empty option (two commas in a row?)"};
          if (IsMountHelperOption(item)) continue;
          if (item == "nonempty") {
            cmd_.mount.nonempty = true;
            continue;
          }
          std::string key = item.substr(0, item.find('='));
          if (FindOption(mount_, key) != nullptr) throw CliError{at + " (o): write '" + key + " = ...' as its own key"};
          if (IsReservedFuseOption(key)) throw CliError{at + " (o): kvfs sets " + key + " itself"};
          cmd_.mount.fuse_options.push_back(item);
        }
      }
      continue;
    }
    if (opt->count() > 0) continue;  // the command line wins
    const std::string name = opt->get_lnames().empty() ? "o" : opt->get_lnames().front();
    where_[name] = at + " (" + e.key + ")";
    Apply(opt, e.values, at + " (" + e.key + ")");
  }
}

uint64_t Parser::Size(const std::string& long_name, const std::string& text, uint64_t lo, uint64_t hi) {
  Result<uint64_t> v = ParseSize(text);
  if (!v.ok()) throw CliError{Where(long_name) + ": " + v.status().message()};
  if (*v < lo || *v > hi) {
    throw CliError{Where(long_name) + ": " + text + " is out of range (" + FormatSize(lo) + " to " + FormatSize(hi) +
                   ")"};
  }
  return *v;
}

CliCommand Parser::FinishMount() {
  MountOptions& mo = cmd_.mount;
  for (CLI::Option* opt : mount_->get_options()) {
    if (opt->count() > 0) from_command_line_.insert(opt);
  }
  // An empty value on the command line would read as "not given".
  for (CLI::Option* opt : from_command_line_) {
    if (IsFlag(opt) || opt == mount_->get_option("-o")) continue;
    for (const std::string& r : opt->results()) {
      if (r.empty()) throw CliError{opt->get_name() + ": empty value"};
    }
  }
  const bool mountpoint_given = mount_->get_option("mountpoint")->count() > 0;
  if (mountpoint_given && mo.mountpoint.empty()) throw CliError{"the mountpoint is empty"};
  ApplyFuseOptionItems();
  const bool has_config = !config_path_.empty() || mount_->get_option("--config")->count() > 0;
  if (has_config) ApplyConfigFile();
  if (mo.mountpoint.empty()) {
    throw CliError{has_config ? "no mountpoint: give MOUNTPOINT or mountpoint = \"DIR\" in config file " + config_path_
                              : "mountpoint is required (kvfs mount MOUNTPOINT [options])"};
  }

  if (mount_->get_option("--capacity")->count() > 0) {
    mo.capacity = Size("capacity", capacity_text_, kMinCapacity, kMaxCapacity);
  }
  if (!min_free_text_.empty() && min_free_text_.back() == '%') {
    std::string number = min_free_text_.substr(0, min_free_text_.size() - 1);
    std::string error = Bounded(0, 90)(number);
    if (!error.empty()) {
      throw CliError{Where("min-free") + ": '" + min_free_text_ + "' is not a percentage between 0% and 90%"};
    }
    mo.min_free_fraction = std::strtod(number.c_str(), nullptr) / 100.0;
    mo.min_free_bytes = 0;
  } else {
    mo.min_free_bytes = Size("min-free", min_free_text_, 0, kMaxCapacity);
    mo.min_free_fraction = 0;
  }
  if (mo.low_watermark > mo.high_watermark) {
    throw CliError{Where("low-watermark") + " must not exceed " + Where("high-watermark")};
  }
  for (const std::string& s : mo.stores) {
    if (s.empty()) throw CliError{Where("store") + ": empty value"};
    StoreSpec spec = ParseStoreSpec(s);
    if (spec.dir.empty()) throw CliError{Where("store") + " " + s + ": no directory"};
    std::string plain = s.rfind("dfs:", 0) == 0 ? s.substr(4) : s.rfind("local:", 0) == 0 ? s.substr(6) : s;
    size_t colon = plain.rfind(':');
    if (spec.capacity) {
      if (*spec.capacity < kMinCapacity || *spec.capacity > kMaxCapacity) {
        throw CliError{Where("store") + " " + s + ": the size is out of range (" + FormatSize(kMinCapacity) + " to " +
                       FormatSize(kMaxCapacity) + ")"};
      }
    } else if (colon != std::string::npos && colon + 1 < plain.size() &&
               std::isdigit(static_cast<unsigned char>(plain[colon + 1]))) {
      throw CliError{Where("store") + " " + s + ": '" + plain.substr(colon + 1) + "' is not a size"};
    }
  }
  if (mo.capacity) {
    uint64_t fixed = 0;
    for (const std::string& s : mo.stores) fixed += ParseStoreSpec(s).capacity.value_or(0);
    if (fixed > *mo.capacity) {
      throw CliError{"the stores' own sizes add up to " + FormatSize(fixed) + ", more than " + Where("capacity") +
                     " (" + FormatSize(*mo.capacity) + ")"};
    }
  }
  if (!mo.host_id.empty() && !ValidHostId(mo.host_id)) {
    throw CliError{Where("host-id") + " '" + mo.host_id + "': use letters, digits, '.', '-' and '_' only"};
  }
  mo.buffer_size = Size("buffer-size", buffer_size_text_, 256 << 10, kMaxBufferSize);
  if (mo.buffer_size % (256 << 10) != 0) throw CliError{Where("buffer-size") + " must be a multiple of 256K"};
  if (mo.buffer_count * mo.buffer_size > kMaxBufferPool) {
    throw CliError{Where("buffers") + " x " + Where("buffer-size") + " is " +
                   FormatSize(mo.buffer_count * mo.buffer_size) + "; at most " + FormatSize(kMaxBufferPool)};
  }
  mo.max_request = Size("max-request", max_request_text_, 4096, kMiB);
  if (mo.max_request % 4096 != 0) throw CliError{Where("max-request") + " must be a multiple of 4K"};
  mo.daemon_read_ahead = Size("daemon-read-ahead", read_ahead_text_, 0, kMaxDaemonReadAhead);
  if (mount_->get_option("--metrics-listen")->count() > 0) {
    if (mo.metrics_listen.empty()) throw CliError{Where("metrics-listen") + ": empty value"};
    Result<ListenAddress> listen = ParseListenAddress(mo.metrics_listen);
    if (!listen.ok()) throw CliError{Where("metrics-listen") + ": " + listen.status().message()};
  }
  cmd_.action = CliCommand::Action::kMount;
  return cmd_;
}

}  // namespace

StoreSpec ParseStoreSpec(const std::string& spec_in) {
  std::string spec = spec_in;
  bool dfs = false;
  if (spec.rfind("dfs:", 0) == 0) {
    dfs = true;
    spec = spec.substr(4);
  } else if (spec.rfind("local:", 0) == 0) {
    spec = spec.substr(6);
  }
  size_t colon = spec.rfind(':');
  if (colon != std::string::npos && colon + 1 < spec.size()) {
    Result<uint64_t> size = ParseSize(spec.substr(colon + 1));
    if (size.ok()) return StoreSpec{dfs, spec.substr(0, colon), *size};
  }
  return StoreSpec{dfs, spec, std::nullopt};
}

namespace {

// The message with control characters (a newline in a path, say) written
// as escapes, so that it stays one line.
std::string OneLine(const std::string& text) {
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

CliCommand ParseCommandLine(const std::vector<std::string>& args, const ConfigReader& read_config) {
  try {
    Parser parser(read_config);
    return parser.Parse(args);
  } catch (const CliError& e) {
    CliCommand c;
    c.exit_code = 2;
    c.error = OneLine("kvfs: " + e.message + " (see kvfs --help)");
    return c;
  } catch (const std::bad_alloc&) {
    CliCommand c;
    c.exit_code = 2;
    c.error = "kvfs: out of memory while reading the command line";
    return c;
  } catch (const std::exception& e) {
    CliCommand c;
    c.exit_code = 2;
    c.error = OneLine(std::string("kvfs: ") + e.what() + " (see kvfs --help)");
    return c;
  }
}

}  // namespace kvfs
