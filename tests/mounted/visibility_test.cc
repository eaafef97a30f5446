// What other processes see while a key is being written, replaced, renamed
// over or removed: uncommitted versions are invisible, open handles are
// leases on the version they opened, rename is atomic.

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

class VisibilityTest : public MountedTest {};
class LeaseTest : public MountedTest {};
class RenameTest : public MountedTest {};

std::string WriteAllFd(int fd, const uint8_t* data, size_t size) {
  size_t off = 0;
  while (off < size) {
    ssize_t n = write(fd, data + off, std::min<size_t>(size - off, 300000));
    if (n < 0) return ErrnoMessage("write");
    off += static_cast<size_t>(n);
  }
  return "";
}

bool Listed(const std::string& dir, const std::string& name, std::string* error) {
  std::vector<std::string> names;
  *error = ListDir(dir, &names);
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Checks, from the calling process, that `path` (named `name` in `dir`) does
// not exist for it in any way an engine would probe.
std::string ExpectAbsent(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  int err = StatErrno(path);
  if (err != ENOENT) return "stat(" + path + ") gave " + ErrnoName(err) + ", expected ENOENT";
  if (access(path.c_str(), F_OK) == 0 || errno != ENOENT) return "access(F_OK) did not give ENOENT";
  Fd fd(open(path.c_str(), O_RDONLY));
  if (fd.valid() || errno != ENOENT) return "open(O_RDONLY) did not give ENOENT: " + ErrnoName(errno);
  std::string list_error;
  if (Listed(dir, name, &list_error)) return "readdir lists " + name + " before it is committed";
  return list_error;
}

std::string ExpectContent(const std::string& path, const std::vector<uint8_t>& want) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return ErrnoMessage("stat(" + path + ")");
  if (static_cast<size_t>(st.st_size) != want.size()) {
    return "st_size " + std::to_string(st.st_size) + " != " + std::to_string(want.size());
  }
  std::string err = CheckFile(path, want);
  if (err.empty()) err = CheckFileDirect(path, want);
  return err;
}

TEST_F(VisibilityTest, NewKeyInvisibleUntilWriterCloses) {
  ASSERT_EQ(mkdir(P("layer0").c_str(), 0755), 0) << ErrnoMessage("mkdir");
  const std::string dir = P("layer0");
  const std::string path = dir + "/chunk-0001";
  const auto data = MakeData(2, 3 * kMiB + 5);

  ChildProcess writer([&](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644));
    if (!fd.valid()) return ErrnoMessage("writer open");
    std::string err = WriteAllFd(fd.get(), data.data(), data.size() / 2);
    if (!err.empty()) return err;
    ch.Send("half");
    if (auto e = ch.Expect("more"); !e.empty()) return e;
    err = WriteAllFd(fd.get(), data.data() + data.size() / 2, data.size() - data.size() / 2);
    if (!err.empty()) return err;
    ch.Send("written");
    if (auto e = ch.Expect("close"); !e.empty()) return e;
    if (fd.Close() != 0) return ErrnoMessage("writer close");
    ch.Send("closed");
    return "ok";
  });

  // A second process that probes the key across the whole life of the writer
  // (so negative lookups it caused must not hide the key after the commit).
  ChildProcess prober([&](Channel& ch) -> std::string {
    for (;;) {
      auto msg = ch.Recv();
      if (!msg) return "prober: no message";
      if (*msg == "absent?") {
        std::string err = ExpectAbsent(dir, "chunk-0001");
        ch.Send(err.empty() ? "absent" : err);
      } else if (*msg == "present?") {
        std::string err = ExpectContent(path, data);
        std::string list_error;
        if (err.empty() && !Listed(dir, "chunk-0001", &list_error)) err = "not listed by readdir " + list_error;
        ch.Send(err.empty() ? "present" : err);
      } else if (*msg == "bye") {
        return "ok";
      }
    }
  });

  ASSERT_EQ(writer.channel().Expect("half"), "");
  prober.channel().Send("absent?");
  EXPECT_EQ(prober.channel().Recv().value_or("timeout"), "absent") << "while half written";
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectAbsent(dir, "chunk-0001");
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  // The test process is another process too.
  EXPECT_EQ(ExpectAbsent(dir, "chunk-0001"), "");

  writer.channel().Send("more");
  ASSERT_EQ(writer.channel().Expect("written"), "");
  prober.channel().Send("absent?");
  EXPECT_EQ(prober.channel().Recv().value_or("timeout"), "absent") << "fully written, not closed";
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectAbsent(dir, "chunk-0001");
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");

  writer.channel().Send("close");
  ASSERT_EQ(writer.channel().Expect("closed"), "");
  // close() returned, so the commit is done: everyone sees it now.
  prober.channel().Send("present?");
  EXPECT_EQ(prober.channel().Recv().value_or("timeout"), "present");
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectContent(path, data);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  EXPECT_EQ(ExpectContent(path, data), "");

  prober.channel().Send("bye");
  EXPECT_EQ(prober.Wait().Summary(), "ok");
  EXPECT_EQ(writer.Wait().Summary(), "ok");
}

