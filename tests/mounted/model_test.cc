// A model-based random test of the contract (docs/contract.md): agent
// processes apply random operations to the mount, one at a time, and the
// test applies each to an in-memory model of what the contract promises,
// comparing every answer (errno, bytes, size, listing) as it goes.
//
// The model covers: a write is invisible to others until its writer closes
// (a new key is ENOENT, a replaced key shows its previous version); a
// writer reads its own draft and sees its size; a read handle keeps the
// version it opened (read and mmap) through overwrite, truncate, rename and
// unlink; unlink, rename and truncate(path) act at once; fsync commits;
// listings show committed keys only; everything committed survives a
// remount. Keys that a writer holds open are touched by path only from other
// agents, and only read (their fate on unlink or rename while pending is
// left to the contract's own tests).
//
// Seeded: KVFS_MODEL_SEED (default: a few fixed seeds) and KVFS_MODEL_STEPS
// (default 250 per seed). A failure prints the seed, the step, and the
// operations so far. A long run:
//   KVFS_MODEL_SEED=7 KVFS_MODEL_STEPS=20000 ./build/tests/kvfs_mounted_tests --gtest_filter='ModelTest.*'

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <dirent.h>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

using Bytes = std::vector<uint8_t>;

// ------------------------------------------------------------ agent side

// One agent: a forked process that carries out commands from the test and
// answers "ok[ SIZE]\n<bytes>" or "err NAME". Handles are numbered by the test.
class Agent {
 public:
  explicit Agent(std::string mnt) : mnt_(std::move(mnt)) {}

  std::string Serve(Channel& ch) {
    while (true) {
      std::optional<std::string> msg = ch.Recv();
      if (!msg) return "no command";
      if (*msg == "quit") break;
      if (!ch.Send(Do(*msg))) return "cannot answer";
    }
    for (auto& [id, fd] : fds_) close(fd);
    return "ok";
  }

 private:
  static std::string Err() { return "err " + ErrnoName(errno); }
  std::string Path(const std::string& key) const { return mnt_ + "/" + key; }

  static std::string ReadAllFrom(int fd) {
    Bytes out;
    std::string e = ReadAllFd(fd, &out);
    if (!e.empty()) return "err " + e;
    return "ok\n" + std::string(out.begin(), out.end());
  }

