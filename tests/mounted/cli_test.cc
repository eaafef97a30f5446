// The kvfs command line: bad input to `kvfs mount` (options out of range,
// config files that are wrong or not files, FUSE options the kernel
// refuses) exits non-zero with one line on stderr, never hangs and leaves
// nothing mounted; the mount is listed as fuse.kvfs; umount of something
// that is not a kvfs mount fails cleanly; the other subcommands' misuse is
// one line and a non-zero exit too; options given through -o key=value or
// a config file take effect.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class CliTest : public MountedTest {
 protected:
  // Runs a `kvfs mount` that must fail, and checks the failure is clean.
  // Anything it did mount at `mountpoint` is taken down (and reported).
  void ExpectCleanMountFailure(const std::vector<std::string>& args, const std::string& mountpoint,
                               int mounts_before = 0) {
    std::vector<std::string> argv = {kvfs_binary(), "mount"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(r.timed_out) << r.Describe();
    EXPECT_FALSE(r.err.empty()) << "no error message: " << r.Describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr must be exactly one line: [" << r.err << "]";
    EXPECT_TRUE(!r.err.empty() && r.err.back() == '\n') << "stderr line not terminated: [" << r.err << "]";
    int mounts_after = CountMountsAt(mountpoint);
    EXPECT_EQ(mounts_after, mounts_before) << "a failed mount left something mounted at " << mountpoint;
    while (mounts_after-- > mounts_before) RunCommand({"/bin/umount", "-l", mountpoint});
  }

  // Runs a kvfs command that must fail with one line on stderr.
  void ExpectCleanFailure(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kvfs_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv, 20 * 1000);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(r.timed_out) << r.Describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr must be exactly one line: [" << r.err << "]";
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  }

  std::string WriteText(const std::string& name, const std::string& text) {
    std::string path = root() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // `kvfs stats --json` of another mount: its capacity in bytes (0 on error).
  uint64_t CapacityOf(const std::string& mountpoint) {
    CommandResult r = RunCommand({kvfs_binary(), "stats", mountpoint, "--json"});
    std::string error;
    std::optional<JsonValue> v = ParseJson(r.out, &error);
    if (!v) return 0;
    const JsonValue* c = v->Find("capacity_bytes");
    return c ? c->AsU64() : 0;
  }

  void UnmountOther(const std::string& mountpoint) {
    CommandResult u = RunCommand({kvfs_binary(), "umount", mountpoint});
    EXPECT_EQ(u.exit_code, 0) << u.Describe();
    if (IsKvfsMounted(mountpoint)) RunCommand({"/bin/umount", "-l", mountpoint});
    EXPECT_FALSE(IsKvfsMounted(mountpoint));
  }

  std::string MakeDir(const std::string& name) {
    std::string path = root() + "/" + name;
    EXPECT_EQ(mkdir(path.c_str(), 0755), 0) << ErrnoMessage("mkdir " + path);
    return path;
  }
};

TEST_F(CliTest, MountIsListedAsFuseKvfs) {
  EXPECT_TRUE(IsKvfsMounted(mnt()));
  EXPECT_EQ(CountMountsAt(mnt()), 1);
}

TEST_F(CliTest, MissingMountpoint) {
  const std::string store = MakeDir("store2");
  const std::string missing = root() + "/does-not-exist";
  ExpectCleanMountFailure({missing, "--store", store}, missing);
  EXPECT_EQ(StatErrno(missing), ENOENT) << "the mountpoint must not be created";
}

TEST_F(CliTest, BusyMountpoint) {
  // mnt() is already mounted by the fixture; mounting on it again fails and
  // leaves the existing mount working.
  const std::string store = MakeDir("store2");
  ASSERT_EQ(WriteFile(P("before"), MakeData(1, 5000)), "");
  ExpectCleanMountFailure({mnt(), "--store", store}, mnt(), /*mounts_before=*/1);
  EXPECT_TRUE(IsKvfsMounted(mnt()));
  EXPECT_EQ(CheckFile(P("before"), MakeData(1, 5000)), "");
  ASSERT_EQ(WriteFile(P("after"), MakeData(2, 6000)), "");
  EXPECT_EQ(CheckFile(P("after"), MakeData(2, 6000)), "");
}

