# SPDX-License-Identifier: MIT
"""Restart and recovery through the WAL: a graceful stop keeps everything; with
durability "fsync" every acknowledged write survives SIGKILL of all processes."""
import json
import os
import threading
import uuid

import requests

from conftest import Server, wait_until


def test_graceful_restart_keeps_everything():
    s = Server(workers=2)
    docs = {}
    with requests.Session() as h:
        for i in range(30):
            key = "r-%d" % i
            doc = {"i": i, "s": "v" * i, "l": list(range(i % 5))}
            assert h.put(s.url("/kv/" + key), data=json.dumps(doc)).status_code == 200
            docs[key] = doc
        assert h.post(s.url("/kv/r-1?op=incr&field=i&val=41")).json()["value"] == 42
        docs["r-1"]["i"] = 42
        assert h.delete(s.url("/kv/r-2")).status_code == 200
        del docs["r-2"]
        assert h.patch(s.url("/kv/r-3"), data='{"m":true}',
                       headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
        docs["r-3"]["m"] = True
        last = int(h.get(s.url("/kv/r-3")).headers["ETag"].strip('"'))
    s.stop(keep_dir=True)
    s2 = Server(workers=2, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            for key, doc in docs.items():
                r = h.get(s2.url("/kv/" + key))
                assert r.status_code == 200 and r.json() == doc, key
            assert h.get(s2.url("/kv/r-2")).status_code == 404
            r = h.put(s2.url("/kv/new"), data="{}")
            assert int(r.headers["ETag"].strip('"')) > last  # versions continue after recovery
        assert "recovered" in s2.logtext()
    finally:
        s2.stop()


def test_fsync_acknowledged_writes_survive_sigkill():
    s = Server(config={"storage": {"durability": "fsync"}}, workers=2)
    acked = {}
    lock = threading.Lock()

    def writer(t):
        with requests.Session() as h:
            for i in range(25):
                key = "d-%d-%d" % (t, i)
                r = h.put(s.url("/kv/" + key), data=json.dumps({"t": t, "i": i}))
                if r.status_code == 200:
                    with lock:
                        acked[key] = {"t": t, "i": i}

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(acked) == 100
    s.kill_all()  # no graceful anything: supervisor, workers and the WAL writer die at once
    s2 = Server(config={"storage": {"durability": "fsync"}}, workers=2, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            missing = [k for k, v in acked.items() if h.get(s2.url("/kv/" + k)).json() != v]
        assert not missing, missing[:5]
    finally:
        s2.stop()


def test_checkpoint_then_restart():
    """Past storage.checkpoint_bytes the supervisor takes a snapshot and the covered WAL
    segments go; a restart loads the snapshot plus the newer WAL and loses nothing."""
    import time
    cfg = {"storage": {"checkpoint_bytes": 1 << 16}}
    s = Server(config=cfg, workers=2)
    docs = {}
    with requests.Session() as h:
        for i in range(120):
            key = "c-%d" % i
            docs[key] = {"i": i, "pad": "p" * 1000}
            assert h.put(s.url("/kv/" + key), data=json.dumps(docs[key])).status_code == 200
        deadline = time.time() + 20
        while time.time() < deadline and "checkpoint done" not in s.logtext():
            time.sleep(0.1)
        assert "checkpoint done" in s.logtext(), s.logtext()
        for i in range(120, 130):  # after the snapshot: only in the WAL
            key = "c-%d" % i
            docs[key] = {"i": i}
            assert h.put(s.url("/kv/" + key), data=json.dumps(docs[key])).status_code == 200
        assert h.delete(s.url("/kv/c-0")).status_code == 200
        del docs["c-0"]
    data = os.path.join(s.dir, "data")
    assert os.path.exists(os.path.join(data, "l3kv.snap"))
    s.stop(keep_dir=True)
    s2 = Server(config=cfg, workers=2, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            bad = [k for k, v in docs.items() if h.get(s2.url("/kv/" + k)).json() != v]
            assert not bad, bad[:5]
            assert h.get(s2.url("/kv/c-0")).status_code == 404
        assert "snapshot loaded" in s2.logtext()
    finally:
        s2.stop()


def test_ctrl_c_to_the_group_loses_no_acknowledged_write():
    """A terminal's Ctrl-C sends SIGINT to every process of the foreground group: the
    workers finish in flight, and the WAL writer (in its own group) is stopped last, so
    every write that was acknowledged is on disk after the restart (buffered mode)."""
    import signal
    import time
    s = Server(workers=2)
    acked, stop = {}, threading.Event()
    lock = threading.Lock()

    def writer(t):
        i = 0
        with requests.Session() as h:
            while not stop.is_set():
                key = "g-%d-%d" % (t, i)
                try:
                    r = h.put(s.url("/kv/" + key), data=json.dumps({"t": t, "i": i}), timeout=10)
                except requests.RequestException:
                    break
                if r.status_code == 200:
                    with lock:
                        acked[key] = {"t": t, "i": i}
                i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 50, "50 writes acknowledged before the stop")
    os.killpg(s.proc.pid, signal.SIGINT)
    s.proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(30)
    assert s.proc.returncode == 0, s.logtext()
    assert len(acked) > 20
    s.log.close()
    s2 = Server(workers=2, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            missing = [k for k, v in acked.items() if h.get(s2.url("/kv/" + k)).json() != v]
        assert not missing, (len(missing), missing[:5])
    finally:
        s2.stop()
