#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Autoscaling benchmark for l3kv (figures: p99 latency during a load step with the
Kalman autoscaler against a fixed minimum and a fixed maximum pool; scale events per minute
under steady noisy load).

Three servers run side by side in the same run (the real l3kv binary, free loopback ports,
temporary data directories, 1,000 documents of ~100 bytes each):
    auto   autoscale.enabled, min_workers 1, max_workers 4 (other autoscale keys as in
           etc/config.json: worker_capacity 8, cooldown 3000 ms, ...)
    min    min = max = 1   (fixed minimum pool)
    max    min = max = 4   (fixed maximum pool)

1. load step, for each server in turn: idle --idle s, then wrk -c64 for --step s, then idle
   again; 80 % GET / 20 % PUT on the 1,000 keys, every request on a new connection
   (`Connection: close`). The queue depth the autoscaler measures is the listen sockets'
   accept backlog plus requests in flight; requests waiting in the socket buffers of
   keep-alive connections are in neither, so a keep-alive load does not move it (see
   docs/benchmarks.md). The worker count is sampled from /metrics every 0.25 s. Prints
   req/s, p50, p99, p99 as a ratio to each fixed pool, peak and mean workers, the time from
   the start of the load to the first scale-up and from its end back to the minimum.
2. noisy load on the autoscaled server for --noisy s: back-to-back 1-second wrk runs whose
   connection count is drawn at random from 8..64 (same request mix). Scale events are
   counted from the server's "autoscale: a -> b workers" log lines inside that window
   (and cross-checked with the /metrics autoscale counters when the server exports them).

