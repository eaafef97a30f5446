// Many processes at once: concurrent writers and readers on different keys,
// and a directory with 100,000 entries created in parallel and listed.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class ConcurrencyTest : public MountedTest {};
class ReaddirTest : public MountedTest {};

constexpr int kWriters = 4;
const std::vector<size_t>& ObjectSizes() {
  static const std::vector<size_t> sizes = {0, 1, 4097, 300000, kMiB + 7, 8 * kMiB + 13};
  return sizes;
}

uint64_t Seed(int process, size_t object) { return 7000 + static_cast<uint64_t>(process) * 100 + object; }

std::string OwnPath(const std::string& mnt, int process, size_t object) {
  return mnt + "/p" + std::to_string(process) + "/obj" + std::to_string(object);
}

std::string SharedPath(const std::string& mnt, int process, size_t object) {
  return mnt + "/shared/p" + std::to_string(process) + "_" + std::to_string(object);
}

TEST_F(ConcurrencyTest, FourProcessesWriteAndReadDifferentKeys) {
  ASSERT_EQ(mkdir(P("shared").c_str(), 0755), 0);
  const std::string m = mnt();
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int p = 0; p < kWriters; ++p) {
    children.push_back(std::make_unique<ChildProcess>([p, m](Channel& ch) -> std::string {
      const std::string own_dir = m + "/p" + std::to_string(p);
      if (mkdir(own_dir.c_str(), 0755) != 0) return ErrnoMessage("mkdir " + own_dir);
      // Phase 1: write (odd processes with O_DIRECT), interleaving own and
      // shared directories.
      for (size_t i = 0; i < ObjectSizes().size(); ++i) {
        const auto data = MakeData(Seed(p, i), ObjectSizes()[i]);
        std::string err = (p % 2 == 0) ? WriteFile(OwnPath(m, p, i), data, 65536 + p)
                                       : WriteFileDirect(OwnPath(m, p, i), data);
        if (err.empty()) err = WriteFile(SharedPath(m, p, i), data, 131072 - p);
        if (!err.empty()) return err;
        // Read our own object right back while the others keep writing.
        err = CheckFile(OwnPath(m, p, i), data);
        if (!err.empty()) return "immediate read-back: " + err;
      }
      ch.Send("written");
      if (auto e = ch.Expect("read"); !e.empty()) return e;
      // Phase 2: everyone reads everything, concurrently.
      for (int q = 0; q < kWriters; ++q) {
        for (size_t i = 0; i < ObjectSizes().size(); ++i) {
          const auto data = MakeData(Seed(q, i), ObjectSizes()[i]);
          std::string err = ((p + q) % 2 == 0) ? CheckFile(OwnPath(m, q, i), data)
                                               : CheckFileDirect(OwnPath(m, q, i), data);
          if (err.empty()) err = CheckFile(SharedPath(m, q, i), data);
          if (!err.empty()) return "process " + std::to_string(p) + ": " + err;
        }
      }
      return "ok";
    }));
  }
  for (auto& c : children) ASSERT_EQ(c->channel().Expect("written"), "");
  for (auto& c : children) c->channel().Send("read");
  for (int p = 0; p < kWriters; ++p) EXPECT_EQ(children[p]->Wait().Summary(), "ok") << "process " << p;

  std::vector<std::string> names;
  ASSERT_EQ(ListDir(P("shared"), &names), "");
  EXPECT_EQ(names.size(), kWriters * ObjectSizes().size());
}

TEST_F(ConcurrencyTest, ConcurrentWritersOfTheSameKeyNeverMix) {
  // Several processes replace one key at once; the result is always exactly
  // one writer's bytes.
  const std::string key = P("contended");
  constexpr int kProcs = 4;
  constexpr int kRounds = 5;
  std::vector<std::vector<uint8_t>> candidates;
  for (int p = 0; p < kProcs; ++p) {
    for (int r = 0; r < kRounds; ++r) candidates.push_back(MakeData(9000 + p * 10 + r, kMiB + 512 * p));
  }
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int p = 0; p < kProcs; ++p) {
    children.push_back(std::make_unique<ChildProcess>([&, p](Channel& ch) -> std::string {
      if (auto e = ch.Expect("go"); !e.empty()) return e;
      for (int r = 0; r < kRounds; ++r) {
        std::string err = WriteFile(key, candidates[p * kRounds + r], 100000);
        if (!err.empty()) return err;
        std::vector<uint8_t> got;
        err = ReadFile(key, &got);
        if (!err.empty()) return err;
        bool known = false;
        for (const auto& c : candidates) known = known || got == c;
        if (!known) return "read a mix of writers' bytes, size " + std::to_string(got.size());
      }
      return "ok";
    }));
  }
  for (auto& c : children) c->channel().Send("go");
  for (auto& c : children) EXPECT_EQ(c->Wait().Summary(), "ok");
  std::vector<uint8_t> got;
  ASSERT_EQ(ReadFile(key, &got), "");
  bool known = false;
  for (const auto& c : candidates) known = known || got == c;
  EXPECT_TRUE(known) << "final content is not any single writer's bytes";
}

