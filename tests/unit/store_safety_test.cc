// A hostile or broken store cannot hurt the host: nothing in a store is
// followed as a symlink (layout directories, fan-out directories, object
// files), a FIFO or other non-regular file in objects/ is skipped without
// blocking, store directories are private (0700), fsck reports headers with
// forged keys or impossible sizes and can check a read-only store, and log
// lines cannot be forged through key names.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/dfs_store.h"
#include "adapters/key_hash.h"
#include "adapters/local_store.h"
#include "adapters/object_directory.h"
#include "core/engine.h"
#include "core/fsck.h"
#include "core/log_text.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::AlignedBuffer;
using testing::Pattern;
using testing::PathExists;
using testing::TempDir;

std::string Describe(const Status& s) { return s.ok() ? "OK" : "errno " + std::to_string(s.err()) + ": " + s.message(); }

// Writes a complete object file (header, data, chunk checksum table) whose
// header says `key` and `size` (size defaults to data.size()), and publishes
// it at `location` (default: where key belongs).
Status PutRaw(Store& store, const std::string& key, const std::vector<uint8_t>& data, std::string location = "",
              std::optional<uint64_t> size = std::nullopt, uint64_t generation = 1) {
  Result<std::unique_ptr<StagingFile>> staging = store.CreateStaging(Store::kUnknownSize);
  if (!staging.ok()) return staging.status();
  uint64_t table_off = ChecksumTableOffset(data.size());
  uint64_t total = table_off + ChecksumTableBytes(data.size());
  AlignedBuffer buf(total);
  ObjectHeader h;
  h.kind = ObjectKind::kFile;
  h.generation = generation;
  h.size = size.value_or(data.size());
  h.checksum = testing::DataChecksum(data);
  h.mode = S_IFREG | 0644;
  h.key = key;
  KVFS_RETURN_IF_ERROR(EncodeHeader(h, buf.data()));
  if (!data.empty()) std::memcpy(buf.data() + kHeaderSize, data.data(), data.size());
  for (uint64_t c = 0; c < ChunkCount(data.size()); ++c) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(kChunkSize, data.size() - c * kChunkSize));
    uint64_t sum = XXH3_64bits(data.data() + c * kChunkSize, len);
    std::memcpy(buf.data() + table_off + c * 8, &sum, 8);
  }
  if (::pwrite((*staging)->fd(), buf.data(), total, 0) != static_cast<ssize_t>(total)) {
    return Status::FromErrno("pwrite staging");
  }
  if (location.empty()) location = store.LocationFor(HashKey(key));
  return store.Publish(**staging, location);
}

std::unique_ptr<LocalStore> OpenLocal(const std::string& root, LocalStoreOptions options = {}) {
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(root, options);
  EXPECT_TRUE(s.ok()) << Describe(s.status());
  return s.ok() ? std::move(*s) : nullptr;
}

std::vector<ScannedObject> ScanAll(Store& store, Status* status) {
  std::vector<ScannedObject> out;
  std::mutex mu;
  *status = store.Scan(
      [&](const ScannedObject& o) {
        std::lock_guard<std::mutex> g(mu);
        out.push_back(o);
      },
      2);
  return out;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class StoreSafetyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  std::string Root() const { return dir_.Sub("store"); }
  // A directory outside the store holding files that must survive.
  std::string MakeVictim() {
    std::string victim = dir_.Sub("victim");
    std::filesystem::create_directories(victim);
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(testing::WriteFile(victim + "/precious-" + std::to_string(i), "keep me"));
    return victim;
  }
  void ExpectVictimIntact(const std::string& victim) {
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(PathExists(victim + "/precious-" + std::to_string(i))) << i;
  }
  // Replaces root/sub (a directory of the store) by a symlink to target.
  void ReplaceWithSymlink(const std::string& sub, const std::string& target) {
    std::error_code ec;
    std::filesystem::remove_all(Root() + "/" + sub, ec);
    ASSERT_EQ(::symlink(target.c_str(), (Root() + "/" + sub).c_str()), 0) << std::strerror(errno);
  }
  TempDir dir_;
};

