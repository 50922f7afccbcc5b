# SPDX-License-Identifier: MIT
"""GET /changes, the change feed: long poll, SSE and NDJSON against the real server.
A watcher sees every acknowledged change of a concurrent flood exactly once and per key in
version order; resuming with Last-Event-ID after disconnects leaves no gap and no
duplicate; prefix; since=now + list reaches the final state; a slow consumer is reset
while a fast one keeps going; an overwritten cursor is 410; streams end on a graceful stop."""
import json
import random
import socket
import threading

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
        while len(self.body) == n:
            if self._dechunk():
                return len(self.body) > n
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
    s = Server(workers=1, config={"storage": {"wal_buffer_bytes": 2 << 20}})
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
        last = None
        while True:
            ev = slow.sse()
            if ev is None:
                break
            last = ev
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
