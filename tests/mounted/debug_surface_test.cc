// The operator's debugging surface: user.kvfs.* extended attributes
// (getfattr), `kvfs stats` (text and --json), and multi-store placement.

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class XattrTest : public MountedTest {};
class StatsTest : public MountedTest {};
class MultiStoreTest : public MountedTest {
 protected:
  std::vector<std::string> StoreNames() const override { return {"store-a", "store-b"}; }
};

const std::vector<std::string>& KvfsXattrs() {
  static const std::vector<std::string> names = {"user.kvfs.key_hash", "user.kvfs.store",
                                                 "user.kvfs.location", "user.kvfs.version",
                                                 "user.kvfs.open_handles", "user.kvfs.checksum"};
  return names;
}

// Attribute names of path, or an error in *error.
std::vector<std::string> ListXattrs(const std::string& path, std::string* error) {
  std::vector<std::string> names;
  ssize_t size = listxattr(path.c_str(), nullptr, 0);
  if (size < 0) {
    *error = ErrnoMessage("listxattr(" + path + ", size query)");
    return names;
  }
  std::string buf(static_cast<size_t>(size), '\0');
  ssize_t got = listxattr(path.c_str(), buf.data(), buf.size());
  if (got < 0) {
    *error = ErrnoMessage("listxattr(" + path + ")");
    return names;
  }
  buf.resize(static_cast<size_t>(got));
  size_t start = 0;
  while (start < buf.size()) {
    size_t end = buf.find('\0', start);
    if (end == std::string::npos) end = buf.size();
    names.push_back(buf.substr(start, end - start));
    start = end + 1;
  }
  return names;
}

// The value of an attribute with trailing NULs/newlines removed, or
// "<ERRNAME>" when getxattr fails.
std::string GetXattr(const std::string& path, const std::string& name) {
  ssize_t size = getxattr(path.c_str(), name.c_str(), nullptr, 0);
  if (size < 0) return "<" + ErrnoName(errno) + ">";
  std::string value(static_cast<size_t>(size), '\0');
  ssize_t got = getxattr(path.c_str(), name.c_str(), value.data(), value.size());
  if (got < 0) return "<" + ErrnoName(errno) + ">";
  value.resize(static_cast<size_t>(got));
  while (!value.empty() && (value.back() == '\0' || value.back() == '\n')) value.pop_back();
  return value;
}

TEST_F(XattrTest, AllKvfsAttributesAreListedAndReadable) {
  const std::string path = P("chunk");
  ASSERT_EQ(WriteFile(path, MakeData(1, kMiB + 5)), "");
  std::string error;
  auto names = ListXattrs(path, &error);
  ASSERT_EQ(error, "");
  for (const auto& want : KvfsXattrs()) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want << " missing from listxattr";
    std::string value = GetXattr(path, want);
    EXPECT_FALSE(value.empty()) << want;
    EXPECT_NE(value[0], '<') << want << " -> " << value;
  }
  EXPECT_EQ(GetXattr(path, "user.kvfs.no_such_attribute"), "<ENODATA>");
  EXPECT_EQ(GetXattr(path, "user.kvfs.open_handles"), "0");

  // getfattr, the way an operator runs it.
  CommandResult r = RunCommand({"/usr/bin/getfattr", "-d", "-m", "-", path});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  for (const auto& want : KvfsXattrs()) EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
}

TEST_F(XattrTest, OtherNamespacesAreNotSupported) {
  // kvfs keeps attributes only under user.: any other namespace answers as
  // one the filesystem does not serve, so that `ls -l` (security.selinux,
  // system.posix_acl_access) asks once per device instead of once per entry.
  const std::string path = P("plain");
  ASSERT_EQ(WriteFile(path, MakeData(3, 4096)), "");
  for (const std::string& p : {path, P("")}) {
    EXPECT_EQ(GetXattr(p, "security.selinux"), "<EOPNOTSUPP>") << p;
    EXPECT_EQ(GetXattr(p, "system.posix_acl_access"), "<EOPNOTSUPP>") << p;
    EXPECT_EQ(GetXattr(p, "system.posix_acl_default"), "<EOPNOTSUPP>") << p;
    EXPECT_EQ(GetXattr(p, "trusted.kvfs.key"), "<EOPNOTSUPP>") << p;
    EXPECT_EQ(GetXattr(p, "user.no_such_attribute"), "<ENODATA>") << p;
  }
  // The debugging attributes still answer after those refusals (the kernel
  // did not conclude that the filesystem has no attributes at all).
  EXPECT_EQ(GetXattr(path, "user.kvfs.key"), "plain");
  CommandResult r = RunCommand({"/bin/ls", "-l", P("")});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find(" plain"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "") << r.Describe();
}

