# SPDX-License-Identifier: MIT
"""GET /changes, the change feed: long poll, SSE and NDJSON against the real server.
A watcher sees every acknowledged change of a concurrent flood exactly once and per key in
version order; resuming with Last-Event-ID after disconnects leaves no gap and no
duplicate; prefix; since=now + list reaches the final state; a slow consumer is reset
while a fast one keeps going; an overwritten cursor is 410; streams end on a graceful stop."""
import glob
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import Server, wait_until


class Stream:
    """One streaming GET over a raw socket (HTTP/1.1, chunked body), parsed incrementally."""

    def __init__(self, port, path, headers=None, rcvbuf=None, timeout=60):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        hs = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, hs)).encode())
        self.raw = b""
        self.body = b""
        self.eof = False
        self.status = None
        self.headers = {}
        while b"\r\n\r\n" not in self.raw:
            self._recv()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        for l in lines[1:]:
            k, v = l.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()

    def _recv(self):
        d = self.sock.recv(65536)
        if not d:
            self.eof = True
            raise EOFError
        self.raw += d

    def _dechunk(self):
        while True:
            if b"\r\n" not in self.raw:
                return False
            size_s, rest = self.raw.split(b"\r\n", 1)
            size = int(size_s.split(b";")[0], 16)
            if size == 0:
                self.eof = True
                return True
            if len(rest) < size + 2:
                return False
            self.body += rest[:size]
            self.raw = rest[size + 2:]

    def more(self):
        """Read until at least one more body byte (or the end). False at the end."""
        n = len(self.body)
        while True:
            if self._dechunk():
                return len(self.body) > n
            if len(self.body) > n:  # what was buffered already completed a chunk
                return True
            try:
                self._recv()
            except EOFError:
                return False
        return True

    def take(self, sep):
        """Next sep-terminated unit of the body, or None at the end of the stream."""
        while sep not in self.body:
            if self.eof or not self.more():
                return None
        unit, self.body = self.body.split(sep, 1)
        return unit.decode()

    def sse(self):
        """Next SSE event as a dict {id, event, data} (comments skipped), None at the end."""
        while True:
            block = self.take(b"\n\n")
            if block is None:
                return None
            ev = {}
            for line in block.split("\n"):
                if line.startswith(":") or not line:
                    continue
                k, _, v = line.partition(":")
                ev[k] = v[1:] if v.startswith(" ") else v
            if ev:
                return ev

    def last_sse(self):
        """Read events until the stream ends; the last one (None if there was none)."""
        last = None
        while True:
            ev = self.sse()
            if ev is None:
                return last
            last = ev

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def fsrv():
    s = Server(workers=2)
    yield s
    s.stop()


