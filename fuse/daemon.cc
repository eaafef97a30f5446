#include "fuse/daemon.h"

#include <dirent.h>
#include <fcntl.h>
#include <fuse_log.h>
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <poll.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <map>
#include <csignal>
#include <ctime>
#include <chrono>
#include <thread>

// An AddressSanitizer build: RunMount runs the leak check that _exit skips.
#if defined(__SANITIZE_ADDRESS__)
#define KVFS_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVFS_LEAK_CHECK 1
#endif
#endif
#ifdef KVFS_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
#endif

#include "adapters/deadline_store.h"
#include "adapters/dfs_store.h"
#include "adapters/local_store.h"
#include "core/engine.h"
#include "core/fsck.h"
#include "core/log_text.h"
#include "core/size_parse.h"
#include "fuse/device_io.h"
#include "fuse/fuse_ops.h"
#include "fuse/handle_quota.h"
#include "fuse/kernel_notifier.h"
#include "fuse/proc_process_table.h"
#include "fuse/metrics_exporter.h"
#include "fuse/service_notify.h"

namespace kvfs {
namespace {

// One line on stderr: control characters (a newline in a path) are escaped.
void PrintError(const std::string& message) {
  std::string line = "kvfs: ";
  for (char c : message) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      line += buf;
    } else {
      line.push_back(c);
    }
  }
  std::cerr << line << std::endl;
}

// The last message libfuse logged, so start-up failures can be reported in one line.
std::string last_fuse_message;

void FuseLogToSpdlog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char buf[1024];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  std::string msg(buf);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  if (level <= FUSE_LOG_ERR) {
    if (!last_fuse_message.empty()) last_fuse_message += " ";
    last_fuse_message += msg;
    spdlog::error("libfuse: {}", msg);
  } else if (level <= FUSE_LOG_NOTICE) {
    spdlog::info("libfuse: {}", msg);
  } else {
    spdlog::debug("libfuse: {}", msg);
  }
}

// Mount point (as in /proc/self/mountinfo) -> "major:minor", or "" if not mounted.
std::string MountedDevice(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string found;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mnt;
    fields >> id >> parent >> dev >> root >> mnt;
    if (mnt == path) found = dev;  // the last one is on top
  }
  return found;
}

// True when the directory has entries other than "." and "..".
bool HasEntries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return false;
  bool found = false;
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

// A kvfs mount whose daemon died (a crash, SIGKILL) stays in the mount
// table as a dead endpoint: every access to it fails with ENOTCONN, so a
// new mount there (systemd's Restart=on-failure) would be refused. Detaches
// it when `mountpoint` is such a mount of type fuse.kvfs; anything else is
// left alone for CheckMountpoint to judge. True when it detached one.
bool DetachDeadKvfsMount(const std::string& mountpoint) {
  // The path as the mount table spells it: the parent resolved (it is
  // alive), the last component as given.
  std::filesystem::path p = std::filesystem::absolute(mountpoint).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  char parent[PATH_MAX];
  if (!::realpath(p.parent_path().c_str(), parent)) return false;
  const std::string path = (std::filesystem::path(parent) / p.filename()).string();
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string fstype;  // of the top mount at `path`
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent_id, dev, root, mnt, word;
    fields >> id >> parent_id >> dev >> root >> mnt;
    if (mnt != path) continue;
    while (fields >> word && word != "-") {
    }
    fields >> fstype;
  }
  if (fstype != "fuse.kvfs") return false;
  // statfs always reaches the daemon (a stat may be answered from the
  // kernel's attribute cache); a dead one fails it with ENOTCONN.
  struct statfs sfs;
  if (::statfs(path.c_str(), &sfs) == 0 || errno != ENOTCONN) return false;
  return ::umount2(path.c_str(), MNT_DETACH) == 0;
}

Result<std::string> CheckMountpoint(const std::string& mountpoint, bool nonempty) {
  char resolved[PATH_MAX];
  if (!::realpath(mountpoint.c_str(), resolved)) {
    return Status::FromErrno("mountpoint " + mountpoint);
  }
  struct stat st;
  if (::stat(resolved, &st) != 0) return Status::FromErrno("mountpoint " + mountpoint);
  if (!S_ISDIR(st.st_mode)) return Status::Error(ENOTDIR, "mountpoint " + mountpoint + " is not a directory");
  if (!MountedDevice(resolved).empty()) {
    return Status::Error(EBUSY, "mountpoint " + mountpoint + " is already mounted (busy)");
  }
  if (!nonempty && HasEntries(resolved)) {
    return Status::Error(ENOTEMPTY, "mountpoint " + mountpoint +
                                        " is not empty (the mount would hide its files; -o nonempty mounts anyway)");
  }
  return std::string(resolved);
}

