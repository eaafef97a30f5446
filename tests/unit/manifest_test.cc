#include "adapters/manifest.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "adapters/key_hash.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::TempDir;

void ExpectSameManifest(const StoreManifest& a, const StoreManifest& b) {
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.layout, b.layout);
}

TEST(ManifestTest, BothLayoutsAreUsable) {
  StoreManifest m = StoreManifest::Current();
  EXPECT_EQ(m.FanOutLevels(), 1);
  m.layout = kTwoLevelStoreLayout;
  EXPECT_TRUE(m.CheckCompatible().ok()) << m.CheckCompatible().ToString();
  EXPECT_EQ(m.FanOutLevels(), 2);
  m.layout = "objects/xx/yy/zz/<hash128>";
  EXPECT_EQ(m.FanOutLevels(), 0);
  EXPECT_EQ(m.CheckCompatible().err(), EPROTO);
}

TEST(ManifestTest, CurrentDescribesThisBuild) {
  StoreManifest m = StoreManifest::Current();
  EXPECT_EQ(m.format, kStoreFormatVersion);
  EXPECT_EQ(m.hash, kHashAlgorithm);
  EXPECT_EQ(m.seed, kHashSeed);
  EXPECT_EQ(m.layout, kStoreLayout);
  EXPECT_TRUE(m.CheckCompatible().ok()) << m.CheckCompatible().ToString();
}

TEST(ManifestTest, SerializeParsesBack) {
  StoreManifest m = StoreManifest::Current();
  std::string text = m.Serialize();
  EXPECT_NE(text.find("format"), std::string::npos);
  EXPECT_NE(text.find(kHashAlgorithm), std::string::npos);
  Result<StoreManifest> parsed = StoreManifest::Parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << text;
  ExpectSameManifest(*parsed, m);
  EXPECT_TRUE(parsed->CheckCompatible().ok());
}

