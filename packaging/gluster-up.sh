#!/bin/sh
# Sets up a throwaway GlusterFS volume for the test suite:
#   packaging/gluster-up.sh [STATE_DIR]        (default /tmp/kvfs-gluster)
# Starts a private glusterd, creates the Distribute volume kvfs-test of two
# bricks (STATE_DIR/brick1, STATE_DIR/brick2) on this host with the caching
# performance translators off, and FUSE-mounts it twice, as two independent
# clients: STATE_DIR/mnt and STATE_DIR/mnt2. Creates STATE_DIR/mnt/kv.
# On success prints the two mount paths on stdout, one per line, as
#   mnt=STATE_DIR/mnt
#   mnt2=STATE_DIR/mnt2
# (progress goes to stderr). On failure prints one error line and a log
# tail, tears everything down with gluster-down.sh, and exits non-zero.
# Tear down with: packaging/gluster-down.sh [STATE_DIR]
set -u

STATE_DIR=${1:-/tmp/kvfs-gluster}
case $STATE_DIR in
  /?*) ;;
  *) echo "gluster-up: STATE_DIR must be an absolute path other than /: '$STATE_DIR'" >&2; exit 2 ;;
esac
STATE_DIR=${STATE_DIR%/}
VOL=kvfs-test
HERE=$(cd "$(dirname "$0")" && pwd)
HOST=$(hostname)
GD_LOG=$STATE_DIR/glusterd.log
MNT=$STATE_DIR/mnt
MNT2=$STATE_DIR/mnt2
# Brick logs are named by glusterd after the brick path, '/' turned into '-'.
brick_log() { echo "/var/log/glusterfs/bricks/$(echo "${1#/}" | tr / -).log"; }

# oneline TEXT: TEXT with its newlines turned into spaces.
oneline() { printf '%s' "$1" | tr '\n' ' '; }
log() { echo "gluster-up: $*" >&2; }

# fail MESSAGE [LOGFILE...]: one error line, the tail of each log, teardown.
fail() {
  msg=$1; shift
  echo "gluster-up: error: $msg" >&2
  for f in "$@"; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f ----" >&2
    tail -n 15 "$f" >&2
  done
  "$HERE/gluster-down.sh" "$STATE_DIR" >/dev/null 2>&1
  exit 1
}

# gl ARGS...: the gluster CLI, non-interactive and bounded in time.
gl() { timeout 30 gluster --mode=script "$@"; }

# wait_until SECONDS COMMAND...: polls COMMAND every 0.2 s until it
# succeeds; returns non-zero once SECONDS have passed without success.
wait_until() {
  secs=$1; shift
  end=$(( $(date +%s) + secs ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}

# Pids of running glusterd processes (zombies awaiting reaping excluded).
running_glusterd() {
  for p in $(pgrep -x glusterd); do
    st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -c1)
    [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
  done
}

# mount_answers DIR: DIR is a FUSE mount in the mount table and stat works.
mount_answers() {
  awk -v m="$1" '$2 == m && $3 ~ /^fuse/ { f = 1 } END { exit !f }' /proc/self/mounts &&
    timeout 5 stat "$1/."
}

for c in glusterd gluster mount.glusterfs; do
  command -v "$c" >/dev/null ||
    { echo "gluster-up: error: $c not found (run packaging/install-deps.sh)" >&2; exit 1; }
done

# Leftovers of a crashed or unfinished earlier run.
"$HERE/gluster-down.sh" "$STATE_DIR" ||
  { echo "gluster-up: error: gluster-down.sh $STATE_DIR failed" >&2; exit 1; }

# Never share (or kill) a glusterd that someone else started.
other=$(running_glusterd)
if [ -n "$other" ]; then
  echo "gluster-up: error: a glusterd not started by this script is already running (pid $(oneline "$other")); stop it first" >&2
  exit 1
fi

start=$(date +%s)
# Brick logs live under /var/log/glusterfs and are appended to across runs;
# start them afresh so a failure shows this run's lines.
rm -f "$(brick_log "$STATE_DIR/brick1")" "$(brick_log "$STATE_DIR/brick2")"
mkdir -p "$STATE_DIR/brick1" "$STATE_DIR/brick2" "$MNT" "$MNT2" ||
  fail "cannot create directories under $STATE_DIR"

# 1. glusterd (it daemonizes; the pid file is written by the daemon).
glusterd -p "$STATE_DIR/glusterd.pid" --log-file="$GD_LOG" ||
  fail "glusterd failed to start" "$GD_LOG"
wait_until 30 gl peer status ||
  fail "glusterd did not answer 'gluster peer status' within 30 s" "$GD_LOG"
log "glusterd up (pid $(cat "$STATE_DIR/glusterd.pid" 2>/dev/null))"

# 2. The volume: plain Distribute over two bricks on the root filesystem.
out=$(gl volume create "$VOL" transport tcp \
        "$HOST:$STATE_DIR/brick1" "$HOST:$STATE_DIR/brick2" force 2>&1) ||
  fail "volume create failed: $(oneline "$out")" "$GD_LOG"

# Translators that would let one client serve stale data or metadata after
# another client changed it. Options this version rejects are logged and
# skipped.
while read -r opt val; do
  out=$(gl volume set "$VOL" "$opt" "$val" 2>&1) && continue
  gl peer status >/dev/null 2>&1 ||
    fail "glusterd stopped answering (setting $opt)" "$GD_LOG"
  log "note: option '$opt $val' rejected: $(oneline "$out")"
done <<EOF
network.ping-timeout 5
performance.stat-prefetch off
performance.quick-read off
performance.io-cache off
performance.read-ahead off
performance.write-behind off
performance.open-behind off
performance.readdir-ahead off
performance.md-cache-timeout 0
EOF

out=$(gl volume start "$VOL" 2>&1) ||
  fail "volume start failed: $(oneline "$out")" "$GD_LOG" \
    "$(brick_log "$STATE_DIR/brick1")" "$(brick_log "$STATE_DIR/brick2")"

# Both bricks online: the 'Online' column of volume status is Y for each.
bricks_online() {
  [ "$(gl volume status "$VOL" 2>/dev/null |
       awk -v b1="$HOST:$STATE_DIR/brick1" -v b2="$HOST:$STATE_DIR/brick2" '
         $1 == "Brick" && ($2 == b1 || $2 == b2) && $(NF - 1) == "Y" { n++ }
         END { print n + 0 }')" = 2 ]
}
wait_until 30 bricks_online ||
  fail "bricks of $VOL not online within 30 s" "$GD_LOG" \
    "$(brick_log "$STATE_DIR/brick1")" "$(brick_log "$STATE_DIR/brick2")"

# 3. Two independent FUSE clients. Kernel attribute/entry caching is turned
#    off as well so each mount sees the other's changes at once.
for m in "$MNT" "$MNT2"; do
  mlog=$STATE_DIR/$(basename "$m").log
  timeout 60 mount -t glusterfs \
      -o log-file="$mlog",attribute-timeout=0,entry-timeout=0,negative-timeout=0 \
      "$HOST:/$VOL" "$m" ||
    fail "mount -t glusterfs $HOST:/$VOL $m failed" "$mlog"
  wait_until 30 mount_answers "$m" ||
    fail "$m does not answer within 30 s after mounting" "$mlog"
done

mkdir -p "$MNT/kv" || fail "cannot create $MNT/kv" "$STATE_DIR/mnt.log"
wait_until 10 test -d "$MNT2/kv" || fail "$MNT/kv is not visible through $MNT2" "$STATE_DIR/mnt2.log"

log "volume $VOL ready in $(( $(date +%s) - start )) s; tear down with $HERE/gluster-down.sh $STATE_DIR"
echo "mnt=$MNT"
echo "mnt2=$MNT2"
