#!/usr/bin/env python3
"""An fsstress-like workload: many processes, each running a random mix of
file-system operations in a directory of its own; small writes at offsets
anywhere up to 2 GiB make large sparse files, which every later small
change (open, pwrite, close: a new version on kvfs) has to carry along.

fsstress (xfstests' ltp/fsstress.c) is not packaged in Debian, so this
stands in for `fsstress -n OPS -p PROCS` on the patterns that matter to
kvfs: creat, write (small, at an offset within the file or past it, and
now and then anywhere below 2 GiB), read, truncate, fallocate punch and
zero, fsync, fdatasync, stat, chmod, getdents, mkdir, rmdir, rename,
unlink, symlink and readlink. Each operation's errno is counted; an
operation on a name that does not exist (ENOENT) is normal, as in
fsstress. The bytes of a file are checked after the run against what the
process wrote (a model kept per file), so a fast but wrong answer fails.

    bench/sparse_stress.py --kvfs build/kvfs --base /var/tmp [--ops 10000] [--procs 2]

mounts kvfs on a fresh store under --base, runs the workload on it and on
a plain directory on the same filesystem, alternated --reps times, and
prints the seconds each took (median) and the ratio. kvfs charges a sparse
file its whole size against the capacity, so the mount gets a capacity far
above the drive's (4T): at a smaller one kvfs evicts files the workload
still expects to find, as a cache may.
"""
import argparse
import errno
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MAX_FILE = 2 << 30          # offsets up to 2 GiB, as fsstress's default
MAX_WRITE = 128 << 10       # write sizes up to 128 KiB
FAR_WRITE_ONE_IN = 8        # one write in 8 lands anywhere below MAX_FILE

