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

With --modes buffered,replicated (the default) there are two pairs, the second primary in
storage.durability "replicated" (each write waits for the replica's acknowledgement), rounds
alternated between them, and the PUT rate and p99 of replicated are given against buffered.

usage: bench-replication.py [--l3kv BIN] [--keys N] [--bytes B] [--rounds R] [--duration S]
                            [--conns C] [--modes buffered,replicated]
Exit code 0 when the run completed; 77 when wrk is missing.
"""
import argparse
import os
import shutil
import statistics
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


class Pair:
    """A primary (2 workers, storage.durability `durability`) and a replica of it (1 worker)."""

    def __init__(self, binary, a, put, durability):
        self.name = durability
        self.r = None
        # filled in buffered mode (replicated writes would wait for a replica that is not there yet)
        self.p = B.Server(binary, workers=2, log_level="warn")
        B.wrk(self.p.url("/"), max(3, a.keys // 20000), threads=2, conns=8, lua_path=put)
        if durability != "buffered":
            self.p.stop()
            self.p = B.Server(binary, workers=2, log_level="warn", reuse_dir=self.p.dir,
                              config={"storage": {"durability": durability}})
        t0 = time.monotonic()
        self.r = B.Server(binary, workers=1, log_level="info",
                          config={"replication": {"primary": self.p.base, "retry_ms": 100}})
        while repl(self.r)["state"] != "following" or repl(self.r)["lag_records"] != 0:
            time.sleep(0.05)
        print("%s: bootstrap of %d keys (%d-byte documents): following after %.2f s" %
              (durability, a.keys, a.bytes, time.monotonic() - t0))
        self.rps, self.p99 = [], []

    def round(self, a, put, rnd):
        p, r = self.p, self.r
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
        recs = [x for x, _ in lags]
        msl = [y for _, y in lags]
        self.rps.append(w["rps"])
        self.p99.append(w["p99"])
        print("round %d %-10s: primary PUT %.0f req/s p99 %s; replica applied %.0f changes/s (%.2fx of the writes "
              "over the flood + catch-up); lag records p50 %s p99 %s, lag ms p50 %s p99 %s; write->replica p50 %s "
              "p99 %s (%d probes); caught up %.2f s after the flood" %
              (rnd + 1, self.name, w["rps"], B.fmt_s(w["p99"]), applied / dt,
               (applied / dt) / w["rps"] if w["rps"] else float("nan"), pct(recs, 0.5), pct(recs, 0.99),
               pct(msl, 0.5), pct(msl, 0.99), B.fmt_s(pct(probes, 0.5)), B.fmt_s(pct(probes, 0.99)), len(probes),
               catch))

    def close(self):
        for s in (self.r, self.p):
            if s is not None:
                s.stop()
                s.remove()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", "l3kv"))
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--bytes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--modes", default="buffered,replicated",
                    help="the primaries' storage.durability, one pair each, rounds alternated")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        print("bench-replication: wrk is needed (tools/deps-debian.sh --all)")
        return 77
    binary = B.resolve_bin(a.l3kv)
    tmp = tempfile.mkdtemp(prefix="l3kv-bench-repl-")
    pairs = []
    try:
        put = B.write_lua(tmp, B.lua_keyed("PUT", a.keys, a.bytes))
        for m in a.modes.split(","):
            pairs.append(Pair(binary, a, put, m))
        for rnd in range(a.rounds):
            for pr in (pairs if rnd % 2 == 0 else pairs[::-1]):
                pr.round(a, put, rnd)
        for pr in pairs:
            pk, rk = pr.p.metrics()["store"]["keys"], pr.r.metrics()["store"]["keys"]
            print("%s: primary keys %s, replica keys %s; PUT median %.0f req/s, p99 median %s" %
                  (pr.name, pk, rk, statistics.median(pr.rps), B.fmt_s(statistics.median(pr.p99))))
        if len(pairs) == 2:
            b, x = pairs
            print("%s / %s: PUT req/s %.2fx, p99 %.2fx" %
                  (x.name, b.name, statistics.median(x.rps) / statistics.median(b.rps),
                   statistics.median(x.p99) / statistics.median(b.p99)))
    finally:
        for pr in pairs:
            pr.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
