#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""GET with a Bearer token against GET without one, in the same run: two l3kv servers on
this machine (same worker count), one without tokens (loopback clients hold every scope),
one with a token holding read, write and monitor; wrk with keep-alive against each, in
alternating rounds (which server goes first alternates too). Prints the median of the
rounds' throughput ratios (token / no token; the target is >= 0.95), the ratio of the sums, and
each server's GET handler median from /metrics (the handler time includes the access
check: header lookup, SHA-256 of the token, digest comparison).

usage: bench-auth.py [--l3kv BIN] [--workers N] [--duration S] [--rounds R]
Exit code 0 when the run completed (the figure is reported against the 0.95 target as
PASS or MISS, not asserted: one shared machine's noise is not a failure); 77 without wrk.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

TOKEN = "bench-token-0123456789abcdef0123456789"
TARGET = 0.95  # GET with a token keeps at least this share of the throughput without one


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def req(method, url, body=None, token=None):
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    r = urllib.request.Request(url, data=body, method=method, headers=h)
    with urllib.request.urlopen(r, timeout=10) as resp:
        return resp.read()


def start(binary, d, workers, auth):
    port = free_port()
    cfg = {"server": {"address": "127.0.0.1", "port": port, "min_workers": workers, "max_workers": workers},
           "storage": {"data_dir": os.path.join(d, "data"), "arena_bytes": 256 << 20},
           "autoscale": {"enabled": False}, "log": {"level": "warn"}}
    if auth:
        cfg["auth"] = auth
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "config.json")
    with open(p, "w") as f:
        json.dump(cfg, f)
    proc = subprocess.Popen([binary, p], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = "http://127.0.0.1:%d" % port
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            req("GET", base + "/kv/health")
            return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("l3kv did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", "l3kv"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="l3kv-bench-auth-")
    auth = {"tokens": [{"name": "bench", "token": TOKEN, "scopes": ["read", "write", "monitor"]}]}
    procs = []
    try:
        plain = start(a.l3kv, os.path.join(tmp, "plain"), a.workers, None)
        procs.append(plain[0])
        tok = start(a.l3kv, os.path.join(tmp, "token"), a.workers, auth)
        procs.append(tok[0])
        doc = json.dumps({"name": "bench", "n": 1, "tags": ["a", "b"]}).encode()
        req("PUT", plain[1] + "/kv/k", doc)
        req("PUT", tok[1] + "/kv/k", doc, TOKEN)
        lua = benchlib.write_lua(tmp, 'wrk.headers["Authorization"] = "Bearer %s"\n' % TOKEN)
        sums = {"plain": 0.0, "token": 0.0}
        ratios = []
        for r in range(a.rounds):
            # alternate which server goes first, so a load change on the shared machine
            # during a round does not always fall on the same side
            def run_plain():
                return benchlib.wrk(plain[1] + "/kv/k", a.duration, threads=1, conns=32)

            def run_token():
                return benchlib.wrk(tok[1] + "/kv/k", a.duration, threads=1, conns=32, lua_path=lua)
            if r % 2 == 0:
                p, t = run_plain(), run_token()
            else:
                t, p = run_token(), run_plain()
            if p["non2xx"] or t["non2xx"]:
                raise SystemExit("non-2xx responses: %s / %s" % (p["non2xx"], t["non2xx"]))
            sums["plain"] += p["rps"]
            sums["token"] += t["rps"]
            ratios.append(t["rps"] / p["rps"])
            print("round %d: no token %.0f req/s, token %.0f req/s, ratio %.3f" %
                  (r + 1, p["rps"], t["rps"], ratios[-1]))
        med = {}
        for name, (_, base), token in (("plain", plain, None), ("token", tok, TOKEN)):
            m = json.loads(req("GET", base + "/metrics", token=token))
            med[name] = m["handlers"]["get"]["median_ns"]
        ratio = sorted(ratios)[len(ratios) // 2]
        print("GET with token / without: median of the rounds' ratios %.3f, of the sums %.3f (%.0f vs %.0f "
              "req/s over %d rounds; target >= %.2f: %s)" %
              (ratio, sums["token"] / sums["plain"], sums["token"] / a.rounds, sums["plain"] / a.rounds, a.rounds,
               TARGET, "PASS" if ratio >= TARGET else "MISS"))
        print("GET handler median: %d ns without token, %d ns with token" % (med["plain"], med["token"]))
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
