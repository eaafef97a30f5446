// A key being written, as its creating process sees it (by path, before the
// commit) and as everyone else does (not at all); and closes that must not
// publish: a shell's `> key` (open, dup2, close before the command writes)
// and a forked child that exits while the parent still writes.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class CreatorViewTest : public MountedTest {};
class DuplicateCloseTest : public MountedTest {};

std::string WriteString(int fd, const std::string& s) {
  ssize_t n = write(fd, s.data(), s.size());
  if (n != static_cast<ssize_t>(s.size())) return ErrnoMessage("write");
  return "";
}

// Run in a process other than the creator's: the key must not exist for it.
std::string AbsentForOthers(const std::string& path) {
  return RunInChild([&]() -> std::string {
           int err = StatErrno(path);
           if (err != ENOENT) return "stat by another process gave " + ErrnoName(err);
           Fd fd(open(path.c_str(), O_RDONLY));
           if (fd.valid() || errno != ENOENT) return "open by another process did not give ENOENT";
           return "ok";
         })
      .Summary();
}

std::string ContentForOthers(const std::string& path, const std::string& want) {
  return RunInChild([&]() -> std::string {
           std::vector<uint8_t> got;
           std::string err = ReadFile(path, &got);
           if (!err.empty()) return err;
           std::string text(got.begin(), got.end());
           return text == want ? "ok" : "read \"" + text + "\", want \"" + want + "\"";
         })
      .Summary();
}

TEST_F(CreatorViewTest, CreatorStatsOpensRenamesAndUnlinksItsPendingKeyByPath) {
  const std::string path = P("pending"), renamed = P("renamed"), doomed = P("doomed");
  ChildProcess creator([&](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0640));
    if (!fd.valid()) return ErrnoMessage("create");
    if (auto e = WriteString(fd.get(), "hello "); !e.empty()) return e;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return ErrnoMessage("creator's stat of its pending key");
    if ((st.st_mode & 07777) != 0640) return "creator's stat: mode " + std::to_string(st.st_mode & 07777);
    if (access(path.c_str(), W_OK) != 0) return ErrnoMessage("creator's access");
    ch.Send("stat ok");
    if (auto e = ch.Expect("again"); !e.empty()) return e;
    // Another process was refused in between: the creator still finds it.
    if (stat(path.c_str(), &st) != 0) return ErrnoMessage("creator's stat after another process's miss");
    // A second thread of the same process finds it too.
    int thread_err = -1;
    std::thread([&] { thread_err = StatErrno(path); }).join();
    if (thread_err != 0) return "another thread of the creator: " + ErrnoName(thread_err);
    // Open it again by path and write through the second descriptor.
    Fd again(open(path.c_str(), O_WRONLY));
    if (!again.valid()) return ErrnoMessage("creator's second open");
    if (pwrite(again.get(), "world", 5, 6) != 5) return ErrnoMessage("pwrite");
    if (again.Close() != 0) return ErrnoMessage("close of the second descriptor");
    if (rename(path.c_str(), renamed.c_str()) != 0) return ErrnoMessage("creator's rename of its pending key");
    if (StatErrno(path) != ENOENT) return "the old name is still there after the rename";
    if (StatErrno(renamed) != 0) return "the creator does not find the new name";
    ch.Send("renamed");
    if (auto e = ch.Expect("close"); !e.empty()) return e;
    if (fd.Close() != 0) return ErrnoMessage("close");
    // A second pending key, unlinked by its creator before its close.
    Fd gone(open(doomed.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644));
    if (!gone.valid()) return ErrnoMessage("create doomed");
    if (auto e = WriteString(gone.get(), "never"); !e.empty()) return e;
    if (unlink(doomed.c_str()) != 0) return ErrnoMessage("creator's unlink of its pending key");
    if (StatErrno(doomed) != ENOENT) return "the unlinked pending key is still found";
    if (gone.Close() != 0) return ErrnoMessage("close doomed");
    return "ok";
  });
  ASSERT_EQ(creator.channel().Expect("stat ok"), "");
  EXPECT_EQ(AbsentForOthers(path), "ok");
  EXPECT_EQ(StatErrno(path), ENOENT) << "the test process is another process";
  creator.channel().Send("again");
  ASSERT_EQ(creator.channel().Expect("renamed"), "");
  EXPECT_EQ(AbsentForOthers(renamed), "ok");
  EXPECT_EQ(AbsentForOthers(path), "ok");
  std::vector<std::string> names;
  ASSERT_EQ(ListDir(mnt(), &names), "");
  EXPECT_TRUE(names.empty()) << "readdir lists a pending key: " << names.front();
  creator.channel().Send("close");
  ASSERT_EQ(creator.Wait().Summary(), "ok");
  EXPECT_EQ(ContentForOthers(renamed, "hello world"), "ok");
  EXPECT_EQ(StatErrno(path), ENOENT);
  EXPECT_EQ(StatErrno(doomed), ENOENT);
  names.clear();
  ASSERT_EQ(ListDir(mnt(), &names), "");
  EXPECT_EQ(names, std::vector<std::string>{"renamed"});
}

