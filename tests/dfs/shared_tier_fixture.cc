#include "tests/dfs/shared_tier_fixture.h"

#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace kvfs::dfs_test {

using namespace kvfs::mounted_test;
using Clock = std::chrono::steady_clock;

namespace {

std::string Join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Characters that are safe in a directory name.
std::string Sanitize(std::string s) {
  for (char& c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) c = '_';
  }
  return s;
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

// Whether pid is gone (or a zombie awaiting its reaper).
bool ProcessGone(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return true;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return true;
  return text[paren + 2] == 'Z' || text[paren + 2] == 'X';
}

std::vector<std::string> ProcCmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> argv;
  std::string arg;
  while (std::getline(in, arg, '\0')) argv.push_back(arg);
  return argv;
}

std::atomic<uint64_t> store_counter{0};

}  // namespace

std::string InChild(const std::function<std::string()>& fn, int timeout_ms) {
  return RunInChild(fn, timeout_ms).Summary();
}

std::string SharedTierTest::kvfs_binary() { return KVFS_BINARY; }

std::string SharedTierTest::StoreDir(size_t host) const {
  return gluster_dir_ + (host % 2 == 0 ? "/mnt" : "/mnt2") + "/kv/" + store_name_;
}

std::string SharedTierTest::P(size_t host, std::string_view relative) const {
  return hosts_.at(host).mnt + "/" + std::string(relative);
}

void SharedTierTest::SetUp() {
  // A child that died early must fail a Send, not kill the test with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  const char* gd = getenv("KVFS_GLUSTER_DIR");
  if (gd == nullptr || *gd == '\0') {
    GTEST_SKIP() << "KVFS_GLUSTER_DIR is not set: these tests need the GlusterFS volume of "
                    "packaging/gluster-up.sh (run them through ctest, which starts it, or run "
                    "packaging/gluster-up.sh /tmp/kvfs-gluster and set KVFS_GLUSTER_DIR=/tmp/kvfs-gluster)";
  }
  gluster_dir_ = gd;
  while (gluster_dir_.size() > 1 && gluster_dir_.back() == '/') gluster_dir_.pop_back();
  for (const char* client : {"/mnt", "/mnt2"}) {
    std::string kv = gluster_dir_ + client + "/kv";
    ASSERT_EQ(CountMountsAt(gluster_dir_ + client), 1)
        << gluster_dir_ + client << " is not mounted: is the GlusterFS volume up (packaging/gluster-up.sh "
        << gluster_dir_ << ")?";
    std::string err = InChild([&] { return StatErrno(kv) == 0 ? "ok" : ErrnoMessage("stat " + kv); }, 30000);
    ASSERT_EQ(err, "ok") << "the GlusterFS volume does not answer at " << kv;
  }

  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  store_name_ = Sanitize(info->name()) + "-" + std::to_string(getpid()) + "-" + std::to_string(store_counter++);
  std::string make =
      InChild([&] { return mkdir(StoreDir().c_str(), 0755) == 0 ? "ok" : ErrnoMessage("mkdir " + StoreDir()); });
  ASSERT_EQ(make, "ok");

  ASSERT_EQ(MakeTestRoot(&local_root_), "");

  hosts_.resize(HostCount());
  for (size_t i = 0; i < hosts_.size(); ++i) {
    hosts_[i].mnt = local_root_ + "/" + host_id(i);
    hosts_[i].log = local_root_ + "/" + host_id(i) + ".log";
    ASSERT_EQ(mkdir(hosts_[i].mnt.c_str(), 0755), 0) << ErrnoMessage("mkdir " + hosts_[i].mnt);
  }
  for (size_t i = 0; i < hosts_.size(); ++i) ASSERT_EQ(MountHost(i), "") << "mounting " << host_id(i);
}

std::vector<std::string> SharedTierTest::MountCommand(size_t host) const {
  char refresh[32], ttl[32];
  std::snprintf(refresh, sizeof refresh, "%g", RefreshSeconds());
  std::snprintf(ttl, sizeof ttl, "%g", LeaseTtlSeconds());
  std::vector<std::string> argv = {
      kvfs_binary(), "mount",       hosts_.at(host).mnt, "--store", "dfs:" + StoreDir(host) + ":" + Capacity(),
      "--host-id",   host_id(host), "--dfs-refresh",     refresh,   "--dfs-lease-ttl",
      ttl,           "--log-file",  hosts_.at(host).log};
  for (const auto& a : ExtraMountArgs(host)) argv.push_back(a);
  return argv;
}

std::string SharedTierTest::LogTail(size_t host, size_t lines) const { return FileTail(hosts_.at(host).log, lines); }

