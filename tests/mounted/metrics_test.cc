// The Prometheus endpoint of a real mount (`kvfs mount --metrics-listen
// 127.0.0.1:0`): the test reads the port from what `kvfs mount` printed,
// scrapes /metrics over a plain TCP socket, checks every line against the
// text exposition format, checks that the numbers move with reads and
// commits and agree with `kvfs stats --json`, that histogram buckets are
// cumulative, that the shipped Grafana dashboard queries only metrics the
// scrape has, and that a port in use fails the mount cleanly.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

// One sample line of the exposition: name, labels (in order) and value.
struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
  std::string Label(const std::string& key) const {
    for (const auto& [k, v] : labels) {
      if (k == key) return v;
    }
    return "";
  }
  // The labels other than `le`, as one string: a histogram series' identity.
  std::string SeriesWithoutLe() const {
    std::string out;
    for (const auto& [k, v] : labels) {
      if (k != "le") out += k + "=" + v + ",";
    }
    return out;
  }
};

struct Scrape {
  std::map<std::string, std::string> type;  // family -> counter, gauge, histogram, ...
  std::map<std::string, std::string> help;
  std::vector<Sample> samples;
  std::set<std::string> sample_names;
  // The sum of the samples called `name` whose labels include `match`.
  double Value(const std::string& name, const std::vector<std::pair<std::string, std::string>>& match = {}) const {
    double total = 0;
    for (const Sample& s : samples) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : match) ok = ok && s.Label(k) == v;
      if (ok) total += s.value;
    }
    return total;
  }
};

bool ValidName(const std::string& n, bool allow_colon) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// A sample value as the format allows it: a Go float, or NaN / +Inf / -Inf
// in any letter case.
bool ParseValue(const std::string& text, double* out) {
  std::string lower;
  for (char c : text) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (lower == "nan") {
    *out = std::nan("");
    return true;
  }
  if (lower == "+inf" || lower == "inf") {
    *out = HUGE_VAL;
    return true;
  }
  if (lower == "-inf") {
    *out = -HUGE_VAL;
    return true;
  }
  if (text.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size() && std::isfinite(*out);
}

// Parses a whole exposition; "" or the first line that breaks the format.
std::string ParseExposition(const std::string& body, Scrape* out) {
  std::istringstream in(body);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    const std::string where = "line " + std::to_string(n) + " [" + line + "]: ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream f(line);
      std::string hash, keyword, name;
      f >> hash >> keyword >> name;
      if (keyword != "HELP" && keyword != "TYPE") continue;  // a plain comment
      if (!ValidName(name, true)) return where + "bad metric name in " + keyword;
      std::string rest;
      std::getline(f, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      if (keyword == "TYPE") {
        static const std::set<std::string> types = {"counter", "gauge", "histogram", "summary", "untyped"};
        if (!types.count(rest)) return where + "unknown type '" + rest + "'";
        if (out->type.count(name)) return where + "second TYPE line for " + name;
        for (const Sample& s : out->samples) {
          if (s.name.rfind(name, 0) == 0 && (s.name == name || s.name == name + "_bucket" || s.name == name + "_sum" ||
                                             s.name == name + "_count")) {
            return where + "TYPE after samples of " + name;
          }
        }
        out->type[name] = rest;
      } else {
        if (out->help.count(name)) return where + "second HELP line for " + name;
        out->help[name] = rest;
      }
      continue;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!ValidName(s.name, true)) return where + "bad metric name";
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i >= line.size()) return where + "unterminated labels";
        if (line[i] == '}') {
          ++i;
          break;
        }
        size_t eq = line.find('=', i);
        if (eq == std::string::npos) return where + "label without '='";
        std::string key = line.substr(i, eq - i);
        if (!ValidName(key, false)) return where + "bad label name '" + key + "'";
        if (eq + 1 >= line.size() || line[eq + 1] != '"') return where + "label value not quoted";
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\') {
            if (j + 1 >= line.size()) return where + "dangling escape";
            char e = line[++j];
            if (e == 'n') value.push_back('\n');
            else if (e == '\\' || e == '"') value.push_back(e);
            else return where + "bad escape \\" + std::string(1, e);
          } else {
            value.push_back(line[j]);
          }
        }
        if (j >= line.size()) return where + "unterminated label value";
        s.labels.emplace_back(key, value);
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
    }
    if (i >= line.size() || line[i] != ' ') return where + "no space before the value";
    std::istringstream rest(line.substr(i + 1));
    std::string value, timestamp, extra;
    rest >> value >> timestamp >> extra;
    if (!ParseValue(value, &s.value)) return where + "bad value '" + value + "'";
    if (!timestamp.empty()) {
      for (char c : timestamp) {
        if (!std::isdigit(static_cast<unsigned char>(c)) && c != '-') return where + "bad timestamp";
      }
    }
    if (!extra.empty()) return where + "trailing text";
    // The sample belongs to a family declared before it.
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string sfx = suffix;
      if (s.name.size() > sfx.size() && s.name.compare(s.name.size() - sfx.size(), sfx.size(), sfx) == 0) {
        std::string base = s.name.substr(0, s.name.size() - sfx.size());
        auto t = out->type.find(base);
        if (t != out->type.end() && (t->second == "histogram" || (t->second == "summary" && sfx != "_bucket"))) {
          family = base;
        }
      }
    }
    auto t = out->type.find(family);
    if (t == out->type.end()) return where + "sample before any TYPE line for " + family;
    if (t->second == "histogram" && family == s.name) return where + "histogram sample without a suffix";
    if (t->second == "histogram" && s.name == family + "_bucket" && s.Label("le").empty()) {
      return where + "bucket without le";
    }
    if (t->second == "counter" && s.value < 0) return where + "negative counter";
    out->sample_names.insert(s.name);
    out->samples.push_back(std::move(s));
  }
  if (out->samples.empty()) return "no samples at all";
  return "";
}

