#include "core/size_parse.h"

#include <gtest/gtest.h>

namespace kvfs {
namespace {

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = KiB * 1024;
constexpr uint64_t GiB = MiB * 1024;
constexpr uint64_t TiB = GiB * 1024;

TEST(ParseSizeTest, AcceptsOperatorSpellings) {
  const std::vector<std::pair<std::string, uint64_t>> cases = {
      {"0", 0},
      {"4096", 4096},
      {"512K", 512 * KiB},
      {"512k", 512 * KiB},
      {"512KiB", 512 * KiB},
      {"1m", MiB},
      {"1M", MiB},
      {"64MiB", 64 * MiB},
      {"10GiB", 10 * GiB},
      {"10G", 10 * GiB},
      {"1.5T", TiB + TiB / 2},
      {"2TiB", 2 * TiB},
      {"0.5K", 512},
      {"100B", 100},
  };
  for (const auto& [text, want] : cases) {
    Result<uint64_t> got = ParseSize(text);
    ASSERT_TRUE(got.ok()) << "'" << text << "': " << got.status().ToString();
    EXPECT_EQ(*got, want) << "'" << text << "'";
  }
}

TEST(ParseSizeTest, RejectsNonSizes) {
  for (const std::string text : {"banana", "", "10X", "-1", "K", "1.2.3G", "10 GiBs", "0x10", " ", "GiB10"}) {
    Result<uint64_t> got = ParseSize(text);
    EXPECT_FALSE(got.ok()) << "accepted '" << text << "' as " << (got.ok() ? *got : 0);
    EXPECT_EQ(got.err(), EINVAL) << "'" << text << "'";
  }
}

TEST(ParseSizeTest, ErrorMessageNamesTheText) {
  Result<uint64_t> got = ParseSize("banana");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("banana"), std::string::npos) << got.status().message();
}

TEST(ParseSizeTest, RejectsOverflow) {
  EXPECT_EQ(ParseSize("100000000P").err(), EINVAL);
}

TEST(FormatSizeTest, HumanReadable) {
  EXPECT_EQ(FormatSize(0), "0 B");
  EXPECT_EQ(FormatSize(512), "512 B");
  EXPECT_EQ(FormatSize(GiB + GiB / 2), "1.5 GiB");
  EXPECT_EQ(FormatSize(4 * KiB), "4.0 KiB");
  EXPECT_EQ(FormatSize(10 * TiB), "10.0 TiB");
}

}  // namespace
}  // namespace kvfs
