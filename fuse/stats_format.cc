#include "fuse/stats_format.h"

#include <cstdio>
#include <sstream>

#include "core/size_parse.h"

namespace kvfs {

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

}  // namespace kvfs