// ---------------------------------------------------------------- symlinks

// A `staging` symlink used to make the mount's sweep delete every file in
// the directory it pointed to.
TEST_F(StoreSafetyTest, StagingSymlinkIsRefusedAndItsTargetUntouched) {
  { ASSERT_TRUE(OpenLocal(Root())); }
  std::string victim = MakeVictim();
  ASSERT_NO_FATAL_FAILURE(ReplaceWithSymlink("staging", victim));
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(Root(), LocalStoreOptions{});
  ExpectVictimIntact(victim);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ELOOP) << Describe(s.status());
  EXPECT_NE(s.status().message().find("staging"), std::string::npos) << s.status().message();
}

TEST_F(StoreSafetyTest, ObjectsAndQuarantineSymlinksAreRefused) {
  { ASSERT_TRUE(OpenLocal(Root())); }
  std::string victim = MakeVictim();
  for (const char* sub : {"objects", "quarantine"}) {
    SCOPED_TRACE(sub);
    std::string saved = Root() + "/" + sub + ".saved";
    ASSERT_EQ(::rename((Root() + "/" + sub).c_str(), saved.c_str()), 0);
    ASSERT_EQ(::symlink(victim.c_str(), (Root() + "/" + sub).c_str()), 0);
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(Root(), LocalStoreOptions{});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.err(), ELOOP) << Describe(s.status());
    ASSERT_EQ(::unlink((Root() + "/" + sub).c_str()), 0);
    ASSERT_EQ(::rename(saved.c_str(), (Root() + "/" + sub).c_str()), 0);
  }
  ExpectVictimIntact(victim);
  EXPECT_TRUE(OpenLocal(Root()));
}

TEST_F(StoreSafetyTest, DfsStagingSymlinkIsRefusedAndItsTargetUntouched) {
  DfsStoreOptions o;
  o.host_id = "hostA";
  { ASSERT_TRUE(DfsStore::Open(Root(), o).ok()); }
  std::string victim = MakeVictim();
  // Names that look like this host's dead staging files.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(testing::WriteFile(victim + "/hostA~999999" + std::to_string(i) + "~1-0.tmp", "keep me"));
  }
  ASSERT_NO_FATAL_FAILURE(ReplaceWithSymlink("staging", victim));
  Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), o);
  ExpectVictimIntact(victim);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ELOOP) << Describe(s.status());
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(PathExists(victim + "/hostA~999999" + std::to_string(i) + "~1-0.tmp"));
}

// An object file that is a symlink used to be served.
TEST_F(StoreSafetyTest, ObjectFileSymlinkIsNeitherServedNorScanned) {
  auto store = OpenLocal(Root());
  ASSERT_TRUE(store);
  // A valid object for key "a", moved outside the store and linked back.
  std::string location = store->LocationFor(HashKey("a"));
  ASSERT_EQ(Describe(PutRaw(*store, "a", Pattern(1, 5000))), "OK");
  std::string outside = dir_.Sub("outside-object");
  ASSERT_EQ(::rename((Root() + "/" + location).c_str(), outside.c_str()), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (Root() + "/" + location).c_str()), 0);

  Result<int> fd = store->OpenForRead(location);
  EXPECT_FALSE(fd.ok());
  if (fd.ok()) ::close(*fd);
  EXPECT_EQ(fd.err(), ELOOP) << Describe(fd.status());
  Result<ScannedObject> read = store->ReadObject(location);
  EXPECT_FALSE(read.ok());
  Result<ListedObject> listed = store->StatObject(location);
  EXPECT_FALSE(listed.ok());

  Status scan;
  std::vector<ScannedObject> found = ScanAll(*store, &scan);
  EXPECT_TRUE(scan.ok()) << Describe(scan);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_FALSE(found[0].header.ok()) << "a symlinked object was read as a valid object";
  EXPECT_EQ(found[0].header.err(), ELOOP);

  // A header rewrite does not write through the link either.
  std::vector<uint8_t> block(kHeaderSize, 0);
  EXPECT_FALSE(store->WriteHeaderBlock(location, block.data(), true).ok());
  std::vector<uint8_t> head(kHeaderSize);
  int ofd = ::open(outside.c_str(), O_RDONLY);
  ASSERT_GE(ofd, 0);
  ASSERT_EQ(::pread(ofd, head.data(), kHeaderSize, 0), static_cast<ssize_t>(kHeaderSize));
  ::close(ofd);
  EXPECT_TRUE(DecodeHeader(head.data(), kHeaderSize).ok()) << "the link's target was overwritten";

  // Quarantine moves the link itself, never its target.
  EXPECT_EQ(Describe(store->Quarantine(location)), "OK");
  EXPECT_TRUE(PathExists(outside));
}

