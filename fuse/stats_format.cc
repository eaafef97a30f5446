#include "fuse/stats_format.h"

#include <cstdio>
#include <sstream>

#include "core/size_parse.h"

namespace kvfs {
namespace {

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

void EvictionsJson(std::ostringstream& o, const EvictionCounts& e) {
  o << "\"evictions\":{\"total\":" << e.total() << ",\"capacity\":" << e.capacity << ",\"watermark\":" << e.watermark
    << ",\"floor\":" << e.floor << ",\"bytes\":" << e.bytes << "}";
}

}  // namespace

std::string FormatStatsText(const EngineStats& s) {
  std::ostringstream o;
  auto pct = [](uint64_t a, uint64_t b) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%.1f%%", b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0);
    return std::string(buf);
  };
  o << "capacity      " << FormatSize(s.capacity_bytes) << "\n";
  o << "used          " << FormatSize(s.used_bytes) << " (" << pct(s.used_bytes, s.capacity_bytes) << ")\n";
  o << "leased        " << FormatSize(s.leased_bytes) << "\n";
  o << "pinned        " << FormatSize(s.pinned_bytes) << "\n";
  o << "evictions     " << s.evictions.total() << " (capacity " << s.evictions.capacity << ", watermark "
    << s.evictions.watermark << ", floor " << s.evictions.floor << "; " << FormatSize(s.evictions.bytes) << "), policy "
    << s.eviction_policy << "\n";
  o << "enospc        " << s.enospc << "\n";
  o << "objects       " << s.objects << "\n";
  o << "open handles  " << s.open_handles << "\n";
  o << "reads         " << s.reads << " (" << FormatSize(s.read_bytes) << ")\n";
  o << "writes        " << s.writes << " (" << FormatSize(s.write_bytes) << ")\n";
  o << "commits       " << s.commits << " (" << s.commit_failures << " failed), " << s.group_commits
    << " publish groups for " << s.group_commit_jobs << " commits\n";
  o << "durability    " << s.durability;
  if (s.durability == "background") {
    o << ", " << s.background_syncs << " background flushes (" << s.background_sync_failures << " failed), "
      << s.stores_not_durable << " stores awaiting a flush";
  }
  o << "\n";
  o << "lookups       " << s.lookups << " (" << s.negative_lookups << " misses)\n";
  o << "buffer pool   " << s.pool_buffers << " x " << FormatSize(s.pool_buffer_bytes) << ", hits " << s.pool_hits
    << ", misses " << s.pool_misses << " (" << pct(s.pool_hits, s.pool_hits + s.pool_misses) << " hit)\n";
  o << "io            " << (s.io_uring ? "io_uring" : "pread/pwrite") << ", in flight " << s.io_in_flight << "\n";
  for (const StoreStats& st : s.stores) {
    o << "store " << st.name << "\n";
    o << "  capacity    " << FormatSize(st.capacity_bytes) << " (free-space floor " << FormatSize(st.floor_bytes) << ")\n";
    o << "  objects     " << st.objects << "\n";
    o << "  used        " << FormatSize(st.used_bytes) << "\n";
    o << "  leased      " << FormatSize(st.leased_bytes) << ", pinned " << FormatSize(st.pinned_bytes) << "\n";
    o << "  evictions   " << st.evictions.total() << " (capacity " << st.evictions.capacity << ", watermark "
      << st.evictions.watermark << ", floor " << st.evictions.floor << "), enospc " << st.enospc << "\n";
    o << "  filesystem  " << FormatSize(st.fs_free_bytes) << " free of " << FormatSize(st.fs_total_bytes) << "\n";
    o << "  direct io   " << (st.direct_io ? "yes" : "no") << "\n";
    o << "  store ops   " << st.health.calls << ", failed " << st.health.failures << " (timeouts "
      << st.health.timeouts;
    for (const auto& [err, n] : st.health.errors_by_errno) o << ", " << ErrnoName(err) << " " << n;
    o << ")\n";
    if (st.shared) {
      o << "  shared      host " << st.host_id << ", evictor "
        << (st.evictor_holder.empty() ? std::string("none yet") : st.evictor_holder) << (st.holds_evictor ? " (this host)" : "")
        << "\n";
      o << "  reconcile   " << st.reconcile_passes << " passes (" << st.reconcile_failures << " failed); from other hosts: "
        << st.remote_added << " added, " << st.remote_replaced << " replaced, " << st.remote_removed << " removed, "
        << st.read_through << " read-through lookups\n";
    }
  }
  return o.str();
}