// A store inside the mountpoint would be hidden by the mount (every commit
// would go through the mount itself), and a mountpoint inside a store makes
// the daemon serve its own store: refuse both before anything is opened.
// mountpoint is resolved; store_dir need not exist yet.
Status CheckStoreOutsideMountpoint(const std::string& store_dir, const std::string& mountpoint) {
  std::error_code ec;
  std::string store = std::filesystem::weakly_canonical(store_dir, ec).string();
  if (ec) return Status::Error(ec.value(), "store " + store_dir + ": " + ec.message());
  auto within = [](const std::string& path, const std::string& dir) {
    return dir == "/" || path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
  };
  if (within(store, mountpoint)) {
    return Status::Error(EINVAL, "store " + store_dir + " is inside the mountpoint " + mountpoint);
  }
  if (within(mountpoint, store)) {
    return Status::Error(EINVAL, "mountpoint " + mountpoint + " is inside the store " + store_dir);
  }
  return Status::Ok();
}

// Creates the log file private to the daemon's user (0600), never through a
// symlink; false when path is a symlink or not a regular file.
bool PrepareLogFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (ok && (st.st_mode & 077) != 0) ok = ::fchmod(fd, st.st_mode & 0600) == 0;
  ::close(fd);
  return ok;
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {0};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == 0) return "localhost";
  return name;
}

// default_log: where the log goes when --log-file is not given. "" or why
// the log cannot be opened.
std::string SetupLogging(const MountOptions& o, const std::string& default_log) {
  std::shared_ptr<spdlog::logger> logger;
  std::string path;
  try {
    if (o.foreground && o.log_file.empty()) {
      logger = spdlog::stderr_color_mt("kvfs");
    } else {
      path = o.log_file.empty() ? default_log : o.log_file;
      if (!PrepareLogFile(path)) throw spdlog::spdlog_ex("it is not a regular file");
      logger = spdlog::basic_logger_mt("kvfs", path);
    }
  } catch (const spdlog::spdlog_ex& e) {
    return "cannot open the log file " + path + ": " + e.what();
  }
  // Key names reach log lines: none may hold a raw newline.
  logger->set_formatter(std::make_unique<EscapingFormatter>());
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  spdlog::flush_on(spdlog::level::info);
  return "";
}

// Raises the kernel's readahead for the mount's backing device; libfuse can
// only lower it.
void RaiseReadAhead(const std::string& mountpoint, unsigned kb) {
  if (kb == 0) return;
  std::string dev = MountedDevice(mountpoint);
  if (dev.empty()) return;
  std::string path = "/sys/class/bdi/" + dev + "/read_ahead_kb";
  std::ofstream out(path);
  if (out) out << kb;
  if (!out) spdlog::warn("could not set {} to {}", path, kb);
}

// Start-up report from the daemon to `kvfs mount`: "OK ..." or an error line.
void Report(int fd, const std::string& line) {
  if (fd < 0) return;
  std::string l = line;
  for (char& c : l) {
    if (c == '\n' || c == '\r') c = ' ';  // one report, one line
  }
  l += "\n";
  ssize_t n = ::write(fd, l.data(), l.size());
  (void)n;
  ::close(fd);
}

// The session between fuse_session_mount and fuse_session_unmount, so that
// an exception in between (Serve's catch) leaves nothing mounted.
fuse_session* mounted_session = nullptr;