TEST(ManifestTest, SerializeParsesBackForNonDefaultValues) {
  StoreManifest m;
  m.format = 7;
  m.hash = "some-other-hash";
  m.seed = 0xffffffffffffffffULL;
  m.layout = "flat/<hash>";
  Result<StoreManifest> parsed = StoreManifest::Parse(m.Serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectSameManifest(*parsed, m);
}

TEST(ManifestTest, ParseAcceptsCommentsBlankLinesAndSpacing) {
  std::ostringstream text;
  text << "# a comment\n\n"
       << "  format=" << kStoreFormatVersion << "  \n"
       << "hash   =   \"" << kHashAlgorithm << "\"\n"
       << "# another\n"
       << "seed = \"" << kHashSeed << "\"\n"
       << "layout = \"" << kStoreLayout << "\"\n";
  Result<StoreManifest> parsed = StoreManifest::Parse(text.str());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectSameManifest(*parsed, StoreManifest::Current());
}

// A store made by an older build (format 1) is usable and wants upgrading;
// the upgrade changes the format only.
TEST(ManifestTest, AnOlderStoreFormatIsUsableAndUpgraded) {
  StoreManifest m = StoreManifest::Current();
  EXPECT_FALSE(m.NeedsUpgrade());
  m.format = kOldestStoreFormat;
  m.layout = kTwoLevelStoreLayout;
  EXPECT_TRUE(m.CheckCompatible().ok()) << m.CheckCompatible().ToString();
  EXPECT_TRUE(m.NeedsUpgrade());
  StoreManifest up = m.Upgraded();
  EXPECT_EQ(up.format, kStoreFormatVersion);
  EXPECT_EQ(up.layout, m.layout);
  EXPECT_EQ(up.hash, m.hash);
  EXPECT_EQ(up.seed, m.seed);
  EXPECT_FALSE(up.NeedsUpgrade());
  m.format = 0;
  EXPECT_EQ(m.CheckCompatible().err(), EPROTO);
}

TEST(ManifestTest, CheckCompatibleRejectsEachDifferingField) {
  {
    StoreManifest m = StoreManifest::Current();
    m.format = kStoreFormatVersion + 1;
    Status s = m.CheckCompatible();
    EXPECT_EQ(s.err(), EPROTO);
    EXPECT_NE(s.message().find("format"), std::string::npos) << s.message();
  }
  {
    StoreManifest m = StoreManifest::Current();
    m.hash = "xxh64";
    Status s = m.CheckCompatible();
    EXPECT_EQ(s.err(), EPROTO);
    EXPECT_NE(s.message().find("hash"), std::string::npos) << s.message();
  }
  {
    StoreManifest m = StoreManifest::Current();
    m.seed = kHashSeed + 1;
    Status s = m.CheckCompatible();
    EXPECT_EQ(s.err(), EPROTO);
    EXPECT_NE(s.message().find("seed"), std::string::npos) << s.message();
  }
  {
    StoreManifest m = StoreManifest::Current();
    m.layout = "objects/<hash128>";
    Status s = m.CheckCompatible();
    EXPECT_EQ(s.err(), EPROTO);
    EXPECT_NE(s.message().find("layout"), std::string::npos) << s.message();
  }
  {
    StoreManifest m;  // default-constructed: empty hash and layout, seed 0
    EXPECT_EQ(m.CheckCompatible().err(), EPROTO);
  }
}

TEST(ManifestTest, ParseRejectsGarbage) {
  const std::string good = StoreManifest::Current().Serialize();
  const std::vector<std::string> bad = {
      good + "this is not a manifest line\n",
      good + "color = \"red\"\n",
      "format = banana\n" + good.substr(good.find("hash")),
      "\x01\x02\x03\xff",
      "<?xml version=\"1.0\"?>\n",
  };
  for (const std::string& text : bad) {
    Result<StoreManifest> parsed = StoreManifest::Parse(text);
    EXPECT_FALSE(parsed.ok()) << "accepted:\n" << text;
    EXPECT_EQ(parsed.err(), EINVAL) << text;
  }
}

TEST(ManifestTest, ParseRejectsMissingFields) {
  const std::string full = StoreManifest::Current().Serialize();
  EXPECT_EQ(StoreManifest::Parse("").err(), EINVAL);
  EXPECT_EQ(StoreManifest::Parse("# only a comment\n").err(), EINVAL);
  for (const std::string field : {"format", "hash", "seed", "layout"}) {
    std::istringstream in(full);
    std::string line, without;
    while (std::getline(in, line)) {
      if (line.rfind(field, 0) == 0) continue;
      without += line + "\n";
    }
    ASSERT_NE(without, full);
    Result<StoreManifest> parsed = StoreManifest::Parse(without);
    EXPECT_FALSE(parsed.ok()) << "accepted a manifest without " << field;
    EXPECT_EQ(parsed.err(), EINVAL) << field;
  }
}

TEST(ManifestTest, WriteThenReadRoundTripsOnDisk) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  StoreManifest m = StoreManifest::Current();
  ASSERT_TRUE(WriteManifest(dir.path(), m).ok());
  EXPECT_TRUE(testing::PathExists(dir.Sub(kManifestFileName)));
  Result<StoreManifest> read = ReadManifest(dir.path());
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ExpectSameManifest(*read, m);

  // Rewriting replaces it and leaves no temporary files behind.
  StoreManifest other = m;
  other.layout = "something/else";
  ASSERT_TRUE(WriteManifest(dir.path(), other).ok());
  Result<StoreManifest> reread = ReadManifest(dir.path());
  ASSERT_TRUE(reread.ok());
  EXPECT_EQ(reread->layout, "something/else");
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename().string(), kManifestFileName);
  }
  EXPECT_EQ(entries, 1u);
}

TEST(ManifestTest, ReadManifestOfGarbageFileIsEinval) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(testing::WriteFile(dir.Sub(kManifestFileName), "not a manifest\n"));
  EXPECT_EQ(ReadManifest(dir.path()).err(), EINVAL);
}

TEST(ManifestTest, ReadManifestOfMissingIsEnoent) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  Result<StoreManifest> r = ReadManifest(dir.path());
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.err(), ENOENT);
  Result<StoreManifest> r2 = ReadManifest(dir.Sub("no-such-subdir"));
  EXPECT_FALSE(r2.ok());
  EXPECT_EQ(r2.err(), ENOENT);
}

}  // namespace
}  // namespace kvfs
