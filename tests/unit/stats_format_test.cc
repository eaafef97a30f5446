// The histograms in `kvfs stats` (fuse/stats_format.h): the JSON carries
// count, sum, quantiles, bounds and per-bucket counts in base units; the
// text shows latency quantiles in milliseconds and the mean eviction batch.
#include "fuse/stats_format.h"

#include <gtest/gtest.h>

#include <string>

namespace kvfs {
namespace {

EngineStats WithHistograms() {
  EngineStats s;
  s.durability = "close";
  Histogram read({1000000, 2000000});  // 1 ms, 2 ms
  read.Record(500000);
  read.Record(1500000);
  s.read_latency_ns = read.Snapshot();
  Histogram batches(Histogram::BatchBounds());
  batches.Record(2);
  batches.Record(4);
  s.eviction_batch_objects = batches.Snapshot();
  Histogram commit({1000});
  s.commit_latency_ns = commit.Snapshot();
  return s;
}

TEST(StatsFormatTest, JsonHasEveryHistogramInBaseUnits) {
  std::string json = FormatStatsJson(WithHistograms());
  EXPECT_NE(json.find("\"histograms\":{\"read_latency_seconds\":{\"count\":2,\"sum\":0.002,\"p50\":0.001,"
                      "\"p99\":0.00198,\"bounds\":[0.001,0.002],\"counts\":[1,1,0]}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"commit_latency_seconds\":{\"count\":0,\"sum\":0,\"p50\":0,\"p99\":0,\"bounds\":[1e-06],"
                      "\"counts\":[0,0]}"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"eviction_batch_objects\":{\"count\":2,\"sum\":6,"), std::string::npos) << json;
}

TEST(StatsFormatTest, TextShowsLatencyQuantilesAndMeanBatch) {
  std::string text = FormatStatsText(WithHistograms());
  EXPECT_NE(text.find("read latency  p50 1 ms, p99 1.98 ms (2)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("commit time   none yet\n"), std::string::npos) << text;
  EXPECT_NE(text.find("evict batches 2, 3.0 objects per batch on average\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace kvfs
