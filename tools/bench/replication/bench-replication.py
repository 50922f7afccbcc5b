#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Replication benchmark: a primary and a read replica (real l3kv binaries) under a PUT flood.

Starts a primary (2 workers) and a replica of it (1 worker, so the three processes of each
node share the machine's cores), fills --keys keys of --bytes bytes, then for --rounds
rounds runs a wrk PUT flood (--conns connections, --duration s) on the primary while
 * a sampler reads the replica's /metrics replication every 20 ms (lag_records, lag_ms),
 * a probe writes a fresh key on the primary every 50 ms and polls the replica until the
   document is there (write -> visible on the replica, 1 ms polls),
and prints per round: the primary's PUT rate, the replica's apply rate over the same
window (applied_total delta / time until it caught up again) and their ratio, lag p50/p99
in records, probe latency p50/p99, and how long the replica took to catch up after the
flood. Figures, not assertions.

usage: bench-replication.py [--l3kv BIN] [--keys N] [--bytes B] [--rounds R] [--duration S]
                            [--conns C]
Exit code 0 when the run completed; 77 when wrk is missing.
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib as B  # noqa: E402


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def repl(s):
    return requests.get(s.url("/metrics"), timeout=5).json()["replication"]


def sampler(r, stop, out):
    while not stop.is_set():
        try:
            m = repl(r)
            out.append((m["lag_records"], m["lag_ms"]))
        except requests.RequestException:
            pass
        time.sleep(0.02)


def prober(p, r, stop, out):
    n = 0
    with requests.Session() as sp, requests.Session() as sr:
        while not stop.is_set():
            n += 1
            k = "/kv/probe-%d" % n
            sp.put(p.url(k), data='{"n":%d}' % n, timeout=10)
            t = time.monotonic()
            while time.monotonic() - t < 10:
                if sr.get(r.url(k), timeout=10).status_code == 200:
                    out.append(time.monotonic() - t)
                    break
                time.sleep(0.001)
            time.sleep(0.05)


def caught_up(r, timeout=120):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if repl(r)["lag_records"] == 0:
            return time.monotonic() - t
        time.sleep(0.01)
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", "l3kv"))
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--bytes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=32)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        print("bench-replication: wrk is needed (tools/deps-debian.sh --all)")
        return 77
    binary = B.resolve_bin(a.l3kv)
    tmp = tempfile.mkdtemp(prefix="l3kv-bench-repl-")
    p = B.Server(binary, workers=2, log_level="warn")
    r = None
    try:
        put = B.write_lua(tmp, B.lua_keyed("PUT", a.keys, a.bytes))
        B.wrk(p.url("/"), max(3, a.keys // 20000), threads=2, conns=8, lua_path=put)
        t0 = time.monotonic()
        r = B.Server(binary, workers=1, log_level="info",
                     config={"replication": {"primary": p.base, "retry_ms": 100}})
        while repl(r)["state"] != "following" or repl(r)["lag_records"] != 0:
            time.sleep(0.05)
        print("bootstrap of %d keys (%d-byte documents): following after %.2f s" %
              (a.keys, a.bytes, time.monotonic() - t0))
        for rnd in range(a.rounds):
            stop, lags, probes = threading.Event(), [], []
            ths = [threading.Thread(target=sampler, args=(r, stop, lags)),
                   threading.Thread(target=prober, args=(p, r, stop, probes))]
            a0 = repl(r)["applied_total"]
            t = time.monotonic()
            for th in ths:
                th.start()
            w = B.wrk(p.url("/"), a.duration, threads=2, conns=a.conns, lua_path=put)
            stop.set()
            for th in ths:
                th.join()
            catch = caught_up(r)
            dt = time.monotonic() - t
            applied = repl(r)["applied_total"] - a0
            rate = applied / dt if dt > 0 else 0
            recs = [x for x, _ in lags]
            msl = [y for _, y in lags]
            print("round %d: primary PUT %.0f req/s; replica applied %.0f changes/s (%.2fx of the writes over "
                  "the flood + catch-up); lag records p50 %s p99 %s, lag ms p50 %s p99 %s; write->replica p50 %s p99 %s (%d probes); "
                  "caught up %.2f s after the flood" %
                  (rnd + 1, w["rps"], rate, (applied / dt) / w["rps"] if w["rps"] else float("nan"),
                   pct(recs, 0.5), pct(recs, 0.99), pct(msl, 0.5), pct(msl, 0.99), B.fmt_s(pct(probes, 0.5)), B.fmt_s(pct(probes, 0.99)),
                   len(probes), catch))
        print("primary keys %s, replica keys %s" % (p.metrics()["store"]["keys"], r.metrics()["store"]["keys"]))
    finally:
        if r is not None:
            r.stop()
            r.remove()
        p.stop()
        p.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