// Checks every histogram family: per series, buckets in increasing `le`,
// cumulative counts, the last one +Inf and equal to _count. "" or what broke.
std::string CheckHistograms(const Scrape& scrape, size_t* histograms) {
  *histograms = 0;
  for (const auto& [family, type] : scrape.type) {
    if (type != "histogram") continue;
    ++*histograms;
    std::map<std::string, std::vector<const Sample*>> buckets;
    std::map<std::string, double> counts;
    std::set<std::string> sums;
    for (const Sample& s : scrape.samples) {
      if (s.name == family + "_bucket") buckets[s.SeriesWithoutLe()].push_back(&s);
      if (s.name == family + "_count") counts[s.SeriesWithoutLe()] = s.value;
      if (s.name == family + "_sum") sums.insert(s.SeriesWithoutLe());
    }
    if (buckets.empty()) return family + ": no buckets";
    for (const auto& [series, bs] : buckets) {
      double last_le = -HUGE_VAL, last_count = 0;
      for (const Sample* b : bs) {
        double le;
        if (!ParseValue(b->Label("le"), &le)) return family + ": bad le '" + b->Label("le") + "'";
        if (!(le > last_le)) return family + ": le not increasing at " + b->Label("le");
        if (b->value < last_count) return family + ": bucket le=" + b->Label("le") + " is below the one before";
        last_le = le;
        last_count = b->value;
      }
      if (bs.back()->Label("le") != "+Inf") return family + ": the last bucket is not +Inf";
      if (!counts.count(series)) return family + ": no _count";
      if (!sums.count(series)) return family + ": no _sum";
      if (counts.at(series) != bs.back()->value) return family + ": +Inf bucket differs from _count";
    }
  }
  return "";
}