TEST_F(ReaddirTest, HundredThousandEntries) {
  constexpr int kEntries = 100000;
  constexpr int kCreators = 4;
  ASSERT_EQ(mkdir(P("big").c_str(), 0755), 0);
  const std::string dir = P("big");
  auto name_of = [](int i) {
    char buf[32];
    snprintf(buf, sizeof buf, "kv-%06d", i);
    return std::string(buf);
  };

  auto start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<ChildProcess>> creators;
  for (int c = 0; c < kCreators; ++c) {
    creators.push_back(std::make_unique<ChildProcess>([&, c](Channel&) -> std::string {
      for (int i = c; i < kEntries; i += kCreators) {
        const std::string path = dir + "/" + name_of(i);
        const auto data = MakeData(static_cast<uint64_t>(i), static_cast<size_t>(i % 17));
        Fd fd(open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644));
        if (!fd.valid()) return ErrnoMessage("create " + path);
        if (!data.empty() && write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
          return ErrnoMessage("write " + path);
        }
        if (fd.Close() != 0) return ErrnoMessage("close " + path);
      }
      return "ok";
    }));
  }
  for (auto& c : creators) ASSERT_EQ(c->Wait(540 * 1000).Summary(), "ok");
  auto created = std::chrono::steady_clock::now();

  // List from a fresh process: exactly the 100,000 names, each once.
  ChildOutcome lister = RunInChild(
      [&]() -> std::string {
        DIR* d = opendir(dir.c_str());
        if (d == nullptr) return ErrnoMessage("opendir");
        std::set<std::string> seen;
        std::vector<std::string> duplicates, unexpected;
        size_t wrong_type = 0;
        for (;;) {
          errno = 0;
          dirent* e = readdir(d);
          if (e == nullptr) {
            if (errno != 0) {
              std::string err = ErrnoMessage("readdir after " + std::to_string(seen.size()) + " names");
              closedir(d);
              return err;
            }
            break;
          }
          std::string name = e->d_name;
          if (name == "." || name == "..") continue;
          if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) ++wrong_type;
          if (!seen.insert(name).second && duplicates.size() < 5) duplicates.push_back(name);
          if ((name.size() != 9 || name.rfind("kv-", 0) != 0) && unexpected.size() < 5) unexpected.push_back(name);
        }
        closedir(d);
        std::string err;
        if (!duplicates.empty()) err += "duplicates, e.g. " + duplicates[0] + "; ";
        if (!unexpected.empty()) err += "unexpected names, e.g. " + unexpected[0] + "; ";
        if (wrong_type > 0) err += std::to_string(wrong_type) + " entries with d_type != DT_REG; ";
        size_t missing = 0;
        std::string first_missing;
        for (int i = 0; i < kEntries; ++i) {
          if (seen.count(name_of(i)) == 0 && missing++ == 0) first_missing = name_of(i);
        }
        if (missing > 0) err += std::to_string(missing) + " names missing, e.g. " + first_missing + "; ";
        if (seen.size() != static_cast<size_t>(kEntries)) {
          err += "listed " + std::to_string(seen.size()) + " distinct names, expected " + std::to_string(kEntries);
        }
        // A sample of the files is byte-exact.
        for (int i = 0; err.empty() && i < kEntries; i += 997) {
          err = CheckFile(dir + "/" + name_of(i), MakeData(static_cast<uint64_t>(i), static_cast<size_t>(i % 17)));
        }
        return err.empty() ? "ok" : err;
      },
      300 * 1000);
  EXPECT_EQ(lister.Summary(), "ok");
  auto listed = std::chrono::steady_clock::now();
  auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
  printf("[ timing   ] created %d files from %d processes in %.1f s, listed in %.1f s\n", kEntries, kCreators,
         secs(created - start), secs(listed - created));
  RecordProperty("create_seconds", std::to_string(secs(created - start)));
  RecordProperty("list_seconds", std::to_string(secs(listed - created)));
}

}  // namespace
}  // namespace kvfs::mounted_test