int ServeMount(const MountOptions& o, const std::string& mountpoint, int ready_fd, bool* reported) {
  std::vector<std::string> dirs = o.stores.empty() ? std::vector<std::string>{kDefaultStoreDir} : o.stores;
  // Until the stores are open there is no log file (its default place is the
  // first store): start-up errors travel through `fail`.
  if (ready_fd >= 0) spdlog::set_level(spdlog::level::off);
  fuse_set_log_func(FuseLogToSpdlog);
  auto fail = [&](const std::string& msg) {
    spdlog::error("{}", msg);
    if (ready_fd >= 0 && !*reported) Report(ready_fd, msg);
    else if (ready_fd < 0) PrintError(msg);
    *reported = true;
    return 1;
  };

  std::vector<std::unique_ptr<Store>> stores;
  std::vector<StoreLimits> limits;
  std::vector<bool> explicit_size;
  LocalStoreOptions so;
  so.direct_io = o.direct_io;
  so.create_if_missing = o.stores.empty();  // only the default store is created on demand
  bool any_dfs = false;
  for (const std::string& spec : dirs) any_dfs |= ParseStoreSpec(spec).dfs;
  const std::string host_id = o.host_id.empty() ? HostName() : o.host_id;  // dfs: stores only
  if (any_dfs && dirs.size() > 1) return fail("a dfs: store must be the mount's only store");
  if (any_dfs && !(o.dfs_refresh_s > 0 && o.dfs_refresh_s * 3 <= o.dfs_lease_ttl_s)) {
    return fail("--dfs-refresh must be positive and at most a third of --dfs-lease-ttl");
  }
  for (const std::string& spec : dirs) {
    StoreSpec parsed = ParseStoreSpec(spec);
    if (Status c = CheckStoreOutsideMountpoint(parsed.dir, mountpoint); !c.ok()) return fail(c.message());
    Result<std::unique_ptr<Store>> s = Status::Error(EINVAL, "unset");
    if (parsed.dfs) {
      DfsStoreOptions dso;
      dso.host_id = host_id;
      dso.direct_io = o.direct_io;
      dso.create_if_missing = true;  // the directory on the DFS is shared: the first host creates the layout
      dso.create_root = false;       // but the directory itself must exist (the DFS is mounted)
      dso.lease_ttl = std::chrono::milliseconds(static_cast<int64_t>(o.dfs_lease_ttl_s * 1000));
      Result<std::unique_ptr<DfsStore>> d = DfsStore::Open(parsed.dir, dso);
      if (d.ok()) s = std::unique_ptr<Store>(std::move(*d));
      else s = d.status();
    } else {
      Result<std::unique_ptr<LocalStore>> l = LocalStore::Open(parsed.dir, so);
      if (l.ok()) s = std::unique_ptr<Store>(std::move(*l));
      else s = l.status();
    }
    if (!s.ok()) return fail(s.status().message());
    StoreLimits l;
    l.min_free_bytes = o.min_free_bytes;
    l.min_free_fraction = o.min_free_fraction;
    if (parsed.capacity) {
      l.capacity_bytes = *parsed.capacity;
    } else if (!o.capacity) {
      Result<StoreSpace> space = (*s)->Space();
      l.capacity_bytes = space.ok() ? space->total_bytes / 2 : 0;
    }
    explicit_size.push_back(parsed.capacity.has_value());
    limits.push_back(l);
    if (o.store_deadline_s > 0) {
      auto deadline = std::chrono::milliseconds(static_cast<int64_t>(o.store_deadline_s * 1000));
      stores.push_back(std::make_unique<DeadlineStore>(std::move(*s), deadline));
    } else {
      stores.push_back(std::move(*s));
    }
  }
  if (o.capacity) {
    uint64_t fixed = 0;
    size_t shared = 0;
    for (size_t i = 0; i < limits.size(); ++i) {
      if (explicit_size[i]) fixed += limits[i].capacity_bytes;
      else ++shared;
    }
    if (fixed > *o.capacity) return fail("the stores' own capacities add up to more than --capacity");
    for (size_t i = 0; i < limits.size(); ++i) {
      if (!explicit_size[i]) limits[i].capacity_bytes = (*o.capacity - fixed) / shared;
    }
  }
  // A shared store's directory is no place for the log: a DFS that stops
  // answering would block every thread that logs. Such mounts log locally.
  std::string default_log = ParseStoreSpec(dirs[0]).dir + "/kvfs.log";
  if (any_dfs) {
    std::error_code ec;
    std::filesystem::create_directories(kDfsLogDir, ec);
    default_log = std::string(kDfsLogDir) + "/kvfs." + host_id + ".log";
  }
  if (std::string log_error = SetupLogging(o, default_log); !log_error.empty()) return fail(log_error);
  EngineOptions eo;
  eo.space.store_limits = limits;
  eo.space.eviction_policy = o.eviction_policy;
  eo.space.high_watermark = o.high_watermark;
  eo.space.low_watermark = o.low_watermark;
  eo.buffer_count = o.buffer_count;
  eo.buffer_size = o.buffer_size;
  eo.use_io_uring = o.io_uring;
  eo.verify_one_in = o.verify_one_in;
  eo.commit_flush = o.commit_flush == "group"  ? EngineOptions::CommitFlush::kGroup
                    : o.commit_flush == "each" ? EngineOptions::CommitFlush::kEach
                                               : EngineOptions::CommitFlush::kFile;
  eo.page_cache = o.page_cache;
  eo.read_ahead_bytes = o.daemon_read_ahead;
  eo.durability = o.durability == "close" ? EngineOptions::Durability::kClose : EngineOptions::Durability::kBackground;
  eo.sync_interval = std::chrono::milliseconds(static_cast<int64_t>(o.sync_interval_s * 1000));
  eo.shared_refresh = std::chrono::milliseconds(static_cast<int64_t>(o.dfs_refresh_s * 1000));
  if (ready_fd >= 0) {
    // Long rebuilds show progress in the terminal of `kvfs mount`.
    eo.on_scan_progress = [ready_fd](uint64_t n) {
      std::string line = "PROGRESS rebuilding the index: " + std::to_string(n) + " objects scanned\n";
      ssize_t w = ::write(ready_fd, line.data(), line.size());
      (void)w;
    };
  } else {
    eo.on_scan_progress = [](uint64_t n) { std::cout << "kvfs: rebuilding the index: " << n << " objects scanned" << std::endl; };
  }
  // One malloc arena for the whole daemon. The index rebuild frees the
  // scan threads' copies while it allocates the index; with an arena per
  // thread, index objects land in the scan threads' arenas (through the
  // allocator's per-thread caches) and pin their pages, so a large store
  // kept about 250 bytes per object of free but resident memory (914 against
  // 660 bytes per object in kvfs_mount_bench). Request paths allocate little
  // and mostly from the per-thread caches, which one arena keeps. An operator
  // who sets MALLOC_ARENA_MAX gets that instead.
  if (!std::getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 1);
  Result<std::unique_ptr<Engine>> engine = Engine::Start(eo, std::move(stores));
  if (!engine.ok()) return fail(engine.status().message());
  // Prometheus metrics, before the mount: an address that cannot be
  // listened on fails start-up with nothing mounted. Declared after the
  // engine, so it stops serving (its collector reads the engine) first.
  std::unique_ptr<MetricsServer> metrics;
  if (!o.metrics_listen.empty()) {
    Engine* e = engine->get();
    Result<std::unique_ptr<MetricsServer>> m = MetricsServer::Start(o.metrics_listen, [e] { return e->Stats(); });
    if (!m.ok()) return fail("--metrics-listen: " + m.status().message());
    metrics = std::move(*m);
    spdlog::info("serving metrics on {}", metrics->url());
  }
  const std::string metrics_note = metrics ? ", metrics on " + metrics->url() : "";

  // Descriptors: as many as the hard limit allows; users' open files are
  // capped so that the daemon keeps a reserve for its own work.
  uint64_t descriptors = RaiseDescriptorLimit();
  uint64_t per_user = o.max_handles_per_user ? o.max_handles_per_user : DefaultHandlesPerUser(descriptors);
  HandleQuota handle_quota(per_user, std::max(per_user, DefaultTotalHandles(descriptors)));
  spdlog::info("open files: at most {} per user, {} in all ({} descriptors)", handle_quota.per_user(),
               handle_quota.total(), descriptors);

  ListingTracker listings;
  FuseContext ctx;
  ctx.engine = engine->get();
  ctx.listings = &listings;
  ctx.handle_quota = &handle_quota;
  ctx.entry_timeout = o.entry_timeout;
  ctx.readdir_cache = o.readdir_cache;
  ctx.negative_timeout = o.negative_timeout;
  ctx.max_write = static_cast<unsigned>(o.max_request);
  ctx.max_background = o.max_background;
  if (any_dfs) {
    // Other hosts change a shared store without telling this kernel: cache
    // names, attributes and misses only briefly.
    ctx.entry_timeout = std::min(ctx.entry_timeout, o.dfs_cache_timeout);
    ctx.negative_timeout = std::min(ctx.negative_timeout, o.dfs_cache_timeout);
  }
  KernelNotifier notifier(&ctx);

  std::string opts = "fsname=kvfs,subtype=kvfs,default_permissions";
  for (const std::string& f : o.fuse_options) opts += "," + f;
  std::vector<std::string> argv_s = {"kvfs", "-o", opts};
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  // fuse_session_new copies args into memory of its own, freed here.
  struct ArgsFree {
    fuse_args* args;
    ~ArgsFree() { fuse_opt_free_args(args); }
  } args_free{&args};
  fuse_session* se = fuse_session_new(&args, &KvfsOperations(), sizeof(fuse_lowlevel_ops), &ctx);
  if (!se) return fail("cannot start FUSE session" + (last_fuse_message.empty() ? "" : ": " + last_fuse_message));
  if (fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    return fail("cannot install signal handlers");
  }
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return fail("cannot mount on " + mountpoint + (last_fuse_message.empty() ? "" : ": " + last_fuse_message));
  }
  mounted_session = se;
  if (!InstallDeviceIo(se)) spdlog::warn("could not install the /dev/fuse hook; shared mmap of files will fail");
  ctx.session = se;
  notifier.Start();
  (*engine)->SetObserver(&notifier);
  // Which requests come from one process (a pending key's creator sees it;
  // a shell's dup2 + close does not publish), answered from /proc.
  ProcProcessTable processes(mountpoint);
  (*engine)->SetProcessTable(&processes);
  RaiseReadAhead(mountpoint, o.read_ahead_kb);

  // The mount is usable only once the kernel's INIT has been answered and
  // requests flow (a FUSE option the kernel dislikes ends the session right
  // there). A thread outside the loop asks the mount for this daemon's pid;
  // only its answer makes `kvfs mount` report success. When the mount does
  // not answer, the probe ends the loop and start-up fails.
  std::string probe_error;
  bool probe_ok = false;
  std::thread probe([&] {
    char buf[32] = {0};
    ssize_t n;
    do {
      n = ::getxattr(mountpoint.c_str(), "user.kvfs.pid", buf, sizeof buf - 1);
    } while (n < 0 && errno == EINTR);
    if (n > 0 && std::atoi(buf) == ::getpid()) {
      probe_ok = true;
      *reported = true;
      EngineStats st = (*engine)->Stats();
      spdlog::info("mounted {} on {} store(s), capacity {}, {} objects", mountpoint, st.stores.size(),
                   FormatSize(st.capacity_bytes), st.objects);
      // A service manager waiting for readiness (Type=notify) hears of it
      // only now that the mount has answered.
      Status notified = NotifyServiceManager("READY=1\nMAINPID=" + std::to_string(::getpid()) + "\nSTATUS=serving " +
                                             mountpoint + " (" + std::to_string(st.stores.size()) +
                                             " store(s), capacity " + FormatSize(st.capacity_bytes) + ")");
      if (!notified.ok()) spdlog::warn("cannot notify the service manager: {}", notified.message());
      if (ready_fd >= 0) {
        Report(ready_fd, "OK mounted " + mountpoint + " (" + std::to_string(st.stores.size()) +
                             " store(s), capacity " + FormatSize(st.capacity_bytes) + ", " +
                             std::to_string(st.objects) + " objects" + metrics_note + ")");
        int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd >= 0) {
          ::dup2(null_fd, 0);
          ::dup2(null_fd, 1);
          ::dup2(null_fd, 2);
          if (null_fd > 2) ::close(null_fd);
        }
      } else {
        std::cout << "kvfs: mounted " << mountpoint << "; serving in the foreground" << metrics_note << std::endl;
      }
      return;
    }
    const int err = n < 0 ? errno : 0;
    probe_error = err ? std::string(std::strerror(err)) : "it answered with another pid";
    // A dead connection (the kernel refused INIT) ends the loop by itself,
    // and the main thread unmounts. Otherwise stop the loop: one more
    // request wakes a worker, which then sees the exit flag.
    if (err != ENOTCONN && err != ECONNREFUSED && err != ECONNABORTED) {
      fuse_session_exit(se);
      struct stat st;
      ::stat(mountpoint.c_str(), &st);
    }
  });

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_idle_threads(cfg, 16);
  fuse_loop_cfg_set_max_threads(cfg, 128);
  // 0 when unmounted, the signal's number after SIGTERM, SIGINT or SIGHUP
  // (libfuse's handlers end the loop; the unmount below is the same), a
  // negative errno when the loop failed.
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  (*engine)->SetObserver(nullptr);
  (*engine)->SetProcessTable(nullptr);
  notifier.Stop();
  ctx.session = nullptr;
  fuse_session_unmount(se);  // closes the device: a probe still waiting gets ENOTCONN
  mounted_session = nullptr;
  probe.join();
  if (probe_ok) {
    // After the join: READY=1 (sent by the probe) always comes first.
    if (rc > 0) spdlog::info("{} received: unmounted {}", strsignal(rc), mountpoint);
    Status notified = NotifyServiceManager("STOPPING=1\nSTATUS=unmounted " + mountpoint + ", closing the stores");
    if (!notified.ok()) spdlog::warn("cannot notify the service manager: {}", notified.message());
  }
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  metrics.reset();
  if (!probe_ok) {
    engine->reset();
    std::string why = "the mount on " + mountpoint + " did not answer (" + probe_error + ")";
    if (!last_fuse_message.empty()) why += ": " + last_fuse_message;
    return fail(why);
  }
  spdlog::info("unmounted {}", mountpoint);
  engine->reset();
  spdlog::shutdown();
  // Stopping by a signal is a clean stop: the mount is down and the stores
  // are closed (a service manager's stop must not count as a failure).
  return rc >= 0 ? 0 : 1;
}

