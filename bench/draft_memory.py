#!/usr/bin/env python3
"""The daemon's memory while drafts are written: peak RSS (VmHWM) of a
fresh kvfs mount for each scenario, next to the bytes written.

    python3 bench/draft_memory.py [--kvfs BIN] [--base DIR] [--big-gib 20]
                                  [--writers 64] [--writer-mib 32]

Scenarios (each on its own fresh mount, so each peak is its own):
  one big file     one writer, one file of --big-gib GiB in 1 MiB writes
  many writers     --writers processes, each one --writer-mib MiB file at once

Needs root (mounting) and free space on --base for the big file. Prints one
line per scenario; exits non-zero when a write or the mount fails.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM for the daemon")


def daemon_pid(mnt):
    out = subprocess.run(["pgrep", "-f", f"kvfs mount {mnt} "], capture_output=True, text=True).stdout.split()
    if not out:
        raise RuntimeError("kvfs daemon not found")
    return int(out[0])


def write_file(path, mib, chunk):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        for _ in range(mib):
            os.write(fd, chunk)
    finally:
        os.close(fd)


class Mount:
    def __init__(self, kvfs, base, capacity):
        self.kvfs = kvfs
        self.root = tempfile.mkdtemp(prefix="draft-memory-", dir=base)
        self.store = os.path.join(self.root, "store")
        self.mnt = os.path.join(self.root, "mnt")
        os.mkdir(self.store)
        os.mkdir(self.mnt)
        subprocess.run([kvfs, "mount", self.mnt, "--store", self.store, "--capacity", capacity, "--min-free", "1G"],
                       check=True, capture_output=True, timeout=120)
        self.pid = daemon_pid(self.mnt)

    def close(self):
        subprocess.run([self.kvfs, "umount", self.mnt], capture_output=True, timeout=300)
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvfs", default=os.path.join(REPO, "build", "kvfs"))
    ap.add_argument("--base", default="/var/tmp/kvfs-bench")
    ap.add_argument("--big-gib", type=int, default=20)
    ap.add_argument("--writers", type=int, default=64)
    ap.add_argument("--writer-mib", type=int, default=32)
    args = ap.parse_args(argv)
    os.makedirs(args.base, exist_ok=True)
    chunk = os.urandom(1 << 20)

    m = Mount(args.kvfs, args.base, f"{args.big_gib + 4}G")
    try:
        t = time.perf_counter()
        write_file(os.path.join(m.mnt, "big"), args.big_gib * 1024, chunk)
        took = time.perf_counter() - t
        size = os.stat(os.path.join(m.mnt, "big")).st_size
        if size != args.big_gib << 30:
            raise RuntimeError(f"big file has {size} bytes")
        print(f"one big file: {args.big_gib} GiB in {took:.1f} s, daemon peak RSS {peak_rss_mib(m.pid):.0f} MiB")
    finally:
        m.close()

    m = Mount(args.kvfs, args.base, f"{args.writers * args.writer_mib * 2 // 1024 + 2}G")
    try:
        t = time.perf_counter()
        pids = []
        for w in range(args.writers):
            pid = os.fork()
            if pid == 0:
                try:
                    write_file(os.path.join(m.mnt, f"w{w}"), args.writer_mib, chunk)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            pids.append(pid)
        failed = sum(os.waitpid(p, 0)[1] != 0 for p in pids)
        took = time.perf_counter() - t
        if failed:
            raise RuntimeError(f"{failed} writer(s) failed")
        print(f"many writers: {args.writers} x {args.writer_mib} MiB at once in {took:.1f} s, "
              f"daemon peak RSS {peak_rss_mib(m.pid):.0f} MiB")
    finally:
        m.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
