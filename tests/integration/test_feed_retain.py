# SPDX-License-Identifier: MIT
"""The change feed beyond the WAL ring: storage.changes_retention_bytes keeps WAL segments past
checkpoints, and the writer serves them to /changes. A cursor the ring has overwritten, or one
from before a graceful restart, resumes with every later change exactly once and in order; a
cursor older than the retention is 410; retained segments do not trigger checkpoints again;
a damaged retained segment is a clear 410, never a crash; /metrics shows what is retained."""
import glob
import json
import os
import threading
import time

import pytest
import requests

from conftest import Server, wait_until
from test_changes import Stream, flood, longpoll_all, now_cursor

RING = 2 << 20  # the smallest WAL ring: a few MiB of writes overwrite it
PAD = json.dumps({"pad": "p" * 60000})  # ~60 KB per PUT


def small_ring(**storage):
    cfg = {"wal_buffer_bytes": RING, "checkpoint_bytes": 1 << 20}
    cfg.update(storage)
    return {"storage": cfg}


def pad(s, n, prefix="pad-"):
    with requests.Session() as ses:
        for i in range(n):
            r = ses.put(s.url("/kv/%s%d" % (prefix, i % 16)), data=PAD, timeout=30)
            assert r.status_code in (200, 201), r.text


def checkpoints(s):
    return s.logtext().count("checkpoint done in")


def ring_oldest(s):
    """The oldest cursor the feed serves (the ring's, or the retained log's)."""
    return s.metrics()["changes"]["oldest_cursor"]


def test_overwritten_cursor_resumes_exactly_once_in_order():
    s = Server(workers=2, config=small_ring())
    try:
        c0 = now_cursor(s)
        keys = ["rt-%d" % i for i in range(10)]
        acked, lock = [], threading.Lock()
        ts = flood(s, keys, 150, 3, acked, lock)
        groups = []  # transactions: [(key, version)] of each, in order

        def transactions():
            with requests.Session() as ses:
                for i in range(60):
                    ops = [{"op": "put", "key": "rt-tx-%s" % k, "doc": {"i": i}} for k in "abc"]
                    r = ses.post(s.url("/batch"), data=json.dumps({"atomic": True, "success": ops}), timeout=30)
                    assert r.status_code == 200, r.text
                    g = [(o["key"], x["version"]) for o, x in zip(ops, r.json()["results"])]
                    with lock:
                        acked.extend(g)
                    groups.append(g)
        ts.append(threading.Thread(target=transactions))
        ts[-1].start()
        pad(s, 120)  # ~7 MiB: the ring (2 MiB) wraps several times, checkpoints run
        for t in ts:
            t.join(120)
        wait_until(lambda: checkpoints(s) >= 1, "a checkpoint while the log grows")
        # the ring (2 MiB) no longer holds c0 after ~8 MiB: the first changes come from the
        # retained segments, the last ones from the ring
        pad(s, 20)
        ch, end = longpoll_all(s, c0, "&prefix=rt-")
        got = [(c["key"], c["version"]) for c in ch]
        assert len(got) == len(set(got)), "duplicates"
        assert set(got) == set(acked), "missing %r extra %r" % (sorted(set(acked) - set(got))[:5],
                                                                sorted(set(got) - set(acked))[:5])
        cursors = [c["cursor"] for c in ch]
        assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
        per = {}
        for k, v in got:
            assert per.get(k, 0) < v, "key %s out of version order" % k
            per[k] = v
        at = {kv: i for i, kv in enumerate(got)}
        for g in groups:  # a transaction's changes are adjacent in the feed, in its order
            assert [at[kv] for kv in g] == list(range(at[g[0]], at[g[0]] + len(g))), g
        # the same through SSE, disconnecting at points along the way (Last-Event-ID resumes)
        seen, cur = [], c0
        while True:
            st = Stream(s.port, "/changes?prefix=rt-", {"Accept": "text/event-stream", "Last-Event-ID": cur})
            assert st.status == 200
            n = 0
            while n < 97:
                ev = st.sse()
                if ev.get("event") == "change":
                    seen.append(json.loads(ev["data"])["version"])
                    cur = ev["id"]
                    n += 1
                elif ev.get("event") == "progress" and json.loads(ev["data"])["cursor"] >= end:
                    break
            st.close()
            if n < 97:
                break
        assert seen == [v for _, v in got]
    finally:
        s.stop()


def test_cursors_from_before_a_graceful_restart_resume():
    s = Server(workers=1, config=small_ring())
    d = s.dir
    marks = []
    try:
        for i in range(4):
            marks.append(now_cursor(s))
            requests.put(s.url("/kv/gr-%d" % i), data=json.dumps({"i": i}), timeout=10)
            pad(s, 30)  # each mark ends up beyond the ring
        s.stop(keep_dir=True)
        s = Server(workers=1, config=small_ring(), reuse_dir=d)
        for i, m in enumerate(marks):  # before this run has logged anything
            ch, _ = longpoll_all(s, m, "&prefix=gr-")
            assert [c["key"] for c in ch] == ["gr-%d" % j for j in range(i, 4)], i
        requests.put(s.url("/kv/gr-after"), data="{}", timeout=10)
        for i, m in enumerate(marks):
            ch, _ = longpoll_all(s, m, "&prefix=gr-")
            assert [c["key"] for c in ch] == ["gr-%d" % j for j in range(i, 4)] + ["gr-after"], i
    finally:
        s.stop()


