// The config file parser (fuse/config_file.h): what it accepts, and that
// every malformed file is an error naming its line.
#include "fuse/config_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace kvfs {
namespace {

std::vector<ConfigEntry> ParseOk(const std::string& text) {
  Result<std::vector<ConfigEntry>> r = ParseConfigText(text, "f.toml");
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : std::vector<ConfigEntry>{};
}

// The error message, which must name the line.
std::string ParseError(const std::string& text, int line) {
  Result<std::vector<ConfigEntry>> r = ParseConfigText(text, "f.toml");
  EXPECT_FALSE(r.ok()) << "accepted: [" << text << "]";
  if (r.ok()) return "";
  EXPECT_EQ(r.err(), EINVAL);
  EXPECT_NE(r.status().message().find("f.toml line " + std::to_string(line) + ":"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
  return r.status().message();
}

TEST(ConfigFileTest, AcceptsTheDocumentedForms) {
  std::vector<ConfigEntry> e = ParseOk(
      "# comment\n"
      "log-level = \"debug\"   # top level is fine too\n"
      "\n"
      "[mount]\n"
      "store = [\"/nvme0/kvfs\",\n"
      "         '/nvme1/kvfs', # a comment inside\n"
      "]\n"
      "capacity = 6T\n"
      "high-watermark = 0.95\r\n"
      "io-uring = false\n"
      "o = [\"allow_other\"]\n"
      "host-id = \"a\\\"b\\\\c\"");
  ASSERT_EQ(e.size(), 7u);
  EXPECT_EQ(e[0].key, "log-level");
  EXPECT_EQ(e[0].values, std::vector<std::string>{"debug"});
  EXPECT_EQ(e[0].line, 2);
  EXPECT_EQ(e[1].key, "store");
  EXPECT_EQ(e[1].values, (std::vector<std::string>{"/nvme0/kvfs", "/nvme1/kvfs"}));
  EXPECT_EQ(e[1].line, 5);
  EXPECT_EQ(e[2].values, std::vector<std::string>{"6T"});
  EXPECT_EQ(e[2].line, 8);
  EXPECT_EQ(e[3].values, std::vector<std::string>{"0.95"});
  EXPECT_EQ(e[4].values, std::vector<std::string>{"false"});
  EXPECT_EQ(e[5].values, std::vector<std::string>{"allow_other"});
  EXPECT_EQ(e[6].values, std::vector<std::string>{"a\"b\\c"});
  EXPECT_TRUE(ParseOk("").empty());
  EXPECT_TRUE(ParseOk("\n\n# only comments\n[mount]\n").empty());
}

TEST(ConfigFileTest, EmptyValueIsAnErrorNamingTheLine) {
  EXPECT_NE(ParseError("[mount]\ncapacity = \n", 2).find("'capacity' has no value"), std::string::npos);
  ParseError("[mount]\n\ncapacity =", 3);
  ParseError("capacity = # nothing\n", 1);
  ParseError("store = []\n", 1);
  ParseError("store = [\"a\",,\"b\"]\n", 1);
}

TEST(ConfigFileTest, DuplicatesAndSectionsAreErrors) {
  EXPECT_NE(ParseError("capacity = 1G\n[mount]\ncapacity = 2G\n", 3).find("first on line 1"), std::string::npos);
  ParseError("[mount]\n[mount]\n", 2);
  ParseError("[other]\nx = 1\n", 1);
  ParseError("[[mount]]\n", 1);
  ParseError("[mount\n", 1);
}

TEST(ConfigFileTest, MalformedLinesAreErrors) {
  ParseError("capacity 1G\n", 1);
  ParseError("= 1G\n", 1);
  ParseError("\"capacity\" = 1G\n", 1);
  ParseError("mount.capacity = 1G\n", 1);
  ParseError("capacity = \"1G\n", 1);
  ParseError("capacity = '1G\n", 1);
  ParseError("capacity = \"\"\"1G\"\"\"\n", 1);
  ParseError("capacity = 1G 2G\n", 1);
  ParseError("capacity = \"1G\" x\n", 1);
  ParseError("store = [\"a\"\n", 1);
  ParseError("store = [[\"a\"]]\n", 1);
  ParseError("store = [\"a\" \"b\"]\n", 1);
  ParseError("o = {a = 1}\n", 1);
  ParseError("x = \"bad \\q escape\"\n", 1);
  ParseError("x = \"tab\x01\"\n", 1);
  ParseError(std::string("a = 1\nb = 2\0\n", 13), 2);
  ParseError("a = 1\rb = 2\n", 1);
}

class ConfigFileLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvfs-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string dir_;
};

TEST_F(ConfigFileLoadTest, ReadsARegularFile) {
  std::string path = dir_ + "/kvfs.toml";
  std::ofstream(path) << "[mount]\ncapacity = \"1G\"\n";
  Result<std::vector<ConfigEntry>> r = LoadConfigFile(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].values[0], "1G");
}

TEST_F(ConfigFileLoadTest, RefusesWhatIsNotARegularFileOfSaneSize) {
  Result<std::vector<ConfigEntry>> r = LoadConfigFile(dir_);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a regular file"), std::string::npos) << r.status().message();
  r = LoadConfigFile("/dev/zero");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a regular file"), std::string::npos) << r.status().message();
  std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  r = LoadConfigFile(fifo);  // must not wait for a writer
  EXPECT_FALSE(r.ok());
  r = LoadConfigFile(dir_ + "/missing");
  EXPECT_EQ(r.err(), ENOENT);
  r = LoadConfigFile("");
  EXPECT_FALSE(r.ok());
  std::string big = dir_ + "/big.toml";
  {
    std::ofstream out(big);
    std::string comment(1000, '#');
    for (size_t n = 0; n <= kMaxConfigBytes / 1001; ++n) out << comment << "\n";
  }
  r = LoadConfigFile(big);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("larger than"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace kvfs
