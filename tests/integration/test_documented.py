# SPDX-License-Identifier: MIT
"""Documented behaviour, each shown over real HTTP against the real binary: every error
name of docs/api.md's error table (a test parses the table and fails listing the names no
integration test asserts), `Upgrade: h2c`, If-Match lists and `*`, the listing's `count`,
`/kv` and `limit` range, the other PUT content types, 503 `overloaded` on a full WAL ring,
the port-in-use probe, conflicting `min_threads`/`min_workers`, the SIGRTMIN checkpoint,
the restart backoff of a crashed worker, HTTP/2 REFUSED_STREAM for a body far above the limit."""
import glob
import json
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import requests

from conftest import BIN, Server, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
API_MD = os.path.join(HERE, "..", "..", "docs", "api.md")

# Names in the table that no HTTP request can produce on a server that passes --check, with
# the reason; everything else must be asserted by name somewhere in this directory.
NOT_REACHABLE = {
    # the ring is at least 69 632 bytes and a change is logged in pieces of 7/8 of it, so
    # every body up to max_body_bytes fits (docs/server.md "WAL")
    "too_large_for_wal": "every change fits the smallest ring in pieces",
}


def k():
    return "doc-" + uuid.uuid4().hex[:12]


def err(r, status, name):
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == name, body
    return body