TEST_F(VisibilityTest, EmptyNewKeyInvisibleUntilClose) {
  const std::string path = P("empty-key");
  ChildProcess writer([&](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_CREAT | O_WRONLY, 0644));
    if (!fd.valid()) return ErrnoMessage("open");
    ch.Send("created");
    if (auto e = ch.Expect("close"); !e.empty()) return e;
    if (fd.Close() != 0) return ErrnoMessage("close");
    return "ok";
  });
  ASSERT_EQ(writer.channel().Expect("created"), "");
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectAbsent(mnt(), "empty-key");
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  writer.channel().Send("close");
  ASSERT_EQ(writer.Wait().Summary(), "ok");
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectContent(path, {});
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
}

TEST_F(VisibilityTest, FsyncCommitsWhileStillOpen) {
  const std::string path = P("fsynced");
  const auto first = MakeData(21, 2 * kMiB + 9);
  const auto more = MakeData(22, 4096 + 3);
  ChildProcess writer([&](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_CREAT | O_WRONLY, 0644));
    if (!fd.valid()) return ErrnoMessage("open");
    std::string err = WriteAllFd(fd.get(), first.data(), first.size());
    if (!err.empty()) return err;
    if (fsync(fd.get()) != 0) return ErrnoMessage("fsync");
    ch.Send("fsynced");
    if (auto e = ch.Expect("append"); !e.empty()) return e;
    err = WriteAllFd(fd.get(), more.data(), more.size());
    if (!err.empty()) return err;
    ch.Send("appended");
    if (auto e = ch.Expect("close"); !e.empty()) return e;
    if (fd.Close() != 0) return ErrnoMessage("close");
    return "ok";
  });
  ASSERT_EQ(writer.channel().Expect("fsynced"), "");
  // fsync committed the first part: visible, byte-exact.
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectContent(path, first);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  writer.channel().Send("append");
  ASSERT_EQ(writer.channel().Expect("appended"), "");
  // Writes after the fsync are not committed yet: others still see `first`.
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectContent(path, first);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  writer.channel().Send("close");
  ASSERT_EQ(writer.Wait().Summary(), "ok");
  std::vector<uint8_t> all = first;
  all.insert(all.end(), more.begin(), more.end());
  EXPECT_EQ(RunInChild([&] {
              std::string e = ExpectContent(path, all);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
}

// A child that opens `path` (buffered and O_DIRECT), checks it reads `want`,
// then answers "check" messages by re-reading both fds from offset 0.
ChildProcess::Body LeasedReader(const std::string& path, const std::vector<uint8_t>& want) {
  return [path, &want](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_RDONLY));
    if (!fd.valid()) return ErrnoMessage("reader open");
    Fd dfd(open(path.c_str(), O_RDONLY | O_DIRECT));
    if (!dfd.valid()) return ErrnoMessage("reader open O_DIRECT");
    std::string err = CheckFd(fd.get(), want);
    if (err.empty()) err = CheckFd(dfd.get(), want, /*direct=*/true);
    if (!err.empty()) return "initial read: " + err;
    ch.Send("opened");
    for (;;) {
      auto msg = ch.Recv();
      if (!msg) return "reader: no message";
      if (*msg == "done") break;
      // Reads until EOF, so a short (truncated) view of the lease fails too.
      err = CheckFd(fd.get(), want);
      if (!err.empty()) err = "buffered fd: " + err;
      if (err.empty()) {
        err = CheckFd(dfd.get(), want, /*direct=*/true);
        if (!err.empty()) err = "O_DIRECT fd: " + err;
      }
      ch.Send(err.empty() ? "same" : err);
    }
    return "ok";
  };
}

std::string NewOpenSees(const std::string& path, const std::vector<uint8_t>& want) {
  return RunInChild([&] {
           std::string e = ExpectContent(path, want);
           return e.empty() ? "ok" : e;
         })
      .Summary();
}

