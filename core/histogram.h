// Histogram: a fixed-bucket histogram of whole-number observations (a
// latency in nanoseconds, a number of objects), cheap enough to record on
// every read.
//
// Contract. The bucket upper bounds are given once at construction,
// strictly increasing, and never change. Bucket i counts the observations v
// with bounds[i-1] < v <= bounds[i] (bucket 0: v <= bounds[0]); one more
// bucket after the last bound counts everything larger (the +Inf bucket).
// Counts are per bucket, not cumulative; Snapshot().Cumulative() gives the
// running totals that Prometheus exposes. Alongside the buckets the
// histogram keeps the sum and the number of observations. Values are whole
// numbers in the recorder's unit; a reader converts (ns to seconds, say).
//
// Thread-safety. Record is lock-free (three relaxed atomic additions) and
// may be called from any number of threads at once, as may Snapshot. A
// snapshot taken while others record is not one instant: its `count` is the
// sum of the bucket counts it read (so count and buckets always agree),
// while `sum` may include or miss an observation in flight.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace kvfs {

struct HistogramSnapshot {
  // The finite upper bounds; `counts` has one more entry (the +Inf bucket).
  std::vector<uint64_t> bounds;
  std::vector<uint64_t> counts;
  uint64_t sum = 0;
  uint64_t count = 0;

  // Running totals: entry i counts the observations <= bounds[i]; the last
  // entry (+Inf) equals count.
  std::vector<uint64_t> Cumulative() const;
  // An estimate of the q-quantile (0 <= q <= 1): the upper bound of the
  // bucket holding it, interpolated linearly inside that bucket. 0 when empty;
  // the last finite bound when it falls in the +Inf bucket.
  double Quantile(double q) const;
};

class Histogram {
 public:
  // bounds: strictly increasing, at least one. Throws std::invalid_argument
  // otherwise (a programming error).
  explicit Histogram(std::vector<uint64_t> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Record(uint64_t value);
  HistogramSnapshot Snapshot() const;
  const std::vector<uint64_t>& bounds() const { return bounds_; }

  // The bounds kvfs uses for latencies, in nanoseconds: 50 us to 10 s in
  // 1-2.5-5 steps.
  static std::vector<uint64_t> LatencyBoundsNs();
  // Powers of two from 1 to 4096: objects evicted in one pass.
  static std::vector<uint64_t> BatchBounds();

 private:
  const std::vector<uint64_t> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<uint64_t> sum_{0};
};

}  // namespace kvfs
