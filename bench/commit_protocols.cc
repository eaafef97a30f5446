// kvfs_commit_protocols: how fast can an object be made durable on this
// drive, by each way of doing it, with no FUSE and no daemon in the way?
// Runs, alternated and repeated, N writer threads that each create objects
// of one size in a scratch directory until a time is up, by:
//
//   plain        open(O_CREAT) + write + fsync + close at the final name: what
//                an engine writing into a plain directory does.
//   file         what kvfs does with --commit-flush file: the bytes written
//                with O_DIRECT into a staging file, renamed into place, then
//                fsync of the file (commits the rename with it on ext4/XFS).
//   file-cached  the same with the staging file written through the page
//                cache (written back by the fsync).
//   group        --commit-flush group: O_DIRECT staging file, rename, and one
//                syncfs shared by whichever writers wait for it together.
//   each         --commit-flush each: O_DIRECT staging file, fdatasync,
//                rename, fsync of the directory.
//   log          no file per object: each object appended with O_DIRECT to a
//                preallocated, pre-written log file, and one fdatasync of the
//                log shared by whichever writers wait for it together (what a
//                log-structured home for small objects would cost; kvfs has
//                none).
//
// Prints objects/s per protocol (median of the runs) and its ratio to plain.
// Not a test: a measurement of the floor each commit protocol sets.
//
//   kvfs_commit_protocols DIR [--size BYTES] [--threads N] [--seconds S] [--runs R]

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr uint64_t kLogBytes = 256ull << 20;

// One flush shared by the writers that wait for it together: a writer whose
// change was made before a flush started is covered by that flush.
class SharedFlush {
 public:
  template <typename Flush>
  void Wait(Flush flush) {
    const uint64_t mine = requested_.fetch_add(1) + 1;
    std::lock_guard<std::mutex> g(mu_);
    if (covered_ >= mine) return;
    const uint64_t upto = requested_.load();
    flush();
    covered_ = upto;
  }

 private:
  std::atomic<uint64_t> requested_{0};
  std::mutex mu_;
  uint64_t covered_ = 0;  // guarded by mu_
};

struct Run {
  std::string dir;
  std::string protocol;
  size_t size;
  int threads;
  double seconds;
};

void Die(const std::string& what) {
  std::perror(what.c_str());
  std::exit(1);
}

int OpenOrDie(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) Die("open " + path);
  return fd;
}

void WriteOrDie(int fd, const void* buf, size_t n, off_t off) {
  if (::pwrite(fd, buf, n, off) != static_cast<ssize_t>(n)) Die("pwrite");
}

double RunOnce(const Run& r) {
  std::filesystem::remove_all(r.dir);
  const std::string staging = r.dir + "/staging", objects = r.dir + "/objects";
  std::filesystem::create_directories(staging);
  std::filesystem::create_directories(objects);
  const size_t padded = (r.size + 4095) / 4096 * 4096;
  int dir_fd = OpenOrDie(objects, O_RDONLY | O_DIRECTORY);
  int log_fd = -1;
  std::atomic<uint64_t> log_end{0};
  if (r.protocol == "log") {
    log_fd = OpenOrDie(r.dir + "/log", O_RDWR | O_CREAT | O_DIRECT);
    void* zeros = std::aligned_alloc(4096, 1 << 20);
    std::memset(zeros, 0, 1 << 20);
    for (uint64_t off = 0; off < kLogBytes; off += 1 << 20) WriteOrDie(log_fd, zeros, 1 << 20, off);
    std::free(zeros);
    if (::fsync(log_fd) != 0) Die("fsync log");
  }
  SharedFlush shared;
  std::atomic<uint64_t> done{0};
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(r.seconds);
  std::vector<std::thread> writers;
  for (int t = 0; t < r.threads; ++t) {
    writers.emplace_back([&, t] {
      void* buf = std::aligned_alloc(4096, padded);
      std::memset(buf, 'k' + t, padded);
      for (uint64_t i = 0; std::chrono::steady_clock::now() < end; ++i) {
        const std::string name = std::to_string(t) + "-" + std::to_string(i);
        const std::string final_path = objects + "/" + name, staged = staging + "/" + name;
        if (r.protocol == "plain") {
          int fd = OpenOrDie(final_path, O_WRONLY | O_CREAT | O_TRUNC);
          WriteOrDie(fd, buf, r.size, 0);
          if (::fsync(fd) != 0) Die("fsync");
          ::close(fd);
        } else if (r.protocol == "log") {
          const uint64_t off = log_end.fetch_add(padded) % (kLogBytes - padded) / 4096 * 4096;
          WriteOrDie(log_fd, buf, padded, off);
          shared.Wait([&] {
            if (::fdatasync(log_fd) != 0) Die("fdatasync log");
          });
        } else {
          const bool cached = r.protocol == "file-cached";
          int fd = OpenOrDie(staged, O_WRONLY | O_CREAT | O_EXCL | (cached ? 0 : O_DIRECT));
          WriteOrDie(fd, buf, cached ? r.size : padded, 0);
          if (r.protocol == "each" && ::fdatasync(fd) != 0) Die("fdatasync");
          if (::rename(staged.c_str(), final_path.c_str()) != 0) Die("rename");
          if (r.protocol == "file" || cached) {
            if (::fsync(fd) != 0) Die("fsync");
          } else if (r.protocol == "each") {
            if (::fsync(dir_fd) != 0) Die("fsync dir");
          } else {
            shared.Wait([&] {
              if (::syncfs(dir_fd) != 0) Die("syncfs");
            });
          }
          ::close(fd);
        }
        done.fetch_add(1);
      }
      std::free(buf);
    });
  }
  for (auto& w : writers) w.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::close(dir_fd);
  if (log_fd >= 0) ::close(log_fd);
  std::filesystem::remove_all(r.dir);
  return done.load() / secs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: %s DIR [--size BYTES] [--threads N] [--seconds S] [--runs R]\n", argv[0]);
    return 2;
  }
  Run base{std::string(argv[1]) + "/commit-protocols", "", 256 << 10, 4, 1.0};
  int runs = 5;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--size") base.size = std::strtoull(value, nullptr, 0);
    else if (flag == "--threads") base.threads = std::atoi(value);
    else if (flag == "--seconds") base.seconds = std::atof(value);
    else if (flag == "--runs") runs = std::atoi(value);
    else {
      std::fprintf(stderr, "unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  if (base.size == 0 || base.threads < 1 || base.seconds <= 0 || runs < 1) {
    std::fprintf(stderr, "--size, --threads, --seconds and --runs must be positive\n");
    return 2;
  }
  const std::vector<std::string> protocols = {"plain", "file", "file-cached", "group", "each", "log"};
  std::map<std::string, std::vector<double>> rates;
  for (int run = 0; run < runs; ++run) {
    // Rotate the order, so that no protocol always runs first.
    for (size_t k = 0; k < protocols.size(); ++k) {
      Run r = base;
      r.protocol = protocols[(k + run) % protocols.size()];
      rates[r.protocol].push_back(RunOnce(r));
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double plain = median(rates["plain"]);
  std::printf("%zu-byte objects, %d writers, %d runs of %.1f s each\n", base.size, base.threads, runs, base.seconds);
  std::printf("%-12s %12s %9s\n", "protocol", "objects/s", "/plain");
  for (const std::string& p : protocols) {
    const double m = median(rates[p]);
    std::printf("%-12s %12.0f %9.2f\n", p.c_str(), m, m / plain);
  }
  return 0;
}
