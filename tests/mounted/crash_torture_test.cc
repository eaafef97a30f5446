// Crash torture: the daemon is SIGKILLed at random moments while writers
// work, and after every restart the store must hold exactly what was
// acknowledged (docs/durability.md).
//
// Each round mounts the store, forks three writer processes and lets them
// run a random mix of operations on keys of their own:
//   create   open(O_CREAT|O_TRUNC) + writes + close() of a key that is absent
//   overwrite  open(O_TRUNC) + writes + close() of a key that exists
//   tmp+rename write KEY.tmp (as create), then rename(KEY.tmp, KEY)
//   unlink   unlink(KEY)
// Sizes run from 0 to 2 MiB; the bytes of every version are a function of
// (writer, key, version), and the first 32 bytes name that triple, so any
// byte read back can be traced to the version it belongs to.
//
// A writer reports over a pipe, as fixed-size records, the start of every
// operation and its completion once close()/rename()/unlink() RETURNED (the
// acknowledged state). After a deterministic pseudo-random delay the test
// SIGKILLs the daemon (the one timed wait of this test: the delay is the
// point), then kills the writers, detaches the dead mount, mounts again and
// checks, for each writer, that its keys show either the state after its
// last acknowledged operation, or the state after the operation that was in
// flight at the kill, as a whole (never a mix, never a partial object, never
// bytes of any other version), that nothing else appeared, and that
// staging/ is empty. At the end `kvfs fsck` on the unmounted store must be
// clean.
//
// Writers own disjoint keys, so each writer's acknowledged history is a
// sequence and at most one of its operations is in flight at the kill.
// The seed can be changed with KVFS_TORTURE_SEED; rounds with
// KVFS_TORTURE_ROUNDS.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kWriters = 3;
constexpr int kKeysPerWriter = 6;
constexpr int kDefaultRounds = 24;
constexpr size_t kMaxSize = 2 * kMiB;
constexpr uint64_t kMagic = 0x48535243'5346564bULL;  // "KVFSCRSH"
constexpr size_t kTagBytes = 32;
// The test stops starting rounds after this long (it must stay well under
// three minutes on a slow disk).
constexpr double kTimeBudgetSeconds = 140;

// ------------------------------------------------------------------ versions

// The bytes of version `version` of key `key` of writer `writer`: a 32-byte
// tag (magic, writer, key, version, size) followed by pseudo-random bytes
// seeded by the triple; an object shorter than 32 bytes is a prefix.
std::vector<uint8_t> Content(uint32_t writer, uint32_t key, uint64_t version, uint64_t size) {
  uint64_t seed = (uint64_t{writer} << 56) ^ (uint64_t{key} << 48) ^ version;
  std::vector<uint8_t> data = MakeData(seed, size);
  uint8_t tag[kTagBytes];
  uint32_t wk[2] = {writer, key};
  memcpy(tag, &kMagic, 8);
  memcpy(tag + 8, wk, 8);
  memcpy(tag + 16, &version, 8);
  memcpy(tag + 24, &size, 8);
  if (size > 0) memcpy(data.data(), tag, std::min<size_t>(size, kTagBytes));  // data() may be null
  return data;
}

// What the tag at the start of some bytes says, for error messages.
std::string DescribeTag(const std::vector<uint8_t>& got) {
  if (got.size() < kTagBytes) return "too short for a tag";
  uint64_t magic, version, size;
  uint32_t wk[2];
  memcpy(&magic, got.data(), 8);
  memcpy(wk, got.data() + 8, 8);
  memcpy(&version, got.data() + 16, 8);
  memcpy(&size, got.data() + 24, 8);
  if (magic != kMagic) return "no tag (not written by this test)";
  std::ostringstream o;
  o << "tag says writer " << wk[0] << " key " << wk[1] << " version " << version << " size " << size;
  if (size != got.size()) o << " (but the file has " << got.size() << " bytes: torn or mixed)";
  return o.str();
}

