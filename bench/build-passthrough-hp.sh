#!/bin/sh
# Builds libfuse's example passthrough file system, passthrough_hp (a bare
# FUSE file system mirroring a directory), from Debian's fuse3 source
# package: the same libfuse version kvfs links against. bench/engine_patterns.py
# (--with-passthrough-hp) mounts it as the floor any FUSE file system pays.
# libfuse's code is fetched at build time, never kept in this repository.
#
#   bench/build-passthrough-hp.sh [CACHE]     # CACHE: /tmp/kvfs-passthrough-hp
#
# Fetches and unpacks the source into CACHE (packaging/fetch-fuse3-source.sh;
# root, when a deb-src entry must be added), compiles
# example/passthrough_hp.cc into CACHE/passthrough_hp, and prints that path as
# its last line. A binary already in CACHE is reused as it is. Needs g++,
# pkg-config and libfuse3-dev (packaging/install-deps.sh). On failure: one
# line on stderr, exit 2.
set -eu
fail() { echo "build-passthrough-hp: $*" >&2; exit 2; }
[ $# -le 1 ] || fail "usage: build-passthrough-hp.sh [CACHE]"
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${1:-/tmp/kvfs-passthrough-hp}
mkdir -p "$cache" || fail "cannot create $cache"
cache=$(cd "$cache" && pwd)
bin="$cache/passthrough_hp"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

command -v g++ >/dev/null 2>&1 || fail "g++ not found (packaging/install-deps.sh installs it)"
command -v pkg-config >/dev/null 2>&1 || fail "pkg-config not found (packaging/install-deps.sh installs it)"
flags=$(pkg-config --cflags --libs fuse3 2>/dev/null) ||
  fail "pkg-config knows no fuse3 (install libfuse3-dev: packaging/install-deps.sh)"

# The fetch script says what went wrong itself; its one stdout line is the tree.
src=$("$repo/packaging/fetch-fuse3-source.sh" "$cache") || exit 2
example="$src/example"
for f in passthrough_hp.cc cxxopts.hpp; do
  [ -f "$example/$f" ] || fail "$example has no $f"
done

echo "build-passthrough-hp: compiling $example/passthrough_hp.cc" >&2
log="$cache/build.log"
# shellcheck disable=SC2086
if ! g++ -std=c++17 -O2 -I"$example" -o "$bin.tmp" "$example/passthrough_hp.cc" $flags -pthread >"$log" 2>&1; then
  rm -f "$bin.tmp"
  fail "compiling passthrough_hp.cc failed (compiler output: $log)"
fi
mv "$bin.tmp" "$bin"
echo "$bin"
