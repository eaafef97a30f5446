#include "core/fsck.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string_view>

#include "core/log_text.h"
#include "core/size_parse.h"

namespace kvfs {
namespace {

// Reads [offset, offset+len) of fd into out; false on a short file or error.
// fsck is an offline tool run on an unmounted store: it reads object files
// directly rather than through Store::TransferData (no deadline or fault
// wrapper applies, and none is needed with nobody waiting on a mount).
bool ReadAll(int fd, uint64_t offset, size_t len, std::vector<uint8_t>* out) {
  out->resize(len);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, out->data() + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Empty when the object's data matches its checksums, else the reason.
std::string VerifyData(Store& store, const std::string& location, const ObjectHeader& h) {
  if (h.kind == ObjectKind::kDirectory || h.size == 0) return "";  // no data to verify
  std::string path = store.root() + "/" + location;
  // Never through a symlink, never blocking on a FIFO planted in the store.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return std::string("cannot open: ") + std::strerror(errno);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return "not a regular file";
  }
  std::string why;
  std::vector<uint8_t> table;
  uint64_t chunks = ChunkCount(h.size);
  if (!ReadAll(fd, ChecksumTableOffset(h.size), chunks * 8, &table)) {
    why = "checksum table missing or short";
  } else {
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    std::vector<uint8_t> chunk;
    for (uint64_t c = 0; c < chunks && why.empty(); ++c) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(kChunkSize, h.size - c * kChunkSize));
      if (!ReadAll(fd, kHeaderSize + c * kChunkSize, len, &chunk)) {
        why = "data shorter than the header says";
        break;
      }
      uint64_t want;
      std::memcpy(&want, table.data() + c * 8, 8);
      if (XXH3_64bits(chunk.data(), len) != want) why = "checksum mismatch in chunk " + std::to_string(c);
      if (!ChecksumIsOfTable(h)) XXH3_64bits_update(st, chunk.data(), len);
    }
    const uint64_t whole = ChecksumIsOfTable(h) ? DataChecksumOfTable(table.data(), chunks) : XXH3_64bits_digest(st);
    if (why.empty() && whole != h.checksum) why = "whole-object checksum mismatch";
    XXH3_freeState(st);
  }
  ::close(fd);
  return why;
}

}  // namespace

