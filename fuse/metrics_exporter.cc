#include "fuse/metrics_exporter.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/exposer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "fuse/listen_address.h"

namespace kvfs {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Collects the families in order; a family is created on first use so that
// the order of AddX calls is the order of the output.
class FamilyBuilder {
 public:
  void Counter(const std::string& name, const std::string& help, double value, Labels labels = {}) {
    ClientMetric m;
    m.label = std::move(labels);
    m.counter.value = value;
    Family(name, help, MetricType::Counter).metric.push_back(std::move(m));
  }
  void Gauge(const std::string& name, const std::string& help, double value, Labels labels = {}) {
    ClientMetric m;
    m.label = std::move(labels);
    m.gauge.value = value;
    Family(name, help, MetricType::Gauge).metric.push_back(std::move(m));
  }
  // scale converts the histogram's unit (ns, objects) to the metric's.
  void Histogram(const std::string& name, const std::string& help, const HistogramSnapshot& h, double scale) {
    ClientMetric m;
    m.histogram.sample_count = h.count;
    m.histogram.sample_sum = static_cast<double>(h.sum) * scale;
    std::vector<uint64_t> cumulative = h.Cumulative();
    for (size_t i = 0; i < cumulative.size(); ++i) {
      ClientMetric::Bucket b;
      b.cumulative_count = cumulative[i];
      b.upper_bound = i < h.bounds.size() ? static_cast<double>(h.bounds[i]) * scale
                                          : std::numeric_limits<double>::infinity();
      m.histogram.bucket.push_back(b);
    }
    Family(name, help, MetricType::Histogram).metric.push_back(std::move(m));
  }
  // Declares a family that may stay without samples (then left out).
  void Declare(const std::string& name, const std::string& help, MetricType type) { Family(name, help, type); }

  std::vector<MetricFamily> Take() {
    std::vector<MetricFamily> out;
    for (MetricFamily& f : families_) {
      if (!f.metric.empty()) out.push_back(std::move(f));
    }
    return out;
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> out;
    for (const MetricFamily& f : families_) out.push_back(f.name);
    return out;
  }

