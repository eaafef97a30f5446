// Set-user-ID and set-group-ID bits through a real mount, as a local
// filesystem keeps them: a write, truncate or O_TRUNC open by a process
// without CAP_FSETID clears them (set-group-ID only with group execute),
// chown clears them, a privileged writer keeps them; a set-group-ID
// directory gives new entries its group, and new directories its bit. The
// unprivileged side runs in children that switch to the nobody user, so
// the mount allows other users (allow_other).

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

constexpr uid_t kNobody = 65534;

class SetIdBitsTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"-o", "allow_other"}; }
  void SetUp() override {
    MountedTest::SetUp();
    if (HasFatalFailure()) return;
    // The test folder is private to root; the nobody user must reach the mount.
    ASSERT_EQ(chmod(root().c_str(), 0755), 0) << ErrnoMessage("chmod test folder");
    ASSERT_EQ(chmod(mnt().c_str(), 0777), 0) << ErrnoMessage("chmod mount root");
  }
  // A committed file with mode (chmod'ed, so no umask) owned by owner.
  void MakeFile(const std::string& name, mode_t mode, uid_t owner = 0) {
    ASSERT_EQ(WriteFile(P(name), MakeData(9, 4096)), "");
    ASSERT_EQ(chown(P(name).c_str(), owner, owner), 0) << ErrnoMessage("chown");
    ASSERT_EQ(chmod(P(name).c_str(), mode), 0) << ErrnoMessage("chmod");
  }
};

// Runs fn in a child as the nobody user (no supplementary groups).
std::string AsNobody(const std::function<std::string()>& fn) {
  return RunInChild([&] {
           if (setgroups(0, nullptr) != 0) return ErrnoMessage("setgroups");
           if (setgid(kNobody) != 0) return ErrnoMessage("setgid");
           if (setuid(kNobody) != 0) return ErrnoMessage("setuid");
           return fn();
         })
      .Summary();
}

// The permission bits another process sees.
std::string ModeSeen(const std::string& path) {
  ChildOutcome o = RunInChild([&] {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return ErrnoMessage("stat");
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%04o", st.st_mode & 07777);
    return std::string(buf);
  });
  return o.Summary();
}

std::string WriteOneByte(const std::string& path, int flags = 0) {
  Fd fd(open(path.c_str(), O_WRONLY | flags));
  if (!fd.valid()) return ErrnoMessage("open");
  if (write(fd.get(), "x", 1) != 1) return ErrnoMessage("write");
  if (fd.Close() != 0) return ErrnoMessage("close");
  return "ok";
}

TEST_F(SetIdBitsTest, UnprivilegedWriteClearsThemAndTheChangePersists) {
  ASSERT_NO_FATAL_FAILURE(MakeFile("f", 06777));
  EXPECT_EQ(AsNobody([&] { return WriteOneByte(P("f")); }), "ok");
  EXPECT_EQ(ModeSeen(P("f")), "0777");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(ModeSeen(P("f")), "0777") << "after remount";
}

TEST_F(SetIdBitsTest, SetgidWithoutGroupExecuteIsNotAPrivilegeAndStays) {
  ASSERT_NO_FATAL_FAILURE(MakeFile("f", 06766));
  EXPECT_EQ(AsNobody([&] { return WriteOneByte(P("f")); }), "ok");
  EXPECT_EQ(ModeSeen(P("f")), "2766");
}

TEST_F(SetIdBitsTest, PrivilegedWriteKeepsThem) {
  ASSERT_NO_FATAL_FAILURE(MakeFile("f", 06755));
  EXPECT_EQ(RunInChild([&] { return WriteOneByte(P("f")); }).Summary(), "ok");
  EXPECT_EQ(ModeSeen(P("f")), "6755");
}

