#include "fuse/config_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>

namespace kvfs {
namespace {

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// A character that may appear in a bare (unquoted) value such as 6T, 0.95,
// true or 2%.
bool IsBareChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u == 0x7f) return false;
  switch (c) {
    case '#': case '"': case '\'': case '[': case ']': case '{': case '}': case ',': case '=':
      return false;
    default:
      return true;
  }
}

class ConfigParser {
 public:
  ConfigParser(std::string_view text, const std::string& name) : t_(text), name_(name) {}

  Result<std::vector<ConfigEntry>> Parse() {
    for (size_t k = 0; k < t_.size(); ++k) {
      if (t_[k] == '\0') {
        line_ = LineOf(k);
        return Err("NUL byte (not a text file)");
      }
    }
    std::vector<ConfigEntry> entries;
    std::map<std::string, int> seen;  // key -> line
    bool had_mount = false;
    while (true) {
      SkipBlanks();
      if (AtEnd()) break;
      char c = t_[i_];
      if (c == '\n' || c == '\r' || c == '#') {
        Status s = EndOfLine();
        if (!s.ok()) return s;
        continue;
      }
      if (c == '[') {
        if (Peek(1) == '[') return Err("arrays of tables ([[...]]) are not supported");
        ++i_;
        SkipBlanks();
        size_t start = i_;
        while (!AtEnd() && IsKeyChar(t_[i_])) ++i_;
        std::string section(t_.substr(start, i_ - start));
        SkipBlanks();
        if (AtEnd() || t_[i_] != ']') return Err("malformed section header (expected [mount])");
        ++i_;
        if (section != "mount") return Err("unknown section [" + section + "] (options go under [mount])");
        if (had_mount) return Err("section [mount] given twice");
        had_mount = true;
        Status s = EndOfLine();
        if (!s.ok()) return s;
        continue;
      }
      ConfigEntry entry;
      entry.line = line_;
      size_t start = i_;
      while (!AtEnd() && IsKeyChar(t_[i_])) ++i_;
      entry.key = std::string(t_.substr(start, i_ - start));
      if (entry.key.empty()) {
        if (c == '"' || c == '\'') return Err("quoted keys are not supported");
        return Err("expected a key (a long option name such as capacity)");
      }
      SkipBlanks();
      if (!AtEnd() && t_[i_] == '.') return Err("dotted keys are not supported ('" + entry.key + ".')");
      if (AtEnd() || t_[i_] != '=') return Err("expected '=' after '" + entry.key + "'");
      ++i_;
      SkipBlanks();
      if (AtEnd() || t_[i_] == '\n' || t_[i_] == '\r' || t_[i_] == '#') {
        return Err("'" + entry.key + "' has no value");
      }
      if (t_[i_] == '[') {
        Status s = ParseArray(entry.key, &entry.values);
        if (!s.ok()) return s;
      } else {
        std::string v;
        Status s = ParseScalar(entry.key, &v);
        if (!s.ok()) return s;
        entry.values.push_back(std::move(v));
      }
      Status s = EndOfLine();
      if (!s.ok()) return s;
      auto [it, inserted] = seen.emplace(entry.key, entry.line);
      if (!inserted) {
        line_ = entry.line;
        return Err("'" + entry.key + "' is given twice (first on line " + std::to_string(it->second) + ")");
      }
      entries.push_back(std::move(entry));
    }
    return entries;
  }

