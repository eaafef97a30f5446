#!/bin/sh
# Runs libfuse's own POSIX test program, test/test_syscalls.c from Debian's
# fuse3 source package (the version this machine's libfuse comes from),
# against a scratch kvfs mount: once as is, once with -u (every test on a
# file unlinked while open). Prints each failure and a count; exits non-zero
# when a test fails that docs/contract.md does not list as a known
# difference:
#   4 [link], 5 [link-unlink-link]: hard links are refused (EPERM);
#   31, 33 [open(+, O_RDWR|O_CREAT...)]: an existing key rewritten in place
#     is a new version, which a second open (even by the writing process)
#     does not see before the writer's close.
# Needs a built ./build/kvfs, root (mounting), gcc, and `apt-get source`
# (packaging/fetch-fuse3-source.sh: when no deb-src entry for Debian's main
# archive exists, it adds one under /etc/apt/sources.list.d/ and says so).
# About a minute.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
kvfs="$repo/build/kvfs"
[ -x "$kvfs" ] || { echo "run-posix-suite: build kvfs first (packaging/build.sh)" >&2; exit 2; }
work=$(mktemp -d /tmp/kvfs-posix-XXXXXX)
mnt="$work/mnt"
cleanup() {
  if grep -qs " $mnt fuse.kvfs " /proc/mounts; then fusermount3 -u "$mnt" || umount -l "$mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Debian's fuse3 source, fetched and unpacked into the scratch directory.
src=$(./packaging/fetch-fuse3-source.sh "$work") || exit 2
# test_syscalls.c includes libfuse's generated config header for one macro.
echo '#define HAVE_COPY_FILE_RANGE 1' > "$work/fuse_config.h"
gcc -O1 -I"$work" -o "$work/test_syscalls" "$src/test/test_syscalls.c"

mkdir -p "$mnt" "$work/store"
"$kvfs" mount "$mnt" --store "$work/store" >/dev/null
known='^ *(4|5|31|33) \['
unexpected=0
for variant in "" "-u"; do
  out=$("$work/test_syscalls" "$mnt" $variant 2>&1 || true)
  passed=$(printf '%s\n' "$out" | grep -c ' OK$' || true)
  failed=$(printf '%s\n' "$out" | grep -Ec '^ *[0-9]+ \[.*\] ' | tr -d ' ')
  failed=$((failed - passed))
  echo "test_syscalls $variant: $passed passed, $failed failed"
  printf '%s\n' "$out" | grep -Ev ' OK$' | grep -E '^ *[0-9]+ \[' | sed 's/^/  /' || true
  n=$(printf '%s\n' "$out" | grep -Ev ' OK$' | grep -E '^ *[0-9]+ \[' | grep -Evc "$known" || true)
  unexpected=$((unexpected + n))
done
if [ "$unexpected" -ne 0 ]; then
  echo "run-posix-suite: $unexpected failure(s) not listed in docs/contract.md" >&2
  exit 1
fi
echo "run-posix-suite: only the known differences failed"