// ServeMount, with every exception turned into a one-line start-up error
// (or a log line once the mount has been reported) and the mount taken down.
int Serve(const MountOptions& o, const std::string& mountpoint, int ready_fd) {
  bool reported = false;
  std::string what;
  try {
    return ServeMount(o, mountpoint, ready_fd, &reported);
  } catch (const std::bad_alloc&) {
    what = "out of memory (--buffers x --buffer-size is " + FormatSize(o.buffer_count * o.buffer_size) + ")";
  } catch (const std::exception& e) {
    what = e.what();
  }
  if (mounted_session != nullptr) {
    fuse_session_unmount(mounted_session);
    mounted_session = nullptr;
  }
  if (reported) {
    spdlog::critical("{}", what);
  } else if (ready_fd >= 0) {
    Report(ready_fd, what);
  } else {
    PrintError(what);
  }
  return 1;
}

}  // namespace

int RunMount(const MountOptions& given) {
  // The daemon runs in "/": make every path absolute first.
  MountOptions o = given;
  for (std::string& s : o.stores) {
    StoreSpec spec = ParseStoreSpec(s);
    s = (spec.dfs ? "dfs:" : "") + std::filesystem::absolute(spec.dir).lexically_normal().string();
    if (spec.capacity) s += ":" + std::to_string(*spec.capacity);
  }
  if (!o.log_file.empty()) o.log_file = std::filesystem::absolute(o.log_file).lexically_normal().string();
  if (DetachDeadKvfsMount(o.mountpoint)) {
    std::cout << "kvfs: detached the dead kvfs mount on " << o.mountpoint << " (its daemon had exited)" << std::endl;
  }
  Result<std::string> mnt = CheckMountpoint(o.mountpoint, /*nonempty=*/true);
  if (!mnt.ok()) {
    PrintError(mnt.status().message());
    return 1;
  }
  // A store inside the mountpoint also makes it non-empty: say the more
  // precise thing first.
  for (const std::string& s : o.stores) {
    if (Status c = CheckStoreOutsideMountpoint(ParseStoreSpec(s).dir, *mnt); !c.ok()) {
      PrintError(c.message());
      return 1;
    }
  }
  if (!o.nonempty) {
    mnt = CheckMountpoint(o.mountpoint, false);
    if (!mnt.ok()) {
      PrintError(mnt.status().message());
      return 1;
    }
  }
  if (o.foreground) return Serve(o, *mnt, -1);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    PrintError(std::string("pipe: ") + std::strerror(errno));
    return 1;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    PrintError(std::string("fork: ") + std::strerror(errno));
    return 1;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::setsid();
    if (::chdir("/") != 0) {
      // Not fatal: paths are absolute.
    }
    int rc = Serve(o, *mnt, fds[1]);
#ifdef KVFS_LEAK_CHECK
    // The background daemon ends with _exit, which skips the leak check
    // that an AddressSanitizer build runs at exit; run it here (it aborts
    // on a leak).
    __lsan_do_leak_check();
#endif
    ::_exit(rc);
  }
  ::close(fds[1]);
  // The daemon writes progress lines, then one final line: "OK ..." or an error.
  std::string report, pending;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.rfind("PROGRESS ", 0) == 0) std::cout << "kvfs: " << line.substr(9) << std::endl;
      else report = line;
    }
  }
  ::close(fds[0]);
  if (!pending.empty()) report = pending;
  if (report.rfind("OK ", 0) == 0) {
    std::cout << "kvfs: " << report.substr(3) << std::endl;
    return 0;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  PrintError(report.empty() ? "the daemon exited during start-up (see its log)" : report);
  return 1;
}

