#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Memory per key: L3KV against Redis in one run.

Loads N copies of the sample document
    {"id":K,"name":"userK","email":"uK@example.com","tags":["a","b"],"score":S}
under keys user:K into one l3kv instance (PUT over keep-alive HTTP) and, when redis-server
is installed, the same JSON text as string values into one Redis instance (SET through
redis-cli --pipe). Prints arena bytes per key (/metrics store.used_bytes / keys), Redis's
used_memory delta per key, their ratio, and l3kv-inspect's breakdown of the arena. Then
(unless --no-recovery) the time to recover the keys: a restart replaying the WAL, and after a
checkpoint one loading the snapshot, each as the server's "recovered in" figure and per million
documents.

    bench-memory.py [--keys N] [--bin build/src/server/l3kv] [--inspect build/tools/l3kv-inspect/l3kv-inspect]
                    [--no-recovery]
"""
import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import benchlib  # noqa: E402

BASE = 100000


def doc(k):
    return '{"id":%d,"name":"user%d","email":"u%d@example.com","tags":["a","b"],"score":%d}' % (
        k, k, k, k % 1000)


def load_l3kv(port, n, threads=4):
    def run(lo, hi):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for k in range(lo, hi):
            c.request("PUT", "/kv/user:%d" % k, doc(k), {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status not in (200, 201):
                raise SystemExit("PUT user:%d -> %d" % (k, r.status))
        c.close()
    step = (n + threads - 1) // threads
    ts = [threading.Thread(target=run, args=(BASE + i * step, BASE + min(n, (i + 1) * step)))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def redis_used(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "memory"], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise SystemExit("redis INFO memory has no used_memory")


def redis_per_key(n, tmp):
    port = benchlib.free_port()
    rd = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.1)
        before = redis_used(port)
        path = os.path.join(tmp, "load.resp")
        with open(path, "w") as f:
            for k in range(BASE, BASE + n):
                key, val = "user:%d" % k, doc(k)
                f.write("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(val), val))
        with open(path) as inp:
            subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=inp,
                           stdout=subprocess.DEVNULL, check=True)
        return (redis_used(port) - before) / n
    finally:
        rd.terminate()
        rd.wait(30)


def recovery(binary, srv, cfg, n):
    """Restart srv's data directory twice: from the WAL, then from a snapshot."""
    rc = srv.stop()
    if rc != 0:
        print("(graceful stop exited %s)" % rc)
    s2 = benchlib.Server(binary, workers=1, config=cfg, reuse_dir=srv.dir)
    try:
        r = s2.recovered_ms()
        if r:
            print("recovery from the WAL: %.1f ms for %d records (%.1f ms per million documents)"
                  % (r[0], r[1], r[0] * 1e6 / n))
        t0 = time.time()
        benchlib.http("POST", s2.url("/admin/checkpoint"))
        while "checkpoint done" not in s2.logtext() and time.time() < t0 + 300:
            time.sleep(0.2)
    finally:
        s2.stop()
    s3 = benchlib.Server(binary, workers=1, config=cfg, reuse_dir=srv.dir)
    try:
        r = s3.recovered_ms()
        m = re.search(r"snapshot \S+ \((\d+) documents\)", s3.logtext())
        if r and m:
            print("recovery from the snapshot: %.1f ms for %s documents (%.1f ms per million documents)"
                  % (r[0], m.group(1), r[0] * 1e6 / n))
        return s3
    except BaseException:
        s3.stop()
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=int(os.environ.get("L3KV_BENCH_KEYS", "200000")))
    ap.add_argument("--bin", default=os.environ.get("L3KV_BIN", "build/src/server/l3kv"))
    ap.add_argument("--inspect", default=os.environ.get("L3KV_INSPECT", ""))
    ap.add_argument("--no-recovery", action="store_true", help="skip the restarts")
    a = ap.parse_args()
    n = a.keys
    binary = benchlib.resolve_bin(a.bin)
    cfg = {"storage": {"arena_bytes": max(256 << 20, n * 1024)}}
    srv = benchlib.Server(binary, workers=1, config=cfg)
    tmp = tempfile.mkdtemp(prefix="l3kv-bench-mem-")
    try:
        srv.wait_ready(60)
        t0 = time.time()
        load_l3kv(srv.port, n)
        st = srv.metrics()["store"]
        l3 = st["used_bytes"] / st["keys"]
        print("l3kv: %d keys loaded in %.1f s, %d arena bytes used: %.1f bytes per key"
              % (st["keys"], time.time() - t0, st["used_bytes"], l3))
        if a.inspect and os.path.exists(a.inspect):
            out = subprocess.run([a.inspect, "--pid", str(srv.proc.pid), "bytes"], capture_output=True,
                                 text=True)
            print(out.stdout.rstrip() or out.stderr.rstrip())
        if shutil.which("redis-server") and shutil.which("redis-cli"):
            rp = redis_per_key(n, tmp)
            print("redis: %.1f bytes per key (used_memory delta over %d SETs of the same JSON)" % (rp, n))
            print("ratio l3kv / redis: %.2f" % (l3 / rp))
        else:
            print("redis-server not installed: no comparison")
        if not a.no_recovery:
            srv = recovery(binary, srv, cfg, n)
    finally:
        srv.stop()
        srv.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