 private:
  bool AtEnd() const { return i_ >= t_.size(); }
  char Peek(size_t ahead) const { return i_ + ahead < t_.size() ? t_[i_ + ahead] : '\0'; }
  int LineOf(size_t pos) const {
    int n = 1;
    for (size_t k = 0; k < pos && k < t_.size(); ++k) n += t_[k] == '\n';
    return n;
  }
  Status Err(const std::string& msg) const {
    return Status::Error(EINVAL, name_ + " line " + std::to_string(line_) + ": " + msg);
  }
  void SkipBlanks() {
    while (!AtEnd() && (t_[i_] == ' ' || t_[i_] == '\t')) ++i_;
  }
  // Skips blanks, comments and line ends (inside an array).
  Status SkipBlanksAndLines() {
    while (!AtEnd()) {
      char c = t_[i_];
      if (c == ' ' || c == '\t') {
        ++i_;
      } else if (c == '#') {
        while (!AtEnd() && t_[i_] != '\n') ++i_;
      } else if (c == '\r') {
        if (Peek(1) != '\n') return Err("stray carriage return");
        ++i_;
      } else if (c == '\n') {
        ++i_;
        ++line_;
      } else {
        break;
      }
    }
    return Status::Ok();
  }
  // After a value or header: blanks, an optional comment, then a line end or
  // the end of the text.
  Status EndOfLine() {
    SkipBlanks();
    if (!AtEnd() && t_[i_] == '#') {
      while (!AtEnd() && t_[i_] != '\n') ++i_;
    }
    if (AtEnd()) return Status::Ok();
    if (t_[i_] == '\r' && Peek(1) == '\n') ++i_;
    if (t_[i_] != '\n') return Err("unexpected text after the value");
    ++i_;
    ++line_;
    return Status::Ok();
  }
  Status ParseArray(const std::string& key, std::vector<std::string>* out) {
    ++i_;  // '['
    const int first_line = line_;
    auto unterminated = [&] {
      line_ = first_line;  // name the line where the array starts
      return Err("unterminated array for '" + key + "'");
    };
    while (true) {
      Status s = SkipBlanksAndLines();
      if (!s.ok()) return s;
      if (AtEnd()) return unterminated();
      if (t_[i_] == ']') {
        ++i_;
        break;
      }
      if (t_[i_] == '[') return Err("nested arrays are not supported ('" + key + "')");
      if (t_[i_] == ',') return Err("missing value in the array for '" + key + "'");
      std::string v;
      s = ParseScalar(key, &v);
      if (!s.ok()) return s;
      out->push_back(std::move(v));
      s = SkipBlanksAndLines();
      if (!s.ok()) return s;
      if (AtEnd()) return unterminated();
      if (t_[i_] == ',') {
        ++i_;
      } else if (t_[i_] != ']') {
        return Err("expected ',' or ']' in the array for '" + key + "'");
      }
    }
    if (out->empty()) return Err("'" + key + "' is an empty array");
    return Status::Ok();
  }
  Status ParseScalar(const std::string& key, std::string* out) {
    char c = t_[i_];
    if (c == '{') return Err("inline tables are not supported ('" + key + "')");
    if (c == '"' || c == '\'') {
      if (Peek(1) == c && Peek(2) == c) return Err("multi-line strings are not supported ('" + key + "')");
      const char quote = c;
      ++i_;
      while (true) {
        if (AtEnd() || t_[i_] == '\n') return Err("unterminated string for '" + key + "'");
        char d = t_[i_];
        unsigned char u = static_cast<unsigned char>(d);
        if ((u < 0x20 && d != '\t') || u == 0x7f) return Err("control character in the string for '" + key + "'");
        ++i_;
        if (d == quote) break;
        if (d == '\\' && quote == '"') {
          if (AtEnd()) return Err("unterminated string for '" + key + "'");
          char e = t_[i_++];
          switch (e) {
            case '\\': out->push_back('\\'); break;
            case '"': out->push_back('"'); break;
            case 'n': out->push_back('\n'); break;
            case 't': out->push_back('\t'); break;
            case 'r': out->push_back('\r'); break;
            case 'b': out->push_back('\b'); break;
            case 'f': out->push_back('\f'); break;
            default: return Err(std::string("unsupported escape \\") + (e == '\n' ? 'n' : e) + " in '" + key + "'");
          }
          continue;
        }
        out->push_back(d);
      }
      return Status::Ok();
    }
    size_t start = i_;
    while (!AtEnd() && IsBareChar(t_[i_])) ++i_;
    if (i_ == start) return Err("'" + key + "' has no value");
    *out = std::string(t_.substr(start, i_ - start));
    return Status::Ok();
  }

  std::string_view t_;
  const std::string& name_;
  size_t i_ = 0;
  int line_ = 1;
};

}  // namespace

Result<std::vector<ConfigEntry>> ParseConfigText(std::string_view text, const std::string& name) {
  return ConfigParser(text, name).Parse();
}

Result<std::vector<ConfigEntry>> LoadConfigFile(const std::string& path) {
  const std::string what = "config file " + path;
  if (path.empty()) return Status::Error(EINVAL, "config file: empty path");
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Status::FromErrno(what);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = Status::FromErrno(what);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::Error(EINVAL, what + " is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    ::close(fd);
    return Status::Error(EINVAL, what + " is larger than " + std::to_string(kMaxConfigBytes >> 10) + " KiB");
  }
  std::string text;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Status::FromErrno(what);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {  // the file grew while being read
      ::close(fd);
      return Status::Error(EINVAL, what + " is larger than " + std::to_string(kMaxConfigBytes >> 10) + " KiB");
    }
  }
  ::close(fd);
  return ParseConfigText(text, what);
}

}  // namespace kvfs
