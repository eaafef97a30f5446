// Engine::Fallocate: each supported mode changes the handle's version as
// fallocate(2) changes a file on ext4, the change is committed with the
// version at close (and not before), and what kvfs does not support or
// allow is refused with fallocate's errno.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>

#include <string>
#include <vector>

#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class EngineFallocateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(driver_.Open(1, 64 * kMiB));
    engine_ = &driver_.engine();
  }
  // An open read-write handle of `name`, holding `data` already committed.
  FileHandle* OpenWith(const std::string& name, const std::vector<uint8_t>& data) {
    EXPECT_TRUE(testing::PutFile(*engine_, kRootIno, name, data, {.forget = true}).ok());
    Result<Attr> a = engine_->Lookup(kRootIno, name);
    EXPECT_TRUE(a.ok());
    ino_ = a->ino;
    Result<OpenResult> o = engine_->Open(a->ino, O_RDWR);
    EXPECT_TRUE(o.ok());
    return o.ok() ? o->handle : nullptr;
  }
  void Close(FileHandle* h) {
    ASSERT_OK(engine_->Flush(h));
    engine_->Release(h);
    engine_->Forget(ino_, 1);
  }
  std::vector<uint8_t> Get(const std::string& name) {
    Result<std::vector<uint8_t>> r = testing::GetFile(*engine_, kRootIno, name);
    return r.ok() ? std::move(*r) : std::vector<uint8_t>{'?'};
  }

  testing::EngineDriver driver_;
  Engine* engine_ = nullptr;
  uint64_t ino_ = 0;
};

TEST_F(EngineFallocateTest, ModesChangeTheVersionAsOnExt4) {
  const std::vector<uint8_t> data(10000, 'A');
  FileHandle* h = OpenWith("k", data);
  ASSERT_NE(h, nullptr);
  std::vector<uint8_t> want = data;

  ASSERT_OK(engine_->Fallocate(h, FALLOC_FL_KEEP_SIZE, 0, 4 * kMiB));  // no size change
  ASSERT_OK(engine_->Fallocate(h, 0, 0, 5000));                       // within the size: nothing
  ASSERT_OK(engine_->Fallocate(h, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 200));
  std::fill(want.begin() + 100, want.begin() + 300, 0);
  ASSERT_OK(engine_->Fallocate(h, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 9000, 50000));  // clipped at the size
  std::fill(want.begin() + 9000, want.end(), 0);
  ASSERT_OK(engine_->Fallocate(h, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 5000, 1 << 20));
  std::fill(want.begin() + 5000, want.end(), 0);
  ASSERT_OK(engine_->Fallocate(h, FALLOC_FL_ZERO_RANGE, 2000, 30000));  // zeroes and grows
  std::fill(want.begin() + 2000, want.end(), 0);
  want.resize(32000, 0);
  EXPECT_EQ(Get("k"), data) << "a fallocate was visible before the commit";
  ASSERT_OK(engine_->Fallocate(h, 0, 3 * kMiB, kMiB + 7));  // grows with zeros
  want.resize(4 * kMiB + 7, 0);
  Result<std::vector<uint8_t>> mine = testing::ReadAll(*engine_, h);
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(*mine, want) << "the handle does not read its own fallocates";
  Close(h);
  EXPECT_EQ(Get("k"), want);
}

TEST_F(EngineFallocateTest, WhatIsNotSupportedOrAllowedIsRefused) {
  FileHandle* h = OpenWith("k", std::vector<uint8_t>(5000, 'B'));
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(engine_->Fallocate(h, FALLOC_FL_COLLAPSE_RANGE, 0, 4096).err(), EOPNOTSUPP);
  EXPECT_EQ(engine_->Fallocate(h, FALLOC_FL_INSERT_RANGE, 0, 4096).err(), EOPNOTSUPP);
  EXPECT_EQ(engine_->Fallocate(h, FALLOC_FL_PUNCH_HOLE, 0, 4096).err(), EOPNOTSUPP) << "punch without KEEP_SIZE";
  EXPECT_EQ(engine_->Fallocate(h, 0, 0, 0).err(), EINVAL);
  EXPECT_EQ(engine_->Fallocate(h, 0, 0, 65 * kMiB).err(), ENOSPC) << "larger than the capacity";
  EXPECT_EQ(engine_->Fallocate(h, 0, UINT64_MAX - 10, 100).err(), EFBIG);
  Close(h);
  EXPECT_EQ(Get("k"), std::vector<uint8_t>(5000, 'B')) << "a refused fallocate changed the key";

  Result<Attr> a = engine_->Lookup(kRootIno, "k");
  ASSERT_TRUE(a.ok());
  Result<OpenResult> ro = engine_->Open(a->ino, O_RDONLY);
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(engine_->Fallocate(ro->handle, 0, 0, kMiB).err(), EBADF);
  engine_->Release(ro->handle);
  engine_->Forget(a->ino, 1);
}

}  // namespace
}  // namespace kvfs
