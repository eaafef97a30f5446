// The fixed-bucket histogram (core/histogram.h): bucket edges, snapshot
// arithmetic (cumulative counts, sum, quantiles), bad bounds, and counts
// that add up when many threads record at once.
#include "core/histogram.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>
#include <vector>

namespace kvfs {
namespace {

TEST(HistogramTest, ValuesLandInTheBucketWhoseUpperBoundTheyDoNotExceed) {
  Histogram h({10, 20, 40});
  for (uint64_t v : {0, 10, 11, 20, 21, 40, 41, 1000}) h.Record(v);
  HistogramSnapshot s = h.Snapshot();
  ASSERT_EQ(s.bounds, (std::vector<uint64_t>{10, 20, 40}));
  // (.., 10]: 0, 10; (10, 20]: 11, 20; (20, 40]: 21, 40; above: 41, 1000.
  EXPECT_EQ(s.counts, (std::vector<uint64_t>{2, 2, 2, 2}));
  EXPECT_EQ(s.count, 8u);
  EXPECT_EQ(s.sum, 0u + 10 + 11 + 20 + 21 + 40 + 41 + 1000);
  EXPECT_EQ(s.Cumulative(), (std::vector<uint64_t>{2, 4, 6, 8}));
}

TEST(HistogramTest, EmptyHistogramHasZeroCountsAndQuantiles) {
  Histogram h(Histogram::LatencyBoundsNs());
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.sum, 0u);
  EXPECT_EQ(s.counts.size(), s.bounds.size() + 1);
  for (uint64_t c : s.Cumulative()) EXPECT_EQ(c, 0u);
  EXPECT_EQ(s.Quantile(0.5), 0.0);
  EXPECT_EQ(s.Quantile(0.99), 0.0);
}

TEST(HistogramTest, QuantilesInterpolateInsideTheBucket) {
  Histogram h({100, 200, 400});
  for (int i = 0; i < 50; ++i) h.Record(50);   // (0, 100]
  for (int i = 0; i < 50; ++i) h.Record(150);  // (100, 200]
  HistogramSnapshot s = h.Snapshot();
  EXPECT_DOUBLE_EQ(s.Quantile(0.5), 100.0);   // the 50th observation: the top of the first bucket
  EXPECT_DOUBLE_EQ(s.Quantile(0.75), 150.0);  // half-way through the second
  EXPECT_DOUBLE_EQ(s.Quantile(1.0), 200.0);
  EXPECT_DOUBLE_EQ(s.Quantile(0.0), 2.0);     // the first observation, 1/50 of the first bucket
  h.Record(5000);                             // above every bound
  EXPECT_DOUBLE_EQ(h.Snapshot().Quantile(1.0), 400.0) << "the +Inf bucket reports the last finite bound";
}

TEST(HistogramTest, BoundsMustBeStrictlyIncreasingAndNonEmpty) {
  EXPECT_THROW(Histogram(std::vector<uint64_t>{}), std::invalid_argument);
  EXPECT_THROW(Histogram(std::vector<uint64_t>{1, 1}), std::invalid_argument);
  EXPECT_THROW(Histogram(std::vector<uint64_t>{5, 2}), std::invalid_argument);
  EXPECT_NO_THROW(Histogram(std::vector<uint64_t>{7}));
}

TEST(HistogramTest, StandardBoundsAreIncreasing) {
  for (const std::vector<uint64_t>& b : {Histogram::LatencyBoundsNs(), Histogram::BatchBounds()}) {
    ASSERT_FALSE(b.empty());
    for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
  }
  EXPECT_EQ(Histogram::LatencyBoundsNs().front(), 50000u);           // 50 us
  EXPECT_EQ(Histogram::LatencyBoundsNs().back(), 10000000000u);      // 10 s
  EXPECT_EQ(Histogram::BatchBounds().front(), 1u);
  EXPECT_EQ(Histogram::BatchBounds().back(), 4096u);
}

TEST(HistogramTest, ConcurrentRecordsAllCount) {
  Histogram h({1, 2, 3});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < kPerThread; ++i) h.Record(static_cast<uint64_t>((t + i) % 5));  // 0..4
    });
  }
  // Snapshots taken meanwhile are internally consistent: count = bucket sum.
  for (int i = 0; i < 100; ++i) {
    HistogramSnapshot s = h.Snapshot();
    uint64_t total = 0;
    for (uint64_t c : s.counts) total += c;
    EXPECT_EQ(s.count, total);
    EXPECT_EQ(s.Cumulative().back(), s.count);
  }
  for (std::thread& t : threads) t.join();
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, uint64_t{kThreads} * kPerThread);
  // Each thread records 0,1,2,3,4 equally often: sum 2 per observation.
  EXPECT_EQ(s.sum, 2 * s.count);
  // 0 and 1 -> bucket 0; 2 -> 1; 3 -> 2; 4 -> +Inf.
  EXPECT_EQ(s.counts[0], 2 * s.count / 5);
  EXPECT_EQ(s.counts[1], s.count / 5);
  EXPECT_EQ(s.counts[2], s.count / 5);
  EXPECT_EQ(s.counts[3], s.count / 5);
}

}  // namespace
}  // namespace kvfs
