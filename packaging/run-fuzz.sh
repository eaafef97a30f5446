#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for a bounded time
# (KVFS_FUZZ_SECONDS, default 20; four targets: header, manifest, config
# file, command line) from the seed corpus in fuzz/corpus.
# Exits non-zero when a target crashes. Skips (exit 0) without clang.
set -eu
cd "$(dirname "$0")/.."
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not installed, skipping"
  exit 0
fi
SECONDS_EACH=${KVFS_FUZZ_SECONDS:-20}
cmake -S fuzz -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
for t in header manifest config cli; do
  work=$(mktemp -d)
  cp fuzz/corpus/$t/* "$work"/
  echo "fuzz: ${t}_fuzz for ${SECONDS_EACH}s"
  if ! ./build-fuzz/${t}_fuzz -max_total_time="$SECONDS_EACH" "$work" > "$work.log" 2>&1; then
    tail -n 40 "$work.log"
    echo "fuzz: ${t}_fuzz found a crash"
    exit 1
  fi
  grep -E "^Done" "$work.log" || true
  rm -rf "$work" "$work.log"
done
