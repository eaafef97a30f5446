#!/bin/sh
# One command from a fresh Debian 12 machine (as root) to a full test run:
# installs dependencies, builds, packs the Debian package and checks it
# (unpacked, not installed), checks the lock annotations with clang, and
# runs every unit, mounted and dfs test, then the fuzzers, then the unit
# and mounted tests again under sanitizers (packaging/sanitizer-check.sh).
set -eu
cd "$(dirname "$0")/.."
./packaging/install-deps.sh
./packaging/build.sh
# The Debian package, packed from this build, unpacked into a scratch root
# and run from there (nothing is installed on this machine).
deb=$(./packaging/build-deb.sh "build" | tail -n 1)
./packaging/check-deb.sh "$deb"
# The lock contracts, checked by clang's thread-safety analysis.
./packaging/thread-safety-check.sh
rc=0
(cd build && ctest --output-on-failure --timeout 900 "$@") || rc=$?
if [ "$rc" -ne 0 ]; then
  # ctest prints a failing test's output where it ran, far above the end of
  # a long log; repeat it here so that the end of the log explains the failure.
  echo "=== output of the failing tests (from build/Testing/Temporary/LastTest.log) ==="
  awk '
    /^[0-9]+\/[0-9]+ Testing: / { buf = ""; keep = 1 }
    keep { buf = buf $0 "\n" }
    /^Test Passed\./ { keep = 0; buf = "" }
    keep && /^Test [A-Z]/ { printf "%s", buf; keep = 0 }
  ' build/Testing/Temporary/LastTest.log | tail -n 300
  exit "$rc"
fi
# Parsers of on-store bytes, fuzzed for a bounded time.
./packaging/run-fuzz.sh
# The unit and mounted tests again under AddressSanitizer+UBSan, the
# engine's unit tests under ThreadSanitizer; any report fails the run.
./packaging/sanitizer-check.sh
