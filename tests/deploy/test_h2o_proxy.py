# SPDX-License-Identifier: MIT
"""l3kv behind h2o 2.2 (Debian 12) as a reverse proxy, with the shipped configuration
etc/h2o/l3kv.conf.in rendered for free loopback ports: the API, conditional requests,
multi-megabyte documents, error statuses and JSON bodies must come through unchanged."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

import render_h2o_conf
from l3kv_deploy import (SRC_ROOT, L3kv, free_port, h2o_bin, l3kv_test_config, mkworkdir,
                         stop_like_systemd, wait_http)

MAX_BODY = 8 << 20            # l3kv server.max_body_bytes in this test
H2O_LIMIT = MAX_BODY + (1 << 20)   # limit-request-body, as the template's comment says
JSON_HDR = {"Content-Type": "application/json"}


class H2o:
    """h2o started with etc/h2o/l3kv.conf.in rendered for a free loopback port, its logs
    in workdir and backend_port as the l3kv backend. wait: until /kv/health answers."""

    def __init__(self, exe, backend_port, workdir, wait=True, edit=None):
        self.port = free_port()
        self.access_log = os.path.join(workdir, "access.log")
        self.error_log = os.path.join(workdir, "error.log")
        values = {
            "LISTEN_PORT": str(self.port), "LISTEN_HOST": "127.0.0.1",
            "BACKEND_URL": "http://127.0.0.1:%d/" % backend_port,
            "LIMIT_REQUEST_BODY": str(H2O_LIMIT),
            "ACCESS_LOG": self.access_log, "ERROR_LOG": self.error_log,
            # as root the shipped `user:` line is kept (with an account every system has)
            "USER": "nobody" if os.getuid() == 0 else "",
        }
        self.conf = os.path.join(workdir, "h2o.conf")
        text = render_h2o_conf.render_file(values)
        with open(self.conf, "w") as f:
            f.write(edit(text) if edit else text)
        t = subprocess.run([exe, "-t", "-c", self.conf], capture_output=True, timeout=30)
        assert t.returncode == 0, t.stdout + t.stderr
        self.out_path = os.path.join(workdir, "h2o.out")
        self.out = open(self.out_path, "ab")
        self.proc = subprocess.Popen([exe, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.base = "http://127.0.0.1:%d" % self.port
        if wait:
            wait_http(self.base + "/kv/health", 20, self.proc, "h2o", self.logtext)

    def logtext(self):
        self.out.flush()
        text = ""
        for p in (self.out_path, self.error_log):
            if os.path.exists(p):
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")[-4000:]
        return text

    def stop(self):
        res = stop_like_systemd(self.proc, signal.SIGTERM, 15)
        self.out.close()
        return res


@pytest.fixture(scope="module")
def stack():
    exe = h2o_bin()
    if exe is None:
        pytest.skip("h2o is not installed (tools/deps-debian.sh --all installs it)")
    d = mkworkdir("l3kv-h2o-")
    cfg = l3kv_test_config(d, max_body_bytes=MAX_BODY)
    # a 6 MB JSON document is about 10 MB in binary form: one WAL record must hold it
    cfg["storage"]["wal_buffer_bytes"] = 64 << 20
    srv = L3kv(cfg, d)
    try:
        proxy = H2o(exe, srv.port, d)
    except BaseException:
        srv.stop()
        raise
    yield srv, proxy
    prc = proxy.stop()
    src = srv.stop()
    assert prc[0] is not None and not prc[2], "h2o did not stop on SIGTERM: %r" % (prc,)
    assert src[0] == 0 and not src[2], "l3kv did not stop cleanly:\n" + srv.logtext()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def px(stack):
    srv, proxy = stack
    with requests.Session() as s:
        s.base = proxy.base
        s.srv = srv
        s.proxy = proxy
        yield s


def u(s, path):
    return s.base + path


def err(r, status, name):
    """The response is l3kv's JSON error with this status and name."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert body["error"] == name, body
    assert isinstance(body.get("detail"), str)
    return body


