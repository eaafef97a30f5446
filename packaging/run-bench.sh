#!/bin/sh
# One command from a fresh Debian 12 machine (as root) to the side-by-side
# benchmark: installs what it needs from Debian's own archive (apt-get),
# builds kvfs and kvfs_mount_bench, and runs bench/run_bench.py, which mounts
# kvfs on a scratch directory, compares it with a plain directory and fio,
# unmounts, and writes bench/results/latest.{json,md,png}; then
# bench/engine_patterns.py, the inference engines' own file patterns
# (bench/results/engine_patterns.{json,md}).
#
#   ./packaging/run-bench.sh            # default run (a few minutes)
#   ./packaging/run-bench.sh --quick    # smoke run (about a minute)
#   ./packaging/run-bench.sh --with-passthrough-hp
#       # the engine patterns also on libfuse's passthrough_hp, built from
#       # Debian's fuse3 source (bench/build-passthrough-hp.sh)
#
# Other arguments are passed to bench/run_bench.py (see its --help).
set -eu
cd "$(dirname "$0")/.."

# --quick goes to both scripts, --with-passthrough-hp to engine_patterns.py
# only; the rest stays in "$@" for run_bench.py.
quick=""
passthrough=""
for a in "$@"; do
  shift
  case $a in
    --with-passthrough-hp) passthrough=$a; continue ;;
    --quick) quick=$a ;;
  esac
  set -- "$@" "$a"
done

if [ "$(id -u)" -ne 0 ]; then
  echo "run-bench.sh: run as root (it installs packages, mounts kvfs and drops the page cache)" >&2
  exit 1
fi

# Build and runtime dependencies of kvfs itself.
./packaging/install-deps.sh

# What the benchmark adds: fio (the raw-device yardstick), gnuplot (the chart)
# and python3 (the driver, standard library only).
missing=""
command -v fio >/dev/null 2>&1 || missing="$missing fio"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target kvfs kvfs_mount_bench

export PYTHONDONTWRITEBYTECODE=1
python3 bench/run_bench.py "$@"
# The inference engines' own file patterns (kvfs with its defaults against a
# plain directory, and passthrough_hp when asked):
# bench/results/engine_patterns.{json,md}.
# shellcheck disable=SC2086
exec python3 bench/engine_patterns.py $quick $passthrough