// GET http://127.0.0.1:port/metrics; "" and the body in *body, or what failed.
std::string HttpGet(int port, std::string* body) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return ErrnoMessage("socket");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return ErrnoMessage("connect");
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";
  if (::send(s.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    return ErrnoMessage("send");
  }
  std::string response;
  char buf[65536];
  while (true) {
    pollfd p{s.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, 30 * 1000);
    if (rc == 0) return "no answer within 30 s (got " + std::to_string(response.size()) + " bytes)";
    if (rc < 0) {
      if (errno == EINTR) continue;
      return ErrnoMessage("poll");
    }
    ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoMessage("recv");
    }
    if (n == 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  size_t head_end = response.find("\r\n\r\n");
  if (head_end == std::string::npos) return "no HTTP header in [" + response.substr(0, 200) + "]";
  std::string head = response.substr(0, head_end);
  if (head.rfind("HTTP/1.", 0) != 0 || head.find(" 200 ") == std::string::npos) return "HTTP status: " + head;
  std::string lower;
  for (char c : head) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (lower.find("content-type: text/plain") == std::string::npos) return "not text/plain: " + head;
  if (lower.find("transfer-encoding: chunked") != std::string::npos) return "unexpected chunked body: " + head;
  *body = response.substr(head_end + 4);
  return "";
}

class MetricsTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--metrics-listen", "127.0.0.1:0"}; }

  // The port from "... metrics on http://127.0.0.1:PORT/metrics)".
  int Port() const {
    std::smatch m;
    static const std::regex url(R"(metrics on http://127\.0\.0\.1:([0-9]+)/metrics)");
    if (!std::regex_search(mount_output(), m, url)) return 0;
    return std::atoi(m[1].str().c_str());
  }

  void ScrapeInto(Scrape* out) {
    int port = Port();
    ASSERT_GT(port, 0) << "`kvfs mount` did not print the metrics address: [" << mount_output() << "]";
    std::string body;
    ASSERT_EQ(HttpGet(port, &body), "");
    ASSERT_EQ(ParseExposition(body, out), "") << body;
  }
};

