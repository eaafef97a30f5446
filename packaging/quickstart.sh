#!/bin/sh
# One command from a fresh Debian 12 machine (as root) to a working kvfs:
# installs dependencies, builds, mounts kvfs on the default store at
# /mnt/kvfs (override with KVFS_MOUNT=...) and shows it working.
set -eu
cd "$(dirname "$0")/.."
MNT=${KVFS_MOUNT:-/mnt/kvfs}
./packaging/install-deps.sh
./packaging/build.sh
install -m 0755 build/kvfs /usr/local/bin/kvfs
mkdir -p "$MNT"
if grep -q " $MNT fuse.kvfs " /proc/mounts; then kvfs umount "$MNT"; fi
kvfs mount "$MNT"
set -x
head -c 4M /dev/urandom > /tmp/kvfs-demo-chunk
cp /tmp/kvfs-demo-chunk "$MNT/layer0-chunk0"
cmp /tmp/kvfs-demo-chunk "$MNT/layer0-chunk0"
mkdir -p "$MNT/model-a"
ls -l "$MNT"
stat "$MNT/layer0-chunk0"
getfattr -d -m - "$MNT/layer0-chunk0"
kvfs stats "$MNT"
set +x
rm -f /tmp/kvfs-demo-chunk
echo "kvfs is mounted on $MNT (store /var/lib/kvfs/store). Unmount with: kvfs umount $MNT"
