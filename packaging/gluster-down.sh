#!/bin/sh
# Tears down the throwaway GlusterFS volume made by gluster-up.sh:
#   packaging/gluster-down.sh [STATE_DIR]      (default /tmp/kvfs-gluster)
# Unmounts STATE_DIR/mnt and STATE_DIR/mnt2, stops and deletes the volume
# kvfs-test, ends the glusterd, brick and client processes that belong to
# STATE_DIR (and only those), then removes STATE_DIR and the volume's config
# under /var/lib/glusterd. Safe to run when nothing is there (exits 0), and
# bounded in time: every call that could block runs under `timeout`.
set -u

STATE_DIR=${1:-/tmp/kvfs-gluster}
VOL=kvfs-test
GLUSTERD_DIR=/var/lib/glusterd

case $STATE_DIR in
  /?*) ;;
  *) echo "gluster-down: STATE_DIR must be an absolute path other than /: '$STATE_DIR'" >&2; exit 2 ;;
esac
STATE_DIR=${STATE_DIR%/}

# oneline TEXT: TEXT with its newlines turned into spaces.
oneline() { printf '%s' "$1" | tr '\n' ' '; }
log() { echo "gluster-down: $*" >&2; }

# STATE_DIR as an extended regular expression, for pgrep -f.
RE_DIR=$(printf '%s' "$STATE_DIR" | sed 's/[][\\.*^$+?(){}|]/\\&/g')

# Prints the pids matching ERE $1 on the command line whose process name is
# one of the remaining arguments.
pids_of() {
  re=$1; shift
  for p in $(pgrep -f -- "$re"); do
    [ "$p" = "$$" ] && continue
    comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
    for n in "$@"; do
      [ "$comm" = "$n" ] && { echo "$p"; break; }
    done
  done
}

# The glusterd we started: named in the pid file and/or recognisable by the
# pid file path on its command line (covers a crash before it wrote the file).
our_glusterd() {
  {
    if [ -f "$STATE_DIR/glusterd.pid" ]; then
      p=$(tr -dc 0-9 < "$STATE_DIR/glusterd.pid")
      if [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = glusterd ] &&
         tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR/glusterd.pid"; then
        echo "$p"
      fi
    fi
    pids_of "$RE_DIR/glusterd\\.pid" glusterd
  } | sort -u
}

# Brick servers for bricks under STATE_DIR, and the FUSE clients mounted at
# STATE_DIR/mnt or STATE_DIR/mnt2 (matched by mount path rather than by
# volfile-id=/kvfs-test, so someone else's client of a same-named volume
# is never touched).
our_bricks() { pids_of "$RE_DIR/brick[0-9]" glusterfsd glusterfs; }
our_clients() { pids_of "$RE_DIR/mnt2?( |\$)" glusterfs; }

# Pids of running glusterd processes (zombies awaiting reaping excluded).
running_glusterd() {
  for p in $(pgrep -x glusterd); do
    st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -c1)
    [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
  done
}

is_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts; }

# 1. Unmount both client mounts (lazily if busy).
for m in "$STATE_DIR/mnt" "$STATE_DIR/mnt2"; do
  n=0
  while is_mounted "$m" && [ $n -lt 5 ]; do
    timeout 10 umount "$m" 2>/dev/null || timeout 10 umount -l "$m" 2>/dev/null || true
    n=$((n + 1))
  done
  is_mounted "$m" && log "warning: $m is still mounted"
done

# 2. Stop and delete the volume, through our own glusterd only.
gd=$(our_glusterd)
if [ -n "$gd" ]; then
  if timeout 15 gluster --mode=script volume info "$VOL" >/dev/null 2>&1; then
    timeout 30 gluster --mode=script volume stop "$VOL" force >/dev/null 2>&1 ||
      log "note: 'volume stop $VOL force' failed (continuing)"
    timeout 30 gluster --mode=script volume delete "$VOL" >/dev/null 2>&1 ||
      log "note: 'volume delete $VOL' failed (continuing)"
  fi
fi

# 3. End our processes: TERM, wait (bounded), then KILL, wait again.
ours() { { our_clients; our_bricks; our_glusterd; } | sort -u; }
wait_gone() { # $1 = deadline in tenths of a second
  t=0
  while [ -n "$(ours)" ] && [ $t -lt "$1" ]; do sleep 0.1; t=$((t + 1)); done
  [ -z "$(ours)" ]
}
pids=$(ours)
all=$pids
if [ -n "$pids" ]; then
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null
  if ! wait_gone 100; then
    pids=$(ours)
    all="$all $pids"
    log "killing processes that ignored SIGTERM: $(oneline "$pids")"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null
    wait_gone 50 || log "warning: still running: $(oneline "$(ours)")"
  fi
fi

# Exited processes stay listed (as zombies) until init reaps them, which
# here takes up to ~2 s; wait for that too (bounded), also for a glusterd of
# ours that had already died, so `pgrep gluster` is clean once we return.
if [ -f "$STATE_DIR/glusterd.pid" ]; then
  p=$(tr -dc 0-9 < "$STATE_DIR/glusterd.pid")
  [ -n "$p" ] && [ "$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -c1)" = Z ] &&
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = glusterd ] && all="${all:-} $p"
fi
t=0
for p in ${all:-}; do
  while [ -d "/proc/$p" ] && [ $t -lt 40 ]; do sleep 0.1; t=$((t + 1)); done
done

# 4. Anything the mounts left behind (a client that died leaves a dead
#    endpoint that still shows in the mount table).
for m in "$STATE_DIR/mnt" "$STATE_DIR/mnt2"; do
  is_mounted "$m" && { timeout 10 umount -l "$m" 2>/dev/null || log "warning: cannot unmount $m"; }
done

# 5. Remove state. The volume's config under /var/lib/glusterd is only
#    removed when no glusterd is running (ours is gone; a foreign one may
#    own it and would be confused by it vanishing underneath).
if ! is_mounted "$STATE_DIR/mnt" && ! is_mounted "$STATE_DIR/mnt2"; then
  rm -rf -- "$STATE_DIR"
else
  log "warning: not removing $STATE_DIR while something is mounted in it"
fi
if [ -z "$(running_glusterd)" ]; then
  rm -rf -- "$GLUSTERD_DIR/vols/$VOL" "/var/run/gluster/vols/$VOL"
elif [ -d "$GLUSTERD_DIR/vols/$VOL" ]; then
  log "note: a glusterd not started by us is running; leaving $GLUSTERD_DIR/vols/$VOL"
fi
exit 0
