#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Crash loop against the real l3kv server.

Each trial starts l3kv on one data directory (kept across trials; storage.durability
alternates buffered/fsync), runs a write flood from a few client threads, SIGKILLs the
supervisor's process group and every other process of the service at a random instant,
restarts, and checks what was recovered against a model of every request sent:

  * each client thread owns its keys, so the writes to one key form a sequence; the model
    holds the document after every prefix of that sequence;
  * operations: PUT of a whole document {"k":key,"p":seq,"n":seq,"c":seq*1000,
    "pad":"x"*f(seq)}, POST set_int n=seq, POST incr c; seq is a per-key counter that is
    never reused and every operation changes n or c, so a recovered document equals exactly
    one prefix state (no torn or mixed fields);
  * the recovered document must equal the state after a prefix whose length is at least
    the state the trial started from (and, in fsync mode, at least the last acknowledged
    operation) and at most the last operation sent (acknowledged or in flight);
  * no key the clients never wrote appears;
  * `l3kv-inspect wal` exits 0 for every segment except possibly the last one before the
    restart, and for every closed segment and the snapshot after it.

Exit 0 pass, 1 fail, 77 skip. Environment: L3KV_BIN, L3KV_INSPECT_BIN, L3_CRASH_TRIALS,
L3_CRASH_SECONDS (time budget: trials stop early when it is spent; L3_SLOW_SECONDS, when
smaller, replaces it), L3_CRASH_SEED.
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.abspath(os.environ["L3KV_BIN"]) if os.environ.get("L3KV_BIN") else ""
INSPECT = os.path.abspath(os.environ["L3KV_INSPECT_BIN"]) if os.environ.get("L3KV_INSPECT_BIN") else ""
TRIALS = int(os.environ.get("L3_CRASH_TRIALS", "8"))
SECONDS = float(os.environ.get("L3_CRASH_SECONDS", "80"))
if float(os.environ.get("L3_SLOW_SECONDS") or 0) > 0:  # the bounded run of the slow suite
    SECONDS = min(SECONDS, float(os.environ["L3_SLOW_SECONDS"]))
SEED = int(os.environ.get("L3_CRASH_SEED", "0")) or int(time.time() * 1000) % 1000003
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from l3proc import free_port, kill_service, unlink_arena  # noqa: E402

THREADS = 3
KEYS_PER_THREAD = 12


class Fail(Exception):
    pass


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


