// Directory listings cached by the kernel (the default): every listing taken
// after a change shows it, whether the kernel made the change itself
// (rename, unlink by another process) or learned of it from kvfs (a commit
// at close, an eviction). Each listing runs in a separate process, as an
// engine's existence scan would.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class ListingCacheTest : public MountedTest {
 protected:
  // The names in dir, sorted and joined by spaces, as another process lists them.
  std::string ListFromChild(const std::string& dir) {
    ChildOutcome out = RunInChild([&] {
      std::vector<std::string> names;
      std::string err = ListDir(dir, &names);
      if (!err.empty()) return "error: " + err;
      std::sort(names.begin(), names.end());
      std::string joined;
      for (const std::string& n : names) joined += (joined.empty() ? "" : " ") + n;
      return joined;
    });
    return out.exited && out.exit_code == 0 ? out.result : "child failed: " + out.Summary();
  }
};

TEST_F(ListingCacheTest, ListingCachedBeforeACommitShowsTheKeyRightAfterClose) {
  const std::string dir = P("pages");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << ErrnoMessage("mkdir");
  ASSERT_EQ(WriteFile(dir + "/a", MakeData(1, 4096)), "");
  // Listed twice: the second listing may come from the kernel's cache.
  EXPECT_EQ(ListFromChild(dir), "a");
  EXPECT_EQ(ListFromChild(dir), "a");

  Fd fd(open((dir + "/b").c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoMessage("open");
  std::vector<uint8_t> data = MakeData(2, 3 * kMiB + 5);
  ASSERT_EQ(write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(ListFromChild(dir), "a") << "a key being written is listed before its commit";
  EXPECT_EQ(ListFromChild(dir), "a");
  ASSERT_EQ(fd.Close(), 0) << ErrnoMessage("close");
  EXPECT_EQ(ListFromChild(dir), "a b") << "the committed key is missing from a listing taken after close()";
}

// kvfs drops a directory's cached listing only when it was listed since the
// last drop: commits in between cost nothing, and a listing taken after them
// (here, while a key is being written) is cached and dropped again at that
// key's commit.
TEST_F(ListingCacheTest, EveryListingAfterACommitShowsItThroughRoundsOfCommits) {
  const std::string dir = P("rounds");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << ErrnoMessage("mkdir");
  std::string expected;
  auto add = [&](const std::string& name) { expected += (expected.empty() ? "" : " ") + name; };
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    for (int k = 0; k < 2; ++k) {  // commits with no listing between them
      const std::string name = "r" + std::to_string(round) + "k" + std::to_string(k);
      ASSERT_EQ(WriteFile(dir + "/" + name, MakeData(round * 10 + k, 100)), "");
      add(name);
    }
    const std::string name = "r" + std::to_string(round) + "w";
    Fd fd(open((dir + "/" + name).c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("open");
    ASSERT_EQ(write(fd.get(), "x", 1), 1);
    EXPECT_EQ(ListFromChild(dir), expected) << "listed while " << name << " is written";
    ASSERT_EQ(fd.Close(), 0) << ErrnoMessage("close");
    add(name);
    EXPECT_EQ(ListFromChild(dir), expected) << name << " is missing from a listing taken after its close()";
  }
}

TEST_F(ListingCacheTest, RenameAndUnlinkByAnotherProcessShowInTheNextListing) {
  const std::string dir = P("d");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << ErrnoMessage("mkdir");
  for (const char* n : {"x", "y", "z"}) ASSERT_EQ(WriteFile(dir + "/" + n, MakeData(3, 8192)), "");
  EXPECT_EQ(ListFromChild(dir), "x y z");
  EXPECT_EQ(ListFromChild(dir), "x y z");
  ASSERT_EQ(RunInChild([&] {
              return rename((dir + "/x").c_str(), (dir + "/w").c_str()) == 0 ? "ok" : ErrnoMessage("rename");
            }).Summary(),
            "ok");
  EXPECT_EQ(ListFromChild(dir), "w y z");
  ASSERT_EQ(RunInChild([&] { return unlink((dir + "/y").c_str()) == 0 ? "ok" : ErrnoMessage("unlink"); }).Summary(),
            "ok");
  EXPECT_EQ(ListFromChild(dir), "w z");
  // A temp file renamed over an existing key (SGLang's pattern).
  ASSERT_EQ(WriteFile(dir + "/z.tmp", MakeData(4, 8192)), "");
  EXPECT_EQ(ListFromChild(dir), "w z z.tmp");
  ASSERT_EQ(rename((dir + "/z.tmp").c_str(), (dir + "/z").c_str()), 0) << ErrnoMessage("rename");
  EXPECT_EQ(ListFromChild(dir), "w z");
  EXPECT_EQ(CheckFile(dir + "/z", MakeData(4, 8192)), "");
}

// A listing longer than the first READDIRPLUS reply holds (kvfs answers the
// kernel's speculative one at offset 0 with about 200 entries; the rest come
// in plain READDIRs): every name is listed once, and a stat of each entry
// afterwards (ls -l) gives its own size, in a fresh process and again once
// a commit dropped the cached listing.
TEST_F(ListingCacheTest, LongListingIsCompleteAndItsEntriesStatRight) {
  const std::string dir = P("long");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << ErrnoMessage("mkdir");
  constexpr int kEntries = 1500;
  auto name_of = [](int i) { return "page-" + std::to_string(100000 + i); };
  for (int i = 0; i < kEntries; ++i) ASSERT_EQ(WriteFile(dir + "/" + name_of(i), MakeData(i, i % 97)), "");
  auto list_and_stat = [&](int entries) {
    ChildOutcome out = RunInChild([&]() -> std::string {
      std::vector<std::string> names;
      std::string err = ListDir(dir, &names);
      if (!err.empty()) return err;
      std::sort(names.begin(), names.end());
      if (names.size() != static_cast<size_t>(entries)) {
        return "listed " + std::to_string(names.size()) + " names, want " + std::to_string(entries);
      }
      for (int i = 0; i < entries; ++i) {
        if (names[i] != name_of(i)) return "name " + std::to_string(i) + " is " + names[i];
        struct stat st {};
        if (stat((dir + "/" + names[i]).c_str(), &st) != 0) return ErrnoMessage("stat " + names[i]);
        if (st.st_size != i % 97) return names[i] + " has size " + std::to_string(st.st_size);
      }
      return "ok";
    });
    return out.Summary();
  };
  EXPECT_EQ(list_and_stat(kEntries), "ok");
  EXPECT_EQ(list_and_stat(kEntries), "ok") << "from the cached listing";
  ASSERT_EQ(WriteFile(dir + "/" + name_of(kEntries), MakeData(kEntries, kEntries % 97)), "");
  EXPECT_EQ(list_and_stat(kEntries + 1), "ok") << "after a commit";
}

// A small capacity: writing more than fits evicts older keys, which the
// kernel learns of only from kvfs.
class ListingCacheEvictionTest : public ListingCacheTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--capacity", "24M", "--min-free", "0"}; }
};

TEST_F(ListingCacheEvictionTest, EvictedKeysLeaveTheCachedListing) {
  const std::string dir = P("e");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << ErrnoMessage("mkdir");
  std::vector<uint8_t> data = MakeData(5, 4 * kMiB);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(WriteFile(dir + "/k" + std::to_string(i), data), "");
  EXPECT_EQ(ListFromChild(dir), "k0 k1 k2");
  EXPECT_EQ(ListFromChild(dir), "k0 k1 k2");
  for (int i = 3; i < 12; ++i) ASSERT_EQ(WriteFile(dir + "/k" + std::to_string(i), data), "");
  std::string listed = ListFromChild(dir);
  // Every listed name exists, and every existing name is listed.
  std::vector<std::string> want;
  for (int i = 0; i < 12; ++i) {
    std::string n = "k" + std::to_string(i);
    if (StatErrno(dir + "/" + n) == 0) want.push_back(n);
  }
  std::sort(want.begin(), want.end());
  std::string joined;
  for (const std::string& n : want) joined += (joined.empty() ? "" : " ") + n;
  EXPECT_LT(want.size(), 12u) << "nothing was evicted: the test needs a smaller capacity";
  EXPECT_EQ(listed, joined) << "the listing disagrees with stat after evictions";
}

}  // namespace
}  // namespace kvfs::mounted_test
