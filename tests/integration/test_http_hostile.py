# SPDX-License-Identifier: MIT
"""Hostile requests against the real l3kv binary: keys are the raw path after /kv/,
percent-decoded once, with no dot-segment processing, and routing decides on the raw
path (an encoded '/..' cannot alias another key or reach another route); control bytes
in keys are refused; request framing that two parsers could read differently
(Content-Length with Transfer-Encoding, two Content-Length values, a malformed chunk
size) and header-syntax errors get 400 with the JSON error body and the connection
closed; numbers in ?val= follow the JSON grammar and replies echo what was stored; a
write whose WAL write fails in fsync mode is answered with an error name that says the
outcome is unknown."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

from conftest import Server, raw_request


def k(prefix="h"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def err(r, status, name):
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == name, body
    return body


def raw_exchange(port, data, timeout=5.0):
    """Send data, read until the server closes (or timeout): (bytes, closed_by_server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
        return out, False


def responses(raw):
    """Split raw HTTP/1 bytes into [(status, headers(dict, lower-case), body)]."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            n, _, v = line.partition(b":")
            hdrs[n.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        out.append((status, hdrs, rest[:n]))
        raw = rest[n:]
    return out


# --- keys: the raw path, decoded once ------------------------------------------------------------

def test_encoded_dot_segments_do_not_alias_another_key(srv, session):
    victim = k("victim")
    assert session.put(srv.url("/kv/" + victim), data='{"v":1}').status_code == 200
    r = raw_request(srv.port, ("PUT /kv/tmp%%2F..%%2F%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: 7\r\nConnection: close\r\n\r\n{\"v\":2}" % victim).encode(),
                    read_all=True)
    assert r.startswith(b"HTTP/1.1 200"), r[:200]
    assert session.get(srv.url("/kv/" + victim)).json() == {"v": 1}
    # the write went to the literal key "tmp/../<victim>"
    r = raw_request(srv.port, ("GET /kv/tmp%%2F..%%2F%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                               % victim).encode(), read_all=True)
    assert r.startswith(b"HTTP/1.1 200") and r.endswith(b'{"v":2}'), r[-200:]


def test_raw_dot_segments_are_part_of_the_key(srv, session):
    victim = k("victim")
    assert session.put(srv.url("/kv/" + victim), data='{"v":1}').status_code == 200
    r = raw_request(srv.port, ("PUT /kv/x/../%s HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n"
                               "Connection: close\r\n\r\n{\"v\":3}" % victim).encode(), read_all=True)
    assert r.startswith(b"HTTP/1.1 200"), r[:200]
    assert session.get(srv.url("/kv/" + victim)).json() == {"v": 1}


@pytest.mark.parametrize("target", ["/kv/a%2Fb%2F..%2F..%2F..%2Fmetrics", "/kv/..%2Fmetrics", "/kv/../metrics",
                                    "/kv/x/../../metrics", "/kv/%2E%2E/metrics"])
def test_encoded_paths_cannot_reach_another_route(srv, target):
    r = raw_request(srv.port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target).encode(),
                    read_all=True)
    (status, hdrs, body), = responses(r)
    assert status == 404, r[:300]
    assert json.loads(body)["error"] == "not_found", body
    assert b"system" not in body


def test_encoded_reserved_names_are_reserved(srv, session):
    for target in ("/kv/%68ealth", "/kv/metric%73"):
        err(session.put(srv.url(target), data="{}"), 400, "reserved_key")


@pytest.mark.parametrize("enc", ["%00", "%01", "%1F", "%7F", "%0A"])
def test_control_bytes_in_keys_are_refused(srv, session, enc):
    key = k("ctl") + enc + "x"
    err(session.put(srv.url("/kv/" + key), data="{}"), 400, "bad_key")
    err(session.get(srv.url("/kv/" + key)), 400, "bad_key")
    listed = session.get(srv.url("/kv/?prefix=ctl-&limit=10000")).json()["keys"]
    assert not any(ord(c) < 0x20 or c == "\x7f" for key in listed for c in key), listed


@pytest.mark.parametrize("target", ["/kv/a%zzb", "/kv/a%4", "/kv/a%"])
def test_malformed_percent_escape_in_key(srv, target):
    r = raw_request(srv.port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target).encode(),
                    read_all=True)
    (status, hdrs, body), = responses(r)
    assert status == 400 and json.loads(body)["error"] == "bad_key", r[:300]


def test_unicode_and_reserved_looking_keys_still_work(srv, session):
    for key in ("caf\u00e9-" + k(), "a b+c-" + k(), "x:y@z!$&'()*,;=-" + k()):
        url = srv.url("/kv/" + requests.utils.quote(key, safe=""))
        assert session.put(url, data='{"ok":1}').status_code == 200, key
        assert session.get(url).json() == {"ok": 1}
        assert key in session.get(srv.url("/kv/?prefix=" + requests.utils.quote(key, safe=""))).json()["keys"]


# --- framing ---------------------------------------------------------------------------------------

FOLLOW = b"GET /kv/health HTTP/1.1\r\nHost: x\r\n\r\n"


def refused_and_closed(port, data, name=None):
    out, closed = raw_exchange(port, data)
    rs = responses(out)
    assert rs, out[:300]
    status, hdrs, body = rs[0]
    assert status == 400, out[:400]
    assert hdrs.get("content-type", "").startswith("application/json"), out[:400]
    b = json.loads(body)
    assert set(b) == {"error", "detail"}, b
    if name is not None:
        assert b["error"] == name, b
    assert hdrs.get("connection") == "close", out[:400]
    assert closed, "connection left open: %r" % out[:400]
    assert len(rs) == 1, "a second request was parsed: %r" % out[:600]
    return b


def test_content_length_with_chunked_is_refused(srv, session):
    key = k("te")
    data = (("PUT /kv/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
             "2\r\n{}\r\n0\r\n\r\n" % key).encode() + FOLLOW)
    refused_and_closed(srv.port, data, "bad_framing")
    assert session.get(srv.url("/kv/" + key)).status_code == 404


def test_two_content_lengths_are_refused(srv, session):
    key = k("cl")
    data = (("PUT /kv/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}" % key).encode()
            + FOLLOW)
    refused_and_closed(srv.port, data, "bad_framing")
    assert session.get(srv.url("/kv/" + key)).status_code == 404


def test_two_transfer_encodings_are_refused(srv):
    data = (b"PUT /kv/te2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n")
    refused_and_closed(srv.port, data, "bad_framing")


@pytest.mark.parametrize("size", [b"0x2", b"2x", b"+2", b" 2", b"2 z"])
def test_malformed_chunk_size_is_refused(srv, session, size):
    key = k("chunk")
    data = (("PUT /kv/%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % key).encode()
            + size + b"\r\n{}\r\n0\r\n\r\n" + FOLLOW)
    refused_and_closed(srv.port, data)
    assert session.get(srv.url("/kv/" + key)).status_code == 404


def test_chunk_extensions_and_identical_lengths_are_accepted(srv, session):
    key = k("ext")
    data = (("PUT /kv/%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
             "2;name=value\r\n{}\r\n0\r\n\r\n" % key).encode())
    out, _ = raw_exchange(srv.port, data)
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    key2 = k("cl2")
    data = (("PUT /kv/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
             "Connection: close\r\n\r\n{}" % key2).encode())
    out, _ = raw_exchange(srv.port, data)
    assert out.startswith(b"HTTP/1.1 200"), out[:300]


@pytest.mark.parametrize("line", [b"Bad Header", b"Host x", b"Na me: v", b": empty"])
def test_header_syntax_errors_carry_the_json_body(srv, line):
    data = b"GET /kv/health HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n" + FOLLOW
    refused_and_closed(srv.port, data, "bad_request")


def test_pipelined_valid_requests_still_work(srv):
    data = FOLLOW * 3
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(data)
        out = b""
        deadline = time.time() + 5
        while out.count(b"HTTP/1.1 200") < 3 and time.time() < deadline:
            out += s.recv(65536)
    assert out.count(b"HTTP/1.1 200") == 3, out


# --- numbers and truthful replies --------------------------------------------------------------

@pytest.mark.parametrize("op,val", [("set_int", "007"), ("set_int", "+7"), ("set_int", "-"), ("set_int", "1e3"),
                                    ("set_int", "-01"), ("incr", "01"), ("set_double", "+1.5"),
                                    ("set_double", ".5"), ("set_double", "5."), ("set_double", "0x1p3"),
                                    ("set_double", "01.5"), ("set_double", "1e"), ("set_double", "1.5 ")])
def test_non_json_numbers_are_refused(srv, session, op, val):
    key = k("num")
    assert session.put(srv.url("/kv/" + key), data='{"x":1}').status_code == 200
    r = session.post(srv.url("/kv/%s?op=%s&field=x&val=%s" % (key, op, requests.utils.quote(val, safe=""))))
    err(r, 400, "bad_value")
    assert session.get(srv.url("/kv/" + key)).json() == {"x": 1}


@pytest.mark.parametrize("op,val,stored", [("set_int", "-0", 0), ("set_int", "42", 42), ("incr", "-5", -4),
                                           ("set_double", "2.50", 2.5), ("set_double", "-1E2", -100.0),
                                           ("set_double", "0.1", 0.1)])
def test_replies_echo_the_stored_value(srv, session, op, val, stored):
    key = k("echo")
    assert session.put(srv.url("/kv/" + key), data='{"x":1}').status_code == 200
    r = session.post(srv.url("/kv/%s?op=%s&field=x&val=%s" % (key, op, requests.utils.quote(val, safe=""))))
    assert r.status_code == 200, r.text
    body = json.loads(r.text)  # the reply is JSON
    assert body["value"] == stored and session.get(srv.url("/kv/" + key)).json()["x"] == stored, (body, r.text)


def _mount_tmpfs(base, mnt):
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        why, ok = r.stdout.decode(errors="replace").strip(), r.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as e:
        why, ok = repr(e), False
    if not ok:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("cannot mount a tmpfs: %s" % why)


def test_fsync_write_failure_says_the_outcome_is_unknown():
    base = tempfile.mkdtemp(prefix="l3kv-unk-")
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    _mount_tmpfs(base, mnt)
    s = None
    try:
        with open(os.path.join(mnt, "filler.bin"), "wb") as f:
            f.write(b"\0" * (3 << 20))
        cfg = {"storage": {"durability": "fsync", "data_dir": os.path.join(mnt, "data"),
                           "wal_path": os.path.join(mnt, "data", "data.wal"), "checkpoint_bytes": 1 << 30}}
        s = Server(config=cfg, workers=1, reuse_dir=base)
        pad = "z" * (60 << 10)
        refusals = []
        with requests.Session() as h:
            for i in range(400):
                r = h.put(s.url("/kv/u-%03d" % i), data=json.dumps({"i": i, "pad": pad}), timeout=15)
                if r.status_code != 200:
                    refusals.append((r.status_code, r.json()["error"]))
                    if len(refusals) >= 5:
                        break
        assert refusals, "the 8 MiB filesystem never filled"
        names503 = {name for st, name in refusals if st == 503}
        assert names503 == {"durability_unknown"}, refusals
    finally:
        if s is not None:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
            s.log.close()
        subprocess.run(["umount", "-l", mnt], timeout=20)
        shutil.rmtree(base, ignore_errors=True)
