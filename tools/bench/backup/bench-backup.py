#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Online backup benchmark: PUT latency while GET /admin/backup streams, and backup MB/s.

Starts the real l3kv binary, fills it with --mib MiB of ~4 KiB documents (wrk, every key
written once), then alternates for --rounds rounds: a wrk PUT run (--conns connections,
random existing keys, --duration s) with no backup, and the same run while backups stream
back to back (curl to /dev/null, restarted until wrk ends). Prints each round's p50/p99, the
median p99 with and without a backup, their ratio (target <= 2.0: PASS or MISS, a figure,
not an assertion), and the backup throughput alone and under the PUT load (MB/s of the
stream, the file verified once with l3kv-inspect).

--rate N streams the backups under load with ?rate_mib=N (the server's throttle; default 0 =
unthrottled; the backup alone is always unthrottled). --sink null drops the backups under
load instead of writing them to a file on the server's disk (whose writeback then competes
with the WAL's).

usage: bench-backup.py [--l3kv BIN] [--inspect BIN] [--mib M] [--rounds R] [--duration S]
                       [--conns C] [--rate N] [--sink file|null]
Exit code 0 when the run completed; 77 when wrk or curl is missing.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib as B  # noqa: E402

DOC = 4096


def fill_lua(nkeys):
    pad = DOC - 40
    return """-- fill: thread t writes keys t, t+T, t+2T, ... once, then repeats
""" + B.LUA_THREAD_IDS + """local n = 0
local pad = string.rep("f", %d)
local hdr = {["Content-Type"] = "application/json"}
function request()
    local k = (n * 4 + tid) %% %d
    n = n + 1
    return wrk.format("PUT", "/kv/k" .. (k + 1), hdr, '{"n":' .. n .. ',"pad":"' .. pad .. '"}')
end
""" % (pad, nkeys)


def one_backup(url, out, rate=0):
    """One backup into the file out, or counted and dropped when out is None."""
    t = time.monotonic()
    q = "?rate_mib=%d" % rate
    p = subprocess.run(["curl", "-sf", "-o", out or "/dev/null", "-w", "%{size_download}", url + "/admin/backup" + q],
                       timeout=3600, capture_output=True, text=True)
    dt = time.monotonic() - t
    return (int(p.stdout or 0) if p.returncode == 0 else 0), dt


def backups_during(url, out, stop, res, rate):
    while not stop.is_set():
        n, dt = one_backup(url, out, rate)
        if n == 0:
            break
        res.append((n, dt))


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", "l3kv"))
    ap.add_argument("--inspect", default=os.environ.get("L3KV_INSPECT", "l3kv-inspect"))
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--rate", type=int, default=0, help="rate_mib of the backups under load (0 = unthrottled)")
    ap.add_argument("--sink", choices=("file", "null"), default="file",
                    help="where the backups under load go: a file next to the server's data (its writeback "
                         "shares the disk with the WAL) or /dev/null (a backup taken to another machine)")
    a = ap.parse_args()
    if not shutil.which("wrk") or not shutil.which("curl"):
        print("bench-backup: wrk and curl are needed (tools/deps-debian.sh)")
        return 77
    nkeys = a.mib * (1 << 20) // DOC
    tmp = tempfile.mkdtemp(prefix="l3kv-bench-backup-")
    s = B.Server(B.resolve_bin(a.l3kv), workers=2,
                 config={"storage": {"arena_bytes": max(1 << 30, a.mib * 3 << 20),
                                     "checkpoint_bytes": 64 << 30}, "log": {"level": "warn"}})
    try:
        fl = B.write_lua(tmp, fill_lua(nkeys))
        fill_s = max(5, nkeys // 8000)
        B.wrk(s.url("/"), fill_s, threads=4, conns=4, lua_path=fl)
        out = os.path.join(tmp, "b.snap")
        size, alone_s = one_backup(s.url(""), out, 0)
        ins = subprocess.run([B.resolve_bin(a.inspect), "wal", out], capture_output=True, text=True)
        print("backup: %s in %.2f s alone: %.1f MB/s; inspector: %s" %
              (B.fmt_bytes(size), alone_s, size / alone_s / 1e6,
               ins.stdout.strip().splitlines()[-1] if ins.stdout else ins.returncode))
        put = B.write_lua(tmp, B.lua_keyed("PUT", nkeys, 1024))
        p99 = {"none": [], "backup": []}
        under = []
        for r in range(a.rounds):
            for mode in (("none", "backup") if r % 2 == 0 else ("backup", "none")):
                stop, res = threading.Event(), []
                th = None
                if mode == "backup":
                    th = threading.Thread(target=backups_during,
                                          args=(s.url(""), out if a.sink == "file" else None, stop, res, a.rate))
                    th.start()
                    time.sleep(0.2)
                w = B.wrk(s.url("/"), a.duration, threads=2, conns=a.conns, lua_path=put)
                if th:
                    stop.set()
                    th.join()
                    under += res
                p99[mode].append(w["p99"])
                print("round %d %-6s PUT %8.0f req/s p50 %s p99 %s%s" %
                      (r + 1, mode, w["rps"], B.fmt_s(w["p50"]), B.fmt_s(w["p99"]),
                       "" if not res else "  (%d backup(s) streamed, %.1f MB/s)" %
                       (len(res), sum(n for n, _ in res) / sum(t for _, t in res) / 1e6)))
        m0, m1 = statistics.median(p99["none"]), statistics.median(p99["backup"])
        ratio = m1 / m0 if m0 > 0 else float("nan")
        print("PUT p99 median: %s without, %s while a backup streams: ratio %.2f (target <= 2.0: %s)" %
              (B.fmt_s(m0), B.fmt_s(m1), ratio, "PASS" if ratio <= 2.0 else "MISS"))
        if under:
            print("backup under PUT load: %.1f MB/s over %d backup(s)" %
                  (sum(n for n, _ in under) / sum(t for _, t in under) / 1e6, len(under)))
    finally:
        s.stop()
        s.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
