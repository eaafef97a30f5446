#!/usr/bin/env python3
"""Side-by-side benchmark of a kvfs mount against a plain directory and fio.

One command (as root, /dev/fuse needed):

    python3 bench/run_bench.py [--quick] [--reps N] [--base DIR] [--full-index]

It makes a scratch directory on one filesystem (a kvfs store, a plain
directory and a mountpoint), mounts kvfs on it, and measures, alternating the
contenders run by run:

  1. cold sequential reads of whole objects (page cache dropped before each
     run): kvfs, the plain directory, and fio over the same plain files;
  2. hot re-reads of the same objects (kvfs vs plain);
  3. durable writes (create + write + fsync + close, on both sides; and
     kvfs mounted a second time with --durability close, where close()
     is the flush, against the plain directory's fsync);
  4. metadata: create, stat, negative stat, unlink rates, `ls -l` of a big
     directory;
  5. the SGLang file-backend pattern (write key.tmp, rename over key, read
     back into a preallocated buffer);
  6. the daemon's peak RSS, and the index cost per object from
     build/bench/kvfs_mount_bench.

The mount is always unmounted and the scratch directory removed at the end,
also on failure or Ctrl-C. Results go to bench/results/latest.{json,md,png}.
Ratios are of throughput (objects/s, GB/s, ops/s): above 1, kvfs is faster.
"""

import argparse
import datetime
import json
import mmap
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1 << 20
KiB = 1 << 10
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Filled in before any fork, so that the children share it copy-on-write.
WRITE_DATA = b""


T_START = time.perf_counter()
LAST_PROGRESS = [time.monotonic()]  # the watchdog's view of the run


def log(msg):
    LAST_PROGRESS[0] = time.monotonic()
    print(f"[{time.perf_counter() - T_START:6.1f}s] {msg}" if msg else "", flush=True)


def fmt_size(n):
    return f"{n // MiB}MiB" if n >= MiB else f"{n // KiB}KiB"


# --------------------------------------------------------------------------
# Processes released together


def run_parallel(tasks):
    """Forks one process per (function, args) task, releases them all at once
    and waits for all of them. Returns (seconds from release to the last
    exit, [each task's return value])."""
    gate_r, gate_w = os.pipe()
    children = []  # [pid, result fd, reaped]
    try:
        for fn, args in tasks:
            res_r, res_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child
                code = 0
                try:
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.close(gate_w)
                    os.close(res_r)
                    for c in children:
                        os.close(c[1])
                    if os.read(gate_r, 1) != b"g":
                        os._exit(3)  # the parent went away
                    payload = json.dumps({"ok": fn(*args)})
                except BaseException as e:  # noqa: BLE001 - reported to the parent
                    payload = json.dumps({"error": f"{type(e).__name__}: {e}"})
                    code = 1
                try:
                    data = payload.encode()
                    while data:
                        data = data[os.write(res_w, data):]
                finally:
                    os._exit(code)
            os.close(res_w)
            children.append([pid, res_r, False])
        os.close(gate_r)
        gate_r = -1
        t0 = time.perf_counter()
        os.write(gate_w, b"g" * len(children))
        raw = []
        for c in children:
            chunks = []
            while True:
                b = os.read(c[1], 65536)
                if not b:
                    break
                chunks.append(b)
            raw.append(b"".join(chunks))
        for c in children:
            os.waitpid(c[0], 0)
            c[2] = True
        elapsed = time.perf_counter() - t0
    finally:
        for c in children:
            if not c[2]:
                try:
                    os.kill(c[0], signal.SIGKILL)
                    os.waitpid(c[0], 0)
                except OSError:
                    pass
            try:
                os.close(c[1])
            except OSError:
                pass
        for fd in (gate_r, gate_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
    results = []
    for r in raw:
        try:
            d = json.loads(r.decode() or "{}")
        except ValueError:
            d = {"error": "no result from the worker"}
        if "error" in d or "ok" not in d:
            raise RuntimeError(f"worker failed: {d.get('error', 'no result')}")
        results.append(d["ok"])
    return elapsed, results


# --------------------------------------------------------------------------
# Workers (run in forked children)


def tag_of(i):
    return b"kvfsbench%07d" % i


def read_objects(objects, direct, passes=1):
    """Reads each (path, size, index) object whole, sequentially, in calls of
    1..16 MiB into one page-aligned buffer. Returns bytes read."""
    if not objects:
        return 0
    largest = max(o[1] for o in objects)
    call = min(max(largest, MiB), 16 * MiB)
    buf = mmap.mmap(-1, call)  # anonymous mapping: page aligned
    view = memoryview(buf)
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECT if direct else 0)
    total = 0
    for _ in range(passes):
        for path, size, index in objects:
            fd = os.open(path, flags)
            try:
                off = 0
                while off < size:
                    n = min(call, size - off)
                    got = os.preadv(fd, [view[:n]], off)
                    if got <= 0:
                        raise OSError(f"{path}: short object ({off} of {size} bytes)")
                    if off == 0 and bytes(view[:16]) != tag_of(index):
                        raise OSError(f"{path}: wrong bytes at offset 0")
                    off += got
                total += off
            finally:
                os.close(fd)
    view.release()
    buf.close()
    return total


def write_objects(directory, prefix, size, seconds, fsync):
    """Creates, writes and closes objects until `seconds` have passed (with
    fsync before close when asked). Returns how many were written."""
    data = memoryview(WRITE_DATA)[:size]
    end = time.monotonic() + seconds
    n = 0
    while True:
        fd = os.open(f"{directory}/{prefix}-{n}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            off = 0
            while off < size:
                off += os.write(fd, data[off:])
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)  # kvfs commits here; a failed commit raises
        n += 1
        if time.monotonic() >= end:
            return n


