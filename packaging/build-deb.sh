#!/bin/sh
# Builds the Debian package of kvfs:
#   packaging/build-deb.sh [BUILD_DIR]          (default: ./build)
# Installs what packing needs with apt-get (only what is missing; as root),
# configures BUILD_DIR if it has not been yet (RelWithDebInfo, as
# packaging/build.sh does), builds kvfs there (nothing to do when the tree
# is already built) and packs it with CPack's DEB generator
# (packaging/deb.cmake). Leaves BUILD_DIR/deb/kvfs_VERSION-1_ARCH.deb and
# prints its path as the last line of its output.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}

# The build dependencies of packaging/install-deps.sh that the package
# build needs, plus dpkg-dev and file (dpkg-shlibdeps computes the
# package's library dependencies).
PACKAGES="build-essential cmake pkg-config libfuse3-dev liburing-dev libspdlog-dev libcli11-dev libxxhash-dev libgtest-dev prometheus-cpp-dev dpkg-dev file"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "build-deb: installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
fi

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target kvfs kvfs_package_files >/dev/null
OUT=$(cd "$BUILD" && pwd)/deb
rm -rf "$OUT"
(cd "$BUILD" && cpack -G DEB -B "$OUT" >/dev/null)
deb=$(ls "$OUT"/kvfs_*.deb)
echo "build-deb: built $deb" >&2
echo "$deb"