def raw(port, data, timeout=10):
    """Send raw bytes on a new connection; the bytes read until the server closes or a
    complete response head (and its Content-Length body) arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if sep and m and len(body) >= int(m.group(1)):
                break
    return out


def raw_json(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body)


# --- every documented error name is asserted ---------------------------------------------

def documented_error_names():
    text = open(API_MD, encoding="utf-8").read()
    at = text.index("| status | error | when |")
    names = []
    for line in text[at:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`([a-z_]+)`", line.split("|")[2])
    assert len(names) > 20, names
    return sorted(set(names))


def test_every_documented_error_name_is_asserted_by_an_http_test():
    names = documented_error_names()
    sources = {}
    for path in glob.glob(os.path.join(HERE, "test_*.py")):
        sources[path] = open(path, encoding="utf-8").read()
    me = os.path.abspath(__file__)
    # this test's own table of unreachable names does not count as an assertion
    sources[me] = sources[me].split("NOT_REACHABLE = {")[0] + sources[me].split("\n}\n", 1)[1]
    missing = [n for n in names if n not in NOT_REACHABLE and
               not any(re.search(r"""["']%s["']""" % n, s) for s in sources.values())]
    assert not missing, "documented error names no HTTP test asserts: %s" % missing
    assert set(NOT_REACHABLE) <= set(names), set(NOT_REACHABLE) - set(names)


# --- the error names, one request each -----------------------------------------------------

def test_error_names_over_http(srv, session):
    key = k()
    u = srv.url("/kv/" + key)
    assert session.put(u, data='{"a":{"b":1},"s":"x","n":[1,2]}').status_code == 200
    # too_deep: nesting deeper than 512
    err(session.put(srv.url("/kv/" + k()), data="[" * 600 + "]" * 600), 400, "too_deep")
    assert session.put(srv.url("/kv/" + k()), data="[" * 500 + "]" * 500).status_code == 200
    # invalid_document: a binary body that fails verification
    err(session.put(srv.url("/kv/" + k()), data=b"\x01\x02garbage-not-a-document",
                    headers={"Content-Type": "application/vnd.l3kv.doc"}), 400, "invalid_document")
    # invalid_patch: a JSON Patch that is not an array of operations
    err(session.patch(u, data='{"op":"add","path":"/x","value":1}',
                      headers={"Content-Type": "application/json-patch+json"}), 400, "invalid_patch")
    # test_failed: a JSON Patch test operation that does not hold; nothing changed
    err(session.patch(u, data='[{"op":"add","path":"/z","value":1},{"op":"test","path":"/s","value":"y"}]',
                      headers={"Content-Type": "application/json-patch+json"}), 409, "test_failed")
    # path_not_found: a read of a path naming nothing (404), a write under a missing parent (409)
    err(session.get(u + "?field=/a/nope"), 404, "path_not_found")
    err(session.post(u + "?op=set_int&field=/q/r&val=1"), 409, "path_not_found")
    # bad_query: a malformed percent escape in the query
    # (sent raw: requests would re-quote the bad escape to %25zz)
    status, body = raw_json(raw(srv.port, b"GET /kv/%s?field=%%zz HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n" % key.encode()))
    assert (status, body["error"]) == (400, "bad_query"), body
    # key_too_long and uri_too_long
    err(session.get(srv.url("/kv/" + "k" * 1025)), 414, "key_too_long")
    assert session.get(srv.url("/kv/" + "k" * 1024)).status_code == 404
    err(session.get(u + "?pad=" + "p" * 9000), 414, "uri_too_long")
    # length_required: PUT without a body
    status, body = raw_json(raw(srv.port, b"PUT /kv/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                          b"Connection: close\r\n\r\n" % key.encode()))
    assert (status, body["error"]) == (411, "length_required"), body
    # none of the refused requests changed the document
    assert session.get(u).json() == {"a": {"b": 1}, "s": "x", "n": [1, 2]}


# --- Upgrade: h2c ---------------------------------------------------------------------------

def h2_frames(sock, want, deadline_s=10):
    """Read HTTP/2 frames (type, flags, stream, payload) until want(frames) or timeout."""
    buf, frames = b"", []
    sock.settimeout(1)
    deadline = time.time() + deadline_s
    while time.time() < deadline and not want(frames):
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            ln = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + ln:
                break
            typ, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            frames.append((typ, flags, stream, buf[9:9 + ln]))
            buf = buf[9 + ln:]
    return frames


def test_upgrade_h2c_answers_on_stream_1(srv):
    """`Upgrade: h2c` on a GET: 101 Switching Protocols, then the response to that request
    arrives as HTTP/2 frames on stream 1."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /kv/health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        assert re.search(rb"(?i)\r\nupgrade: *h2c", head), head
        rest = head.split(b"\r\n\r\n", 1)[1]
        assert rest == b""
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

        def done(frames):
            return any(t == 0 and st == 1 and f & 1 for t, f, st, _ in frames)

        frames = h2_frames(s, done)
        assert any(t == 4 and st == 0 for t, _, st, _ in frames), frames  # server SETTINGS
        assert any(t == 1 and st == 1 for t, _, st, _ in frames), frames  # HEADERS, stream 1
        data = b"".join(p for t, _, st, p in frames if t == 0 and st == 1)
        assert json.loads(data) == {"status": "ok"}, data


# --- If-Match lists and * -------------------------------------------------------------------

def test_if_match_lists_and_star(srv, session):
    u = srv.url("/kv/" + k())
    # `*` = must exist: refused on a missing document, nothing created
    err(session.put(u, data='{"v":0}', headers={"If-Match": "*"}), 412, "precondition_failed")
    assert session.get(u).status_code == 404
    e1 = session.put(u, data='{"v":1}').headers["ETag"]
    n1 = int(e1.strip('"'))
    # `*` on an existing document passes
    r = session.put(u, data='{"v":2}', headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    e2 = r.headers["ETag"]
    # a list passes when any member is the current version ...
    r = session.post(u + "?op=set_int&field=v&val=3", headers={"If-Match": '"%d", %s, "%d"' % (n1, e2, n1 + 10 ** 6)})
    assert r.status_code == 200, r.text
    e3 = r.headers["ETag"]
    # ... and fails when none is (e1 and e2 are old now): 412 with the current ETag
    r = session.delete(u, headers={"If-Match": "%s, %s" % (e1, e2)})
    err(r, 412, "precondition_failed")
    assert r.headers["ETag"] == e3
    assert session.get(u).json() == {"v": 3}
    # If-None-Match: * on an existing document is 304; a list with the current version too
    assert session.get(u, headers={"If-None-Match": "*"}).status_code == 304
    assert session.get(u, headers={"If-None-Match": '%s, %s' % (e1, e3)}).status_code == 304
    r = session.get(u, headers={"If-None-Match": '%s, %s' % (e1, e2)})
    assert r.status_code == 200 and r.json() == {"v": 3}


# --- listing --------------------------------------------------------------------------------

def test_listing_count_kv_alias_and_limit_range(srv, session):
    prefix = "lst-" + uuid.uuid4().hex[:8] + "-"
    keys = sorted(prefix + "%02d" % i for i in range(7))
    for key in keys:
        assert session.put(srv.url("/kv/" + key), data="{}").status_code == 200
    for base in ("/kv/", "/kv"):
        got, cursor, pages = [], None, 0
        while True:
            q = "?prefix=%s&limit=3" % prefix + ("&cursor=%s" % requests.utils.quote(cursor) if cursor else "")
            r = session.get(srv.url(base + q))
            assert r.status_code == 200, (base, r.text)
            body = r.json()
            assert set(body) == {"keys", "count", "cursor"}, body
            assert body["count"] == len(body["keys"]) <= 3, body
            got += body["keys"]
            pages += 1
            cursor = body["cursor"]
            if cursor is None:
                break
            assert pages < 10, body
        assert sorted(got) == keys, (base, got)
        assert pages == 3, (base, pages)
    # limit: 1..10000
    for bad in ("0", "10001", "-1", "x"):
        err(session.get(srv.url("/kv/?prefix=%s&limit=%s" % (prefix, bad))), 400, "bad_value")
    for good in ("1", "10000"):
        body = session.get(srv.url("/kv/?prefix=%s&limit=%s" % (prefix, good))).json()
        assert body["count"] == min(int(good), len(keys)), body
    # default 100
    assert session.get(srv.url("/kv?prefix=" + prefix)).json()["count"] == len(keys)


# --- PUT content types ----------------------------------------------------------------------

def test_put_accepts_the_documented_content_types(srv, session):
    for ct in (None, "text/plain", "application/x-www-form-urlencoded", "application/vnd.example+json",
               "application/json; charset=utf-8"):
        u = srv.url("/kv/" + k())
        h = {} if ct is None else {"Content-Type": ct}
        if ct is None:
            r = requests.Request("PUT", u, data=b'{"ct":1}').prepare()
            r.headers.pop("Content-Type", None)
            r = session.send(r)
        else:
            r = session.put(u, data=b'{"ct":1}', headers=h)
        assert r.status_code == 200, (ct, r.text)
        assert session.get(u).json() == {"ct": 1}, ct
    u = srv.url("/kv/" + k())
    for ct in ("application/xml", "image/png"):
        err(session.put(u, data=b'{"ct":1}', headers={"Content-Type": ct}), 415, "unsupported_media_type")
        err(session.patch(u, data=b'{"ct":1}', headers={"Content-Type": ct}), 415, "unsupported_media_type")
    assert session.get(u).status_code == 404


# --- 503 overloaded on a full WAL ring -----------------------------------------------------

def writer_pid(s):
    m = re.findall(r"wal writer started \(pid (\d+)\)", s.logtext())
    assert m, s.logtext()
    return int(m[-1])


def test_full_wal_ring_answers_503_overloaded():
    """With the WAL writer stopped (SIGSTOP) nothing drains the ring: writes fill it and are
    then refused with 503 overloaded and Retry-After, changing nothing; once the writer runs
    again writes are accepted."""
    s = Server(config={"storage": {"wal_buffer_bytes": 69632}}, workers=1)
    pid = writer_pid(s)
    os.kill(pid, signal.SIGSTOP)
    try:
        refusal, acked = None, 0
        with requests.Session() as h:
            for i in range(400):  # 400 x 2 KiB is far more than the 68 KiB ring
                r = h.put(s.url("/kv/ring-%d" % i), data=json.dumps({"pad": "r" * 2000}), timeout=30)
                if r.status_code == 200:
                    acked += 1
                    continue
                refusal = (i, r)
                break
            assert refusal is not None, "the stopped writer's ring took %d writes" % acked
            i, r = refusal
            err(r, 503, "overloaded")
            assert r.headers.get("Retry-After") == "1", r.headers
            assert 5 <= acked, acked
            assert h.get(s.url("/kv/ring-%d" % i), timeout=10).status_code == 404
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        deadline, ok = time.time() + 30, False
        while time.time() < deadline and not ok:
            ok = requests.put(s.url("/kv/ring-after"), data="{}", timeout=10).status_code == 200
            if not ok:
                time.sleep(0.1)
        assert ok, s.logtext()[-2000:]
    finally:
        s.stop()


# --- 503 overloaded on a lock timeout --------------------------------------------------------

def test_lock_timeout_answers_503_overloaded():
    """A write waits for ring space (at most 100 ms) while it holds the document's lock. With
    the WAL writer stopped and its ring full, concurrent PUTs of one key on the two workers
    make the second wait for that lock longer than storage.lock_timeout_ms (20 ms): it is
    refused with 503 overloaded whose detail names the lock, and nothing is stored."""
    s = Server(config={"storage": {"wal_buffer_bytes": 69632, "lock_timeout_ms": 20}}, workers=2)
    pid = writer_pid(s)
    os.kill(pid, signal.SIGSTOP)
    try:
        with requests.Session() as h:
            for i in range(400):  # fill the ring until a write is refused
                r = h.put(s.url("/kv/fill-%d" % i), data=json.dumps({"pad": "f" * 2000}), timeout=30)
                if r.status_code != 200:
                    break
            err(r, 503, "overloaded")
        details, lock_refusal = [], None
        deadline = time.monotonic() + 60
        while lock_refusal is None and time.monotonic() < deadline:
            answers = []

            def put_hot():  # a new connection each: the kernel spreads them over both workers
                answers.append(requests.put(s.url("/kv/hot"), data='{"h":1}', timeout=30,
                                            headers={"Connection": "close"}))

            threads = [threading.Thread(target=put_hot) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert len(answers) == 8, "a PUT got no answer"
            for r in answers:
                body = err(r, 503, "overloaded")  # ring full or lock timeout, never stored
                details.append(body["detail"])
                if "lock" in body["detail"]:
                    lock_refusal = r
        assert lock_refusal is not None, "no lock timeout in %d refusals: %s" % (len(details), set(details))
        assert lock_refusal.headers.get("Retry-After") == "1", lock_refusal.headers
        assert "storage.lock_timeout_ms" in lock_refusal.json()["detail"]
        assert requests.get(s.url("/kv/hot"), timeout=10).status_code == 404
    finally:
        os.kill(pid, signal.SIGCONT)
    s.stop()


# --- process: port in use, conflicting worker counts, SIGRTMIN checkpoint ---------------------

def run_bin(args, cwd, timeout=20):
    return subprocess.run([BIN] + args, capture_output=True, timeout=timeout, cwd=cwd)


def test_port_in_use_is_refused_at_start():
    with tempfile.TemporaryDirectory() as d, socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        p = os.path.join(d, "config.json")
        with open(p, "w") as f:
            json.dump({"server": {"address": "127.0.0.1", "port": port, "min_workers": 1, "max_workers": 1},
                       "storage": {"data_dir": os.path.join(d, "data"), "arena_bytes": 64 << 20}}, f)
        r = run_bin([p], cwd=d)
        assert r.returncode == 1, r  # docs/server.md: a start that fails exits 1
        assert str(port).encode() in r.stderr and b" error: " in r.stderr, r.stderr


def test_conflicting_min_threads_and_min_workers():
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "config.json")
        with open(p, "w") as f:
            json.dump({"server": {"min_threads": 2, "min_workers": 3}}, f)
        r = run_bin(["--check", p], cwd=d)
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert b"min_workers" in r.stderr and b"min_threads" in r.stderr, r.stderr
        with open(p, "w") as f:  # the same value twice is accepted
            json.dump({"server": {"min_threads": 2, "min_workers": 2}}, f)
        r = run_bin(["--check", p], cwd=d)
        assert r.returncode == 0, r.stderr


def test_sigrtmin_writes_a_checkpoint():
    s = Server(workers=1)
    try:
        with requests.Session() as h:
            for i in range(20):
                assert h.put(s.url("/kv/cp-%d" % i), data=json.dumps({"i": i})).status_code == 200
        before = s.logtext().count("checkpoint done")
        s.proc.send_signal(signal.SIGRTMIN)
        deadline = time.time() + 30
        while time.time() < deadline and s.logtext().count("checkpoint done") == before:
            time.sleep(0.05)
        assert s.logtext().count("checkpoint done") == before + 1, s.logtext()[-2000:]
        assert os.path.exists(os.path.join(s.dir, "data", "l3kv.snap")), os.listdir(os.path.join(s.dir, "data"))
    finally:
        s.stop(keep_dir=True)
    s2 = Server(workers=1, reuse_dir=s.dir)
    try:
        assert "snapshot" in s2.logtext()
        assert requests.get(s2.url("/kv/cp-19")).json() == {"i": 19}
    finally:
        s2.stop()


# --- restart backoff ------------------------------------------------------------------------

def test_crashed_worker_restart_backoff_doubles():
    """A worker that crashes while another runs is restarted after a backoff: 100 ms,
    doubling on each crash within 10 s of its start (docs/server.md, SIGCHLD)."""
    s = Server(workers=2)
    try:
        backoffs, at = [], 0
        for _ in range(4):
            pid = next(w["pid"] for w in s.metrics()["workers"] if w["slot"] == 0 and w["state"] == "running")
            os.kill(pid, signal.SIGKILL)
            rx = re.compile(r"worker 0 \(pid %d\) died: [^\n]*restarting in (\d+) ms" % pid)
            deadline, m = time.time() + 30, None
            while time.time() < deadline and m is None:
                m = rx.search(s.logtext(), at)
                if m is None:
                    time.sleep(0.02)
            assert m, s.logtext()[-3000:]
            backoffs.append(int(m.group(1)))
            at = m.end()
            rx = re.compile(r"worker 0 started \(pid (\d+)\)")
            deadline, m = time.time() + 30, None
            while time.time() < deadline and m is None:
                m = rx.search(s.logtext(), at)
                if m is None:
                    time.sleep(0.02)
            assert m, s.logtext()[-3000:]
            at = m.end()
            deadline = time.time() + 30  # the new worker is in the metrics as running
            while time.time() < deadline and not any(
                    w["slot"] == 0 and w["pid"] == int(m.group(1)) and w["state"] == "running"
                    for w in s.metrics()["workers"]):
                time.sleep(0.02)
        assert backoffs == [100, 200, 400, 800], backoffs
    finally:
        s.stop()


# --- HTTP/2: a body far above the limit ends the stream with REFUSED_STREAM -----------------
# (prior knowledge; HPACK literals without indexing; frames by hand, flow control obeyed)

def h2_frame(typ, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([typ, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(name, value):
    """A header field as an HPACK literal without indexing, new name, no Huffman."""
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def h2_put(port, path, total):
    """PUT a JSON string of `total` bytes on stream 1 over cleartext HTTP/2 (prior
    knowledge), within the flow-control windows the server grants. Returns (frames as
    (type, flags, stream, payload), bytes sent); stops at RST_STREAM or at the end of the
    response."""
    body = b'"' + b"x" * (total - 2) + b'"'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
        hdr = b"".join(hpack_literal(k, v) for k, v in (
            (":method", "PUT"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/json"), ("content-length", str(total))))
        s.sendall(h2_frame(1, 4, 1, hdr))  # END_HEADERS
        conn_win, stream_win, sent = 65535, 65535, 0
        buf, frames = b"", []
        s.setblocking(False)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                ln = int.from_bytes(buf[:3], "big")
                typ, fl, st = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                pl, buf = buf[9:9 + ln], buf[9 + ln:]
                frames.append((typ, fl, st, pl))
                if typ == 4 and not fl & 1:  # SETTINGS: acknowledge, note the stream window
                    s.sendall(h2_frame(4, 1, 0, b""))
                    for i in range(0, len(pl) - 5, 6):
                        ident, val = struct.unpack(">HI", pl[i:i + 6])
                        if ident == 4:
                            stream_win += val - 65535
                elif typ == 8:  # WINDOW_UPDATE
                    inc = int.from_bytes(pl[:4], "big") & 0x7FFFFFFF
                    if st == 0:
                        conn_win += inc
                    else:
                        stream_win += inc
                elif typ == 3 and st == 1 or typ == 0 and st == 1 and fl & 1:
                    return frames, sent
            n = min(16384, conn_win, stream_win, total - sent)
            if n > 0:
                try:
                    s.sendall(h2_frame(0, 1 if sent + n == total else 0, 1, body[sent:sent + n]))
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += n
                conn_win -= n
                stream_win -= n
            else:
                time.sleep(0.01)
    return frames, sent


def test_h2_body_far_above_the_limit_is_refused_stream():
    s = Server(config={"server": {"max_body_bytes": 4096}}, workers=1)
    try:
        events, sent = h2_put(s.port, "/kv/h2big", 3 << 20)
        rst = [f for f in events if f[0] == 3 and f[2] == 1]
        assert rst and int.from_bytes(rst[0][3][:4], "big") == 7, (sent, events[-6:])  # REFUSED_STREAM
        assert requests.get(s.url("/kv/h2big"), timeout=10).status_code == 404
        # a body within the limit over the same framing is stored
        events, sent = h2_put(s.port, "/kv/h2small", 2000)
        assert not [f for f in events if f[0] == 3], events
        assert any(f[0] == 0 and f[2] == 1 and f[1] & 1 for f in events), events
        assert requests.get(s.url("/kv/h2small"), timeout=10).json() == "x" * 1998
    finally:
        s.stop()
