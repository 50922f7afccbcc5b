# SPDX-License-Identifier: MIT
"""Body limits, slow clients, overload and a full arena."""
import json
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import requests

from conftest import Server, raw_request, recv_head, rss_kib


def total_rss(s):
    return sum(rss_kib(p) for p in s.worker_pids())


def test_100mb_body_refused_without_growth(srv):
    before = total_rss(srv)
    key = "big-" + uuid.uuid4().hex[:6]
    head = ("PUT /kv/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (key, 100 * 1000 * 1000)).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head)
        chunk = b" " * (1 << 20)
        resp = b""
        s.settimeout(0.05)
        for _ in range(100):  # keep pushing until the server answers or closes
            try:
                s.sendall(chunk)
            except OSError:
                break
            try:
                resp += s.recv(4096)  # the answer's first bytes, or b"" if it closed
                break
            except socket.timeout:
                continue
        s.settimeout(5)
        try:
            while b"\r\n\r\n" not in resp:
                data = s.recv(4096)
                if not data:
                    break
                resp += data
        except OSError:
            pass
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert requests.get(srv.url("/kv/" + key)).status_code == 404
    after = total_rss(srv)
    assert after - before < 32 * 1024, (before, after)  # KiB


def test_documents_larger_than_the_wal_buffer():
    """Documents of 15 MB and 30 MB (the second larger than the whole default 20 MB WAL
    ring, so its record is logged in pieces) are stored, read back, changed in place and
    recovered after a graceful restart and after SIGKILL of every process."""
    cfg = {"storage": {"arena_bytes": 1 << 30}}
    s = Server(config=cfg, workers=2)
    s2 = s3 = None
    try:
        docs = {}
        for key, mb in (("huge15", 15), ("huge30", 30)):
            docs[key] = {"id": key, "blob": "b" * (mb << 20), "n": 0}
            text = json.dumps(docs[key], separators=(",", ":"))
            r = requests.put(s.url("/kv/" + key), data=text, timeout=60)
            assert r.status_code == 200, (r.status_code, r.text[:300])
        r = requests.post(s.url("/kv/huge30?op=set_int&field=n&val=7"), timeout=30)
        assert r.status_code == 200, r.text[:300]
        docs["huge30"]["n"] = 7
        requests.put(s.url("/kv/small"), data='{"after":true}', timeout=10)
        for key, doc in docs.items():
            assert requests.get(s.url("/kv/" + key), timeout=60).json() == doc
        s.stop(keep_dir=True)
        s2 = Server(config=cfg, workers=1, reuse_dir=s.dir)
        for key, doc in docs.items():
            assert requests.get(s2.url("/kv/" + key), timeout=60).json() == doc
        assert requests.get(s2.url("/kv/small"), timeout=10).json() == {"after": True}
        s2.kill_all()
        s3 = Server(config=cfg, workers=1, reuse_dir=s.dir)
        for key, doc in docs.items():
            assert requests.get(s3.url("/kv/" + key), timeout=60).json() == doc
    finally:
        for x in (s3, s2, s):
            if x is not None and x.proc.poll() is None:
                x.stop(check=False)
        shutil.rmtree(s.dir, ignore_errors=True)


def test_errors_h2o_answers_itself_are_json(srv):
    """A body announced far above the limit and broken chunked encoding are refused by
    the HTTP layer before the handler runs; they still carry the API's JSON error body."""
    r = requests.put(srv.url("/kv/huge-body"), data=b"x" * (100 << 20), timeout=60)
    assert r.status_code == 413, r.status_code
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"] == "too_large" and r.json()["detail"], r.text
    assert requests.get(srv.url("/kv/huge-body")).status_code == 404
    resp = raw_request(srv.port, b"PUT /kv/chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"zz\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), resp[:300]
    assert b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["error"] == "bad_request", body


def test_body_limit_clean_413(tmp_path):
    s = Server(config={"server": {"max_body_bytes": 1 << 20}}, workers=1)
    try:
        key = "lim-" + uuid.uuid4().hex[:6]
        doc = '{"a":"' + "x" * ((1 << 20) + 100) + '"}'
        r = requests.put(s.url("/kv/" + key), data=doc)
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        ok = '{"a":"' + "x" * ((1 << 20) - 100) + '"}'
        assert requests.put(s.url("/kv/" + key), data=ok).status_code == 200
        if shutil.which("curl"):
            # HTTP/2 (prior knowledge) gets the same clean 413, not a stream reset
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                                  "--http2-prior-knowledge", "-X", "PUT", "--data-binary", "@-",
                                  s.url("/kv/" + key)], input=doc.encode(), capture_output=True, timeout=30)
            assert out.stdout.decode() == "413 2", out
    finally:
        s.stop()


