// Integrity on a real mount: damage done to a store behind kvfs's back is
// never served as data.
//  - A flipped data byte (while mounted, for an object nobody has open, or
//    while unmounted): reading the object fails with EIO, every byte the
//    reader did get before the failure is right, the key then disappears
//    (ENOENT, gone from readdir), its file is in the store's quarantine/ and
//    `kvfs stats` counts it; other objects read fine.
//  - A corrupt header or a truncated object file: after a remount the object
//    is skipped (not listed, ENOENT) and the mount works.
//  - Staging leftovers are removed at mount.
//  - `kvfs fsck` on the unmounted store reports each problem with exit 1;
//    `--repair` fixes them and the next fsck exits 0. On a mounted store it
//    cannot check (exit 2).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

constexpr size_t kKiB = 1024;

// Entries of a directory on the store (not on the mount); empty if missing.
std::vector<std::string> StoreDirEntries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
  }
  closedir(d);
  return names;
}

// "" or the error: flips one byte of a file on the store (and syncs it).
std::string FlipByte(const std::string& path, off_t offset) {
  Fd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return ErrnoMessage("open " + path);
  uint8_t b = 0;
  if (pread(fd.get(), &b, 1, offset) != 1) return ErrnoMessage("pread " + path);
  b ^= 0x21;
  if (pwrite(fd.get(), &b, 1, offset) != 1) return ErrnoMessage("pwrite " + path);
  if (fsync(fd.get()) != 0) return ErrnoMessage("fsync " + path);
  return "";
}

// How a whole-file read through the mount ended.
struct ReadOutcome {
  int open_err = 0;       // errno of open(), 0 if it opened
  int read_err = 0;       // errno of the failing read(), 0 if it reached EOF
  std::vector<uint8_t> got;  // the bytes read before EOF or the failure
};

ReadOutcome ReadThrough(const std::string& path, size_t chunk, bool direct) {
  ReadOutcome r;
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0)));
  if (!fd.valid()) {
    r.open_err = errno;
    return r;
  }
  AlignedBuffer buf(chunk);
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      r.read_err = errno;
      break;
    }
    if (n == 0) break;
    r.got.insert(r.got.end(), buf.data(), buf.data() + n);
  }
  return r;
}

class IntegrityTest : public MountedTest {
 protected:
  struct Obj {
    std::string key;
    size_t size;
    uint64_t seed;
  };

  static const std::vector<Obj>& Objects() {
    static const std::vector<Obj> objs = {
        {"victim", 3 * kMiB + 1000, 101}, {"other-a", kMiB, 102}, {"other-b", 5000, 103},
        {"dir/other-c", 700 * kKiB, 104}, {"header-victim", 400 * kKiB, 105}, {"short-victim", 2 * kMiB, 106},
    };
    return objs;
  }
  static const Obj& ObjByKey(const std::string& key) {
    for (const Obj& o : Objects()) {
      if (o.key == key) return o;
    }
    throw std::runtime_error("no object " + key);
  }

  void WriteAll() {
    ASSERT_EQ(mkdir(P("dir").c_str(), 0755), 0) << ErrnoMessage("mkdir dir");
    for (const Obj& o : Objects()) ASSERT_EQ(WriteFile(P(o.key), MakeData(o.seed, o.size)), "") << o.key;
  }

  // The object file of a key on the store, from its user.kvfs.location.
  std::string ObjectFile(const std::string& key) {
    char buf[512];
    ssize_t n = getxattr(P(key).c_str(), "user.kvfs.location", buf, sizeof(buf) - 1);
    if (n <= 0) {
      ADD_FAILURE() << ErrnoMessage("getxattr user.kvfs.location of " + key);
      return "";
    }
    return store_path() + "/" + std::string(buf, static_cast<size_t>(n));
  }

  // Checks that every listed key reads back right (buffered and O_DIRECT).
  void ExpectIntact(const std::vector<std::string>& keys) {
    for (const std::string& key : keys) {
      const Obj& o = ObjByKey(key);
      EXPECT_EQ(CheckFile(P(key), MakeData(o.seed, o.size)), "") << key;
      EXPECT_EQ(CheckFileDirect(P(key), MakeData(o.seed, o.size)), "") << key;
    }
  }

