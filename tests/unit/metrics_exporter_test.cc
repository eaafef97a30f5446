// The Prometheus families built from EngineStats (fuse/metrics_exporter.h):
// names, types, labels and values of a hand-made snapshot, the conventions
// (kvfs_ prefix, _total counters, base units), histogram buckets that are
// cumulative and end at +Inf, the text rendering, the listen-address
// syntax, and the Grafana dashboard's metric names.
#include "fuse/metrics_exporter.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <map>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "fuse/listen_address.h"

namespace kvfs {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

EngineStats HandMade() {
  EngineStats s;
  s.durability = "background";
  s.eviction_policy = "lru";
  s.io_uring = true;
  s.inodes = 12;
  s.open_handles = 3;
  s.reads = 7;
  s.read_bytes = 7000;
  s.writes = 5;
  s.write_bytes = 5000;
  s.commits = 4;
  s.commit_failures = 1;
  s.lookups = 20;
  s.negative_lookups = 2;
  for (const char* name : {"local:/a", "local:/b"}) {
    StoreStats st;
    st.name = name;
    st.capacity_bytes = 1 << 20;
    st.used_bytes = 4096;
    st.leased_bytes = 1024;
    st.objects = 2;
    st.evictions.capacity = 1;
    st.evictions.watermark = 2;
    st.evictions.floor = 3;
    st.evictions.bytes = 999;
    st.health.calls = 50;
    st.health.failures = 2;
    st.health.errors_by_errno[EIO] = 2;
    s.stores.push_back(st);
  }
  Histogram read({1000, 2000, 4000});  // ns
  for (uint64_t v : {500, 1500, 1500, 3000, 9000}) read.Record(v);
  s.read_latency_ns = read.Snapshot();
  Histogram commit({1000000});
  commit.Record(2000000);
  s.commit_latency_ns = commit.Snapshot();
  Histogram batch(Histogram::BatchBounds());
  batch.Record(3);
  batch.Record(6);
  s.eviction_batch_objects = batch.Snapshot();
  return s;
}

const MetricFamily* Find(const std::vector<MetricFamily>& fs, const std::string& name) {
  for (const MetricFamily& f : fs) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string Label(const ClientMetric& m, const std::string& name) {
  for (const auto& l : m.label) {
    if (l.name == name) return l.value;
  }
  return "(none)";
}

TEST(MetricsExporterTest, NamesFollowTheConventions) {
  std::vector<MetricFamily> fs = BuildMetricFamilies(HandMade());
  ASSERT_FALSE(fs.empty());
  std::set<std::string> seen;
  for (const MetricFamily& f : fs) {
    EXPECT_TRUE(seen.insert(f.name).second) << "family twice: " << f.name;
    EXPECT_EQ(f.name.rfind("kvfs_", 0), 0u) << f.name;
    EXPECT_TRUE(std::regex_match(f.name, std::regex("[a-z_][a-z0-9_]*"))) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    EXPECT_FALSE(f.metric.empty()) << f.name;
    const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
    if (f.type == MetricType::Counter) EXPECT_TRUE(total) << "a counter without _total: " << f.name;
    else EXPECT_FALSE(total) << "_total on a " << static_cast<int>(f.type) << ": " << f.name;
    // Base units only: no milliseconds, kilobytes and the like.
    std::stringstream words(f.name);
    std::string word;
    while (std::getline(words, word, '_')) {
      static const std::set<std::string> scaled = {"ms", "us", "ns", "kb", "mb", "kib", "mib", "milliseconds",
                                                   "microseconds", "nanoseconds", "minutes", "hours"};
      EXPECT_FALSE(scaled.count(word)) << f.name;
    }
  }
  // Every family built here is in the list of names, and vice versa each
  // listed name is a family some snapshot can have.
  std::vector<std::string> names = MetricFamilyNames();
  std::set<std::string> listed(names.begin(), names.end());
  for (const MetricFamily& f : fs) EXPECT_TRUE(listed.count(f.name)) << f.name;
  EXPECT_TRUE(listed.count("kvfs_shared_reconcile_passes_total"));
  // Without a shared store the shared families are left out.
  EXPECT_EQ(Find(fs, "kvfs_shared_reconcile_passes_total"), nullptr);
}

TEST(MetricsExporterTest, ValuesTypesAndLabelsComeFromTheSnapshot) {
  const EngineStats s = HandMade();
  std::vector<MetricFamily> fs = BuildMetricFamilies(s);

  const MetricFamily* reads = Find(fs, "kvfs_reads_total");
  ASSERT_NE(reads, nullptr);
  EXPECT_EQ(reads->type, MetricType::Counter);
  ASSERT_EQ(reads->metric.size(), 1u);
  EXPECT_EQ(reads->metric[0].counter.value, 7.0);
  EXPECT_EQ(Find(fs, "kvfs_commits_total")->metric[0].counter.value, 4.0);
  EXPECT_EQ(Find(fs, "kvfs_commit_failures_total")->metric[0].counter.value, 1.0);
  EXPECT_EQ(Find(fs, "kvfs_read_bytes_total")->metric[0].counter.value, 7000.0);

  const MetricFamily* handles = Find(fs, "kvfs_open_handles");
  ASSERT_NE(handles, nullptr);
  EXPECT_EQ(handles->type, MetricType::Gauge);
  EXPECT_EQ(handles->metric[0].gauge.value, 3.0);

  // Per-store gauges: one sample per store, labelled with its name.
  const MetricFamily* used = Find(fs, "kvfs_used_bytes");
  ASSERT_NE(used, nullptr);
  EXPECT_EQ(used->type, MetricType::Gauge);
  ASSERT_EQ(used->metric.size(), 2u);
  EXPECT_EQ(Label(used->metric[0], "store"), "local:/a");
  EXPECT_EQ(Label(used->metric[1], "store"), "local:/b");
  EXPECT_EQ(used->metric[0].gauge.value, 4096.0);
  EXPECT_EQ(Find(fs, "kvfs_capacity_bytes")->metric[1].gauge.value, double(1 << 20));
  EXPECT_EQ(Find(fs, "kvfs_leased_bytes")->metric[0].gauge.value, 1024.0);
  EXPECT_EQ(Find(fs, "kvfs_objects")->metric[0].gauge.value, 2.0);

  // Evictions: store x cause.
  const MetricFamily* ev = Find(fs, "kvfs_evictions_total");
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->type, MetricType::Counter);
  ASSERT_EQ(ev->metric.size(), 6u);
  std::map<std::string, double> by_cause;
  for (const ClientMetric& m : ev->metric) {
    EXPECT_NE(Label(m, "store"), "(none)");
    if (Label(m, "store") == "local:/a") by_cause[Label(m, "cause")] = m.counter.value;
  }
  EXPECT_EQ(by_cause, (std::map<std::string, double>{{"capacity", 1}, {"watermark", 2}, {"floor", 3}}));
  EXPECT_EQ(Find(fs, "kvfs_evicted_bytes_total")->metric[0].counter.value, 999.0);

  // Store errors by errno name.
  const MetricFamily* errors = Find(fs, "kvfs_store_errors_total");
  ASSERT_NE(errors, nullptr);
  ASSERT_EQ(errors->metric.size(), 2u);
  EXPECT_EQ(Label(errors->metric[0], "cause"), "EIO");
  EXPECT_EQ(errors->metric[0].counter.value, 2.0);

  const MetricFamily* info = Find(fs, "kvfs_info");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(Label(info->metric[0], "eviction_policy"), "lru");
  EXPECT_EQ(Label(info->metric[0], "durability"), "background");
}

TEST(MetricsExporterTest, HistogramsAreCumulativeAndEndAtInf) {
  std::vector<MetricFamily> fs = BuildMetricFamilies(HandMade());
  for (const char* name : {"kvfs_read_duration_seconds", "kvfs_commit_duration_seconds", "kvfs_eviction_batch_objects"}) {
    const MetricFamily* f = Find(fs, name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->type, MetricType::Histogram) << name;
    ASSERT_EQ(f->metric.size(), 1u);
    const ClientMetric::Histogram& h = f->metric[0].histogram;
    ASSERT_FALSE(h.bucket.empty()) << name;
    for (size_t i = 1; i < h.bucket.size(); ++i) {
      EXPECT_LT(h.bucket[i - 1].upper_bound, h.bucket[i].upper_bound) << name;
      EXPECT_LE(h.bucket[i - 1].cumulative_count, h.bucket[i].cumulative_count) << name;
    }
    EXPECT_TRUE(std::isinf(h.bucket.back().upper_bound)) << name;
    EXPECT_EQ(h.bucket.back().cumulative_count, h.sample_count) << name;
  }
  // The read histogram in seconds: bounds 1, 2, 4 us; samples 0.5, 1.5,
  // 1.5, 3, 9 us.
  const ClientMetric::Histogram& read = Find(fs, "kvfs_read_duration_seconds")->metric[0].histogram;
  ASSERT_EQ(read.bucket.size(), 4u);
  EXPECT_DOUBLE_EQ(read.bucket[0].upper_bound, 1e-6);
  EXPECT_DOUBLE_EQ(read.bucket[2].upper_bound, 4e-6);
  EXPECT_EQ(read.bucket[0].cumulative_count, 1u);
  EXPECT_EQ(read.bucket[1].cumulative_count, 3u);
  EXPECT_EQ(read.bucket[2].cumulative_count, 4u);
  EXPECT_EQ(read.bucket[3].cumulative_count, 5u);
  EXPECT_EQ(read.sample_count, 5u);
  EXPECT_NEAR(read.sample_sum, 15.5e-6, 1e-12);
  const ClientMetric::Histogram& batch = Find(fs, "kvfs_eviction_batch_objects")->metric[0].histogram;
  EXPECT_EQ(batch.sample_count, 2u);
  EXPECT_DOUBLE_EQ(batch.sample_sum, 9.0);
  EXPECT_DOUBLE_EQ(batch.bucket[0].upper_bound, 1.0);
}

TEST(MetricsExporterTest, TextRenderingHasTypeLinesSuffixesAndOneInfBucket) {
  std::vector<MetricFamily> fs = BuildMetricFamilies(HandMade());
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, fs);
  const std::string text = out.str();
  EXPECT_NE(text.find("# TYPE kvfs_reads_total counter\nkvfs_reads_total 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE kvfs_read_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("kvfs_read_duration_seconds_count 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kvfs_read_duration_seconds_bucket{le=\"+Inf\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kvfs_evictions_total{store=\"local:/a\",cause=\"floor\"} 3\n"), std::string::npos) << text;
  // Exactly one +Inf bucket per histogram.
  size_t infs = 0;
  for (size_t at = text.find("le=\"+Inf\""); at != std::string::npos; at = text.find("le=\"+Inf\"", at + 1)) ++infs;
  EXPECT_EQ(infs, 3u);
}

TEST(MetricsExporterTest, ListenAddressSyntax) {
  Result<ListenAddress> a = ParseListenAddress("127.0.0.1:9100");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->address, "127.0.0.1");
  EXPECT_EQ(a->port, 9100);
  EXPECT_EQ(a->HostPort(8080), "127.0.0.1:8080");
  EXPECT_EQ(ParseListenAddress("0.0.0.0:65535")->port, 65535);
  EXPECT_EQ(ParseListenAddress("10.1.2.3:0")->port, 0);
  EXPECT_NE(ParseListenAddress("[::1]:9100").status().message().find("IPv6"), std::string::npos);
  for (const char* bad : {"", "9100", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:99999999",
                          "localhost:9100", "::1:9100", "[::1]:9100", "[::1]", "[nonsense]:1", "1.2.3:80", "127.0.0.1:-1",
                          "127.0.0.1:9x"}) {
    Result<ListenAddress> r = ParseListenAddress(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.err(), EINVAL) << bad;
    }
  }
}

