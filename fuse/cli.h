// The `kvfs` command line: subcommands mount, umount, stats and fsck, parsed
// with CLI11, and the mount.fuse3 calling convention
// (`kvfs SOURCE MOUNTPOINT -o OPTS`, what `mount -t fuse.kvfs` and fstab
// run).
//
// Where a mount option can come from, strongest first: its flag
// (`--capacity 6T`), `-o key=value` (`-o capacity=6T`; every mount option
// has this form, with '-' or '_' in its name), the config file
// (`--config FILE`, see fuse/config_file.h). Giving one option both as a
// flag and through -o is an error; the config file only fills options the
// command line left unset. The config file may also name the mountpoint
// (`mountpoint = "DIR"`), so that `kvfs mount --config FILE` is a whole
// command (what the systemd unit packaging/kvfs@.service runs). Every value is checked against the bounds listed
// in the README (configuration section); a value that is empty, out of
// range or of the wrong unit is an error, never a silent default.
//
// ParseCommandLine only parses: it starts nothing, mounts nothing, and
// touches no file except through `read_config`. It never throws. RunCli
// parses, prints what the parse produced (help, or one error line on stderr,
// exit code 2) or runs the command, and returns the process exit code.
// Neither is thread-safe with respect to the process's stdout/stderr.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fuse/config_file.h"
#include "fuse/daemon.h"

namespace kvfs {

struct CliCommand {
  enum class Action { kExit, kMount, kUmount, kStats, kFsck };
  Action action = Action::kExit;
  // kExit: the exit code; `out` goes to stdout (help), `error` (one line,
  // no newline) to stderr.
  int exit_code = 0;
  std::string out;
  std::string error;

  MountOptions mount;          // kMount
  std::string mountpoint;      // kUmount, kStats
  bool json = false;           // kStats, kFsck
  // kStats: redraw every watch_seconds (0: print once), watch_count times
  // (0: until interrupted).
  double watch_seconds = 0;
  uint64_t watch_count = 0;
  std::string fsck_store;      // kFsck
  bool fsck_repair = false;
};

// Reads a config file; LoadConfigFile in the binary, anything in tests and
// fuzzers.
using ConfigReader = std::function<Result<std::vector<ConfigEntry>>(const std::string& path)>;

// args[0] is the program name. Never throws; errors come back as kExit with
// exit_code 2 and a one-line `error`.
CliCommand ParseCommandLine(const std::vector<std::string>& args, const ConfigReader& read_config);

int RunCli(int argc, char** argv);

}  // namespace kvfs