  // The key is gone: stat says ENOENT and its directory does not list it.
  void ExpectGone(const std::string& key) {
    EXPECT_EQ(ErrnoName(StatErrno(P(key))), "ENOENT") << key;
    std::string dir = key.find('/') == std::string::npos ? "" : key.substr(0, key.rfind('/'));
    std::string name = key.substr(key.rfind('/') == std::string::npos ? 0 : key.rfind('/') + 1);
    std::vector<std::string> names;
    ASSERT_EQ(ListDir(dir.empty() ? mnt() : P(dir), &names), "");
    EXPECT_EQ(std::count(names.begin(), names.end(), name), 0) << key << " is still listed";
  }

  // Reads a corrupt key: EIO at open or at some read, and every byte
  // received before that is right.
  void ExpectEio(const std::string& key, bool direct) {
    const Obj& o = ObjByKey(key);
    std::vector<uint8_t> want = MakeData(o.seed, o.size);
    // The kernel may still cache the pages its writer left (they hold the
    // right bytes): drop them, so that the read reaches the store.
    {
      Fd fd(open(P(key).c_str(), O_RDONLY));
      if (fd.valid()) posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    }
    ReadOutcome r = ReadThrough(P(key), kMiB, direct);
    int err = r.open_err != 0 ? r.open_err : r.read_err;
    EXPECT_EQ(ErrnoName(err), "EIO") << key << (direct ? " (O_DIRECT)" : "") << ": read " << r.got.size()
                                     << " of " << o.size << " bytes";
    ASSERT_LE(r.got.size(), want.size()) << key;
    // Not memcmp: got.data() may be null when nothing was read.
    EXPECT_TRUE(std::equal(r.got.begin(), r.got.end(), want.begin()))
        << key << ": bytes received before the failure are wrong";
  }

  // `kvfs fsck --store STORE --json [--repair]`.
  CommandResult Fsck(bool repair) {
    std::vector<std::string> argv = {kvfs_binary(), "fsck", "--store", store_path(), "--json"};
    if (repair) argv.push_back("--repair");
    return RunCommand(argv);
  }

  // A member of fsck's JSON summary (the last line of its output).
  static uint64_t FsckField(const CommandResult& r, const std::string& field) {
    std::string text = r.out;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    std::string last = text.substr(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
    std::string error;
    std::optional<JsonValue> json = ParseJson(last, &error);
    if (!json) {
      ADD_FAILURE() << "fsck --json printed no JSON (" << error << "): " << r.out;
      return ~0ULL;
    }
    const JsonValue* v = json->Find(field);
    if (v == nullptr) {
      ADD_FAILURE() << "fsck --json has no '" << field << "': " << r.out;
      return ~0ULL;
    }
    return v->AsU64();
  }

  // Per-store figure from `kvfs stats --json` (store 0), nullopt when absent.
  std::optional<uint64_t> StoreStat(const std::string& field) {
    JsonValue stats;
    Stats(&stats);
    const JsonValue* stores = stats.Find("stores");
    if (stores == nullptr || stores->items.empty()) {
      ADD_FAILURE() << "kvfs stats --json has no stores[]";
      return std::nullopt;
    }
    const JsonValue* v = stores->items[0].Find(field);
    if (v == nullptr) return std::nullopt;
    return v->AsU64();
  }

  size_t QuarantineCount() { return StoreDirEntries(store_path() + "/quarantine").size(); }
  size_t StagingCount() { return StoreDirEntries(store_path() + "/staging").size(); }
};

// A data byte flipped while mounted, in an object nobody has open: the next
// reader gets EIO, the key goes to quarantine, the rest of the mount is fine.
TEST_F(IntegrityTest, FlippedDataByteWhileMountedGivesEioAndQuarantine) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  std::string file = ObjectFile("victim");
  ASSERT_FALSE(file.empty());
  const std::string base = file.substr(file.rfind('/') + 1);
  ASSERT_EQ(FlipByte(file, 4096 + 2 * kMiB + 77), "");  // data byte 2 MiB + 77 (chunk 8)

  ASSERT_NO_FATAL_FAILURE(ExpectEio("victim", /*direct=*/false));
  ExpectGone("victim");
  std::vector<std::string> quarantined = StoreDirEntries(store_path() + "/quarantine");
  ASSERT_EQ(quarantined.size(), 1u);
  EXPECT_EQ(quarantined[0].rfind(base, 0), 0u) << quarantined[0] << " is not " << base;
  EXPECT_FALSE(access(file.c_str(), F_OK) == 0) << "the corrupt object is still at its place";
  EXPECT_EQ(StoreStat("checksum_failures"), std::optional<uint64_t>(1)) << "stats --json stores[0].checksum_failures";
  EXPECT_EQ(StoreStat("quarantined"), std::optional<uint64_t>(1)) << "stats --json stores[0].quarantined";

