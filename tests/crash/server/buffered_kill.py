#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Buffered mode survives any process crash: the real l3kv server in storage.durability
"buffered" under a write flood, every process of the service SIGKILLed at once, restarted;
every acknowledged write must be there (docs/wal.md section 4: the next start salvages the
dead instance's ring from /dev/shm into the WAL before recovery).

Odd trials kill the WAL writer 5-50 ms before the rest, so that the ring holds
acknowledged records no file has. Each client thread owns its keys. Operations: PUT of a new key {"t":thread,"i":n} and incr of
the thread's counter key; an acknowledged PUT must be present with its value and a
counter must be at least its last acknowledged value and at most the increments sent.
Prints trials, acknowledged writes and losses; exit 0 when nothing acknowledged was lost,
1 otherwise, 77 when the binary is missing. Environment: L3KV_BIN, L3_CRASH_TRIALS (5),
L3_CRASH_SECONDS (time budget, 120), L3_CRASH_SEED.
"""
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.abspath(os.environ["L3KV_BIN"]) if os.environ.get("L3KV_BIN") else ""
TRIALS = int(os.environ.get("L3_CRASH_TRIALS", "5"))
SECONDS = float(os.environ.get("L3_CRASH_SECONDS", "120"))
SEED = int(os.environ.get("L3_CRASH_SEED", "0")) or int(time.time() * 1000) % 1000003
THREADS = 6

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from l3proc import free_port, kill_service  # noqa: E402


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


class Server:
    def __init__(self, root, port):
        self.port = port
        data = os.path.join(root, "data")
        cfg = {"server": {"address": "127.0.0.1", "port": port, "min_workers": 2, "max_workers": 2},
               "storage": {"data_dir": data, "wal_path": os.path.join(data, "data.wal"),
                           "arena_bytes": 128 << 20, "durability": "buffered",
                           "flush_interval_ms": 1000},
               "autoscale": {"enabled": False}}
        self.cfg_path = os.path.join(root, "config.json")
        with open(self.cfg_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(root, "stderr.log")
        self.off = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, self.cfg_path], stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=root, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("l3kv exited at start:\n" + self.logtext())
            try:
                if self.request("GET", "/kv/health")[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise SystemExit("l3kv not ready:\n" + self.logtext())

    def logtext(self):
        self.logf.flush()
        with open(self.log_path, "rb") as f:
            f.seek(self.off)
            return f.read().decode("utf-8", "replace")

    def request(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def kill_all(self, writer_first_ms=0):
        """SIGKILL every process of the service at once; the arena stays in /dev/shm. With
        writer_first_ms the WAL writer dies that long before the rest (the ring then holds
        acknowledged records no file has: the case the salvage exists for)."""
        if writer_first_ms:
            _, body = self.request("GET", "/metrics")
            wpid = json.loads(body)["wal"]["writer_pid"]
            if wpid > 0:
                os.kill(wpid, signal.SIGKILL)
            time.sleep(writer_first_ms / 1000.0)
        kill_service(self.proc)
        self.logf.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.logf.close()


def client(srv, tid, state, stop):
    conn = None
    while not stop.is_set():
        if random.random() < 0.6:
            n = state["next"]
            state["next"] += 1
            method, path, body = "PUT", "/kv/t%d-%d" % (tid, n), json.dumps({"t": tid, "i": n})
        else:
            n = None
            state["incr_sent"] += 1
            method, path, body = "POST", "/kv/c%d?op=incr&field=v" % tid, None
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            conn.request(method, path, body=body)
            r = conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            return  # the kill: this one's outcome is unknown
        if r.status != 200:
            continue
        if n is not None:
            state["acked"].append(n)
        else:
            state["incr_acked"] = max(state["incr_acked"], json.loads(data)["value"])


def trial(root, t, rng):
    srv = Server(root, free_port())
    states = []
    for tid in range(THREADS):
        st, _ = srv.request("PUT", "/kv/c%d" % tid, json.dumps({"v": 0}))
        assert st == 200
        states.append({"next": 0, "acked": [], "incr_sent": 0, "incr_acked": 0})
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(srv, tid, states[tid], stop)) for tid in range(THREADS)]
    for th in threads:
        th.start()
    time.sleep(0.3 + rng.random() * 1.2)
    srv.kill_all(writer_first_ms=5 + rng.random() * 45 if t % 2 else 0)
    stop.set()
    for th in threads:
        th.join()
    srv2 = Server(root, free_port())
    lost = acked = 0
    try:
        for tid, st in enumerate(states):
            for n in st["acked"]:
                acked += 1
                code, body = srv2.request("GET", "/kv/t%d-%d" % (tid, n))
                if code != 200 or json.loads(body) != {"t": tid, "i": n}:
                    lost += 1
            acked += st["incr_acked"]
            code, body = srv2.request("GET", "/kv/c%d" % tid)
            v = json.loads(body)["v"] if code == 200 else -1
            if v < st["incr_acked"]:
                lost += st["incr_acked"] - max(v, 0)
                log("trial %d: counter c%d = %d, acknowledged %d" % (t, tid, v, st["incr_acked"]))
            if v > st["incr_sent"]:
                raise SystemExit("trial %d: counter c%d = %d > %d sent" % (t, tid, v, st["incr_sent"]))
        salvaged = "appended to" in srv2.logtext()
    finally:
        srv2.stop()
    shutil.rmtree(os.path.join(root, "data"), ignore_errors=True)
    return acked, lost, salvaged


def main():
    if not BIN or not os.path.exists(BIN):
        log("L3KV_BIN does not name the l3kv executable")
        return 77
    random.seed(SEED)
    rng = random.Random(SEED)
    root = tempfile.mkdtemp(prefix="l3kv-bufkill-")
    t0, total_acked, total_lost, done, salvaged = time.time(), 0, 0, 0, 0
    try:
        for t in range(TRIALS):
            if time.time() - t0 > SECONDS:
                break
            a, lost, s = trial(root, t, rng)
            done += 1
            total_acked += a
            total_lost += lost
            salvaged += s
            log("trial %d: %d acknowledged, %d lost%s" % (t, a, lost, ", ring salvaged" if s else ""))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log("buffered SIGKILL: seed %d, %d trials, %d acknowledged writes, %d lost, %d trials salvaged ring records"
        % (SEED, done, total_acked, total_lost, salvaged))
    return 0 if total_lost == 0 and done > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