def test_shipped_conf_is_the_rendered_template():
    with open(os.path.join(SRC_ROOT, "etc", "h2o", "l3kv.conf")) as f:
        shipped = f.read()
    assert shipped == render_h2o_conf.render_file()
    exe = h2o_bin()
    if exe is None:
        pytest.skip("h2o is not installed")
    d = mkworkdir("l3kv-h2o-t-")
    try:
        # The shipped file names /var/log/h2o and debian-h2o; h2o -t needs neither to exist
        # when run as root, so check a copy with only the log paths moved.
        conf = os.path.join(d, "l3kv.conf")
        with open(conf, "w") as f:
            f.write(render_h2o_conf.render_file({
                "ACCESS_LOG": os.path.join(d, "a.log"), "ERROR_LOG": os.path.join(d, "e.log"),
                "USER": "nobody" if os.getuid() == 0 else ""}))
        r = subprocess.run([exe, "-t", "-c", conf], capture_output=True, timeout=30)
        assert r.returncode == 0 and b"configuration OK" in r.stdout + r.stderr, r
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_put_get_delete_round_trip(px):
    doc = {"name": "Ada", "visits": 1, "tags": ["a", "b"], "nested": {"x": [1, {"y": None}]}}
    r = px.put(u(px, "/kv/rt1"), data=json.dumps(doc), headers=JSON_HDR, timeout=10)
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    assert r.headers["ETag"] == '"%d"' % v
    r = px.get(u(px, "/kv/rt1"), timeout=10)
    assert r.status_code == 200 and r.json() == doc
    assert r.headers["ETag"] == '"%d"' % v
    assert int(r.headers["Content-Length"]) == len(r.content)
    r = px.get(u(px, "/kv/rt1?field=nested.x.1"), timeout=10)
    assert r.json() == {"y": None}
    # the backend sees the same document (the proxy changed nothing)
    assert requests.get(px.srv.base + "/kv/rt1", timeout=10).json() == doc
    r = px.delete(u(px, "/kv/rt1"), timeout=10)
    assert r.status_code == 200 and r.json()["version"] > v
    err(px.get(u(px, "/kv/rt1"), timeout=10), 404, "not_found")
    err(px.delete(u(px, "/kv/rt1"), timeout=10), 404, "not_found")


def test_head_keeps_length_and_etag(px):
    px.put(u(px, "/kv/head1"), data='{"k":"vvvvvvvv"}', timeout=10).raise_for_status()
    g = px.get(u(px, "/kv/head1"), timeout=10)
    h = px.head(u(px, "/kv/head1"), timeout=10)
    assert h.status_code == 200 and h.content == b""
    assert h.headers["Content-Length"] == g.headers["Content-Length"] == str(len(g.content))
    assert h.headers["ETag"] == g.headers["ETag"]


def test_percent_encoded_key_reaches_backend_intact(px):
    r = px.put(u(px, "/kv/dir%2Fname%20x"), data='{"v":1}', timeout=10)
    assert r.status_code == 200, r.text
    keys = requests.get(px.srv.base + "/kv/?prefix=dir", timeout=10).json()["keys"]
    assert keys == ["dir/name x"]
    assert px.get(u(px, "/kv/dir%2Fname%20x"), timeout=10).json() == {"v": 1}


def test_set_int_and_incr(px):
    px.put(u(px, "/kv/cnt"), data='{"n":1,"s":"x"}', timeout=10).raise_for_status()
    r = px.post(u(px, "/kv/cnt?op=set_int&field=n&val=41"), timeout=10)
    assert r.status_code == 200 and r.json()["value"] == 41
    r = px.post(u(px, "/kv/cnt?op=incr&field=n"), timeout=10)
    assert r.json()["value"] == 42
    assert px.get(u(px, "/kv/cnt?field=n"), timeout=10).json() == 42
    err(px.post(u(px, "/kv/cnt?op=set_int&field=s&val=1"), timeout=10), 409, "type_conflict")
    err(px.post(u(px, "/kv/cnt?op=set_int&field=n&val=9223372036854775808"), timeout=10),
        400, "bad_value")
    err(px.post(u(px, "/kv/cnt?op=frobnicate&field=n"), timeout=10), 400, "bad_op")


def test_concurrent_incr_through_the_proxy(px):
    px.put(u(px, "/kv/ccnt"), data='{"n":0}', timeout=10).raise_for_status()
    n_threads, per = 4, 50
    failures = []

    def run():
        with requests.Session() as s:
            for _ in range(per):
                r = s.post(u(px, "/kv/ccnt?op=incr&field=n"), timeout=10)
                if r.status_code != 200:
                    failures.append((r.status_code, r.text))

    ts = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not failures, failures[:3]
    assert px.get(u(px, "/kv/ccnt?field=n"), timeout=10).json() == n_threads * per


