#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Durability benchmark for l3kv (figures: fsync / buffered PUT throughput, recovery
time per GB of WAL and per million records, steady-state WAL disk use under updates).

Three parts, each against the real l3kv binary on a free loopback port with a temporary
data directory:

1. throughput: wrk PUTs (64 connections, ~100-byte JSON documents on 1,000 keys) against a
   server in storage.durability "buffered" and one in "fsync", interleaved for --rounds
   rounds, best round of each; prints req/s, p50/p99 and fsync / buffered (target >= 0.5,
   PASS or MISS - a figure, not an assertion).
2. recovery: PUTs of ~1 KB documents on 100,000 keys until the WAL holds --fill-mb MB
   (no checkpoint in between), then SIGTERM and restart (graceful), then SIGKILL of every
   process and restart (crash). For each restart: time from exec to the first 200 on
   /kv/health and the server's own "recovered in X ms" figure, scaled to seconds per GB of
   WAL and per million records.
3. steady state: an update loop (wrk PUTs on 1,000 keys) for --steady seconds with a small
   storage.checkpoint_bytes; the data directory is summed every second. Prints max / final
   bytes, the checkpoints seen and whether the size stays bounded (max over the second half
   <= 1.25 x max over the first half).

usage: bench-durability.py [--l3kv BIN] [--long] [--duration S] [--rounds R] [--fill-mb MB]
                           [--steady S] [--checkpoint-mb MB] [--workers N]
Defaults (short, under 2 minutes): 5 s x 2 rounds, 128 MB fill, 60 s steady state.
--long: 15 s x 3 rounds, 1024 MB fill, 600 s steady state.
Exit code 0 when the run completed; 77 when wrk is missing.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib as B  # noqa: E402


def throughput(a, tmp):
    lua = B.write_lua(tmp, B.lua_keyed("PUT", 1000, 100, prefix="t"))
    servers = {}
    try:
        for mode in ("buffered", "fsync"):
            servers[mode] = B.Server(a.l3kv, workers=a.workers, log_level="warn",
                                     config={"storage": {"durability": mode}})
        best = {}
        for _ in range(a.rounds):
            for mode in ("buffered", "fsync"):
                r = B.wrk(servers[mode].url("/"), a.duration, threads=2, conns=64, lua_path=lua)
                if r["non2xx"] or r["errors"]:
                    print("    (%s: wrk non-2xx %d %s)" % (mode, r["non2xx"], r["errors"] or ""))
                if mode not in best or r["rps"] > best[mode]["rps"]:
                    best[mode] = r
    finally:
        for s in servers.values():
            s.stop()
            s.remove()
    b, f = best["buffered"], best["fsync"]
    ratio = f["rps"] / (b["rps"] or 1.0)
    print("\n[1] PUT throughput, wrk -t2 -c64 -d%ds, ~100-byte documents on 1,000 keys, %d workers, "
          "best of %d interleaved rounds" % (a.duration, a.workers, a.rounds))
    print("%-10s %12s %10s %10s %10s" % ("mode", "req/s", "p50", "p99", "ratio"))
    for mode, r in (("buffered", b), ("fsync", f)):
        print("%-10s %12.0f %10s %10s %10.2f" % (mode, r["rps"], B.fmt_s(r["p50"]), B.fmt_s(r["p99"]),
                                                 r["rps"] / (b["rps"] or 1.0)))
    print("fsync / buffered = %.2f (target >= 0.50): %s" % (ratio, "PASS" if ratio >= 0.5 else "MISS"))
    return {"buffered": b, "fsync": f, "ratio": ratio}