Result<FsckReport> CheckStore(Store& store, bool repair, int threads) {
  FsckReport r;
  std::mutex mu;
  struct Seen {
    std::string location;
    uint64_t generation;
    ObjectKind kind;
    uint64_t size;
  };
  // Takes a copy the scan counted back out of the totals.
  auto uncount = [&r](const Seen& c) {
    r.objects--;
    if (c.kind == ObjectKind::kFile) {
      r.files--;
      r.bytes -= c.size;
    } else if (c.kind == ObjectKind::kSpecial) {
      r.special--;
    } else {
      r.directories--;
    }
  };
  std::map<std::string, std::vector<Seen>> by_key;
  std::vector<std::string> corrupt_locations;
  Status scan = store.Scan(
      [&](const ScannedObject& obj) {
        std::string why;
        if (!obj.header.ok() && IsNewerFormat(obj.header.status())) {
          std::lock_guard<std::mutex> g(mu);
          r.newer_format++;
          r.problems.push_back("newer format at " + obj.location + ": " + obj.header.status().message() +
                               " (written by a newer kvfs; left alone)");
          return;
        }
        if (!obj.header.ok()) {
          why = "bad header: " + obj.header.status().message();
        } else if (obj.header->kind == ObjectKind::kFile && obj.header->size > kMaxObjectDataBytes) {
          why = HeaderProblem(*obj.header);
        } else if (std::string bad = HeaderProblem(*obj.header); !bad.empty()) {
          std::lock_guard<std::mutex> g(mu);
          r.bad_keys++;
          r.problems.push_back("bad key " + EscapeForLog(obj.header->key) + " at " + obj.location + ": " + bad);
          corrupt_locations.push_back(obj.location);
          return;
        } else if (obj.header->kind != ObjectKind::kDirectory && obj.file_bytes < ObjectFootprint(obj.header->size)) {
          why = "file is " + std::to_string(obj.file_bytes) + " bytes, header needs " +
                std::to_string(ObjectFootprint(obj.header->size));
        } else {
          why = VerifyData(store, obj.location, *obj.header);
        }
        std::lock_guard<std::mutex> g(mu);
        if (!why.empty()) {
          r.corrupt++;
          r.problems.push_back("corrupt " + obj.location + ": " + why);
          corrupt_locations.push_back(obj.location);
          return;
        }
        const ObjectHeader& h = *obj.header;
        r.objects++;
        if (h.kind == ObjectKind::kFile) {
          r.files++;
          r.bytes += h.size;
        } else if (h.kind == ObjectKind::kSpecial) {
          r.special++;
        } else {
          r.directories++;
        }
        by_key[h.key].push_back(Seen{obj.location, h.generation, h.kind, h.size});
      },
      threads);
  if (!scan.ok()) return scan;
  // A key under a key that is a file (or a special record) cannot be reached through the namespace
  // (a forged header, or one left from a rename that did not finish).
  for (auto it = by_key.begin(); it != by_key.end();) {
    const std::string& key = it->first;
    std::string blocker;
    for (size_t slash = key.find('/'); slash != std::string::npos && blocker.empty(); slash = key.find('/', slash + 1)) {
      auto parent = by_key.find(key.substr(0, slash));
      if (parent == by_key.end()) continue;
      for (const Seen& p : parent->second) {
        if (p.kind != ObjectKind::kDirectory) blocker = parent->first;
      }
    }
    if (blocker.empty()) {
      ++it;
      continue;
    }
    for (const Seen& c : it->second) {
      r.bad_keys++;
      uncount(c);
      r.problems.push_back("bad key " + EscapeForLog(key) + " at " + c.location + ": it lies under " +
                           EscapeForLog(blocker) + ", which is not a directory");
      corrupt_locations.push_back(c.location);
    }
    it = by_key.erase(it);
  }
  std::vector<std::string> superseded;
  for (auto& [key, copies] : by_key) {
    if (copies.size() < 2) continue;
    size_t best = 0;
    for (size_t i = 1; i < copies.size(); ++i) {
      if (copies[i].generation > copies[best].generation) best = i;
    }
    for (size_t i = 0; i < copies.size(); ++i) {
      if (i == best) continue;
      r.duplicates++;
      uncount(copies[i]);
      r.problems.push_back("duplicate of " + EscapeForLog(key) + " at " + copies[i].location + " (superseded by " +
                           copies[best].location + ")");
      superseded.push_back(copies[i].location);
    }
  }
  Result<std::vector<std::string>> staging = store.ListStaging();
  if (!staging.ok()) return staging.status();
  r.staging_leftovers = staging->size();
  for (const std::string& name : *staging) r.problems.push_back("staging leftover " + EscapeForLog(name));

  if (repair) {
    for (const std::string& loc : corrupt_locations) {
      if (store.Quarantine(loc).ok()) r.repaired++;
    }
    for (const std::string& loc : superseded) {
      if (store.Remove(loc).ok()) r.repaired++;
    }
    for (const std::string& name : *staging) {
      if (store.RemoveStaging(name).ok()) r.repaired++;
    }
  }
  return r;
}

std::string FsckReport::ToText() const {
  std::ostringstream o;
  for (const std::string& p : problems) o << p << "\n";
  o << "objects " << objects << " (" << files << " files, " << directories << " directories, " << special
    << " links and special files), data "
    << FormatSize(bytes) << "\n";
  o << "corrupt " << corrupt << ", bad keys " << bad_keys << ", duplicates " << duplicates << ", staging leftovers "
    << staging_leftovers;
  if (newer_format) o << ", newer format (left alone) " << newer_format;
  if (repaired) o << ", repaired " << repaired;
  o << "\n" << (clean() ? "clean" : (repaired ? "problems found and repaired" : "problems found")) << "\n";
  return o.str();
}

std::string FsckReport::ToJson() const {
  std::ostringstream o;
  o << "{\"objects\":" << objects << ",\"files\":" << files << ",\"directories\":" << directories
    << ",\"special\":" << special
    << ",\"bytes\":" << bytes << ",\"corrupt\":" << corrupt << ",\"bad_keys\":" << bad_keys
    << ",\"duplicates\":" << duplicates
    << ",\"staging_leftovers\":" << staging_leftovers << ",\"newer_format\":" << newer_format
    << ",\"repaired\":" << repaired
    << ",\"clean\":" << (clean() ? "true" : "false") << "}";
  return o.str();
}

}  // namespace kvfs
