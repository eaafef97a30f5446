#!/usr/bin/env python3
"""The inference engines' own file patterns: kvfs against a plain directory.

One command (as root, /dev/fuse needed; packaging/run-bench.sh runs it after
run_bench.py):

    python3 bench/engine_patterns.py [--reps N] [--base DIR] [--quick]
        [--with-passthrough-hp | --passthrough-hp PATH]

It mounts kvfs with its defaults (page cache, cached listings, background
durability) on a store next to a plain directory on the same filesystem,
and runs each pattern on both, rotating which goes first from one
repetition to the next. Each figure is the median of the repetitions; the
ratio is kvfs / plain of a rate (above 1: kvfs is faster). No contender
fsyncs: the engines these patterns come from do not.

With --passthrough-hp PATH (a built passthrough_hp) or --with-passthrough-hp
(builds it first with bench/build-passthrough-hp.sh, from Debian's fuse3
source), a third contender runs every pattern too: libfuse's example
passthrough file system, mounted over a directory on the same filesystem
with its own defaults (PASSTHROUGH_HP_OPTIONS below). It is a bare FUSE file
system, so kvfs / passthrough_hp separates what kvfs itself costs from what
any FUSE file system pays; that ratio is reported next to kvfs / plain.

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
  cold-direct     cold O_DIRECT reads of 16 MiB pages, 1 and 4 readers,
                  read by fio (io_uring, 1 MiB blocks, 8 in flight) on every
                  contender, after dropping the caches; skipped without fio

Results: bench/results/engine_patterns.{json,md}.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = b""
PT = "passthrough_hp"
# passthrough_hp's own defaults, the strongest it has: entries and attributes
# cached for a day, the kernel's writeback cache, page cache kept across
# opens, cached listings, splice(2) for reads and writes, libfuse's
# multi-threaded loop with its default idle-thread count, one /dev/fuse fd.
# --foreground only keeps it a child of this script (mounted, watched and
# ended here); it changes nothing it serves.
PASSTHROUGH_HP_OPTIONS = ["--foreground"]
PASSTHROUGH_HP_DESCRIPTION = ("its defaults: entry/attr timeouts 86400 s, writeback cache, keep_cache, "
                              "cached readdir, splice read+write, multi-threaded (libfuse's idle-thread "
                              "default), no clone-fd; run with --foreground")


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
        self.contenders = ["kvfs", "plain"]
        if args.passthrough_hp:
            # Its source and mount point sit next to kvfs's store and the
            # plain directory: the same filesystem under all three.
            self.pt_src = os.path.join(self.root, "passthrough-src")
            self.pt_mnt = os.path.join(self.root, "passthrough-mnt")
            for d in (self.pt_src, self.pt_mnt):
                os.mkdir(d)
            self.dirs[PT] = self.pt_mnt
            self.contenders.append(PT)
        self.mounted = False
        self.pt_proc = None
        self.results = []  # {pattern, unit, kvfs: [..], plain: [..], passthrough_hp: [..]}

    def mount(self):
        cmd = [self.args.kvfs, "mount", self.mnt, "--store", self.store, "--capacity", "30G", "--min-free", "1G"]
        log("$ " + " ".join(cmd))
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        self.mounted = True

    def mount_passthrough_hp(self):
        """Starts passthrough_hp in the foreground as a child (in its own
        session, so a terminal's ^C reaches only this script, whose cleanup
        then unmounts it) and waits until its mount is in place or it exits."""
        cmd = [self.args.passthrough_hp] + PASSTHROUGH_HP_OPTIONS + [self.pt_src, self.pt_mnt]
        log("$ " + " ".join(cmd))
        self.pt_log = open(os.path.join(self.root, "passthrough_hp.log"), "w+b")
        self.pt_proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.pt_log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.pt_mnt):
            if self.pt_proc.poll() is not None:
                self.pt_log.seek(0)
                out = self.pt_log.read().decode(errors="replace").strip()
                raise RuntimeError(f"passthrough_hp exited with status {self.pt_proc.returncode} before "
                                   f"mounting: {out or '(no output)'}")
            if time.monotonic() > deadline:
                raise RuntimeError("passthrough_hp did not mount within 30 s")
            time.sleep(0.01)  # polling the mount table: passthrough_hp says nothing when it is up

    def cleanup(self):
        """Unmounts whatever is mounted and removes the scratch tree; each
        step runs even when one before it fails."""
        try:
            if self.mounted:
                self.mounted = False
                subprocess.run([self.args.kvfs, "umount", self.mnt], capture_output=True, timeout=120)
        finally:
            try:
                self.stop_passthrough_hp()
            finally:
                shutil.rmtree(self.root, ignore_errors=True)

    def stop_passthrough_hp(self):
        proc, self.pt_proc = self.pt_proc, None
        if proc is None:
            return
        try:
            if os.path.ismount(self.pt_mnt):
                r = subprocess.run(["fusermount3", "-u", self.pt_mnt], capture_output=True, timeout=60)
                if r.returncode != 0:
                    subprocess.run(["fusermount3", "-u", "-z", self.pt_mnt], capture_output=True, timeout=60)
            proc.wait(timeout=30)  # the unmount ends its loop
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.pt_log.close()

    def scratch(self, contender, name):
        """A fresh, empty directory of the contender's."""
        d = os.path.join(self.dirs[contender], name)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        return d

    def run(self, pattern, unit, fn):
        """fn(contender, rep) -> rate. Rotates the contenders' order: each
        goes first in turn, one repetition after the other."""
        cs = self.contenders
        got = {c: [] for c in cs}
        for rep in range(self.args.reps):
            for c in cs[rep % len(cs):] + cs[:rep % len(cs)]:
                got[c].append(fn(c, rep))
        k, p = statistics.median(got["kvfs"]), statistics.median(got["plain"])
        r = {"pattern": pattern, "unit": unit, "kvfs": got["kvfs"], "plain": got["plain"],
             "kvfs_median": k, "plain_median": p, "ratio": k / p if p else None}
        line = f"  {pattern:<44} kvfs {k:12,.1f}  plain {p:12,.1f} {unit:<12} {k / p if p else 0:5.2f}x"
        if PT in got:
            t = statistics.median(got[PT])
            r.update({PT: got[PT], PT + "_median": t, "ratio_" + PT: k / t if t else None})
            line += f"  {PT} {t:12,.1f} {k / t if t else 0:5.2f}x"
        log(line)
        self.results.append(r)

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
        for c in self.contenders:
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
        for c in self.contenders:
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

    def cold_direct(self, size, count, readers_list):
        """fio reads every page once with O_DIRECT, after the caches were
        dropped: the same reader on every contender (so the plain side is
        as strong as the drive allows), each reader job its own share."""
        if not shutil.which("fio"):
            log("  cold O_DIRECT reads: fio not found, skipped (apt-get install fio)")
            return
        dirs = {c: self.scratch(c, f"cold-{size}") for c in self.contenders}
        # Page by page in turn: on a virtual disk, data written later can
        # read faster (two plain directories of 32 x 16 MiB written one
        # after the other: fio read the second 1.1-1.25x faster than the
        # first in three alternated rounds), which favoured whichever
        # contender was written last.
        for i in range(count):
            for c in self.contenders:
                write_file(os.path.join(dirs[c], f"page-{i}"), memoryview(DATA)[:size])
        os.sync()

        def fio(c, readers):
            cmd = ["fio", "--output-format=json", "--readonly", "--rw=read", "--direct=1", "--ioengine=io_uring",
                   "--bs=1M", "--iodepth=8", "--file_service_type=sequential", "--group_reporting",
                   f"--directory={dirs[c]}"]
            for r in range(readers):
                names = ":".join(f"page-{i}" for i in range(r, count, readers))
                cmd += [f"--name=reader{r}", f"--filename={names}"]
            drop_caches()
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                raise RuntimeError(f"fio on {c} failed ({out.returncode}): {out.stderr.strip()[-300:]}")
            job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]["read"]
            if job["io_bytes"] != count * size:
                raise RuntimeError(f"fio on {c} read {job['io_bytes']} bytes of {count * size}")
            return job["io_bytes"] / (job["runtime"] / 1000.0) / 1e9

        for readers in readers_list:
            self.run(f"cold O_DIRECT read of {size // MiB} MiB pages, {readers} reader{'s' if readers > 1 else ''} "
                     f"(fio)", "GB/s", lambda c, rep, readers=readers: fio(c, readers))

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
        self.cold_direct(16 * MiB, 16 if q else 48, (1, 4))