TEST_F(MetricsTest, ScrapeFollowsTheTextFormatAndMovesWithReadsAndCommits) {
  Scrape before;
  ASSERT_NO_FATAL_FAILURE(ScrapeInto(&before));
  size_t histograms = 0;
  ASSERT_EQ(CheckHistograms(before, &histograms), "");
  EXPECT_EQ(histograms, 3u) << "read, commit and eviction batch";
  // Every kvfs family follows the naming rules.
  for (const auto& [family, type] : before.type) {
    if (family.rfind("kvfs_", 0) != 0) continue;
    EXPECT_FALSE(before.help[family].empty()) << family;
    bool total = family.size() > 6 && family.compare(family.size() - 6, 6, "_total") == 0;
    EXPECT_EQ(type == "counter", total) << family << " is a " << type;
  }
  EXPECT_GT(before.Value("kvfs_capacity_bytes"), 0);

  // Write a few files (each close commits) and read them back with O_DIRECT,
  // so that every read reaches the daemon.
  constexpr int kFiles = 4;
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_EQ(WriteFile(P("f" + std::to_string(i)), MakeData(100 + i, 300000 + i * 4096)), "");
  }
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_EQ(CheckFileDirect(P("f" + std::to_string(i)), MakeData(100 + i, 300000 + i * 4096)), "");
  }

  // Nothing touches the mount between these two: they must agree.
  JsonValue stats;
  ASSERT_NO_FATAL_FAILURE(Stats(&stats));
  Scrape after;
  ASSERT_NO_FATAL_FAILURE(ScrapeInto(&after));
  ASSERT_EQ(CheckHistograms(after, &histograms), "");

  EXPECT_GE(after.Value("kvfs_commits_total") - before.Value("kvfs_commits_total"), kFiles);
  EXPECT_GE(after.Value("kvfs_reads_total") - before.Value("kvfs_reads_total"), kFiles);
  EXPECT_GE(after.Value("kvfs_commit_duration_seconds_count") - before.Value("kvfs_commit_duration_seconds_count"),
            kFiles);
  EXPECT_GE(after.Value("kvfs_read_duration_seconds_count") - before.Value("kvfs_read_duration_seconds_count"),
            kFiles);
  EXPECT_GT(after.Value("kvfs_read_duration_seconds_sum"), before.Value("kvfs_read_duration_seconds_sum"));
  EXPECT_GT(after.Value("kvfs_read_bytes_total"), before.Value("kvfs_read_bytes_total"));
  EXPECT_EQ(after.Value("kvfs_objects"), kFiles);
  EXPECT_GT(after.Value("kvfs_used_bytes"), 0);

  // The same counters as `kvfs stats`.
  EXPECT_EQ(after.Value("kvfs_reads_total"), static_cast<double>(stats.Find("reads")->AsU64()));
  EXPECT_EQ(after.Value("kvfs_commits_total"), static_cast<double>(stats.Find("commits")->AsU64()));
  EXPECT_EQ(after.Value("kvfs_written_bytes_total"), static_cast<double>(stats.Find("write_bytes")->AsU64()));
  const JsonValue* hist = stats.Find("histograms");
  ASSERT_NE(hist, nullptr) << "kvfs stats --json has no histograms";
  for (const auto& [json_name, metric] : std::vector<std::pair<std::string, std::string>>{
           {"read_latency_seconds", "kvfs_read_duration_seconds"},
           {"commit_latency_seconds", "kvfs_commit_duration_seconds"},
           {"eviction_batch_objects", "kvfs_eviction_batch_objects"}}) {
    const JsonValue* h = hist->Find(json_name);
    ASSERT_NE(h, nullptr) << json_name;
    EXPECT_EQ(after.Value(metric + "_count"), static_cast<double>(h->Find("count")->AsU64())) << json_name;
    // The JSON's per-bucket counts add up to the scrape's cumulative ones.
    const JsonValue* counts = h->Find("counts");
    ASSERT_NE(counts, nullptr);
    std::vector<double> cumulative;
    double running = 0;
    for (const JsonValue& c : counts->items) cumulative.push_back(running += static_cast<double>(c.AsU64()));
    std::vector<double> scraped;
    for (const Sample& s : after.samples) {
      if (s.name == metric + "_bucket") scraped.push_back(s.value);
    }
    EXPECT_EQ(scraped, cumulative) << json_name;
  }
  EXPECT_EQ(after.Value("kvfs_read_duration_seconds_count"), after.Value("kvfs_reads_total"));
  EXPECT_EQ(after.Value("kvfs_commit_duration_seconds_count"), after.Value("kvfs_commits_total"));

  // The shipped dashboard queries only names this scrape has.
  std::ifstream in(std::string(KVFS_SOURCE_DIR) + "/packaging/grafana-kvfs.json");
  ASSERT_TRUE(in) << "packaging/grafana-kvfs.json is missing";
  std::stringstream dashboard;
  dashboard << in.rdbuf();
  const std::string text = dashboard.str();
  static const std::regex metric("kvfs_[a-z0-9_]+");
  size_t names = 0;
  for (auto m = std::sregex_iterator(text.begin(), text.end(), metric); m != std::sregex_iterator(); ++m) {
    ++names;
    EXPECT_TRUE(after.sample_names.count(m->str())) << "the dashboard queries " << m->str()
                                                    << ", which the scrape does not have";
  }
  EXPECT_GT(names, 10u);
}

// A port that is taken fails `kvfs mount` with one line, before "mounted",
// and leaves nothing mounted; the first mount keeps serving.
TEST_F(MetricsTest, PortInUseFailsTheMountCleanly) {
  const int port = Port();
  ASSERT_GT(port, 0) << mount_output();
  const std::string mnt2 = root() + "/mnt2";
  const std::string store2 = root() + "/store2";
  ASSERT_EQ(::mkdir(mnt2.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(store2.c_str(), 0755), 0);
  CommandResult r = RunCommand({kvfs_binary(), "mount", mnt2, "--store", store2, "--metrics-listen",
                                "127.0.0.1:" + std::to_string(port)});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr must be one line: [" << r.err << "]";
  EXPECT_NE(r.err.find("--metrics-listen"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("mounted"), std::string::npos) << r.out;
  EXPECT_EQ(CountMountsAt(mnt2), 0);
  if (CountMountsAt(mnt2) > 0) RunCommand({"/bin/umount", "-l", mnt2});
  // A malformed address is refused by the command line itself.
  r = RunCommand({kvfs_binary(), "mount", mnt2, "--store", store2, "--metrics-listen", "localhost:http"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(CountMountsAt(mnt2), 0);
  Scrape still;
  ASSERT_NO_FATAL_FAILURE(ScrapeInto(&still));
}

}  // namespace
}  // namespace kvfs::mounted_test
