// MountedTest: a googletest fixture that gives every test a fresh, real kvfs
// mount, plus the small toolkit the mounted tests share: deterministic test
// data, file helpers that report errors as strings, forked child processes
// that talk to the test through pipes, command execution, /proc/mounts
// queries and a minimal JSON reader for `kvfs stats --json`.
//
// Layout. SetUp creates ${TMPDIR:-/tmp}/kvfs-test-XXXXXX/ with mnt/ and one
// folder per store (store/ by default), then runs
// `kvfs mount <mnt> --store <store> [extra args]` and checks that the mount
// shows up in /proc/mounts as fuse.kvfs. TearDown always unmounts (`kvfs
// umount`, falling back to `umount -l`) and removes the folder without
// crossing into a mount that is still there.
//
// Processes. The contract is about what *other* processes see, so tests run
// the interesting side of each scenario in forked children (ChildProcess,
// RunInChild). A child's body returns a string (by convention "ok" or an
// error description) that comes back to the parent through a pipe; children
// and parent synchronise with length-prefixed messages over a Channel (a pair
// of pipes), never with sleeps. Every wait has a deadline, so a hung mount
// fails a test instead of blocking it forever.
//
// Helpers below never use gtest assertions, so they are safe inside forked
// children; they return "" (or a value) on success and a description of the
// failing call, with its errno name, otherwise.
//
// Thread-safety: none of this is meant to be shared between threads; the
// test process is single-threaded and each child owns its own copies.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kvfs::mounted_test {

constexpr int kDefaultTimeoutMs = 120 * 1000;
constexpr size_t kMiB = 1024 * 1024;

// ---------------------------------------------------------------- data

// Deterministic pseudo-random bytes (splitmix64): the same (seed, size) always
// gives the same bytes, and the first n bytes of a longer run equal a shorter
// run with the same seed.
std::vector<uint8_t> MakeData(uint64_t seed, size_t size);

// "" when got == want, else a description (sizes, first differing offset).
std::string CompareBytes(const uint8_t* got, size_t got_size, const uint8_t* want, size_t want_size);
std::string CompareBytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want);

// "ENOENT" for ENOENT, "errno 1234" for unknown values, "OK" for 0.
std::string ErrnoName(int err);
// "<what>: ENOENT (No such file or directory)" for the current errno.
std::string ErrnoMessage(const std::string& what);

// Creates a fresh test folder, ${TMPDIR:-/tmp}/kvfs-test-XXXXXX (the
// cleanup step looks for mounts under such folders), and sets *root to its
// real path. "" or what failed.
std::string MakeTestRoot(std::string* root);

// ---------------------------------------------------------------- fds

// Owns one file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& other) noexcept : fd_(other.Release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();
  void Reset(int fd = -1);
  // close(2) now; returns its result (0 or -1 with errno set).
  int Close();

 private:
  int fd_ = -1;
};

