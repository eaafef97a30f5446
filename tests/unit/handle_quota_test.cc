#include "fuse/handle_quota.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace kvfs {
namespace {

TEST(HandleQuotaTest, EachUserIsCappedAndOthersStillOpen) {
  HandleQuota q(3, 100);
  for (uint64_t fh = 1; fh <= 3; ++fh) {
    ASSERT_TRUE(q.Reserve(1000).ok());
    q.Bind(fh, 1000);
  }
  Status refused = q.Reserve(1000);
  EXPECT_EQ(refused.err(), EMFILE) << refused.message();
  EXPECT_NE(refused.message().find("uid 1000"), std::string::npos) << refused.message();
  EXPECT_EQ(q.HeldBy(1000), 3u);
  // Another user is not affected.
  EXPECT_TRUE(q.Reserve(1001).ok());
  q.Bind(10, 1001);
  EXPECT_EQ(q.Held(), 4u);
  EXPECT_EQ(q.refused(), 1u);
  // A close gives the slot back, whoever closes.
  q.Release(2);
  EXPECT_EQ(q.HeldBy(1000), 2u);
  EXPECT_TRUE(q.Reserve(1000).ok());
  q.Bind(2, 1000);
  EXPECT_EQ(q.Reserve(1000).err(), EMFILE);
}

TEST(HandleQuotaTest, AllUsersTogetherAreCappedWithENFILE) {
  HandleQuota q(10, 4);
  for (uid_t uid = 1; uid <= 4; ++uid) {
    ASSERT_TRUE(q.Reserve(uid).ok());
    q.Bind(uid, uid);
  }
  EXPECT_EQ(q.Reserve(5).err(), ENFILE);
  EXPECT_EQ(q.HeldBy(5), 0u);
  q.Release(3);
  EXPECT_TRUE(q.Reserve(5).ok());
}

TEST(HandleQuotaTest, FailedOpenGivesItsReservationBack) {
  HandleQuota q(1, 10);
  ASSERT_TRUE(q.Reserve(7).ok());
  EXPECT_EQ(q.Reserve(7).err(), EMFILE);
  q.Unreserve(7);
  EXPECT_EQ(q.HeldBy(7), 0u);
  EXPECT_EQ(q.Held(), 0u);
  EXPECT_TRUE(q.Reserve(7).ok());
}

TEST(HandleQuotaTest, ReleaseOfAnUnknownHandleChangesNothing) {
  HandleQuota q(2, 10);
  ASSERT_TRUE(q.Reserve(7).ok());
  q.Bind(1, 7);
  q.Release(99);
  EXPECT_EQ(q.HeldBy(7), 1u);
  q.Release(1);
  q.Release(1);  // twice: no underflow
  EXPECT_EQ(q.Held(), 0u);
  EXPECT_EQ(q.HeldBy(7), 0u);
}

TEST(HandleQuotaTest, DefaultsKeepAReserveForTheDaemon) {
  // 20,000 descriptors: 4,096 kept for the daemon, a quarter of the rest per user.
  EXPECT_EQ(DefaultTotalHandles(20000), 20000u - 4096u);
  EXPECT_EQ(DefaultHandlesPerUser(20000), (20000u - 4096u) / 4);
  // Small limits keep at least 64 for the daemon.
  EXPECT_EQ(DefaultTotalHandles(1024), 1024u - 256u);
  EXPECT_EQ(DefaultTotalHandles(100), 36u);
  EXPECT_GE(DefaultHandlesPerUser(10), 16u);
  for (uint64_t d : {64u, 1024u, 65536u, 1048576u}) {
    EXPECT_LE(DefaultHandlesPerUser(d), DefaultTotalHandles(d));
  }
}

}  // namespace
}  // namespace kvfs