  std::string Do(const std::string& msg) {
    std::istringstream in(msg);
    std::string op;
    in >> op;
    if (op == "open_r" || op == "open_w") {
      int id;
      std::string key;
      in >> id >> key;
      int flags = op == "open_r" ? O_RDONLY : O_RDWR | O_CREAT | O_TRUNC;
      int fd = open(Path(key).c_str(), flags | O_CLOEXEC, 0644);
      if (fd < 0) return Err();
      fds_[id] = fd;
      return "ok";
    }
    if (op == "pwrite") {
      int id;
      uint64_t off, seed, len;
      in >> id >> off >> seed >> len;
      Bytes data = MakeData(seed, len);
      size_t done = 0;
      while (done < data.size()) {
        ssize_t n = pwrite(fds_.at(id), data.data() + done, data.size() - done, static_cast<off_t>(off + done));
        if (n < 0) return Err();
        done += static_cast<size_t>(n);
      }
      return "ok";
    }
    if (op == "read") {
      int id;
      in >> id;
      return ReadAllFrom(fds_.at(id));
    }
    if (op == "mmap") {
      int id;
      in >> id;
      struct stat st {};
      if (fstat(fds_.at(id), &st) != 0) return Err();
      if (st.st_size == 0) return "ok\n";
      void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fds_.at(id), 0);
      if (p == MAP_FAILED) return Err();
      std::string out = "ok\n" + std::string(static_cast<const char*>(p), static_cast<size_t>(st.st_size));
      munmap(p, static_cast<size_t>(st.st_size));
      return out;
    }
    if (op == "fstat") {
      int id;
      in >> id;
      struct stat st {};
      if (fstat(fds_.at(id), &st) != 0) return Err();
      return "ok " + std::to_string(st.st_size);
    }
    if (op == "fsync") {
      int id;
      in >> id;
      return fsync(fds_.at(id)) == 0 ? "ok" : Err();
    }
    if (op == "close") {
      int id;
      in >> id;
      int fd = fds_.at(id);
      fds_.erase(id);
      return close(fd) == 0 ? "ok" : Err();
    }
    if (op == "get") {
      std::string key;
      in >> key;
      int fd = open(Path(key).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return Err();
      std::string out = ReadAllFrom(fd);
      close(fd);
      return out;
    }
    if (op == "stat") {
      std::string key;
      in >> key;
      struct stat st {};
      if (stat(Path(key).c_str(), &st) != 0) return Err();
      return "ok " + std::to_string(st.st_size);
    }
    if (op == "unlink") {
      std::string key;
      in >> key;
      return unlink(Path(key).c_str()) == 0 ? "ok" : Err();
    }
    if (op == "rename") {
      std::string from, to;
      in >> from >> to;
      return rename(Path(from).c_str(), Path(to).c_str()) == 0 ? "ok" : Err();
    }
    if (op == "truncate") {
      std::string key;
      uint64_t size;
      in >> key >> size;
      return truncate(Path(key).c_str(), static_cast<off_t>(size)) == 0 ? "ok" : Err();
    }
    if (op == "list") {
      std::string dir;
      in >> dir;
      DIR* d = opendir(Path(dir).c_str());
      if (!d) return Err();
      std::set<std::string> names;
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.insert(n);
      }
      closedir(d);
      std::string out = "ok";
      for (const std::string& n : names) out += " " + n;
      return out;
    }
    return "err unknown command " + op;
  }

  std::string mnt_;
  std::map<int, int> fds_;  // test's handle id -> descriptor
};

// ------------------------------------------------------------- test side

struct Handle {
  int agent;
  std::string key;
  bool writer;
  Bytes bytes;  // a reader's version, or a writer's draft
  // A reader that reads through the daemon (it opened while the key was
  // being written, or while another version of it was open) shares the
  // key's inode and so its one file size, which a later commit changes: its
  // reads are its own version's bytes, its size (fstat, mmap) is not
  // promised (docs/contract.md, "Page cache").
  bool size_follows_key = false;
  uint64_t version = 0;  // which commit of the key it reads
};

class ModelTest : public MountedTest {
 protected:
  static constexpr int kAgents = 3;
  static constexpr size_t kMaxSize = 48 * 1024;

  void TearDown() override {
    for (auto& a : agents_) a->channel().Send("quit");
    for (auto& a : agents_) a->Wait(10 * 1000);
    agents_.clear();
    MountedTest::TearDown();
  }

  void StartAgents() {
    for (int i = 0; i < kAgents; ++i) {
      std::string m = mnt();
      agents_.push_back(std::make_unique<ChildProcess>([m](Channel& ch) { return Agent(m).Serve(ch); }));
    }
  }

  // Sends cmd to agent a; returns its answer (or a failure text).
  std::string Ask(int a, const std::string& cmd) {
    log_.push_back("agent " + std::to_string(a) + ": " + cmd);
    if (!agents_[a]->channel().Send(cmd)) return "err agent gone";
    std::optional<std::string> r = agents_[a]->channel().Recv();
    return r ? *r : "err no answer";
  }

  // Checks an answer against an expected errno ("" for success) and, when
  // want_bytes is set, the bytes after "ok\n". Records the first mismatch.
  void Expect(const std::string& what, const std::string& got, const std::string& want_err,
              const Bytes* want_bytes = nullptr, std::optional<uint64_t> want_size = std::nullopt) {
    if (!failure_.empty()) return;
    std::string problem;
    if (!want_err.empty()) {
      if (got != "err " + want_err) problem = "want " + want_err + ", got '" + got.substr(0, 80) + "'";
    } else if (got.rfind("ok", 0) != 0) {
      problem = "want success, got '" + got.substr(0, 120) + "'";
    } else if (want_bytes) {
      size_t nl = got.find('\n');
      Bytes b = nl == std::string::npos ? Bytes{} : Bytes(got.begin() + static_cast<long>(nl) + 1, got.end());
      problem = CompareBytes(b, *want_bytes);
    } else if (want_size) {
      std::string size = got.size() > 3 ? got.substr(3) : "";
      if (size != std::to_string(*want_size)) problem = "size " + size + ", want " + std::to_string(*want_size);
    }
    if (!problem.empty()) Fail(what, problem);
  }