def recovery(a, tmp):
    lua = B.write_lua(tmp, B.lua_keyed("PUT", 100000, 1000, prefix="r"))
    cfg = {"storage": {"checkpoint_bytes": 1 << 50}}  # replay the whole WAL: no checkpoint
    s = B.Server(a.l3kv, workers=a.workers, config=cfg, log_level="info")
    target = a.fill_mb << 20
    t0 = time.monotonic()
    w = subprocess.Popen(B.wrk_cmd(s.url("/"), a.fill_limit, threads=2, conns=64, lua_path=lua),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while w.poll() is None and B.wal_bytes(s.data) < target:
            time.sleep(0.2)
    finally:
        if w.poll() is None:
            w.send_signal(2)  # SIGINT: wrk stops and prints what it did
        out = w.communicate(timeout=30)[0]
    fill_s = time.monotonic() - t0
    filled = B.parse_wrk(out)
    rows = []
    live = [s]
    try:
        rc = s.stop()
        if rc != 0:
            print("    (graceful stop exited %s)" % rc)
        wal = B.wal_bytes(s.data)
        for kind in ("graceful (SIGTERM)", "crash (SIGKILL all)"):
            s2 = B.Server(a.l3kv, workers=a.workers, config=cfg, reuse_dir=s.dir, log_level="info")
            live.append(s2)
            rows.append((kind, s2.ready_s, s2.recovered_ms()))
            if kind.startswith("graceful"):
                s2.kill_all()  # the next restart recovers from a crash of this instance
    finally:
        for x in live:
            x.stop()
        s.remove()
    print("\n[2] recovery: %d PUTs of ~1 KB on 100,000 keys in %.1f s (%.0f req/s) -> WAL %s on disk"
          % (filled["requests"], fill_s, filled["rps"], B.fmt_bytes(wal)))
    print("%-22s %12s %14s %10s %12s %12s %14s" % ("restart", "records", "recovered in", "to health",
                                                    "s/GB (log)", "s/GB (ready)", "s/M records"))
    res = []
    for kind, ready, rec in rows:
        ms, nrec, _segs = rec if rec else (float("nan"), 0, 0)
        gb = wal / 1e9
        per_gb = (ms / 1000.0) / gb if gb else float("nan")
        per_gb_ready = ready / gb if gb else float("nan")
        per_m = (ms / 1000.0) / (nrec / 1e6) if nrec else float("nan")
        print("%-22s %12d %11.1f ms %7.0f ms %12.2f %12.2f %14.2f" % (kind, nrec, ms, ready * 1000, per_gb,
                                                                       per_gb_ready, per_m))
        res.append({"kind": kind, "ms": ms, "ready_s": ready, "records": nrec, "per_gb": per_gb, "per_m": per_m})
    print("(\"recovered in\": the server's snapshot + WAL replay; \"to health\": exec until /kv/health answers)")
    return {"wal": wal, "rows": res}


def steady(a, tmp):
    lua = B.write_lua(tmp, B.lua_keyed("PUT", 1000, 200, prefix="s"))
    ck = a.checkpoint_mb << 20
    s = B.Server(a.l3kv, workers=a.workers, log_level="info", config={"storage": {"checkpoint_bytes": ck}})
    samples = []
    w = subprocess.Popen(B.wrk_cmd(s.url("/"), a.steady, threads=2, conns=16, lua_path=lua),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    t0 = time.monotonic()
    try:
        nxt = t0
        while w.poll() is None:
            samples.append((time.monotonic() - t0,) + B.dir_usage(s.data))
            nxt += 1.0
            time.sleep(max(0.0, nxt - time.monotonic()))
        out = w.communicate(timeout=30)[0]
        samples.append((time.monotonic() - t0,) + B.dir_usage(s.data))
        log = s.logtext()
    finally:
        s.stop()
        s.remove()
    r = B.parse_wrk(out)
    ckpts = len(re.findall(r"checkpoint done", log))
    sizes = [x[1] for x in samples]
    allocs = [x[2] for x in samples]
    half = len(sizes) // 2
    m1, m2 = max(sizes[:half] or [0]), max(sizes[half:] or [0])
    bounded = m2 <= 1.25 * m1 + (1 << 20)
    print("\n[3] steady state: %.0f s update loop (wrk -c16 PUT ~200 B on 1,000 keys), checkpoint_bytes %s"
          % (a.steady, B.fmt_bytes(ck)))
    print("updates %d (%.0f/s), ~%s of WAL records written, checkpoints done %d"
          % (r["requests"], r["rps"], B.fmt_bytes(r["requests"] * 280), ckpts))
    print("data dir bytes: max %s, final %s; allocated: max %s, final %s; files max %d"
          % (B.fmt_bytes(max(sizes)), B.fmt_bytes(sizes[-1]), B.fmt_bytes(max(allocs)), B.fmt_bytes(allocs[-1]),
             max(x[3] for x in samples)))
    print("max over 1st half %s, over 2nd half %s: %s"
          % (B.fmt_bytes(m1), B.fmt_bytes(m2), "bounded" if bounded else "GROWING"))
    return {"max": max(sizes), "final": sizes[-1], "max_alloc": max(allocs), "ckpts": ckpts, "bounded": bounded,
            "updates": r["requests"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", "l3kv"))
    ap.add_argument("--long", action="store_true", help="longer runs: 15 s x 3 rounds, 1 GB fill, 10 min steady")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--fill-mb", type=int)
    ap.add_argument("--steady", type=int)
    ap.add_argument("--checkpoint-mb", type=int, default=16)
    ap.add_argument("--only", choices=("throughput", "recovery", "steady"))
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output is a file or pipe
    a.duration = a.duration or (15 if a.long else 5)
    a.rounds = a.rounds or (3 if a.long else 2)
    a.fill_mb = a.fill_mb or (1024 if a.long else 128)
    a.fill_limit = 600 if a.long else 25  # seconds: the fill stops here even if short of --fill-mb
    a.steady = a.steady or (600 if a.long else 60)
    a.l3kv = B.resolve_bin(a.l3kv)
    if not shutil.which("wrk"):
        print("wrk not installed: skipping")
        return 77
    tmp = tempfile.mkdtemp(prefix="l3kv-bench-dur-")
    t0 = time.monotonic()
    print("l3kv durability benchmark (%s mode; figures, not assertions; the machine is shared, compare ratios)"
          % ("long" if a.long else "short"))
    try:
        if a.only in (None, "throughput"):
            throughput(a, tmp)
        if a.only in (None, "recovery"):
            recovery(a, tmp)
        if a.only in (None, "steady"):
            steady(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\ntotal %.0f s" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