def test_merge_patch_and_json_patch(px):
    px.put(u(px, "/kv/mp"), data='{"a":1,"b":{"c":2,"d":3},"t":[1]}', timeout=10).raise_for_status()
    r = px.patch(u(px, "/kv/mp"), data='{"b":{"c":null,"e":5},"t":null,"z":"new"}',
                 headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
    assert r.status_code == 200, r.text
    assert px.get(u(px, "/kv/mp"), timeout=10).json() == {"a": 1, "b": {"d": 3, "e": 5}, "z": "new"}
    r = px.patch(u(px, "/kv/mp"), data='[{"op":"replace","path":"/a","value":7},'
                 '{"op":"add","path":"/b/f","value":[true]}]',
                 headers={"Content-Type": "application/json-patch+json"}, timeout=10)
    assert r.status_code == 200, r.text
    assert px.get(u(px, "/kv/mp"), timeout=10).json() == \
        {"a": 7, "b": {"d": 3, "e": 5, "f": [True]}, "z": "new"}
    r = px.patch(u(px, "/kv/mp"), data='[{"op":"test","path":"/a","value":8}]',
                 headers={"Content-Type": "application/json-patch+json"}, timeout=10)
    err(r, 409, "test_failed")
    # a merge patch on a missing document creates it: 201
    r = px.patch(u(px, "/kv/mp-new"), data='{"k":1}',
                 headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
    assert r.status_code == 201, r.text
    err(px.patch(u(px, "/kv/mp"), data='{}', headers={"Content-Type": "text/csv"}, timeout=10),
        415, "unsupported_media_type")


def test_etag_if_match_412_and_304(px):
    r = px.put(u(px, "/kv/cond"), data='{"v":1}', timeout=10)
    tag1 = r.headers["ETag"]
    r = px.put(u(px, "/kv/cond"), data='{"v":2}', headers={"If-Match": tag1}, timeout=10)
    assert r.status_code == 200, r.text
    tag2 = r.headers["ETag"]
    assert tag2 != tag1
    # stale version: 412 with l3kv's JSON body and the current ETag, nothing changed
    r = px.put(u(px, "/kv/cond"), data='{"v":3}', headers={"If-Match": tag1}, timeout=10)
    err(r, 412, "precondition_failed")
    assert r.headers["ETag"] == tag2
    r = px.post(u(px, "/kv/cond?op=set_int&field=v&val=9"), headers={"If-Match": tag1}, timeout=10)
    err(r, 412, "precondition_failed")
    r = px.delete(u(px, "/kv/cond"), headers={"If-Match": tag1}, timeout=10)
    err(r, 412, "precondition_failed")
    assert px.get(u(px, "/kv/cond"), timeout=10).json() == {"v": 2}
    # If-None-Match with the current version: 304 without a body, ETag kept
    r = px.get(u(px, "/kv/cond"), headers={"If-None-Match": tag2}, timeout=10)
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == tag2
    r = px.get(u(px, "/kv/cond"), headers={"If-None-Match": tag1}, timeout=10)
    assert r.status_code == 200 and r.json() == {"v": 2}
    r = px.delete(u(px, "/kv/cond"), headers={"If-Match": tag2}, timeout=10)
    assert r.status_code == 200


def big_doc(target_bytes):
    """A JSON object of about target_bytes with many members and nested values."""
    members = {}
    i = 0
    size = 2
    while size < target_bytes:
        v = {"id": i, "name": "item-%06d" % i, "pad": "p" * 200, "vals": [i, i * 2, None, True]}
        members["k%07d" % i] = v
        size += len(json.dumps(v, separators=(",", ":"))) + 12
        i += 1
    return members, i


def test_multi_megabyte_document(px):
    doc, n = big_doc(6 << 20)
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert 6 << 20 <= len(body) < MAX_BODY
    r = px.put(u(px, "/kv/big"), data=body, headers=JSON_HDR, timeout=60)
    assert r.status_code == 200, r.text[:500]
    r = px.get(u(px, "/kv/big"), timeout=60)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.json() == doc
    direct = requests.get(px.srv.base + "/kv/big", timeout=60)
    assert hashlib.sha256(direct.content).digest() == hashlib.sha256(r.content).digest()
    last = "k%07d" % (n - 1)
    r = px.post(u(px, "/kv/big?op=set_int&field=%s.id&val=-5" % last), timeout=30)
    assert r.status_code == 200 and r.json()["value"] == -5
    assert px.get(u(px, "/kv/big?field=%s" % last), timeout=30).json()["id"] == -5
    # a second, different body under the same key replaces it completely
    small = {"replaced": True}
    px.put(u(px, "/kv/big"), data=json.dumps(small), timeout=30).raise_for_status()
    assert px.get(u(px, "/kv/big"), timeout=30).json() == small


def test_error_bodies_pass_through(px):
    r = px.put(u(px, "/kv/bad"), data='{"a":1,,}', headers=JSON_HDR, timeout=10)
    body = err(r, 400, "invalid_json")
    assert "byte offset" in body["detail"]
    err(px.get(u(px, "/kv/nothere"), timeout=10), 404, "not_found")
    px.put(u(px, "/kv/pf"), data='{"a":{}}', timeout=10).raise_for_status()
    err(px.get(u(px, "/kv/pf?field=a.zz"), timeout=10), 404, "path_not_found")
    r = px.request("OPTIONS", u(px, "/kv/pf"), timeout=10)
    err(r, 405, "method_not_allowed")
    assert "GET" in r.headers.get("Allow", "")
    err(px.put(u(px, "/kv/health"), data='{}', timeout=10), 400, "reserved_key")
    err(px.put(u(px, "/kv/" + "k" * 1025), data='{}', timeout=10), 414, "key_too_long")


def test_413_from_l3kv_is_json(px):
    # above l3kv's max_body_bytes but within h2o's limit: l3kv's own JSON 413
    body = b'"' + b"x" * (MAX_BODY + (256 << 10)) + b'"'
    assert MAX_BODY < len(body) <= H2O_LIMIT
    r = px.put(u(px, "/kv/toolarge"), data=body, headers=JSON_HDR, timeout=60)
    err(r, 413, "too_large")
    err(px.get(u(px, "/kv/toolarge"), timeout=10), 404, "not_found")
    # the proxy still works afterwards
    assert px.get(u(px, "/kv/health"), timeout=10).status_code == 200


def test_413_from_h2o_before_the_body(px):
    """A Content-Length above limit-request-body gets h2o's own 413 before any body byte
    is sent, and nothing reaches l3kv."""
    before = requests.get(px.srv.base + "/metrics", timeout=10).json()["handlers"]["put"]["count"]
    with socket.create_connection(("127.0.0.1", px.proxy.port), timeout=10) as s:
        s.sendall(b"PUT /kv/huge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (H2O_LIMIT + 1))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    after = requests.get(px.srv.base + "/metrics", timeout=10).json()["handlers"]["put"]["count"]
    assert after == before
    err(px.get(u(px, "/kv/huge"), timeout=10), 404, "not_found")


def test_access_log_records_requests(px):
    marker = "/kv/logmark-%d" % os.getpid()
    px.put(u(px, marker), data='{"m":1}', timeout=10).raise_for_status()
    deadline = time.monotonic() + 5
    line = None
    while time.monotonic() < deadline and line is None:
        with open(px.proxy.access_log) as f:
            for ln in f:
                if '"PUT %s HTTP/1.1" 200 ' % marker in ln:
                    line = ln
        time.sleep(0.05)
    assert line is not None, "no access log line for " + marker
    assert " HTTP/1.1 " in line.split('"')[-1]  # the %H protocol field after the user agent


def test_http2_to_h2o(px):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    px.put(u(px, "/kv/h2"), data='{"over":"h2"}', timeout=10).raise_for_status()
    r = subprocess.run([curl, "-sS", "--max-time", "20", "--http2-prior-knowledge",
                        "-o", "-", "-w", "\n%{http_version} %{http_code}", u(px, "/kv/h2")],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    body, _, tail = r.stdout.decode().rpartition("\n")
    assert tail == "2 200", tail
    assert json.loads(body) == {"over": "h2"}
    # a 412 over HTTP/2 keeps its JSON body
    r = subprocess.run([curl, "-sS", "--max-time", "20", "--http2-prior-knowledge", "-X", "PUT",
                        "-H", 'If-Match: "1"', "-d", "{}", "-o", "-", "-w", "\n%{http_code}",
                        u(px, "/kv/h2")], capture_output=True, timeout=30)
    body, _, code = r.stdout.decode().rpartition("\n")
    assert code == "412" and json.loads(body)["error"] == "precondition_failed"
    h2load = shutil.which("h2load")
    if h2load is None:
        return
    r = subprocess.run([h2load, "-n", "400", "-c", "4", "-m", "8", u(px, "/kv/h2")],
                       capture_output=True, timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "400 succeeded" in out and "400 2xx" in out, out


def test_backend_down_gives_502():
    """With nothing on the backend port h2o answers 502 itself and logs the failure."""
    exe = h2o_bin()
    if exe is None:
        pytest.skip("h2o is not installed")
    d = mkworkdir("l3kv-h2o-down-")
    proxy = None
    try:
        dead = free_port()  # bound and released: nothing listens there
        proxy = H2o(exe, dead, d, wait=False)
        deadline = time.monotonic() + 20
        r = None
        while time.monotonic() < deadline:
            try:
                r = requests.get(proxy.base + "/kv/x", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert r is not None and r.status_code == 502, r
        with open(proxy.error_log) as f:
            assert "connection failed" in f.read()
    finally:
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(d, ignore_errors=True)


def tls_listener(text, port, crt, key):
    """Uncomment the TLS listener example of the configuration (exactly as shipped, with
    the port and certificate paths replaced) and add it after the plain listener."""
    lines = text.split("\n")
    start = lines.index("#   listen:")
    end = next(i for i in range(start, len(lines)) if "minimum-version" in lines[i])
    block = [ln[4:] for ln in lines[start:end + 1]]
    assert block[0] == "listen:" and all(ln.startswith("  ") for ln in block[1:]), block
    block = [ln.replace("port: 443", "port: %d" % port)
             .replace("/etc/h2o/l3kv.crt", crt).replace("/etc/h2o/l3kv.key", key) for ln in block]
    block.insert(1, "  host: 127.0.0.1")
    at = lines.index("# TLS terminates here: add a second top-level `listen:` key (h2o accepts the key more")
    return "\n".join(lines[:at] + block + lines[at:])


def test_tls_at_h2o_with_http2(px, tmp_path):
    """The TLS example from the configuration's comment: HTTP/2 over TLS (ALPN) to h2o,
    plain HTTP/1.1 to l3kv, the document and the ETag unchanged."""
    openssl, curl = shutil.which("openssl"), shutil.which("curl")
    if openssl is None or curl is None:
        pytest.skip("openssl or curl not installed")
    d = mkworkdir("l3kv-h2o-tls-")
    proxy = None
    try:
        crt, key = os.path.join(d, "l3kv.crt"), os.path.join(d, "l3kv.key")
        r = subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=localhost", "-keyout", key, "-out", crt],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        os.chmod(key, 0o644)
        tls_port = free_port()
        proxy = H2o(h2o_bin(), px.srv.port, d,
                    edit=lambda t: tls_listener(t, tls_port, crt, key))
        r = px.put(u(px, "/kv/tls1"), data='{"over":"tls"}', timeout=10)
        tag = r.headers["ETag"]
        r = subprocess.run([curl, "-sS", "-k", "--max-time", "20", "--http2", "-D", "-",
                            "-o", os.path.join(d, "body"), "-w", "%{http_version}",
                            "https://127.0.0.1:%d/kv/tls1" % tls_port],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert out.endswith("2") and out.startswith("HTTP/2 200"), out
        assert ("etag: %s" % tag).lower() in out.lower(), out
        with open(os.path.join(d, "body")) as f:
            assert json.load(f) == {"over": "tls"}
    finally:
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_sse_change_feed_streams_through_h2o(px):
    """The shipped configuration streams /changes: an event written after the stream
    opened reaches the client through h2o while the response is still open."""
    sock = socket.create_connection(("127.0.0.1", px.proxy.port), timeout=30)
    try:
        sock.sendall(b"GET /changes?feed=sse&heartbeat=300&prefix=h2o-sse- HTTP/1.1\r\n"
                     b"Host: x\r\nAccept: text/event-stream\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw:
            d = sock.recv(65536)
            assert d, "h2o closed the connection before the response head"
            raw += d
        head = raw.split(b"\r\n\r\n", 1)[0].decode()
        assert head.split()[1] == "200", head
        assert "text/event-stream" in head.lower(), head
        r = px.put(u(px, "/kv/h2o-sse-1"), data='{"n":1}', headers=JSON_HDR, timeout=10)
        assert r.status_code in (200, 201), r.text
        version = r.json()["version"]
        # read until the change arrives; the stream must still be open (no final chunk)
        while b"event: change" not in raw or b"\n\n" not in raw.split(b"event: change", 1)[1]:
            d = sock.recv(65536)
            assert d, "the stream ended before the change arrived: h2o buffered it"
            raw += d
        block = raw.split(b"event: change", 1)[1].split(b"\n\n", 1)[0].decode()
        data = json.loads(block.split("data: ", 1)[1])
        assert data["key"] == "h2o-sse-1" and data["version"] == version and data["op"] == "put"
        assert b"\r\n0\r\n\r\n" not in raw, "the response ended"
    finally:
        # h2o notices the closed client at the next heartbeat it forwards and then drops
        # the backend stream (h2o waits for open requests when it is stopped)
        sock.close()