 private:
  MetricFamily& Family(const std::string& name, const std::string& help, MetricType type) {
    for (MetricFamily& f : families_) {
      if (f.name == name) return f;
    }
    families_.push_back(MetricFamily{name, help, type, {}});
    return families_.back();
  }
  std::vector<MetricFamily> families_;
};

double D(uint64_t v) { return static_cast<double>(v); }

// Why the HTTP server could not listen on `a`: binds a socket there the way
// the server does and returns bind(2)'s errno (0 when that works now).
// The server's own error says only that it failed.
int BindErrno(const ListenAddress& a) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(a.port);
  ::inet_pton(AF_INET, a.address.c_str(), &sa.sin_addr);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

void Build(const EngineStats& s, FamilyBuilder& b) {
  b.Gauge("kvfs_info", "Constant 1; the labels describe how the mount is configured", 1,
          {{"durability", s.durability}, {"eviction_policy", s.eviction_policy},
           {"io", s.io_uring ? "io_uring" : "pread"}});
  // Space, per store.
  for (const StoreStats& st : s.stores) {
    Labels store = {{"store", st.name}};
    b.Gauge("kvfs_capacity_bytes", "Bytes the store may hold", D(st.capacity_bytes), store);
    b.Gauge("kvfs_used_bytes", "Bytes of committed objects on the store", D(st.used_bytes), store);
    b.Gauge("kvfs_leased_bytes", "Bytes of objects held open by readers (not evictable)", D(st.leased_bytes), store);
    b.Gauge("kvfs_pinned_bytes", "Leased bytes plus bytes reserved for commits in progress", D(st.pinned_bytes),
            store);
    b.Gauge("kvfs_objects", "Committed objects on the store", D(st.objects), store);
    b.Gauge("kvfs_free_space_floor_bytes", "Free space kept on the store's filesystem", D(st.floor_bytes), store);
    b.Gauge("kvfs_filesystem_size_bytes", "Size of the filesystem holding the store", D(st.fs_total_bytes), store);
    b.Gauge("kvfs_filesystem_free_bytes", "Free bytes on the filesystem holding the store", D(st.fs_free_bytes),
            store);
  }
  // Mount-wide state.
  b.Gauge("kvfs_inodes", "Files and directories in the index", D(s.inodes));
  b.Gauge("kvfs_open_handles", "Open file handles", D(s.open_handles));
  b.Gauge("kvfs_io_in_flight", "Store reads and writes in flight", D(s.io_in_flight));
  b.Gauge("kvfs_buffer_pool_buffers", "Registered read buffers", D(s.pool_buffers));
  b.Gauge("kvfs_buffer_pool_buffer_size_bytes", "Size of each read buffer", D(s.pool_buffer_bytes));
  b.Gauge("kvfs_stores_not_durable", "Stores with changes awaiting the background flush", D(s.stores_not_durable));
  // Traffic.
  b.Counter("kvfs_reads_total", "Read requests served", D(s.reads));
  b.Counter("kvfs_read_bytes_total", "Bytes returned by reads", D(s.read_bytes));
  b.Counter("kvfs_writes_total", "Write requests received", D(s.writes));
  b.Counter("kvfs_written_bytes_total", "Bytes received by writes", D(s.write_bytes));
  b.Counter("kvfs_commits_total", "Versions committed (at close or flush)", D(s.commits));
  b.Counter("kvfs_commit_failures_total", "Commits that failed", D(s.commit_failures));
  b.Counter("kvfs_publish_groups_total", "Publish groups (one flush shared by several commits)", D(s.group_commits));
  b.Counter("kvfs_group_commit_jobs_total", "Commits published through publish groups", D(s.group_commit_jobs));
  b.Counter("kvfs_background_syncs_total", "Flushes made by the background sync", D(s.background_syncs));
  b.Counter("kvfs_background_sync_failures_total", "Background flushes that failed", D(s.background_sync_failures));
  b.Counter("kvfs_lookups_total", "Name lookups", D(s.lookups));
  b.Counter("kvfs_negative_lookups_total", "Name lookups that found no key", D(s.negative_lookups));
  b.Counter("kvfs_page_cache_opens_total", "Opens served through the kernel's page cache", D(s.page_cache_opens));
  b.Counter("kvfs_superseded_inodes_total", "Keys moved to a fresh inode for an in-place writer",
            D(s.superseded_inodes));
  b.Counter("kvfs_buffer_pool_hits_total", "Reads that found a free pool buffer", D(s.pool_hits));
  b.Counter("kvfs_buffer_pool_misses_total", "Reads that had to allocate outside the pool", D(s.pool_misses));
  // Space events and store health, per store.
  for (const StoreStats& st : s.stores) {
    Labels store = {{"store", st.name}};
    const std::pair<const char*, uint64_t> causes[] = {
        {"capacity", st.evictions.capacity}, {"watermark", st.evictions.watermark}, {"floor", st.evictions.floor}};
    for (const auto& [cause, n] : causes) {
      b.Counter("kvfs_evictions_total", "Objects evicted, by cause (capacity: to make room for a commit; "
                "watermark: background; floor: the filesystem's free-space floor)",
                D(n), {{"store", st.name}, {"cause", cause}});
    }
    b.Counter("kvfs_evicted_bytes_total", "Bytes evicted, all causes", D(st.evictions.bytes), store);
    b.Counter("kvfs_enospc_total", "Commits refused for lack of space", D(st.enospc), store);
    b.Counter("kvfs_checksum_failures_total", "Chunks read from the store whose checksum did not match",
              D(st.checksum_failures), store);
    b.Counter("kvfs_quarantined_objects_total", "Objects moved aside as damaged", D(st.quarantined), store);
    b.Counter("kvfs_store_operations_total", "Calls into the store", D(st.health.calls), store);
    b.Counter("kvfs_store_operation_failures_total", "Store calls that failed, timeouts included",
              D(st.health.failures), store);
    b.Counter("kvfs_store_timeouts_total", "Store calls that passed --store-deadline", D(st.health.timeouts), store);
    b.Declare("kvfs_store_errors_total", "Failed store calls other than ENOENT, by errno", MetricType::Counter);
    for (const auto& [err, n] : st.health.errors_by_errno) {
      b.Counter("kvfs_store_errors_total", "", D(n), {{"store", st.name}, {"cause", ErrnoName(err)}});
    }
  }
  // Shared (dfs:) stores only.
  b.Declare("kvfs_shared_holds_evictor", "1 while this host evicts from the shared store", MetricType::Gauge);
  b.Declare("kvfs_shared_reconcile_passes_total", "Reconciliations with the other hosts", MetricType::Counter);
  b.Declare("kvfs_shared_reconcile_failures_total", "Reconciliations that failed", MetricType::Counter);
  b.Declare("kvfs_shared_remote_changes_total", "Keys changed by other hosts, by kind", MetricType::Counter);
  b.Declare("kvfs_shared_read_through_total", "Lookups answered from the store rather than the index",
            MetricType::Counter);
  for (const StoreStats& st : s.stores) {
    if (!st.shared) continue;
    Labels store = {{"store", st.name}};
    b.Gauge("kvfs_shared_holds_evictor", "", st.holds_evictor ? 1 : 0, store);
    b.Counter("kvfs_shared_reconcile_passes_total", "", D(st.reconcile_passes), store);
    b.Counter("kvfs_shared_reconcile_failures_total", "", D(st.reconcile_failures), store);
    const std::pair<const char*, uint64_t> kinds[] = {
        {"added", st.remote_added}, {"replaced", st.remote_replaced}, {"removed", st.remote_removed}};
    for (const auto& [kind, n] : kinds) {
      b.Counter("kvfs_shared_remote_changes_total", "", D(n), {{"store", st.name}, {"cause", kind}});
    }
    b.Counter("kvfs_shared_read_through_total", "", D(st.read_through), store);
  }
  // Distributions.
  b.Histogram("kvfs_read_duration_seconds", "Time the engine took per read request", s.read_latency_ns, 1e-9);
  b.Histogram("kvfs_commit_duration_seconds", "Time per successful commit, from close or flush to done",
              s.commit_latency_ns, 1e-9);
  b.Histogram("kvfs_eviction_batch_objects",
              "Objects evicted per batch (a background pass over a store, or the evictions one commit made)",
              s.eviction_batch_objects, 1.0);
}

}  // namespace

