#!/bin/sh
# Unmounts every kvfs mount that a mounted or dfs test left behind (tests
# mount under ${TMPDIR:-/tmp}/kvfs-test-*). Runs after the mounted and dfs
# tests, pass or fail, and before gluster_down (a kvfs daemon still serving a
# store on the GlusterFS volume would keep that volume's mount busy).
awk '$3 == "fuse.kvfs" || $1 == "kvfs" {print $2}' /proc/mounts | grep '/kvfs-test-' | while read -r m; do
  echo "unmounting stale test mount $m"
  umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
done

# Daemons of test mounts that are no longer mounted (detached above, or by a
# test that killed a host and detached its dead mount): they normally exit
# once the kernel drops the connection; end any that is still there after a
# few seconds. Only `kvfs mount <dir>/kvfs-test-*/...` processes are touched.
orphans() {
  for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = kvfs ] || continue
    # argv: kvfs mount MOUNTPOINT ...
    set -- $(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)
    [ "${2:-}" = mount ] || continue
    case ${3:-} in */kvfs-test-*) ;; *) continue ;; esac
    awk -v m="$3" '$2 == m { f = 1 } END { exit !f }' /proc/mounts && continue
    echo "${d#/proc/}"
  done
}
t=0
while [ -n "$(orphans)" ] && [ $t -lt 50 ]; do sleep 0.1; t=$((t + 1)); done
for p in $(orphans); do
  echo "killing kvfs daemon $p of a test mount that is gone"
  kill -KILL "$p" 2>/dev/null || true
done
exit 0
