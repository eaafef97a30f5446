#!/bin/sh
# Unmounts every kvfs mount that a mounted test left behind (tests mount under
# ${TMPDIR:-/tmp}/kvfs-test-*). Runs after the mounted tests, pass or fail.
awk '$3 == "fuse.kvfs" || $1 == "kvfs" {print $2}' /proc/mounts | grep '/kvfs-test-' | while read -r m; do
  echo "unmounting stale test mount $m"
  umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
done
exit 0