OPS = [  # (name, weight)
    ("creat", 4), ("write", 8), ("read", 3), ("truncate", 2), ("punch", 1), ("zero", 1),
    ("fsync", 1), ("fdatasync", 1), ("stat", 2), ("chmod", 1), ("getdents", 1), ("mkdir", 2),
    ("rmdir", 1), ("rename", 2), ("unlink", 1), ("symlink", 1), ("readlink", 1),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Worker:
    """One process's workload in `top`; `model` holds what each file must
    read as: {path: (size, {offset: bytes})} (later writes win)."""

    def __init__(self, top, seed):
        self.top = top
        self.rng = random.Random(seed)
        self.files = {}   # path -> [size, list of (offset, bytes)]
        self.dirs = [top]
        self.links = []
        self.counts = {}
        self.errors = {}
        self.names = 0

    def new_name(self, prefix):
        self.names += 1
        return os.path.join(self.rng.choice(self.dirs), f"{prefix}{self.names}")

    def pick_file(self):
        return self.rng.choice(list(self.files)) if self.files else self.new_name("f")

    def note(self, op, err=None):
        self.counts[op] = self.counts.get(op, 0) + 1
        if err is not None and err != errno.ENOENT:
            key = f"{op}:{errno.errorcode.get(err, err)}"
            self.errors[key] = self.errors.get(key, 0) + 1

    def data(self, n):
        return self.rng.randbytes(n)

    # The model: a file is its size and a list of writes (offset, bytes),
    # with truncations and punched ranges applied as zeros.
    def model_write(self, path, off, buf):
        f = self.files[path]
        f[1].append((off, buf))
        f[0] = max(f[0], off + len(buf))

    def model_zero(self, path, off, length):
        f = self.files[path]
        end = min(off + length, f[0])
        if off < end:
            f[1].append((off, bytes(end - off)))

    def model_truncate(self, path, size):
        f = self.files[path]
        kept = []
        for o, b in f[1]:
            if o < size:
                kept.append((o, b[:size - o]))
        f[1] = kept
        f[0] = size  # growth past the old size reads zeros

    def run_op(self, op):
        rng = self.rng
        try:
            if op == "creat":
                path = self.new_name("f")
                fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
                os.close(fd)
                self.files[path] = [0, []]
            elif op == "write":
                path = self.pick_file()
                if path not in self.files:
                    raise FileNotFoundError(errno.ENOENT, "no file")
                size = self.files[path][0]
                if rng.randrange(FAR_WRITE_ONE_IN) == 0:
                    off = rng.randrange(MAX_FILE)
                else:
                    off = rng.randrange(min(size + (1 << 20), MAX_FILE))
                buf = self.data(rng.randrange(1, MAX_WRITE + 1))
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.pwrite(fd, buf, off)
                finally:
                    os.close(fd)
                self.model_write(path, off, buf)
            elif op == "read":
                path = self.pick_file()
                fd = os.open(path, os.O_RDONLY)
                try:
                    size = os.fstat(fd).st_size
                    off = rng.randrange(size) if size else 0
                    os.pread(fd, MAX_WRITE, off)
                finally:
                    os.close(fd)
            elif op == "truncate":
                path = self.pick_file()
                if path not in self.files:
                    raise FileNotFoundError(errno.ENOENT, "no file")
                size = rng.randrange(min(self.files[path][0] + (1 << 20), MAX_FILE))
                os.truncate(path, size)
                self.model_truncate(path, size)
            elif op in ("punch", "zero"):
                path = self.pick_file()
                if path not in self.files:
                    raise FileNotFoundError(errno.ENOENT, "no file")
                size = self.files[path][0]
                off = rng.randrange(size) if size else 0
                length = rng.randrange(1, MAX_WRITE + 1)
                fd = os.open(path, os.O_WRONLY)
                try:
                    mode = 0x02 | 0x01 if op == "punch" else 0x10 | 0x01  # PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE|KEEP_SIZE
                    fallocate(fd, mode, off, length)
                finally:
                    os.close(fd)
                self.model_zero(path, off, length)
            elif op in ("fsync", "fdatasync"):
                path = self.pick_file()
                fd = os.open(path, os.O_WRONLY)
                try:
                    (os.fsync if op == "fsync" else os.fdatasync)(fd)
                finally:
                    os.close(fd)
            elif op == "stat":
                os.lstat(self.pick_file())
            elif op == "chmod":
                os.chmod(self.pick_file(), rng.choice([0o600, 0o644, 0o640]))
            elif op == "getdents":
                os.listdir(rng.choice(self.dirs))
            elif op == "mkdir":
                path = self.new_name("d")
                os.mkdir(path)
                self.dirs.append(path)
            elif op == "rmdir":
                if len(self.dirs) > 1:
                    path = rng.choice(self.dirs[1:])
                    os.rmdir(path)  # ENOTEMPTY when it holds anything
                    self.dirs.remove(path)
            elif op == "rename":
                path = self.pick_file()
                if path not in self.files:
                    raise FileNotFoundError(errno.ENOENT, "no file")
                to = self.new_name("f")
                os.rename(path, to)
                self.files[to] = self.files.pop(path)
            elif op == "unlink":
                path = self.pick_file()
                os.unlink(path)
                self.files.pop(path, None)
            elif op == "symlink":
                path = self.new_name("l")
                os.symlink(self.pick_file(), path)
                self.links.append(path)
            elif op == "readlink":
                if self.links:
                    os.readlink(rng.choice(self.links))
            self.note(op)
        except OSError as e:
            if op == "rmdir" and e.errno == errno.ENOTEMPTY:
                self.note(op)
            else:
                self.note(op, e.errno)

    def check(self):
        """Reads back the ranges of each file's last 32 writes and compares
        them with the model (every write and zeroed range applied in order
        over zeros); returns the mismatches."""
        bad = []
        for path, (size, writes) in self.files.items():
            try:
                st = os.stat(path)
            except OSError as e:
                bad.append(f"{path}: {e}")
                continue
            if st.st_size != size:
                bad.append(f"{path}: size {st.st_size}, want {size}")
                continue
            with open(path, "rb") as f:
                for off, b in writes[-32:]:
                    want = bytearray(len(b))
                    for o2, b2 in writes:
                        lo, hi = max(off, o2), min(off + len(b), o2 + len(b2))
                        if lo < hi:
                            want[lo - off:hi - off] = b2[lo - o2:hi - o2]
                    f.seek(off)
                    if f.read(len(b)) != bytes(want):
                        bad.append(f"{path}: wrong bytes at {off}")
                        break
        return bad


def fallocate(fd, mode, off, length):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def child(top, seed, ops, out):
    w = Worker(top, seed)
    weights = [x[1] for x in OPS]
    names = [x[0] for x in OPS]
    start = time.monotonic()
    for _ in range(ops):
        w.run_op(w.rng.choices(names, weights)[0])
    secs = time.monotonic() - start
    bad = w.check()
    biggest = max((f[0] for f in w.files.values()), default=0)
    json.dump({"secs": secs, "counts": w.counts, "errors": w.errors, "bad": bad[:10],
               "files": len(w.files), "biggest": biggest}, open(out, "w"))


def run(top, procs, ops, seed):
    """Runs procs workers in top; returns (seconds, merged results)."""
    os.makedirs(top, exist_ok=True)
    outs, pids = [], []
    start = time.monotonic()
    for p in range(procs):
        d = os.path.join(top, f"p{p}")
        os.mkdir(d)
        out = tempfile.mktemp(prefix="kvfs-stress-")
        outs.append(out)
        pid = os.fork()
        if pid == 0:
            try:
                child(d, seed * 1000 + p, ops // procs, out)
                os._exit(0)
            except BaseException as e:  # noqa: BLE001 - report anything from the child
                print(f"worker {p}: {e!r}", file=sys.stderr)
                os._exit(1)
        pids.append(pid)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    secs = time.monotonic() - start
    merged = {"errors": {}, "bad": [], "counts": {}, "biggest": 0}
    for out in outs:
        try:
            r = json.load(open(out))
        except (OSError, ValueError):
            continue
        finally:
            if os.path.exists(out):
                os.unlink(out)
        for k in ("errors", "counts"):
            for name, n in r[k].items():
                merged[k][name] = merged[k].get(name, 0) + n
        merged["bad"] += r["bad"]
        merged["biggest"] = max(merged["biggest"], r["biggest"])
    if failed:
        merged["bad"].append(f"{failed} worker(s) failed")
    return secs, merged


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvfs", required=True, help="the kvfs binary")
    ap.add_argument("--base", default="/var/tmp", help="where the store, mount and plain directory go")
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=["kvfs", "plain"], help="run one contender")
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="kvfs-stress-", dir=args.base)
    store, mnt, plain = (os.path.join(root, n) for n in ("store", "mnt", "plain"))
    for d in (store, mnt, plain):
        os.mkdir(d)
    mounted = False
    results = {"kvfs": [], "plain": []}
    try:
        subprocess.run([args.kvfs, "mount", mnt, "--store", store, "--capacity", "4T", "--min-free", "1G"],
                       check=True, capture_output=True, timeout=120)
        mounted = True
        for rep in range(args.reps):
            for name, where in (("kvfs", mnt), ("plain", plain)):
                if args.only and name != args.only:
                    continue
                top = os.path.join(where, f"run{rep}")
                secs, r = run(top, args.procs, args.ops, args.seed + rep)
                results[name].append(secs)
                log(f"{name} rep {rep}: {secs:.1f} s for {args.ops} ops with {args.procs} processes; "
                    f"largest file {r['biggest'] / 2**30:.2f} GiB; errors {r['errors'] or 'none'}")
                if r["bad"]:
                    log(f"{name}: WRONG: {r['bad']}")
                    sys.exit(1)
                shutil.rmtree(top, ignore_errors=True)
    finally:
        if mounted:
            subprocess.run([args.kvfs, "umount", mnt], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
    line = {k: round(statistics.median(v), 2) for k, v in results.items() if v}
    if len(line) == 2:
        line["plain/kvfs"] = round(line["plain"] / line["kvfs"], 3)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