TEST_F(XattrTest, OpenHandlesCountsOpenFiles) {
  const std::string path = P("held");
  ASSERT_EQ(WriteFile(path, MakeData(2, 8192)), "");
  // A handle counts until its RELEASE, which the kernel sends after close()
  // has returned.
  auto count_becomes = [&](const std::string& want) {
    std::string seen;
    bool ok = PollUntil([&] { return (seen = GetXattr(path, "user.kvfs.open_handles")) == want; }, 10000);
    return ok ? want : seen;
  };
  EXPECT_EQ(count_becomes("0"), "0") << "the writer's handle was never released";
  {
    Fd fd(open(path.c_str(), O_RDONLY));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("open");
    EXPECT_EQ(GetXattr(path, "user.kvfs.open_handles"), "1");
    // Another process sees the same count.
    EXPECT_EQ(RunInChild([&] { return GetXattr(path, "user.kvfs.open_handles"); }).Summary(), "1");
    // A child holding a second handle makes it 2.
    ChildProcess holder([&](Channel& ch) -> std::string {
      Fd fd2(open(path.c_str(), O_RDONLY));
      if (!fd2.valid()) return ErrnoMessage("open");
      ch.Send("open");
      return ch.Expect("close").empty() ? "ok" : "no close message";
    });
    ASSERT_EQ(holder.channel().Expect("open"), "");
    EXPECT_EQ(GetXattr(path, "user.kvfs.open_handles"), "2");
    holder.channel().Send("close");
    EXPECT_EQ(holder.Wait().Summary(), "ok");
    EXPECT_EQ(count_becomes("1"), "1");
  }
  EXPECT_EQ(count_becomes("0"), "0");
}

