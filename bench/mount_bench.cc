// Mount-time benchmark: how long the index rebuild takes for a store of N
// objects, and how many bytes of daemon memory the index costs per object.
//
//   kvfs_mount_bench [--objects N] [--dir DIR] [--threads T] [--keep]
//
// It lays N objects (empty files: a 4 KiB header each, the scan reads only
// headers) out on a fresh store under DIR, then times Engine::Open twice:
// cold (page cache dropped) and warm, and reports the resident-memory growth
// of the process per indexed object (and the growth of the heap's bytes in
// use, which leaves out allocator slack). Results are printed as one JSON line.
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "adapters/key_hash.h"
#include "adapters/local_store.h"
#include "adapters/object_header.h"
#include "core/engine.h"

namespace {

uint64_t RssBytes() {
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

void DropCaches() {
  ::sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3";
}

uint64_t HeapInUse() { return mallinfo2().uordblks; }

double OpenSeconds(const std::string& dir, int threads, uint64_t* objects, uint64_t* rss_growth,
                   uint64_t* heap_growth) {
  kvfs::LocalStoreOptions so;
  auto store = kvfs::LocalStore::Open(dir, so);
  if (!store.ok()) {
    std::cerr << store.status().message() << "\n";
    std::exit(1);
  }
  std::vector<std::unique_ptr<kvfs::Store>> stores;
  stores.push_back(std::move(*store));
  kvfs::EngineOptions eo;
  eo.space.capacity_bytes = 1ULL << 50;
  eo.scan_threads = threads;
  eo.background_eviction = false;
  eo.buffer_count = 1;
  uint64_t before = RssBytes();
  uint64_t heap_before = HeapInUse();
  auto t0 = std::chrono::steady_clock::now();
  auto engine = kvfs::Engine::Start(eo, std::move(stores));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!engine.ok()) {
    std::cerr << engine.status().message() << "\n";
    std::exit(1);
  }
  *rss_growth = RssBytes() - before;
  *heap_growth = HeapInUse() - heap_before;
  *objects = (*engine)->Stats().objects;
  return secs;
}

}  // namespace

int main(int argc, char** argv) {
  // The daemon runs with one malloc arena (see fuse/daemon.cc); so does
  // this measurement of its index.
  mallopt(M_ARENA_MAX, 1);
  uint64_t n = 1000000;
  std::string dir = "/var/tmp/kvfs-mount-bench";
  int threads = 4;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--objects" && i + 1 < argc) n = std::stoull(argv[++i]);
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
    else if (a == "--keep") keep = true;
    else {
      std::cerr << "usage: kvfs_mount_bench [--objects N] [--dir DIR] [--threads T] [--keep]\n";
      return 2;
    }
  }
  std::filesystem::remove_all(dir);
  // The store names each object's place (its layout is the manifest's).
  std::unique_ptr<kvfs::LocalStore> layout;
  {
    kvfs::LocalStoreOptions so;
    auto store = kvfs::LocalStore::Open(dir, so);
    if (!store.ok()) {
      std::cerr << store.status().message() << "\n";
      return 1;
    }
    layout = std::move(*store);
  }
  // Lay out n header-only objects, as commits would have (without fsyncs).
  auto t0 = std::chrono::steady_clock::now();
  std::atomic<uint64_t> next{0};
  auto writer = [&] {
    void* block = nullptr;
    if (::posix_memalign(&block, 4096, kvfs::kHeaderSize) != 0) return;
    for (uint64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      kvfs::ObjectHeader h;
      h.key = "model/layer" + std::to_string(i % 64) + "/chunk-" + std::to_string(i);
      h.generation = i + 1;
      h.mode = S_IFREG | 0644;
      std::memset(block, 0, kvfs::kHeaderSize);
      if (!kvfs::EncodeHeader(h, static_cast<uint8_t*>(block)).ok()) {
        std::fprintf(stderr, "cannot encode the header of %s\n", h.key.c_str());
        std::exit(1);
      }
      const std::string path = dir + "/" + layout->LocationFor(kvfs::HashKey(h.key));
      // Every fan-out directory up to the file (made with the store in the
      // one-level layout).
      for (size_t slash = dir.size() + 1; (slash = path.find('/', slash + 1)) != std::string::npos;) {
        ::mkdir(path.substr(0, slash).c_str(), 0700);
      }
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || ::pwrite(fd, block, kvfs::kHeaderSize, 0) != static_cast<ssize_t>(kvfs::kHeaderSize)) {
        std::perror("write object");
        std::exit(1);
      }
      ::close(fd);
    }
    std::free(block);
  };
  std::vector<std::thread> ws;
  for (int t = 0; t < 4; ++t) ws.emplace_back(writer);
  for (auto& t : ws) t.join();
  layout.reset();  // the store's lock: the opens below take it
  double create_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  uint64_t objects = 0, rss = 0, rss_warm = 0, heap = 0, heap_warm = 0;
  DropCaches();
  // The first open measures memory: later ones reuse what the allocator kept.
  double cold = OpenSeconds(dir, threads, &objects, &rss, &heap);
  double warm = OpenSeconds(dir, threads, &objects, &rss_warm, &heap_warm);
  std::printf(
      "{\"objects\":%llu,\"create_s\":%.1f,\"rebuild_cold_s\":%.2f,\"rebuild_warm_s\":%.2f,\"scan_threads\":%d,"
      "\"index_bytes_per_object\":%.0f,\"heap_bytes_per_object\":%.0f}\n",
      static_cast<unsigned long long>(objects), create_s, cold, warm, threads,
      objects ? static_cast<double>(rss) / static_cast<double>(objects) : 0.0,
      objects ? static_cast<double>(heap) / static_cast<double>(objects) : 0.0);
  if (!keep) std::filesystem::remove_all(dir);
  return objects == n ? 0 : 1;
}