  // Records the first mismatch, with the seed, the step and what led to it.
  void Fail(const std::string& what, const std::string& problem) {
    if (!failure_.empty()) return;
    std::ostringstream o;
    o << "seed " << seed_ << ", step " << step_ << ": " << what << ": " << problem << "\nlast operations:\n";
    size_t from = log_.size() > 40 ? log_.size() - 40 : 0;
    for (size_t i = from; i < log_.size(); ++i) o << "  " << log_[i] << "\n";
    failure_ = o.str();
  }

  int Pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  uint64_t PickSize() { return std::uniform_int_distribution<uint64_t>(0, kMaxSize)(rng_); }
  std::string PickKey() {
    static const std::vector<std::string> keys = {"k0", "k1", "k2", "k3", "k4", "sub/k5", "sub/k6", "sub/k7"};
    return keys[static_cast<size_t>(Pick(static_cast<int>(keys.size())))];
  }
  // The agent holding a writer on key, or -1.
  int WriterAgent(const std::string& key) const {
    for (const auto& [id, h] : handles_) {
      if (h.writer && h.key == key) return h.agent;
    }
    return -1;
  }
  // One of the open writers' handle ids, at random; -1 when none is open.
  int PickWriter() {
    std::vector<int> writers;
    for (const auto& [id, h] : handles_) {
      if (h.writer) writers.push_back(id);
    }
    if (writers.empty()) return -1;
    return writers[static_cast<size_t>(Pick(static_cast<int>(writers.size())))];
  }
  // An agent other than `not_this` (any when not_this < 0).
  int OtherAgent(int not_this) {
    int a = Pick(kAgents);
    return a == not_this ? (a + 1) % kAgents : a;
  }

  // A commit of key: new bytes, a new version.
  void Commit(const std::string& key, const Bytes& bytes) {
    committed_[key] = bytes;
    versions_[key] = next_version_++;
  }

  void CloseHandle(int id) {
    Handle h = handles_.at(id);
    handles_.erase(id);
    Expect("close of " + h.key, Ask(h.agent, "close " + std::to_string(id)), "");
    if (h.writer) Commit(h.key, h.bytes);  // the last (only) writer's close commits
  }

