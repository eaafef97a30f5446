#!/bin/sh
# Builds the tests a second time with sanitizers and runs them; exits
# non-zero on any test failure or any sanitizer report.
#
#  build-asan (-DKVFS_SANITIZE=address,undefined): kvfs, kvfs_unit_tests and
#    kvfs_mounted_tests. Runs every unit test, and the mounted tests, which
#    start build-asan's kvfs, so the daemon is checked too, leaks included
#    (it reports when it exits after the unmount). Mounted tests left out:
#      ReaddirTest.HundredThousandEntries and */CrashTortureTest.*: the
#        long ones (45 s and 2 x 25 s unsanitized, several times that here);
#      DraftMemoryTest.*: they bound the daemon's peak RSS, which ASan's
#        shadow memory and quarantine make meaningless;
#      FstabTest.*: mount(8) starts the daemon with a cleared environment,
#        so its ASAN_OPTIONS (log_path) would not reach it and a report
#        could be lost.
#  build-tsan (-DKVFS_SANITIZE=thread): kvfs_unit_tests only, and only the
#    tests of the engine and the parts it runs threads in (TSAN_FILTER),
#    less EngineSharedTest.EvictionByTheHolderKeepsOtherHostsOpenHandlesReadable:
#    it fails most runs at TSan's speed (the victim is still there, line
#    638) with no report, and passes in the other builds.
#
# Every sanitizer writes its reports under one directory (log_path), the
# daemons' included (they run in the background, their stderr goes to their
# log); any file there fails the run, and its contents are printed.
# KVFS_SANITIZERS=asan or =tsan runs one half only.
#
# Built with clang (KVFS_SANITIZE_CXX to change): with gcc, UBSan's reports
# ignore log_path and go to stderr, which a background daemon does not have.
set -eu
cd "$(dirname "$0")/.."
JOBS=$(nproc)
CXX=${KVFS_SANITIZE_CXX:-clang++}
WHICH=${KVFS_SANITIZERS:-asan,tsan}

MOUNTED_EXCLUDE='ReaddirTest.HundredThousandEntries:*CrashTortureTest.*:DraftMemoryTest.*:FstabTest.*'
TSAN_FILTER='Engine*:SpaceManager*:PublishQueue*:SharedTier*:Draft*:ReadAhead*:Durability*:*IoExecutorTest*:BufferPool*:FaultInjection*:EvictionPolicy*:PageCache*:DfsCluster*:DfsStore*:LocalStore*:Namespace*:Version*-EngineSharedTest.EvictionByTheHolderKeepsOtherHostsOpenHandlesReadable'

REPORTS=$(mktemp -d /tmp/kvfs-sanitizer-reports.XXXXXX)
rc=0

check_reports() {
  # $1: what just ran. Fails (sets rc) when a sanitizer wrote a report.
  if [ -n "$(ls -A "$REPORTS")" ]; then
    for f in "$REPORTS"/*; do
      echo "=== sanitizer report $f ($1) ==="
      head -n 200 "$f"
    done
    echo "sanitizers: reports after $1"
    rc=1
    mkdir -p "$REPORTS.seen"
    mv "$REPORTS"/* "$REPORTS.seen"/
  fi
}

cleanup_daemons() {
  # A sanitizer that aborts the test binary skips its TearDown: unmount what
  # build-asan's daemons still serve, and only those, then end them.
  ps -eo pid=,args= | while read -r pid bin cmd mnt rest; do
    [ "$bin" = "$PWD/build-asan/kvfs" ] && [ "$cmd" = mount ] || continue
    echo "sanitizers: unmounting $mnt left behind (daemon $pid)"
    fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
    sleep 1
    kill "$pid" 2>/dev/null || true
  done
}

run_step() {
  # $1: name; the rest: the command. A failing command fails the run.
  name=$1
  shift
  start=$(date +%s)
  echo "sanitizers: $name"
  if ! "$@"; then
    echo "sanitizers: $name FAILED"
    rc=1
  fi
  echo "sanitizers: $name took $(( $(date +%s) - start )) s"
  check_reports "$name"
}

case ",$WHICH," in
*,asan,*)
  cmake -S . -B build-asan -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVFS_SANITIZE=address,undefined >/dev/null
  cmake --build build-asan -j"$JOBS" --target kvfs kvfs_unit_tests kvfs_mounted_tests
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$REPORTS/asan"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"
  run_step "asan+ubsan unit tests" ./build-asan/tests/kvfs_unit_tests --gtest_brief=1
  # Straight from the binary, never through ctest: ctest's cleanup fixture
  # unmounts every kvfs test mount on the machine.
  run_step "asan+ubsan mounted tests" ./build-asan/tests/kvfs_mounted_tests --gtest_brief=1 \
    --gtest_filter="-$MOUNTED_EXCLUDE"
  cleanup_daemons
  unset ASAN_OPTIONS UBSAN_OPTIONS
  ;;
esac

case ",$WHICH," in
*,tsan,*)
  cmake -S . -B build-tsan -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVFS_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j"$JOBS" --target kvfs_unit_tests
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 log_path=$REPORTS/tsan"
  run_step "tsan engine unit tests" ./build-tsan/tests/kvfs_unit_tests --gtest_brief=1 \
    --gtest_filter="$TSAN_FILTER"
  unset TSAN_OPTIONS
  ;;
esac

if [ "$rc" -ne 0 ]; then
  echo "sanitizers: FAILED (reports kept in $REPORTS.seen)"
  exit "$rc"
fi
rm -rf "$REPORTS"
echo "sanitizers: no reports"