def now_cursor(s):
    r = requests.get(s.url("/changes?since=now&timeout=0"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["cursor"]


def longpoll_all(s, cursor, params=""):
    """Every change after cursor, following the long poll until it comes back empty."""
    out = []
    while True:
        r = requests.get(s.url("/changes?since=%s&timeout=0%s" % (cursor, params)), timeout=30)
        assert r.status_code == 200, r.text
        j = r.json()
        out += j["changes"]
        if not j["changes"]:
            return out, j["cursor"]
        assert j["cursor"] > cursor
        cursor = j["cursor"]


def inflight(s):
    """Requests in flight on s, not counting the /metrics request that asks."""
    return requests.get(s.url("/metrics"), timeout=10).json()["system"]["inflight_requests"] - 1


def test_longpoll_and_parameters(fsrv):
    c0 = now_cursor(fsrv)
    requests.put(fsrv.url("/kv/lp-a"), data='{"n":1}', timeout=10)
    requests.put(fsrv.url("/kv/lp-b"), data='{"n":2}', timeout=10)
    requests.delete(fsrv.url("/kv/lp-a"), timeout=10)
    ch, c1 = longpoll_all(fsrv, c0, "&include_docs=true")
    mine = [c for c in ch if c["key"].startswith("lp-")]
    assert [(c["key"], c["op"]) for c in mine] == [("lp-a", "put"), ("lp-b", "put"), ("lp-a", "delete")]
    assert mine[1]["doc"] == {"n": 2} and mine[2]["doc"] is None
    cursors = [c["cursor"] for c in ch]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    ch, _ = longpoll_all(fsrv, c0, "&prefix=lp-b")
    assert [c["key"] for c in ch] == ["lp-b"]
    r = requests.get(fsrv.url("/changes?since=%s&limit=1" % c0), timeout=10)
    assert len(r.json()["changes"]) == 1
    # a long poll waits for the next change
    box = {}
    t = threading.Thread(target=lambda: box.update(r=requests.get(
        fsrv.url("/changes?since=%s&timeout=30000" % c1), timeout=60)))
    t.start()
    wait_until(lambda: inflight(fsrv) >= 1, "the long poll waiting")
    requests.put(fsrv.url("/kv/lp-c"), data="{}", timeout=10)
    t.join(60)
    assert [c["key"] for c in box["r"].json()["changes"]] == ["lp-c"]
    # an empty answer after the timeout
    r = requests.get(fsrv.url("/changes?since=now&timeout=200"), timeout=30)
    assert r.status_code == 200 and r.json()["changes"] == []
    for q in ("feed=x", "since=abc", "since=%s0" % c0, "limit=0", "limit=x", "include_docs=yes",
              "heartbeat=0", "timeout=-1", "since=%s" % (c0[:16] + "f" * 16)):
        r = requests.get(fsrv.url("/changes?" + q), timeout=10)
        assert r.status_code == 400, (q, r.text)
        assert r.json()["error"] in ("bad_value", "bad_cursor")
    r = requests.get(fsrv.url("/changes?since=" + "0" * 16 + c0[16:]), timeout=10)
    assert r.status_code == 410 and r.json()["error"] == "cursor_expired"


def test_sse_continuous_and_heartbeat(fsrv):
    c0 = now_cursor(fsrv)
    st = Stream(fsrv.port, "/changes?heartbeat=100&prefix=hb-", {"Accept": "text/event-stream",
                                                                 "Last-Event-ID": c0})
    assert st.status == 200 and st.headers["content-type"] == "text/event-stream"
    requests.put(fsrv.url("/kv/hb-1"), data="{}", timeout=10)
    ev = st.sse()
    while ev["event"] != "change":
        ev = st.sse()
    assert json.loads(ev["data"])["key"] == "hb-1" and ev["id"] > c0
    ev = st.sse()
    assert ev["event"] == "progress" and json.loads(ev["data"])["cursor"] >= ev.get("id", "")
    st.close()
    nd = Stream(fsrv.port, "/changes?feed=continuous&limit=2&since=" + c0)
    requests.put(fsrv.url("/kv/hb-2"), data="{}", timeout=10)
    lines = []
    while True:
        l = nd.take(b"\n")
        if l is None:
            break
        if l:
            lines.append(json.loads(l))
    assert len(lines) == 2 and all("cursor" in l for l in lines)  # limit ends the stream


def flood(s, keys, n_per_thread, threads, acked, lock):
    """PUT/PATCH/set/incr/DELETE on shared keys from several threads; record each
    acknowledged (key, version)."""
    def run(tid):
        rnd = random.Random(tid)
        with requests.Session() as ses:
            for i in range(n_per_thread):
                k = rnd.choice(keys)
                op = rnd.randrange(5)
                if op == 0:
                    r = ses.put(s.url("/kv/" + k), data=json.dumps({"t": tid, "i": i, "c": 0}), timeout=30)
                elif op == 1:
                    r = ses.patch(s.url("/kv/" + k), data=json.dumps({"p": i}),
                                  headers={"Content-Type": "application/merge-patch+json"}, timeout=30)
                elif op == 2:
                    r = ses.post(s.url("/kv/%s?op=set_int&field=s&val=%d" % (k, i)), timeout=30)
                elif op == 3:
                    r = ses.post(s.url("/kv/%s?op=incr&field=c" % k), timeout=30)
                else:
                    r = ses.delete(s.url("/kv/" + k), timeout=30)
                if r.status_code in (200, 201):
                    with lock:
                        acked.append((k, r.json()["version"]))
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    return ts


def test_flood_exactly_once_and_resume(fsrv):
    keys = ["fl-%d" % i for i in range(12)]
    c0 = now_cursor(fsrv)
    seen, resumed = [], []
    done = threading.Event()
    errors = []

    def watch():
        st = Stream(fsrv.port, "/changes?feed=sse&prefix=fl-&since=" + c0)
        while True:
            ev = st.sse()
            if ev is None:
                errors.append("stream ended")
                return
            if ev.get("event") == "change":
                d = json.loads(ev["data"])
                seen.append((d["key"], d["version"], ev["id"]))
                if d["key"] == "fl-end":
                    return

    def watch_resuming():
        rnd = random.Random(7)
        cur = c0
        while True:
            st = Stream(fsrv.port, "/changes?prefix=fl-", {"Accept": "text/event-stream", "Last-Event-ID": cur})
            if st.status != 200:
                errors.append("resume status %d" % st.status)
                return
            for _ in range(rnd.randrange(1, 60)):
                ev = st.sse()
                if ev is None:
                    break
                if ev.get("event") == "change":
                    d = json.loads(ev["data"])
                    resumed.append((d["key"], d["version"]))
                    cur = ev["id"]
                    if d["key"] == "fl-end":
                        st.close()
                        return
            st.close()  # disconnect at a random point

    w1 = threading.Thread(target=watch)
    w2 = threading.Thread(target=watch_resuming)
    w1.start()
    w2.start()
    acked, lock = [], threading.Lock()
    for t in flood(fsrv, keys, 250, 4, acked, lock):
        t.join(120)
    r = requests.put(fsrv.url("/kv/fl-end"), data="{}", timeout=10)
    end_v = r.json()["version"]
    w1.join(120)
    w2.join(120)
    assert not errors, errors
    got = [(k, v) for k, v, _ in seen]
    assert len(got) == len(set(got)), "duplicates"
    assert set(acked) <= set(got), "missing: %r" % sorted(set(acked) - set(got))[:10]
    assert set(got) - set(acked) <= {("fl-end", end_v)}
    ids = [i for _, _, i in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    per = {}
    for k, v in got:
        assert per.get(k, 0) < v, "key %s out of order" % k
        per[k] = v
    assert resumed == got, "resume with Last-Event-ID: gap or duplicate"


def test_unfiltered_streams_share_one_text_and_agree(fsrv):
    """Several streams of one worker with no prefix and no documents send each change's text
    as the first of them formatted it (copied, in runs): SSE and NDJSON streams, one with a
    limit, must still each see every acknowledged change once, in the same order, with the
    SSE ids equal to the NDJSON cursors; the limited one ends after exactly its limit."""
    keys = ["sh-%d" % i for i in range(8)]
    c0 = now_cursor(fsrv)
    limit = 150
    results = {}

    def watch(name, mode, extra=""):
        st = Stream(fsrv.port, "/changes?feed=%s&since=%s%s" % (mode, c0, extra))
        got = []
        while True:
            if mode == "sse":
                ev = st.sse()
                if ev is None:
                    break
                if ev.get("event") != "change":
                    continue
                d = json.loads(ev["data"])
                got.append((d["key"], d["version"], ev["id"]))
            else:
                line = st.take(b"\n")
                if line is None:
                    break
                if not line.strip():
                    continue
                d = json.loads(line)
                got.append((d["key"], d["version"], d["cursor"]))
            if d["key"] == "sh-end":
                break
        st.close()
        results[name] = got

    specs = [("sse%d" % i, "sse", "") for i in range(3)] + [("nd%d" % i, "continuous", "") for i in range(2)]
    specs.append(("limited", "sse", "&limit=%d" % limit))
    ths = [threading.Thread(target=watch, args=sp) for sp in specs]
    for t in ths:
        t.start()
    acked, lock = [], threading.Lock()
    for t in flood(fsrv, keys, 200, 4, acked, lock):
        t.join(120)
    requests.put(fsrv.url("/kv/sh-end"), data="{}", timeout=10)
    for t in ths:
        t.join(120)
    assert set(results) == {sp[0] for sp in specs}, "a watcher did not finish"
    ref = results["sse0"]
    for name, got in results.items():
        if name == "limited":
            assert got == ref[:limit], "the limited stream differs from the others' first %d" % limit
            continue
        assert got == ref, "%s differs from sse0" % name
    kv = [(k, v) for k, v, _ in ref]
    assert len(kv) == len(set(kv)), "duplicates"
    assert set(acked) <= set(kv), "missing: %r" % sorted(set(acked) - set(kv))[:10]
    ids = [i for _, _, i in ref]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_since_now_then_list_reaches_final_state(fsrv):
    keys = ["sn-%d" % i for i in range(20)]
    for k in keys[:10]:
        requests.put(fsrv.url("/kv/" + k), data='{"c":0}', timeout=10)
    acked, lock = [], threading.Lock()
    ts = flood(fsrv, keys, 150, 3, acked, lock)
    wait_until(lambda: len(acked) >= 10, "the flood under way")
    cur = now_cursor(fsrv)  # take since=now, then list, then follow
    state = {}
    for k in requests.get(fsrv.url("/kv/?prefix=sn-&limit=1000"), timeout=10).json()["keys"]:
        r = requests.get(fsrv.url("/kv/" + k), timeout=10)
        if r.status_code == 200:
            state[k] = r.json()
    for t in ts:
        t.join(120)
    ch, _ = longpoll_all(fsrv, cur, "&prefix=sn-&include_docs=true")
    for c in ch:
        if c["op"] == "delete" or c["doc"] is None:
            state.pop(c["key"], None)
        else:
            state[c["key"]] = c["doc"]
    final = {}
    for k in keys:
        r = requests.get(fsrv.url("/kv/" + k), timeout=10)
        if r.status_code == 200:
            final[k] = r.json()
    assert state == final


def test_slow_consumer_reset_and_410():
    # only the ring (no log retained): a cursor it overwrote cannot be served
    s = Server(workers=1, config={"storage": {"wal_buffer_bytes": 2 << 20, "changes_retention_bytes": 0}})
    try:
        c0 = now_cursor(s)
        slow = Stream(s.port, "/changes?feed=sse&include_docs=true&since=" + c0, rcvbuf=4096)
        fast_n = []
        fast_reset = []

        def fast():
            st = Stream(s.port, "/changes?feed=sse&since=" + c0)
            while True:
                ev = st.sse()
                if ev is None:
                    return
                if ev.get("event") == "reset":
                    fast_reset.append(ev)
                    return
                if ev.get("event") == "change":
                    d = json.loads(ev["data"])
                    fast_n.append(d["key"])
                    if d["key"] == "sl-end":
                        return
        ft = threading.Thread(target=fast)
        ft.start()
        big = json.dumps({"pad": "x" * 8000})
        n = 3000

        refused = []  # an assert in a thread would only warn: the main thread checks this

        def put(lo, hi):
            with requests.Session() as ses:
                for i in range(lo, hi):
                    r = ses.put(s.url("/kv/sl-%d" % (i % 50)), data=big, timeout=30)
                    if r.status_code != 200:
                        refused.append((i, r.status_code, r.text[:200]))
        ws = [threading.Thread(target=put, args=(i * n // 3, (i + 1) * n // 3)) for i in range(3)]
        for w in ws:
            w.start()
        for w in ws:
            w.join(300)
        assert not any(w.is_alive() for w in ws) and not refused, refused[:5]
        requests.put(s.url("/kv/sl-end"), data="{}", timeout=10)
        ft.join(120)
        assert not fast_reset and len(fast_n) == n + 1
        # the slow one now reads: its events stop at a reset carrying its cursor, then the end
        last = slow.last_sse()
        assert last is not None and last["event"] == "reset", last
        cur = json.loads(last["data"])["cursor"]
        r = requests.get(s.url("/changes?since=" + cur), timeout=10)
        assert r.status_code == 410 and r.json()["error"] == "cursor_expired"
        r = requests.get(s.url("/changes?since=" + c0), timeout=10)
        assert r.status_code == 410
    finally:
        s.stop()


def test_graceful_stop_ends_streams():
    s = Server(workers=1)
    st = Stream(s.port, "/changes?feed=sse")
    lp = {}
    t = threading.Thread(target=lambda: lp.update(r=requests.get(s.url("/changes?timeout=60000"), timeout=60)))
    t.start()
    wait_until(lambda: inflight(s) >= 2, "the stream and the long poll in flight")
    s.stop()  # exit code 0 checked there
    t.join(30)
    assert lp["r"].status_code == 200
    while st.sse() is not None:
        pass
    assert st.eof


def test_op_names(fsrv):
    """Each write names its own op: put, merge, patch, set (every op=set_*), incr, delete."""
    c0 = now_cursor(fsrv)
    k = fsrv.url("/kv/op-a")
    assert requests.put(k, data='{"n":1,"s":"x","b":true}', timeout=10).status_code in (200, 201)
    assert requests.patch(k, data='{"m":1}', headers={"Content-Type": "application/merge-patch+json"},
                          timeout=10).status_code == 200
    assert requests.patch(k, data='[{"op":"add","path":"/p","value":2}]',
                          headers={"Content-Type": "application/json-patch+json"}, timeout=10).status_code == 200
    for q in ("op=set_int&field=n&val=5", "op=set_double&field=d&val=1.5", "op=set_str&field=s&val=y",
              "op=set_bool&field=b&val=false", "op=set_null&field=z", "op=incr&field=n",
              "op=incr&field=n&val=-3"):
        r = requests.post(k + "?" + q, timeout=10)
        assert r.status_code == 200, (q, r.text)
    assert requests.delete(k, timeout=10).status_code == 200
    ch, _ = longpoll_all(fsrv, c0, "&prefix=op-")
    assert [c["op"] for c in ch] == ["put", "merge", "patch", "set", "set", "set", "set", "set",
                                     "incr", "incr", "delete"]
    vs = [c["version"] for c in ch]
    assert vs == sorted(vs) and len(set(vs)) == len(vs)


def changes_metrics(s):
    return s.metrics()["changes"]


def wait_metric(s, pred, what, deadline=30):
    end = time.time() + deadline
    while True:
        m = changes_metrics(s)
        if pred(m):
            return m
        assert time.time() < end, "%s: %r" % (what, m)
        time.sleep(0.02)


def test_metrics_counters_exact():
    """watchers, events_sent_total, resets_total and oldest_cursor after a known sequence."""
    s = Server(workers=2)
    try:
        m = changes_metrics(s)
        assert m["watchers"] == 0 and m["events_sent_total"] == 0 and m["resets_total"] == 0
        assert len(m["oldest_cursor"]) == 32
        c0 = now_cursor(s)  # answered at once: never a watcher, nothing sent
        assert m["oldest_cursor"][:16] == c0[:16] and m["oldest_cursor"] <= c0
        # short heartbeats: a closed client is noticed when the next one is written
        streams = [Stream(s.port, "/changes?feed=sse&heartbeat=200&prefix=mc-&since=" + c0) for _ in range(3)]
        nd = Stream(s.port, "/changes?feed=continuous&heartbeat=200&prefix=mc-&since=" + c0)
        wait_metric(s, lambda m: m["watchers"] == 4, "four watchers")
        for i in range(5):
            requests.put(s.url("/kv/mc-%d" % i), data="{}", timeout=10)
        requests.put(s.url("/kv/other"), data="{}", timeout=10)  # filtered out: not sent
        for st in streams:
            got = 0
            while got < 5:
                ev = st.sse()
                if ev.get("event") == "change":
                    got += 1
        got = 0
        while got < 5:
            if nd.take(b"\n"):
                got += 1
        lp = requests.get(s.url("/changes?since=%s&prefix=mc-&limit=2" % c0), timeout=10).json()
        assert len(lp["changes"]) == 2
        m = wait_metric(s, lambda m: m["events_sent_total"] >= 22, "22 events")
        assert m["events_sent_total"] == 4 * 5 + 2 and m["resets_total"] == 0
        for st in streams + [nd]:
            st.close()
        m = wait_metric(s, lambda m: m["watchers"] == 0, "watchers gone")
        assert m["events_sent_total"] == 22
    finally:
        s.stop()


def writer_pid(s):
    """The WAL writer's pid, once the writer has published it (it does so when its setup is done,
    which may come after the server first answers)."""
    return wait_until(lambda: s.metrics()["wal"]["writer_pid"], "the WAL writer publishing its pid")


def stopped_writer(s):
    """Context: the WAL writer process stopped (nothing becomes durable) until the block ends."""
    import contextlib
    import os
    import signal

    @contextlib.contextmanager
    def cm():
        pid = writer_pid(s)
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)
    return cm()


def test_durable_only_in_buffered_mode():
    """Buffered mode: a plain watcher sees a write at once, a durable_only=true one only after
    the WAL writer made it durable."""
    s = Server(workers=1)
    try:
        c0 = now_cursor(s)
        with stopped_writer(s):
            r = requests.put(s.url("/kv/du-1"), data="{}", timeout=10)
            assert r.status_code in (200, 201)
            plain = requests.get(s.url("/changes?since=%s&timeout=5000" % c0), timeout=30).json()
            assert [c["key"] for c in plain["changes"]] == ["du-1"]
            dur = requests.get(s.url("/changes?since=%s&durable_only=true&timeout=500" % c0), timeout=30).json()
            assert dur["changes"] == [], "durable_only sent a change that is not durable"
        dur = requests.get(s.url("/changes?since=%s&durable_only=true&timeout=20000" % c0), timeout=60).json()
        assert [c["key"] for c in dur["changes"]] == ["du-1"]
    finally:
        s.stop()


def test_fsync_mode_sends_only_durable_changes():
    """fsync mode: while the write is not durable (writer stopped) no watcher gets it, even
    without durable_only; once it is durable, the write is acknowledged and sent."""
    s = Server(workers=1, config={"storage": {"durability": "fsync"}})
    try:
        c0 = now_cursor(s)
        box = {}
        with stopped_writer(s):
            t = threading.Thread(target=lambda: box.update(
                r=requests.put(s.url("/kv/fs-1"), data="{}", timeout=60)))
            t.start()
            # the record is in the ring (published) but not durable
            end = time.time() + 30
            while s.metrics()["wal"]["head"] <= int(c0[16:], 16):
                assert time.time() < end, "the write never reached the ring"
                time.sleep(0.02)
            lp = requests.get(s.url("/changes?since=%s&timeout=500" % c0), timeout=30).json()
            assert lp["changes"] == [], "fsync mode sent a change that is not durable"
            assert "r" not in box
        t.join(60)
        assert box["r"].status_code in (200, 201)
        lp = requests.get(s.url("/changes?since=%s&timeout=20000" % c0), timeout=60).json()
        assert [c["key"] for c in lp["changes"]] == ["fs-1"]
    finally:
        s.stop()


def test_thousand_sse_watchers():
    """1,000 concurrent SSE streams on one server: each gets the change."""
    import resource
    import selectors
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.fail("RLIMIT_NOFILE hard limit %d is below %d" % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    s = Server(workers=2, config={"server": {"max_connections": 4096}})
    socks = []
    sel = selectors.DefaultSelector()
    try:
        c0 = now_cursor(s)
        for i in range(n):
            so = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            so.sendall(("GET /changes?feed=sse&prefix=tw-&since=%s HTTP/1.1\r\nHost: x\r\n\r\n" % c0).encode())
            so.setblocking(False)
            socks.append(so)
            sel.register(so, selectors.EVENT_READ, i)
        wait_metric(s, lambda m: m["watchers"] == n, "%d watchers" % n, deadline=60)
        r = requests.put(s.url("/kv/tw-1"), data='{"x":1}', timeout=10)
        version = r.json()["version"]
        buf = [b""] * n
        done = set()
        end = time.time() + 60
        while len(done) < n and time.time() < end:
            for key, _ in sel.select(timeout=1):
                i = key.data
                d = key.fileobj.recv(65536)
                assert d, "stream %d ended" % i
                buf[i] += d
                if b"event: change" in buf[i] and b'"key":"tw-1"' in buf[i] and i not in done:
                    done.add(i)
                    sel.unregister(key.fileobj)
        assert len(done) == n, "%d of %d watchers got the change" % (len(done), n)
        for b in buf:
            assert b.startswith(b"HTTP/1.1 200") and (b'"version":%d' % version) in b
    finally:
        sel.close()
        for so in socks:
            so.close()
        s.stop()


def test_cursor_from_before_graceful_restart_resumes():
    """The final cursor of a run that stopped gracefully resumes after the restart: every
    later change exactly once, and so does a cursor behind it (the log is retained); one from
    before a crash is 410."""
    s = Server(workers=1)
    d = s.dir
    c0 = now_cursor(s)
    requests.put(s.url("/kv/gr-a"), data="{}", timeout=10)
    st = Stream(s.port, "/changes?feed=sse&prefix=gr-&heartbeat=3600000&since=" + c0)
    ev = st.sse()
    while ev.get("event") != "change":
        ev = st.sse()
    assert json.loads(ev["data"])["key"] == "gr-a"
    lp = requests.get(s.url("/changes?since=%s&prefix=gr-&timeout=0" % c0), timeout=10).json()
    behind, c_lp = c0, lp["cursor"]
    s.stop(keep_dir=True)
    # the stop ends the stream with a progress event carrying the position reached
    last = st.last_sse()
    assert last is not None and last["event"] == "progress", last
    c_sse = json.loads(last["data"])["cursor"]
    assert c_sse == c_lp and c_sse > c0
    s = Server(workers=1, reuse_dir=d)
    try:
        assert now_cursor(s) > c_sse  # strictly increasing across the restart
        for i in range(3):
            requests.put(s.url("/kv/gr-%d" % i), data="{}", timeout=10)
        ch, _ = longpoll_all(s, c_sse, "&prefix=gr-")
        assert [c["key"] for c in ch] == ["gr-0", "gr-1", "gr-2"]
        assert all(c["cursor"] > c_sse for c in ch)
        sse = Stream(s.port, "/changes?prefix=gr-", {"Accept": "text/event-stream", "Last-Event-ID": c_sse})
        got = []
        while len(got) < 3:
            ev = sse.sse()
            if ev.get("event") == "change":
                got.append(json.loads(ev["data"])["key"])
        assert got == ["gr-0", "gr-1", "gr-2"]
        sse.close()
        # a cursor behind the final one resumes too, from the retained log: no gap, no duplicate
        ch, _ = longpoll_all(s, behind, "&prefix=gr-")
        assert [c["key"] for c in ch] == ["gr-a", "gr-0", "gr-1", "gr-2"]
        c_crash = now_cursor(s)
        s.kill_all()
        s = Server(workers=1, reuse_dir=d)
        r = requests.get(s.url("/changes?since=" + c_crash), timeout=10)
        assert r.status_code == 410 and r.json()["error"] == "cursor_expired"
    finally:
        s.stop()


def test_retained_read_waits_for_a_late_writer_socket():
    """A worker can serve before the writer's feed socket listens (it comes after the writer's
    setup): a cursor read through the writer waits for it a while instead of a 503."""
    s = Server(workers=1)
    d = s.dir
    c0 = now_cursor(s)
    requests.put(s.url("/kv/ws-a"), data="{}", timeout=10)
    s.stop(keep_dir=True)
    s = Server(workers=1, reuse_dir=d)
    try:
        sock = os.path.join(d, "data", "feed.sock")
        wait_until(lambda: os.path.exists(sock), "the feed socket")
        os.rename(sock, sock + ".away")
        out = {}

        def ask():
            out["r"] = requests.get(s.url("/changes?since=%s&prefix=ws-&timeout=0" % c0), timeout=30)

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(1.0)
        assert "r" not in out, out["r"].text  # not answered 503 while the socket is missing
        os.rename(sock + ".away", sock)
        t.join(30)
        r = out["r"]
        assert r.status_code == 200, r.text
        assert [c["key"] for c in r.json()["changes"]] == ["ws-a"]
    finally:
        s.stop()

def test_inspector_names_ops_as_the_feed_does(tmp_path):
    """l3kv-inspect wal names each record's op as the change feed does (an incr is "incr")."""
    inspect = os.path.join(os.path.dirname(os.environ["L3KV_BIN"]), "..", "..", "tools", "l3kv-inspect",
                           "l3kv-inspect")
    s = Server(workers=1)
    try:
        k = s.url("/kv/ins-a")
        assert requests.put(k, data='{"n":1}', timeout=10).status_code == 200
        for q in ("op=incr&field=n", "op=set_int&field=n&val=7", "op=incr&field=n&val=-2"):
            assert requests.post(k + "?" + q, timeout=10).status_code == 200, q
        assert requests.delete(k, timeout=10).status_code == 200
    finally:
        s.stop(keep_dir=True)
    data = os.path.join(s.dir, "data")
    ops = []
    for seg in sorted(glob.glob(os.path.join(data, "data.wal.[0-9]*"))):
        p = subprocess.run([inspect, "--json", "wal", seg], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        for line in p.stdout.splitlines():
            j = json.loads(line)
            if not j.get("summary") and j.get("key") == "ins-a":
                ops.append(j["op"])
    shutil.rmtree(s.dir, ignore_errors=True)
    assert ops == ["put", "incr", "set", "incr", "delete"], ops