TEST_F(CreatorViewTest, ForkedChildOfTheCreatorDoesNotSeeThePendingKey) {
  const std::string path = P("parents");
  EXPECT_EQ(RunInChild([&]() -> std::string {
              Fd fd(open(path.c_str(), O_CREAT | O_WRONLY, 0644));
              if (!fd.valid()) return ErrnoMessage("create");
              if (StatErrno(path) != 0) return "the creator does not find its key";
              std::string child = RunInChild([&]() -> std::string {
                                    int err = StatErrno(path);
                                    return err == ENOENT ? "ok" : "the forked child's stat gave " + ErrnoName(err);
                                  }).Summary();
              if (child != "ok") return child;
              if (StatErrno(path) != 0) return "the creator lost its key after its child's miss";
              return fd.Close() == 0 ? "ok" : ErrnoMessage("close");
            }).Summary(),
            "ok");
  EXPECT_EQ(StatErrno(path), 0);
}

// open, dup2 onto another descriptor, close the first, write, close: what a
// shell's `> key` does. Nothing is published before the last close.
TEST_F(DuplicateCloseTest, CloseOfTheOriginalAfterDup2DoesNotPublish) {
  const std::string fresh = P("fresh"), existing = P("existing");
  ASSERT_EQ(WriteFile(existing, std::vector<uint8_t>{'o', 'l', 'd'}), "");
  for (const std::string& path : {fresh, existing}) {
    SCOPED_TRACE(path);
    ChildProcess writer([&](Channel& ch) -> std::string {
      int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
      if (fd < 0) return ErrnoMessage("open");
      if (dup2(fd, 40) != 40) return ErrnoMessage("dup2");
      if (close(fd) != 0) return ErrnoMessage("close of the original");
      ch.Send("duplicated");
      if (auto e = ch.Expect("write"); !e.empty()) return e;
      if (auto e = WriteString(40, "new bytes"); !e.empty()) return e;
      ch.Send("written");
      if (auto e = ch.Expect("close"); !e.empty()) return e;
      if (close(40) != 0) return ErrnoMessage("close of the duplicate");
      return "ok";
    });
    ASSERT_EQ(writer.channel().Expect("duplicated"), "");
    if (path == fresh) {
      EXPECT_EQ(AbsentForOthers(path), "ok") << "the first close published an empty file";
    } else {
      EXPECT_EQ(ContentForOthers(path, "old"), "ok") << "the first close published the truncation";
    }
    writer.channel().Send("write");
    ASSERT_EQ(writer.channel().Expect("written"), "");
    if (path == fresh) EXPECT_EQ(AbsentForOthers(path), "ok");
    else EXPECT_EQ(ContentForOthers(path, "old"), "ok");
    writer.channel().Send("close");
    ASSERT_EQ(writer.Wait().Summary(), "ok");
    // close() of the last descriptor returned: the version is everyone's.
    EXPECT_EQ(ContentForOthers(path, "new bytes"), "ok");
  }
}

// Reads one line from fd within the default timeout.
std::string ReadLine(int fd, std::string* line) {
  line->clear();
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, kDefaultTimeoutMs);
    if (r <= 0) return "no line from the shell";
    char c;
    ssize_t n = read(fd, &c, 1);
    if (n <= 0) return "the shell closed its stderr: " + *line;
    if (c == '\n') return "";
    *line += c;
  }
}

// A real shell: `{ /bin/true; echo ready >&2; read line; printf ...; } > key`.
// The shell opens, dup2()s and closes (a flush with nothing written), then
// forks /bin/true, which inherits the descriptor and exits (a flush from
// another process), and only then writes.
TEST_F(DuplicateCloseTest, ShellRedirectionPublishesOnlyTheWholeOutput) {
  const std::string path = P("from-shell");
  int to_shell[2], from_shell[2];
  ASSERT_EQ(pipe2(to_shell, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(from_shell, O_CLOEXEC), 0);
  const std::string script = "{ /bin/true; echo ready >&2; read line; printf 'first %s' \"$line\"; } > '" + path + "'";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(to_shell[0], 0);
    dup2(from_shell[1], 2);
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(to_shell[0]);
  close(from_shell[1]);
  Fd in(to_shell[1]), err(from_shell[0]);
  std::string line;
  std::string got = ReadLine(err.get(), &line);
  EXPECT_EQ(got, "");
  EXPECT_EQ(line, "ready");
  if (got.empty()) EXPECT_EQ(AbsentForOthers(path), "ok") << "published before the shell wrote anything";
  EXPECT_EQ(WriteString(in.get(), "second\n"), "");
  in.Close();
  // The shell ends once it has read its line and written: its stderr
  // closes (end of file) when it exits.
  std::string rest;
  int status = 0;
  if (ReadLine(err.get(), &rest) == "no line from the shell") {
    kill(pid, SIGKILL);  // still running past the timeout: do not hang the suite
    waitpid(pid, &status, 0);
    FAIL() << "the shell did not finish";
  }
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "shell status " << status << " " << rest;
  EXPECT_EQ(ContentForOthers(path, "first second"), "ok");
}

}  // namespace
}  // namespace kvfs::mounted_test
