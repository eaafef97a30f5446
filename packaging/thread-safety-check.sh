#!/bin/sh
# Clang's thread-safety analysis over the code that carries the annotations
# (adapters/thread_annotations.h): every source of adapters/, core/ and the
# FUSE-free part of fuse/ is compiled with clang++ -fsyntax-only
# -Wthread-safety -Werror=thread-safety. Exits non-zero on any finding.
# Needs clang (packaging/install-deps.sh installs it).
set -eu
cd "$(dirname "$0")/.."
CXX=${KVFS_TSA_CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "thread-safety-check: $CXX not found (apt-get install clang)" >&2; exit 2; }
FLAGS="-std=c++20 -fsyntax-only -Wthread-safety -Werror=thread-safety -Wthread-safety-beta -Wno-unused-parameter -I."
FLAGS="$FLAGS $(pkg-config --cflags fuse3 liburing libxxhash)"
export CXX FLAGS
ls adapters/*.cc core/*.cc fuse/stats_format.cc fuse/debug_xattrs.cc |
  xargs -P "$(nproc)" -n 1 sh -c '$CXX $FLAGS "$0" || { echo "thread-safety-check: findings in $0" >&2; exit 255; }'
echo "thread-safety-check: no findings"
