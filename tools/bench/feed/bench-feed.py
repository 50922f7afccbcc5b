#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Change-feed benchmark for l3kv: PUT throughput (wrk, 64 connections, ~100-byte
documents on 1,000 keys) against one server with no watcher, with 100 idle watchers (SSE
streams whose prefix matches nothing: heartbeats only) and with 10 active watchers reading
the whole SSE feed, interleaved for --rounds rounds in the same run, best round of each.
The active watchers are read and counted by one l3kv-feedwatch process in C (the default
when built; its own CPU time per PUT is printed too), by one thread of this script
(--watchers socket) or by curl processes writing the streams to files (--watchers curl).
Prints req/s and the ratios against no watcher (target >= 0.9: PASS or MISS, a figure, not
an assertion), the server's CPU time (every process and thread of the service) per
answered PUT, median over the rounds and as a ratio to no watcher, how many active streams
were reset, and the write -> watcher event latency p50/p99 of sequential PUTs seen by one
SSE watcher. A fourth case, catchup10, has 10 watchers (NDJSON) reading from the cursor
taken before the round's active10 case: the ring has overwritten it by then, so they read
the WAL segments the writer serves; and after the rounds, a long poll loop from a cursor
taken before a 3 s PUT flood gives the catch-up rate (changes per second from the log,
then the ring).