std::string SharedTierTest::MountHost(size_t host) {
  Host& h = hosts_.at(host);
  if (h.mounted) return host_id(host) + " is already mounted";
  auto argv = MountCommand(host);
  CommandResult r = RunCommand(argv, 120 * 1000);
  if (r.exit_code != 0) {
    if (IsKvfsMounted(h.mnt)) RunCommand({"/bin/umount", "-l", h.mnt});
    return "`" + Join(argv) + "` failed: " + r.Describe() + "\n--- " + h.log + ":\n" + LogTail(host, 20);
  }
  if (!IsKvfsMounted(h.mnt)) {
    if (CountMountsAt(h.mnt) > 0) RunCommand({"/bin/umount", "-l", h.mnt});
    return "`" + Join(argv) + "` exited 0 but /proc/mounts shows no fuse.kvfs mount at " + h.mnt;
  }
  h.mounted = true;
  return "";
}

std::string SharedTierTest::UnmountHost(size_t host) {
  Host& h = hosts_.at(host);
  std::string error;
  CommandResult r = RunCommand({kvfs_binary(), "umount", h.mnt}, 90 * 1000);
  if (r.exit_code != 0) error = "`kvfs umount " + h.mnt + "` failed: " + r.Describe();
  if (IsKvfsMounted(h.mnt) || CountMountsAt(h.mnt) > 0) {
    if (error.empty()) error = "`kvfs umount " + h.mnt + "` exited 0 but the mount is still there";
    RunCommand({"/bin/umount", "-l", h.mnt});
    if (CountMountsAt(h.mnt) > 0) RunCommand({"/bin/fusermount3", "-uz", h.mnt});
  }
  h.mounted = false;
  return error;
}

pid_t SharedTierTest::DaemonPid(size_t host) const {
  const std::string& m = hosts_.at(host).mnt;
  std::string got = InChild(
      [&]() -> std::string {
        char buf[64] = {0};
        ssize_t n = getxattr(m.c_str(), "user.kvfs.pid", buf, sizeof buf - 1);
        if (n <= 0) return ErrnoMessage("getxattr user.kvfs.pid");
        return std::string("pid ") + std::string(buf, static_cast<size_t>(n));
      },
      10 * 1000);
  if (got.rfind("pid ", 0) == 0) {
    pid_t pid = static_cast<pid_t>(std::atol(got.c_str() + 4));
    std::vector<std::string> argv = ProcCmdline(pid);
    if (pid > 0 && argv.size() > 2 && argv[1] == "mount" && argv[2] == m) return pid;
  }
  // Fallback: the process whose command line is `kvfs mount <m> ...`.
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (pid <= 0) continue;
    std::vector<std::string> argv = ProcCmdline(pid);
    if (argv.size() > 2 && argv[1] == "mount" && argv[2] == m && !ProcessGone(pid)) found = pid;
  }
  closedir(proc);
  return found;
}

std::string SharedTierTest::KillHost(size_t host, pid_t pid) {
  Host& h = hosts_.at(host);
  if (pid <= 0) pid = DaemonPid(host);
  if (pid <= 0) return "cannot find the kvfs daemon of " + host_id(host) + " (" + h.mnt + ")";
  if (kill(pid, SIGKILL) != 0) return ErrnoMessage("kill(" + std::to_string(pid) + ", SIGKILL)");
  if (!WaitFor([&] { return ProcessGone(pid); }, std::chrono::seconds(20))) {
    return "the kvfs daemon of " + host_id(host) + " (pid " + std::to_string(pid) + ") survived SIGKILL for 20 s";
  }
  // The dead mount answers ENOTCONN; detach it so the mountpoint is usable.
  CommandResult r = RunCommand({"/bin/umount", "-l", h.mnt}, 30 * 1000);
  h.mounted = false;
  if (CountMountsAt(h.mnt) > 0) return "cannot detach the dead mount " + h.mnt + ": " + r.Describe();
  return "";
}

std::optional<JsonValue> SharedTierTest::HostStats(size_t host, std::string* error) const {
  CommandResult r = RunCommand({kvfs_binary(), "stats", hosts_.at(host).mnt, "--json"}, 15 * 1000);
  std::string local_error;
  std::string* err = error ? error : &local_error;
  if (r.exit_code != 0) {
    *err = "kvfs stats --json " + hosts_.at(host).mnt + ": " + r.Describe();
    return std::nullopt;
  }
  std::string perr;
  auto parsed = ParseJson(r.out, &perr);
  if (!parsed || parsed->type != JsonValue::Type::kObject) {
    *err = "kvfs stats --json printed invalid JSON (" + perr + "): " + r.out;
    return std::nullopt;
  }
  return parsed;
}

const JsonValue* SharedTierTest::StoreOf(const JsonValue& stats) {
  const JsonValue* stores = stats.Find("stores");
  if (!stores || stores->type != JsonValue::Type::kArray || stores->items.empty()) return nullptr;
  return &stores->items[0];
}