usage: bench-autoscale.py [--l3kv BIN] [--long] [--step S] [--idle S] [--noisy S] [--rounds R]
Defaults (short, about 2 minutes): 20 s step, 3 s idle before / 6 s after, 30 s noisy, 1 round.
--long: 3 rounds (order rotated), 120 s of noisy load.
Exit code 0 when the run completed; 77 when wrk is missing.
"""
import argparse
import datetime
import http.client
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib as B  # noqa: E402

NKEYS = 1000
SCALE_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z \S+ info: autoscale: (\d+) -> (\d+) workers", re.M)


def prefill(srv):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        for i in range(1, NKEYS + 1):
            c.request("PUT", "/kv/a%d" % i, body='{"i":%d,"pad":"%s"}' % (i, "p" * 80),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit("prefill PUT got %d" % r.status)
    finally:
        c.close()


def scale_events(srv, t_from, t_to):
    """(from, to, unix time) of every 'autoscale: a -> b' log line in [t_from, t_to]."""
    out = []
    for m in SCALE_RE.finditer(srv.logtext()):
        ts = datetime.datetime.strptime(m.group(1)[:23], "%Y-%m-%dT%H:%M:%S.%f")
        t = ts.replace(tzinfo=datetime.timezone.utc).timestamp()
        if t_from <= t <= t_to:
            out.append((int(m.group(2)), int(m.group(3)), t))
    return out


class Sampler(threading.Thread):
    """Samples system.worker_processes (and thread_count) from /metrics every period."""

    def __init__(self, srv, period=0.25):
        super().__init__(daemon=True)
        self.srv, self.period, self.stop_ev, self.samples = srv, period, threading.Event(), []

    def run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            try:
                m = self.srv.metrics()["system"]
                self.samples.append((time.monotonic(), m.get("worker_processes", m["thread_count"])))
            except Exception:  # noqa: BLE001 - a sample lost under load is not a figure
                pass
            nxt += self.period
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))

    def finish(self):
        self.stop_ev.set()
        self.join(10)
        return self.samples


def load_step(a, srv, lua, floor):
    sm = Sampler(srv)
    sm.start()
    time.sleep(a.idle)
    t_load, w_load = time.monotonic(), time.time()
    r = B.wrk(srv.url("/"), a.step, threads=2, conns=64, lua_path=lua)
    t_end = time.monotonic()
    time.sleep(a.idle_after)
    s = sm.finish()
    events = len(scale_events(srv, w_load, time.time()))
    during = [n for t, n in s if t_load <= t <= t_end]
    up = next((t - t_load for t, n in s if t >= t_load and n > floor), None)
    back = None
    if up is not None:
        back = next((t - t_end for t, n in s if t >= t_end and n <= floor), None)
    return {"rps": r["rps"], "p50": r["p50"], "p99": r["p99"], "non2xx": r["non2xx"], "errors": r["errors"],
            "peak": max([n for _, n in s] or [0]), "mean": sum(during) / len(during) if during else float("nan"),
            "up": up, "back": back, "events": events}


def noisy(a, srv, lua):
    rng = random.Random(42)
    t0, w0 = time.monotonic(), time.time()
    conns, failures = [], 0
    while time.monotonic() - t0 < a.noisy:
        c = rng.randint(8, 64)
        conns.append(c)
        r = B.wrk(srv.url("/"), 1, threads=2, conns=c, lua_path=lua)
        failures += r["non2xx"] + (1 if r["errors"] else 0)
    dur = time.monotonic() - t0
    ev = scale_events(srv, w0, time.time())
    ups = sum(1 for f, t, _ in ev if t > f)
    return {"dur": dur, "events": len(ev), "ups": ups, "downs": len(ev) - ups, "per_min": len(ev) * 60.0 / dur,
            "conns": conns, "failures": failures, "counts": sorted(set([f for f, _, _ in ev] + [t for _, t, _ in ev]))}


def fmt_t(x):
    return "-" if x is None else "%.2f s" % x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", "l3kv"))
    ap.add_argument("--long", action="store_true", help="3 rounds of the step, 120 s of noisy load")
    ap.add_argument("--step", type=int, default=20, help="seconds of heavy load in the step")
    ap.add_argument("--idle", type=float, default=3.0, help="idle seconds before the step")
    ap.add_argument("--idle-after", type=float, default=6.0, help="idle seconds after the step")
    ap.add_argument("--noisy", type=int, help="seconds of noisy load (default 30, --long 120)")
    ap.add_argument("--rounds", type=int, help="step rounds per configuration (default 1, --long 3)")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output is a file or pipe
    a.noisy = a.noisy if a.noisy is not None else (120 if a.long else 30)
    a.rounds = a.rounds or (3 if a.long else 1)
    a.l3kv = B.resolve_bin(a.l3kv)
    if not shutil.which("wrk"):
        print("wrk not installed: skipping")
        return 77
    tmp = tempfile.mkdtemp(prefix="l3kv-bench-as-")
    lua = B.write_lua(tmp, B.lua_keyed("PUT", NKEYS, 100, prefix="a", extra_get_pct=80, close=True))
    t_start = time.monotonic()
    confs = [("auto", 1, 4, True), ("min", 1, 1, False), ("max", 4, 4, False)]
    servers = {}
    try:
        for name, mn, mx, on in confs:
            servers[name] = B.Server(a.l3kv, min_workers=mn, max_workers=mx, log_level="info",
                                     config={"autoscale": {"enabled": on, "interval_ms": 100, "horizon_ms": 500,
                                                           "worker_capacity": 8, "cooldown_ms": 3000,
                                                           "margin": 1.5, "max_step_up": 8}})
            prefill(servers[name])
        print("l3kv autoscale benchmark (%s mode; figures, not assertions; the machine is shared, compare ratios)"
              % ("long" if a.long else "short"))
        print("\n[1] load step: %.0f s idle, wrk -t2 -c64 -d%ds (80%% GET / 20%% PUT, Connection: close), "
              "%.0f s idle; %d round(s)" % (a.idle, a.step, a.idle_after, a.rounds))
        res = {name: [] for name, _, _, _ in confs}
        for rnd in range(a.rounds):
            order = confs[rnd % 3:] + confs[:rnd % 3]
            for name, mn, _, _ in order:
                res[name].append(load_step(a, servers[name], lua, mn))
        agg = {}
        for name in res:
            rs = sorted(res[name], key=lambda r: r["p99"])
            agg[name] = rs[len(rs) // 2]  # the median round by p99
        pmin, pmax = agg["min"]["p99"], agg["max"]["p99"]
        print("%-20s %8s %9s %9s %8s %8s %5s %5s %7s %9s %10s" % ("pool", "req/s", "p50", "p99", "p99/min",
                                                                "p99/max", "peak", "mean", "events", "scale-up",
                                                                "back to 1"))
        labels = {"auto": "autoscale 1..4", "min": "fixed minimum (1)", "max": "fixed maximum (4)"}
        for name in ("auto", "min", "max"):
            r = agg[name]
            print("%-20s %8.0f %9s %9s %8.2f %8.2f %5d %5.2f %7d %9s %10s" % (
                labels[name], r["rps"], B.fmt_s(r["p50"]), B.fmt_s(r["p99"]), r["p99"] / pmin, r["p99"] / pmax,
                r["peak"], r["mean"], r["events"], fmt_t(r["up"]) if name == "auto" else "-",
                fmt_t(r["back"]) if name == "auto" else "-"))
            if r["non2xx"] or r["errors"]:
                print("    (%s: non-2xx %d %s)" % (name, r["non2xx"], r["errors"] or ""))
        print("(peak/mean: worker processes sampled every 0.25 s, mean over the load; events: autoscale log lines "
              "from the load's start to the end of the idle tail; scale-up: load start to the first sample above "
              "1 worker; back to 1: load end to the first sample at 1 worker)")

        if a.noisy > 0:
            n = noisy(a, servers["auto"], lua)
            print("\n[2] noisy load on autoscale 1..4: %.0f s of 1-second wrk runs, connections drawn from 8..64 "
                  "(mean %.0f)" % (n["dur"], sum(n["conns"]) / len(n["conns"])))
            print("scale events: %d (%d up, %d down) = %.1f per minute; worker counts visited %s%s"
                  % (n["events"], n["ups"], n["downs"], n["per_min"], n["counts"] or "-",
                     "; non-2xx/socket-error runs %d" % n["failures"] if n["failures"] else ""))
            try:
                m = servers["auto"].metrics().get("autoscale")
                if isinstance(m, dict) and ("ups" in m or "downs" in m):
                    print("/metrics autoscale counters since start: ups %s, downs %s"
                          % (m.get("ups"), m.get("downs")))
            except Exception:  # noqa: BLE001 - optional cross-check
                pass
    finally:
        for s in servers.values():
            s.stop()
            s.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\ntotal %.0f s" % (time.monotonic() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