// The link is planted while no kvfs uses the store (a store in use checks
// each fan-out directory once and remembers it).
TEST_F(StoreSafetyTest, SymlinkedFanOutDirectoryIsRefused) {
  std::string location;
  {
    auto first = OpenLocal(Root());
    ASSERT_TRUE(first);
    ASSERT_EQ(Describe(PutRaw(*first, "a", Pattern(1, 100))), "OK");
    location = first->LocationFor(HashKey("a"));
  }
  std::string victim = MakeVictim();
  // objects/xx -> victim: a publish there would write into the victim.
  std::string l2 = location.substr(0, location.rfind('/'));
  std::error_code ec;
  std::filesystem::remove_all(Root() + "/" + l2, ec);
  ASSERT_EQ(::symlink(victim.c_str(), (Root() + "/" + l2).c_str()), 0);
  auto store = OpenLocal(Root());
  ASSERT_TRUE(store);
  Status scan;
  ScanAll(*store, &scan);
  EXPECT_EQ(scan.err(), ELOOP) << Describe(scan);
  // Publishing into the linked directory does not land in the victim.
  Status put = PutRaw(*store, "a", Pattern(2, 100));
  EXPECT_EQ(put.err(), ELOOP) << Describe(put);
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(victim)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 3u) << "a publish wrote through a symlinked fan-out directory";
}

// ------------------------------------------------------ non-regular files

// A FIFO in objects/ used to hang the mount's scan and fsck forever.
TEST_F(StoreSafetyTest, FifoInObjectsDoesNotBlockScanOrFsck) {
  std::string fifo;
  {
    auto store = OpenLocal(Root());
    ASSERT_TRUE(store);
    ASSERT_EQ(Describe(PutRaw(*store, "good", Pattern(3, 9000))), "OK");
    std::string location = store->LocationFor(HashKey("fifo"));
    std::filesystem::create_directories(Root() + "/" + location.substr(0, location.rfind('/')));
    fifo = Root() + "/" + location;
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  }
  // Run the checks on another thread, so that a blocked open fails the test
  // instead of hanging it (and can then be released).
  auto run = std::async(std::launch::async, [&] {
    LocalStoreOptions so;
    so.create_if_missing = false;
    so.sweep_staging = false;
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(Root(), so);
    if (!store.ok()) return std::string("open: ") + Describe(store.status());
    Status scan;
    std::vector<ScannedObject> found = ScanAll(**store, &scan);
    if (!scan.ok()) return "scan: " + Describe(scan);
    size_t bad = std::count_if(found.begin(), found.end(), [](const ScannedObject& o) { return !o.header.ok(); });
    if (found.size() != 2 || bad != 1) return "scan found " + std::to_string(found.size()) + " objects, " + std::to_string(bad) + " bad";
    Result<FsckReport> r = CheckStore(**store, false);
    if (!r.ok()) return "fsck: " + Describe(r.status());
    if (r->corrupt != 1 || r->files != 1) return "fsck: " + r->ToText();
    return std::string("OK");
  });
  if (run.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "scan or fsck blocked on a FIFO in objects/";
    // Release the blocked open (a writer opening the FIFO), repeatedly until done.
    while (run.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (w >= 0) ::close(w);
    }
  }
  EXPECT_EQ(run.get(), "OK");
}