  void Step() {
    int choice = Pick(100);
    std::string key = PickKey();
    int writer = WriterAgent(key);
    auto it = committed_.find(key);
    const Bytes* current = it == committed_.end() ? nullptr : &it->second;
    if (choice < 14) {  // put: create, write in pieces, maybe fsync, close
      if (writer >= 0) return;
      int a = Pick(kAgents);
      int id = next_id_++;
      Expect("open_w " + key, Ask(a, "open_w " + std::to_string(id) + " " + key), "");
      Bytes data;
      for (int pieces = Pick(3) + 1; pieces > 0; --pieces) {
        uint64_t seed = rng_(), len = PickSize() / 3;
        Expect("pwrite", Ask(a, "pwrite " + std::to_string(id) + " " + std::to_string(data.size()) + " " +
                                     std::to_string(seed) + " " + std::to_string(len)),
               "");
        Bytes piece = MakeData(seed, len);
        data.insert(data.end(), piece.begin(), piece.end());
      }
      if (Pick(4) == 0) Expect("fsync", Ask(a, "fsync " + std::to_string(id)), "");
      Expect("close", Ask(a, "close " + std::to_string(id)), "");
      Commit(key, data);
    } else if (choice < 24) {  // start a writer and keep it open
      if (writer >= 0) return;
      int a = Pick(kAgents);
      int id = next_id_++;
      Expect("open_w " + key, Ask(a, "open_w " + std::to_string(id) + " " + key), "");
      handles_[id] = Handle{a, key, true, {}};
    } else if (choice < 34) {  // write into an open writer, at the end or inside
      int id = PickWriter();
      if (id < 0) return;
      Handle& h = handles_.at(id);
      uint64_t off = Pick(3) == 0 ? std::uniform_int_distribution<uint64_t>(0, h.bytes.size())(rng_) : h.bytes.size();
      uint64_t seed = rng_(), len = PickSize() / 4;
      Expect("pwrite", Ask(h.agent, "pwrite " + std::to_string(id) + " " + std::to_string(off) + " " +
                                         std::to_string(seed) + " " + std::to_string(len)),
             "");
      Bytes piece = MakeData(seed, len);
      if (h.bytes.size() < off + len) h.bytes.resize(off + len);
      std::copy(piece.begin(), piece.end(), h.bytes.begin() + static_cast<long>(off));
    } else if (choice < 42) {  // a handle reads (or fstats) what it holds
      if (handles_.empty()) return;
      auto h = std::next(handles_.begin(), Pick(static_cast<int>(handles_.size())));
      std::string id = std::to_string(h->first);
      bool size_promised = !h->second.size_follows_key;
      if (Pick(3) == 0 && size_promised) {
        Expect("fstat of handle on " + h->second.key, Ask(h->second.agent, "fstat " + id), "", nullptr,
               h->second.bytes.size());
      } else if (!h->second.writer && size_promised && Pick(2) == 0) {
        Expect("mmap of reader on " + h->second.key, Ask(h->second.agent, "mmap " + id), "", &h->second.bytes);
      } else {
        Expect("read of handle on " + h->second.key, Ask(h->second.agent, "read " + id), "", &h->second.bytes);
      }
    } else if (choice < 50) {  // close a handle
      if (handles_.empty()) return;
      CloseHandle(std::next(handles_.begin(), Pick(static_cast<int>(handles_.size())))->first);
    } else if (choice < 58) {  // open a reader and keep it
      int a = OtherAgent(writer);
      int id = next_id_++;
      std::string got = Ask(a, "open_r " + std::to_string(id) + " " + key);
      Expect("open_r " + key, got, current ? "" : "ENOENT");
      if (got == "ok") {
        // Served by the page cache only when nobody writes the key and no
        // open handle holds another version of it.
        bool other_version = false;
        for (const auto& [hid, h] : handles_) {
          if (!h.writer && h.key == key && h.version != versions_[key]) other_version = true;
        }
        handles_[id] = Handle{a, key, false, current ? *current : Bytes{}, writer >= 0 || other_version, versions_[key]};
      }
    } else if (choice < 70) {  // get by path, from outside any writer
      Expect("get " + key, Ask(OtherAgent(writer), "get " + key), current ? "" : "ENOENT", current);
    } else if (choice < 76) {  // stat
      Expect("stat " + key, Ask(OtherAgent(writer), "stat " + key), current ? "" : "ENOENT", nullptr,
             current ? std::optional<uint64_t>(current->size()) : std::nullopt);
    } else if (choice < 82) {  // unlink
      if (writer >= 0) return;
      Expect("unlink " + key, Ask(Pick(kAgents), "unlink " + key), current ? "" : "ENOENT");
      committed_.erase(key);
      versions_.erase(key);
    } else if (choice < 88) {  // rename onto another key
      std::string to = PickKey();
      if (writer >= 0 || WriterAgent(to) >= 0 || to == key) return;
      Expect("rename " + key + " " + to, Ask(Pick(kAgents), "rename " + key + " " + to), current ? "" : "ENOENT");
      if (current) {
        committed_[to] = *current;
        committed_.erase(key);
        versions_[to] = versions_[key];  // the same object, under its new name
        versions_.erase(key);
      }
    } else if (choice < 92) {  // truncate(path)
      if (writer >= 0) return;
      uint64_t size = PickSize();
      Expect("truncate " + key, Ask(Pick(kAgents), "truncate " + key + " " + std::to_string(size)),
             current ? "" : "ENOENT");
      if (current) {
        Bytes cut = *current;
        cut.resize(size);
        Commit(key, cut);
      }
    } else if (choice < 96) {  // fsync an open writer: commits what it has
      int id = PickWriter();
      if (id < 0) return;
      Handle& h = handles_.at(id);
      Expect("fsync of writer on " + h.key, Ask(h.agent, "fsync " + std::to_string(id)), "");
      Commit(h.key, h.bytes);
    } else if (choice < 99) {  // list a directory
      std::string dir = Pick(2) == 0 ? "." : "sub";
      std::string want = "ok";
      std::set<std::string> names;
      for (const auto& [k, bytes] : committed_) {
        std::string prefix = dir == "." ? "" : dir + "/";
        if (k.rfind(prefix, 0) == 0 && k.find('/', prefix.size()) == std::string::npos) names.insert(k.substr(prefix.size()));
      }
      if (dir == ".") names.insert("sub");
      for (const std::string& n : names) want += " " + n;
      std::string got = Ask(Pick(kAgents), "list " + dir);
      if (got != want) Fail("list " + dir, "got '" + got + "', want '" + want + "'");
    } else {  // close everything and remount: the committed state survives
      std::vector<int> ids;
      for (const auto& [id, h] : handles_) ids.push_back(id);
      for (int id : ids) CloseHandle(id);
      log_.push_back("remount");
      std::string e = Unmount();
      if (e.empty()) e = Mount();
      if (!e.empty()) Fail("remount", e);
      for (const auto& [k, bytes] : committed_) {
        Expect("get " + k + " after remount", Ask(Pick(kAgents), "get " + k), "", &bytes);
      }
    }
  }