namespace {

Result<std::string> ReadRootXattr(const std::string& mountpoint, const char* name) {
  std::vector<char> buf(1 << 16);
  while (true) {
    ssize_t n = ::getxattr(mountpoint.c_str(), name, buf.data(), buf.size());
    if (n >= 0) return std::string(buf.data(), static_cast<size_t>(n));
    if (errno == ERANGE && buf.size() < (1u << 24)) {
      buf.resize(buf.size() * 4);
      continue;
    }
    int err = errno;
    if (err == ENODATA || err == ENOTSUP) return Status::Error(err, mountpoint + " is not a kvfs mount");
    if (err == ENOTCONN) return Status::Error(err, mountpoint + ": the kvfs daemon is gone (transport endpoint not connected)");
    return Status::FromErrno(err, mountpoint);
  }
}

// Waits for a process to exit without polling: pidfd becomes readable at exit.
bool WaitForExit(pid_t pid, int timeout_ms) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  ::close(pidfd);
  return rc > 0;
}

}  // namespace

int RunUmount(const std::string& mountpoint) {
  char resolved[PATH_MAX];
  if (!::realpath(mountpoint.c_str(), resolved)) {
    PrintError("mountpoint " + mountpoint + ": " + std::strerror(errno));
    return 1;
  }
  std::string mnt = resolved;
  if (MountedDevice(mnt).empty()) {
    PrintError(mountpoint + " is not mounted");
    return 1;
  }
  Result<std::string> pid_text = ReadRootXattr(mnt, "user.kvfs.pid");
  if (!pid_text.ok()) {
    if (pid_text.err() == ENOTCONN) {
      // The daemon died: detach the dead mount so the mountpoint is usable again.
      if (::umount2(mnt.c_str(), MNT_DETACH) != 0) {
        PrintError("cannot detach dead mount " + mnt + ": " + std::strerror(errno));
        return 1;
      }
      return 0;
    }
    PrintError(pid_text.status().message());
    return 1;
  }
  pid_t pid = static_cast<pid_t>(std::atoi(pid_text->c_str()));
  if (::umount2(mnt.c_str(), 0) != 0) {
    int err = errno;
    if (err == EPERM) {
      std::string cmd = "fusermount3 -u '" + mnt + "'";
      if (std::system(cmd.c_str()) != 0) {
        PrintError("cannot unmount " + mnt + ": permission denied");
        return 1;
      }
    } else {
      PrintError("cannot unmount " + mnt + ": " + std::strerror(err) + (err == EBUSY ? " (files are open on it)" : ""));
      return 1;
    }
  }
  if (pid > 0 && !WaitForExit(pid, 60000)) {
    PrintError("unmounted " + mnt + ", but the daemon (pid " + std::to_string(pid) + ") has not exited after 60s");
    return 1;
  }
  return 0;
}

