#include "tests/mounted/mount_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>

#ifndef KVFS_BINARY
#error "KVFS_BINARY must be defined as the path of the kvfs binary"
#endif

namespace kvfs::mounted_test {

namespace {

using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

bool WriteAll(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly size bytes before the deadline. False on EOF, error or timeout.
bool ReadExact(int fd, void* data, size_t size, Clock::time_point deadline) {
  auto* p = static_cast<uint8_t*>(data);
  while (size > 0) {
    pollfd pfd{fd, POLLIN, 0};
    int r = poll(&pfd, 1, RemainingMs(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    if (n == 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Waits for pid to exit before the deadline (pidfd + poll); SIGKILLs it at
// the deadline. Returns the wait status; *timed_out tells whether it was killed.
int WaitPid(pid_t pid, Clock::time_point deadline, bool* timed_out) {
  *timed_out = false;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    for (;;) {
      pollfd pfd{pidfd, POLLIN, 0};
      int r = poll(&pfd, 1, RemainingMs(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        *timed_out = true;
        kill(pid, SIGKILL);
      }
      break;
    }
    close(pidfd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string ReadMemfd(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return "";
  std::string s(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < s.size()) {
    ssize_t n = pread(fd, s.data() + got, s.size() - got, static_cast<off_t>(got));
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  s.resize(got);
  return s;
}

// /proc/mounts escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '7' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct MountEntry {
  std::string source, target, type;
};

std::vector<MountEntry> ReadMounts() {
  std::vector<MountEntry> entries;
  std::ifstream in("/proc/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    MountEntry e;
    fields >> e.source >> e.target >> e.type;
    e.target = UnescapeMountField(e.target);
    entries.push_back(e);
  }
  return entries;
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

std::string ArgvString(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------- data

std::vector<uint8_t> MakeData(uint64_t seed, size_t size) {
  std::vector<uint8_t> data(size);
  uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
  size_t i = 0;
  while (i < size) {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    size_t n = std::min<size_t>(8, size - i);
    memcpy(data.data() + i, &z, n);
    i += n;
  }
  return data;
}

std::string CompareBytes(const uint8_t* got, size_t got_size, const uint8_t* want, size_t want_size) {
  size_t common = std::min(got_size, want_size);
  size_t diff = common;
  if (common > 0 && memcmp(got, want, common) != 0) {
    for (diff = 0; diff < common && got[diff] == want[diff]; ++diff) {
    }
  }
  if (diff == common && got_size == want_size) return "";
  std::ostringstream os;
  if (got_size != want_size) os << "size " << got_size << " != expected " << want_size << "; ";
  if (diff < common) {
    char buf[96];
    snprintf(buf, sizeof buf, "first difference at offset %zu (got 0x%02x, want 0x%02x)", diff, got[diff],
             want[diff]);
    os << buf;
  } else {
    os << "common prefix of " << common << " bytes matches";
  }
  return os.str();
}

std::string CompareBytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  return CompareBytes(got.data(), got.size(), want.data(), want.size());
}

std::string ErrnoName(int err) {
  if (err == 0) return "OK";
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
  return "errno " + std::to_string(err);
}

std::string ErrnoMessage(const std::string& what) {
  int err = errno;
  return what + ": " + ErrnoName(err) + " (" + strerror(err) + ")";
}

// ---------------------------------------------------------------- fds

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) Reset(other.Release());
  return *this;
}

int Fd::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

int Fd::Close() {
  int fd = Release();
  return fd >= 0 ? close(fd) : 0;
}

AlignedBuffer::AlignedBuffer(size_t size, size_t alignment) : size_(size) {
  void* p = nullptr;
  size_t alloc = std::max(size, alignment);
  alloc = (alloc + alignment - 1) / alignment * alignment;
  if (posix_memalign(&p, alignment, alloc) != 0) abort();
  memset(p, 0, alloc);
  data_ = static_cast<uint8_t*>(p);
}

AlignedBuffer::~AlignedBuffer() { free(data_); }

// ---------------------------------------------------------------- files

std::string WriteFile(const std::string& path, const std::vector<uint8_t>& data, size_t chunk, mode_t mode,
                      int extra_flags) {
  Fd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | extra_flags, mode));
  if (!fd.valid()) return ErrnoMessage("open(" + path + ", O_CREAT|O_WRONLY|O_TRUNC)");
  size_t off = 0;
  while (off < data.size()) {
    size_t n = std::min(chunk, data.size() - off);
    ssize_t w = write(fd.get(), data.data() + off, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoMessage("write(" + path + ", offset " + std::to_string(off) + ")");
    }
    if (w == 0) return "write(" + path + ") returned 0";
    off += static_cast<size_t>(w);
  }
  if (fd.Close() != 0) return ErrnoMessage("close(" + path + ")");
  return "";
}

std::string WriteFileDirect(const std::string& path, const std::vector<uint8_t>& data, size_t chunk) {
  constexpr size_t kBlock = 4096;
  chunk = std::max(kBlock, chunk / kBlock * kBlock);
  Fd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoMessage("open(" + path + ", O_CREAT|O_WRONLY|O_TRUNC|O_DIRECT)");
  AlignedBuffer buf(chunk);
  size_t off = 0;
  while (off < data.size()) {
    size_t n = std::min(chunk, data.size() - off);
    // The tail of an unaligned object goes out as one whole, zero-padded
    // 4 KiB block; ftruncate below cuts the file back to its exact size.
    size_t padded = (n + kBlock - 1) / kBlock * kBlock;
    memcpy(buf.data(), data.data() + off, n);
    memset(buf.data() + n, 0, padded - n);
    ssize_t w = pwrite(fd.get(), buf.data(), padded, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoMessage("pwrite(" + path + ", O_DIRECT, offset " + std::to_string(off) + ")");
    }
    if (static_cast<size_t>(w) != padded) {
      return "short O_DIRECT pwrite(" + path + "): " + std::to_string(w) + " of " + std::to_string(padded);
    }
    off += n;
  }
  if (data.size() % kBlock != 0) {
    if (ftruncate(fd.get(), static_cast<off_t>(data.size())) != 0) {
      return ErrnoMessage("ftruncate(" + path + ", " + std::to_string(data.size()) + ")");
    }
  }
  if (fd.Close() != 0) return ErrnoMessage("close(" + path + ")");
  return "";
}

std::string ReadFile(const std::string& path, std::vector<uint8_t>* out, size_t chunk) {
  out->clear();
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoMessage("open(" + path + ", O_RDONLY)");
  std::vector<uint8_t> buf(chunk);
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoMessage("read(" + path + ", offset " + std::to_string(out->size()) + ")");
    }
    if (n == 0) break;
    out->insert(out->end(), buf.data(), buf.data() + n);
  }
  if (fd.Close() != 0) return ErrnoMessage("close(" + path + ")");
  return "";
}

std::string ReadFileDirect(const std::string& path, std::vector<uint8_t>* out, size_t chunk) {
  out->clear();
  chunk = std::max<size_t>(4096, chunk / 4096 * 4096);
  Fd fd(open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (!fd.valid()) return ErrnoMessage("open(" + path + ", O_RDONLY|O_DIRECT)");
  AlignedBuffer buf(chunk);
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoMessage("read(" + path + ", O_DIRECT, offset " + std::to_string(out->size()) + ")");
    }
    if (n == 0) break;
    out->insert(out->end(), buf.data(), buf.data() + n);
    if (static_cast<size_t>(n) % 4096 != 0) {
      // A short O_DIRECT read ends the file; the next read must return 0.
      ssize_t extra = read(fd.get(), buf.data(), chunk);
      if (extra != 0) {
        return "O_DIRECT read(" + path + ") after a short read of " + std::to_string(n) + " returned " +
               std::to_string(extra) + " (expected EOF)";
      }
      break;
    }
  }
  if (fd.Close() != 0) return ErrnoMessage("close(" + path + ")");
  return "";
}

std::string ReadAllFd(int fd, std::vector<uint8_t>* out, bool direct) {
  out->clear();
  constexpr size_t kChunk = kMiB;
  AlignedBuffer buf(kChunk);
  for (;;) {
    ssize_t n = pread(fd, buf.data(), kChunk, static_cast<off_t>(out->size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoMessage(std::string("pread(fd") + (direct ? ", O_DIRECT" : "") + ", offset " +
                          std::to_string(out->size()) + ")");
    }
    if (n == 0) break;
    out->insert(out->end(), buf.data(), buf.data() + n);
    if (direct && static_cast<size_t>(n) % 4096 != 0) {
      ssize_t extra = pread(fd, buf.data(), kChunk, static_cast<off_t>(out->size() / 4096 * 4096 + 4096));
      if (extra > 0) return "O_DIRECT pread found data after a short read";
      break;
    }
  }
  return "";
}

std::string CheckFile(const std::string& path, const std::vector<uint8_t>& want) {
  std::vector<uint8_t> got;
  std::string err = ReadFile(path, &got);
  if (!err.empty()) return err;
  err = CompareBytes(got, want);
  return err.empty() ? "" : path + ": " + err;
}

std::string CheckFileDirect(const std::string& path, const std::vector<uint8_t>& want) {
  std::vector<uint8_t> got;
  std::string err = ReadFileDirect(path, &got);
  if (!err.empty()) return err;
  err = CompareBytes(got, want);
  return err.empty() ? "" : path + " (O_DIRECT): " + err;
}

std::string CheckFd(int fd, const std::vector<uint8_t>& want, bool direct) {
  std::vector<uint8_t> got;
  std::string err = ReadAllFd(fd, &got, direct);
  if (!err.empty()) return err;
  return CompareBytes(got, want);
}

int StatErrno(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? 0 : errno;
}

std::string ListDir(const std::string& path, std::vector<std::string>* names) {
  names->clear();
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoMessage("opendir(" + path + ")");
  for (;;) {
    errno = 0;
    dirent* e = readdir(dir);
    if (e == nullptr) {
      if (errno != 0) {
        std::string err = ErrnoMessage("readdir(" + path + ")");
        closedir(dir);
        return err;
      }
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    names->emplace_back(e->d_name);
  }
  if (closedir(dir) != 0) return ErrnoMessage("closedir(" + path + ")");
  return "";
}

// ---------------------------------------------------------------- processes

std::string CommandResult::Describe() const {
  std::ostringstream os;
  if (timed_out) {
    os << "timed out";
  } else if (exit_code >= 0) {
    os << "exit " << exit_code;
  } else {
    os << "killed by signal " << term_signal;
  }
  os << "; stdout: [" << out << "] stderr: [" << err << "]";
  return os.str();
}

CommandResult RunCommand(const std::vector<std::string>& argv, int timeout_ms) {
  CommandResult result;
  Fd out_fd(memfd_create("kvfs-test-stdout", MFD_CLOEXEC));
  Fd err_fd(memfd_create("kvfs-test-stderr", MFD_CLOEXEC));
  if (!out_fd.valid() || !err_fd.valid()) {
    result.err = ErrnoMessage("memfd_create");
    return result;
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    result.err = ErrnoMessage("fork");
    return result;
  }
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_fd.get(), 1);
    dup2(err_fd.get(), 2);
    // The daemon must not inherit test fds (an fd on its own mount would
    // keep the mount busy forever).
    syscall(SYS_close_range, 3U, ~0U, 0U);
    execv(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  int status = WaitPid(pid, Clock::now() + std::chrono::milliseconds(timeout_ms), &result.timed_out);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
  }
  result.out = ReadMemfd(out_fd.get());
  result.err = ReadMemfd(err_fd.get());
  return result;
}

bool Channel::Send(std::string_view message) {
  uint32_t len = static_cast<uint32_t>(message.size());
  std::string frame(reinterpret_cast<const char*>(&len), sizeof len);
  frame.append(message);
  return WriteAll(out_.get(), frame.data(), frame.size());
}

std::optional<std::string> Channel::Recv(int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  if (timeout_ms == 0) {
    pollfd pfd{in_.get(), POLLIN, 0};
    if (poll(&pfd, 1, 0) <= 0) return std::nullopt;
    // Data (or EOF) is there: give the rest of the frame a moment.
    deadline = Clock::now() + std::chrono::milliseconds(kDefaultTimeoutMs);
  }
  uint32_t len = 0;
  if (!ReadExact(in_.get(), &len, sizeof len, deadline)) return std::nullopt;
  std::string message(len, '\0');
  if (len > 0 && !ReadExact(in_.get(), message.data(), len, deadline)) return std::nullopt;
  return message;
}

std::string Channel::Expect(std::string_view want, int timeout_ms) {
  auto got = Recv(timeout_ms);
  if (!got) return "expected message '" + std::string(want) + "', got timeout or EOF";
  if (*got != want) return "expected message '" + std::string(want) + "', got '" + *got + "'";
  return "";
}

std::string ChildOutcome::Summary() const {
  if (timed_out) return "child timed out (killed); partial result: [" + result + "]";
  if (!exited) return "child killed by signal " + std::to_string(term_signal) + "; result: [" + result + "]";
  if (exit_code != 0) return "child exit code " + std::to_string(exit_code) + "; result: [" + result + "]";
  return result;
}

ChildProcess::ChildProcess(Body body) {
  int to_child[2], to_parent[2], result[2];
  if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(to_parent, O_CLOEXEC) != 0 || pipe2(result, O_CLOEXEC) != 0) {
    perror("pipe2");
    abort();
  }
  fflush(stdout);
  fflush(stderr);
  pid_ = fork();
  if (pid_ < 0) {
    perror("fork");
    abort();
  }
  if (pid_ == 0) {
    close(to_child[1]);
    close(to_parent[0]);
    close(result[0]);
    std::string out;
    {
      Channel channel(to_child[0], to_parent[1]);
      try {
        out = body(channel);
      } catch (const std::exception& e) {
        out = std::string("exception: ") + e.what();
      } catch (...) {
        out = "exception of unknown type";
      }
    }
    WriteAll(result[1], out.data(), out.size());
    close(result[1]);
    _exit(0);
  }
  close(to_child[0]);
  close(to_parent[1]);
  close(result[1]);
  channel_ = Channel(to_parent[0], to_child[1]);
  result_fd_.Reset(result[0]);
}

ChildProcess::~ChildProcess() {
  if (!waited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

ChildOutcome ChildProcess::Wait(int timeout_ms) {
  ChildOutcome outcome;
  if (waited_) {
    outcome.result = "Wait() called twice";
    return outcome;
  }
  waited_ = true;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  // Read the result until EOF (the child closes it right before _exit).
  char buf[65536];
  for (;;) {
    pollfd pfd{result_fd_.get(), POLLIN, 0};
    int r = poll(&pfd, 1, RemainingMs(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // timeout: WaitPid below kills the child
    ssize_t n = read(result_fd_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    outcome.result.append(buf, static_cast<size_t>(n));
  }
  int status = WaitPid(pid_, deadline, &outcome.timed_out);
  if (WIFEXITED(status)) {
    outcome.exited = true;
    outcome.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    outcome.term_signal = WTERMSIG(status);
  }
  return outcome;
}

ChildOutcome RunInChild(const std::function<std::string()>& fn, int timeout_ms) {
  ChildProcess child([&fn](Channel&) { return fn(); });
  return child.Wait(timeout_ms);
}

// ---------------------------------------------------------------- mounts

bool IsKvfsMounted(const std::string& path) {
  for (const auto& e : ReadMounts()) {
    if (e.target == path && e.type == "fuse.kvfs") return true;
  }
  return false;
}

int CountMountsAt(const std::string& path) {
  int n = 0;
  for (const auto& e : ReadMounts()) {
    if (e.target == path) ++n;
  }
  return n;
}

// ---------------------------------------------------------------- JSON

namespace {

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : s_(text) {}

  std::optional<JsonValue> ParseDocument(std::string* error) {
    JsonValue v;
    if (!ParseValue(&v, 0)) {
      *error = error_ + " at offset " + std::to_string(pos_);
      return std::nullopt;
    }
    SkipSpace();
    if (pos_ != s_.size()) {
      *error = "trailing characters at offset " + std::to_string(pos_);
      return std::nullopt;
    }
    return v;
  }

 private:
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool Fail(const std::string& why) {
    error_ = why;
    return false;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return Fail("bad literal");
    pos_ += word.size();
    return true;
  }
  bool ParseString(std::string* out) {
    if (pos_ >= s_.size() || s_[pos_] != '"') return Fail("expected string");
    ++pos_;
    while (pos_ < s_.size() && s_[pos_] != '"') {
      char c = s_[pos_++];
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) return Fail("bad escape");
      char e = s_[pos_++];
      switch (e) {
        case 'n': out->push_back('\n'); break;
        case 't': out->push_back('\t'); break;
        case 'r': out->push_back('\r'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return Fail("bad \\u escape");
          unsigned code = static_cast<unsigned>(std::stoul(std::string(s_.substr(pos_, 4)), nullptr, 16));
          pos_ += 4;
          if (code < 0x80) {
            out->push_back(static_cast<char>(code));
          } else if (code < 0x800) {
            out->push_back(static_cast<char>(0xC0 | (code >> 6)));
            out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
          } else {
            out->push_back(static_cast<char>(0xE0 | (code >> 12)));
            out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
            out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
          }
          break;
        }
        default: out->push_back(e); break;
      }
    }
    if (pos_ >= s_.size()) return Fail("unterminated string");
    ++pos_;
    return true;
  }
  bool ParseValue(JsonValue* v, int depth) {
    if (depth > 64) return Fail("too deep");
    SkipSpace();
    if (pos_ >= s_.size()) return Fail("unexpected end");
    char c = s_[pos_];
    if (c == '{') {
      v->type = JsonValue::Type::kObject;
      ++pos_;
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      for (;;) {
        SkipSpace();
        std::string key;
        if (!ParseString(&key)) return false;
        SkipSpace();
        if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
        ++pos_;
        JsonValue member;
        if (!ParseValue(&member, depth + 1)) return false;
        v->members.push_back(JsonMember{std::move(key), std::move(member)});
        SkipSpace();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == '}') {
          ++pos_;
          return true;
        }
        return Fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v->type = JsonValue::Type::kArray;
      ++pos_;
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      for (;;) {
        JsonValue item;
        if (!ParseValue(&item, depth + 1)) return false;
        v->items.push_back(std::move(item));
        SkipSpace();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == ']') {
          ++pos_;
          return true;
        }
        return Fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v->type = JsonValue::Type::kString;
      return ParseString(&v->text);
    }
    if (c == 't') {
      v->type = JsonValue::Type::kBool;
      v->boolean = true;
      return Literal("true");
    }
    if (c == 'f') {
      v->type = JsonValue::Type::kBool;
      return Literal("false");
    }
    if (c == 'n') return Literal("null");
    size_t start = pos_;
    while (pos_ < s_.size() && (isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '-' ||
                                s_[pos_] == '+' || s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
    }
    if (pos_ == start) return Fail("unexpected character");
    v->type = JsonValue::Type::kNumber;
    v->text = std::string(s_.substr(start, pos_ - start));
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

const JsonValue* JsonValue::Find(std::string_view key) const {
  for (const auto& [k, v] : members) {
    if (k == key) return &v;
  }
  return nullptr;
}

uint64_t JsonValue::AsU64() const {
  if (type != Type::kNumber || text.empty() || text[0] == '-') return 0;
  return std::strtoull(text.c_str(), nullptr, 10);
}

std::optional<JsonValue> ParseJson(std::string_view text, std::string* error) {
  return JsonParser(text).ParseDocument(error);
}

// ---------------------------------------------------------------- fixture

std::string MountedTest::kvfs_binary() { return KVFS_BINARY; }

std::string MountedTest::P(std::string_view relative) const { return mnt_ + "/" + std::string(relative); }

std::string MountedTest::store_path(size_t i) const { return root_ + "/" + StoreNames().at(i); }

std::vector<std::string> MountedTest::MountCommand() const {
  std::vector<std::string> argv = {kvfs_binary(), "mount", mnt_};
  for (size_t i = 0; i < StoreNames().size(); ++i) {
    argv.push_back("--store");
    argv.push_back(store_path(i));
  }
  for (const auto& a : ExtraMountArgs()) argv.push_back(a);
  return argv;
}

std::string FileTail(const std::string& path, size_t lines) {
  std::ifstream in(path);
  if (!in) return "(no log at " + path + ")\n";
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(std::move(line));
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const std::string& l : tail) out += l + "\n";
  return out;
}

std::string MakeTestRoot(std::string* root) {
  const char* tmpdir = getenv("TMPDIR");
  std::string base = (tmpdir != nullptr && *tmpdir != '\0') ? tmpdir : "/tmp";
  std::string templ = base + "/kvfs-test-XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return ErrnoMessage("mkdtemp(" + templ + ")");
  char* real = realpath(templ.c_str(), nullptr);
  if (real == nullptr) return ErrnoMessage("realpath " + templ);
  *root = real;
  free(real);
  return "";
}

void MountedTest::SetUp() {
  // A child that died early must fail a Send, not kill the test with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  ASSERT_EQ(MakeTestRoot(&root_), "");
  mnt_ = root_ + "/mnt";
  ASSERT_EQ(mkdir(mnt_.c_str(), 0755), 0) << ErrnoMessage("mkdir " + mnt_);
  for (size_t i = 0; i < StoreNames().size(); ++i) {
    ASSERT_EQ(mkdir(store_path(i).c_str(), 0755), 0) << ErrnoMessage("mkdir " + store_path(i));
  }
  ASSERT_EQ(Mount(), "");
}

std::string MountedTest::Mount() {
  auto argv = MountCommand();
  CommandResult r = RunCommand(argv);
  if (r.exit_code != 0) return "`" + ArgvString(argv) + "` failed: " + r.Describe();
  mount_output_ = r.out;
  // The daemon now serves the mount; TearDown must take it down.
  mounted_ = IsKvfsMounted(mnt_);
  if (!mounted_) {
    // It might be mounted with some other type; take it down anyway.
    if (CountMountsAt(mnt_) > 0) RunCommand({"/bin/umount", "-l", mnt_});
    return "`" + ArgvString(argv) + "` exited 0 but /proc/mounts shows no fuse.kvfs mount at " + mnt_;
  }
  return "";
}

std::string MountedTest::Unmount() {
  std::string error;
  CommandResult r = RunCommand({kvfs_binary(), "umount", mnt_});
  if (r.exit_code != 0) error = "`kvfs umount " + mnt_ + "` failed: " + r.Describe();
  if (IsKvfsMounted(mnt_)) {
    if (error.empty()) error = "`kvfs umount " + mnt_ + "` exited 0 but the mount is still there";
    RunCommand({"/bin/umount", "-l", mnt_});
    if (IsKvfsMounted(mnt_)) RunCommand({"/bin/fusermount3", "-uz", mnt_});
  }
  mounted_ = false;
  return error;
}

void MountedTest::Remount() {
  ASSERT_EQ(Unmount(), "");
  ASSERT_EQ(Mount(), "");
}

void MountedTest::Stats(JsonValue* out) {
  CommandResult r = RunCommand({kvfs_binary(), "stats", mnt_, "--json"});
  ASSERT_EQ(r.exit_code, 0) << "kvfs stats --json: " << r.Describe();
  std::string error;
  auto parsed = ParseJson(r.out, &error);
  ASSERT_TRUE(parsed.has_value()) << "kvfs stats --json printed invalid JSON (" << error << "): " << r.out;
  ASSERT_EQ(parsed->type, JsonValue::Type::kObject) << r.out;
  *out = std::move(*parsed);
}

void MountedTest::TearDown() {
  if (root_.empty()) return;
  if (HasFailure()) PrintDaemonLogTail();
  if (mounted_ || IsKvfsMounted(mnt_)) {
    std::string error = Unmount();
    if (!error.empty()) ADD_FAILURE() << "TearDown: " << error;
  }
  if (CountMountsAt(mnt_) > 0) {
    ADD_FAILURE() << "TearDown: something is still mounted at " << mnt_ << "; leaving " << root_;
    return;
  }
  // FTW_MOUNT: never cross into a mount point; FTW_PHYS: never follow links.
  nftw(root_.c_str(), RemoveEntry, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

void MountedTest::PrintDaemonLogTail() const {
  // The daemon logs to <first store>/kvfs.log unless the test chose a file.
  if (StoreNames().empty()) return;
  const std::string path = store_path(0) + "/kvfs.log";
  std::cout << "---- last lines of " << path << " ----\n" << FileTail(path) << std::flush;
}

}  // namespace kvfs::mounted_test
