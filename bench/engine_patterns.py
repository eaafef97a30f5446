#!/usr/bin/env python3
"""The inference engines' own file patterns: kvfs against a plain directory.

One command (as root, /dev/fuse needed; packaging/run-bench.sh runs it after
run_bench.py):

    python3 bench/engine_patterns.py [--reps N] [--base DIR] [--quick]

It mounts kvfs with its defaults (page cache, cached listings, background
durability) on a store next to a plain directory on the same filesystem,
and runs each pattern on both, alternating which goes first from one
repetition to the next. Each figure is the median of the repetitions; the
ratio is kvfs / plain of a rate (above 1: kvfs is faster). Neither side
fsyncs: the engines these patterns come from do not.

Patterns (the engines that do this):
  get-after-put   write a page, then open, one readinto of the whole page
                  into a preallocated buffer, close (SGLang, LMCache);
                  only the get is timed; 2, 8 and 32 MiB pages
  warm-reread     4 workers re-read pages written a moment ago (LMCache
                  local disk); hot-reread: the same once more
  tmp-rename      write key.tmp, rename it over key, 8 MiB (SGLang HiCache)
  gds-put         nested ab/cd/ directories, a temp file with a 4 KiB header
                  and a 2 MiB chunk, rename, then a small .metadata sidecar
                  written to a temp name and renamed (LMCache GDS backend)
  list-flat       os.listdir of one flat directory of 10,000 pages, repeated
  scandir-exists  after writing a batch of 8 pages into that directory, one
                  scandir answers which of the batch's keys exist (SGLang's
                  file backend without its metadata cache)
  create/stat/unlink  of 2,000 names, each timed on its own
  prefix-stat     stat of a 128-key prefix chain, all existing / all missing

Results: bench/results/engine_patterns.{json,md}.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = b""


def log(msg):
    print(msg, flush=True)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def write_file(path, data):
    with open(path, "wb", buffering=0) as f:
        f.write(data)


def read_into(path, buf):
    with open(path, "rb", buffering=0) as f:
        n = f.readinto(buf)
    return n


def timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def fork_workers(n, fn):
    """Runs fn(i) in n forked children released together; returns the wall
    time from release to the last exit."""
    gate_r, gate_w = os.pipe()
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(gate_w)
                os.read(gate_r, 1)
                fn(i)
            except BaseException:  # noqa: BLE001 - a child must always exit
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(gate_r)
    t = time.perf_counter()
    os.close(gate_w)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    if failed:
        raise RuntimeError(f"{failed} worker(s) failed")
    return time.perf_counter() - t


class Patterns:
    def __init__(self, args):
        self.args = args
        base = os.path.abspath(args.base)
        os.makedirs(base, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix=f"patterns-{os.getpid()}-", dir=base)
        self.store = os.path.join(self.root, "store")
        self.mnt = os.path.join(self.root, "mnt")
        plain = os.path.join(self.root, "plain")
        for d in (self.store, self.mnt, plain):
            os.mkdir(d)
        self.dirs = {"kvfs": self.mnt, "plain": plain}
        self.mounted = False
        self.results = []  # {pattern, unit, kvfs: [..], plain: [..]}

    def mount(self):
        cmd = [self.args.kvfs, "mount", self.mnt, "--store", self.store, "--capacity", "30G", "--min-free", "1G"]
        log("$ " + " ".join(cmd))
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        self.mounted = True

    def cleanup(self):
        if self.mounted:
            subprocess.run([self.args.kvfs, "umount", self.mnt], capture_output=True, timeout=120)
            self.mounted = False
        shutil.rmtree(self.root, ignore_errors=True)

    def scratch(self, contender, name):
        """A fresh, empty directory of the contender's."""
        d = os.path.join(self.dirs[contender], name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        return d

    def run(self, pattern, unit, fn):
        """fn(contender, rep) -> rate. Alternates the contenders' order."""
        got = {"kvfs": [], "plain": []}
        for rep in range(self.args.reps):
            order = ["kvfs", "plain"] if rep % 2 == 0 else ["plain", "kvfs"]
            for c in order:
                got[c].append(fn(c, rep))
        k, p = statistics.median(got["kvfs"]), statistics.median(got["plain"])
        log(f"  {pattern:<44} kvfs {k:12,.1f}  plain {p:12,.1f} {unit:<12} {k / p if p else 0:5.2f}x")
        self.results.append({"pattern": pattern, "unit": unit, "kvfs": got["kvfs"], "plain": got["plain"],
                             "kvfs_median": k, "plain_median": p, "ratio": k / p if p else None})

    # -- patterns

    def get_after_put(self, size, count):
        def fn(c, rep):
            d = self.scratch(c, f"get-{size}-{rep}")
            buf = bytearray(size)
            total = 0.0
            for i in range(count):
                p = os.path.join(d, f"page-{i}")
                write_file(p, memoryview(DATA)[:size])
                total += timed(read_into, p, buf)
            return count * size / total / 1e9
        self.run(f"get of a just-written page, {size // MiB} MiB", "GB/s", fn)

    def rereads(self, size, count, workers):
        state = {}

        def prepare(c, rep):
            d = self.scratch(c, f"reread-{rep}")
            for i in range(count):
                write_file(os.path.join(d, f"page-{i}"), memoryview(DATA)[:size])
            return d

        def read_all(d):
            def worker(w):
                buf = bytearray(size)
                for i in range(w, count, workers):
                    read_into(os.path.join(d, f"page-{i}"), buf)
            return fork_workers(workers, worker)

        def warm(c, rep):
            d = prepare(c, rep)
            state[(c, rep)] = d
            return count * size / read_all(d) / 1e9

        def hot(c, rep):
            return count * size / read_all(state[(c, rep)]) / 1e9
        self.run(f"warm re-read of just-written {size // MiB} MiB pages, {workers} workers", "GB/s", warm)
        self.run(f"hot re-read of {size // MiB} MiB pages, {workers} workers", "GB/s", hot)

    def tmp_rename(self, size, count):
        def fn(c, rep):
            d = self.scratch(c, f"tmp-{rep}")
            t = time.perf_counter()
            for i in range(count):
                key = os.path.join(d, f"k{i % (count // 2)}")  # half of them replace a key
                write_file(key + ".tmp", memoryview(DATA)[:size])
                os.rename(key + ".tmp", key)
            return count / (time.perf_counter() - t)
        self.run(f"tmp + rename set of {size // MiB} MiB pages", "puts/s", fn)

    def gds_put(self, count):
        header = bytes(4096)
        chunk = memoryview(DATA)[:2 * MiB]
        meta = b'{"shape": [32, 2, 16, 128], "dtype": "bfloat16", "fmt": "vllm"}'

        def fn(c, rep):
            d = self.scratch(c, f"gds-{rep}")
            t = time.perf_counter()
            for i in range(count):
                h = f"{(i * 2654435761) & 0xffffffff:08x}"
                sub = os.path.join(d, h[:2], h[2:4])
                os.makedirs(sub, exist_ok=True)
                base = os.path.join(sub, h)
                with open(base + ".tmp", "wb", buffering=0) as f:
                    f.write(header)
                    f.write(chunk)
                os.rename(base + ".tmp", base + ".kv")
                write_file(base + ".metadata.tmp", meta)
                os.rename(base + ".metadata.tmp", base + ".metadata")
            return count / (time.perf_counter() - t)
        self.run("GDS-style put: 4 KiB header + 2 MiB chunk, sidecar", "puts/s", fn)

    def flat_dir(self, entries):
        dirs = {}
        for c in ("kvfs", "plain"):
            d = self.scratch(c, "flat")
            for i in range(entries):
                write_file(os.path.join(d, f"page-{i:06d}"), b"x" * 4096)
            dirs[c] = d

        def listing(c, rep):
            d = dirs[c]
            n = 0
            t = time.perf_counter()
            while time.perf_counter() - t < 1.0:
                if len(os.listdir(d)) != entries:
                    raise RuntimeError("listing is missing entries")
                n += 1
            return n / (time.perf_counter() - t)
        self.run(f"listing a flat directory of {entries:,} pages", "listings/s", listing)

        def scandir_exists(c, rep):
            d = dirs[c]
            total, batches = 0.0, 20
            for b in range(batches):
                batch = [f"new-{rep}-{b}-{j}" for j in range(8)]
                for name in batch:
                    write_file(os.path.join(d, name), memoryview(DATA)[:256 * 1024])
                t = time.perf_counter()
                present = {e.name for e in os.scandir(d)}
                found = sum(name in present for name in batch)
                total += time.perf_counter() - t
                if found != len(batch):
                    raise RuntimeError("scandir missed a page just written")
            return batches / total
        self.run(f"scandir existence check after a batch write ({entries:,} entries)", "checks/s", scandir_exists)

    def metadata(self, names):
        state = {}

        def create(c, rep):
            d = self.scratch(c, f"meta-{rep}")
            state[(c, rep)] = d
            t = time.perf_counter()
            for i in range(names):
                os.close(os.open(os.path.join(d, f"n{i}"), os.O_CREAT | os.O_WRONLY, 0o644))
            return names / (time.perf_counter() - t)

        def stat(c, rep):
            d = state[(c, rep)]
            t = time.perf_counter()
            for i in range(names):
                os.stat(os.path.join(d, f"n{i}"))
            return names / (time.perf_counter() - t)

        def unlink(c, rep):
            d = state[(c, rep)]
            t = time.perf_counter()
            for i in range(names):
                os.unlink(os.path.join(d, f"n{i}"))
            return names / (time.perf_counter() - t)
        self.run(f"create + close of {names:,} names", "ops/s", create)
        self.run(f"stat of {names:,} names", "ops/s", stat)
        self.run(f"unlink of {names:,} names", "ops/s", unlink)

    def prefix_chain(self, keys):
        dirs = {}
        for c in ("kvfs", "plain"):
            d = self.scratch(c, "prefix")
            for i in range(keys):
                write_file(os.path.join(d, f"chain-{i:04d}"), b"k" * 4096)
            dirs[c] = d

        def exists(missing):
            def fn(c, rep):
                d = dirs[c]
                n = 0
                t = time.perf_counter()
                while time.perf_counter() - t < 0.5:
                    for i in range(keys):
                        # An engine probes the same chain again and again.
                        name = f"absent-{i:04d}" if missing else f"chain-{i:04d}"
                        if os.path.exists(os.path.join(d, name)) == missing:
                            raise RuntimeError("wrong existence answer")
                    n += 1
                return n * keys / (time.perf_counter() - t)
            return fn
        self.run(f"stat of an existing {keys}-key prefix chain", "stats/s", exists(False))
        self.run(f"stat of a missing {keys}-key prefix chain", "stats/s", exists(True))

    def all(self):
        q = self.args.quick
        for size, count in ((2 * MiB, 20 if q else 60), (8 * MiB, 10 if q else 30), (32 * MiB, 4 if q else 10)):
            self.get_after_put(size, count)
        self.rereads(8 * MiB, 16 if q else 64, 4)
        self.tmp_rename(8 * MiB, 10 if q else 40)
        self.gds_put(50 if q else 200)
        self.flat_dir(2000 if q else 10000)
        self.metadata(500 if q else 2000)
        self.prefix_chain(128)


def write_outputs(results, out_dir, meta):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "engine_patterns.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    lines = [f"Engine patterns, {meta['date']}, {meta['reps']} repetitions each (medians), "
             f"kvfs with its defaults against a plain directory on the same filesystem.", "",
             "| pattern | kvfs | plain | unit | kvfs/plain |", "|---|---:|---:|---|---:|"]
    for r in results:
        lines.append(f"| {r['pattern']} | {r['kvfs_median']:,.1f} | {r['plain_median']:,.1f} | {r['unit']} | "
                     f"{r['ratio']:.2f} |")
    with open(os.path.join(out_dir, "engine_patterns.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvfs", default=os.path.join(REPO, "build", "kvfs"))
    ap.add_argument("--base", default="/var/tmp/kvfs-bench")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer objects per pattern")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("engine_patterns.py: run as root (it mounts kvfs)", file=sys.stderr)
        return 2
    global DATA
    DATA = os.urandom(33 * MiB)
    p = Patterns(args)
    try:
        p.mount()
        drop_caches()
        p.all()
    finally:
        p.cleanup()
    meta = {"date": time.strftime("%Y-%m-%d"), "reps": args.reps, "quick": args.quick}
    write_outputs(p.results, args.out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