usage: bench-feed.py [--l3kv BIN] [--duration S] [--rounds R] [--workers N] [--watchers c|socket|curl]
Exit code 0 when the run completed; 77 when wrk (or curl, for --watchers curl) is missing.
"""
import argparse
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib as B  # noqa: E402


def idle_watchers(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /changes?feed=sse&prefix=%%00none HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    return socks


class SocketWatchers:
    """n watchers on raw keep-alive sockets, read by one thread that counts the change and
    reset events as the bytes arrive (nothing is stored: the client costs what reading the
    stream costs). A count is taken over the previous read's last bytes too, so an event
    split between two reads is counted once."""
    PATS = (b"event: change", b"event: reset", b'"reset":true')

    def __init__(self, port, n, query):
        self.socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /changes?%s HTTP/1.1\r\nHost: x\r\n\r\n" % query.encode())
            s.setblocking(False)
            self.socks.append(s)
        self.counts = [0, 0]
        self.stop_r, self.stop_w = os.pipe()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        sel = selectors.DefaultSelector()
        tails = {}
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
            tails[s] = b""
        sel.register(self.stop_r, selectors.EVENT_READ)
        keep = max(len(p) for p in self.PATS) - 1
        while True:
            for k, _ in sel.select():
                if k.fileobj == self.stop_r:
                    sel.close()
                    return
                try:
                    data = k.fileobj.recv(1 << 18)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(k.fileobj)
                    continue
                t = tails[k.fileobj]
                buf = t + data
                # events whose first byte lies in the tail were counted with the last read
                self.counts[0] += buf.count(self.PATS[0]) - t.count(self.PATS[0])
                self.counts[1] += (buf.count(self.PATS[1]) - t.count(self.PATS[1]) +
                                   buf.count(self.PATS[2]) - t.count(self.PATS[2]))
                tails[k.fileobj] = buf[-keep:]

    def stop(self):
        os.write(self.stop_w, b"x")
        self.th.join()
        for s in self.socks:
            s.close()
        os.close(self.stop_r)
        os.close(self.stop_w)
        return self.counts[0], self.counts[1]


class CurlWatchers:
    """n curl processes writing the stream to files, counted when they stop."""

    def __init__(self, url, n, tmp, query):
        self.procs = []
        for i in range(n):
            path = os.path.join(tmp, "active-%d.txt" % i)
            self.procs.append((subprocess.Popen(["curl", "-sN", "-o", path, url + "/changes?" + query]), path))

    def stop(self):
        changes = resets = 0
        for p, path in self.procs:
            p.terminate()
            p.wait()
            with open(path, "rb") as f:
                for line in f:
                    if line.startswith(b"event: change"):
                        changes += 1
                    elif line.startswith(b"event: reset") or line.startswith(b'{"reset":true'):
                        resets += 1
            os.unlink(path)
        return changes, resets


class CWatchers:
    """n watchers read and counted by one l3kv-feedwatch process (C, one epoll loop): the
    lightest client, so the figure shows what the server spends on the streams rather than
    what a Python reader spends on this machine's two cores. cpu_us: its own CPU time."""

    def __init__(self, binary, port, n, query):
        self.p = subprocess.Popen([binary, str(port), str(n), query], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            raise SystemExit("bench-feed: l3kv-feedwatch did not connect")
        self.cpu_us = 0

    def stop(self):
        out, _ = self.p.communicate("stop\n", timeout=30)
        changes, resets, cpu_us, _open = (int(x) for x in out.split())
        self.cpu_us = cpu_us
        return changes, resets


def feedwatch_bin():
    """l3kv-feedwatch from $L3KV_FEEDWATCH_BIN or a build directory next to this checkout."""
    env = os.environ.get("L3KV_FEEDWATCH_BIN")
    if env and os.access(env, os.X_OK):
        return env
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
    cand = os.path.join(root, "build", "tools", "bench", "feed", "l3kv-feedwatch")
    return cand if os.access(cand, os.X_OK) else None


def active_watchers(kind, srv, n, tmp, query="feed=sse"):
    if kind == "curl":
        return CurlWatchers(srv.base, n, tmp, query)
    if kind == "c":
        return CWatchers(feedwatch_bin(), srv.port, n, query)
    return SocketWatchers(srv.port, n, query)


def get_json(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def catchup_rate(base, cursor, max_s=30.0):
    """Changes per second a long poll loop reads from cursor until it has caught up."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < max_s:
        j = get_json(base + "/changes?timeout=0&limit=10000&since=" + cursor)
        n += len(j["changes"])
        cursor = j["cursor"]
        if not j["changes"]:
            break
    return n, n / (time.perf_counter() - t0)


def latency(srv, n=300):
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET /changes?feed=sse&prefix=lat- HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    lat = []
    with _Session() as ses:
        for i in range(n):
            t0 = time.perf_counter()
            ses.put(srv.url("/kv/lat-%d" % i), '{"i":%d}' % i)
            key = b'"key":"lat-%d"' % i
            while key not in buf:
                buf += s.recv(65536)
            lat.append(time.perf_counter() - t0)
            buf = buf[buf.index(key):]
    s.close()
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]


class _Session:
    """Keep-alive PUTs over one raw socket (no third-party module needed)."""

    def __enter__(self):
        self.s = None
        return self

    def put(self, url, body):
        rest = url.split("//", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.split(":")
        if self.s is None:
            self.s = socket.create_connection((host, int(port)))
        self.s.sendall(("PUT /%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n%s" % (path, len(body), body)).encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            resp += self.s.recv(65536)
        head, rest = resp.split(b"\r\n\r\n", 1)
        clen = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                clen = int(line.split(b":")[1])
        while len(rest) < clen:
            rest += self.s.recv(65536)

    def __exit__(self, *a):
        if self.s:
            self.s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", ""))
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--watchers", choices=("c", "socket", "curl"), default=None,
                    help="active watchers: read and counted by one l3kv-feedwatch process (C; the "
                         "default when built), by one thread of this script (socket), or by curl "
                         "processes writing the streams to files")
    a = ap.parse_args()
    if a.watchers is None:
        a.watchers = "c" if feedwatch_bin() else "socket"
    if a.watchers == "c" and not feedwatch_bin():
        print("bench-feed: l3kv-feedwatch not built (ninja -C build tools/bench/feed/l3kv-feedwatch)")
        return 2
    if not shutil.which("wrk") or (a.watchers == "curl" and not shutil.which("curl")):
        print("bench-feed: wrk (and curl for --watchers curl) needed; skipped")
        return 77
    a.l3kv = B.resolve_bin(a.l3kv)
    tmp = tempfile.mkdtemp(prefix="l3kv-feedbench-")
    srv = B.Server(a.l3kv, workers=a.workers, log_level="warn")
    try:
        lua = B.write_lua(tmp, B.lua_keyed("PUT", 1000, 100, prefix="t"))
        best = {}
        resets = changes = acked = 0
        cpu = {}  # server CPU µs per answered PUT, every round
        ccpu = {}  # the C watchers' own CPU µs per answered PUT, every round
        c_back = None
        cases = ("none", "idle100", "active10", "catchup10")
        for _ in range(a.rounds):
            for case in cases:
                socks, procs = [], None
                if case == "idle100":
                    socks = idle_watchers(srv.port, 100)
                elif case == "active10":
                    c_back = get_json(srv.base + "/changes?since=now&timeout=0")["cursor"]
                    procs = active_watchers(a.watchers, srv, 10, tmp)
                elif case == "catchup10":
                    procs = active_watchers(a.watchers, srv, 10, tmp, "feed=continuous&since=" + c_back)
                time.sleep(0.5)
                pids = [srv.proc.pid] + B.descendants(srv.proc.pid)
                c0 = B.cpu_ns(pids)
                r = B.wrk(srv.url("/"), a.duration, threads=2, conns=64, lua_path=lua)
                r["cpu_us"] = (B.cpu_ns(pids) - c0) / 1e3 / max(1, r["requests"])
                if r["non2xx"] or r["errors"]:
                    print("    (%s: wrk non-2xx %d %s)" % (case, r["non2xx"], r["errors"] or ""))
                time.sleep(0.5)
                for s in socks:
                    s.close()
                if procs is not None:
                    c, rs = procs.stop()
                    if a.watchers == "c":
                        ccpu.setdefault(case, []).append(procs.cpu_us / max(1, r["requests"]))
                    if case == "active10":
                        changes += c
                        resets += rs
                        acked += 10 * r["requests"]
                if case not in best or r["rps"] > best[case]["rps"]:
                    best[case] = r
                cpu.setdefault(case, []).append(r["cpu_us"])
        base = best["none"]["rps"] or 1.0
        print("feed bench: %d workers, wrk 64 connections PUT ~100 B on 1,000 keys, %d s x %d rounds (best), "
              "watchers: %s" % (a.workers, a.duration, a.rounds, a.watchers))
        cpu_med = {c: sorted(v)[len(v) // 2] for c, v in cpu.items()}
        for case in cases:
            r = best[case]
            ratio = r["rps"] / base
            print("  %-9s %10.0f req/s  p50 %s p99 %s  ratio %.3f %-4s  server CPU %.1f us/PUT (%.2fx)" % (
                case, r["rps"], B.fmt_s(r["p50"]), B.fmt_s(r["p99"]), ratio,
                "" if case == "none" else ("PASS" if ratio >= 0.9 else "MISS"),
                cpu_med[case], cpu_med[case] / cpu_med["none"])
                + ("  client CPU %.1f us/PUT" % sorted(ccpu[case])[len(ccpu[case]) // 2] if case in ccpu else ""))
        print("  active watchers: %d change events received (10 x the PUTs wrk saw answered: %d), "
              "%d streams reset" % (changes, acked, resets))
        c_back = get_json(srv.base + "/changes?since=now&timeout=0")["cursor"]
        B.wrk(srv.url("/"), 3, threads=2, conns=64, lua_path=lua)
        n_log, rate = catchup_rate(srv.base, c_back)
        print("  catch-up from a cursor before a 3 s PUT flood (retained log, then the ring): "
              "%d changes at %.0f changes/s" % (n_log, rate))
        p50, p99 = latency(srv)
        print("  write -> watcher latency (sequential PUTs, one SSE watcher): p50 %s p99 %s"
              % (B.fmt_s(p50), B.fmt_s(p99)))
        print(json.dumps({"bench": "feed", "rps_none": best["none"]["rps"], "rps_idle100": best["idle100"]["rps"],
                          "rps_active10": best["active10"]["rps"],
                          "ratio_idle100": best["idle100"]["rps"] / base,
                          "ratio_active10": best["active10"]["rps"] / base,
                          "rps_catchup10": best["catchup10"]["rps"],
                          "ratio_catchup10": best["catchup10"]["rps"] / base,
                          "catchup_changes": n_log, "catchup_per_s": rate,
                          "active_resets": resets, "latency_p50_s": p50, "latency_p99_s": p99,
                          "server_cpu_us_per_put": cpu_med, "watchers": a.watchers,
                          "client_cpu_us_per_put": {c: sorted(v)[len(v) // 2] for c, v in ccpu.items()}}))
    finally:
        srv.stop()
        srv.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
