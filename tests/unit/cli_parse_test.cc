// The command-line parser (fuse/cli.h) without mounting: bounds of every
// option, -o key=value, the config file's precedence, and the mount.fuse3
// calling convention.
#include "fuse/cli.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace kvfs {
namespace {

// Config files served from memory, by path.
struct FakeFiles {
  std::map<std::string, std::string> files;
  ConfigReader Reader() {
    return [this](const std::string& path) -> Result<std::vector<ConfigEntry>> {
      auto it = files.find(path);
      if (it == files.end()) return Status::Error(ENOENT, "config file " + path + ": No such file or directory");
      return ParseConfigText(it->second, "config file " + path);
    };
  }
};

CliCommand Parse(std::vector<std::string> args, FakeFiles* files = nullptr) {
  static FakeFiles none;
  args.insert(args.begin(), "kvfs");
  return ParseCommandLine(args, (files ? files : &none)->Reader());
}

CliCommand Mount(std::vector<std::string> extra, FakeFiles* files = nullptr) {
  std::vector<std::string> args = {"mount", "/mnt/x"};
  args.insert(args.end(), extra.begin(), extra.end());
  return Parse(args, files);
}

// Expects a clean refusal: exit code 2 and one line mentioning `needle`.
void ExpectRefused(const CliCommand& c, const std::string& needle) {
  EXPECT_EQ(c.action, CliCommand::Action::kExit);
  EXPECT_EQ(c.exit_code, 2);
  EXPECT_FALSE(c.error.empty());
  EXPECT_EQ(c.error.find('\n'), std::string::npos) << c.error;
  EXPECT_EQ(c.error.rfind("kvfs: ", 0), 0u) << c.error;
  EXPECT_NE(c.error.find(needle), std::string::npos) << "[" << c.error << "] does not mention [" << needle << "]";
}

TEST(CliParseTest, DefaultsMount) {
  CliCommand c = Mount({});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.mountpoint, "/mnt/x");
  EXPECT_FALSE(c.mount.capacity.has_value());
  EXPECT_EQ(c.mount.buffer_count, 64u);
  EXPECT_EQ(c.mount.buffer_size, 1u << 20);
  EXPECT_DOUBLE_EQ(c.mount.store_deadline_s, 30.0);
}

TEST(CliParseTest, HelpAndVersionExitZero) {
  CliCommand c = Parse({"--help"});
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_NE(c.out.find("mount"), std::string::npos);
  c = Parse({"mount", "--help"});
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_NE(c.out.find("--capacity"), std::string::npos);
  c = Parse({"--version"});
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_NE(c.out.find("kvfs"), std::string::npos);
}

TEST(CliParseTest, MisuseOfSubcommands) {
  ExpectRefused(Parse({}), "subcommand");
  ExpectRefused(Parse({"frobnicate"}), "frobnicate");
  ExpectRefused(Parse({"mount"}), "mountpoint");
  ExpectRefused(Parse({"mount", ""}), "mountpoint");
  ExpectRefused(Parse({"mount", "/a", "/b"}), "/b");
  ExpectRefused(Parse({"umount"}), "mountpoint");
  ExpectRefused(Parse({"umount", ""}), "mountpoint");
  ExpectRefused(Parse({"stats"}), "mountpoint");
  ExpectRefused(Parse({"stats", "/m", "--bogus"}), "--bogus");
  ExpectRefused(Parse({"fsck"}), "--store");
  ExpectRefused(Parse({"fsck", "--store"}), "--store");
  ExpectRefused(Parse({"fsck", "--store", ""}), "--store");
  ExpectRefused(Parse({"stats", "/m", "--count", "3"}), "--watch");
  ExpectRefused(Parse({"stats", "/m", "--watch", "0"}), "--watch");
  ExpectRefused(Parse({"stats", "/m", "--watch", "1", "--count", "0"}), "--count");
  EXPECT_EQ(Parse({"stats", "/m", "--watch", "0.5", "--count", "2"}).action, CliCommand::Action::kStats);
}

TEST(CliParseTest, MissingValuesAndEmptyValues) {
  ExpectRefused(Mount({"--capacity"}), "--capacity");
  ExpectRefused(Mount({"--capacity", ""}), "--capacity");
  ExpectRefused(Mount({"--store", ""}), "--store");
  ExpectRefused(Mount({"--log-file", ""}), "--log-file");
  ExpectRefused(Mount({"--host-id", ""}), "--host-id");
  ExpectRefused(Mount({"--min-free", ""}), "--min-free");
  ExpectRefused(Mount({"-o", ""}), "-o");
  ExpectRefused(Mount({"-o", "allow_other,,ro"}), "-o");
}