TEST(MetricsExporterTest, ServerRefusesAPortInUseWithTheReason) {
  Result<std::unique_ptr<MetricsServer>> first = MetricsServer::Start("127.0.0.1:0", [] { return HandMade(); });
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_GT((*first)->port(), 0);
  EXPECT_EQ((*first)->url(), "http://127.0.0.1:" + std::to_string((*first)->port()) + "/metrics");
  Result<std::unique_ptr<MetricsServer>> second =
      MetricsServer::Start("127.0.0.1:" + std::to_string((*first)->port()), [] { return HandMade(); });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.err(), EADDRINUSE) << second.status().message();
  EXPECT_NE(second.status().message().find("in use"), std::string::npos) << second.status().message();
}

// Every metric a panel of the shipped Grafana dashboard queries is one the
// exporter produces (as a family, or a histogram's _bucket/_sum/_count).
TEST(MetricsExporterTest, DashboardQueriesOnlyExportedMetrics) {
  std::ifstream in(std::string(KVFS_SOURCE_DIR) + "/packaging/grafana-kvfs.json");
  ASSERT_TRUE(in) << "packaging/grafana-kvfs.json is missing";
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string dashboard = buf.str();
  std::set<std::string> known;
  for (const std::string& n : MetricFamilyNames()) {
    known.insert(n);
    for (const char* suffix : {"_bucket", "_sum", "_count"}) known.insert(n + suffix);
  }
  // Every kvfs_ name anywhere in the file (the panels' expr fields and the
  // instance variable's query).
  std::regex metric("kvfs_[a-z0-9_]+");
  size_t names = 0;
  for (auto m = std::sregex_iterator(dashboard.begin(), dashboard.end(), metric); m != std::sregex_iterator(); ++m) {
    ++names;
    EXPECT_TRUE(known.count(m->str())) << "the dashboard queries " << m->str() << ", which kvfs does not export";
  }
  EXPECT_GT(names, 10u) << "no panel queries found";
}

}  // namespace
}  // namespace kvfs
