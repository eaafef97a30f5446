#!/usr/bin/env python3
"""Runs stress-ng's file-system stressors against a scratch kvfs mount and a
plain directory on the same filesystem, and prints each stressor's rate on
both and their ratio. stress-ng (Debian's package) stands in here for
fsstress, which Debian does not package: it exercises the same system calls
(create, write, truncate, fallocate and hole punching, rename, link,
symlink, mknod, directories, locks, fsync, sync_file_range, getdents,
utime, chmod, chown) from several processes at once, and checks what it
reads back with --verify.

    python3 packaging/run-stress-ng.py [--instances 2] [--seconds 4]
        [--base /var/tmp/kvfs-stress] [--kvfs build/kvfs]

Needs root (mounting) and stress-ng (installed with apt-get when missing).
A stressor that reports a failure on the mount (stress-ng's "fail:" lines,
a verify error, exit code 1 or 2) makes the run exit 1, with its lines
printed.
Stressors that skip themselves on both sides (binderfs, verity,
fiemap ...) are listed as skipped. About ten minutes: 49 stressors, each
run for --seconds on each side, plus their set-up and clean-up.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC = re.compile(r"stress-ng: metrc: \[\d+\] (\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def ensure_stress_ng():
    if shutil.which("stress-ng"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-qq", "stress-ng"], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "stress-ng"]):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0 and \
                shutil.which("stress-ng"):
            return
    sys.exit("run-stress-ng: stress-ng is not installed and apt-get could not install it")


def run_side(path, args):
    """stress-ng over `path`; returns ({stressor: (bogo ops, seconds)}, failure lines, exit code)."""
    cmd = ["stress-ng", "--class", "filesystem", "--sequential", str(args.instances), "--timeout",
           f"{args.seconds}s", "--temp-path", path, "--metrics-brief", "--verify"]
    p = subprocess.run(cmd, cwd=path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rates, failures = {}, []
    for line in p.stdout.splitlines():
        m = METRIC.match(line)
        if m:
            rates[m.group(1)] = (int(m.group(2)), float(m.group(3)))
        elif " fail: " in line or "verification" in line.lower() and "fail" in line.lower():
            failures.append(line)
    return rates, failures, p.returncode, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--base", default="/var/tmp/kvfs-stress")
    ap.add_argument("--kvfs", default=os.path.join(REPO, "build", "kvfs"))
    args = ap.parse_args()
    if not os.access(args.kvfs, os.X_OK):
        sys.exit(f"run-stress-ng: no kvfs binary at {args.kvfs} (build it first: packaging/build.sh)")
    ensure_stress_ng()
    shutil.rmtree(args.base, ignore_errors=True)
    mnt, store, plain = (os.path.join(args.base, d) for d in ("mnt", "store", "plain"))
    for d in (mnt, store, plain):
        os.makedirs(d)
    subprocess.run([args.kvfs, "mount", mnt, "--store", store, "--capacity", "8G"], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        kv, kv_fail, kv_rc, kv_log = run_side(mnt, args)
    finally:
        subprocess.run(["fusermount3", "-u", mnt])
    pl, pl_fail, pl_rc, _ = run_side(plain, args)
    shutil.rmtree(args.base, ignore_errors=True)

    print(f"stress-ng --class filesystem, {args.instances} instances, {args.seconds} s per stressor (bogo ops/s, real time)")
    print(f"{'stressor':14s} {'kvfs':>12s} {'plain':>12s} {'kvfs/plain':>10s}")
    skipped = []
    for name in sorted(set(kv) | set(pl)):
        k_ops, k_s = kv.get(name, (0, 0.0))
        p_ops, p_s = pl.get(name, (0, 0.0))
        if k_ops == 0 and p_ops == 0:
            skipped.append(name)
            continue
        k_rate = k_ops / k_s if k_s else 0.0
        p_rate = p_ops / p_s if p_s else 0.0
        ratio = f"{k_rate / p_rate:.2f}" if p_rate else "-"
        print(f"{name:14s} {k_rate:12.1f} {p_rate:12.1f} {ratio:>10s}")
    if skipped:
        print("no operations on either side:", " ".join(skipped))
    # stress-ng's exit codes: 2 for a failed stressor, 1 for its own errors;
    # 3 and 4 only say that some stressors skipped themselves (binderfs,
    # link and xattr here, on the plain directory too).
    bad = kv_rc not in (0, 3, 4) or kv_fail
    if bad:
        print(f"kvfs side: exit {kv_rc}", file=sys.stderr)
        for line in kv_fail:
            print(line, file=sys.stderr)
        print("---- end of the kvfs side's output ----", file=sys.stderr)
        print("\n".join(kv_log.splitlines()[-30:]), file=sys.stderr)
    if pl_rc != 0 or pl_fail:
        print(f"(the plain directory's side also reported: exit {pl_rc}, {len(pl_fail)} failure lines)", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
