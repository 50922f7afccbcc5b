# SPDX-License-Identifier: MIT
"""Simulated power loss (docs/wal.md 8.1): the WAL writer's syscall shim, armed with
L3KV_TEST_POWERLOSS="<n>:<seed>", cuts every WAL file back to what a completed fdatasync
covered (dropping the rest, keeping a random prefix of it, or zeroing one sector in it) at
its n-th I/O completion, then kills the whole server; the arena is removed as RAM would
be. The server restarts on the files and every acknowledged PUT is looked up.

In fsync mode no acknowledged write may be lost at any point. The same check fails in
buffered mode: the buffered test shows the simulation does lose acknowledged writes there,
so the fsync result is not a test that cannot fail."""
import json
import os
import random
import threading
import time

import requests

from conftest import Server

TRIALS = int(os.environ.get("L3KV_POWERLOSS_TRIALS", "12"))


def one_trial(mode, n, seed):
    """Flood PUTs until the simulated power cut kills the server; restart; return
    (acknowledged, lost, cut) where lost are acknowledged keys whose value is gone."""
    old = os.environ.get("L3KV_TEST_POWERLOSS")
    os.environ["L3KV_TEST_POWERLOSS"] = "%d:%d" % (n, seed)
    try:
        s = Server(config={"storage": {"durability": mode, "checkpoint_bytes": 1 << 30}}, workers=2)
    finally:
        if old is None:
            os.environ.pop("L3KV_TEST_POWERLOSS", None)
        else:
            os.environ["L3KV_TEST_POWERLOSS"] = old
    acked, lock, stop = {}, threading.Lock(), threading.Event()

    def client(t):
        i = 0
        with requests.Session() as h:
            while not stop.is_set():
                key = "p-%d-%d" % (t, i)
                doc = {"t": t, "i": i, "pad": "x" * (i % 7 * 100)}
                try:
                    r = h.put(s.url("/kv/" + key), data=json.dumps(doc), timeout=10)
                except requests.RequestException:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked[key] = doc
                i += 1

    threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while time.time() < deadline and s.proc.poll() is None:
        time.sleep(0.02)
    cut = s.proc.poll() is not None
    stop.set()
    for t in threads:
        t.join(30)
    # reap the supervisor (or, when the n-th completion never came, kill it) and remove the
    # arena it left in /dev/shm: RAM does not survive a power cut
    try:
        s.kill_all()
    except ProcessLookupError:  # the whole group is gone already
        s.log.close()
        for name in ("l3kv-l3kv.%d" % s.proc.pid, "l3kv-pid-%d" % s.proc.pid):
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass
    s2 = Server(config={"storage": {"durability": mode, "checkpoint_bytes": 1 << 30}}, workers=2,
                reuse_dir=s.dir)
    try:
        lost = []
        with requests.Session() as h:
            for key, doc in acked.items():
                r = h.get(s2.url("/kv/" + key), timeout=10)
                if r.status_code != 200 or r.json() != doc:
                    lost.append(key)
    finally:
        s2.stop()
    return len(acked), len(lost), cut


def run_trials(mode):
    rng = random.Random(int(os.environ.get("L3KV_POWERLOSS_SEED", "0")) or None)
    totals = {"trials": 0, "cuts": 0, "acked": 0, "lost": 0, "trials_with_loss": 0}
    for _ in range(TRIALS):
        n, seed = rng.randint(4, 80), rng.randint(1, 1 << 30)
        acked, lost, cut = one_trial(mode, n, seed)
        totals["trials"] += 1
        totals["cuts"] += cut
        totals["acked"] += acked
        totals["lost"] += lost
        totals["trials_with_loss"] += lost > 0
    print("power loss, %s mode: %s" % (mode, totals))
    assert totals["cuts"] >= TRIALS // 2, totals  # the simulated cut did happen
    assert totals["acked"] >= 10 * TRIALS, totals  # writes were acknowledged before it
    return totals


def test_fsync_mode_loses_no_acknowledged_write_at_a_power_cut():
    totals = run_trials(os.environ.get("L3KV_POWERLOSS_MODE", "fsync"))
    assert totals["lost"] == 0, totals


def test_buffered_mode_loses_acknowledged_writes_at_a_power_cut():
    """The control: the same cuts in buffered mode lose acknowledged writes."""
    totals = run_trials("buffered")
    assert totals["lost"] > 0, totals
