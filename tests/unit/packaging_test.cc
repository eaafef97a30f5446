// What the Debian package ships next to the binary, checked against the
// binary's own command line (fuse/cli.h) and parsers:
// - the man page (packaging/kvfs.1) names every subcommand and option that
//   `kvfs --help` and `kvfs SUBCOMMAND --help` print;
// - the example config (packaging/kvfs.toml), once its commented-out
//   `#key = value` lines are uncommented, parses with the config parser
//   (fuse/config_file.h), is accepted by `kvfs mount --config`, gives every
//   mount option its default, and names every option kvfs mount knows;
// - the systemd unit (packaging/kvfs@.service) passes
//   `systemd-analyze verify`.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fuse/cli.h"
#include "fuse/config_file.h"

#ifndef KVFS_SOURCE_DIR
#error "KVFS_SOURCE_DIR must name the source tree"
#endif

namespace kvfs {
namespace {

const std::string kPackaging = std::string(KVFS_SOURCE_DIR) + "/packaging";

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The help that `kvfs ARGS... --help` prints.
std::string Help(std::vector<std::string> args) {
  args.insert(args.begin(), "kvfs");
  args.push_back("--help");
  CliCommand c = ParseCommandLine(args, LoadConfigFile);
  EXPECT_EQ(c.action, CliCommand::Action::kExit);
  EXPECT_EQ(c.exit_code, 0) << c.error;
  return c.out;
}

// The options a help text lists: "-f", "--foreground", ... (only in the
// option column, i.e. at the start of an "Options:" line).
std::set<std::string> OptionsOf(const std::string& help) {
  std::set<std::string> out;
  static const std::regex line_re(R"(^  (-[^ ]+))");
  static const std::regex name_re(R"(--?[A-Za-z][A-Za-z0-9-]*)");
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, line_re)) continue;
    const std::string names = m[1];  // "-f,--foreground"
    for (auto it = std::sregex_iterator(names.begin(), names.end(), name_re); it != std::sregex_iterator(); ++it) {
      out.insert(it->str());
    }
  }
  return out;
}

// The names under "Subcommands:" of the top-level help.
std::set<std::string> SubcommandsOf(const std::string& help) {
  std::set<std::string> out;
  std::istringstream in(help);
  std::string line;
  bool in_list = false;
  while (std::getline(in, line)) {
    if (line == "Subcommands:") {
      in_list = true;
      continue;
    }
    if (!in_list) continue;
    std::smatch m;
    static const std::regex re(R"(^  ([a-z]+) )");
    if (std::regex_search(line, m, re)) out.insert(m[1]);
  }
  return out;
}

// The man page as text: roff's "\-" is a hyphen, and font escapes go.
std::string ManText() {
  std::string roff = ReadText(kPackaging + "/kvfs.1");
  roff = std::regex_replace(roff, std::regex(R"(\\-)"), "-");
  roff = std::regex_replace(roff, std::regex(R"(\\f[BIRP])"), "");
  return roff;
}

// `word` appears in `text` as a whole token (not as the start of a longer
// option: "--store" does not count inside "--store-deadline").
bool HasToken(const std::string& text, const std::string& word) {
  for (size_t pos = text.find(word); pos != std::string::npos; pos = text.find(word, pos + 1)) {
    auto part_of_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
    bool starts = pos == 0 || !part_of_name(text[pos - 1]);
    bool ends = pos + word.size() == text.size() || !part_of_name(text[pos + word.size()]);
    if (starts && ends) return true;
  }
  return false;
}

TEST(PackagingTest, HelpListsWhatTheManPageChecks) {
  // Guards the extraction below: if the help's layout changed, the man
  // page test would check nothing.
  std::set<std::string> mount = OptionsOf(Help({"mount"}));
  EXPECT_TRUE(mount.count("--capacity"));
  EXPECT_TRUE(mount.count("-f"));
  EXPECT_TRUE(mount.count("--foreground"));
  EXPECT_TRUE(mount.count("-o"));
  EXPECT_GE(mount.size(), 30u);
  EXPECT_EQ(SubcommandsOf(Help({})), (std::set<std::string>{"mount", "umount", "fsck", "stats"}));
}