// ------------------------------------------------------------ permissions

TEST_F(StoreSafetyTest, StoreDirectoriesArePrivate) {
  std::string root = dir_.Sub("new/store");
  auto store = OpenLocal(root);
  ASSERT_TRUE(store);
  ASSERT_EQ(Describe(PutRaw(*store, "k", Pattern(4, 10))), "OK");
  std::string location = store->LocationFor(HashKey("k"));
  std::string l2 = location.substr(0, location.rfind('/'));
  std::string l1 = l2.substr(0, l2.rfind('/'));
  for (const std::string& d : {dir_.Sub("new"), root, root + "/objects", root + "/staging", root + "/quarantine",
                               root + "/" + l1, root + "/" + l2}) {
    EXPECT_EQ(ModeOf(d), 0700u) << d;
  }
  EXPECT_EQ(ModeOf(root + "/.lock"), 0600u);
}

TEST_F(StoreSafetyTest, DfsStoreDirectoriesArePrivate) {
  DfsStoreOptions o;
  o.host_id = "hostA";
  Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), o);
  ASSERT_TRUE(s.ok()) << Describe(s.status());
  for (const char* sub : {"objects", "staging", "quarantine", "cluster", "probe"}) {
    EXPECT_EQ(ModeOf(Root() + "/" + sub), 0700u) << sub;
  }
}

// ------------------------------------------------------------------- fsck

class FsckForgeryTest : public StoreSafetyTest {
 protected:
  FsckReport Check(bool repair, bool read_only = false) {
    LocalStoreOptions so;
    so.create_if_missing = false;
    so.sweep_staging = false;
    so.read_only = read_only;
    auto store = OpenLocal(Root(), so);
    if (!store) return FsckReport{};
    Result<FsckReport> r = CheckStore(*store, repair);
    EXPECT_TRUE(r.ok()) << Describe(r.status());
    return r.ok() ? *r : FsckReport{};
  }
};

TEST_F(FsckForgeryTest, ForgedKeysAreReportedAndQuarantined) {
  const std::vector<std::string> forged = {
      "../x", "a/../../etc/passwd", "/etc/passwd", "a//b", "a/", "./a", "", std::string("a\0b", 3),
      std::string(256, 'n'), "d/" + std::string(300, 'c'),
  };
  {
    auto store = OpenLocal(Root());
    ASSERT_TRUE(store);
    ASSERT_EQ(Describe(PutRaw(*store, "fine", Pattern(5, 3000))), "OK");
    ASSERT_EQ(Describe(PutRaw(*store, "dir/fine", Pattern(6, 3000))), "OK");
    for (size_t i = 0; i < forged.size(); ++i) {
      // Each at a location of its own (the key's hash, or a made-up one).
      std::string location = store->LocationFor(HashKey("forged-" + std::to_string(i)));
      ASSERT_EQ(Describe(PutRaw(*store, forged[i], Pattern(7 + i, 100), location)), "OK") << i;
    }
  }
  FsckReport r = Check(false);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.bad_keys, forged.size()) << r.ToText();
  EXPECT_EQ(r.files, 2u) << r.ToText();
  EXPECT_EQ(r.corrupt, 0u) << r.ToText();
  // Problem lines are one line each, whatever the keys hold.
  for (const std::string& p : r.problems) EXPECT_EQ(p.find('\n'), std::string::npos) << p;
  EXPECT_NE(r.ToText().find("bad key '../x'"), std::string::npos) << r.ToText();
  EXPECT_NE(r.ToJson().find("\"bad_keys\":" + std::to_string(forged.size())), std::string::npos) << r.ToJson();
  FsckReport fixed = Check(true);
  EXPECT_EQ(fixed.repaired, forged.size());
  FsckReport after = Check(false);
  EXPECT_TRUE(after.clean()) << after.ToText();
  EXPECT_EQ(after.files, 2u);
}

