// Unit tests of the user.kvfs.* attributes (fuse/debug_xattrs.h) against a
// real engine: listxattr names exactly what getxattr answers, for the root,
// a directory, a committed file and a key still being written; values match
// what the engine reports.
#include "fuse/debug_xattrs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cinttypes>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "adapters/key_hash.h"
#include "tests/unit/engine_driver.h"

namespace kvfs {
namespace {

using testing::ErrText;

// Every user.kvfs.* name a probe could ask for, listed or not.
const std::vector<std::string> kEveryName = {
    "user.kvfs.key",      "user.kvfs.key_hash", "user.kvfs.open_handles", "user.kvfs.state",
    "user.kvfs.store",    "user.kvfs.location", "user.kvfs.version",      "user.kvfs.size",
    "user.kvfs.footprint", "user.kvfs.leases",  "user.kvfs.checksum",     "user.kvfs.stats",
    "user.kvfs.stats.text", "user.kvfs.pid",    "user.kvfs.capacity",     "user.kvfs.used",
    "user.kvfs.pinned",   "user.kvfs.evictions", "user.kvfs.no_such_name", "user.other"};

class DebugXattrsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(driver_.Open().ok()); }
  Engine& E() { return driver_.engine(); }

  // The listed names are exactly the names that getxattr answers.
  void ExpectListMatchesGet(uint64_t ino) {
    Result<std::vector<std::string>> listed = ListDebugXattrs(E(), ino);
    ASSERT_TRUE(listed.ok()) << ErrText(listed.status());
    std::set<std::string> listed_set(listed->begin(), listed->end());
    EXPECT_EQ(listed_set.size(), listed->size()) << "a name is listed twice";
    for (const std::string& name : kEveryName) {
      Result<std::string> v = GetDebugXattr(E(), ino, name);
      if (listed_set.count(name)) {
        EXPECT_TRUE(v.ok()) << name << " is listed but getxattr says " << ErrText(v.status());
      } else {
        ASSERT_FALSE(v.ok()) << name << " is answered but not listed";
        EXPECT_EQ(v.status().err(), ENODATA) << name;
      }
    }
  }

  testing::EngineDriver driver_;
};

TEST_F(DebugXattrsTest, ListNamesExactlyWhatGetAnswers) {
  std::vector<uint8_t> data = testing::Pattern(7, 300000);
  Result<uint64_t> file = driver_.Put("f", data);
  ASSERT_TRUE(file.ok()) << ErrText(file.status());
  Result<Attr> dir = E().Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(dir.ok());
  Result<OpenResult> pending = E().Create(kRootIno, "p", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(pending.ok());
  ASSERT_TRUE(E().Write(pending->handle, 0, "abc", 3).ok());

  for (uint64_t ino : {kRootIno, *file, dir->ino, pending->attr.ino}) {
    SCOPED_TRACE("inode " + std::to_string(ino));
    ExpectListMatchesGet(ino);
  }
  // The root's statistics are there, and only on the root.
  Result<std::vector<std::string>> root = ListDebugXattrs(E(), kRootIno);
  ASSERT_TRUE(root.ok());
  for (const char* n : {"user.kvfs.stats", "user.kvfs.stats.text", "user.kvfs.pid"}) {
    EXPECT_NE(std::find(root->begin(), root->end(), n), root->end()) << n;
    EXPECT_EQ(GetDebugXattr(E(), *file, n).status().err(), ENODATA) << n;
  }
  EXPECT_EQ(*GetDebugXattr(E(), pending->attr.ino, "user.kvfs.state"), "writing");
  EXPECT_EQ(GetDebugXattr(E(), pending->attr.ino, "user.kvfs.size").status().err(), ENODATA)
      << "a key with no committed version has no version attributes";
  E().Release(pending->handle);
  EXPECT_EQ(ListDebugXattrs(E(), 999999).status().err(), ENOENT);
  EXPECT_EQ(GetDebugXattr(E(), 999999, "user.kvfs.key").status().err(), ENOENT);
}

TEST_F(DebugXattrsTest, ValuesMatchTheEngine) {
  std::vector<uint8_t> data = testing::Pattern(8, 123457);
  Result<uint64_t> file = driver_.Put("dir-less", data);
  ASSERT_TRUE(file.ok());
  Result<InodeInfo> info = E().Inspect(*file);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(*GetDebugXattr(E(), *file, "user.kvfs.key"), "dir-less");
  EXPECT_EQ(*GetDebugXattr(E(), *file, "user.kvfs.key_hash"), HashKey("dir-less").Hex());
  EXPECT_EQ(*GetDebugXattr(E(), *file, "user.kvfs.size"), std::to_string(data.size()));
  EXPECT_EQ(*GetDebugXattr(E(), *file, "user.kvfs.location"), info->location);
  EXPECT_EQ(*GetDebugXattr(E(), *file, "user.kvfs.state"), "committed");
  char want[40];
  std::snprintf(want, sizeof(want), "xxh3-chunks:%016" PRIx64, testing::DataChecksum(data));
  EXPECT_EQ(*GetDebugXattr(E(), *file, "user.kvfs.checksum"), want);
  EngineStats st = E().Stats();
  EXPECT_EQ(*GetDebugXattr(E(), kRootIno, "user.kvfs.used"), std::to_string(st.used_bytes));
  std::string json = *GetDebugXattr(E(), kRootIno, "user.kvfs.stats");
  EXPECT_EQ(json.front(), '{');
  EXPECT_NE(json.find("\"objects\":1"), std::string::npos) << json;
}

}  // namespace
}  // namespace kvfs
