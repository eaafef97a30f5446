// Log text from untrusted sources: key names and store file names may hold
// newlines or other control bytes, which must not be able to forge or split
// a log line (or a line of `kvfs fsck` output).
//
// EscapeForLog quotes a name for one line of text; EscapingFormatter is a
// spdlog formatter that escapes every message it formats, so no message can
// contain a raw control byte whatever its arguments were. Pure functions and
// a stateless formatter: thread-safe.
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>

#include <memory>
#include <string>
#include <string_view>

namespace kvfs {

// name between single quotes, with control bytes (below 0x20, 0x7f), the
// backslash and the single quote written as \n, \t, \\, \' or \xNN. Other
// bytes (UTF-8 included) are kept as they are.
std::string EscapeForLog(std::string_view name);

// Control bytes in text written as \n, \t or \xNN; everything else is
// unchanged.
std::string EscapeControlBytes(std::string_view text);

// A spdlog formatter: the message payload passes through EscapeControlBytes,
// then the pattern (spdlog's pattern syntax) lays out the line.
class EscapingFormatter final : public spdlog::formatter {
 public:
  explicit EscapingFormatter(std::string pattern = "%+");
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;

 private:
  std::string pattern_;
  std::unique_ptr<spdlog::pattern_formatter> inner_;
};

}  // namespace kvfs