namespace {

// Numbers of a `user.kvfs.stats` JSON document, by dotted path
// ("reads", "evictions.total"); arrays are skipped. Enough for the fixed
// document the daemon writes, and safe on anything else (it stops).
std::map<std::string, double> FlattenNumbers(const std::string& json) {
  std::map<std::string, double> out;
  std::vector<std::string> path;  // keys of the enclosing objects
  std::string key;
  int array_depth = 0;
  size_t i = 0;
  auto read_string = [&](std::string* s) {
    ++i;
    while (i < json.size() && json[i] != '"') {
      if (json[i] == '\\' && i + 1 < json.size()) ++i;
      s->push_back(json[i++]);
    }
    ++i;
  };
  while (i < json.size()) {
    char c = json[i];
    if (c == '"') {
      std::string s;
      read_string(&s);
      size_t j = i;
      while (j < json.size() && json[j] == ' ') ++j;
      if (j < json.size() && json[j] == ':') {
        key = s;
        i = j + 1;
      }
    } else if (c == '{') {
      path.push_back(key);
      ++i;
    } else if (c == '}') {
      if (!path.empty()) path.pop_back();
      ++i;
    } else if (c == '[') {
      ++array_depth;
      ++i;
    } else if (c == ']') {
      --array_depth;
      ++i;
    } else if ((c >= '0' && c <= '9') || c == '-') {
      char* end = nullptr;
      double v = std::strtod(json.c_str() + i, &end);
      if (end == json.c_str() + i) break;
      i = static_cast<size_t>(end - json.c_str());
      if (array_depth == 0) {
        std::string full;
        for (size_t k = 1; k < path.size(); ++k) full += path[k] + ".";
        out[full + key] = v;
      }
    } else {
      ++i;
    }
  }
  return out;
}

volatile sig_atomic_t stats_interrupted = 0;
void OnStatsSignal(int) { stats_interrupted = 1; }

// One line of rates between two samples taken `seconds` apart.
std::string RateLine(const std::map<std::string, double>& a, const std::map<std::string, double>& b, double seconds) {
  auto delta = [&](const char* k) {
    auto ia = a.find(k), ib = b.find(k);
    double d = (ia == a.end() || ib == b.end()) ? 0 : ib->second - ia->second;
    return d < 0 ? 0.0 : d;
  };
  double lookups = delta("lookups"), misses = delta("negative_lookups");
  char hit[16];
  if (lookups > 0) std::snprintf(hit, sizeof hit, "%.1f%%", 100.0 * (lookups - misses) / lookups);
  else std::snprintf(hit, sizeof hit, "-");
  time_t now = ::time(nullptr);
  struct tm tm;
  ::localtime_r(&now, &tm);
  char line[256];
  std::snprintf(line, sizeof line, "%02d:%02d:%02d %10.1f %12.2f %10.1f %11.1f %9s", tm.tm_hour, tm.tm_min, tm.tm_sec,
                delta("reads") / seconds, delta("read_bytes") / seconds / (1 << 20), delta("commits") / seconds,
                delta("evictions.total") / seconds, hit);
  return line;
}

}  // namespace

