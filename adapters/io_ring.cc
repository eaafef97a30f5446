#include "adapters/io_ring.h"

#include <liburing.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace kvfs {
namespace {

std::atomic<uint64_t> next_executor_id{1};

// user_data of a request's SQE: the ring's batch number in the high bits,
// the request's index in the batch in the low kIndexBits. Cancel requests
// carry kCancelTag (liburing's own timeouts use LIBURING_UDATA_TIMEOUT).
constexpr int kIndexBits = 24;
constexpr uint64_t kIndexMask = (1ULL << kIndexBits) - 1;
constexpr uint64_t kCancelTag = ~0ULL - 1;

// A batch its caller stopped waiting for, with requests still in flight.
struct AbandonedBatch {
  std::shared_ptr<DataBatch> batch;
  size_t in_flight = 0;
};

// One io_uring per (thread, executor), destroyed at thread exit, or once
// its executor is gone when the thread next sets up a ring.
struct ThreadRing {
  std::weak_ptr<const void> executor;  // expires with the executor
  io_uring ring;
  bool initialised = false;
  bool fixed = false;
  uint64_t next_batch = 1;
  std::unordered_map<uint64_t, AbandonedBatch> abandoned;  // by batch number
  ~ThreadRing() {
    if (!initialised) return;
    if (!abandoned.empty()) {
      // The kernel may still write into these batches' buffers: leave the
      // ring open and the batches allocated rather than free them under it.
      spdlog::warn("a thread exits with {} abandoned I/O batch(es) still in flight; their memory is kept",
                   abandoned.size());
      auto* kept = new std::unordered_map<uint64_t, AbandonedBatch>(std::move(abandoned));
      (void)kept;
      return;
    }
    io_uring_queue_exit(&ring);
  }
  // Accounts for one completion of an abandoned batch's request.
  void Reaped(uint64_t batch_number) {
    auto it = abandoned.find(batch_number);
    if (it != abandoned.end() && --it->second.in_flight == 0) abandoned.erase(it);
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
    : pool_(pool),
      use_io_uring_(use_io_uring),
      queue_depth_(queue_depth),
      id_(next_executor_id.fetch_add(1)),
      alive_(std::make_shared<const bool>(true)) {}

size_t IoExecutor::RingsOfThisThread() { return thread_rings.by_executor.size(); }

void* IoExecutor::RingForThisThread() {
  auto& rings = thread_rings.by_executor;
  auto it = rings.find(id_);
  if (it != rings.end()) return it->second.get();
  // A thread that outlives executors (one that made engine after engine)
  // would keep a ring, and the registration of a freed pool, per executor.
  for (auto r = rings.begin(); r != rings.end();) {
    if (r->second->executor.expired()) r = rings.erase(r);
    else ++r;
  }
  auto tr = std::make_unique<ThreadRing>();
  tr->executor = alive_;
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
  void* ring = tr.get();
  thread_rings.by_executor.emplace(id_, std::move(tr));
  return ring;
}

Status IoExecutor::Run(std::span<IoRequest> requests) {
  for (IoRequest& r : requests) r.done = 0;
  if (requests.empty()) return Status::Ok();
  in_flight_.fetch_add(requests.size(), std::memory_order_relaxed);
  Status s;
  void* ring = use_io_uring_.load(std::memory_order_relaxed) ? RingForThisThread() : nullptr;
  s = ring ? RunWithRing(requests, ring, nullptr) : RunWithSyscalls(requests);
  in_flight_.fetch_sub(requests.size(), std::memory_order_relaxed);
  return s;
}

Status IoExecutor::Run(const std::shared_ptr<DataBatch>& batch) {
  std::span<IoRequest> requests(batch->requests);
  for (IoRequest& r : requests) r.done = 0;
  if (requests.empty()) return Status::Ok();
  void* ring = use_io_uring_.load(std::memory_order_relaxed) ? RingForThisThread() : nullptr;
  if (!ring && batch->deadline) return Status::Error(ENOTSUP, "a deadline needs io_uring");
  in_flight_.fetch_add(requests.size(), std::memory_order_relaxed);
  Status s = ring ? RunWithRing(requests, ring, &batch) : RunWithSyscalls(requests);
  in_flight_.fetch_sub(requests.size(), std::memory_order_relaxed);
  return s;
}

Status IoExecutor::RunWithRing(std::span<IoRequest> requests, void* ring_ptr,
                               const std::shared_ptr<DataBatch>* batch) {
  ThreadRing* tr = static_cast<ThreadRing*>(ring_ptr);
  io_uring* ring = &tr->ring;
  const bool fixed = tr->fixed;
  if (requests.size() > kIndexMask) {
    // Too many requests to tag: run them in slices (never the case in practice).
    for (size_t from = 0; from < requests.size(); from += kIndexMask) {
      KVFS_RETURN_IF_ERROR(RunWithRing(requests.subspan(from, std::min<size_t>(kIndexMask, requests.size() - from)),
                                       ring_ptr, batch));
    }
    return Status::Ok();
  }
  const uint64_t number = tr->next_batch++;
  const bool deadline = batch && (*batch)->deadline.has_value();
  const DataBatch::Clock::time_point until = deadline ? *(*batch)->deadline : DataBatch::Clock::time_point{};
  // pending: indexes of requests that still need (more) submission.
  std::vector<size_t> pending;
  pending.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) pending.push_back(i);
  std::vector<bool> in_kernel(requests.size(), false);
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
      io_uring_sqe_set_data64(sqe, (number << kIndexBits) | i);
      in_kernel[i] = true;
      ++queued;
    }
    if (queued > 0 || outstanding > 0) {
      int rc;
      if (deadline) {
        // Submit and wait for one completion, no later than the deadline
        // (one io_uring_enter, as without a deadline).
        io_uring_cqe* cqe = nullptr;
        auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - DataBatch::Clock::now());
        if (left.count() < 0) left = std::chrono::nanoseconds(0);
        __kernel_timespec ts{static_cast<long long>(left.count() / 1000000000),
                             static_cast<long long>(left.count() % 1000000000)};
        do {
          rc = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
        } while (rc == -EINTR);
        if (rc == -ETIME) {
          // The deadline passed (what was queued is submitted): ask the
          // kernel to cancel what is in flight, and leave the batch to the
          // ring until each of its requests completes.
          outstanding += queued;
          for (size_t i = 0; i < requests.size(); ++i) {
            if (!in_kernel[i]) continue;
            io_uring_sqe* c = io_uring_get_sqe(ring);
            if (!c) {
              io_uring_submit(ring);
              c = io_uring_get_sqe(ring);
              if (!c) break;
            }
            io_uring_prep_cancel64(c, (number << kIndexBits) | i, 0);
            io_uring_sqe_set_data64(c, kCancelTag);
          }
          io_uring_submit(ring);
          (*batch)->MarkAbandoned();
          tr->abandoned[number] = AbandonedBatch{*batch, outstanding};
          return Status::Error(ETIMEDOUT, "no I/O completion within the deadline");
        }
      } else {
        do {
          rc = io_uring_submit_and_wait(ring, 1);
        } while (rc == -EINTR);
      }
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
      uint64_t data = io_uring_cqe_get_data64(cqe);
      if (data == kCancelTag || data == LIBURING_UDATA_TIMEOUT) continue;
      if ((data >> kIndexBits) != number) {
        tr->Reaped(data >> kIndexBits);  // a request of an abandoned batch ended
        continue;
      }
      size_t i = static_cast<size_t>(data & kIndexMask);
      --outstanding;
      in_kernel[i] = false;
      IoRequest& r = requests[i];
      int res = cqe->res;
      if (res == -EINTR || res == -EAGAIN) {
        pending.push_back(i);
      } else if (res < 0) {
        if (first_error.ok()) first_error = Status::FromErrno(-res, r.write ? "write" : "read");
      } else if (res == 0) {
        if (r.write && first_error.ok()) first_error = Status::Error(EIO, "write made no progress");
        // end of file for reads
      } else {
        r.done += static_cast<size_t>(res);
        if (r.done < r.len) pending.push_back(i);  // short transfer: go on from there
      }
    }
    io_uring_cq_advance(ring, seen);
    if (!first_error.ok()) {
      // Drain what is still in flight before returning: buffers stay ours until then.
      pending.clear();
    }
  }
  return first_error;
}

size_t IoExecutor::ReapAbandoned(std::chrono::milliseconds wait) {
  auto it = thread_rings.by_executor.find(id_);
  if (it == thread_rings.by_executor.end()) return 0;
  ThreadRing* tr = it->second.get();
  const auto until = std::chrono::steady_clock::now() + wait;
  while (!tr->abandoned.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    __kernel_timespec ts{static_cast<long long>(left.count() / 1000000000),
                         static_cast<long long>(left.count() % 1000000000)};
    io_uring_cqe* cqe = nullptr;
    int w = io_uring_wait_cqe_timeout(&tr->ring, &cqe, &ts);
    if (w == -EINTR) continue;
    if (w < 0) break;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&tr->ring, head, cqe) {
      ++seen;
      uint64_t data = io_uring_cqe_get_data64(cqe);
      if (data != kCancelTag && data != LIBURING_UDATA_TIMEOUT) tr->Reaped(data >> kIndexBits);
    }
    io_uring_cq_advance(&tr->ring, seen);
  }
  return tr->abandoned.size();
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