def test_410_once_the_retention_has_passed():
    s = Server(workers=1, config=small_ring(changes_retention_bytes=2 << 20))
    try:
        c0 = now_cursor(s)
        pad(s, 20)
        c1 = now_cursor(s)
        requests.put(s.url("/kv/keep-1"), data="{}", timeout=10)
        pad(s, 200)  # ~12 MiB: far past a 2 MiB retention
        wait_until(lambda: ring_oldest(s) > c1, "the retention passing c1")
        r = requests.get(s.url("/changes?since=" + c0), timeout=10)
        assert r.status_code == 410 and r.json()["error"] == "cursor_expired", r.text
        st = Stream(s.port, "/changes?feed=sse&since=" + c1)
        assert st.status == 410
        st.close()
        m = s.metrics()["changes"]
        # segments are a quarter of the retention, so about that much stays, never more
        assert 1 << 20 <= m["retained_bytes"] <= 2 << 20, m
        assert m["oldest_cursor"] > c1
    finally:
        s.stop()


def test_retained_log_does_not_trigger_checkpoints_again():
    s = Server(workers=1, config=small_ring())
    try:
        pad(s, 60)  # ~3.6 MiB written, checkpoint every 1 MiB
        wait_until(lambda: checkpoints(s) >= 1, "a checkpoint")

        def settled():  # all written, and what is not kept for the feed is below checkpoint_bytes
            m = s.metrics()
            return m["wal"]["pending_bytes"] == 0 and m["wal"]["disk_bytes"] - m["changes"]["retained_bytes"] < 1 << 20
        wait_until(settled, "the log below checkpoint_bytes once the kept segments are left out")
        n = checkpoints(s)
        m = s.metrics()["changes"]
        assert m["retained_bytes"] >= 1 << 20, m  # the checkpointed segments are kept
        time.sleep(2.5)  # idle, two size checks: the kept bytes must not count toward checkpoint_bytes
        assert checkpoints(s) == n, s.logtext()[-2000:]
        prom = requests.get(s.url("/metrics?format=prometheus"), timeout=10).text
        assert "\nl3kv_changes_retained_bytes %d\n" % m["retained_bytes"] in prom, prom[:3000]
    finally:
        s.stop()


def test_without_retention_an_overwritten_cursor_is_410():
    s = Server(workers=1, config=small_ring(changes_retention_bytes=0))
    try:
        c0 = now_cursor(s)
        pad(s, 80)
        r = requests.get(s.url("/changes?since=" + c0), timeout=10)
        assert r.status_code == 410 and r.json()["error"] == "cursor_expired"
        assert s.metrics()["changes"]["retained_bytes"] == 0
    finally:
        s.stop()


def flip_in_retained_segment(s):
    """Flip one byte in the middle of the oldest closed segment; its path."""
    segs = sorted(glob.glob(os.path.join(s.dir, "data", "*.wal*")))
    segs = [p for p in segs if p[-4:].isdigit() or p.rsplit(".", 1)[-1].isdigit()]
    assert len(segs) >= 2, segs
    p = segs[0]
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0x5A]))
    return p


def test_damaged_retained_segment_is_410_not_a_crash():
    s = Server(workers=1, config=small_ring())
    try:
        c0 = now_cursor(s)
        requests.put(s.url("/kv/dm-0"), data="{}", timeout=10)
        pad(s, 80)
        wait_until(lambda: checkpoints(s) >= 1, "a checkpoint")
        path = flip_in_retained_segment(s)
        r = requests.get(s.url("/changes?since=" + c0), timeout=10)
        assert r.status_code == 410, r.text
        assert r.json()["error"] == "cursor_expired" and "failed its checks" in r.json()["detail"]
        st = Stream(s.port, "/changes?feed=sse&since=" + c0)
        assert st.status == 410
        st.close()
        wait_until(lambda: os.path.basename(path) in s.logtext(), "the log naming the segment")
        # the server goes on: writes, reads and a live feed work
        c1 = now_cursor(s)
        assert requests.put(s.url("/kv/dm-1"), data="{}", timeout=10).status_code in (200, 201)
        ch, _ = longpoll_all(s, c1, "&prefix=dm-")
        assert [c["key"] for c in ch] == ["dm-1"]
    finally:
        s.stop()


def test_watchers_replaying_the_log_do_not_stall_writes():
    """Several watchers catching up from the retained log at once while a client writes:
    every watcher gets the whole range, and the writes complete meanwhile."""
    s = Server(workers=1, config=small_ring())
    try:
        c0 = now_cursor(s)
        for i in range(300):
            requests.put(s.url("/kv/w-%d" % i), data=json.dumps({"i": i}), timeout=10)
        pad(s, 80)
        results, errs = {}, []

        def watch(n):
            try:
                ch, _ = longpoll_all(s, c0, "&prefix=w-")
                results[n] = [c["key"] for c in ch]
            except Exception as e:  # noqa: BLE001 - reported below
                errs.append(repr(e))
        ts = [threading.Thread(target=watch, args=(n,)) for n in range(6)]
        for t in ts:
            t.start()
        done = 0
        with requests.Session() as ses:
            while any(t.is_alive() for t in ts) and done < 2000:
                assert ses.put(s.url("/kv/other"), data="{}", timeout=10).status_code in (200, 201)
                done += 1
        for t in ts:
            t.join(120)
        assert not errs, errs
        want = ["w-%d" % i for i in range(300)]
        assert all(results[n] == want for n in range(6)), {n: len(v) for n, v in results.items()}
    finally:
        s.stop()
