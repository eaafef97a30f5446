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

// Longest name of one path component, as the engine enforces it.
constexpr size_t kMaxComponentLength = 255;
// Larger data sizes are impossible (and would overflow the footprint sums).
constexpr uint64_t kMaxObjectDataBytes = uint64_t{1} << 56;

// Empty when key is one the engine could have written for an object of this
// kind, else the reason. The root directory's record has the empty key.
std::string KeyProblem(const std::string& key, ObjectKind kind) {
  if (key.empty()) return kind == ObjectKind::kDirectory ? "" : "empty key on a file";
  if (key.size() > kMaxKeyLength) return "key longer than " + std::to_string(kMaxKeyLength) + " bytes";
  if (key.find('\0') != std::string::npos) return "key holds a NUL byte";
  if (key.front() == '/') return "key is an absolute path";
  size_t start = 0;
  while (true) {
    size_t slash = key.find('/', start);
    std::string_view part(key.data() + start, (slash == std::string::npos ? key.size() : slash) - start);
    if (part.empty()) return "key has an empty component";
    if (part == "." || part == "..") return "key has a '" + std::string(part) + "' component";
    if (part.size() > kMaxComponentLength) {
      return "key has a component longer than " + std::to_string(kMaxComponentLength) + " bytes";
    }
    if (slash == std::string::npos) return "";
    start = slash + 1;
  }
}

// Empty when the object's data matches its checksums, else the reason.
std::string VerifyData(Store& store, const std::string& location, const ObjectHeader& h) {
  if (h.kind != ObjectKind::kFile) return "";
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
      XXH3_64bits_update(st, chunk.data(), len);
    }
    if (why.empty() && XXH3_64bits_digest(st) != h.checksum) why = "whole-object checksum mismatch";
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
    bool is_file;
    uint64_t size;
  };
  std::map<std::string, std::vector<Seen>> by_key;
  std::vector<std::string> corrupt_locations;
  Status scan = store.Scan(
      [&](const ScannedObject& obj) {
        std::string why;
        if (!obj.header.ok()) {
          why = "bad header: " + obj.header.status().message();
        } else if (obj.header->kind == ObjectKind::kFile && obj.header->size > kMaxObjectDataBytes) {
          why = "header says " + std::to_string(obj.header->size) + " data bytes, more than any object can hold";
        } else if (std::string bad = KeyProblem(obj.header->key, obj.header->kind); !bad.empty()) {
          std::lock_guard<std::mutex> g(mu);
          r.bad_keys++;
          r.problems.push_back("bad key " + EscapeForLog(obj.header->key) + " at " + obj.location + ": " + bad);
          corrupt_locations.push_back(obj.location);
          return;
        } else if (obj.header->kind == ObjectKind::kFile && obj.file_bytes < ObjectFootprint(obj.header->size)) {
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
        } else {
          r.directories++;
        }
        by_key[h.key].push_back(Seen{obj.location, h.generation, h.kind == ObjectKind::kFile, h.size});
      },
      threads);
  if (!scan.ok()) return scan;
  // A key under a key that is a file cannot be reached through the namespace
  // (a forged header, or one left from a rename that did not finish).
  for (auto it = by_key.begin(); it != by_key.end();) {
    const std::string& key = it->first;
    std::string blocker;
    for (size_t slash = key.find('/'); slash != std::string::npos && blocker.empty(); slash = key.find('/', slash + 1)) {
      auto parent = by_key.find(key.substr(0, slash));
      if (parent == by_key.end()) continue;
      for (const Seen& p : parent->second) {
        if (p.is_file) blocker = parent->first;
      }
    }
    if (blocker.empty()) {
      ++it;
      continue;
    }
    for (const Seen& c : it->second) {
      r.bad_keys++;
      r.objects--;
      if (c.is_file) {
        r.files--;
        r.bytes -= c.size;
      } else {
        r.directories--;
      }
      r.problems.push_back("bad key " + EscapeForLog(key) + " at " + c.location + ": it lies under " +
                           EscapeForLog(blocker) + ", which is a file");
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
      r.objects--;
      if (copies[i].is_file) {
        r.files--;
        r.bytes -= copies[i].size;
      } else {
        r.directories--;
      }
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
  o << "objects " << objects << " (" << files << " files, " << directories << " directories), data "
    << FormatSize(bytes) << "\n";
  o << "corrupt " << corrupt << ", bad keys " << bad_keys << ", duplicates " << duplicates << ", staging leftovers "
    << staging_leftovers;
  if (repaired) o << ", repaired " << repaired;
  o << "\n" << (clean() ? "clean" : (repaired ? "problems found and repaired" : "problems found")) << "\n";
  return o.str();
}

std::string FsckReport::ToJson() const {
  std::ostringstream o;
  o << "{\"objects\":" << objects << ",\"files\":" << files << ",\"directories\":" << directories
    << ",\"bytes\":" << bytes << ",\"corrupt\":" << corrupt << ",\"bad_keys\":" << bad_keys
    << ",\"duplicates\":" << duplicates
    << ",\"staging_leftovers\":" << staging_leftovers << ",\"repaired\":" << repaired
    << ",\"clean\":" << (clean() ? "true" : "false") << "}";
  return o.str();
}

}  // namespace kvfs