int RunStats(const std::string& mountpoint, bool json, double watch_seconds, uint64_t watch_count) {
  if (watch_seconds <= 0) {
    Result<std::string> text = ReadRootXattr(mountpoint, json ? "user.kvfs.stats" : "user.kvfs.stats.text");
    if (!text.ok()) {
      PrintError(text.status().message());
      return 1;
    }
    std::cout << *text;
    if (text->empty() || text->back() != '\n') std::cout << "\n";
    return 0;
  }
  // Like iostat: a header, then one line of rates per interval, until
  // interrupted (SIGINT/SIGTERM: exit 0) or after watch_count lines.
  struct sigaction sa {};
  sa.sa_handler = OnStatsSignal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  Result<std::string> first = ReadRootXattr(mountpoint, "user.kvfs.stats");
  if (!first.ok()) {
    PrintError(first.status().message());
    return 1;
  }
  std::map<std::string, double> prev = FlattenNumbers(*first);
  std::cout << "time        reads/s  read MiB/s  commits/s evictions/s hit ratio" << std::endl;
  const auto interval = std::chrono::duration<double>(watch_seconds);
  auto last = std::chrono::steady_clock::now();
  for (uint64_t lines = 0; watch_count == 0 || lines < watch_count; ++lines) {
    auto due = last + std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
    while (!stats_interrupted) {
      auto left = due - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) break;
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      struct timespec ts {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
      ::nanosleep(&ts, nullptr);  // a signal cuts it short
    }
    if (stats_interrupted) return 0;
    Result<std::string> text = ReadRootXattr(mountpoint, "user.kvfs.stats");
    auto now = std::chrono::steady_clock::now();
    if (!text.ok()) {
      PrintError(text.status().message());
      return 1;
    }
    std::map<std::string, double> cur = FlattenNumbers(*text);
    double seconds = std::chrono::duration<double>(now - last).count();
    std::cout << RateLine(prev, cur, seconds > 0 ? seconds : watch_seconds) << std::endl;
    prev = std::move(cur);
    last = now;
  }
  return 0;
}

}  // namespace kvfs

namespace kvfs {

int RunFsck(const std::string& store_dir, bool repair, bool json) {
  LocalStoreOptions so;
  so.create_if_missing = false;
  so.sweep_staging = false;
  so.read_only = !repair;  // a check writes nothing: read-only stores can be checked
  Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(store_dir, so);
  if (!store.ok()) {
    PrintError(store.status().message());
    return 2;
  }
  Result<FsckReport> report = CheckStore(**store, repair);
  if (!report.ok()) {
    PrintError(report.status().message());
    return 2;
  }
  std::cout << (json ? report->ToJson() + "\n" : report->ToText());
  return report->clean() ? 0 : 1;
}

}  // namespace kvfs
