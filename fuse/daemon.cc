#include "fuse/daemon.h"

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

#include "adapters/deadline_store.h"
#include "adapters/dfs_store.h"
#include "adapters/local_store.h"
#include "core/engine.h"
#include "core/fsck.h"
#include "core/log_text.h"
#include "core/size_parse.h"
#include "fuse/device_io.h"
#include "fuse/fuse_ops.h"
#include "fuse/kernel_notifier.h"

namespace kvfs {
namespace {

void PrintError(const std::string& message) { std::cerr << "kvfs: " << message << std::endl; }

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

Result<std::string> CheckMountpoint(const std::string& mountpoint) {
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

// default_log: where the log goes when --log-file is not given.
void SetupLogging(const MountOptions& o, const std::string& default_log) {
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (o.foreground && o.log_file.empty()) {
      logger = spdlog::stderr_color_mt("kvfs");
    } else {
      std::string path = o.log_file.empty() ? default_log : o.log_file;
      if (!PrepareLogFile(path)) throw spdlog::spdlog_ex("log file " + path + " is not a regular file");
      logger = spdlog::basic_logger_mt("kvfs", path);
    }
  } catch (const spdlog::spdlog_ex&) {
    logger = spdlog::stderr_color_mt("kvfs-stderr");
  }
  // Key names reach log lines: none may hold a raw newline.
  logger->set_formatter(std::make_unique<EscapingFormatter>());
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  spdlog::flush_on(spdlog::level::info);
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
  std::string l = line + "\n";
  ssize_t n = ::write(fd, l.data(), l.size());
  (void)n;
  ::close(fd);
}

int Serve(const MountOptions& o, const std::string& mountpoint, int ready_fd) {
  std::vector<std::string> dirs = o.stores.empty() ? std::vector<std::string>{kDefaultStoreDir} : o.stores;
  // Until the stores are open there is no log file (its default place is the
  // first store): start-up errors travel through `fail`.
  if (ready_fd >= 0) spdlog::set_level(spdlog::level::off);
  fuse_set_log_func(FuseLogToSpdlog);
  auto fail = [&](const std::string& msg) {
    spdlog::error("{}", msg);
    if (ready_fd >= 0) Report(ready_fd, msg);
    else PrintError(msg);
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
  SetupLogging(o, default_log);
  EngineOptions eo;
  eo.store_limits = limits;
  eo.eviction_policy = o.eviction_policy;
  eo.high_watermark = o.high_watermark;
  eo.low_watermark = o.low_watermark;
  eo.buffer_count = o.buffer_count;
  eo.buffer_size = o.buffer_size;
  eo.use_io_uring = o.io_uring;
  eo.verify_one_in = o.verify_one_in;
  eo.group_commit = o.group_commit;
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
  Result<std::unique_ptr<Engine>> engine = Engine::Open(eo, std::move(stores));
  if (!engine.ok()) return fail(engine.status().message());

  FuseContext ctx;
  ctx.engine = engine->get();
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
  if (!InstallDeviceIo(se)) spdlog::warn("could not install the /dev/fuse hook; shared mmap of files will fail");
  ctx.session = se;
  notifier.Start();
  (*engine)->SetObserver(&notifier);
  RaiseReadAhead(mountpoint, o.read_ahead_kb);
  EngineStats st = (*engine)->Stats();
  spdlog::info("mounted {} on {} store(s), capacity {}, {} objects", mountpoint, st.stores.size(),
               FormatSize(st.capacity_bytes), st.objects);
  if (ready_fd >= 0) {
    Report(ready_fd, "OK mounted " + mountpoint + " (" + std::to_string(st.stores.size()) + " store(s), capacity " +
                         FormatSize(st.capacity_bytes) + ", " + std::to_string(st.objects) + " objects)");
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
      ::dup2(null_fd, 0);
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
      if (null_fd > 2) ::close(null_fd);
    }
  } else {
    std::cout << "kvfs: mounted " << mountpoint << "; serving in the foreground" << std::endl;
  }

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_idle_threads(cfg, 16);
  fuse_loop_cfg_set_max_threads(cfg, 128);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  (*engine)->SetObserver(nullptr);
  notifier.Stop();
  ctx.session = nullptr;
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  spdlog::info("unmounted {}", mountpoint);
  engine->reset();
  spdlog::shutdown();
  return rc == 0 ? 0 : 1;
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

int RunMount(const MountOptions& given) {
  // The daemon runs in "/": make every path absolute first.
  MountOptions o = given;
  for (std::string& s : o.stores) {
    StoreSpec spec = ParseStoreSpec(s);
    s = (spec.dfs ? "dfs:" : "") + std::filesystem::absolute(spec.dir).lexically_normal().string();
    if (spec.capacity) s += ":" + std::to_string(*spec.capacity);
  }
  if (!o.log_file.empty()) o.log_file = std::filesystem::absolute(o.log_file).lexically_normal().string();
  Result<std::string> mnt = CheckMountpoint(o.mountpoint);
  if (!mnt.ok()) {
    PrintError(mnt.status().message());
    return 1;
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
    ::_exit(Serve(o, *mnt, fds[1]));
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

int RunStats(const std::string& mountpoint, bool json) {
  Result<std::string> text = ReadRootXattr(mountpoint, json ? "user.kvfs.stats" : "user.kvfs.stats.text");
  if (!text.ok()) {
    PrintError(text.status().message());
    return 1;
  }
  std::cout << *text;
  if (text->empty() || text->back() != '\n') std::cout << "\n";
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
