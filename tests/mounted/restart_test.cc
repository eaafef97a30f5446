// Restarts: everything committed before `kvfs umount` is back after the next
// `kvfs mount` of the same stores: bytes, directories (empty ones too),
// modes, owners and times.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

std::string Octal(unsigned mode) {
  char buf[16];
  snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

class RestartTest : public MountedTest {};

struct FileSpec {
  std::string path;
  size_t size;
  uint64_t seed;
};

const std::vector<FileSpec>& Files() {
  static const std::vector<FileSpec> files = {
      {"top-empty", 0, 1},
      {"top-small", 17, 2},
      {"model/layer00/chunk-a", 4096, 3},
      {"model/layer00/chunk-b", 4095, 4},
      {"model/layer01/chunk-a", kMiB + 1, 5},
      {"model/layer01/deeper/still/chunk", 3 * kMiB + 333, 6},
      {"other/x", 12345, 7},
  };
  return files;
}

const std::vector<std::string>& Dirs() {
  static const std::vector<std::string> dirs = {"model",         "model/layer00", "model/layer01",
                                                "model/layer01/deeper", "model/layer01/deeper/still",
                                                "other",         "empty-dir",     "model/empty-nested"};
  return dirs;
}

std::string CheckTree(const std::string& mnt) {
  for (const auto& d : Dirs()) {
    struct stat st {};
    if (stat((mnt + "/" + d).c_str(), &st) != 0) return ErrnoMessage("stat dir " + d);
    if (!S_ISDIR(st.st_mode)) return d + " is not a directory";
  }
  for (const auto& f : Files()) {
    struct stat st {};
    const std::string path = mnt + "/" + f.path;
    if (stat(path.c_str(), &st) != 0) return ErrnoMessage("stat " + f.path);
    if (!S_ISREG(st.st_mode)) return f.path + " is not a regular file";
    if (static_cast<size_t>(st.st_size) != f.size) return f.path + ": wrong size " + std::to_string(st.st_size);
    std::string err = CheckFile(path, MakeData(f.seed, f.size));
    if (!err.empty()) return err;
    err = CheckFileDirect(path, MakeData(f.seed, f.size));
    if (!err.empty()) return err;
  }
  std::vector<std::string> names;
  std::string err = ListDir(mnt + "/empty-dir", &names);
  if (!err.empty()) return err;
  if (!names.empty()) return "empty-dir is not empty after restart: " + names[0];
  err = ListDir(mnt + "/model", &names);
  if (!err.empty()) return err;
  std::sort(names.begin(), names.end());
  if (names != std::vector<std::string>{"empty-nested", "layer00", "layer01"}) {
    std::string got;
    for (const auto& n : names) got += n + " ";
    return "model/ lists: " + got;
  }
  err = ListDir(mnt, &names);
  if (!err.empty()) return err;
  std::sort(names.begin(), names.end());
  if (names != std::vector<std::string>{"empty-dir", "model", "other", "private", "top-empty", "top-small"}) {
    std::string got;
    for (const auto& n : names) got += n + " ";
    return "root lists: " + got;
  }
  return "";
}

std::string CheckPrivate(const std::string& mnt) {
  struct stat st {};
  const std::string path = mnt + "/private";
  if (stat(path.c_str(), &st) != 0) return ErrnoMessage("stat private");
  if ((st.st_mode & 07777) != 0600) {
    char buf[64];
    snprintf(buf, sizeof buf, "private has mode %04o, expected 0600", st.st_mode & 07777);
    return buf;
  }
  return CheckFile(path, MakeData(99, 5000));
}

TEST_F(RestartTest, TreeBytesAndModesSurviveRemount) {
  for (const auto& d : Dirs()) ASSERT_EQ(mkdir(P(d).c_str(), 0755), 0) << ErrnoMessage("mkdir " + d);
  for (const auto& f : Files()) {
    // Half the files through O_DIRECT.
    std::string err = (f.seed % 2 == 0) ? WriteFile(P(f.path), MakeData(f.seed, f.size))
                                        : WriteFileDirect(P(f.path), MakeData(f.seed, f.size));
    ASSERT_EQ(err, "");
  }
  ASSERT_EQ(WriteFile(P("private"), MakeData(99, 5000)), "");
  ASSERT_EQ(chmod(P("private").c_str(), 0600), 0) << ErrnoMessage("chmod");
  ASSERT_EQ(CheckTree(mnt()), "");
  ASSERT_EQ(CheckPrivate(mnt()), "");

  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(RunInChild([this] {
              std::string e = CheckTree(mnt());
              if (e.empty()) e = CheckPrivate(mnt());
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");

  // Twice, to be sure a restart does not lose what the previous restart
  // rebuilt, and that changes after a restart persist too.
  ASSERT_EQ(unlink(P("other/x").c_str()), 0) << ErrnoMessage("unlink");
  ASSERT_EQ(WriteFile(P("other/x"), MakeData(7, 12345)), "");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(RunInChild([this] {
              std::string e = CheckTree(mnt());
              if (e.empty()) e = CheckPrivate(mnt());
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
}

TEST_F(RestartTest, RemovalsSurviveRemount) {
  ASSERT_EQ(mkdir(P("gone-dir").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("kept-dir").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(P("gone"), MakeData(1, 100)), "");
  ASSERT_EQ(WriteFile(P("replaced"), MakeData(2, 2 * kMiB)), "");
  ASSERT_EQ(WriteFile(P("replaced"), MakeData(3, 1000)), "");
  ASSERT_EQ(unlink(P("gone").c_str()), 0);
  ASSERT_EQ(rmdir(P("gone-dir").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(StatErrno(P("gone")), ENOENT);
  EXPECT_EQ(StatErrno(P("gone-dir")), ENOENT);
  EXPECT_EQ(StatErrno(P("kept-dir")), 0);
  EXPECT_EQ(CheckFile(P("replaced"), MakeData(3, 1000)), "");
}

TEST_F(RestartTest, ChmodChownUtimensPersist) {
  ASSERT_EQ(WriteFile(P("file"), MakeData(5, 777)), "");
  ASSERT_EQ(mkdir(P("dir").c_str(), 0755), 0);

  ASSERT_EQ(chmod(P("file").c_str(), 0640), 0) << ErrnoMessage("chmod file");
  ASSERT_EQ(chmod(P("dir").c_str(), 0710), 0) << ErrnoMessage("chmod dir");
  ASSERT_EQ(chown(P("file").c_str(), 1234, 5678), 0) << ErrnoMessage("chown file");
  ASSERT_EQ(chown(P("dir").c_str(), 4321, 8765), 0) << ErrnoMessage("chown dir");
  const timespec file_times[2] = {{1600000000, 111111111}, {1700000000, 123456789}};
  const timespec dir_times[2] = {{1500000000, 0}, {1650000000, 500000000}};
  ASSERT_EQ(utimensat(AT_FDCWD, P("file").c_str(), file_times, 0), 0) << ErrnoMessage("utimensat file");
  ASSERT_EQ(utimensat(AT_FDCWD, P("dir").c_str(), dir_times, 0), 0) << ErrnoMessage("utimensat dir");

  auto check = [this]() -> std::string {
    struct stat f {}, d {};
    if (stat(P("file").c_str(), &f) != 0) return ErrnoMessage("stat file");
    if (stat(P("dir").c_str(), &d) != 0) return ErrnoMessage("stat dir");
    std::string err;
    if ((f.st_mode & 07777) != 0640) err += "file mode " + Octal(f.st_mode & 07777) + "; ";
    if ((d.st_mode & 07777) != 0710) err += "dir mode " + Octal(d.st_mode & 07777) + "; ";
    if (f.st_uid != 1234 || f.st_gid != 5678) {
      err += "file owner " + std::to_string(f.st_uid) + ":" + std::to_string(f.st_gid) + "; ";
    }
    if (d.st_uid != 4321 || d.st_gid != 8765) {
      err += "dir owner " + std::to_string(d.st_uid) + ":" + std::to_string(d.st_gid) + "; ";
    }
    if (f.st_mtim.tv_sec != 1700000000 || f.st_mtim.tv_nsec != 123456789) {
      err += "file mtime " + std::to_string(f.st_mtim.tv_sec) + "." + std::to_string(f.st_mtim.tv_nsec) + "; ";
    }
    if (d.st_mtim.tv_sec != 1650000000 || d.st_mtim.tv_nsec != 500000000) {
      err += "dir mtime " + std::to_string(d.st_mtim.tv_sec) + "." + std::to_string(d.st_mtim.tv_nsec) + "; ";
    }
    std::string content = CheckFile(P("file"), MakeData(5, 777));
    if (!content.empty()) err += content;
    return err.empty() ? "ok" : err;
  };
  EXPECT_EQ(RunInChild(check).Summary(), "ok") << "before remount";
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(RunInChild(check).Summary(), "ok") << "after remount";
}

TEST_F(RestartTest, StoreCanBeMountedAgainRightAfterUmount) {
  // `kvfs umount` waits for the daemon, so back-to-back cycles work.
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE("cycle " + std::to_string(i));
    ASSERT_EQ(WriteFile(P("k" + std::to_string(i)), MakeData(300 + i, 1000 * i)), "");
    ASSERT_NO_FATAL_FAILURE(Remount());
    for (int j = 0; j <= i; ++j) EXPECT_EQ(CheckFile(P("k" + std::to_string(j)), MakeData(300 + j, 1000 * j)), "");
  }
}

}  // namespace
}  // namespace kvfs::mounted_test
