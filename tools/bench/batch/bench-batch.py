#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""POST /batch benchmark for l3kv: the server's CPU time per PUT when 100 PUTs travel as
one batch ({"ops":[...]}, and as one atomic transaction) against 100 single PUTs on one
keep-alive connection, interleaved for --rounds rounds in the same run against one server.
Server time is the CPU time (user + system, from /proc/<pid>/task/*/schedstat, ns) of every
process of the service - supervisor, workers, WAL writer - over the round, divided by the
PUTs sent; the client's own time is not counted. Prints each form's best round in us per
PUT, the ratio single / batch (target >= 5: PASS or MISS, a figure, not an assertion) and
the wall-clock time per PUT seen by the client.

usage: bench-batch.py [--l3kv BIN] [--rounds R] [--puts N] [--workers N]
Exit code 0 when the run completed.
"""
import argparse
import http.client
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib as B  # noqa: E402
import time  # noqa: E402


def doc(i):
    return {"i": i, "name": "user-%d" % i, "tags": ["a", "b"], "score": i * 7 % 100}


def singles(conn, n, off):
    for i in range(n):
        conn.request("PUT", "/kv/bench-%d" % ((off + i) % 1000), json.dumps(doc(i)),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit("PUT answered %d" % r.status)


def batches(conn, n, off, atomic):
    for b in range(n // 100):
        ops = [{"op": "put", "key": "bench-%d" % ((off + b * 100 + i) % 1000), "doc": doc(i)} for i in range(100)]
        body = json.dumps({"atomic": True, "success": ops} if atomic else {"ops": ops})
        conn.request("POST", "/batch", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit("POST /batch answered %d: %s" % (r.status, data[:300]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN") or B.resolve_bin("l3kv"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--puts", type=int, default=3000, help="PUTs per form and round (a multiple of 100)")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    srv = B.Server(a.l3kv, workers=a.workers, log_level="warn")
    forms = ["single", "batch", "atomic"]
    best = {f: None for f in forms}
    wall = {f: None for f in forms}
    try:
        pids = [srv.proc.pid] + B.descendants(srv.proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        singles(conn, 300, 0)  # warm up: the keys exist, the connection is open
        batches(conn, 300, 0, False)
        for rnd in range(a.rounds):
            for f in forms:
                t0, c0 = time.perf_counter(), B.cpu_ns(pids)
                if f == "single":
                    singles(conn, a.puts, rnd * 7)
                else:
                    batches(conn, a.puts, rnd * 7, f == "atomic")
                us = (B.cpu_ns(pids) - c0) / 1e3 / a.puts
                w = (time.perf_counter() - t0) * 1e6 / a.puts
                best[f] = us if best[f] is None else min(best[f], us)
                wall[f] = w if wall[f] is None else min(wall[f], w)
        conn.close()
    finally:
        srv.stop()
        srv.remove()
    print("bench-batch: %d PUTs per form and round, best of %d rounds, %d worker(s)" % (a.puts, a.rounds, a.workers))
    for f, label in (("single", "100 single keep-alive PUTs"), ("batch", "one POST /batch of 100 PUTs"),
                     ("atomic", "one atomic POST /batch of 100 PUTs")):
        print("  %-36s server %6.2f us/PUT   client wall %6.2f us/PUT" % (label, best[f], wall[f]))
    for f in ("batch", "atomic"):
        ratio = best["single"] / best[f] if best[f] else float("inf")
        print("  server time ratio single / %-6s %5.1fx  (target >= 5: %s)" % (f, ratio, "PASS" if ratio >= 5 else "MISS"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