std::string NewOpenSeesNothing(const std::string& path) {
  return RunInChild([&]() -> std::string {
           int err = StatErrno(path);
           if (err != ENOENT) return "stat gave " + ErrnoName(err);
           Fd fd(open(path.c_str(), O_RDONLY));
           if (fd.valid() || errno != ENOENT) return "open did not give ENOENT";
           return "ok";
         })
      .Summary();
}

TEST_F(LeaseTest, OpenReaderKeepsOldBytesThroughOverwriteAndUnlink) {
  const std::string path = P("kv-chunk");
  const auto old_bytes = MakeData(31, 2 * kMiB + 3);
  const auto new_bytes = MakeData(32, kMiB + 77);
  ASSERT_EQ(WriteFile(path, old_bytes), "");

  ChildProcess reader(LeasedReader(path, old_bytes));
  ASSERT_EQ(reader.channel().Expect("opened"), "");
  auto reader_check = [&reader]() {
    reader.channel().Send("check");
    return reader.channel().Recv().value_or("timeout");
  };

  ChildProcess writer([&](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_WRONLY | O_TRUNC));
    if (!fd.valid()) return ErrnoMessage("writer open O_TRUNC");
    std::string err = WriteAllFd(fd.get(), new_bytes.data(), new_bytes.size() / 3);
    if (!err.empty()) return err;
    ch.Send("partial");
    if (auto e = ch.Expect("finish"); !e.empty()) return e;
    err = WriteAllFd(fd.get(), new_bytes.data() + new_bytes.size() / 3, new_bytes.size() - new_bytes.size() / 3);
    if (!err.empty()) return err;
    ch.Send("written");
    if (auto e = ch.Expect("close"); !e.empty()) return e;
    if (fd.Close() != 0) return ErrnoMessage("writer close");
    ch.Send("closed");
    return "ok";
  });

  // Truncated and partly rewritten, not committed.
  ASSERT_EQ(writer.channel().Expect("partial"), "");
  EXPECT_EQ(reader_check(), "same") << "reader during uncommitted overwrite";
  EXPECT_EQ(NewOpenSees(path, old_bytes), "ok") << "others must see the previous version until commit";

  writer.channel().Send("finish");
  ASSERT_EQ(writer.channel().Expect("written"), "");
  EXPECT_EQ(reader_check(), "same");
  EXPECT_EQ(NewOpenSees(path, old_bytes), "ok");

  writer.channel().Send("close");
  ASSERT_EQ(writer.channel().Expect("closed"), "");
  EXPECT_EQ(writer.Wait().Summary(), "ok");
  EXPECT_EQ(reader_check(), "same") << "reader after the overwrite committed";
  EXPECT_EQ(NewOpenSees(path, new_bytes), "ok") << "a new open must see the committed overwrite";

  // Another process unlinks the key: the name goes at once, the reader's
  // bytes stay.
  EXPECT_EQ(RunInChild([&] { return unlink(path.c_str()) == 0 ? std::string("ok") : ErrnoMessage("unlink"); })
                .Summary(),
            "ok");
  EXPECT_EQ(NewOpenSeesNothing(path), "ok");
  EXPECT_EQ(reader_check(), "same") << "reader after unlink";

  reader.channel().Send("done");
  EXPECT_EQ(reader.Wait().Summary(), "ok");
  EXPECT_EQ(NewOpenSeesNothing(path), "ok");
}