TEST_F(XattrTest, ValuesTrackVersionsAndSurviveRemount) {
  const std::string path = P("dir/versioned");
  ASSERT_EQ(mkdir(P("dir").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(path, MakeData(3, 100000)), "");
  const std::string hash1 = GetXattr(path, "user.kvfs.key_hash");
  const std::string version1 = GetXattr(path, "user.kvfs.version");
  const std::string checksum1 = GetXattr(path, "user.kvfs.checksum");
  const std::string store1 = GetXattr(path, "user.kvfs.store");
  ASSERT_EQ(WriteFile(path, MakeData(4, 100000)), "");
  EXPECT_EQ(GetXattr(path, "user.kvfs.key_hash"), hash1) << "the key did not change";
  EXPECT_NE(GetXattr(path, "user.kvfs.version"), version1) << "an overwrite is a new version";
  EXPECT_NE(GetXattr(path, "user.kvfs.checksum"), checksum1) << "different bytes, same checksum";
  const std::string version2 = GetXattr(path, "user.kvfs.version");
  const std::string checksum2 = GetXattr(path, "user.kvfs.checksum");

  // Another key has another hash.
  ASSERT_EQ(WriteFile(P("dir/copy"), MakeData(4, 100000)), "");
  EXPECT_NE(GetXattr(P("dir/copy"), "user.kvfs.key_hash"), hash1);

  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(GetXattr(path, "user.kvfs.key_hash"), hash1) << "key hash must be stable across restarts";
  EXPECT_EQ(GetXattr(path, "user.kvfs.checksum"), checksum2);
  EXPECT_EQ(GetXattr(path, "user.kvfs.version"), version2);
  EXPECT_EQ(GetXattr(path, "user.kvfs.store"), store1);

  // A rename moves the key, so its hash changes.
  ASSERT_EQ(rename(path.c_str(), P("dir/renamed").c_str()), 0);
  EXPECT_NE(GetXattr(P("dir/renamed"), "user.kvfs.key_hash"), hash1);
  EXPECT_EQ(GetXattr(P("dir/renamed"), "user.kvfs.checksum"), checksum2);
}

// Reads a numeric member, failing the test when it is missing.
uint64_t Num(const JsonValue& object, const char* key) {
  const JsonValue* v = object.Find(key);
  EXPECT_NE(v, nullptr) << "stats JSON lacks " << key;
  if (v == nullptr) return 0;
  EXPECT_TRUE(v->IsNumber()) << key << " is not a number";
  return v->AsU64();
}

TEST_F(StatsTest, JsonHasTheContractKeysAndCountsGoUp) {
  JsonValue before;
  ASSERT_NO_FATAL_FAILURE(Stats(&before));
  for (const char* key : {"capacity_bytes", "used_bytes", "objects", "reads", "read_bytes", "writes",
                          "write_bytes", "pool_hits", "pool_misses", "commits"}) {
    Num(before, key);
  }
  EXPECT_GT(Num(before, "capacity_bytes"), 0u);
  const JsonValue* stores = before.Find("stores");
  ASSERT_NE(stores, nullptr) << "stats JSON lacks stores";
  ASSERT_EQ(stores->type, JsonValue::Type::kArray);
  ASSERT_EQ(stores->items.size(), 1u);
  const JsonValue& store = stores->items[0];
  ASSERT_NE(store.Find("name"), nullptr);
  EXPECT_EQ(store.Find("name")->type, JsonValue::Type::kString);
  Num(store, "objects");
  Num(store, "used_bytes");

  const std::vector<size_t> sizes = {kMiB, 2 * kMiB, 10};
  uint64_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(WriteFile(P("obj" + std::to_string(i)), MakeData(i, sizes[i])), "");
    total += sizes[i];
  }
  JsonValue after;
  ASSERT_NO_FATAL_FAILURE(Stats(&after));
  EXPECT_EQ(Num(after, "objects"), Num(before, "objects") + 3);
  EXPECT_GE(Num(after, "used_bytes"), Num(before, "used_bytes") + total);
  EXPECT_GT(Num(after, "writes"), Num(before, "writes"));
  EXPECT_GE(Num(after, "write_bytes"), Num(before, "write_bytes") + total);
  EXPECT_GE(Num(after, "commits"), Num(before, "commits") + 3);
  EXPECT_EQ(Num(after.Find("stores")->items.at(0), "objects"), Num(store, "objects") + 3);
  EXPECT_GE(Num(after.Find("stores")->items.at(0), "used_bytes"), Num(store, "used_bytes") + total);

  // Reads (O_DIRECT from another process, so the page cache cannot absorb
  // them) show up in reads, read_bytes and the pool counters.
  EXPECT_EQ(RunInChild([this] {
              std::string e = CheckFileDirect(P("obj1"), MakeData(1, 2 * kMiB));
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  JsonValue read;
  ASSERT_NO_FATAL_FAILURE(Stats(&read));
  EXPECT_GT(Num(read, "reads"), Num(after, "reads"));
  EXPECT_GE(Num(read, "read_bytes"), Num(after, "read_bytes") + 2 * kMiB);
  EXPECT_GT(Num(read, "pool_hits") + Num(read, "pool_misses"), Num(after, "pool_hits") + Num(after, "pool_misses"));

  // Unlink gives the object and its bytes back.
  ASSERT_EQ(unlink(P("obj1").c_str()), 0);
  JsonValue unlinked;
  ASSERT_NO_FATAL_FAILURE(Stats(&unlinked));
  EXPECT_EQ(Num(unlinked, "objects"), Num(after, "objects") - 1);
  EXPECT_LE(Num(unlinked, "used_bytes"), Num(after, "used_bytes") - 2 * kMiB);
}

TEST_F(StatsTest, TextOutputAndErrors) {
  CommandResult text = RunCommand({kvfs_binary(), "stats", mnt()});
  EXPECT_EQ(text.exit_code, 0) << text.Describe();
  EXPECT_FALSE(text.out.empty());

  // Not a kvfs mount.
  CommandResult bad = RunCommand({kvfs_binary(), "stats", root(), "--json"});
  EXPECT_NE(bad.exit_code, 0) << bad.Describe();
  EXPECT_FALSE(bad.err.empty()) << bad.Describe();
}

int CountRegularFiles(const std::string& dir) {
  static int count;
  count = 0;
  nftw(
      dir.c_str(),
      [](const char*, const struct stat* st, int type, struct FTW*) {
        if (type == FTW_F && S_ISREG(st->st_mode)) ++count;
        return 0;
      },
      16, FTW_PHYS);
  return count;
}

TEST_F(MultiStoreTest, KeysSpreadOverStoresAndSurviveRemount) {
  constexpr int kKeys = 40;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(WriteFile(P("k" + std::to_string(i)), MakeData(500 + i, 10000 + 4096 * i)), "");
  }
  JsonValue stats;
  ASSERT_NO_FATAL_FAILURE(Stats(&stats));
  EXPECT_EQ(Num(stats, "objects"), static_cast<uint64_t>(kKeys));
  const JsonValue* stores = stats.Find("stores");
  ASSERT_NE(stores, nullptr);
  ASSERT_EQ(stores->items.size(), 2u);
  uint64_t sum = 0;
  for (const auto& s : stores->items) {
    EXPECT_GT(Num(s, "objects"), 0u) << "40 keys all landed on one store";
    sum += Num(s, "objects");
  }
  EXPECT_EQ(sum, static_cast<uint64_t>(kKeys));

  std::set<std::string> store_values;
  for (int i = 0; i < kKeys; ++i) store_values.insert(GetXattr(P("k" + std::to_string(i)), "user.kvfs.store"));
  EXPECT_EQ(store_values.size(), 2u);
  EXPECT_GT(CountRegularFiles(store_path(0)), 0);
  EXPECT_GT(CountRegularFiles(store_path(1)), 0);

  std::vector<std::string> placement;
  for (int i = 0; i < kKeys; ++i) placement.push_back(GetXattr(P("k" + std::to_string(i)), "user.kvfs.store"));
  ASSERT_NO_FATAL_FAILURE(Remount());
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(CheckFile(P("k" + std::to_string(i)), MakeData(500 + i, 10000 + 4096 * i)), "");
    EXPECT_EQ(GetXattr(P("k" + std::to_string(i)), "user.kvfs.store"), placement[i]) << "placement moved";
  }
}

}  // namespace
}  // namespace kvfs::mounted_test
