// Entry point of the `kvfs` binary: parses the command line (fuse/cli.h) and
// runs the command (fuse/daemon.h).
#include <iostream>
#include <new>

#include "fuse/cli.h"
#include "fuse/daemon.h"

namespace kvfs {

int RunCli(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  CliCommand cmd = ParseCommandLine(args, LoadConfigFile);
  switch (cmd.action) {
    case CliCommand::Action::kExit:
      std::cout << cmd.out << std::flush;
      if (!cmd.error.empty()) std::cerr << cmd.error << std::endl;
      return cmd.exit_code;
    case CliCommand::Action::kMount:
      return RunMount(cmd.mount);
    case CliCommand::Action::kUmount:
      return RunUmount(cmd.mountpoint);
    case CliCommand::Action::kStats:
      return RunStats(cmd.mountpoint, cmd.json, cmd.watch_seconds, cmd.watch_count);
    case CliCommand::Action::kFsck:
      return RunFsck(cmd.fsck_store, cmd.fsck_repair, cmd.json);
  }
  return 2;
}

}  // namespace kvfs

int main(int argc, char** argv) {
  // Every failure is one line on stderr and an exit code, never a trace.
  try {
    return kvfs::RunCli(argc, argv);
  } catch (const std::bad_alloc&) {
    std::cerr << "kvfs: out of memory" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "kvfs: " << e.what() << std::endl;
  }
  return 1;
}