  ExpectIntact({"other-a", "other-b", "dir/other-c", "header-victim", "short-victim"});
  // The name can be used again.
  EXPECT_EQ(WriteFile(P("victim"), MakeData(999, 12345)), "");
  EXPECT_EQ(CheckFile(P("victim"), MakeData(999, 12345)), "");

  // After a restart the quarantined version stays out, the new one is there.
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(CheckFile(P("victim"), MakeData(999, 12345)), "");
  ExpectIntact({"other-a", "other-b", "dir/other-c"});
  ASSERT_EQ(Unmount(), "");
  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

// The same with O_DIRECT readers and a byte in the first chunk.
TEST_F(IntegrityTest, FlippedFirstChunkByteGivesEioToDirectReader) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  std::string file = ObjectFile("other-a");
  ASSERT_EQ(FlipByte(file, 4096 + 3), "");
  ASSERT_NO_FATAL_FAILURE(ExpectEio("other-a", /*direct=*/true));
  ExpectGone("other-a");
  EXPECT_EQ(QuarantineCount(), 1u);
  ExpectIntact({"victim", "other-b", "dir/other-c"});
}

// A data byte flipped while unmounted: fsck reports it (exit 1); a mount
// serves EIO for it, quarantines it, and then fsck is clean.
TEST_F(IntegrityTest, FlippedDataByteWhileUnmounted) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  std::string file = ObjectFile("dir/other-c");
  ASSERT_EQ(Unmount(), "");
  ASSERT_EQ(FlipByte(file, 4096 + 300 * kKiB), "");

  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(FsckField(r, "corrupt"), 1u) << r.out;
  EXPECT_TRUE(access(file.c_str(), F_OK) == 0) << "fsck without --repair changed the store";

  ASSERT_EQ(Mount(), "");
  ASSERT_NO_FATAL_FAILURE(ExpectEio("dir/other-c", /*direct=*/false));
  ExpectGone("dir/other-c");
  EXPECT_EQ(QuarantineCount(), 1u);
  EXPECT_EQ(StoreStat("quarantined"), std::optional<uint64_t>(1)) << "stats --json stores[0].quarantined";
  ExpectIntact({"victim", "other-a", "other-b", "header-victim", "short-victim"});
  ASSERT_EQ(Unmount(), "");
  r = Fsck(false);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

// A corrupt header: the object is skipped at mount, the mount works; fsck
// reports it until --repair quarantines it.
TEST_F(IntegrityTest, CorruptHeaderIsSkippedAtMount) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  std::string file = ObjectFile("header-victim");
  ASSERT_EQ(Unmount(), "");
  ASSERT_EQ(FlipByte(file, 64), "");  // inside header slot 0

  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(FsckField(r, "corrupt"), 1u) << r.out;

  ASSERT_EQ(Mount(), "");
  ExpectGone("header-victim");
  ExpectIntact({"victim", "other-a", "other-b", "dir/other-c", "short-victim"});
  EXPECT_EQ(WriteFile(P("fresh"), MakeData(7, 33333)), "");
  EXPECT_EQ(CheckFile(P("fresh"), MakeData(7, 33333)), "");
  ASSERT_EQ(Unmount(), "");

  r = Fsck(true);
  EXPECT_EQ(r.exit_code, 1) << "problems found (and repaired): " << r.Describe();
  EXPECT_EQ(FsckField(r, "repaired"), 1u) << r.out;
  r = Fsck(false);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(QuarantineCount(), 1u);
  ASSERT_EQ(Mount(), "");
  ExpectGone("header-victim");
  ExpectIntact({"victim", "other-a"});
}

// A truncated object file: skipped at mount, reported by fsck.
TEST_F(IntegrityTest, TruncatedObjectIsSkippedAtMount) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  std::string file = ObjectFile("short-victim");
  ASSERT_EQ(Unmount(), "");
  ASSERT_EQ(truncate(file.c_str(), 4096 + kMiB), 0) << ErrnoMessage("truncate");

  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(FsckField(r, "corrupt"), 1u) << r.out;

  ASSERT_EQ(Mount(), "");
  ExpectGone("short-victim");
  ExpectIntact({"victim", "other-a", "other-b", "dir/other-c", "header-victim"});
  ASSERT_EQ(Unmount(), "");
  r = Fsck(true);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  r = Fsck(false);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