def test_slowloris_does_not_block_others(srv):
    idle = []
    try:
        for _ in range(200):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            c.sendall(b"GET /kv/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            idle.append(c)
        with requests.Session() as s:  # each request's 5 s timeout is the deadline
            for i in range(50):
                assert s.get(srv.url("/kv/health"), timeout=5).status_code == 200
        assert srv.metrics()["system"]["active_connections"] >= 200
    finally:
        for c in idle:
            c.close()


def test_overload_503_and_full_arena_507():
    s = Server(config={"server": {"max_connections": 4},
                       "storage": {"arena_bytes": 32 << 20, "wal_buffer_bytes": 4 << 20}}, workers=1)
    try:
        # overload: one worker, limit 4 connections -> the 6th concurrent connection gets 503
        idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(6)]
        deadline = time.time() + 10  # until the worker has accepted the 6 and refuses more
        while True:
            raw = raw_request(s.port, b"GET /kv/anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if raw.startswith(b"HTTP/1.1 503") or time.time() > deadline:
                break
            time.sleep(0.05)
        assert raw.startswith(b"HTTP/1.1 503"), raw[:200]
        assert b"retry-after: 1" in raw.lower()
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"] == "overloaded", raw[:400]
        # the connections within the limit (the oldest) are still served; the newest is not
        def ask(c):
            c.settimeout(5)
            c.sendall(b"GET /kv/not-there HTTP/1.1\r\nHost: x\r\n\r\n")
            return recv_head(c)
        assert ask(idle[0]).startswith(b"HTTP/1.1 404"), "the oldest connection must be served"
        assert ask(idle[1]).startswith(b"HTTP/1.1 404")
        raw = ask(idle[5])
        assert raw.startswith(b"HTTP/1.1 503"), raw[:200]
        for c in idle:
            c.close()
        deadline = time.time() + 10  # until the worker has seen the closes
        while requests.get(s.url("/kv/health"), timeout=5).status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        # arena full: documents of 1 MB until 507; what was stored stays intact
        blob = "y" * (1 << 20)
        stored = []
        status = None
        with requests.Session() as sess:
            sess.headers["Connection"] = "close"
            for i in range(64):
                r = sess.put(s.url("/kv/fill-%d" % i), data=json.dumps({"i": i, "b": blob}))
                status = r.status_code
                if status != 200:
                    break
                stored.append(i)
            assert status == 507, status
            assert r.json()["error"] == "arena_full"
            assert sess.get(s.url("/kv/fill-%d" % (len(stored)))).status_code == 404
            for i in stored[:3] + stored[-2:]:
                d = sess.get(s.url("/kv/fill-%d" % i)).json()
                assert d["i"] == i and len(d["b"]) == len(blob)
            # a small write still fits, and deleting frees room
            assert sess.delete(s.url("/kv/fill-0")).status_code == 200
            assert sess.put(s.url("/kv/fill-again"), data=json.dumps({"b": blob})).status_code == 200
    finally:
        s.stop()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_emfile_does_not_spin():
    """With the descriptor limit exhausted, accept() fails with EMFILE: the worker must pause
    accepting instead of spinning on the still-readable listener, and recover afterwards."""
    import resource

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    s = Server(workers=1, preexec_fn=low_nofile)
    try:
        pid = s.worker_pids()[0]
        conns = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(80)]
        deadline = time.time() + 10  # the worker has hit EMFILE
        while "pausing accepts" not in s.logtext() and time.time() < deadline:
            time.sleep(0.05)
        t0 = cpu_ticks(pid)
        time.sleep(1.0)
        used = cpu_ticks(pid) - t0
        assert used < 30, used  # ticks of 10 ms: a spinning worker burns ~100 per second
        assert "pausing accepts" in s.logtext()
        for c in conns:
            c.close()
        deadline = time.time() + 15  # accepting again once descriptors are free
        while True:
            try:
                if requests.get(s.url("/kv/health"), timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.time() < deadline, "no answer within 15 s of freeing the descriptors"
            time.sleep(0.05)
    finally:
        s.stop()
