#include "core/histogram.h"

#include <algorithm>
#include <stdexcept>

namespace kvfs {

std::vector<uint64_t> HistogramSnapshot::Cumulative() const {
  std::vector<uint64_t> out(counts.size());
  uint64_t running = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    running += counts[i];
    out[i] = running;
  }
  return out;
}

double HistogramSnapshot::Quantile(double q) const {
  if (count == 0 || bounds.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the wanted observation, 1-based; at least the first one.
  double rank = std::max(1.0, q * static_cast<double>(count));
  uint64_t below = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0 || static_cast<double>(below + counts[i]) < rank) {
      below += counts[i];
      continue;
    }
    if (i == bounds.size()) return static_cast<double>(bounds.back());
    double lo = i == 0 ? 0.0 : static_cast<double>(bounds[i - 1]);
    double hi = static_cast<double>(bounds[i]);
    double within = (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
    return lo + (hi - lo) * within;
  }
  return static_cast<double>(bounds.back());
}

Histogram::Histogram(std::vector<uint64_t> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  if (bounds_.empty()) throw std::invalid_argument("a histogram needs at least one bucket bound");
  for (size_t i = 1; i < bounds_.size(); ++i) {
    if (bounds_[i] <= bounds_[i - 1]) throw std::invalid_argument("histogram bounds must be strictly increasing");
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Record(uint64_t value) {
  // The first bound >= value; past the end: the +Inf bucket.
  size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot s;
  s.bounds = bounds_;
  s.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<uint64_t> Histogram::LatencyBoundsNs() {
  constexpr uint64_t kUs = 1000;
  return {50 * kUs,     100 * kUs,     250 * kUs,     500 * kUs,      1000 * kUs,    2500 * kUs,
          5000 * kUs,   10000 * kUs,   25000 * kUs,   50000 * kUs,    100000 * kUs,  250000 * kUs,
          500000 * kUs, 1000000 * kUs, 2500000 * kUs, 5000000 * kUs, 10000000 * kUs};
}

std::vector<uint64_t> Histogram::BatchBounds() {
  std::vector<uint64_t> b;
  for (uint64_t v = 1; v <= 4096; v *= 2) b.push_back(v);
  return b;
}

}  // namespace kvfs