TEST(CliParseTest, BuffersAreBounded) {
  ExpectRefused(Mount({"--buffers", "65536"}), "--buffers");
  ExpectRefused(Mount({"--buffers", "0"}), "--buffers");
  ExpectRefused(Mount({"--buffers", "-1"}), "--buffers");
  ExpectRefused(Mount({"--buffers", "4096", "--buffer-size", "2M"}), "at most 4.0 GiB");
  ExpectRefused(Mount({"--buffer-size", "100K"}), "--buffer-size");
  ExpectRefused(Mount({"--buffer-size", "1000K"}), "256K");
  ExpectRefused(Mount({"--buffer-size", "128M"}), "--buffer-size");
  CliCommand c = Mount({"--buffers", "4096", "--buffer-size", "1M"});
  EXPECT_EQ(c.action, CliCommand::Action::kMount) << c.error;
}

TEST(CliParseTest, DurationsAreBounded) {
  for (const char* opt : {"--store-deadline", "--sync-interval", "--dfs-refresh", "--dfs-lease-ttl",
                          "--entry-timeout", "--negative-timeout", "--high-watermark", "--low-watermark"}) {
    for (const char* bad : {"-1", "1e9", "nan", "inf", "-inf", "0x10", "1s", "", "1,5"}) {
      ExpectRefused(Mount({opt, bad}), opt);
    }
  }
  for (const char* opt : {"--store-deadline", "--sync-interval", "--dfs-refresh", "--dfs-lease-ttl"}) {
    ExpectRefused(Mount({opt, "0"}), opt);
  }
  EXPECT_EQ(Mount({"--entry-timeout", "0"}).action, CliCommand::Action::kMount);
  EXPECT_EQ(Mount({"--store-deadline", "0.5"}).action, CliCommand::Action::kMount);
  ExpectRefused(Mount({"--low-watermark", "0.9", "--high-watermark", "0.5"}), "--low-watermark");
}