TEST(PackagingTest, ManPageNamesEveryOptionOfTheHelp) {
  const std::string man = ManText();
  ASSERT_FALSE(man.empty()) << "cannot read " << kPackaging << "/kvfs.1";
  const std::string top = Help({});
  for (const std::string& opt : OptionsOf(top)) {
    EXPECT_TRUE(HasToken(man, opt)) << "kvfs --help lists " << opt << "; packaging/kvfs.1 does not";
  }
  for (const std::string& sub : SubcommandsOf(top)) {
    EXPECT_TRUE(HasToken(man, "kvfs " + sub)) << "packaging/kvfs.1 does not show 'kvfs " << sub << "'";
    for (const std::string& opt : OptionsOf(Help({sub}))) {
      EXPECT_TRUE(HasToken(man, opt)) << "kvfs " << sub << " --help lists " << opt
                                      << "; packaging/kvfs.1 does not";
    }
  }
  // The config file's extra key.
  EXPECT_TRUE(HasToken(man, "mountpoint"));
}

// The example config with its `#key = value` lines uncommented.
std::string UncommentedExampleConfig() {
  std::string text = ReadText(kPackaging + "/kvfs.toml");
  return std::regex_replace(text, std::regex(R"((^|\n)#([a-z][a-z0-9-]* = ))"), "$1$2");
}

TEST(PackagingTest, ExampleConfigParsesAndSetsEveryOptionToItsDefault) {
  const std::string shipped = ReadText(kPackaging + "/kvfs.toml");
  ASSERT_FALSE(shipped.empty()) << "cannot read " << kPackaging << "/kvfs.toml";
  // As shipped, everything is commented out: it parses to nothing.
  Result<std::vector<ConfigEntry>> as_shipped = ParseConfigText(shipped, "kvfs.toml");
  ASSERT_TRUE(as_shipped.ok()) << as_shipped.status().message();
  EXPECT_TRUE(as_shipped->empty());

  const std::string text = UncommentedExampleConfig();
  Result<std::vector<ConfigEntry>> entries = ParseConfigText(text, "kvfs.toml (uncommented)");
  ASSERT_TRUE(entries.ok()) << entries.status().message();
  std::set<std::string> keys;
  for (const ConfigEntry& e : *entries) keys.insert(e.key);

  // Every option kvfs mount knows is in the file (the long name; -o as o),
  // and the mountpoint.
  for (const std::string& opt : OptionsOf(Help({"mount"}))) {
    if (opt == "--help" || opt == "-h" || opt == "--config") continue;  // not config keys
    if (opt.rfind("--", 0) != 0 && opt != "-o") continue;             // -f is --foreground
    const std::string key = opt == "-o" ? "o" : opt.substr(2);
    EXPECT_TRUE(keys.count(key)) << "packaging/kvfs.toml does not mention " << key;
  }
  EXPECT_TRUE(keys.count("mountpoint"));

  // kvfs mount accepts the whole file, and what it sets are the defaults.
  ConfigReader reader = [&](const std::string&) { return ParseConfigText(text, "kvfs.toml"); };
  CliCommand c = ParseCommandLine({"kvfs", "mount", "--config", "/etc/kvfs/kvfs.toml"}, reader);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_EQ(c.mount.mountpoint, "/mnt/kvfs");
  EXPECT_EQ(c.mount.stores, (std::vector<std::string>{"/var/lib/kvfs/store"}));
  CliCommand d = ParseCommandLine({"kvfs", "mount", "/mnt/kvfs"}, reader);
  ASSERT_EQ(d.action, CliCommand::Action::kMount) << d.error;
  const MountOptions& got = c.mount;
  const MountOptions& def = d.mount;
  EXPECT_EQ(got.min_free_bytes, def.min_free_bytes);
  EXPECT_EQ(got.min_free_fraction, def.min_free_fraction);
  EXPECT_EQ(got.eviction_policy, def.eviction_policy);
  EXPECT_EQ(got.high_watermark, def.high_watermark);
  EXPECT_EQ(got.low_watermark, def.low_watermark);
  EXPECT_EQ(got.foreground, def.foreground);
  EXPECT_EQ(got.log_level, def.log_level);
  EXPECT_EQ(got.read_ahead_kb, def.read_ahead_kb);
  EXPECT_EQ(got.daemon_read_ahead, def.daemon_read_ahead);
  EXPECT_EQ(got.max_request, def.max_request);
  EXPECT_EQ(got.max_background, def.max_background);
  EXPECT_EQ(got.buffer_count, def.buffer_count);
  EXPECT_EQ(got.buffer_size, def.buffer_size);
  EXPECT_EQ(got.io_uring, def.io_uring);
  EXPECT_EQ(got.direct_io, def.direct_io);
  EXPECT_EQ(got.store_deadline_s, def.store_deadline_s);
  EXPECT_EQ(got.durability, def.durability);
  EXPECT_EQ(got.sync_interval_s, def.sync_interval_s);
  EXPECT_EQ(got.commit_flush, def.commit_flush);
  EXPECT_EQ(got.verify_one_in, def.verify_one_in);
  EXPECT_EQ(got.page_cache, def.page_cache);
  EXPECT_EQ(got.readdir_cache, def.readdir_cache);
  EXPECT_EQ(got.entry_timeout, def.entry_timeout);
  EXPECT_EQ(got.negative_timeout, def.negative_timeout);
  EXPECT_EQ(got.dfs_refresh_s, def.dfs_refresh_s);
  EXPECT_EQ(got.dfs_lease_ttl_s, def.dfs_lease_ttl_s);
}

