#!/bin/sh
# Installs what kvfs needs to build, test and run on Debian 12, from Debian's
# own archive. Run as root. Skips apt entirely when everything is present.
# dpkg-dev and file pack the Debian package (dpkg-shlibdeps); systemd,
# man-db and logrotate only check what it ships (systemd-analyze verify on
# the unit, man on the man page, logrotate on the rule): installing systemd
# does not make it PID 1.
set -eu
PACKAGES="build-essential cmake pkg-config fuse3 libfuse3-dev liburing-dev libspdlog-dev libcli11-dev libxxhash-dev libgtest-dev prometheus-cpp-dev attr clang libclang-rt-14-dev glusterfs-server glusterfs-client dpkg-dev file systemd man-db logrotate"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
fi