// ------------------------------------------------------------------ model

// One path (KEY or KEY.tmp) of a writer: absent, or a version of some size.
struct PathState {
  bool present = false;
  uint64_t version = 0;
  uint64_t size = 0;
  bool operator==(const PathState&) const = default;
  std::string Describe() const {
    return present ? "v" + std::to_string(version) + " (" + std::to_string(size) + " B)" : "absent";
  }
};

// slots[k][0] is key k, slots[k][1] its .tmp.
using WriterState = std::array<std::array<PathState, 2>, kKeysPerWriter>;

enum class Op : uint32_t { kCreate = 1, kOverwrite, kWriteTmp, kRename, kUnlink };
enum class Kind : uint32_t { kStart = 1, kDone, kFail };

const char* OpName(Op op) {
  switch (op) {
    case Op::kCreate: return "create";
    case Op::kOverwrite: return "overwrite";
    case Op::kWriteTmp: return "write-tmp";
    case Op::kRename: return "rename";
    case Op::kUnlink: return "unlink";
  }
  return "?";
}

// What a writer sends the test; 32 bytes, so one write(2) is atomic.
struct Record {
  Kind kind;
  Op op;
  uint32_t key;
  int32_t err;
  uint64_t version;
  uint64_t size;
};
static_assert(sizeof(Record) == 32);

void Apply(WriterState& s, const Record& r) {
  auto& slot = s[r.key];
  switch (r.op) {
    case Op::kCreate:
    case Op::kOverwrite: slot[0] = PathState{true, r.version, r.size}; break;
    case Op::kWriteTmp: slot[1] = PathState{true, r.version, r.size}; break;
    case Op::kRename:
      slot[0] = slot[1];
      slot[1] = PathState{};
      break;
    case Op::kUnlink: slot[0] = PathState{}; break;
  }
}

std::string KeyName(int writer, int key, bool tmp) {
  return "w" + std::to_string(writer) + "/k" + std::to_string(key) + (tmp ? ".tmp" : "");
}

// ------------------------------------------------------------------ writer

