#include "adapters/io_ring.h"

#include <liburing.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace kvfs {
namespace {

std::atomic<uint64_t> next_executor_id{1};

// One io_uring per (thread, executor), destroyed at thread exit.
struct ThreadRing {
  io_uring ring;
  bool initialised = false;
  bool fixed = false;
  ~ThreadRing() {
    if (initialised) io_uring_queue_exit(&ring);
  }
};

struct ThreadRings {
  std::unordered_map<uint64_t, std::unique_ptr<ThreadRing>> by_executor;
};

thread_local ThreadRings thread_rings;

void WarnFallbackOnce(const std::string& why) {
  static std::once_flag once;
  std::call_once(once, [&] { spdlog::warn("io_uring unavailable ({}); using pread/pwrite", why); });
}

}  // namespace

IoExecutor::IoExecutor(BufferPool* pool, bool use_io_uring, unsigned queue_depth)
    : pool_(pool), use_io_uring_(use_io_uring), queue_depth_(queue_depth), id_(next_executor_id.fetch_add(1)) {}

void* IoExecutor::RingForThisThread() {
  auto it = thread_rings.by_executor.find(id_);
  if (it != thread_rings.by_executor.end()) return &it->second->ring;
  auto tr = std::make_unique<ThreadRing>();
  int rc = io_uring_queue_init(queue_depth_, &tr->ring, 0);
  if (rc < 0) {
    WarnFallbackOnce(std::string("io_uring_queue_init: ") + std::strerror(-rc));
    use_io_uring_.store(false);
    return nullptr;
  }
  tr->initialised = true;
  if (pool_ && pool_->count() > 0) {
    rc = io_uring_register_buffers(&tr->ring, pool_->iovecs().data(), static_cast<unsigned>(pool_->count()));
    if (rc < 0) {
      spdlog::warn("io_uring buffer registration failed ({}); reads use unregistered buffers", std::strerror(-rc));
    } else {
      tr->fixed = true;
    }
  }
  void* ring = &tr->ring;
  thread_rings.by_executor.emplace(id_, std::move(tr));
  return ring;
}

Status IoExecutor::Run(std::span<IoRequest> requests) {
  for (IoRequest& r : requests) r.done = 0;
  if (requests.empty()) return Status::Ok();
  in_flight_.fetch_add(requests.size(), std::memory_order_relaxed);
  Status s;
  void* ring = use_io_uring_.load(std::memory_order_relaxed) ? RingForThisThread() : nullptr;
  s = ring ? RunWithRing(requests, ring) : RunWithSyscalls(requests);
  in_flight_.fetch_sub(requests.size(), std::memory_order_relaxed);
  return s;
}

Status IoExecutor::RunWithRing(std::span<IoRequest> requests, void* ring_ptr) {
  io_uring* ring = static_cast<io_uring*>(ring_ptr);
  bool fixed = false;
  for (auto& [id, tr] : thread_rings.by_executor) {
    if (&tr->ring == ring) fixed = tr->fixed;
  }
  // pending: indexes of requests that still need (more) submission.
  std::vector<size_t> pending;
  pending.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) pending.push_back(i);
  std::vector<bool> finished(requests.size(), false);
  size_t outstanding = 0;
  Status first_error;

  while (!pending.empty() || outstanding > 0) {
    // Fill the submission queue.
    unsigned queued = 0;
    while (!pending.empty()) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (!sqe) break;
      size_t i = pending.back();
      pending.pop_back();
      IoRequest& r = requests[i];
      uint8_t* buf = r.buf + r.done;
      unsigned len = static_cast<unsigned>(r.len - r.done);
      uint64_t off = r.offset + r.done;
      if (fixed && r.buf_index >= 0) {
        if (r.write) io_uring_prep_write_fixed(sqe, r.fd, buf, len, off, r.buf_index);
        else io_uring_prep_read_fixed(sqe, r.fd, buf, len, off, r.buf_index);
      } else {
        if (r.write) io_uring_prep_write(sqe, r.fd, buf, len, off);
        else io_uring_prep_read(sqe, r.fd, buf, len, off);
      }
      io_uring_sqe_set_data64(sqe, i);
      ++queued;
    }
    if (queued > 0 || outstanding > 0) {
      int rc;
      do {
        rc = io_uring_submit_and_wait(ring, 1);
      } while (rc == -EINTR);
      if (rc < 0) {
        if (outstanding == 0 && queued > 0) {
          // The kernel refused the whole batch: fall back for this and later batches.
          WarnFallbackOnce(std::string("io_uring_submit: ") + std::strerror(-rc));
          use_io_uring_.store(false);
          return RunWithSyscalls(requests);
        }
        return Status::FromErrno(-rc, "io_uring_submit");
      }
      outstanding += queued;
    }
    // Reap everything that is complete.
    io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      ++seen;
      size_t i = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
      IoRequest& r = requests[i];
      int res = cqe->res;
      if (res == -EINTR || res == -EAGAIN) {
        pending.push_back(i);
      } else if (res < 0) {
        if (first_error.ok()) first_error = Status::FromErrno(-res, r.write ? "write" : "read");
        finished[i] = true;
      } else if (res == 0) {
        if (r.write && first_error.ok()) first_error = Status::Error(EIO, "write made no progress");
        finished[i] = true;  // end of file for reads
      } else {
        r.done += static_cast<size_t>(res);
        if (r.done < r.len) pending.push_back(i);  // short transfer: go on from there
        else finished[i] = true;
      }
    }
    io_uring_cq_advance(ring, seen);
    outstanding -= seen;
    if (!first_error.ok()) {
      // Drain what is still in flight before returning: buffers stay ours until then.
      pending.clear();
    }
  }
  return first_error;
}

Status IoExecutor::RunWithSyscalls(std::span<IoRequest> requests) {
  for (IoRequest& r : requests) {
    while (r.done < r.len) {
      ssize_t n = r.write ? ::pwrite(r.fd, r.buf + r.done, r.len - r.done, static_cast<off_t>(r.offset + r.done))
                          : ::pread(r.fd, r.buf + r.done, r.len - r.done, static_cast<off_t>(r.offset + r.done));
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return Status::FromErrno(r.write ? "pwrite" : "pread");
      }
      if (n == 0) {
        if (r.write) return Status::Error(EIO, "write made no progress");
        break;
      }
      r.done += static_cast<size_t>(n);
    }
  }
  return Status::Ok();
}

}  // namespace kvfs
