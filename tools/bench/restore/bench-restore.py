#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Worker restore benchmark: time from a worker's death to service restored.

Starts the real l3kv binary with --workers workers (default 2) and, --kills times, SIGKILLs
one running worker while another lives, alternating slots. Right after each kill, --probes
client threads (held ready on an event, released at the kill) each open a NEW TCP
connection and GET /kv/health, retrying on a connection error. New connections are spread
over all the listening sockets by the kernel's SO_REUSEPORT hash, so some land on the
socket the dead worker served; they are answered once a live worker has adopted it.
The restore time of a kill is the completion of the last probe, measured from the kill
(one monotonic clock, this process). Between kills the driver waits until every slot runs
again (a crashing slot's restart backoff grows up to 5 s, so a run takes a few minutes).

Prints the distribution (p50, p90, p99, max) over the kills, plus the median single-probe
latency with no kill as the baseline. A figure, not an assertion.

usage: bench-restore.py [--l3kv BIN] [--kills N] [--probes P] [--workers W]
Exit code 0 when the run completed.
"""
import argparse
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib as B  # noqa: E402

REQ = b"GET /kv/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def probe(port, deadline):
    """One GET on a new connection; retried on errors until deadline. Completion time."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(REQ)
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.001)
    return None


def probe_round(port, nprobes, before_release=None):
    """Release nprobes threads at once (after before_release()); (t0, [completion times])."""
    go = threading.Event()
    done = [None] * nprobes

    def run(i):
        go.wait()
        done[i] = probe(port, time.monotonic() + 30)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nprobes)]
    for t in threads:
        t.start()
    time.sleep(0.02)  # every thread is parked on the event
    t0 = time.monotonic()
    if before_release:
        before_release()
    go.set()
    for t in threads:
        t.join()
    return t0, done


def running(s):
    return {w["slot"]: w["pid"] for w in s.metrics()["workers"] if w["state"] == "running" and w["pid"] > 0}


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--l3kv", default=os.environ.get("L3KV_BIN", "l3kv"))
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    s = B.Server(B.resolve_bin(a.l3kv), workers=a.workers, log_level="info")
    try:
        base = []
        for _ in range(10):
            t0, done = probe_round(s.port, a.probes)
            base.append((max(done) - t0) * 1000)
        restore, failed = [], 0
        for k in range(a.kills):
            deadline = time.time() + 20
            live = running(s)
            while len(live) < a.workers and time.time() < deadline:
                time.sleep(0.02)
                live = running(s)
            if len(live) < 2:
                raise SystemExit("fewer than 2 workers running:\n" + s.logtext()[-3000:])
            slots = sorted(live)
            victim = live[slots[k % len(slots)]]
            time.sleep(0.15)  # past the start-up window of a just restarted worker
            t0, done = probe_round(s.port, a.probes, lambda: os.kill(victim, signal.SIGKILL))
            if any(d is None for d in done):
                failed += 1
                continue
            restore.append((max(done) - t0) * 1000)
        print("worker restore (%d workers, %d probes on new connections per kill)" % (a.workers, a.probes))
        print("  baseline, no kill: median of the slowest probe %.1f ms over %d rounds" % (pct(base, 50), len(base)))
        if restore:
            print("  death -> service restored over %d kills: p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms"
                  % (len(restore), pct(restore, 50), pct(restore, 90), pct(restore, 99), max(restore)))
        if failed:
            print("  %d kill(s) with a probe that got no answer within 30 s" % failed)
        print("  target: p99 <= 100 ms -> %s" % ("PASS" if restore and pct(restore, 99) <= 100 else "MISS"))
    finally:
        s.stop()
        s.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
