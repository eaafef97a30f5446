#include "core/log_text.h"

#include <cstdio>

namespace kvfs {
namespace {

void AppendEscaped(std::string* out, unsigned char c, bool quote) {
  switch (c) {
    case '\n': *out += "\\n"; return;
    case '\r': *out += "\\r"; return;
    case '\t': *out += "\\t"; return;
    case '\\':
      *out += quote ? "\\\\" : "\\";
      return;
    case '\'':
      *out += quote ? "\\'" : "'";
      return;
    default:
      break;
  }
  if (c < 0x20 || c == 0x7f) {
    char buf[5];
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    *out += buf;
  } else {
    *out += static_cast<char>(c);
  }
}

}  // namespace

std::string EscapeForLog(std::string_view name) {
  std::string out = "'";
  for (unsigned char c : name) AppendEscaped(&out, c, true);
  out += "'";
  return out;
}

std::string EscapeControlBytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) AppendEscaped(&out, c, false);
  return out;
}

EscapingFormatter::EscapingFormatter(std::string pattern)
    : pattern_(std::move(pattern)), inner_(std::make_unique<spdlog::pattern_formatter>(pattern_)) {}

void EscapingFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  std::string_view payload(msg.payload.data(), msg.payload.size());
  bool clean = true;
  for (unsigned char c : payload) {
    if (c < 0x20 || c == 0x7f) {
      clean = false;
      break;
    }
  }
  if (clean) return inner_->format(msg, dest);
  std::string escaped = EscapeControlBytes(payload);
  spdlog::details::log_msg copy(msg);
  copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
  inner_->format(copy, dest);
}

std::unique_ptr<spdlog::formatter> EscapingFormatter::clone() const {
  return std::make_unique<EscapingFormatter>(pattern_);
}

}  // namespace kvfs
