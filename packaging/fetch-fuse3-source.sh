#!/bin/sh
# Fetches Debian's fuse3 source package (the version this machine's libfuse
# comes from) into DIR and unpacks its upstream tarball there; prints the
# unpacked source tree (DIR/fuse-3.x.y) as its last line, on stdout. A tree
# already unpacked in DIR is reused without asking the archive again.
#
#   packaging/fetch-fuse3-source.sh DIR
#
# Needs `apt-get source` and root: when no deb-src entry exists, one for
# Debian bookworm main is added under /etc/apt/sources.list.d/ (and said so
# on stderr). Used by packaging/run-posix-suite.sh (libfuse's test program)
# and bench/build-passthrough-hp.sh (libfuse's passthrough_hp example).
# On failure: one line on stderr, exit 2.
set -eu
# first_dir PATTERN...: the first of the glob's matches that is a directory.
first_dir() { for d in "$@"; do [ -d "$d" ] && { echo "$d"; return 0; }; done; return 0; }
fail() { echo "fetch-fuse3-source: $*" >&2; exit 2; }
[ $# -eq 1 ] || fail "usage: fetch-fuse3-source.sh DIR"
dir=$1
mkdir -p "$dir" || fail "cannot create $dir"
dir=$(cd "$dir" && pwd)

existing=$(first_dir "$dir"/fuse-3.*)
if [ -n "$existing" ] && [ -f "$existing/include/fuse_lowlevel.h" ]; then
  echo "$existing"
  exit 0
fi

if ! grep -rqs '^Types: deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  [ "$(id -u)" -eq 0 ] || fail "no deb-src entry in /etc/apt/sources.list*, and adding one needs root"
  echo "fetch-fuse3-source: adding a deb-src entry for Debian bookworm main (/etc/apt/sources.list.d/kvfs-deb-src.sources)" >&2
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    > /etc/apt/sources.list.d/kvfs-deb-src.sources
  apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed after adding the deb-src entry"
fi
(cd "$dir" && apt-get source --download-only -qq fuse3 >/dev/null 2>&1) ||
  fail "apt-get source --download-only fuse3 failed (no network, or no deb-src entry apt can use)"
tarball=""
for f in "$dir"/fuse3_*.orig.tar.*; do
  case $f in *.asc) ;; *) [ -f "$f" ] && tarball=$f && break ;; esac
done
[ -n "$tarball" ] || fail "no fuse3_*.orig.tar.* in $dir after apt-get source"
# Unpacked aside and moved in whole, so that an interrupted run leaves no
# half tree for the next one to reuse.
tmp=$(mktemp -d "$dir/.unpack-XXXXXX") || fail "cannot create a directory in $dir"
tar -C "$tmp" -xf "$tarball" || { rm -rf "$tmp"; fail "cannot unpack $tarball"; }
src=$(first_dir "$tmp"/fuse-3.*)
[ -n "$src" ] || { rm -rf "$tmp"; fail "$tarball did not unpack into a fuse-3.* directory"; }
name=$(basename "$src")
rm -rf "${dir:?}/$name"
mv "$tmp/$name" "$dir/$name" || fail "cannot move the unpacked tree into $dir"
rmdir "$tmp"
echo "$dir/$name"