TEST_F(SetIdBitsTest, UnprivilegedTruncatesClearThem) {
  ASSERT_NO_FATAL_FAILURE(MakeFile("by-path", 06777));
  ASSERT_NO_FATAL_FAILURE(MakeFile("by-fd", 06777));
  ASSERT_NO_FATAL_FAILURE(MakeFile("by-open", 06777));
  EXPECT_EQ(AsNobody([&] { return truncate(P("by-path").c_str(), 10) == 0 ? "ok" : ErrnoMessage("truncate"); }), "ok");
  EXPECT_EQ(AsNobody([&] {
              Fd fd(open(P("by-fd").c_str(), O_WRONLY));
              if (!fd.valid()) return ErrnoMessage("open");
              if (ftruncate(fd.get(), 10) != 0) return ErrnoMessage("ftruncate");
              return fd.Close() == 0 ? std::string("ok") : ErrnoMessage("close");
            }),
            "ok");
  EXPECT_EQ(AsNobody([&] {
              Fd fd(open(P("by-open").c_str(), O_WRONLY | O_TRUNC));
              if (!fd.valid()) return ErrnoMessage("open O_TRUNC");
              return fd.Close() == 0 ? std::string("ok") : ErrnoMessage("close");
            }),
            "ok");
  EXPECT_EQ(ModeSeen(P("by-path")), "0777");
  EXPECT_EQ(ModeSeen(P("by-fd")), "0777");
  EXPECT_EQ(ModeSeen(P("by-open")), "0777");
}

TEST_F(SetIdBitsTest, ChownClearsThem) {
  ASSERT_NO_FATAL_FAILURE(MakeFile("by-root", 06755));
  ASSERT_EQ(chown(P("by-root").c_str(), 1, 1), 0) << ErrnoMessage("chown");
  EXPECT_EQ(ModeSeen(P("by-root")), "0755");
  // The owner giving the file to its own group.
  ASSERT_NO_FATAL_FAILURE(MakeFile("by-owner", 06755, kNobody));
  EXPECT_EQ(AsNobody([&] { return chown(P("by-owner").c_str(), static_cast<uid_t>(-1), kNobody) == 0 ? "ok" : ErrnoMessage("chown"); }),
            "ok");
  EXPECT_EQ(ModeSeen(P("by-owner")), "0755");
}

TEST_F(SetIdBitsTest, SetgidDirectoryGivesItsGroupAndBitToNewEntries) {
  ASSERT_EQ(mkdir(P("shared").c_str(), 0777), 0);
  ASSERT_EQ(chown(P("shared").c_str(), 0, 4242), 0);
  ASSERT_EQ(chmod(P("shared").c_str(), 02777), 0);
  EXPECT_EQ(AsNobody([&] {
              if (mkdir(P("shared/sub").c_str(), 0755) != 0) return ErrnoMessage("mkdir");
              if (WriteFile(P("shared/file"), MakeData(3, 10)) != "") return std::string("write failed");
              if (symlink("file", P("shared/lnk").c_str()) != 0) return ErrnoMessage("symlink");
              return std::string("ok");
            }),
            "ok");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(RunInChild([&] {
              struct stat st {};
              for (const char* n : {"shared/sub", "shared/file", "shared/lnk"}) {
                if (lstat(P(n).c_str(), &st) != 0) return ErrnoMessage(std::string("lstat ") + n);
                if (st.st_gid != 4242) return std::string(n) + ": group " + std::to_string(st.st_gid);
                if (st.st_uid != kNobody) return std::string(n) + ": owner " + std::to_string(st.st_uid);
              }
              if (stat(P("shared/sub").c_str(), &st) != 0) return ErrnoMessage("stat sub");
              if (!(st.st_mode & S_ISGID)) return std::string("subdirectory without the set-group-ID bit");
              if (stat(P("shared/file").c_str(), &st) != 0) return ErrnoMessage("stat file");
              if (st.st_mode & S_ISGID) return std::string("file took the set-group-ID bit");
              return std::string("ok");
            }).Summary(),
            "ok");
}

}  // namespace
}  // namespace kvfs::mounted_test