  // Runs `steps` random steps with `seed`; "" or the first mismatch.
  std::string Run(uint64_t seed, int steps) {
    seed_ = seed;
    rng_.seed(seed);
    for (step_ = 0; step_ < steps && failure_.empty(); ++step_) Step();
    // Finally every committed key reads back right from every agent.
    std::vector<int> ids;
    for (const auto& [id, h] : handles_) ids.push_back(id);
    for (int id : ids) CloseHandle(id);
    for (const auto& [k, bytes] : committed_) {
      for (int a = 0; a < kAgents; ++a) Expect("final get " + k, Ask(a, "get " + k), "", &bytes);
    }
    return failure_;
  }

  std::vector<std::unique_ptr<ChildProcess>> agents_;
  std::mt19937_64 rng_;
  uint64_t seed_ = 0;
  int step_ = 0;
  int next_id_ = 1;
  std::map<std::string, Bytes> committed_;
  std::map<std::string, uint64_t> versions_;  // the version each committed key holds
  uint64_t next_version_ = 1;
  std::map<int, Handle> handles_;
  std::vector<std::string> log_;
  std::string failure_;
};

TEST_F(ModelTest, RandomOperationsMatchTheContract) {
  ASSERT_EQ(mkdir(P("sub").c_str(), 0755), 0) << ErrnoMessage("mkdir sub");
  StartAgents();
  std::vector<uint64_t> seeds = {1, 2, 3};
  if (const char* s = std::getenv("KVFS_MODEL_SEED")) seeds = {std::strtoull(s, nullptr, 10)};
  int steps = 250;
  if (const char* s = std::getenv("KVFS_MODEL_STEPS")) steps = std::atoi(s);
  for (uint64_t seed : seeds) {
    // Each seed starts from an empty root (sub stays).
    for (const auto& [k, bytes] : committed_) Ask(0, "unlink " + k);
    committed_.clear();
    versions_.clear();
    std::string failure = Run(seed, steps);
    ASSERT_EQ(failure, "") << "reproduce with KVFS_MODEL_SEED=" << seed << " KVFS_MODEL_STEPS=" << steps;
  }
}

}  // namespace
}  // namespace kvfs::mounted_test