# --------------------------------------------------------------------------
# Helpers


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def is_mounted(real):
    """Whether the resolved path `real` is a mount point (read from
    /proc/self/mountinfo: nothing touches the mount, which may hang)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == real:
                return True
    return False


def fs_of(path):
    """(mount point, filesystem type, source) of the filesystem holding path."""
    real = os.path.realpath(path)
    best = ("", "?", "?")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            mp = fields[4].replace("\\040", " ")
            if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best[0]):
                best = (mp, rfields[0] if rfields else "?", rfields[1] if len(rfields) > 1 else "?")
    return best


def machine_info(base):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    mp, fstype, source = fs_of(base)

    def cmd_out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=REPO).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = cmd_out(["git", "rev-parse", "HEAD"])
    dirty = bool(cmd_out(["git", "status", "--porcelain", "--untracked-files=no"]))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(),
        "os": cmd_out(["sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""]),
        "python": platform.python_version(),
        "fio": cmd_out(["fio", "--version"]) if shutil.which("fio") else None,
        "base": os.path.realpath(base),
        "base_filesystem": fstype,
        "base_device": source,
        "base_mount_point": mp,
        "kvfs_commit": commit + ("-dirty" if dirty else "") if commit else None,
    }


def median(values):
    return statistics.median(values) if values else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_num(v, unit=""):
    if v is None:
        return "-"
    if unit == "x":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


# --------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.kvfs = args.kvfs
        self.runs = []  # raw per-run records
        self.cases = []  # (scenario, case key, label, unit, contenders)
        self.notes = []
        base = os.path.abspath(args.base)
        self.created_base = not os.path.exists(base)
        os.makedirs(base, exist_ok=True)
        self.base = base
        self.root = tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=base)
        self.store = os.path.join(self.root, "store")
        self.plain = os.path.join(self.root, "plain")
        self.mnt = os.path.join(self.root, "mnt")
        for d in (self.store, self.plain, self.mnt):
            os.mkdir(d)
        self.mnt_real = os.path.realpath(self.mnt)  # resolved before mounting
        # A second mount with --durability close, on its own store, for the
        # durable-write rows that need no fsync (mounted for those only).
        self.close_store = os.path.join(self.root, "store-close")
        self.close_mnt = os.path.join(self.root, "mnt-close")
        for d in (self.close_store, self.close_mnt):
            os.mkdir(d)
        self.close_mnt_real = os.path.realpath(self.close_mnt)
        self.mounted = False
        self.daemon_pid = None
        self.watchdog_paused = False
        self.watchdog_fired = False
        self.dirs = {"kvfs": self.mnt, "plain": self.plain}
        global WRITE_DATA
        WRITE_DATA = os.urandom(33 * MiB)  # object bytes (random: nothing compresses)

    # -- mount and cleanup

    def mount(self, mnt=None, store=None, extra=()):
        mnt, store = mnt or self.mnt, store or self.store
        cmd = [self.kvfs, "mount", mnt, "--store", store, "--capacity", "40G", "--min-free", "1G", *extra]
        log("$ " + " ".join(cmd))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            tail = ""
            try:
                with open(os.path.join(store, "kvfs.log"), errors="replace") as f:
                    tail = "".join(f.readlines()[-10:])
            except OSError:
                pass
            raise RuntimeError(f"kvfs mount failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
                               + (f"\nkvfs.log:\n{tail}" if tail else ""))
        if mnt != self.mnt:
            return
        self.mounted = True
        self.daemon_pid = int(os.getxattr(self.mnt, "user.kvfs.pid").decode().strip())

    def kill_daemon(self, why):
        """SIGKILLs the kvfs daemon this run started: its mount then answers
        ENOTCONN, whatever was blocked on it fails, and `kvfs umount`
        detaches it."""
        pid = self.daemon_pid
        if not pid:
            return
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "kvfs":
                    return  # gone, and the pid reused
            log(f"{why}: killing the kvfs daemon (pid {pid})")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def watchdog(self, timeout, stop):
        """Kills the daemon when nothing has progressed for `timeout`
        seconds (a hung mount would block the run, and its cleanup, forever)."""
        while not stop.wait(5):
            if self.watchdog_paused or not self.mounted:
                LAST_PROGRESS[0] = time.monotonic()
            elif time.monotonic() - LAST_PROGRESS[0] > timeout:
                self.watchdog_fired = True
                self.kill_daemon(f"no progress for {timeout:.0f} s, kvfs looks hung")
                return

    def umount(self, mnt=None):
        try:
            r = subprocess.run([self.kvfs, "umount", mnt or self.mnt], capture_output=True, text=True, timeout=90)
            return r.returncode == 0, r.stderr.strip()
        except subprocess.TimeoutExpired:
            return False, "kvfs umount did not finish in 90 s"

    def cleanup(self):
        ok = True
        if is_mounted(self.close_mnt_real):
            for attempt in range(4):
                done, err = self.umount(self.close_mnt)
                if done or not is_mounted(self.close_mnt_real):
                    break
                log(f"kvfs umount {self.close_mnt}: {err} (retrying)")
                time.sleep(1 + attempt)
            if is_mounted(self.close_mnt_real):
                log(f"ERROR: {self.close_mnt} is still mounted; leaving {self.root} in place")
                ok = False
        if self.mounted or is_mounted(self.mnt_real):
            for attempt in range(6):
                done, err = self.umount()
                if done or not is_mounted(self.mnt_real):
                    break
                log(f"kvfs umount: {err} (retrying)")
                if attempt == 3:
                    self.kill_daemon("the mount does not come off")
                time.sleep(1 + attempt)
            if is_mounted(self.mnt_real):
                log(f"ERROR: {self.mnt} is still mounted; leaving {self.root} in place")
                ok = False
            else:
                self.mounted = False
        if ok and not is_mounted(self.close_mnt_real):
            shutil.rmtree(self.root, ignore_errors=True)
            if self.created_base:
                try:
                    os.rmdir(self.base)
                except OSError:
                    pass
        return ok

    # -- recording

    def record(self, scenario, case, contender, rep, value, unit, **extra):
        rec = {"scenario": scenario, "case": case, "contender": contender, "rep": rep, "value": value, "unit": unit}
        rec.update(extra)
        self.runs.append(rec)
        return value

    def add_case(self, scenario, case, label, unit, contenders):
        self.cases.append({"scenario": scenario, "case": case, "label": label, "unit": unit, "contenders": contenders})

    def values(self, case, contender):
        return [r["value"] for r in self.runs if r["case"] == case and r["contender"] == contender]

    @staticmethod
    def rotated(items, k):
        k %= len(items)
        return items[k:] + items[:k]

    def rep_line(self, rep, label, got, unit):
        parts = "  ".join(f"{c} {fmt_num(v)}" for c, v in got)
        log(f"  rep {rep + 1}/{self.args.reps} {label}: {parts} {unit}")

    # -- 1, 2: reads

    def make_read_sets(self):
        a = self.args
        self.read_sets = {}
        t0 = time.perf_counter()
        for size in a.read_sizes:
            count = max(4, a.read_bytes // size)
            for contender, top in self.dirs.items():
                d = os.path.join(top, "read", fmt_size(size))
                os.makedirs(d)
                objs = []
                for i in range(count):
                    path = os.path.join(d, f"obj-{i}")
                    off0 = (i * 4096) % MiB  # objects differ beyond their tag
                    data = bytearray(memoryview(WRITE_DATA)[off0:off0 + size])
                    data[:16] = tag_of(i)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                    try:
                        view = memoryview(data)
                        off = 0
                        while off < size:
                            off += os.write(fd, view[off:])
                    finally:
                        os.close(fd)
                    objs.append((path, size, i))
                    LAST_PROGRESS[0] = time.monotonic()
                self.read_sets[(contender, size)] = objs
        os.sync()
        total = sum(len(v) * v[0][1] for v in self.read_sets.values()) // 2
        log(f"read data sets: {total / MiB:.0f} MiB per contender, written in {time.perf_counter() - t0:.1f}s")

    def read_run(self, contender, size, readers, direct, cold, passes=1):
        objs = self.read_sets[(contender, size)]
        shares = [objs[i::readers] for i in range(readers)]
        if cold:
            drop_caches()
        secs, got = run_parallel([(read_objects, (s, direct, passes)) for s in shares])
        expect = sum(o[1] for o in objs) * passes
        if sum(got) != expect:
            raise RuntimeError(f"{contender}: read {sum(got)} bytes, expected {expect}")
        return sum(got) / secs / 1e9, secs, sum(got)

    def fio_cmd(self, size, readers):
        objs = self.read_sets[("plain", size)]
        directory = os.path.dirname(objs[0][0])
        cmd = [
            "fio", "--output-format=json", "--readonly", "--rw=read", "--direct=1", "--ioengine=io_uring",
            "--bs=1M", "--iodepth=8", "--file_service_type=sequential", "--group_reporting",
            f"--directory={directory}",
        ]
        # numjobs=R, written as R jobs that each read their own share of the
        # objects (as the Python readers do), so every byte is read once.
        for r in range(readers):
            names = ":".join(os.path.basename(o[0]) for o in objs[r::readers])
            cmd += [f"--name=reader{r}", f"--filename={names}"]
        return cmd

    def fio_run(self, size, readers):
        cmd = self.fio_cmd(size, readers)
        drop_caches()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"fio failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        out = r.stdout
        out = out[out.index("{"):]  # fio may print notes before the JSON
        job = json.loads(out)["jobs"][0]["read"]
        expect = sum(o[1] for o in self.read_sets[("plain", size)])
        if job["io_bytes"] != expect:
            self.notes.append(f"fio read {job['io_bytes']} bytes of {expect} ({fmt_size(size)} x{readers})")
        secs = job["runtime"] / 1000.0
        return job["io_bytes"] / secs / 1e9 if secs > 0 else job["bw_bytes"] / 1e9, secs, job["io_bytes"]

    def bench_cold(self):
        a = self.args
        cases = []
        for direct in (True, False):
            for size in a.read_sizes:
                for readers in a.readers:
                    mode = "O_DIRECT" if direct else "buffered"
                    case = f"cold/{'direct' if direct else 'buffered'}/{fmt_size(size)}/r{readers}"
                    contenders = ["kvfs", "plain"] + (["fio"] if direct and a.fio else [])
                    label = f"cold {mode} {fmt_size(size)} x{readers}"
                    self.add_case("cold_read", case, label, "GB/s", contenders)
                    cases.append((case, label, size, readers, direct, contenders))
        if a.fio:
            opts = [o for o in self.fio_cmd(a.read_sizes[0], 1) if not o.startswith(("--name=", "--filename=", "--directory="))]
            self.fio_example = (" ".join(opts) + " --directory=PLAIN/read/SIZE --name=reader0 --filename=obj-0:obj-4:... "
                                "--name=reader1 --filename=obj-1:obj-5:... (one job per reader)")
        for rep in range(a.reps):
            for ci, (case, label, size, readers, direct, contenders) in enumerate(cases):
                got = []
                for c in self.rotated(contenders, rep + ci):
                    if c == "fio":
                        v, secs, nbytes = self.fio_run(size, readers)
                    else:
                        v, secs, nbytes = self.read_run(c, size, readers, direct, cold=True)
                    self.record("cold_read", case, c, rep, v, "GB/s", seconds=secs, bytes=nbytes)
                    got.append((c, v))
                self.rep_line(rep, label, got, "GB/s")

    def bench_hot(self):
        a = self.args
        cases = []
        for size in a.read_sizes:
            for readers in a.readers:
                case = f"hot/buffered/{fmt_size(size)}/r{readers}"
                label = f"hot buffered {fmt_size(size)} x{readers}"
                self.add_case("hot_read", case, label, "GB/s", ["kvfs", "plain"])
                cases.append((case, label, size, readers))
        # One untimed pass to warm whatever cache each contender has.
        for size in a.read_sizes:
            for c in ("kvfs", "plain"):
                self.read_run(c, size, 1, False, cold=False)
        for rep in range(a.reps):
            for ci, (case, label, size, readers) in enumerate(cases):
                got = []
                for c in self.rotated(["kvfs", "plain"], rep + ci):
                    v, secs, nbytes = self.read_run(c, size, readers, False, cold=False)
                    self.record("hot_read", case, c, rep, v, "GB/s", seconds=secs, bytes=nbytes)
                    got.append((c, v))
                self.rep_line(rep, label, got, "GB/s")

    # -- 3: durable writes

    def bench_writes(self):
        """Durable writes: kvfs with its default durability and an fsync
        before close, against the plain directory with the same fsync; and
        kvfs mounted with --durability close (close is the flush: no fsync),
        against the same plain directory with its fsync."""
        a = self.args
        cases = []
        for size in (256 * KiB, 16 * MiB):
            for writers in a.writers:
                case = f"write/{fmt_size(size)}/w{writers}"
                label = f"durable write {fmt_size(size)} x{writers}"
                self.add_case("durable_write", case, label, "objects/s", ["kvfs", "plain"])
                cases.append((case, label, size, writers, False))
        for writers in a.writers:
            case = f"write_close/256KiB/w{writers}"
            label = f"durable write 256KiB x{writers}, --durability close"
            self.add_case("durable_write", case, label, "objects/s", ["kvfs", "plain"])
            cases.append((case, label, 256 * KiB, writers, True))
        self.mount(self.close_mnt, self.close_store, ("--durability", "close"))
        try:
            self.run_writes(cases)
        finally:
            done, err = self.umount(self.close_mnt)
            if not done:
                log(f"kvfs umount {self.close_mnt}: {err}")

    def run_writes(self, cases):
        a = self.args
        for rep in range(a.reps):
            for ci, (case, label, size, writers, close_mode) in enumerate(cases):
                got = []
                for c in self.rotated(["kvfs", "plain"], rep + ci):
                    top = self.close_mnt if close_mode and c == "kvfs" else self.dirs[c]
                    d = os.path.join(top, f"write-{rep}-{ci}")
                    os.mkdir(d)
                    # The plain directory fsyncs before close, and so does
                    # kvfs with its default durability (it flushes in the
                    # background otherwise); with --durability close,
                    # close() itself returns once the version is durable.
                    fsync = not (close_mode and c == "kvfs")
                    tasks = [(write_objects, (d, f"w{w}", size, a.run_seconds, fsync)) for w in range(writers)]
                    secs, counts = run_parallel(tasks)
                    v = sum(counts) / secs
                    self.record("durable_write", case, c, rep, v, "objects/s", seconds=secs, objects=sum(counts),
                                mb_per_s=sum(counts) * size / secs / 1e6)
                    got.append((c, v))
                    shutil.rmtree(d)  # untimed
                self.rep_line(rep, label, got, "objects/s")

    # -- 4: metadata

    def make_ls_dirs(self):
        """Creates the ls -l directory on each contender (untimed), kvfs first.
        kvfs creates are durable commits, so their number is bounded by
        --ls-budget seconds; the plain directory then gets the same names."""
        a = self.args
        want = a.ls_entries
        count = want
        for c in ("kvfs", "plain"):
            d = os.path.join(self.dirs[c], "lsdir")
            os.mkdir(d)
            t0 = time.perf_counter()
            deadline = time.monotonic() + a.ls_budget if c == "kvfs" else None
            lock = threading.Lock()
            state = {"next": 0, "stop": False}
            errors = []

            def creator():
                try:
                    while True:
                        with lock:
                            i = state["next"]
                            if i >= count or state["stop"]:
                                return
                            if deadline is not None and time.monotonic() >= deadline:
                                state["stop"] = True
                                return
                            state["next"] = i + 1
                        p = os.path.join(d, f"entry-{i:07d}")
                        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
                        LAST_PROGRESS[0] = time.monotonic()
                except OSError as e:
                    with lock:
                        state["stop"] = True
                    errors.append(e)

            # 4 parallel creators in one directory: 16 deadlocked kvfs while
            # this was written (inval_entry sent from a request thread).
            threads = [threading.Thread(target=creator) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            count = state["next"]
            log(f"{c}: created {count} entries for ls -l in {time.perf_counter() - t0:.1f}s (untimed)")
        if count < want:
            self.notes.append(f"ls -l directory: {count} entries instead of {want}: creating them on kvfs took "
                              f"longer than --ls-budget {a.ls_budget:.0f} s")
        self.ls_names = [f"entry-{i:07d}" for i in range(count)]
        return count

    def timed_loop(self, op):
        """Calls op(i) for i = 0, 1, ... until the run time is over.
        Returns (calls per second, calls)."""
        end = time.monotonic() + self.args.run_seconds
        n = 0
        t0 = time.perf_counter()
        while True:
            op(n)
            n += 1
            if time.monotonic() >= end:
                break
        return n / (time.perf_counter() - t0), n

    def meta_create(self, c, rep):
        """Empty files created in a fresh directory until the run time is
        over (at most --max-creates). Returns (rate, paths)."""
        d = os.path.join(self.dirs[c], f"meta-{rep}")
        os.mkdir(d)
        paths = []
        limit = self.args.max_creates
        end = time.monotonic() + self.args.run_seconds
        t0 = time.perf_counter()
        while True:
            p = f"{d}/f{len(paths)}"
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
            paths.append(p)
            if len(paths) >= limit or time.monotonic() >= end:
                break
        return len(paths) / (time.perf_counter() - t0), paths

    def meta_stat(self, c, rep):
        """Stat of existing keys (the ls directory, shuffled), again of the
        keys that first loop reached (now looked up before), then of missing
        keys (a new name every time)."""
        ls = os.path.join(self.dirs[c], "lsdir")
        names = [os.path.join(ls, n) for n in self.ls_names]
        random.Random(rep).shuffle(names)
        count = len(names)
        stat = os.stat
        existing = self.timed_loop(lambda i: stat(names[i % count]))
        seen = names[:max(1, min(count, existing[1]))]
        again = self.timed_loop(lambda i: stat(seen[i % len(seen)]))

        def missing(i):
            try:
                stat(f"{ls}/missing-{rep}-{i}")
            except FileNotFoundError:
                return
            raise RuntimeError(f"{c}: a missing key exists")

        return existing, again, self.timed_loop(missing)

    @staticmethod
    def meta_unlink(paths):
        t0 = time.perf_counter()
        for p in paths:
            os.unlink(p)
        secs = time.perf_counter() - t0
        os.rmdir(os.path.dirname(paths[0]))
        return len(paths) / secs

    def ls_run(self, c):
        d = os.path.join(self.dirs[c], "lsdir")
        env = dict(os.environ, LC_ALL="C")
        t0 = time.perf_counter()
        r = subprocess.run(f"ls -l '{d}' > /dev/null", shell=True, env=env, timeout=1800)
        secs = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"ls -l {d} failed ({r.returncode})")
        return secs

    def bench_meta(self):
        a = self.args
        ops = [("create", "create empty file"), ("stat", "stat existing key"),
               ("stat_again", "stat existing key, looked up before"),
               ("negative_stat", "stat missing key"), ("unlink", "unlink")]
        for op, label in ops:
            self.add_case("metadata", f"meta/{op}", label, "ops/s", ["kvfs", "plain"])
        entries = self.make_ls_dirs()
        ls_case = f"meta/ls_l/{entries}"
        ls_label = f"ls -l {entries} entries"
        self.add_case("metadata", ls_case, ls_label, "entries/s", ["kvfs", "plain"])
        # Each operation's runs together: creates first, unlinks last (ext4
        # allocates inodes slowly for a while after many were freed, which
        # would slow the next creates).
        created = {}
        for rep in range(a.reps):
            got = []
            for c in self.rotated(["kvfs", "plain"], rep):
                v, paths = self.meta_create(c, rep)
                created[(c, rep)] = paths
                self.record("metadata", "meta/create", c, rep, v, "ops/s", ops=len(paths))
                got.append((c, v))
            self.rep_line(rep, "create empty file", got, "ops/s")
        for rep in range(a.reps):
            got_s, got_a, got_n = [], [], []
            for c in self.rotated(["kvfs", "plain"], rep):
                (vs, ns), (va, na), (vn, nn) = self.meta_stat(c, rep)
                self.record("metadata", "meta/stat", c, rep, vs, "ops/s", ops=ns)
                self.record("metadata", "meta/stat_again", c, rep, va, "ops/s", ops=na)
                self.record("metadata", "meta/negative_stat", c, rep, vn, "ops/s", ops=nn)
                got_s.append((c, vs))
                got_a.append((c, va))
                got_n.append((c, vn))
            self.rep_line(rep, "stat existing key", got_s, "ops/s")
            self.rep_line(rep, "stat existing key, looked up before", got_a, "ops/s")
            self.rep_line(rep, "stat missing key", got_n, "ops/s")
        for rep in range(a.reps):
            got = []
            for c in self.rotated(["kvfs", "plain"], rep):
                paths = created.pop((c, rep))
                v = self.meta_unlink(paths)
                self.record("metadata", "meta/unlink", c, rep, v, "ops/s", ops=len(paths))
                got.append((c, v))
            self.rep_line(rep, "unlink", got, "ops/s")
        for rep in range(a.reps):
            got = []
            for c in self.rotated(["kvfs", "plain"], rep):
                secs = self.ls_run(c)
                self.record("metadata", ls_case, c, rep, entries / secs, "entries/s", seconds=secs, entries=entries)
                got.append((c, secs))
            self.rep_line(rep, ls_label, got, "s")

    # -- 5: SGLang file backend

    def sglang_run(self, c, rep):
        size = self.args.sglang_size
        d = os.path.join(self.dirs[c], f"sglang-{rep}")
        os.mkdir(d)
        data = memoryview(WRITE_DATA)[:size]
        buf = bytearray(size)  # preallocated destination, as the engine's host buffer
        end = time.monotonic() + self.args.run_seconds
        n = 0
        t0 = time.perf_counter()
        while True:
            key = f"{d}/key-{n}"
            if os.path.exists(key):  # the backend skips keys it already has
                raise RuntimeError(f"{key} exists")
            tmp = key + ".tmp"
            with open(tmp, "wb", buffering=0) as f:
                off = 0
                while off < size:
                    off += f.write(data[off:])
            os.rename(tmp, key)
            with open(key, "rb", buffering=0) as f:
                view = memoryview(buf)
                off = 0
                while off < size:
                    got = f.readinto(view[off:])
                    if not got:
                        raise RuntimeError(f"{key}: short read")
                    off += got
            n += 1
            if time.monotonic() >= end:
                break
        secs = time.perf_counter() - t0
        if bytes(buf[:4096]) != bytes(data[:4096]):
            raise RuntimeError(f"{c}: read back wrong bytes")
        shutil.rmtree(d)  # untimed
        return n / secs, secs, n

    def bench_sglang(self):
        a = self.args
        case = f"sglang/{fmt_size(a.sglang_size)}"
        label = f"SGLang tmp+rename+read {fmt_size(a.sglang_size)}"
        self.add_case("sglang", case, label, "ops/s", ["kvfs", "plain"])
        for rep in range(a.reps):
            got = []
            for c in self.rotated(["kvfs", "plain"], rep):
                v, secs, n = self.sglang_run(c, rep)
                self.record("sglang", case, c, rep, v, "ops/s", seconds=secs, ops=n)
                got.append((c, v))
            self.rep_line(rep, label, got, "ops/s")

    # -- 6: memory

    def daemon_memory(self):
        out = {"pid": self.daemon_pid}
        try:
            with open(f"/proc/{self.daemon_pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmHWM", "VmRSS"):
                        out[k.lower() + "_kib"] = int(v.split()[0])
        except OSError as e:
            out["error"] = str(e)
        try:
            r = subprocess.run([self.kvfs, "stats", self.mnt, "--json"], capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                out["stats"] = json.loads(r.stdout)
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
        return out

    def mount_bench(self):
        a = self.args
        self.watchdog_paused = True  # no FUSE here, and 1M objects take long
        cmd = [a.mount_bench, "--objects", str(a.index_objects), "--dir", os.path.join(self.root, "mount-bench")]
        log("$ " + " ".join(cmd))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        secs = time.perf_counter() - t0
        line = next((ln for ln in reversed(r.stdout.splitlines()) if ln.startswith("{")), None)
        if r.returncode != 0 or line is None:
            raise RuntimeError(f"kvfs_mount_bench failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        out = json.loads(line)
        out["wall_s"] = round(secs, 1)
        out["command"] = " ".join(cmd)
        return out

    # -- summary

    def summarize(self):
        summary = []
        for c in self.cases:
            med = {k: median(self.values(c["case"], k)) for k in c["contenders"]}
            ratios = {"kvfs/plain": ratio(med.get("kvfs"), med.get("plain"))}
            if "fio" in c["contenders"]:
                ratios["kvfs/fio"] = ratio(med.get("kvfs"), med.get("fio"))
            summary.append(dict(c, medians=med, ratios=ratios,
                                runs={k: self.values(c["case"], k) for k in c["contenders"]}))
        return summary

    def targets(self, summary, index):
        by_case = {s["case"]: s for s in summary}

        def r(case, key):
            s = by_case.get(case)
            return s["ratios"].get(key) if s else None

        t = [
            ("cold O_DIRECT 16MiB x4 readers, kvfs/plain", r("cold/direct/16MiB/r4", "kvfs/plain"), ">=", 0.9),
            ("cold O_DIRECT 16MiB x4 readers, kvfs/fio", r("cold/direct/16MiB/r4", "kvfs/fio"), ">=", 0.8),
            ("durable 256KiB writes x4 writers, kvfs/plain+fsync", r("write/256KiB/w4", "kvfs/plain"), ">=", 1.5),
            ("durable 256KiB writes x4 writers, --durability close, kvfs/plain+fsync",
             r("write_close/256KiB/w4", "kvfs/plain"), ">=", 1.0),
            ("stat of an existing key, kvfs/plain", r("meta/stat", "kvfs/plain"), ">=", 0.5),
            ("stat of an existing key looked up before, kvfs/plain", r("meta/stat_again", "kvfs/plain"), ">=", 0.5),
            ("index bytes per object", index.get("index_bytes_per_object") if index else None, "<=", 200),
        ]
        out = []
        for name, value, op, thr in t:
            if value is None:
                status = "n/a"
            elif op == ">=":
                status = "PASS" if value >= thr else "MISS"
            else:
                status = "PASS" if value <= thr else "MISS"
            out.append({"target": name, "value": value, "op": op, "threshold": thr, "status": status,
                        "fmt": "x" if op == ">=" else ""})
        return out


# --------------------------------------------------------------------------
# Output


def write_markdown(path, res):
    m = res["machine"]
    lines = [
        "# kvfs side-by-side benchmark",
        "",
        f"{m['date']} on {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"kernel {m['kernel']}, {m['os']}; base `{m['base']}` on {m['base_filesystem']} ({m['base_device']}). "
        f"kvfs {m.get('kvfs_commit') or '?'}. {res['config']['reps']} repetitions"
        f"{' (--quick)' if res['config']['quick'] else ''}, medians shown; ratios are of throughput "
        "(above 1: kvfs faster). Total run time " + f"{res['duration_s']:.0f} s.",
        "",
        "| scenario | unit | kvfs | plain | fio | kvfs/plain | kvfs/fio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in res["summary"]:
        med, rat = s["medians"], s["ratios"]
        lines.append(
            f"| {s['label']} | {s['unit']} | {fmt_num(med.get('kvfs'))} | {fmt_num(med.get('plain'))} | "
            f"{fmt_num(med.get('fio'))} | {fmt_num(rat.get('kvfs/plain'), 'x')} | {fmt_num(rat.get('kvfs/fio'), 'x')} |")
    ls = [s for s in res["summary"] if s["case"].startswith("meta/ls_l/")]
    for s in ls:
        n = int(s["case"].rsplit("/", 1)[1])
        secs = {k: (n / v if v else None) for k, v in s["medians"].items()}
        lines += ["", f"`ls -l` of {n} entries: kvfs {fmt_num(secs.get('kvfs'))} s, plain {fmt_num(secs.get('plain'))} s."]
    lines += ["", "## Targets", "", "| target | measured | wanted | result |", "|---|---:|---:|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {fmt_num(t['value'], t['fmt'])} | {t['op']} {t['threshold']} | {t['status']} |")
    d = res.get("daemon") or {}
    idx = res.get("index") or {}
    lines += ["", "## Memory and index", ""]
    if d.get("vmhwm_kib"):
        lines.append(f"- kvfs daemon peak RSS (VmHWM) after the runs: {d['vmhwm_kib'] / 1024:.1f} MiB "
                     f"(VmRSS {d.get('vmrss_kib', 0) / 1024:.1f} MiB)")
    if idx:
        lines.append(f"- kvfs_mount_bench, {idx.get('objects')} objects: {idx.get('index_bytes_per_object')} index "
                     f"bytes/object, rebuild {idx.get('rebuild_cold_s')} s cold / {idx.get('rebuild_warm_s')} s warm "
                     f"({idx.get('scan_threads')} scan threads)")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_chart(res, out_dir):
    gnuplot = shutil.which("gnuplot")
    script = os.path.join(REPO, "bench", "plot.gp")
    if not gnuplot or not os.path.exists(script):
        return None
    png = os.path.join(out_dir, "latest.png")
    fd, dat = tempfile.mkstemp(suffix=".dat", prefix="kvfs-bench-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("# label\tkvfs/plain\tkvfs/fio\n")
            for s in res["summary"]:
                rp, rf = s["ratios"].get("kvfs/plain"), s["ratios"].get("kvfs/fio")
                label = s["label"].replace('"', "'")
                f.write(f"\"{label}\"\t{rp if rp else 'NaN'}\t{rf if rf else 'NaN'}\n")
        r = subprocess.run([gnuplot, "-e", f"datafile='{dat}'; outfile='{png}'", script],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            log(f"gnuplot failed: {r.stderr.strip()[-500:]}")
            return None
    finally:
        os.unlink(dat)
    return png


def print_table(res):
    log("")
    log(f"{'scenario':<36} {'unit':>9} {'kvfs':>9} {'plain':>9} {'fio':>9} {'kvfs/plain':>10} {'kvfs/fio':>9}")
    for s in res["summary"]:
        med, rat = s["medians"], s["ratios"]
        log(f"{s['label']:<36} {s['unit']:>9} {fmt_num(med.get('kvfs')):>9} {fmt_num(med.get('plain')):>9} "
            f"{fmt_num(med.get('fio')):>9} {fmt_num(rat.get('kvfs/plain'), 'x'):>10} {fmt_num(rat.get('kvfs/fio'), 'x'):>9}")
    log("")
    for t in res["targets"]:
        log(f"[{t['status']:>4}] {t['target']}: {fmt_num(t['value'], t['fmt'])} (wanted {t['op']} {t['threshold']})")
    d = res.get("daemon") or {}
    if d.get("vmhwm_kib"):
        log(f"kvfs daemon VmHWM {d['vmhwm_kib'] / 1024:.1f} MiB")
    idx = res.get("index") or {}
    if idx:
        log(f"index: {idx.get('index_bytes_per_object')} bytes/object over {idx.get('objects')} objects, "
            f"rebuild cold {idx.get('rebuild_cold_s')} s, warm {idx.get('rebuild_warm_s')} s")


# --------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description="kvfs vs plain directory vs fio, side by side")
    p.add_argument("--base", default="/var/tmp/kvfs-bench", help="scratch directory (store, plain dir and mountpoint go below it)")
    p.add_argument("--reps", type=int, default=None, help="repetitions of every run (default 3; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run of about a minute")
    p.add_argument("--full-index", action="store_true", help="kvfs_mount_bench with 1,000,000 objects (default 100,000)")
    p.add_argument("--ls-entries", type=int, default=None, help="entries of the ls -l directory (default 100000; 5000 with --quick)")
    p.add_argument("--ls-budget", type=float, default=None,
                   help="at most this many seconds to create the ls -l entries on kvfs (default 150; 20 with --quick)")
    p.add_argument("--run-seconds", type=float, default=None, help="length of each timed write/metadata run (default 1.0; 0.4 with --quick)")
    p.add_argument("--read-mib", type=int, default=None, help="MiB per read data set and contender (default 512; 64 with --quick)")
    p.add_argument("--only", default="cold,hot,write,meta,sglang,index",
                   help="comma-separated scenarios to run: cold,hot,write,meta,sglang,index")
    p.add_argument("--max-creates", type=int, default=20000, help="at most this many files per create-rate run")
    p.add_argument("--hang-timeout", type=float, default=300,
                   help="seconds without progress after which kvfs counts as hung: its daemon is killed so the "
                        "run can end and unmount (default 300)")
    p.add_argument("--no-fio", dest="fio", action="store_false", help="leave fio out")
    p.add_argument("--kvfs", default=os.path.join(REPO, "build", "kvfs"))
    p.add_argument("--mount-bench", default=os.path.join(REPO, "build", "bench", "kvfs_mount_bench"))
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results"), help="results directory")
    a = p.parse_args(argv)
    q = a.quick
    a.reps = a.reps or (2 if q else 3)
    a.ls_entries = a.ls_entries or (5000 if q else 100000)
    a.ls_budget = a.ls_budget if a.ls_budget is not None else (20.0 if q else 150.0)
    a.run_seconds = a.run_seconds or (0.4 if q else 1.0)
    a.read_bytes = (a.read_mib or (64 if q else 512)) * MiB
    a.read_sizes = [1 * MiB, 4 * MiB, 16 * MiB, 32 * MiB]
    a.readers = [1, 4]
    a.writers = [1, 4]
    a.sglang_size = 2 * MiB
    a.index_objects = 1000000 if a.full_index else 100000
    a.only = {s.strip() for s in a.only.split(",") if s.strip()}
    unknown = a.only - {"cold", "hot", "write", "meta", "sglang", "index"}
    if unknown:
        p.error(f"unknown scenario(s) in --only: {', '.join(sorted(unknown))}")
    if a.reps < 1:
        p.error("--reps must be at least 1")
    return a


def main(argv):
    a = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run_bench.py: run as root (it mounts kvfs and drops the page cache)")
    if not os.access(a.kvfs, os.X_OK):
        sys.exit(f"run_bench.py: no kvfs binary at {a.kvfs} (build it first)")
    if "index" in a.only and not os.access(a.mount_bench, os.X_OK):
        sys.exit(f"run_bench.py: no kvfs_mount_bench at {a.mount_bench} (build it first)")
    if a.fio and not shutil.which("fio"):
        log("fio not found: leaving it out (apt-get install fio)")
        a.fio = False

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # Also SIGINT: a shell starts background jobs with it ignored, and then
    # Python would not turn it into KeyboardInterrupt.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    started = time.perf_counter()
    b = Bench(a)
    res = None
    ok = False
    stop_watchdog = threading.Event()
    threading.Thread(target=b.watchdog, args=(a.hang_timeout, stop_watchdog), daemon=True).start()
    try:
        log(f"scratch directory {b.root} ({fs_of(b.root)[1]})")
        machine = machine_info(b.root)
        b.mount()
        log(f"kvfs daemon pid {b.daemon_pid}")
        if "cold" in a.only or "hot" in a.only:
            b.make_read_sets()
        if "cold" in a.only:
            log("== 1. cold sequential reads (page cache dropped before each run)")
            b.bench_cold()
        if "hot" in a.only:
            log("== 2. hot re-reads")
            b.bench_hot()
        if "write" in a.only:
            log("== 3. durable writes")
            b.bench_writes()
        if "meta" in a.only:
            log("== 4. metadata")
            b.bench_meta()
        if "sglang" in a.only:
            log("== 5. SGLang file-backend pattern")
            b.bench_sglang()
        daemon = b.daemon_memory()
        index = None
        if "index" in a.only:
            log("== 6. index size and rebuild (kvfs_mount_bench)")
            index = b.mount_bench()
        summary = b.summarize()
        notes = [
            "GB/s is 10^9 bytes per second. Every run of a case alternates the contenders; the order rotates "
            "from one repetition to the next.",
            "Cold runs: `sync; echo 3 > /proc/sys/vm/drop_caches` before each run. Readers are separate processes "
            "released together; each reads its share of the objects whole, in calls of min(object, 16 MiB) "
            "(at least 1 MiB) into an mmap'd page-aligned buffer with os.preadv.",
            "fio: " + (getattr(b, "fio_example", "") or "not run") + ". numjobs=R is written as R jobs, each over "
            "its share of the same plain files, so every byte is read once, as with the Python readers.",
            "kvfs/fio is given for O_DIRECT reads only (fio runs with --direct=1).",
            "Stat of an existing key cycles over the ls directory's names: with many names (the default run) a "
            "name often comes back after kvfs's entry timeout (--entry-timeout, 60 s) or after the kernel dropped "
            "it, so many kvfs stats are a LOOKUP; with few (--quick) the kernel answers most of them from its caches. "
            "'Looked up before' then stats, in the same process right after, the names that first loop reached.",
            "Hot runs: buffered reads with nothing dropped, after one untimed warm-up pass per data set. kvfs is "
            "mounted with its defaults (the page cache on), so its hot reads are served by the kernel's cache.",
            "Durable writes: create + write + close per object until the run time is over; the plain file gets "
            "os.fsync before close (no fsync of the directory); kvfs commits at close.",
            f"Metadata: one process. Create rate: empty files in a fresh directory (at most {a.max_creates} a run); "
            "unlink rate: those same files, after all the stat runs. "
            "Stat: existing keys of the ls directory in a shuffled order; negative stat: a new missing name each "
            "time. The plain directory gets no fsync on create. Python's per-call cost is in both numbers.",
            f"ls -l: `LC_ALL=C ls -l DIR > /dev/null` of a directory of {len(getattr(b, 'ls_names', []))} empty "
            "files, created once per contender with 4 parallel creators (untimed; kvfs first, for at most "
            f"{a.ls_budget:.0f} s).",
            "SGLang: exists(key)? -> write key.tmp -> rename over key -> readinto a preallocated buffer, one "
            "process; the plain directory gets no fsync (as the SGLang file backend).",
        ] + b.notes
        res = {
            "machine": machine,
            "config": {
                "quick": a.quick, "reps": a.reps, "run_seconds": a.run_seconds, "read_mib_per_set": a.read_bytes // MiB,
                "read_sizes_mib": [s // MiB for s in a.read_sizes], "readers": a.readers, "writers": a.writers,
                "ls_entries_wanted": a.ls_entries, "ls_entries": len(getattr(b, "ls_names", [])),
                "ls_budget_s": a.ls_budget, "sglang_size": a.sglang_size, "index_objects": a.index_objects,
                "scenarios": sorted(a.only), "fio": a.fio,
                "mount": f"kvfs mount MNT --store STORE --capacity 40G --min-free 1G",
            },
            "runs": b.runs,
            "summary": summary,
            "daemon": daemon,
            "index": index,
            "notes": notes,
        }
        res["targets"] = b.targets(summary, index)
        ok = True
    finally:
        stop_watchdog.set()
        clean = b.cleanup()
        if not clean:
            ok = False
        if b.watchdog_fired:
            log("ERROR: the run was stopped because kvfs hung (see above)")
    res["duration_s"] = round(time.perf_counter() - started, 1)
    os.makedirs(a.out, exist_ok=True)
    jpath = os.path.join(a.out, "latest.json")
    with open(jpath, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    mpath = os.path.join(a.out, "latest.md")
    write_markdown(mpath, res)
    png = write_chart(res, a.out)
    print_table(res)
    log("")
    log(f"wrote {jpath}, {mpath}" + (f", {png}" if png else " (no chart: gnuplot missing)"))
    log(f"total {res['duration_s']:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit("interrupted")