std::vector<MetricFamily> BuildMetricFamilies(const EngineStats& stats) {
  FamilyBuilder b;
  Build(stats, b);
  return b.Take();
}

std::vector<std::string> MetricFamilyNames() {
  // A snapshot with one shared store reaches every family.
  EngineStats s;
  s.stores.emplace_back();
  s.stores.back().shared = true;
  s.stores.back().health.errors_by_errno[EIO] = 1;
  FamilyBuilder b;
  Build(s, b);
  return b.Names();
}

std::vector<MetricFamily> StatsCollector::Collect() const { return BuildMetricFamilies(source_()); }

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                           std::function<EngineStats()> source) {
  Result<ListenAddress> address = ParseListenAddress(listen);
  if (!address.ok()) return address.status();
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->collector_ = std::make_shared<StatsCollector>(std::move(source));
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(address->HostPort(address->port), 2);
  } catch (const std::exception& e) {
    int err = BindErrno(*address);
    if (err != 0) return Status::Error(err, "cannot listen on " + listen + ": " + std::strerror(err));
    return Status::Error(EADDRNOTAVAIL, "cannot listen on " + listen + ": " + e.what());
  }
  server->exposer_->RegisterCollectable(server->collector_, "/metrics");
  std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) return Status::Error(EADDRNOTAVAIL, "cannot listen on " + listen + ": no port was opened");
  server->port_ = ports.front();
  server->url_ = "http://" + address->HostPort(server->port_) + "/metrics";
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace kvfs
