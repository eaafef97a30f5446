#!/usr/bin/env python3
"""A/B test of one kvfs setting: two kvfs mounts side by side, on two scratch
stores on the same drive, that differ only in the mount flags given as
--a and --b (or in the binary, with --kvfs-b); one scenario run on each,
alternating which goes first run by run and which store each uses every
second run (with each variant always on the same store, where that store's
files lay on the virtual disk favoured one side by up to 1.3x); medians and
the B/A ratio. For deciding whether a fast-path change earns its
place (see the README's benchmark section).

  python3 bench/ab.py --scenario write --a="--durability close --commit-flush group" --b="--durability close --commit-flush file"
  python3 bench/ab.py --scenario read --a="--read-ahead-kb 1024" --b="--read-ahead-kb 0"
  python3 bench/ab.py --scenario read --kvfs-b /tmp/variant/kvfs   # a code change

Scenarios:
  write: durable writes (create + write + close) of --size byte objects by
         --threads writers for --seconds; objects/s.
  read:  cold sequential reads (page cache dropped first) of --count whole
         objects of --size bytes by --threads readers, O_DIRECT (buffered
         with --buffered), in --block byte reads (1 MiB); GB/s.
  stat:  os.stat of --count existing names (with --missing: names that do
         not exist) in a shuffled order, one thread, for --seconds; stats/s.
Run as root (mounts, drops the page cache). Standard library only.
"""
import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1 << 20


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class Slot:
    """A scratch store and a mount point. Each variant runs on both slots in
    turn (see main), so that where a store's files lie on the drive, and
    which mount came first, favour neither variant."""

    def __init__(self, base, name):
        self.store = os.path.join(base, f"store-{name}")
        self.mnt = os.path.join(base, f"mnt-{name}")
        self.kvfs = None
        os.makedirs(self.store)
        os.makedirs(self.mnt)

    def mount(self, kvfs, flags):
        cmd = [kvfs, "mount", self.mnt, "--store", self.store, "--capacity", "20G", "--min-free", "1G"] + flags
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"mount {self.mnt} failed: {r.stderr.strip() or r.stdout.strip()}")
        self.kvfs = kvfs

    def umount(self):
        if self.kvfs:
            subprocess.run([self.kvfs, "umount", self.mnt], capture_output=True, timeout=120)
            self.kvfs = None


