// The Prometheus view of the engine's statistics: `kvfs mount
// --metrics-listen ADDR:PORT` serves GET /metrics in the Prometheus text
// exposition format (version 0.0.4) over HTTP.
//
// One source of truth. Every sample is built at scrape time from a single
// Engine::Stats() snapshot, the same EngineStats that `kvfs stats` prints
// (fuse/stats_format.h); nothing here keeps counters of its own.
//
// Naming. Every name starts with kvfs_, uses base units (_bytes, _seconds),
// counters end in _total, gauges carry current values, and the labels are
// `store` (the store's description, e.g. its directory) and `cause` (an
// eviction cause, an errno name, a kind of remote change). Histograms
// (kvfs_read_duration_seconds, kvfs_commit_duration_seconds,
// kvfs_eviction_batch_objects) carry cumulative buckets ending at +Inf,
// with _sum and _count. A family with no sample (the shared-store families
// on a mount without a dfs: store) is left out.
//
// Thread-safety. BuildMetricFamilies is a pure function. StatsCollector is
// called by the HTTP server's threads, possibly at once; it only calls the
// stats source, which must be thread-safe (Engine::Stats is). MetricsServer
// is created and destroyed by one thread; it serves from threads of its own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "adapters/status.h"
#include "core/engine_types.h"

namespace prometheus {
class Exposer;
}

namespace kvfs {

// The metric families for one stats snapshot, in a fixed order.
std::vector<prometheus::MetricFamily> BuildMetricFamilies(const EngineStats& stats);

// Every metric family name BuildMetricFamilies can produce (whether or not a
// given snapshot has samples for it).
std::vector<std::string> MetricFamilyNames();

// Builds the families from a fresh snapshot on every scrape.
class StatsCollector : public prometheus::Collectable {
 public:
  explicit StatsCollector(std::function<EngineStats()> source) : source_(std::move(source)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<EngineStats()> source_;
};

// An HTTP server for /metrics on one address.
class MetricsServer {
 public:
  // listen: "IPV4:PORT" (fuse/listen_address.h; port 0: the kernel picks
  // one, see port()). Fails with bind(2)'s errno and its
  // text (EADDRINUSE: the port is taken; EADDRNOTAVAIL: not an address of
  // this host; EACCES: a privileged port), or EINVAL for a malformed
  // address, when the address cannot be listened on.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                      std::function<EngineStats()> source);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The port actually listened on.
  int port() const { return port_; }
  // "http://ADDR:PORT/metrics" with the real port.
  const std::string& url() const { return url_; }

 private:
  MetricsServer() = default;
  std::shared_ptr<StatsCollector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  std::string url_;
};

}  // namespace kvfs