// A buffer aligned for O_DIRECT (4 KiB by default), zero-filled.
class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t size, size_t alignment = 4096);
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  uint8_t* data() { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// ---------------------------------------------------------------- files
// All return "" on success and an error description otherwise.

// Creates or truncates path (O_CREAT|O_WRONLY|O_TRUNC|extra_flags) and writes
// data with write(2) calls of at most `chunk` bytes, then close(2)s it (the
// commit point) and checks that close succeeded.
std::string WriteFile(const std::string& path, const std::vector<uint8_t>& data, size_t chunk = kMiB,
                      mode_t mode = 0644, int extra_flags = 0);
// Writes with O_DIRECT from a 4 KiB-aligned buffer. Lengths that are not a
// multiple of 4096 are handled by writing the tail as a whole zero-padded
// 4 KiB block (still O_DIRECT) and then ftruncate(2)ing the file to its exact
// size before close, the way O_DIRECT engines write unaligned objects.
std::string WriteFileDirect(const std::string& path, const std::vector<uint8_t>& data, size_t chunk = kMiB);
// The last `lines` lines of a text file (a daemon's log), each ending in a
// newline; "(no log at PATH)" when it cannot be opened.
std::string FileTail(const std::string& path, size_t lines = 40);
// Reads the whole file with read(2) calls of `chunk` bytes until EOF.
std::string ReadFile(const std::string& path, std::vector<uint8_t>* out, size_t chunk = kMiB);
// Reads the whole file with O_DIRECT into an aligned buffer until EOF.
std::string ReadFileDirect(const std::string& path, std::vector<uint8_t>* out, size_t chunk = kMiB);
// Reads everything from offset 0 of an open fd with pread(2) until EOF.
// With direct = true the reads use an aligned bounce buffer (for O_DIRECT fds).
std::string ReadAllFd(int fd, std::vector<uint8_t>* out, bool direct = false);
// "" when the file (read buffered) holds exactly `want`.
std::string CheckFile(const std::string& path, const std::vector<uint8_t>& want);
// "" when the file read with O_DIRECT holds exactly `want`.
std::string CheckFileDirect(const std::string& path, const std::vector<uint8_t>& want);
// "" when the open fd reads (from offset 0) exactly `want`.
std::string CheckFd(int fd, const std::vector<uint8_t>& want, bool direct = false);
// 0 when stat(path) succeeds, else its errno.
int StatErrno(const std::string& path);
// Names in a directory (opendir/readdir, without "." and ".."), in listing
// order. Returns "" or an error.
std::string ListDir(const std::string& path, std::vector<std::string>* names);

// ---------------------------------------------------------------- processes

// A running command's outcome; exit_code is -1 when it did not exit normally.
struct CommandResult {
  int exit_code = -1;
  int term_signal = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
  std::string Describe() const;
};

// Runs argv[0] (a path) with argv, stdin from /dev/null, no inherited fds
// beyond 0-2, waits up to timeout_ms and captures stdout/stderr (in memfds,
// so a daemon that keeps them open cannot block the wait).
CommandResult RunCommand(const std::vector<std::string>& argv, int timeout_ms = 60 * 1000);

// One end of a message pipe pair between a parent and a child. Messages are
// length-prefixed byte strings.
class Channel {
 public:
  Channel() = default;
  Channel(int read_fd, int write_fd) : in_(read_fd), out_(write_fd) {}
  bool Send(std::string_view message);
  // The next message; nullopt on timeout or when the other side is gone.
  // timeout_ms = 0 polls without waiting.
  std::optional<std::string> Recv(int timeout_ms = kDefaultTimeoutMs);
  // "" when the next message is `want`, else a description of what came.
  std::string Expect(std::string_view want, int timeout_ms = kDefaultTimeoutMs);

 private:
  Fd in_;
  Fd out_;
};

struct ChildOutcome {
  bool exited = false;  // exited normally (with _exit(0) after its body)
  int exit_code = -1;
  int term_signal = 0;
  bool timed_out = false;
  std::string result;  // what the body returned
  // The body's result when the child exited cleanly, else why not.
  std::string Summary() const;
};

// A forked child running body(channel). The body's return value travels
// back through a pipe; the child then _exit(0)s (no gtest, no atexit). An
// exception in the body becomes the result "exception: ...".
class ChildProcess {
 public:
  using Body = std::function<std::string(Channel&)>;
  explicit ChildProcess(Body body);
  // Kills (SIGKILL) and reaps the child if Wait() was not called.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Parent side of the channel.
  Channel& channel() { return channel_; }
  // Waits for the result and the exit; kills the child after timeout_ms.
  ChildOutcome Wait(int timeout_ms = kDefaultTimeoutMs);

 private:
  pid_t pid_ = -1;
  Channel channel_;
  Fd result_fd_;
  bool waited_ = false;
};

// Runs fn in a forked child and waits for it. Use Summary() == "ok".
ChildOutcome RunInChild(const std::function<std::string()>& fn, int timeout_ms = kDefaultTimeoutMs);

// ---------------------------------------------------------------- mounts

// True when /proc/mounts lists a fuse.kvfs mount at exactly `path`.
bool IsKvfsMounted(const std::string& path);
// Number of /proc/mounts entries (any type) at exactly `path`.
int CountMountsAt(const std::string& path);

// ---------------------------------------------------------------- JSON

// Just enough JSON for `kvfs stats --json`.
struct JsonMember;
struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string text;  // string value, or the number's literal text
  std::vector<JsonValue> items;
  // Not std::pair<std::string, JsonValue>: a pair of a type still being
  // defined does not compile with clang's libstdc++ headers.
  std::vector<JsonMember> members;

  bool IsNumber() const { return type == Type::kNumber; }
  // Member by key, or nullptr (objects only).
  const JsonValue* Find(std::string_view key) const;
  // The number as an unsigned integer (0 when not a non-negative integer).
  uint64_t AsU64() const;
};
struct JsonMember {
  std::string key;
  JsonValue value;
};
std::optional<JsonValue> ParseJson(std::string_view text, std::string* error);

// ---------------------------------------------------------------- fixture

class MountedTest : public ::testing::Test {
 protected:
  void SetUp() override;
  // Unmounts and removes the test folder; after a failure it first prints
  // the end of the daemon's log, so that the test output explains it.
  void TearDown() override;
  void PrintDaemonLogTail() const;

  // Store folders, relative to the test folder. Override for multi-store tests.
  virtual std::vector<std::string> StoreNames() const { return {"store"}; }
  // Extra arguments for `kvfs mount` (e.g. {"--capacity", "32M"}).
  virtual std::vector<std::string> ExtraMountArgs() const { return {}; }

  // Path of `relative` inside the mount.
  std::string P(std::string_view relative) const;
  const std::string& root() const { return root_; }   // the test folder
  const std::string& mnt() const { return mnt_; }
  std::string store_path(size_t i = 0) const;
  static std::string kvfs_binary();

  // The full `kvfs mount` command line for this fixture.
  std::vector<std::string> MountCommand() const;
  // Mounts / unmounts; "" on success, else a description. Unmount falls back
  // to `umount -l` when `kvfs umount` fails and reports that as an error.
  std::string Mount();
  std::string Unmount();
  // What the last successful Mount's `kvfs mount` printed on stdout.
  const std::string& mount_output() const { return mount_output_; }
  // Unmount, then mount again on the same stores. Use with
  // ASSERT_NO_FATAL_FAILURE(Remount()).
  void Remount();
  // `kvfs stats <mnt> --json`, parsed. Use with ASSERT_NO_FATAL_FAILURE.
  void Stats(JsonValue* out);

 private:
  std::string root_;
  std::string mnt_;
  bool mounted_ = false;
  std::string mount_output_;
};

// Polls cond every 20 ms until it holds or timeout_ms passes. For what the
// daemon learns asynchronously, with nothing to wait on: the kernel sends a
// handle's RELEASE after close() has returned.
template <typename Cond>
bool PollUntil(Cond cond, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace kvfs::mounted_test
