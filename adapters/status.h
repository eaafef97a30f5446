// Status and Result: how errors cross every layer of kvfs.
//
// A Status is either OK or an errno value plus a short human-readable message.
// Result<T> carries either a T or a non-OK Status. Nothing in kvfs throws
// across a layer boundary; FUSE callbacks turn a Status into a reply with its
// errno. Both types are plain values: copyable, and safe to use from any
// thread as long as one object is not mutated concurrently.
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace kvfs {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  // err must be a positive errno value.
  static Status Error(int err, std::string message) { return Status(err, std::move(message)); }
  // Builds a Status from errno as set by a failed syscall, prefixed by what.
  static Status FromErrno(const std::string& what);
  static Status FromErrno(int err, const std::string& what);

  bool ok() const { return err_ == 0; }
  int err() const { return err_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Status(int err, std::string message) : err_(err), message_(std::move(message)) {}
  int err_ = 0;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}           // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}   // NOLINT: implicit by design

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  int err() const { return status_.err(); }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

// The symbolic name of an errno value ("ETIMEDOUT"), or its number.
std::string ErrnoName(int err);

}  // namespace kvfs

// Returns the Status of expr from the enclosing function when it is not OK.
#define KVFS_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::kvfs::Status kvfs_status_ = (expr);     \
    if (!kvfs_status_.ok()) return kvfs_status_; \
  } while (0)