bool SendRecord(int fd, const Record& r) {
  for (;;) {
    ssize_t n = write(fd, &r, sizeof r);
    if (n == static_cast<ssize_t>(sizeof r)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

// 0 or the errno of the failing call: creates/truncates path and writes data
// in pieces of random size, then close()s it (the commit).
int WriteVersion(const std::string& path, int flags, const std::vector<uint8_t>& data, std::mt19937_64& rng) {
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | flags, 0644);
  if (fd < 0) return errno;
  size_t off = 0;
  while (off < data.size()) {
    size_t piece = std::min<size_t>(data.size() - off, 4096 + rng() % (768 * 1024));
    ssize_t n = write(fd, data.data() + off, piece);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return err;
    }
    off += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return errno;
  return 0;
}

// The body of a writer process: works on its own keys until it is killed or
// an operation fails (then it reports the failure and exits).
[[noreturn]] void RunWriter(const std::string& mnt, int writer, WriterState state, uint64_t first_version,
                            uint64_t seed, int out_fd) {
  std::mt19937_64 rng(seed);
  uint64_t next_version = first_version;
  auto fail = [&](Op op, uint32_t key, int err) {
    SendRecord(out_fd, Record{Kind::kFail, op, key, err, 0, 0});
    _exit(1);
  };
  auto pick_size = [&]() -> uint64_t {
    uint64_t r = rng() % 10;
    if (r == 0) return 0;
    if (r <= 2) return 1 + rng() % 4096;
    return rng() % (kMaxSize + 1);
  };
  for (;;) {
    uint32_t k = static_cast<uint32_t>(rng() % kKeysPerWriter);
    const std::string key_path = mnt + "/" + KeyName(writer, static_cast<int>(k), false);
    const std::string tmp_path = mnt + "/" + KeyName(writer, static_cast<int>(k), true);
    uint64_t dice = rng() % 100;
    Op op;
    if (!state[k][0].present) op = dice < 50 ? Op::kCreate : Op::kWriteTmp;
    else if (dice < 35) op = Op::kOverwrite;
    else if (dice < 70) op = Op::kWriteTmp;
    else op = Op::kUnlink;

    if (op == Op::kCreate || op == Op::kOverwrite || op == Op::kWriteTmp) {
      Record r{Kind::kStart, op, k, 0, next_version++, pick_size()};
      std::vector<uint8_t> data = Content(static_cast<uint32_t>(writer), k, r.version, r.size);
      if (!SendRecord(out_fd, r)) _exit(2);
      int err = WriteVersion(op == Op::kWriteTmp ? tmp_path : key_path, op == Op::kOverwrite ? 0 : O_CREAT, data,
                             rng);
      if (err != 0) fail(op, k, err);
      r.kind = Kind::kDone;
      if (!SendRecord(out_fd, r)) _exit(2);
      Apply(state, r);
      if (op == Op::kWriteTmp) {
        Record m{Kind::kStart, Op::kRename, k, 0, r.version, r.size};
        if (!SendRecord(out_fd, m)) _exit(2);
        if (rename(tmp_path.c_str(), key_path.c_str()) != 0) fail(Op::kRename, k, errno);
        m.kind = Kind::kDone;
        if (!SendRecord(out_fd, m)) _exit(2);
        Apply(state, m);
      }
    } else {
      Record r{Kind::kStart, Op::kUnlink, k, 0, 0, 0};
      if (!SendRecord(out_fd, r)) _exit(2);
      if (unlink(key_path.c_str()) != 0) fail(Op::kUnlink, k, errno);
      r.kind = Kind::kDone;
      if (!SendRecord(out_fd, r)) _exit(2);
      Apply(state, r);
    }
  }
}

// ------------------------------------------------------------------ parent side

// What the test learned about one writer during a round.
struct WriterLog {
  pid_t pid = -1;
  int fd = -1;  // read end of its pipe
  std::vector<uint8_t> pending;
  WriterState acked;                  // after every acknowledged operation
  std::optional<Record> in_flight;    // started, not acknowledged
  uint64_t acks = 0;
  std::string failure;                // a failure reported before the kill
  bool eof = false;
};

void Consume(WriterLog& w, const Record& r, bool killed) {
  switch (r.kind) {
    case Kind::kStart: w.in_flight = r; break;
    case Kind::kDone:
      Apply(w.acked, r);
      w.in_flight.reset();
      ++w.acks;
      break;
    case Kind::kFail:
      // The failed operation may or may not have happened (a close() that
      // failed because the daemon died after committing); it stays in flight.
      if (!killed && w.failure.empty()) {
        w.failure = std::string(OpName(r.op)) + " of k" + std::to_string(r.key) + " failed with " + ErrnoName(r.err) +
                    " before the daemon was killed";
      }
      break;
  }
}

// Reads what is available on the writer's pipe (waits up to timeout_ms).
void Pump(WriterLog& w, int timeout_ms, bool killed) {
  if (w.eof) return;
  pollfd p{w.fd, POLLIN, 0};
  int rc = poll(&p, 1, timeout_ms);
  if (rc <= 0) return;
  uint8_t buf[4096];
  ssize_t n = read(w.fd, buf, sizeof buf);
  if (n < 0) return;
  if (n == 0) {
    w.eof = true;
    return;
  }
  w.pending.insert(w.pending.end(), buf, buf + n);
  size_t used = 0;
  while (w.pending.size() - used >= sizeof(Record)) {
    Record r;
    memcpy(&r, w.pending.data() + used, sizeof r);
    used += sizeof r;
    Consume(w, r, killed);
  }
  w.pending.erase(w.pending.begin(), w.pending.begin() + static_cast<long>(used));
}

// The daemon's pid, from the mount root's user.kvfs.pid.
pid_t DaemonPid(const std::string& mnt) {
  char buf[32] = {};
  ssize_t n = getxattr(mnt.c_str(), "user.kvfs.pid", buf, sizeof buf - 1);
  if (n <= 0) return -1;
  return static_cast<pid_t>(atoi(buf));
}

// SIGKILLs pid and waits (bounded) until it is gone. "" or the problem.
std::string KillAndWait(pid_t pid, int timeout_ms) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH ? "" : ErrnoMessage("pidfd_open");
  kill(pid, SIGKILL);
  pollfd p{pidfd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  close(pidfd);
  return rc > 0 ? "" : "daemon " + std::to_string(pid) + " still alive " + std::to_string(timeout_ms) + " ms after SIGKILL";
}

// What a path of the mount holds now, identified against the candidate
// states: "" when it is one of them, else why not. (*matches)[i] says
// whether it could be candidates[i]. Versions are not always told apart by
// their bytes (an empty object has no tag; one of up to 16 bytes holds no
// version), so a path can match several candidates; the caller decides
// which whole state the writer's paths show together.
std::string Observe(const std::string& path, uint32_t writer, uint32_t key, const std::vector<PathState>& candidates,
                    std::vector<bool>* matches) {
  matches->assign(candidates.size(), false);
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return ErrnoMessage("stat " + path);
    bool any = false;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!candidates[i].present) (*matches)[i] = any = true;
    }
    if (any) return "";
    return "absent, but acknowledged as " + candidates[0].Describe() + " (a committed version was lost)";
  }
  std::vector<uint8_t> got;
  std::string err = ReadFile(path, &got);
  if (!err.empty()) return "unreadable: " + err;
  if (static_cast<uint64_t>(st.st_size) != got.size()) {
    return "stat size " + std::to_string(st.st_size) + " but " + std::to_string(got.size()) + " bytes read";
  }
  bool any = false;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const PathState& c = candidates[i];
    if (c.present && c.size == got.size() && Content(writer, key, c.version, c.size) == got) (*matches)[i] = any = true;
  }
  if (any) return "";
  return std::to_string(got.size()) + " bytes that are no acknowledged or in-flight version: " + DescribeTag(got);
}