// A file left in staging/ while unmounted: fsck reports it; a mount removes it.
TEST_F(IntegrityTest, StagingLeftoverIsRemovedAtMount) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  ASSERT_EQ(Unmount(), "");
  const std::string leftover = store_path() + "/staging/31337-0.tmp";
  {
    Fd fd(open(leftover.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("create " + leftover);
    std::vector<uint8_t> junk = MakeData(5, 10000);
    ASSERT_EQ(write(fd.get(), junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  }
  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(FsckField(r, "staging_leftovers"), 1u) << r.out;

  ASSERT_EQ(Mount(), "");
  EXPECT_EQ(StagingCount(), 0u) << "the mount did not sweep staging/";
  ExpectIntact({"victim", "other-a", "other-b", "dir/other-c", "header-victim", "short-victim"});
  ASSERT_EQ(Unmount(), "");
  r = Fsck(false);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
}

// A second copy of an object elsewhere in objects/ (what an interrupted
// rename can leave): fsck reports a duplicate; one repair fixes it.
TEST_F(IntegrityTest, DuplicateCopyIsReportedAndRepaired) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  std::string file = ObjectFile("other-b");
  ASSERT_EQ(Unmount(), "");
  const std::string copy_dir = store_path() + "/objects/00";
  CommandResult mk = RunCommand({"/bin/mkdir", "-p", copy_dir});
  ASSERT_EQ(mk.exit_code, 0) << mk.Describe();
  CommandResult cp = RunCommand({"/bin/cp", file, copy_dir + "/0000000000000000000000000000cafe"});
  ASSERT_EQ(cp.exit_code, 0) << cp.Describe();

  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(FsckField(r, "duplicates"), 1u) << r.out;
  r = Fsck(true);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  r = Fsck(false);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  ASSERT_EQ(Mount(), "");
  ExpectIntact({"other-b", "victim"});
}

// Every kind of damage at once while unmounted: fsck reports them all (exit
// 1, a line each), one --repair makes the next fsck exit 0, and the mount
// serves exactly the undamaged objects.
TEST_F(IntegrityTest, FsckReportsAllProblemsAndRepairCleans) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  std::string data_victim = ObjectFile("victim");
  std::string header_victim = ObjectFile("header-victim");
  std::string short_victim = ObjectFile("short-victim");
  ASSERT_EQ(Unmount(), "");
  ASSERT_EQ(FlipByte(data_victim, 4096 + 12345), "");
  ASSERT_EQ(FlipByte(header_victim, 200), "");
  ASSERT_EQ(truncate(short_victim.c_str(), 4096 + 512 * kKiB), 0);
  {
    Fd fd(open((store_path() + "/staging/1-1.tmp").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid());
  }

  // Plain text output: one line per problem.
  CommandResult text = RunCommand({kvfs_binary(), "fsck", "--store", store_path()});
  EXPECT_EQ(text.exit_code, 1) << text.Describe();
  for (const std::string& f : {data_victim, header_victim, short_victim}) {
    std::string base = f.substr(f.rfind('/') + 1);
    EXPECT_NE(text.out.find(base), std::string::npos) << "fsck does not name " << base << ":\n" << text.out;
  }
  EXPECT_NE(text.out.find("1-1.tmp"), std::string::npos) << text.out;

  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(FsckField(r, "corrupt"), 3u) << r.out;
  EXPECT_EQ(FsckField(r, "staging_leftovers"), 1u) << r.out;
  EXPECT_EQ(FsckField(r, "duplicates"), 0u) << r.out;

  r = Fsck(true);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_EQ(FsckField(r, "repaired"), 4u) << r.out;
  r = Fsck(false);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(FsckField(r, "files"), Objects().size() - 3) << r.out;
  EXPECT_EQ(QuarantineCount(), 3u);
  EXPECT_EQ(StagingCount(), 0u);

  ASSERT_EQ(Mount(), "");
  for (const char* gone : {"victim", "header-victim", "short-victim"}) ExpectGone(gone);
  ExpectIntact({"other-a", "other-b", "dir/other-c"});
}

// fsck refuses a store that a mount is using: it cannot check (exit 2).
TEST_F(IntegrityTest, FsckOnMountedStoreCannotCheck) {
  ASSERT_NO_FATAL_FAILURE(WriteAll());
  CommandResult r = Fsck(false);
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  r = RunCommand({kvfs_binary(), "fsck", "--store", root() + "/no-such-store"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
}

}  // namespace
}  // namespace kvfs::mounted_test
