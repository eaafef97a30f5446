// Entry point of the `kvfs` binary; see fuse/cli.h.
#include "fuse/cli.h"

int main(int argc, char** argv) { return kvfs::RunCli(argc, argv); }
