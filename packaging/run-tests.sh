#!/bin/sh
# One command from a fresh Debian 12 machine (as root) to a full test run:
# installs dependencies, builds, and runs every unit and mounted test.
set -eu
cd "$(dirname "$0")/.."
./packaging/install-deps.sh
./packaging/build.sh
(cd build && ctest --output-on-failure --timeout 900 "$@")
# Parsers of on-store bytes, fuzzed for a bounded time.
./packaging/run-fuzz.sh