TEST_F(CliTest, StoreIsARegularFile) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string file = root() + "/store-file";
  ASSERT_EQ(WriteFile(file, MakeData(3, 10)), "");
  ExpectCleanMountFailure({mnt2, "--store", file}, mnt2);
  // The file is untouched.
  EXPECT_EQ(CheckFile(file, MakeData(3, 10)), "");
}

TEST_F(CliTest, CapacityIsNotASize) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  ExpectCleanMountFailure({mnt2, "--store", store, "--capacity", "banana"}, mnt2);
}

TEST_F(CliTest, BadRequestSizingIsRefused) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-request", "3K"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-request", "2M"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-request", "lots"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-background", "0"}, mnt2);
}

TEST_F(CliTest, SecondMountWithItsOwnStoreAndCapacity) {
  // A second mount (own daemon, own store, explicit capacity) works
  // alongside the first one.
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  CommandResult r = RunCommand({kvfs_binary(), "mount", mnt2, "--store", store, "--capacity", "64M"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(IsKvfsMounted(mnt2));
  EXPECT_EQ(WriteFile(mnt2 + "/x", MakeData(4, 100)), "");
  EXPECT_EQ(CheckFile(mnt2 + "/x", MakeData(4, 100)), "");
  EXPECT_EQ(StatErrno(P("x")), ENOENT) << "the two mounts must not share keys";
  CommandResult u = RunCommand({kvfs_binary(), "umount", mnt2});
  EXPECT_EQ(u.exit_code, 0) << u.Describe();
  if (IsKvfsMounted(mnt2)) RunCommand({"/bin/umount", "-l", mnt2});
  EXPECT_FALSE(IsKvfsMounted(mnt2));
}

TEST_F(CliTest, UmountOfSomethingElseFails) {
  const std::string plain = MakeDir("plain");
  CommandResult r = RunCommand({kvfs_binary(), "umount", plain});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(r.err.empty()) << r.Describe();
  EXPECT_TRUE(IsKvfsMounted(mnt())) << "umount of another path took down the fixture's mount";
}

TEST_F(CliTest, NonEmptyMountpointIsRefusedUnlessAskedFor) {
  // Mounting over a directory hides what is in it (a mistyped `kvfs mount
  // /tmp` hid /tmp from every process).
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  ASSERT_EQ(WriteFile(mnt2 + "/existing", MakeData(9, 100)), "");
  ExpectCleanMountFailure({mnt2, "--store", store}, mnt2);
  CommandResult r = RunCommand({kvfs_binary(), "mount", mnt2, "--store", store, "-o", "nonempty"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(IsKvfsMounted(mnt2));
  EXPECT_EQ(StatErrno(mnt2 + "/existing"), ENOENT) << "the mount hides the directory's entries";
  UnmountOther(mnt2);
  EXPECT_EQ(CheckFile(mnt2 + "/existing", MakeData(9, 100)), "");
}

TEST_F(CliTest, TooManyBuffersIsRefusedNotAnAbort) {
  // 65536 x 1M used to throw bad_alloc in the daemon.
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  ExpectCleanMountFailure({mnt2, "--store", store, "--buffers", "65536"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--buffers", "4096", "--buffer-size", "64M"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--buffers", "0"}, mnt2);
}

TEST_F(CliTest, FuseOptionTheKernelRefusesIsNoFalseMounted) {
  // The session ends at INIT: `kvfs mount` used to print "mounted" and exit 0.
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  std::vector<std::string> argv = {kvfs_binary(), "mount", mnt2, "--store", store, "-o", "max_read=1"};
  CommandResult r = RunCommand(argv, 30 * 1000);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out.find("mounted"), std::string::npos) << r.Describe();
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.Describe();
  EXPECT_EQ(CountMountsAt(mnt2), 0);
  while (CountMountsAt(mnt2) > 0) RunCommand({"/bin/umount", "-l", mnt2});
  ExpectCleanMountFailure({mnt2, "--store", store, "-o", "no_such_fuse_option"}, mnt2);
}

TEST_F(CliTest, UnopenableLogFileIsAnError) {
  // It used to fall back to stderr, which the daemon sends to /dev/null.
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  // Under a regular file: the directory cannot be created.
  const std::string file = root() + "/a-file";
  ASSERT_EQ(WriteFile(file, MakeData(5, 10)), "");
  ExpectCleanMountFailure({mnt2, "--store", store, "--log-file", file + "/kvfs.log"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--log-file", root()}, mnt2);
}

TEST_F(CliTest, ConfigEmptyValueIsAnErrorNamingTheLine) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  const std::string config = WriteText("kvfs.toml", "[mount]\ncapacity = \n");
  ExpectCleanMountFailure({mnt2, "--store", store, "--config", config}, mnt2);
  CommandResult r = RunCommand({kvfs_binary(), "mount", mnt2, "--store", store, "--config", config});
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.Describe();
}

TEST_F(CliTest, ConfigThatIsNotAFileIsRefusedWithoutHanging) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  const std::string dir = MakeDir("config-dir");
  const std::string fifo = root() + "/config-fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << ErrnoMessage("mkfifo");
  for (const std::string& config : {std::string("/dev/zero"), dir, fifo, root() + "/missing.toml"}) {
    SCOPED_TRACE(config);
    ExpectCleanMountFailure({mnt2, "--store", store, "--config", config}, mnt2);
  }
}

TEST_F(CliTest, ConfigUnknownDuplicateAndMalformedKeys) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  for (const std::string& text : {std::string("[mount]\ncapasity = \"1G\"\n"),
                                  std::string("[mount]\ncapacity = \"1G\"\ncapacity = \"2G\"\n"),
                                  std::string("log-level = \"info\"\n[mount]\nlog_level = \"warn\"\n"),
                                  std::string("[mounts]\ncapacity = \"1G\"\n"),
                                  std::string("[mount]\ncapacity = \"1G\n"),
                                  std::string("[mount]\nhigh-watermark = 7\n"),
                                  std::string("[mount]\nstore-deadline = 0\n"),
                                  std::string("[mount]\nbuffers = 65536\n")}) {
    SCOPED_TRACE(text);
    ExpectCleanMountFailure({mnt2, "--store", store, "--config", WriteText("bad.toml", text)}, mnt2);
  }
}

TEST_F(CliTest, AbsurdDurationsAndSizesAreRefused) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  const std::vector<std::vector<std::string>> cases = {
      {"--store-deadline", "0"},   {"--store-deadline", "-1"},    {"--store-deadline", "1e12"},
      {"--sync-interval", "0"},    {"--sync-interval", "nan"},    {"--entry-timeout", "-5"},
      {"--negative-timeout", "inf"}, {"--dfs-refresh", "0"},      {"--dfs-lease-ttl", "100000"},
      {"--capacity", "0"},         {"--capacity", "1E"},          {"--capacity", ""},
      {"--capacity", "12 apples"}, {"--min-free", "99%"},         {"--daemon-read-ahead", "1T"},
      {"--read-ahead-kb", "-1"},   {"--verify-one-in", "1e3"},    {"--max-background", "999999"},
      {"--store-deadline"},        {"--high-watermark", "1.5"},   {"--io-uring", "perhaps"}};
  for (const std::vector<std::string>& c : cases) {
    std::vector<std::string> args = {mnt2, "--store", store};
    args.insert(args.end(), c.begin(), c.end());
    SCOPED_TRACE(c[0] + (c.size() > 1 ? " " + c[1] : ""));
    ExpectCleanMountFailure(args, mnt2);
  }
  ExpectCleanMountFailure({mnt2, "--store", store + ":0"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", ""}, mnt2);
  ExpectCleanMountFailure({mnt2, "-o", "capacity=1G", "--capacity", "2G", "--store", store}, mnt2);
}

TEST_F(CliTest, OtherSubcommandsMisuse) {
  ExpectCleanFailure({});
  ExpectCleanFailure({"frobnicate"});
  ExpectCleanFailure({"umount"});
  ExpectCleanFailure({"umount", root() + "/missing"});
  ExpectCleanFailure({"stats"});
  ExpectCleanFailure({"stats", root() + "/missing"});
  ExpectCleanFailure({"stats", root()});
  ExpectCleanFailure({"stats", mnt(), "--watch", "0"});
  ExpectCleanFailure({"stats", mnt(), "--count", "2"});
  ExpectCleanFailure({"stats", mnt(), "--watch"});
  ExpectCleanFailure({"fsck"});
  ExpectCleanFailure({"fsck", "--store", root() + "/missing"});
  ExpectCleanFailure({"fsck", "--store", ""});
  ExpectCleanFailure({"mount"});
  ExpectCleanFailure({"--bogus"});
  for (const std::vector<std::string>& help :
       {std::vector<std::string>{"--help"}, {"mount", "--help"}, {"stats", "--help"}, {"--version"}}) {
    std::vector<std::string> argv = {kvfs_binary()};
    argv.insert(argv.end(), help.begin(), help.end());
    CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(r.out.empty()) << r.Describe();
  }
}

TEST_F(CliTest, OptionsFromDashOAndFromAConfigFileTakeEffect) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  CommandResult r = RunCommand({kvfs_binary(), "mount", mnt2, "-o", "store=" + store + ",capacity=48M"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(IsKvfsMounted(mnt2));
  EXPECT_EQ(CapacityOf(mnt2), 48 * kMiB);
  UnmountOther(mnt2);

  const std::string config =
      WriteText("kvfs.toml", "# test\n[mount]\nstore = [\"" + store + "\"]\ncapacity = \"40M\"\nlog-level = \"debug\"\n");
  r = RunCommand({kvfs_binary(), "mount", mnt2, "--config", config});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(CapacityOf(mnt2), 40 * kMiB);
  UnmountOther(mnt2);

  // The command line wins over the file.
  r = RunCommand({kvfs_binary(), "mount", mnt2, "--config", config, "--capacity", "36M"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(CapacityOf(mnt2), 36 * kMiB);
  UnmountOther(mnt2);
}

TEST_F(CliTest, StatsWatchPrintsOneLineOfRatesPerInterval) {
  for (int i = 0; i < 5; ++i) ASSERT_EQ(WriteFile(P("w" + std::to_string(i)), MakeData(i, 200000)), "");
  // Reads while the watch runs, in a child, so that some rate moves.
  ChildProcess reader([this](Channel& ch) -> std::string {
    if (!ch.Send("started")) return "send";
    for (int round = 0; round < 200; ++round) {
      for (int i = 0; i < 5; ++i) {
        std::vector<uint8_t> data;
        std::string e = ReadFile(P("w" + std::to_string(i)), &data);
        if (!e.empty()) return e;
      }
      if (ch.Recv(0)) break;
    }
    return "ok";
  });
  ASSERT_EQ(reader.channel().Expect("started"), "");
  CommandResult r = RunCommand({kvfs_binary(), "stats", mnt(), "--watch", "0.2", "--count", "3"}, 30 * 1000);
  reader.channel().Send("stop");
  EXPECT_EQ(reader.Wait().Summary(), "ok");
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = r.out.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(r.out.substr(start, nl - start));
  }
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_NE(lines[0].find("reads/s"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("hit ratio"), std::string::npos) << lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    std::istringstream fields(lines[i]);
    std::string time, hit;
    double reads = -1, mib = -1, commits = -1, evictions = -1;
    fields >> time >> reads >> mib >> commits >> evictions >> hit;
    EXPECT_FALSE(fields.fail()) << lines[i];
    EXPECT_EQ(time.size(), 8u) << lines[i];
    EXPECT_GE(reads, 0) << lines[i];
    EXPECT_GE(mib, 0) << lines[i];
    EXPECT_GE(commits, 0) << lines[i];
    EXPECT_GE(evictions, 0) << lines[i];
    EXPECT_TRUE(hit == "-" || hit.back() == '%') << lines[i];
  }
}

}  // namespace
}  // namespace kvfs::mounted_test