TEST_F(FsckForgeryTest, KeyUnderAFileIsReported) {
  {
    auto store = OpenLocal(Root());
    ASSERT_TRUE(store);
    ASSERT_EQ(Describe(PutRaw(*store, "f", Pattern(1, 100))), "OK");
    ASSERT_EQ(Describe(PutRaw(*store, "f/child", Pattern(2, 100))), "OK");
    ASSERT_EQ(Describe(PutRaw(*store, "f/child/grandchild", Pattern(3, 100))), "OK");
  }
  FsckReport r = Check(false);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.bad_keys, 2u) << r.ToText();
  EXPECT_EQ(r.files, 1u) << r.ToText();
  EXPECT_NE(r.ToText().find("'f/child'"), std::string::npos) << r.ToText();
  Check(true);
  FsckReport after = Check(false);
  EXPECT_TRUE(after.clean()) << after.ToText();
}

TEST_F(FsckForgeryTest, OverflowingHeaderSizeIsReported) {
  {
    auto store = OpenLocal(Root());
    ASSERT_TRUE(store);
    // No data, but the header claims almost 2^64 bytes: the footprint sums
    // wrap around to one header block, which the file does have.
    ASSERT_EQ(Describe(PutRaw(*store, "huge", {}, "", UINT64_MAX - 100)), "OK");
    ASSERT_EQ(Describe(PutRaw(*store, "huge2", {}, "", UINT64_MAX - (uint64_t{1} << 20))), "OK");
  }
  FsckReport r = Check(false);
  EXPECT_FALSE(r.clean()) << r.ToText();
  EXPECT_EQ(r.corrupt, 2u) << r.ToText();
  EXPECT_EQ(r.files, 0u) << r.ToText();
}

// The mount's rebuild trusts a store no more than fsck does: forged keys
// and impossible sizes are left out of the index (and on the store, for
// fsck), never turned into ".." entries, absolute paths or huge files.
TEST_F(FsckForgeryTest, MountIndexesNoForgedHeaders) {
  const std::vector<std::string> forged = {
      "../x", "a/../../etc/passwd", "/etc/passwd", "a//b", "a/", "./a", "", std::string("a\0b", 3),
      std::string(256, 'n'), "dir/" + std::string(300, 'c'),
  };
  {
    auto store = OpenLocal(Root());
    ASSERT_TRUE(store);
    ASSERT_EQ(Describe(PutRaw(*store, "fine", Pattern(5, 3000))), "OK");
    ASSERT_EQ(Describe(PutRaw(*store, "dir/fine", Pattern(6, 3000))), "OK");
    for (size_t i = 0; i < forged.size(); ++i) {
      std::string location = store->LocationFor(HashKey("forged-" + std::to_string(i)));
      ASSERT_EQ(Describe(PutRaw(*store, forged[i], Pattern(7 + i, 100), location)), "OK") << i;
    }
    ASSERT_EQ(Describe(PutRaw(*store, "huge", {}, "", UINT64_MAX - 100)), "OK");
  }
  std::vector<std::unique_ptr<Store>> stores;
  LocalStoreOptions so;
  so.create_if_missing = false;
  stores.push_back(OpenLocal(Root(), so));
  ASSERT_TRUE(stores.back());
  EngineOptions eo;
  eo.space.capacity_bytes = 1ULL << 30;
  eo.buffer_count = 4;
  eo.background_eviction = false;
  Result<std::unique_ptr<Engine>> e = Engine::Start(eo, std::move(stores));
  ASSERT_TRUE(e.ok()) << Describe(e.status());
  std::set<std::string> names;
  ASSERT_TRUE((*e)->ReadDir(kRootIno, 0, false, [&](const DirEntry& d) {
                    names.insert(d.name);
                    return true;
                  }).ok());
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "dir", "fine"}));
  Result<Attr> dir = (*e)->Lookup(kRootIno, "dir");
  ASSERT_TRUE(dir.ok());
  std::set<std::string> in_dir;
  ASSERT_TRUE((*e)->ReadDir(dir->ino, 0, false, [&](const DirEntry& d) {
                    in_dir.insert(d.name);
                    return true;
                  }).ok());
  EXPECT_EQ(in_dir, (std::set<std::string>{".", "..", "fine"}));
  (*e)->Forget(dir->ino, 1);
  EXPECT_EQ((*e)->Lookup(kRootIno, "huge").err(), ENOENT);
  EXPECT_EQ((*e)->Stats().objects, 2u);
}

