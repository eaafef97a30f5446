// The `kvfs` command line: subcommands mount, umount, stats and fsck, parsed
// with CLI11. Every mount flag can also come from a TOML config file (--config).
// Misuse prints one line to stderr and returns a non-zero exit code.
#pragma once

namespace kvfs {

int RunCli(int argc, char** argv);

}  // namespace kvfs