def run_write(mnt, tag, size, threads, seconds):
    d = os.path.join(mnt, tag)
    os.mkdir(d)
    data = os.urandom(size)
    count = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def writer(w):
        i = 0
        while time.monotonic() < end:
            fd = os.open(f"{d}/w{w}-{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
            i += 1
        with lock:
            count[0] += i

    t0 = time.perf_counter()
    ts = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return count[0] / (time.perf_counter() - t0)


def prepare_read(mnt, size, count):
    d = os.path.join(mnt, "objs")
    os.mkdir(d)
    data = os.urandom(size)
    for i in range(count):
        with open(f"{d}/o{i}", "wb") as f:
            f.write(data)
    return [f"objs/o{i}" for i in range(count)]


def prepare_stat(mnt, count):
    d = os.path.join(mnt, "names")
    os.mkdir(d)
    for i in range(count):
        os.close(os.open(f"{d}/k{i}", os.O_WRONLY | os.O_CREAT, 0o644))
    return [f"names/k{i}" for i in range(count)]


def run_stat(paths, missing, seconds):
    import random
    names = [p + ".missing" for p in paths] if missing else list(paths)
    random.shuffle(names)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for p in names:
            try:
                os.stat(p)
            except FileNotFoundError:
                if not missing:
                    raise
            n += 1
            if n % 1000 == 0 and time.perf_counter() >= end:
                break
    return n / (time.perf_counter() - t0)


def run_read(paths, size, threads, buffered, block):
    import mmap
    drop_caches()
    nxt = [0]
    lock = threading.Lock()

    def reader():
        buf = mmap.mmap(-1, block)
        while True:
            with lock:
                if nxt[0] >= len(paths):
                    return
                p = paths[nxt[0]]
                nxt[0] += 1
            fd = os.open(p, os.O_RDONLY | (0 if buffered else os.O_DIRECT))
            while os.readv(fd, [buf]) > 0:
                pass
            os.close(fd)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=reader) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(paths) * size / (time.perf_counter() - t0) / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["write", "read", "stat"], required=True)
    p.add_argument("--a", default="", help="mount flags of variant A")
    p.add_argument("--b", default="", help="mount flags of variant B")
    p.add_argument("--size", default=None, help="object size (write: 256K, read: 16M)")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--seconds", type=float, default=2.0, help="write: length of each run")
    p.add_argument("--count", type=int, default=None, help="read: objects per run (32); stat: names (20000)")
    p.add_argument("--block", default="1M", help="read: bytes per read call (default 1M)")
    p.add_argument("--buffered", action="store_true", help="read: buffered reads instead of O_DIRECT")
    p.add_argument("--missing", action="store_true", help="stat: names that do not exist")
    p.add_argument("--reps", type=int, default=8, help="runs of each variant (a multiple of 4 balances slots and order)")
    p.add_argument("--base", default="/var/tmp/kvfs-ab")
    p.add_argument("--kvfs", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "kvfs"))
    p.add_argument("--kvfs-b", default=None,
                   help="a second kvfs binary for variant B (to A/B a code change; default: --kvfs)")
    a = p.parse_args()
    size = parse_size(a.size or ("256K" if a.scenario == "write" else "16M"))
    count = a.count or (20000 if a.scenario == "stat" else 32)
    os.makedirs(a.base, exist_ok=True)
    base = tempfile.mkdtemp(prefix="run-", dir=a.base)
    variants = {"A": (a.kvfs, shlex.split(a.a)), "B": (a.kvfs_b or a.kvfs, shlex.split(a.b))}
    slots = [Slot(base, "1"), Slot(base, "2")]
    try:
        # The same data set on both slots, written through variant A.
        rel = []
        for slot in slots:
            slot.mount(*variants["A"])
            if a.scenario == "read":
                rel = prepare_read(slot.mnt, size, count)
            elif a.scenario == "stat":
                rel = prepare_stat(slot.mnt, count)
            slot.umount()
        got = {"A": [], "B": []}
        for rep in range(a.reps):
            # Each block of 4 runs gives each variant each slot and each
            # position once: the order alternates every run, the slots every
            # second run.
            swap = (rep // 2) % 2
            where = {"A": slots[swap], "B": slots[1 - swap]}
            order = ["A", "B"] if rep % 2 == 0 else ["B", "A"]
            for k in order:
                where[k].mount(*variants[k])
            for k in order:
                mnt = where[k].mnt
                if a.scenario == "write":
                    v = run_write(mnt, f"rep{rep}-{k}", size, a.threads, a.seconds)
                elif a.scenario == "stat":
                    v = run_stat([os.path.join(mnt, r) for r in rel], a.missing, a.seconds)
                else:
                    v = run_read([os.path.join(mnt, r) for r in rel], size, a.threads, a.buffered,
                                 parse_size(a.block))
                got[k].append(v)
                print(f"rep {rep} {k}: {v:.3f}", flush=True)
            for slot in slots:
                slot.umount()
        unit = {"write": "objects/s", "read": "GB/s", "stat": "stats/s"}[a.scenario]
        ma, mb = statistics.median(got["A"]), statistics.median(got["B"])
        print(f"A [{a.a}] median {ma:.3f} {unit}")
        print(f"B [{a.b}] median {mb:.3f} {unit}")
        what = (f"{count} names" if a.scenario == "stat" else f"{a.threads} threads, {size} byte objects")
        print(f"B/A {mb / ma:.3f} ({a.reps} alternated runs each, {what})")
    finally:
        for slot in slots:
            slot.umount()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    sys.exit(main())