// Runs once per durability mode: a daemon kill must lose nothing that was
// acknowledged, whether commits are flushed at close or in the background.
class CrashTortureTest : public MountedTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--durability", GetParam()}; }
};

TEST_P(CrashTortureTest, SigkillDuringWritesKeepsAcknowledgedState) {
  const char* seed_env = getenv("KVFS_TORTURE_SEED");
  const uint64_t seed = seed_env != nullptr ? strtoull(seed_env, nullptr, 0) : 20240611;
  const char* rounds_env = getenv("KVFS_TORTURE_ROUNDS");
  const int rounds = rounds_env != nullptr ? atoi(rounds_env) : kDefaultRounds;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("KVFS_TORTURE_SEED=" + std::to_string(seed));

  for (int w = 0; w < kWriters; ++w) {
    ASSERT_EQ(mkdir(P("w" + std::to_string(w)).c_str(), 0755), 0) << ErrnoMessage("mkdir");
  }
  std::array<WriterState, kWriters> model{};  // what each writer's keys hold now
  uint64_t total_acks = 0, in_flight_kills = 0, in_flight_new_state = 0;
  std::map<std::string, int> in_flight_ops;
  const auto started = Clock::now();
  int round = 0;
  for (; round < rounds; ++round) {
    if (std::chrono::duration<double>(Clock::now() - started).count() > kTimeBudgetSeconds) break;
    SCOPED_TRACE("round " + std::to_string(round));
    pid_t daemon = DaemonPid(mnt());
    ASSERT_GT(daemon, 0) << ErrnoMessage("getxattr user.kvfs.pid");

    // Start the writers. Whatever happens, none outlives the round.
    std::array<WriterLog, kWriters> logs;
    struct Reaper {
      std::array<WriterLog, kWriters>& logs;
      ~Reaper() {
        for (WriterLog& w : logs) {
          if (w.pid > 0) {
            kill(w.pid, SIGKILL);
            int status;
            while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
            }
            w.pid = -1;
          }
          if (w.fd >= 0) close(w.fd);
          w.fd = -1;
        }
      }
    } reaper{logs};
    for (int w = 0; w < kWriters; ++w) {
      int fds[2];
      ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
      uint64_t writer_seed = rng();
      pid_t pid = fork();
      ASSERT_GE(pid, 0) << ErrnoMessage("fork");
      if (pid == 0) {
        close(fds[0]);
        RunWriter(mnt(), w, model[w], static_cast<uint64_t>(round + 1) * 1000000, writer_seed, fds[1]);
      }
      close(fds[1]);
      logs[w].pid = pid;
      logs[w].fd = fds[0];
      logs[w].acked = model[w];
    }

    // Let them run for a pseudo-random while, collecting acknowledgements.
    const auto kill_at = Clock::now() + std::chrono::milliseconds(30 + rng() % 1500);
    while (Clock::now() < kill_at) {
      for (WriterLog& w : logs) Pump(w, 0, false);
      pollfd p[kWriters];
      for (int w = 0; w < kWriters; ++w) p[w] = pollfd{logs[w].eof ? -1 : logs[w].fd, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - Clock::now()).count();
      if (left > 0) poll(p, kWriters, static_cast<int>(left));
    }

    // Crash: the daemon first (so nothing can commit afterwards), then the writers.
    // A daemon in uninterruptible disk I/O dies when the I/O ends: on a busy
    // shared disk that can take seconds.
    std::string killed = KillAndWait(daemon, 60000);
    for (WriterLog& w : logs) kill(w.pid, SIGKILL);
    for (WriterLog& w : logs) {
      int status;
      while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
      }
      w.pid = -1;
    }
    for (WriterLog& w : logs) {
      for (int guard = 0; guard < 100000 && !w.eof; ++guard) Pump(w, 1000, true);
      close(w.fd);
      w.fd = -1;
    }
    ASSERT_EQ(killed, "");
    for (int w = 0; w < kWriters; ++w) {
      EXPECT_EQ(logs[w].failure, "") << "writer " << w;
      total_acks += logs[w].acks;
    }

    // Restart on the same store.
    ASSERT_EQ(Unmount(), "") << "detaching the dead mount";
    ASSERT_EQ(Mount(), "") << "mounting again after the crash";
    EXPECT_EQ(CountMountsAt(mnt()), 1);
    std::vector<std::string> staging;
    ASSERT_EQ(ListDir(store_path() + "/staging", &staging), "");
    EXPECT_TRUE(staging.empty()) << staging.size() << " staging files after the remount, e.g. " << staging[0];

    // Check each writer's keys.
    for (int w = 0; w < kWriters; ++w) {
      const WriterLog& log = logs[w];
      WriterState pre = log.acked;
      std::optional<WriterState> post;
      if (log.in_flight) {
        post = pre;
        Apply(*post, *log.in_flight);
        ++in_flight_kills;
        in_flight_ops[OpName(log.in_flight->op)]++;
      }
      // Each path is matched against its acknowledged state (candidate 0)
      // and its state after the in-flight operation (candidate 1); the
      // writer's paths together must show one of the two whole states.
      bool as_pre = true, as_post = post.has_value();
      std::string problems;
      std::array<std::array<const char*, 2>, kKeysPerWriter> matched{};  // for the failure report
      for (int k = 0; k < kKeysPerWriter; ++k) {
        for (int t = 0; t < 2; ++t) {
          std::vector<PathState> candidates = {pre[k][t]};
          if (post) candidates.push_back((*post)[k][t]);
          std::string path = P(KeyName(w, k, t == 1));
          std::vector<bool> matches;
          std::string err = Observe(path, static_cast<uint32_t>(w), static_cast<uint32_t>(k), candidates, &matches);
          if (!err.empty()) problems += "  " + KeyName(w, k, t == 1) + ": " + err + "\n";
          bool m_pre = matches[0], m_post = matches.size() > 1 && matches[1];
          as_pre = as_pre && m_pre;
          as_post = as_post && m_post;
          matched[k][t] = m_pre && m_post ? "both" : m_pre ? "acked" : m_post ? "after in-flight" : "neither";
        }
      }
      if (problems.empty() && !as_pre && !as_post) problems = "  a mix of the acknowledged and the in-flight state\n";
      // What the writer's keys hold now (when both states match, their
      // bytes are the same and either serves as the model).
      const WriterState seen = as_pre ? pre : as_post ? *post : WriterState{};
      if (!problems.empty()) {
        std::ostringstream o;
        o << "writer " << w << " after the crash:\n" << problems;
        o << "  in flight: "
          << (log.in_flight ? std::string(OpName(log.in_flight->op)) + " k" + std::to_string(log.in_flight->key) +
                                  " v" + std::to_string(log.in_flight->version)
                            : std::string("nothing"))
          << "\n";
        for (int k = 0; k < kKeysPerWriter; ++k) {
          for (int t = 0; t < 2; ++t) {
            o << "  " << KeyName(w, k, t == 1) << ": acked " << pre[k][t].Describe();
            if (post) o << ", after in-flight " << (*post)[k][t].Describe();
            o << "; what is there matches " << matched[k][t] << "\n";
          }
        }
        ADD_FAILURE() << o.str();
      }
      if (as_post && !as_pre) ++in_flight_new_state;
      model[w] = seen;

      // Nothing else appeared in the writer's directory.
      std::vector<std::string> names;
      ASSERT_EQ(ListDir(P("w" + std::to_string(w)), &names), "");
      std::set<std::string> want;
      for (int k = 0; k < kKeysPerWriter; ++k) {
        for (int t = 0; t < 2; ++t) {
          if (seen[k][t].present) want.insert(KeyName(w, k, t == 1).substr(KeyName(w, k, t == 1).find('/') + 1));
        }
      }
      EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want) << "listing of w" << w;
    }
    if (HasFailure()) break;  // the model no longer matches; later rounds would only repeat the noise
  }

  // The mount that is up now holds the checked state; a clean unmount and
  // an offline check must find nothing to complain about.
  ASSERT_EQ(Unmount(), "");
  CommandResult fsck = RunCommand({kvfs_binary(), "fsck", "--store", store_path()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.Describe();
  std::vector<std::string> quarantine;
  ListDir(store_path() + "/quarantine", &quarantine);
  EXPECT_TRUE(quarantine.empty()) << quarantine.size() << " objects were quarantined during the test";

  std::ostringstream summary;
  summary << round << " rounds, " << total_acks << " acknowledged operations, " << in_flight_kills
          << " kills with an operation in flight (" << in_flight_new_state << " of them landed):";
  for (const auto& [op, n] : in_flight_ops) summary << " " << op << "=" << n;
  summary << ", " << std::chrono::duration<double>(Clock::now() - started).count() << " s";
  std::cout << "[ torture  ] " << summary.str() << std::endl;
  EXPECT_GE(round, std::min(rounds, 10)) << "too few rounds in the time budget: " << summary.str();
  EXPECT_GT(total_acks, static_cast<uint64_t>(round)) << "the writers hardly got anything done: " << summary.str();
}

}  // namespace
INSTANTIATE_TEST_SUITE_P(Durability, CrashTortureTest, ::testing::Values("background", "close"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace kvfs::mounted_test
