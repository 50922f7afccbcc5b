#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One client at a time: the handler time of a lone write against a lone read, and set_int on
a 10 MB document against set_int on a 100-byte one, each l3kv binary given on the command line
measured in turn, for --rounds alternating rounds (compare two builds in one run).

Per binary and round, one worker, `buffered` mode: --n PUTs of a 100-byte document and GETs of
another, in turn with a 0.5 ms pause, then the `put` and `get` handler medians of /metrics
and their ratio (target: within 2x); then --n/4 set_int on the 100-byte and on a 9.9 MB
document in turn and the ratio of the client-side medians (target: within 10 %).

usage: bench-lone.py [--n N] [--rounds R] BIN [BIN...]
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def one(binary, n):
    srv = benchlib.Server(binary, workers=1, log_level="warn", config={"storage": {"durability": "buffered"}})
    try:
        c = http.client.HTTPConnection("127.0.0.1", srv.port)

        def req(m, p, body=None):
            t = time.perf_counter_ns()
            c.request(m, p, body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status >= 300:
                raise SystemExit("%s %s: %d" % (m, p, r.status))
            return time.perf_counter_ns() - t

        small = {"id": 1, "n": 0, "name": "bench-document", "tags": ["a", "b"], "pad": ""}
        small["pad"] = "x" * (100 - len(json.dumps(small, separators=(",", ":"))))
        st = json.dumps(small, separators=(",", ":")).encode()
        req("PUT", "/kv/small", st)
        big = {"n": 0, "items": [{"i": i, "s": "v" * 80} for i in range(100000)]}
        req("PUT", "/kv/big", json.dumps(big, separators=(",", ":")).encode())
        for i in range(n):
            req("PUT", "/kv/p%d" % (i % 100), st)
            time.sleep(0.0005)
            req("GET", "/kv/small")
            time.sleep(0.0005)
        h = srv.metrics()["handlers"]
        g, p = h["get"]["median_ns"], h["put"]["median_ns"]
        cs, cb = [], []
        for i in range(max(1, n // 4)):
            cs.append(req("POST", "/kv/small?op=set_int&field=n&val=%d" % i))
            time.sleep(0.0005)
            cb.append(req("POST", "/kv/big?op=set_int&field=n&val=%d" % i))
            time.sleep(0.0005)
        return p, g, statistics.median(cs), statistics.median(cb)
    finally:
        srv.kill_all()
        srv.remove()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    print("%-5s %-40s %9s %9s %6s %11s %11s %6s" % ("round", "binary", "PUT us", "GET us", "ratio",
                                                   "set_int us", "10 MB us", "ratio"))
    for r in range(a.rounds):
        for b in a.binaries:
            p, g, s, big = one(os.path.abspath(b), a.n)
            print("%-5d %-40s %9.2f %9.2f %6.2f %11.1f %11.1f %6.2f" % (r + 1, b[-40:], p / 1e3, g / 1e3, p / g,
                                                                       s / 1e3, big / 1e3, big / s))
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