// Unmounts (lazily) on destruction whatever the test did.
struct ScopedMount {
  std::string path;
  bool mounted = false;
  ~ScopedMount() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};

TEST_F(FsckForgeryTest, ReadOnlyStoreIsChecked) {
  ScopedMount m;
  m.path = dir_.Sub("fs");
  std::filesystem::create_directories(m.path);
  if (::mount("kvfs-test-tmpfs", m.path.c_str(), "tmpfs", 0, "size=64m,mode=0700") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  }
  m.mounted = true;
  std::string root = m.path + "/store";
  {
    auto store = OpenLocal(root);
    ASSERT_TRUE(store);
    ASSERT_EQ(Describe(PutRaw(*store, "x", Pattern(1, 300000))), "OK");
    ASSERT_EQ(Describe(PutRaw(*store, "d/y", Pattern(2, 10))), "OK");
  }
  ASSERT_EQ(::mount(nullptr, m.path.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0) << std::strerror(errno);
  LocalStoreOptions so;
  so.create_if_missing = false;
  so.sweep_staging = false;
  so.read_only = true;
  Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(root, so);
  ASSERT_TRUE(store.ok()) << Describe(store.status());
  Result<FsckReport> r = CheckStore(**store, false);
  ASSERT_TRUE(r.ok()) << Describe(r.status());
  EXPECT_TRUE(r->clean()) << r->ToText();
  EXPECT_EQ(r->files, 2u);
  // A writable open is refused by the filesystem, as it should be.
  store->reset();
  Result<std::unique_ptr<LocalStore>> rw = LocalStore::Open(root, LocalStoreOptions{});
  EXPECT_FALSE(rw.ok());
}

// -------------------------------------------------------------------- logs

TEST(LogTextTest, EscapeForLogQuotesControlBytes) {
  EXPECT_EQ(EscapeForLog("plain/key"), "'plain/key'");
  EXPECT_EQ(EscapeForLog("a\nb"), "'a\\nb'");
  EXPECT_EQ(EscapeForLog(std::string("a\0b", 3)), "'a\\x00b'");
  EXPECT_EQ(EscapeForLog("it's\\"), "'it\\'s\\\\'");
  EXPECT_EQ(EscapeForLog("\x1b[31m"), "'\\x1b[31m'");
  EXPECT_EQ(EscapeForLog("caf\xc3\xa9"), "'caf\xc3\xa9'");
}

// A key with a newline must not forge a second log line.
TEST(LogTextTest, EscapingFormatterKeepsOneMessageOnOneLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("escape-test", sink);
  logger->set_formatter(std::make_unique<EscapingFormatter>("[%l] %v"));
  std::string key = "x\n[error] forged line";
  logger->error("commit of '{}' failed: {}", key, "no space");
  logger->info("plain {}", "message");
  logger->flush();
  std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_NE(text.find("[error] commit of 'x\\n[error] forged line' failed: no space\n"), std::string::npos) << text;
  EXPECT_NE(text.find("[info] plain message\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace kvfs
