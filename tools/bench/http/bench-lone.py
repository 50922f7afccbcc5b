#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One client at a time: the handler time of a lone write against a lone read, and set_int on
a 10 MB document against set_int on a 100-byte one, each l3kv binary given on the command line
measured in turn, for --rounds alternating rounds (compare two builds in one run).

Per binary and round, one worker, `buffered` mode: --n PUTs of a 100-byte document and GETs of
another, in turn with a pause (--pause-ms, 0.5 ms by default), then the `put` and `get`
handler medians of /metrics and their ratio (target: within 2x); then --n/2 set_int on a
100-byte document and GETs in turn, and the `post` (set_int) handler median against the
GET's; then --n/4 set_int on the 100-byte and on a 9.9 MB document in turn and the ratio of
the client-side medians (target: within 10 %). The PUT's handler p99 is printed too.
Like with like: the writes go to --keys documents in turn (100 by default) and the GETs read
another --keys documents in turn, so each request finds its key as cold as the other's.

usage: bench-lone.py [--n N] [--rounds R] [--pause-ms MS] [--keys K] BIN [BIN...]
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


def one(binary, n, pause, keys):
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
        for k in range(keys):
            req("PUT", "/kv/g%d" % k, st)
        big = {"n": 0, "items": [{"i": i, "s": "v" * 80} for i in range(100000)]}
        req("PUT", "/kv/big", json.dumps(big, separators=(",", ":")).encode())
        for i in range(n):
            req("PUT", "/kv/p%d" % (i % keys), st)
            time.sleep(pause)
            req("GET", "/kv/g%d" % (i % keys))
            time.sleep(pause)
        h = srv.metrics()["handlers"]
        g, p, p99 = h["get"]["median_ns"], h["put"]["median_ns"], h["put"]["p99_ns"]
        for i in range(max(1, n // 2)):
            req("POST", "/kv/s%d?op=set_int&field=n&val=%d" % (i % keys, i)) if i >= keys else \
                req("PUT", "/kv/s%d" % i, st)
            time.sleep(pause)
            req("GET", "/kv/g%d" % (i % keys))
            time.sleep(pause)
        h = srv.metrics()["handlers"]
        si, g2 = h["post"]["median_ns"], h["get"]["median_ns"]
        cs, cb = [], []
        for i in range(max(1, n // 4)):
            cs.append(req("POST", "/kv/small?op=set_int&field=n&val=%d" % i))
            time.sleep(pause)
            cb.append(req("POST", "/kv/big?op=set_int&field=n&val=%d" % i))
            time.sleep(pause)
        return {"put": p, "put_p99": p99, "get": g, "set_int": si, "get2": g2,
                "client_set_int": statistics.median(cs), "client_big": statistics.median(cb)}
    finally:
        srv.kill_all()
        srv.remove()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", type=int, default=100, help="documents written / read in turn (default 100)")
    ap.add_argument("--pause-ms", type=float, default=0.5, help="pause between requests (default 0.5)")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    print("handler medians (us) from /metrics over %d keys each; set_int/GET: the set_int phase's medians; "
          "client: round trips" % a.keys)
    print("%-5s %-32s %7s %7s %7s %6s %8s %7s %6s %10s %10s %6s" % (
        "round", "binary", "PUT", "p99", "GET", "ratio", "set_int", "GET", "ratio", "client si", "10 MB", "ratio"))
    for r in range(a.rounds):
        for b in a.binaries:
            m = one(os.path.abspath(b), a.n, a.pause_ms / 1e3, max(1, a.keys))
            print("%-5d %-32s %7.2f %7.1f %7.2f %6.2f %8.2f %7.2f %6.2f %10.1f %10.1f %6.2f" % (
                r + 1, b[-32:], m["put"] / 1e3, m["put_p99"] / 1e3, m["get"] / 1e3, m["put"] / m["get"],
                m["set_int"] / 1e3, m["get2"] / 1e3, m["set_int"] / m["get2"], m["client_set_int"] / 1e3,
                m["client_big"] / 1e3, m["client_big"] / m["client_set_int"]))
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
