#!/bin/sh
# Checks a built kvfs package without installing it on this machine:
#   packaging/check-deb.sh DEB
# Reads its control fields, unpacks it with `dpkg -x` into a scratch root
# under /tmp, checks the files it ships (systemd-analyze on the unit, man on
# the man page, logrotate on the rule, when those tools are present), then
# runs the unpacked /usr/bin/kvfs: --version, and a mount from a config file
# made from the shipped example, a write, a read back, a rotation of its log
# with the shipped logrotate rule, and an unmount. The
# scratch root is removed at the end, also on failure (never while
# something is still mounted in it). Needs root (it mounts).
set -eu
DEB=${1:?usage: packaging/check-deb.sh DEB}
[ -f "$DEB" ] || { echo "check-deb: error: no package at $DEB" >&2; exit 1; }

fail() { echo "check-deb: error: $*" >&2; exit 1; }
is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts; }

# 1. Control fields.
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Package)" = kvfs ] || fail "Package is '$(field Package)', not kvfs"
depends=$(field Depends)
for lib in fuse3 libfuse3-3 liburing2 libspdlog libxxhash0 libc6; do
  echo "$depends" | grep -Eq "(^|, )$lib" || fail "Depends lacks $lib: $depends"
done
dpkg-deb -I "$DEB" conffiles | grep -qx /etc/kvfs/kvfs.toml || fail "/etc/kvfs/kvfs.toml is not a conffile"

# 2. Unpack into a scratch root.
SCRATCH=$(mktemp -d /tmp/kvfs-deb-check-XXXXXX)
ROOT=$SCRATCH/root
WORK=$SCRATCH/work
MNT=$WORK/mnt
cleanup() {
  if is_mounted "$MNT"; then
    "$ROOT/usr/bin/kvfs" umount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true
  fi
  if is_mounted "$MNT"; then
    echo "check-deb: warning: $MNT is still mounted; leaving $SCRATCH" >&2
  else
    rm -rf -- "$SCRATCH"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
dpkg -x "$DEB" "$ROOT"
for f in usr/bin/kvfs usr/share/man/man1/kvfs.1.gz etc/kvfs/kvfs.toml etc/logrotate.d/kvfs \
         lib/systemd/system/kvfs@.service usr/share/doc/kvfs/copyright usr/share/doc/kvfs/changelog.Debian.gz; do
  [ -f "$ROOT/$f" ] || fail "the package does not ship /$f"
done
KVFS=$ROOT/usr/bin/kvfs

# 3. The shipped files, with the tools that read them.
version=$("$KVFS" --version)
[ "$version" = "kvfs $(field Version | sed 's/-[^-]*$//')" ] || fail "kvfs --version says '$version'"
if command -v man >/dev/null; then
  warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$ROOT/usr/share/man/man1/kvfs.1.gz" 2>&1 >/dev/null)
  [ -z "$warnings" ] || fail "man page warnings: $warnings"
fi
if command -v systemd-analyze >/dev/null; then
  # The unit as installed, with its ExecStart= pointing into the scratch root.
  mkdir -p "$SCRATCH/unit"
  sed "s|/usr/bin/kvfs|$KVFS|" "$ROOT/lib/systemd/system/kvfs@.service" > "$SCRATCH/unit/kvfs@.service"
  out=$(MANPATH=$ROOT/usr/share/man systemd-analyze verify "$SCRATCH/unit/kvfs@.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi
LOGROTATE=""
if command -v logrotate >/dev/null; then
  # The rule as shipped parses; the same rule over the scratch log folder
  # rotates the log of the mount below.
  out=$(logrotate -d -s "$SCRATCH/logrotate.state" "$ROOT/etc/logrotate.d/kvfs" 2>&1) || fail "logrotate -d: $out"
  echo "$out" | grep -qi "error" && fail "logrotate -d: $out"
  LOGROTATE=$SCRATCH/logrotate.conf
  sed "s|/var/log/kvfs/|$WORK/log/|" "$ROOT/etc/logrotate.d/kvfs" > "$LOGROTATE"
fi

# 4. Mount from a config file made from the shipped example (mountpoint,
#    store and log file uncommented and pointed into the scratch folder),
#    write, read back, rotate its log while mounted (when logrotate is
#    here), unmount.
mkdir -p "$MNT" "$WORK/store" "$WORK/log"
sed -e "s|^#mountpoint = .*|mountpoint = \"$MNT\"|" \
    -e "s|^#store = .*|store = [\"$WORK/store\"]|" \
    -e "s|^#capacity = .*|capacity = \"64M\"|" \
    -e "s|^#log-file = .*|log-file = \"$WORK/log/kvfs.log\"|" \
    "$ROOT/etc/kvfs/kvfs.toml" > "$WORK/test.toml"
"$KVFS" mount --config "$WORK/test.toml" >/dev/null || fail "kvfs mount --config $WORK/test.toml failed"
is_mounted "$MNT" || fail "kvfs mount returned 0 but $MNT is not mounted"
head -c 3145739 /dev/urandom > "$WORK/data"
cp "$WORK/data" "$MNT/chunk"
cmp "$WORK/data" "$MNT/chunk" || fail "read back differs from what was written"
if [ -n "$LOGROTATE" ]; then
  logrotate -f -s "$SCRATCH/logrotate.state" "$LOGROTATE" || fail "logrotate -f failed"
  grep -q "mounted $MNT" "$WORK/log/kvfs.log.1" || fail "the rotated log $WORK/log/kvfs.log.1 lacks the mount's lines"
fi
"$KVFS" umount "$MNT" || fail "kvfs umount $MNT failed"
is_mounted "$MNT" && fail "$MNT is still mounted after kvfs umount"
# The daemon went on writing into the truncated log, from its start (no
# hole of NUL bytes where the old lines were).
grep -q "unmounted $MNT" "$WORK/log/kvfs.log" || fail "$WORK/log/kvfs.log lacks the unmount line"
[ "$(head -c 1 "$WORK/log/kvfs.log")" = "[" ] || fail "$WORK/log/kvfs.log does not start with a log line"
echo "check-deb: $(basename "$DEB") ($version) unpacks, verifies, mounts, serves and unmounts" >&2