TEST(CliParseTest, SizesAreBounded) {
  ExpectRefused(Mount({"--capacity", "0"}), "--capacity");
  ExpectRefused(Mount({"--capacity", "512K"}), "--capacity");
  ExpectRefused(Mount({"--capacity", "100P"}), "--capacity");
  ExpectRefused(Mount({"--capacity", "-1G"}), "--capacity");
  ExpectRefused(Mount({"--capacity", "1Q"}), "--capacity");
  ExpectRefused(Mount({"--capacity", "99999999999999999999999"}), "--capacity");
  ExpectRefused(Mount({"--store", "/s:0"}), "--store");
  ExpectRefused(Mount({"--store", "/s:1.5Q"}), "--store");
  ExpectRefused(Mount({"--store", "dfs:"}), "--store");
  ExpectRefused(Mount({"--min-free", "95%"}), "--min-free");
  ExpectRefused(Mount({"--min-free", "x%"}), "--min-free");
  ExpectRefused(Mount({"--min-free", "100P"}), "--min-free");
  ExpectRefused(Mount({"--max-request", "3K"}), "--max-request");
  ExpectRefused(Mount({"--max-request", "2M"}), "--max-request");
  ExpectRefused(Mount({"--daemon-read-ahead", "1G"}), "--daemon-read-ahead");
  ExpectRefused(Mount({"--read-ahead-kb", "1000000"}), "--read-ahead-kb");
  ExpectRefused(Mount({"--max-background", "0"}), "--max-background");
  ExpectRefused(Mount({"--verify-one-in", "-1"}), "--verify-one-in");
  ExpectRefused(Mount({"--verify-one-in", "99999999999"}), "--verify-one-in");
  ExpectRefused(Mount({"--io-uring", "maybe"}), "--io-uring");
  ExpectRefused(Mount({"--eviction", "fifo"}), "--eviction");
  ExpectRefused(Mount({"--durability", "never"}), "--durability");
  ExpectRefused(Mount({"--host-id", "a b"}), "--host-id");
  ExpectRefused(Mount({"--store", "/a", "--store", "/b:1G", "--capacity", "512M"}), "add up to");
  CliCommand c = Mount({"--capacity", "1.5T", "--store", "/s:64M", "--min-free", "20G"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(*c.mount.capacity, (uint64_t{3} << 40) / 2);
  EXPECT_EQ(c.mount.min_free_bytes, uint64_t{20} << 30);
}

TEST(CliParseTest, EveryOptionAsDashOKeyValue) {
  CliCommand c = Mount({"-o", "capacity=2G,store=/a,store=/b:64M,allow_other,log_level=debug,io-uring=false,_netdev",
                        "-o", "foreground,entry_timeout=5,x-systemd.automount,max_read=65536"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(*c.mount.capacity, uint64_t{2} << 30);
  EXPECT_EQ(c.mount.stores, (std::vector<std::string>{"/a", "/b:64M"}));
  EXPECT_EQ(c.mount.log_level, "debug");
  EXPECT_FALSE(c.mount.io_uring);
  EXPECT_TRUE(c.mount.foreground);
  EXPECT_DOUBLE_EQ(c.mount.entry_timeout, 5.0);
  EXPECT_EQ(c.mount.fuse_options, (std::vector<std::string>{"allow_other", "max_read=65536"}));
  EXPECT_FALSE(c.mount.nonempty);
  c = Mount({"-o", "nonempty,allow_other"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_TRUE(c.mount.nonempty);
  EXPECT_EQ(c.mount.fuse_options, std::vector<std::string>{"allow_other"});
  ExpectRefused(Mount({"-o", "capacity=1G", "--capacity", "2G"}), "both given");
  ExpectRefused(Mount({"-o", "capacity=1G,capacity=2G"}), "twice");
  ExpectRefused(Mount({"-o", "capacity"}), "needs a value");
  ExpectRefused(Mount({"-o", "capacity="}), "empty value");
  ExpectRefused(Mount({"-o", "capacity=lots"}), "capacity");
  ExpectRefused(Mount({"-o", "store-deadline=0"}), "store-deadline");
  ExpectRefused(Mount({"-o", "fsname=x"}), "fsname");
}

TEST(CliParseTest, MountFuse3CallingConvention) {
  CliCommand c = Parse({"/srv/kvstore", "/mnt/kv", "-o", "rw,capacity=1G,allow_other,_netdev,nofail"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.mountpoint, "/mnt/kv");
  EXPECT_EQ(c.mount.stores, std::vector<std::string>{"/srv/kvstore"});
  EXPECT_EQ(*c.mount.capacity, uint64_t{1} << 30);
  EXPECT_EQ(c.mount.fuse_options, std::vector<std::string>{"allow_other"});
  c = Parse({"kvfs", "/mnt/kv", "-o", "store=/a,store=/b"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.stores, (std::vector<std::string>{"/a", "/b"}));
  c = Parse({"dfs:/mnt/dfs/kv:20T", "/mnt/kv", "-o", "host_id=h1,_netdev"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.stores, std::vector<std::string>{"dfs:/mnt/dfs/kv:20T"});
  EXPECT_EQ(c.mount.host_id, "h1");
  // A typo of a subcommand is not taken for a source.
  ExpectRefused(Parse({"mout", "/mnt/kv"}), "mout");
}

TEST(CliParseTest, ConfigFileFillsWhatTheCommandLineLeftUnset) {
  FakeFiles files;
  files.files["/etc/kvfs.toml"] =
      "[mount]\n"
      "store = [\"/nvme0/kvfs\", \"/nvme1/kvfs\"]\n"
      "capacity = \"6T\"\n"
      "o = [\"allow_other\"]\n"
      "log_level = \"warn\"\n"
      "foreground = true\n";
  CliCommand c = Mount({"--config", "/etc/kvfs.toml", "--capacity", "1T", "-o", "ro"}, &files);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(*c.mount.capacity, uint64_t{1} << 40);  // the command line wins
  EXPECT_EQ(c.mount.stores, (std::vector<std::string>{"/nvme0/kvfs", "/nvme1/kvfs"}));
  EXPECT_EQ(c.mount.log_level, "warn");
  EXPECT_TRUE(c.mount.foreground);
  EXPECT_EQ(c.mount.fuse_options, (std::vector<std::string>{"ro", "allow_other"}));
  // Through -o config=, as an fstab line would say it.
  c = Parse({"kvfs", "/mnt/kv", "-o", "config=/etc/kvfs.toml"}, &files);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(*c.mount.capacity, uint64_t{6} << 40);
}

TEST(CliParseTest, ConfigFileMayNameTheMountpoint) {
  FakeFiles files;
  files.files["/etc/kvfs/nvme.toml"] = "mountpoint = \"/mnt/kvcache\"\n[mount]\ncapacity = 6T\n";
  CliCommand c = Parse({"mount", "--config", "/etc/kvfs/nvme.toml"}, &files);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.mountpoint, "/mnt/kvcache");
  EXPECT_EQ(*c.mount.capacity, uint64_t{6} << 40);
  // The command line wins, as for every other key.
  c = Parse({"mount", "/mnt/other", "--config", "/etc/kvfs/nvme.toml"}, &files);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.mountpoint, "/mnt/other");
  // Neither the command line nor the file names one.
  files.files["none"] = "capacity = 6T\n";
  ExpectRefused(Parse({"mount", "--config", "none"}, &files), "no mountpoint");
  files.files["list"] = "mountpoint = [\"/a\", \"/b\"]\n";
  ExpectRefused(Parse({"mount", "--config", "list"}, &files), "line 1 (mountpoint): takes one value");
  files.files["empty"] = "mountpoint = ''\n";
  ExpectRefused(Parse({"mount", "--config", "empty"}, &files), "line 1 (mountpoint): empty value");
  ExpectRefused(Parse({"mount", "--capacity", "6T"}), "mountpoint is required");
}

TEST(CliParseTest, ConfigFileMistakesNameTheLine) {
  FakeFiles files;
  files.files["empty"] = "[mount]\ncapacity = \n";
  ExpectRefused(Mount({"--config", "empty"}, &files), "config file empty line 2: 'capacity' has no value");
  files.files["unknown"] = "[mount]\n\ncapasity = 1G\n";
  ExpectRefused(Mount({"--config", "unknown"}, &files), "line 3: unknown key 'capasity'");
  files.files["dup"] = "log-level = info\n[mount]\nlog_level = warn\n";
  ExpectRefused(Mount({"--config", "dup"}, &files), "line 3: 'log_level' is given twice");
  files.files["bad"] = "[mount]\nhigh-watermark = 2\n";
  ExpectRefused(Mount({"--config", "bad"}, &files), "line 2 (high-watermark)");
  files.files["badsize"] = "[mount]\n# comment\ncapacity = lots\n";
  ExpectRefused(Mount({"--config", "badsize"}, &files), "line 3 (capacity)");
  files.files["list"] = "capacity = [\"1G\", \"2G\"]\n";
  ExpectRefused(Mount({"--config", "list"}, &files), "one value");
  files.files["nested"] = "config = other\n";
  ExpectRefused(Mount({"--config", "nested"}, &files), "another");
  files.files["emptystr"] = "log-file = \"\"\n";
  ExpectRefused(Mount({"--config", "emptystr"}, &files), "empty value");
  files.files["flag"] = "foreground = sometimes\n";
  ExpectRefused(Mount({"--config", "flag"}, &files), "foreground");
  files.files["o"] = "o = [\"capacity=1G\"]\n";
  ExpectRefused(Mount({"--config", "o"}, &files), "own key");
  ExpectRefused(Mount({"--config", "missing"}, &files), "missing");
  // A newline in a path stays escaped: the error is still one line.
  files.files["two\nlines"] = "capacity = 0\n";
  ExpectRefused(Mount({"--config", "two\nlines"}, &files), "two\\nlines");
  ExpectRefused(Mount({"--config", ""}, &files), "--config");
  ExpectRefused(Mount({"--config"}, &files), "--config");
}

}  // namespace
}  // namespace kvfs

namespace kvfs {
namespace {

TEST(CliParseTest, MetricsListenInEveryForm) {
  CliCommand c = Mount({});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.metrics_listen, "") << "off by default";
  c = Mount({"--metrics-listen", "127.0.0.1:9100"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.metrics_listen, "127.0.0.1:9100");
  c = Mount({"-o", "metrics_listen=127.0.0.1:0"});
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.metrics_listen, "127.0.0.1:0");
  FakeFiles files;
  files.files["/etc/kvfs.toml"] = "[mount]\nmetrics_listen = \"0.0.0.0:9200\"\n";
  c = Mount({"--config", "/etc/kvfs.toml"}, &files);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.metrics_listen, "0.0.0.0:9200");
  c = Mount({"--config", "/etc/kvfs.toml", "--metrics-listen", "127.0.0.1:1"}, &files);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.metrics_listen, "127.0.0.1:1") << "the command line wins";

  ExpectRefused(Mount({"--metrics-listen", "localhost:9100"}), "--metrics-listen: 'localhost:9100'");
  ExpectRefused(Mount({"--metrics-listen", "127.0.0.1:70000"}), "above 65535");
  ExpectRefused(Mount({"--metrics-listen", "9100"}), "has no port");
  ExpectRefused(Mount({"--metrics-listen", "[::1]:9100"}), "IPv6");
  ExpectRefused(Mount({"--metrics-listen", ""}), "empty");
  ExpectRefused(Mount({"-o", "metrics_listen=1.2.3.4"}), "-o metrics-listen");
  files.files["bad"] = "[mount]\nmetrics_listen = \"nowhere:1\"\n";
  ExpectRefused(Mount({"--config", "bad"}, &files), "line 2 (metrics_listen)");
  ExpectRefused(Mount({"--metrics-listen", "127.0.0.1:1", "-o", "metrics_listen=127.0.0.1:2"}), "both given");
}

}  // namespace
}  // namespace kvfs