TEST_F(LeaseTest, ReaderKeepsBytesAfterUnlinkAndRecreate) {
  const std::string path = P("recreated");
  const auto first = MakeData(41, 5 * kMiB + 1);
  const auto second = MakeData(42, 100);
  ASSERT_EQ(WriteFile(path, first), "");

  ChildProcess reader(LeasedReader(path, first));
  ASSERT_EQ(reader.channel().Expect("opened"), "");
  auto reader_check = [&reader]() {
    reader.channel().Send("check");
    return reader.channel().Recv().value_or("timeout");
  };

  EXPECT_EQ(RunInChild([&] { return unlink(path.c_str()) == 0 ? std::string("ok") : ErrnoMessage("unlink"); })
                .Summary(),
            "ok");
  EXPECT_EQ(NewOpenSeesNothing(path), "ok");
  EXPECT_EQ(reader_check(), "same");

  EXPECT_EQ(RunInChild([&] {
              std::string e = WriteFile(path, second);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  EXPECT_EQ(NewOpenSees(path, second), "ok");
  EXPECT_EQ(reader_check(), "same") << "reader after a new key took the name";

  reader.channel().Send("done");
  EXPECT_EQ(reader.Wait().Summary(), "ok");
  EXPECT_EQ(NewOpenSees(path, second), "ok");
}

TEST_F(LeaseTest, InPlaceRewriteIsCopyOnWrite) {
  // Open without O_TRUNC and overwrite a range in the middle: others see the
  // old bytes until close, then the patched object; an open reader keeps old.
  const std::string path = P("patched");
  const auto original = MakeData(51, 3 * kMiB + 11);
  const auto patch = MakeData(52, 10000);
  const size_t patch_at = kMiB - 5000;
  ASSERT_EQ(WriteFile(path, original), "");
  auto patched = original;
  std::copy(patch.begin(), patch.end(), patched.begin() + patch_at);

  ChildProcess reader(LeasedReader(path, original));
  ASSERT_EQ(reader.channel().Expect("opened"), "");

  ChildProcess writer([&](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_RDWR));
    if (!fd.valid()) return ErrnoMessage("open O_RDWR");
    if (pwrite(fd.get(), patch.data(), patch.size(), patch_at) != static_cast<ssize_t>(patch.size())) {
      return ErrnoMessage("pwrite");
    }
    // The writer itself reads its own draft.
    std::string err = CheckFd(fd.get(), patched);
    if (!err.empty()) return "writer reading its draft: " + err;
    ch.Send("patched");
    if (auto e = ch.Expect("close"); !e.empty()) return e;
    if (fd.Close() != 0) return ErrnoMessage("close");
    return "ok";
  });
  ASSERT_EQ(writer.channel().Expect("patched"), "");
  EXPECT_EQ(NewOpenSees(path, original), "ok");
  writer.channel().Send("close");
  EXPECT_EQ(writer.Wait().Summary(), "ok");
  EXPECT_EQ(NewOpenSees(path, patched), "ok");
  reader.channel().Send("check");
  EXPECT_EQ(reader.channel().Recv().value_or("timeout"), "same");
  reader.channel().Send("done");
  EXPECT_EQ(reader.Wait().Summary(), "ok");
}

TEST_F(RenameTest, RenameOverExistingKeyIsAtomic) {
  // SGLang's pattern: write key.tmp, rename over key. Readers loop over the
  // key the whole time and must only ever see one complete version.
  constexpr int kVersions = 32;
  std::vector<std::vector<uint8_t>> versions;
  for (int v = 0; v < kVersions; ++v) versions.push_back(MakeData(100 + v, 256 * 1024 + 4096 * v + v));
  const std::string key = P("kv/key");
  const std::string tmp = P("kv/key.tmp");
  ASSERT_EQ(mkdir(P("kv").c_str(), 0755), 0);
  ASSERT_EQ(WriteFile(key, versions[0]), "");

  auto identify = [&versions](const std::vector<uint8_t>& got) -> int {
    for (int v = 0; v < kVersions; ++v) {
      if (got == versions[v]) return v;
    }
    return -1;
  };

  // A reader holding version 0 open across all the renames.
  ChildProcess holder(LeasedReader(key, versions[0]));
  ASSERT_EQ(holder.channel().Expect("opened"), "");

  auto looping_reader = [&](Channel& ch) -> std::string {
    int reads = 0, last = 0;
    std::vector<int> seen(kVersions, 0);
    for (;;) {
      std::vector<uint8_t> got;
      std::string err = (reads % 2 == 0) ? ReadFile(key, &got) : ReadFileDirect(key, &got);
      if (!err.empty()) return "read #" + std::to_string(reads) + ": " + err;
      int v = identify(got);
      if (v < 0) {
        struct stat st {};
        int stat_err = StatErrno(key) == 0 && stat(key.c_str(), &st) == 0 ? 0 : errno;
        std::string why = "torn or unknown content in " + std::string(reads % 2 == 0 ? "buffered" : "O_DIRECT") +
                          " read #" + std::to_string(reads) + " (previous version seen: " + std::to_string(last) +
                          "), size " + std::to_string(got.size()) + "; stat now: " +
                          (stat_err == 0 ? "size " + std::to_string(st.st_size) : ErrnoName(stat_err));
        for (int c = 0; c < kVersions; ++c) {
          if (!got.empty() && got.size() <= versions[c].size() &&
              std::equal(got.begin(), got.end(), versions[c].begin())) {
            why += "; it is a truncated prefix of version " + std::to_string(c);
          } else if (got.size() == versions[c].size()) {
            why += "; vs version " + std::to_string(c) + ": " + CompareBytes(got, versions[c]);
          }
        }
        return why;
      }
      if (v < last) return "version went backwards: " + std::to_string(last) + " then " + std::to_string(v);
      last = v;
      ++seen[v];
      if (++reads == 1) ch.Send("started");
      if (ch.Recv(0)) break;  // "stop"
      if (reads > 100000) return "never told to stop";
    }
    std::string summary = "ok";
    for (int v = 0; v < kVersions; ++v) {
      if (seen[v] > 0) summary += " v" + std::to_string(v) + "x" + std::to_string(seen[v]);
    }
    return summary;
  };
  ChildProcess reader1(looping_reader);
  ChildProcess reader2(looping_reader);
  ASSERT_EQ(reader1.channel().Expect("started"), "");
  ASSERT_EQ(reader2.channel().Expect("started"), "");

  ChildOutcome writer = RunInChild([&]() -> std::string {
    for (int v = 1; v < kVersions; ++v) {
      std::string err = WriteFile(tmp, versions[v], 77777);
      if (!err.empty()) return err;
      if (rename(tmp.c_str(), key.c_str()) != 0) return ErrnoMessage("rename " + std::to_string(v));
      if (int e = StatErrno(tmp); e != ENOENT) return "key.tmp still there after rename: " + ErrnoName(e);
      err = CheckFile(key, versions[v]);
      if (!err.empty()) return "after rename " + std::to_string(v) + ": " + err;
    }
    return "ok";
  });
  EXPECT_EQ(writer.Summary(), "ok");

  reader1.channel().Send("stop");
  reader2.channel().Send("stop");
  ChildOutcome r1 = reader1.Wait();
  ChildOutcome r2 = reader2.Wait();
  EXPECT_EQ(r1.Summary().substr(0, 2), "ok") << r1.Summary();
  EXPECT_EQ(r2.Summary().substr(0, 2), "ok") << r2.Summary();

  // The holder still reads version 0 even though it was renamed over many times.
  holder.channel().Send("check");
  EXPECT_EQ(holder.channel().Recv().value_or("timeout"), "same");
  holder.channel().Send("done");
  EXPECT_EQ(holder.Wait().Summary(), "ok");

  EXPECT_EQ(NewOpenSees(key, versions[kVersions - 1]), "ok");
  EXPECT_EQ(NewOpenSeesNothing(tmp), "ok");
  std::vector<std::string> names;
  ASSERT_EQ(ListDir(P("kv"), &names), "");
  EXPECT_EQ(names, std::vector<std::string>{"key"});
}

TEST_F(RenameTest, RenameDirectoryMovesItsKeys) {
  ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("a/sub").c_str(), 0755), 0);
  const auto x = MakeData(61, 70000);
  const auto y = MakeData(62, 1);
  ASSERT_EQ(WriteFile(P("a/x"), x), "");
  ASSERT_EQ(WriteFile(P("a/sub/y"), y), "");
  ASSERT_EQ(rename(P("a").c_str(), P("b").c_str()), 0) << ErrnoMessage("rename dir");
  EXPECT_EQ(NewOpenSeesNothing(P("a/x")), "ok");
  EXPECT_EQ(NewOpenSees(P("b/x"), x), "ok");
  EXPECT_EQ(NewOpenSees(P("b/sub/y"), y), "ok");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(StatErrno(P("a")), ENOENT);
  EXPECT_EQ(NewOpenSees(P("b/x"), x), "ok");
  EXPECT_EQ(NewOpenSees(P("b/sub/y"), y), "ok");
}

TEST_F(RenameTest, RenameNoReplaceRefusesExistingTarget) {
  ASSERT_EQ(WriteFile(P("src"), MakeData(71, 10)), "");
  ASSERT_EQ(WriteFile(P("dst"), MakeData(72, 20)), "");
  EXPECT_EQ(renameat2(AT_FDCWD, P("src").c_str(), AT_FDCWD, P("dst").c_str(), RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST) << ErrnoName(errno);
  EXPECT_EQ(CheckFile(P("src"), MakeData(71, 10)), "");
  EXPECT_EQ(CheckFile(P("dst"), MakeData(72, 20)), "");
}

}  // namespace
}  // namespace kvfs::mounted_test
