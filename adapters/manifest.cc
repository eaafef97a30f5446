#include "adapters/manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "adapters/key_hash.h"

namespace kvfs {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + path);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync " + path);
  return Status::Ok();
}

}  // namespace

StoreManifest StoreManifest::Current() {
  StoreManifest m;
  m.format = kStoreFormatVersion;
  m.hash = kHashAlgorithm;
  m.seed = kHashSeed;
  m.layout = kStoreLayout;
  return m;
}

std::string StoreManifest::Serialize() const {
  char seed_hex[32];
  std::snprintf(seed_hex, sizeof(seed_hex), "0x%016llx", static_cast<unsigned long long>(seed));
  std::ostringstream out;
  out << "# kvfs store manifest: do not edit\n"
      << "format = " << format << "\n"
      << "hash = \"" << hash << "\"\n"
      << "seed = \"" << seed_hex << "\"\n"
      << "layout = \"" << layout << "\"\n";
  return out.str();
}

Result<StoreManifest> StoreManifest::Parse(const std::string& text) {
  StoreManifest m;
  m.format = 0;
  bool have_format = false, have_hash = false, have_seed = false, have_layout = false;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) {
      return Status::Error(EINVAL, "manifest line " + std::to_string(lineno) + ": expected name = value");
    }
    std::string name = Trim(t.substr(0, eq));
    std::string value = Trim(t.substr(eq + 1));
    bool quoted = value.size() >= 2 && value.front() == '"' && value.back() == '"';
    if (quoted) value = value.substr(1, value.size() - 2);
    try {
      if (name == "format" && !quoted) {
        size_t used = 0;
        unsigned long v = std::stoul(value, &used, 10);
        if (used != value.size() || v > 0xffffffffUL) throw std::invalid_argument("format");
        m.format = static_cast<uint32_t>(v);
        have_format = true;
      } else if (name == "hash" && quoted) {
        m.hash = value;
        have_hash = true;
      } else if (name == "seed" && quoted) {
        size_t used = 0;
        m.seed = std::stoull(value, &used, 0);
        if (used != value.size()) throw std::invalid_argument("seed");
        have_seed = true;
      } else if (name == "layout" && quoted) {
        m.layout = value;
        have_layout = true;
      } else {
        return Status::Error(EINVAL, "manifest line " + std::to_string(lineno) + ": unknown or malformed field '" + name + "'");
      }
    } catch (const std::exception&) {
      return Status::Error(EINVAL, "manifest line " + std::to_string(lineno) + ": bad value for '" + name + "'");
    }
  }
  if (!have_format || !have_hash || !have_seed || !have_layout) {
    return Status::Error(EINVAL, "manifest is missing format, hash, seed or layout");
  }
  return m;
}

Status StoreManifest::CheckCompatible() const {
  StoreManifest want = Current();
  if (format < kOldestStoreFormat || format > kStoreFormatVersion) {
    return Status::Error(EPROTO, "store format " + std::to_string(format) + " is not supported (this kvfs reads formats " +
                                     std::to_string(kOldestStoreFormat) + " to " + std::to_string(kStoreFormatVersion) +
                                     ")");
  }
  if (hash != want.hash) return Status::Error(EPROTO, "store uses hash '" + hash + "', this kvfs uses '" + want.hash + "'");
  if (seed != want.seed) return Status::Error(EPROTO, "store uses a different hash seed");
  if (FanOutLevels() == 0) return Status::Error(EPROTO, "store uses layout '" + layout + "'");
  return Status::Ok();
}

int StoreManifest::FanOutLevels() const {
  if (layout == kStoreLayout) return 1;
  if (layout == kTwoLevelStoreLayout) return 2;
  return 0;
}

Result<StoreManifest> ReadManifest(const std::string& dir) {
  std::string path = dir + "/" + kManifestFileName;
  std::ifstream in(path);
  if (!in) {
    int err = errno == 0 ? ENOENT : errno;
    return Status::FromErrno(err, "read " + path);
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return StoreManifest::Parse(buf.str());
}

Status WriteManifest(const std::string& dir, const StoreManifest& manifest) {
  std::string path = dir + "/" + kManifestFileName;
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("create " + tmp);
  std::string text = manifest.Serialize();
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  if (n != static_cast<ssize_t>(text.size()) || ::fsync(fd) != 0) {
    err = n < 0 || n == static_cast<ssize_t>(text.size()) ? errno : EIO;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "write " + tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "rename " + tmp);
  }
  return FsyncPath(dir);
}

}  // namespace kvfs