class Server:
    def __init__(self, root, durability, port):
        self.root = root
        self.port = port
        self.durability = durability
        data = os.path.join(root, "data")
        cfg = {"server": {"address": "127.0.0.1", "port": port, "min_workers": 2, "max_workers": 2,
                          "shutdown_timeout_ms": 3000},
               "storage": {"data_dir": data, "wal_path": os.path.join(data, "data.wal"),
                           "arena_bytes": 128 << 20, "durability": durability,
                           "checkpoint_bytes": 4 << 20},
               "autoscale": {"enabled": False}}
        self.cfg_path = os.path.join(root, "config.json")
        with open(self.cfg_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(root, "stderr.log")
        self.log_off = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, self.cfg_path], stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=root, start_new_session=True)
        self.wait_ready()

    def logtext(self):
        self.logf.flush()
        with open(self.log_path, "rb") as f:
            f.seek(self.log_off)
            return f.read().decode("utf-8", "replace")

    def request(self, method, path, body=None, timeout=5.0):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Fail("l3kv exited at start with %s:\n%s" % (self.proc.returncode, self.logtext()))
            try:
                st, body = self.request("GET", "/metrics", timeout=1)
                if st == 200 and json.loads(body)["system"]["thread_count"] >= 2:
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        raise Fail("l3kv not ready after %.0f s:\n%s" % (timeout, self.logtext()))

    def kill_all(self):
        """SIGKILL the supervisor's process group and every process of the service (the writer
        and a checkpointer run in their own groups) at once, then wait until none runs."""
        left = kill_service(self.proc)
        if left:
            raise Fail("processes survived SIGKILL: %s" % left)
        self.logf.close()
        unlink_arena(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise Fail("l3kv did not stop on SIGTERM")
        self.logf.close()
        if self.proc.returncode != 0:
            raise Fail("l3kv exited %d on SIGTERM:\n%s" % (self.proc.returncode, self.logtext()))


def pad_len(seq):
    return (seq * 7919) % 1500


class Key:
    """Model of one key: its state at the start of the trial and after each operation sent."""

    def __init__(self, name):
        self.name = name
        self.seq = 0          # last seq used (never reused, across trials)
        self.state = None     # recovered state at the start of the trial (None = absent)
        self.states = [None]  # states[0] = start state, states[i] = after the i-th op of the trial
        self.acked = 0        # number of trial ops acknowledged in order
        self.sent = 0         # ops sent (acknowledged or in flight)
        self.dead = False     # an op had an unknown outcome: no more ops on this key this trial

    def begin_trial(self, state):
        self.state = state
        self.states = [state]
        self.acked = self.sent = 0
        self.dead = False


def client(srv, keys, rng, stop, stats):
    conn = None
    while not stop.is_set():
        live = [k for k in keys if not k.dead]
        if not live:
            return
        k = rng.choice(live)
        cur = k.states[-1]
        k.seq += 1
        seq = k.seq
        r = rng.random()
        # c = p * 1000 + increments since the PUT p: fewer than 1000, so states never repeat
        if cur is None or r < 0.4 or cur["c"] - cur["p"] * 1000 >= 900:
            new = {"k": k.name, "p": seq, "n": seq, "c": seq * 1000, "pad": "x" * pad_len(seq)}
            method, path, body = "PUT", "/kv/" + k.name, json.dumps(new)
            kind = "put"
        elif r < 0.7:
            new = dict(cur, n=seq)
            method, path, body = "POST", "/kv/%s?op=set_int&field=n&val=%d" % (k.name, seq), None
            kind = "set_int"
        else:
            new = dict(cur, c=cur["c"] + 1)
            method, path, body = "POST", "/kv/%s?op=incr&field=c" % k.name, None
            kind = "incr"
        # the new state must differ from every earlier one (unique prefix match)
        k.states.append(new)
        k.sent += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            k.dead = True  # in flight: may or may not be applied
            stats["conn_errors"] += 1
            if conn is not None:
                conn.close()
                conn = None
            time.sleep(0.01)
            continue
        if resp.status == 200:
            if k.acked != k.sent - 1:
                raise Fail("%s acknowledged after an unknown outcome" % k.name)
            if kind == "incr" and json.loads(data)["value"] != new["c"]:
                raise Fail("%s: incr returned %s, model says %d" % (k.name, data[:80], new["c"]))
            k.acked = k.sent
            stats["acked"] += 1
        elif (resp.status, json.loads(data).get("error")) in REFUSALS:
            # a clean JSON refusal; the outcome is unknown in fsync mode
            k.dead = True
            stats["refused"] += 1
        else:
            raise Fail("%s %s -> %d %s" % (method, path, resp.status, data[:200]))
    if conn is not None:
        conn.close()


# the refusals a write may get while processes are killed under it: the ring full or a
# lock not obtained in time; in fsync mode, applied but not made durable
REFUSALS = {(503, "overloaded"), (503, "durability_unknown")}


def inspect(path):
    r = subprocess.run([INSPECT, "wal", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def seg_files(data):
    names = [n for n in os.listdir(data) if re.fullmatch(r"data\.wal\.\d{8,}", n)]
    return [os.path.join(data, n) for n in sorted(names, key=lambda n: int(n.rsplit(".", 1)[1]))]


def verify(srv, keys, fsync_trial, trial):
    """Check every key against the model; move each key's start state to what was recovered."""
    problems = []
    for k in keys:
        st, body = srv.request("GET", "/kv/" + k.name)
        if st == 404:
            got = None
        elif st == 200:
            got = json.loads(body)
        else:
            raise Fail("GET %s -> %d" % (k.name, st))
        lo = k.acked if fsync_trial else 0
        match = [i for i in range(lo, k.sent + 1) if k.states[i] == got]
        if not match:
            anywhere = [i for i, s in enumerate(k.states) if s == got]
            problems.append("%s: recovered %s; allowed prefixes %d..%d (acked %d, sent %d, %s)%s" % (
                k.name, json.dumps(got)[:120], lo, k.sent, k.acked, k.sent,
                "fsync" if fsync_trial else "buffered",
                " - equals state %s, below the acknowledged prefix" % anywhere if anywhere else
                " - equals no state ever sent"))
        k.begin_trial(got)
    st, body = srv.request("GET", "/kv/?limit=10000")
    listed = set(json.loads(body)["keys"])
    expect = {k.name for k in keys if k.state is not None}
    if listed != expect:
        problems.append("listed keys differ: extra %s missing %s" % (sorted(listed - expect)[:5],
                                                                     sorted(expect - listed)[:5]))
    if problems:
        raise Fail("trial %d: %d problems:\n  %s" % (trial, len(problems), "\n  ".join(problems[:10])))


def flood(srv, keys, rng, seconds, kill):
    """Run the clients for `seconds`, then SIGKILL the service (kill) or just stop them."""
    stop = threading.Event()
    stats = [{"acked": 0, "refused": 0, "conn_errors": 0} for _ in keys]
    errors = []
    seeds = [rng.random() for _ in keys]

    def body(i):
        try:
            client(srv, keys[i], random.Random(seeds[i]), stop, stats[i])
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(keys))]
    for t in threads:
        t.start()
    time.sleep(seconds)
    if kill:
        srv.kill_all()
    stop.set()
    for t in threads:
        t.join(20)
    if any(t.is_alive() for t in threads):
        raise Fail("a client thread hangs")
    if errors:
        raise errors[0]
    return stats


def run():
    if not BIN or not os.path.exists(BIN):
        log("L3KV_BIN does not name the l3kv executable: %r" % BIN)
        return 1
    if not INSPECT or not os.path.exists(INSPECT):
        log("L3KV_INSPECT_BIN does not name l3kv-inspect: %r" % INSPECT)
        return 1
    rng = random.Random(SEED)
    log("seed %d, up to %d trials in %.0f s" % (SEED, TRIALS, SECONDS))
    root = tempfile.mkdtemp(prefix="l3kv-crash-")
    data = os.path.join(root, "data")
    keys = [[Key("c-%d-%02d" % (t, i)) for i in range(KEYS_PER_THREAD)] for t in range(THREADS)]
    allkeys = [k for ks in keys for k in ks]
    t0 = time.time()
    srv = None
    totals = {"acked": 0, "refused": 0, "conn_errors": 0, "inspected": 0, "torn_last": 0, "aside": 0}
    ok = False
    try:
        trial = 0
        srv = Server(root, "buffered", free_port())
        while trial < TRIALS and time.time() - t0 < SECONDS:
            mode = srv.durability
            stats = flood(srv, keys, rng, rng.uniform(0.15, 1.2), kill=True)
            acked = sum(s["acked"] for s in stats)
            if acked < 1:
                raise Fail("trial %d: only %d acknowledged writes before the kill" % (trial, acked))
            for s in stats:
                for x in s:
                    totals[x] += s[x]
            # segments as the crash left them: only the last may end torn
            segs = seg_files(data)
            for i, g in enumerate(segs):
                rc, out = inspect(g)
                totals["inspected"] += 1
                if rc != 0 and i == len(segs) - 1:
                    totals["torn_last"] += 1
                elif rc != 0:
                    raise Fail("trial %d: l3kv-inspect wal %s exit %d (not the last segment):\n%s" % (
                        trial, g, rc, out[-2000:]))
            nxt = "fsync" if mode == "buffered" else "buffered"
            srv = Server(root, nxt, free_port())
            verify(srv, allkeys, mode == "fsync", trial)
            if "log ended early" in srv.logtext():
                totals["aside"] += 1
            # after recovery every closed segment and the snapshot verify
            segs = seg_files(data)
            for g in segs[:-1] + [p for p in [os.path.join(data, "l3kv.snap")] if os.path.exists(p)]:
                rc, out = inspect(g)
                if rc != 0 and not os.path.exists(g):
                    continue  # the new writer deleted a segment a snapshot covers meanwhile
                totals["inspected"] += 1
                if rc != 0:
                    raise Fail("trial %d: after recovery l3kv-inspect wal %s exit %d:\n%s" % (trial, g, rc, out[-2000:]))
            present = sum(1 for k in allkeys if k.state is not None)
            log("trial %d (%s): %d acked, %d present keys, recovery: %s" % (
                trial, mode, acked, present,
                (re.findall(r"recovered in [^\n]*", srv.logtext()) or ["?"])[-1]))
            trial += 1
        # a flood then a graceful stop: every acknowledged operation is kept
        stats = flood(srv, keys, rng, 0.5, kill=False)
        if sum(s["conn_errors"] for s in stats) != 0:
            raise Fail("connection errors without a crash: %s" % stats)
        srv.stop()
        srv = Server(root, "buffered", free_port())
        verify(srv, allkeys, True, trial)
        srv.stop()
        srv = None
        if trial < 2:
            raise Fail("only %d trials ran in %.0f s" % (trial, SECONDS))
        log("ok: %d trials in %.1f s; %s" % (trial, time.time() - t0, totals))
        ok = True
        return 0
    except Fail as e:
        log("FAIL (seed %d): %s" % (SEED, e))
        return 1
    finally:
        if srv is not None and srv.proc.poll() is None:
            try:
                srv.kill_all()
            except Fail:
                pass
        if ok or os.environ.get("L3_CRASH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log("data kept in %s" % root)


if __name__ == "__main__":
    sys.exit(run())