def ratio_text(r):
    return "-" if r is None else f"{r:.2f}"


def write_outputs(results, out_dir, meta):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "engine_patterns.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    title = (f"Engine patterns, {meta['date']}, {meta['reps']} repetitions each (medians), "
             f"kvfs with its defaults against a plain directory on the same filesystem")
    if PT in meta:
        lines = [title + f" and libfuse's {PT} over a directory of it ({meta[PT]['options_described']}).", "",
                 f"| pattern | kvfs | plain | {PT} | unit | kvfs/plain | kvfs/{PT} |",
                 "|---|---:|---:|---:|---|---:|---:|"]
        for r in results:
            lines.append(f"| {r['pattern']} | {r['kvfs_median']:,.1f} | {r['plain_median']:,.1f} | "
                         f"{r[PT + '_median']:,.1f} | {r['unit']} | {ratio_text(r['ratio'])} | "
                         f"{ratio_text(r['ratio_' + PT])} |")
    else:
        lines = [title + ".", "", "| pattern | kvfs | plain | unit | kvfs/plain |", "|---|---:|---:|---|---:|"]
        for r in results:
            lines.append(f"| {r['pattern']} | {r['kvfs_median']:,.1f} | {r['plain_median']:,.1f} | {r['unit']} | "
                         f"{ratio_text(r['ratio'])} |")
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
    pt = ap.add_mutually_exclusive_group()
    pt.add_argument("--passthrough-hp", metavar="PATH",
                    help="also run every pattern on libfuse's passthrough_hp (this binary)")
    pt.add_argument("--with-passthrough-hp", action="store_true",
                    help="the same, building passthrough_hp first (bench/build-passthrough-hp.sh)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("engine_patterns.py: run as root (it mounts kvfs)", file=sys.stderr)
        return 2
    if args.reps < 1:
        print("engine_patterns.py: --reps must be at least 1", file=sys.stderr)
        return 2
    if args.with_passthrough_hp:
        build = subprocess.run([os.path.join(REPO, "bench", "build-passthrough-hp.sh")],
                               stdout=subprocess.PIPE, text=True)
        if build.returncode != 0:  # the script has said why on stderr
            print("engine_patterns.py: building passthrough_hp failed", file=sys.stderr)
            return 2
        built = build.stdout.strip().splitlines()
        if not built:
            print("engine_patterns.py: bench/build-passthrough-hp.sh printed no path", file=sys.stderr)
            return 2
        args.passthrough_hp = built[-1]
    if args.passthrough_hp:
        args.passthrough_hp = os.path.abspath(args.passthrough_hp)
        if not (os.path.isfile(args.passthrough_hp) and os.access(args.passthrough_hp, os.X_OK)):
            print(f"engine_patterns.py: {args.passthrough_hp} is not an executable file", file=sys.stderr)
            return 2
    # A SIGTERM unwinds like ^C, so the cleanup below still unmounts.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    global DATA
    DATA = os.urandom(33 * MiB)
    p = Patterns(args)
    try:
        p.mount()
        if args.passthrough_hp:
            p.mount_passthrough_hp()
        drop_caches()
        p.all()
    except subprocess.CalledProcessError as e:  # the kvfs mount
        why = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        print(f"engine_patterns.py: mounting kvfs failed: {why[-1] if why else f'exit status {e.returncode}'}",
              file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"engine_patterns.py: {e}", file=sys.stderr)
        return 1
    finally:
        p.cleanup()
    meta = {"date": time.strftime("%Y-%m-%d"), "reps": args.reps, "quick": args.quick}
    if args.passthrough_hp:
        meta[PT] = {"binary": args.passthrough_hp, "options": PASSTHROUGH_HP_OPTIONS,
                    "options_described": PASSTHROUGH_HP_DESCRIPTION,
                    "source": "a directory on the same filesystem as the kvfs store and the plain directory"}
    write_outputs(p.results, args.out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