namespace {
const JsonValue* FindPath(const JsonValue& stats, std::initializer_list<std::string_view> path) {
  const JsonValue* stores = stats.Find("stores");
  if (!stores || stores->type != JsonValue::Type::kArray || stores->items.empty()) return nullptr;
  const JsonValue* v = &stores->items[0];
  for (std::string_view p : path) {
    if (!v) return nullptr;
    v = v->Find(p);
  }
  return v;
}
}  // namespace

uint64_t SharedTierTest::StoreU64(const JsonValue& stats, std::initializer_list<std::string_view> path) {
  const JsonValue* v = FindPath(stats, path);
  return v ? v->AsU64() : 0;
}

bool SharedTierTest::StoreBool(const JsonValue& stats, std::initializer_list<std::string_view> path) {
  const JsonValue* v = FindPath(stats, path);
  return v && v->type == JsonValue::Type::kBool && v->boolean;
}

std::string SharedTierTest::StoreString(const JsonValue& stats, std::initializer_list<std::string_view> path) {
  const JsonValue* v = FindPath(stats, path);
  return v && v->type == JsonValue::Type::kString ? v->text : "";
}

bool SharedTierTest::WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                             std::chrono::milliseconds poll, double* elapsed_s) {
  auto start = Clock::now();
  auto deadline = start + timeout;
  for (;;) {
    bool ok = pred();
    if (ok || Clock::now() >= deadline) {
      if (elapsed_s) *elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
      return ok;
    }
    std::this_thread::sleep_for(poll);
  }
}

std::string ListDirInChild(const std::string& dir, std::vector<std::string>* names, int timeout_ms) {
  std::string got = InChild(
      [&]() -> std::string {
        std::vector<std::string> n;
        std::string err = ListDir(dir, &n);
        if (!err.empty()) return err;
        std::string out = "ok\n";
        for (const auto& s : n) out += s + "\n";
        return out;
      },
      timeout_ms);
  names->clear();
  if (got.rfind("ok\n", 0) != 0) return got.empty() ? "ListDir(" + dir + ") in a child returned nothing" : got;
  std::istringstream in(got.substr(3));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) names->push_back(line);
  }
  return "";
}

std::string SharedTierTest::StagingFiles(std::vector<std::string>* names) const {
  return ListDirInChild(StoreDir() + "/staging", names);
}

namespace {
uint64_t walk_bytes = 0, walk_files = 0;
int SumEntry(const char*, const struct stat* st, int type, struct FTW*) {
  if (type == FTW_F) {
    walk_bytes += static_cast<uint64_t>(st->st_size);
    ++walk_files;
  }
  return 0;
}
}  // namespace

std::string SharedTierTest::ObjectBytes(uint64_t* bytes, uint64_t* files) const {
  std::string dir = StoreDir() + "/objects";
  std::string got = InChild([&]() -> std::string {
    walk_bytes = walk_files = 0;
    if (nftw(dir.c_str(), SumEntry, 32, FTW_PHYS) != 0) return ErrnoMessage("nftw " + dir);
    return "ok " + std::to_string(walk_bytes) + " " + std::to_string(walk_files);
  });
  if (got.rfind("ok ", 0) != 0) return got;
  std::istringstream in(got.substr(3));
  uint64_t b = 0, f = 0;
  in >> b >> f;
  *bytes = b;
  if (files) *files = f;
  return "";
}

void SharedTierTest::TearDown() {
  for (size_t i = 0; i < hosts_.size(); ++i) {
    if (hosts_[i].mounted || CountMountsAt(hosts_[i].mnt) > 0) {
      std::string error = UnmountHost(i);
      if (!error.empty()) ADD_FAILURE() << "TearDown: " << host_id(i) << ": " << error;
    }
  }
  if (HasFailure()) {
    for (size_t i = 0; i < hosts_.size(); ++i) {
      std::cerr << "---- last lines of " << hosts_[i].log << " ----\n" << LogTail(i) << std::flush;
    }
  }
  if (!store_name_.empty()) {
    CommandResult r = RunCommand({"/bin/rm", "-rf", "--", StoreDir()}, 120 * 1000);
    if (r.exit_code != 0) ADD_FAILURE() << "TearDown: rm -rf " << StoreDir() << ": " << r.Describe();
  }
  if (!local_root_.empty()) {
    for (const Host& h : hosts_) {
      if (CountMountsAt(h.mnt) > 0) {
        ADD_FAILURE() << "TearDown: something is still mounted at " << h.mnt << "; leaving " << local_root_;
        return;
      }
    }
    // FTW_MOUNT: never cross into a mount point; FTW_PHYS: never follow links.
    nftw(local_root_.c_str(), RemoveEntry, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  }
}

}  // namespace kvfs::dfs_test