// Runs a shell command; its exit status and what it printed (both streams).
int Shell(const std::string& command, std::string* output) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

TEST(PackagingTest, SystemdUnitVerifies) {
  std::string unit = ReadText(kPackaging + "/kvfs@.service");
  ASSERT_FALSE(unit.empty()) << "cannot read " << kPackaging << "/kvfs@.service";
  const std::string exec = "ExecStart=/usr/bin/kvfs mount --foreground --config /etc/kvfs/%i.toml\n";
  ASSERT_NE(unit.find(exec), std::string::npos) << "the unit no longer runs " << exec;
  EXPECT_NE(unit.find("\nType=notify\n"), std::string::npos);
  EXPECT_NE(unit.find("\nRestart=on-failure\n"), std::string::npos);
  // kvfs accepts that command line, for an instance whose file names the
  // mountpoint, and serves in the foreground (what Type=notify expects).
  ConfigReader reader = [](const std::string& path) -> Result<std::vector<ConfigEntry>> {
    if (path != "/etc/kvfs/nvme.toml") return Status::Error(ENOENT, "config file " + path + ": not found");
    return ParseConfigText("mountpoint = \"/mnt/kvcache\"\nstore = [\"/nvme0/kvfs\"]\n", path);
  };
  CliCommand c = ParseCommandLine({"kvfs", "mount", "--foreground", "--config", "/etc/kvfs/nvme.toml"}, reader);
  ASSERT_EQ(c.action, CliCommand::Action::kMount) << c.error;
  EXPECT_TRUE(c.mount.foreground);
  EXPECT_EQ(c.mount.mountpoint, "/mnt/kvcache");

  std::string found;
  if (Shell("command -v systemd-analyze", &found) != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd): packaging/kvfs@.service "
                    "was not verified";
  }
  // verify checks that ExecStart='s command is executable (the command line
  // itself is checked above; /bin/true stands in for the kvfs that is not
  // installed here), and that `man kvfs` finds the page of Documentation=
  // (packaging/kvfs.1 here).
  char dir[] = "/tmp/kvfs-unit-verify-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string root = dir;
  std::string out;
  ASSERT_EQ(Shell("mkdir -p " + Quote(root + "/man/man1") + " && cp " + Quote(kPackaging + "/kvfs.1") + " " +
                      Quote(root + "/man/man1/"),
                  &out),
            0)
      << out;
  unit.replace(unit.find("/usr/bin/kvfs"), std::string("/usr/bin/kvfs").size(), "/bin/true");
  {
    std::ofstream f(root + "/kvfs@.service");
    f << unit;
    ASSERT_TRUE(f.good());
  }
  out.clear();
  int rc = Shell("MANPATH=" + Quote(root + "/man") + " systemd-analyze verify " + Quote(root + "/kvfs@.service"), &out);
  Shell("rm -rf " + Quote(root), &found);
  EXPECT_EQ(rc, 0) << out;
  // Unknown keys and bad values are only warnings: the output must be empty.
  EXPECT_EQ(out, "") << "systemd-analyze verify packaging/kvfs@.service";
}

}  // namespace
}  // namespace kvfs