std::string FormatStatsJson(const EngineStats& s) {
  std::ostringstream o;
  o << "{\"capacity_bytes\":" << s.capacity_bytes << ",\"used_bytes\":" << s.used_bytes
    << ",\"leased_bytes\":" << s.leased_bytes << ",\"pinned_bytes\":" << s.pinned_bytes << ",";
  EvictionsJson(o, s.evictions);
  o << ",\"enospc\":" << s.enospc << ",\"checksum_failures\":" << s.checksum_failures
    << ",\"quarantined\":" << s.quarantined << ",\"eviction_policy\":\"" << s.eviction_policy << "\"" << ",\"objects\":" << s.objects << ",\"inodes\":" << s.inodes
    << ",\"open_handles\":" << s.open_handles << ",\"reads\":" << s.reads << ",\"read_bytes\":" << s.read_bytes
    << ",\"writes\":" << s.writes << ",\"write_bytes\":" << s.write_bytes << ",\"commits\":" << s.commits
    << ",\"commit_failures\":" << s.commit_failures << ",\"group_commits\":" << s.group_commits
    << ",\"group_commit_jobs\":" << s.group_commit_jobs << ",\"durability\":\"" << s.durability
    << "\",\"background_syncs\":" << s.background_syncs
    << ",\"background_sync_failures\":" << s.background_sync_failures
    << ",\"stores_not_durable\":" << s.stores_not_durable << ",\"lookups\":" << s.lookups
    << ",\"negative_lookups\":" << s.negative_lookups << ",\"page_cache_opens\":" << s.page_cache_opens
    << ",\"superseded_inodes\":" << s.superseded_inodes << ",\"pool_hits\":" << s.pool_hits
    << ",\"pool_misses\":" << s.pool_misses << ",\"pool_buffers\":" << s.pool_buffers
    << ",\"pool_buffer_bytes\":" << s.pool_buffer_bytes << ",\"io_in_flight\":" << s.io_in_flight
    << ",\"io_uring\":" << (s.io_uring ? "true" : "false") << ",\"stores\":[";
  for (size_t i = 0; i < s.stores.size(); ++i) {
    const StoreStats& st = s.stores[i];
    if (i) o << ",";
    o << "{\"name\":\"" << JsonEscape(st.name) << "\",\"capacity_bytes\":" << st.capacity_bytes
      << ",\"floor_bytes\":" << st.floor_bytes << ",\"objects\":" << st.objects << ",\"used_bytes\":" << st.used_bytes
      << ",\"leased_bytes\":" << st.leased_bytes << ",\"pinned_bytes\":" << st.pinned_bytes << ",";
    EvictionsJson(o, st.evictions);
    o << ",\"enospc\":" << st.enospc << ",\"checksum_failures\":" << st.checksum_failures
      << ",\"quarantined\":" << st.quarantined << ",\"fs_total_bytes\":" << st.fs_total_bytes
      << ",\"fs_free_bytes\":" << st.fs_free_bytes << ",\"direct_io\":" << (st.direct_io ? "true" : "false");
    o << ",\"health\":{\"calls\":" << st.health.calls << ",\"failures\":" << st.health.failures
      << ",\"timeouts\":" << st.health.timeouts << ",\"errors\":{";
    bool first = true;
    for (const auto& [err, n] : st.health.errors_by_errno) {
      o << (first ? "" : ",") << "\"" << ErrnoName(err) << "\":" << n;
      first = false;
    }
    o << "}}";
    if (st.shared) {
      o << ",\"shared\":{\"host_id\":\"" << JsonEscape(st.host_id) << "\",\"evictor_holder\":\""
        << JsonEscape(st.evictor_holder) << "\",\"holds_evictor\":" << (st.holds_evictor ? "true" : "false")
        << ",\"reconcile_passes\":" << st.reconcile_passes << ",\"reconcile_failures\":" << st.reconcile_failures
        << ",\"remote_added\":" << st.remote_added << ",\"remote_replaced\":" << st.remote_replaced
        << ",\"remote_removed\":" << st.remote_removed << ",\"read_through\":" << st.read_through << "}";
    }
    o << "}";
  }
  o << "]}";
  return o.str();
}

}  // namespace kvfs
