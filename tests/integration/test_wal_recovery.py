# SPDX-License-Identifier: MIT
"""Recovery over the real binary: a start whose snapshot is missing while a checkpoint
deleted the segments it covered is refused (exit 2, naming what is missing) unless
--accept-data-loss; a WAL record or snapshot entry that passes its CRC but cannot be
applied is set aside in <data_dir>/quarantine, counted in /metrics and listed by
l3kv-inspect, while storage.recovery "strict" stops instead. Records are crafted here with
an independent CRC-32C and encoder (formats in docs/wal.md)."""
import json
import os
import re
import shutil
import struct
import subprocess
import time

import pytest
import requests

from conftest import BIN, Server

INSPECT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(BIN))), "tools", "l3kv-inspect", "l3kv-inspect")


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

OPS = {"put": 1, "delete": 2, "set": 3, "merge": 4, "patch": 5}


def encode(op, key, payload, lsn, salt):
    """A WAL record (docs/wal.md 1.1) with a valid CRC."""
    key = key.encode()
    body = struct.pack("<HBBIII Q", 0x574C, OPS[op], 0, len(key), len(payload), 0, lsn) + key + payload
    size = ((8 + len(body) + 7) & ~7) + 8
    rec = bytearray(struct.pack("<II", size, 0) + body)
    rec += b"\0" * (size - 8 - len(rec))
    rec += struct.pack("<Q", salt)
    struct.pack_into("<I", rec, 4, crc32c(bytes(rec[8:])))
    return bytes(rec)


def segments(data_dir):
    names = [n for n in os.listdir(data_dir) if re.fullmatch(r"data\.wal\.\d{8,}", n)]
    return [os.path.join(data_dir, n) for n in sorted(names, key=lambda n: int(n.rsplit(".", 1)[1]))]


def _wait_log(s, text, timeout=30, count=1):
    """Wait until text appears `count` times in the log (shared by restarts on one directory)."""
    deadline = time.time() + timeout
    while time.time() < deadline and s.logtext().count(text) < count:
        time.sleep(0.1)
    assert s.logtext().count(text) >= count, s.logtext()


def _run(dir_, args=(), timeout=60):
    """Start the binary on an existing directory's config and wait for it to exit."""
    p = subprocess.run([BIN, os.path.join(dir_, "config.json")] + list(args), capture_output=True,
                       timeout=timeout, cwd=dir_)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


# a checkpoint deletes every covered segment (none kept for the change feed)
NO_RETAIN = {"storage": {"changes_retention_bytes": 0}}


def _checkpointed(n_before=80, n_after=10):
    """A stopped instance whose first segments a checkpoint deleted (no log retained for the
    change feed); returns (server, docs)."""
    s = Server(workers=1, config=NO_RETAIN)
    docs = {}
    with requests.Session() as h:
        for i in range(n_before):
            docs["b-%d" % i] = {"i": i, "pad": "p" * 500}
        for k, v in docs.items():
            assert h.put(s.url("/kv/" + k), data=json.dumps(v)).status_code == 200
        assert h.post(s.url("/admin/checkpoint")).status_code == 202
        _wait_log(s, "checkpoint done")
        for i in range(n_after):
            docs["a-%d" % i] = {"after": i}
            assert h.put(s.url("/kv/a-%d" % i), data=json.dumps(docs["a-%d" % i])).status_code == 200
    s.stop(keep_dir=True)
    return s, docs


def test_missing_snapshot_is_refused_then_accepted():
    s, docs = _checkpointed()
    data = os.path.join(s.dir, "data")
    segs = segments(data)
    assert segs and not segs[0].endswith(".00000001"), segs  # the checkpoint deleted segment 1
    os.unlink(os.path.join(data, "l3kv.snap"))
    code, out = _run(s.dir)
    assert code == 2, out
    assert "l3kv.snap" in out and "data.wal.00000001" in out and "--accept-data-loss" in out, out
    # refused before anything changed: the remaining segments are untouched
    assert segments(data) == segs
    s2 = Server(workers=1, reuse_dir=s.dir, args=["--accept-data-loss"])
    try:
        assert "starting with data loss" in s2.logtext(), s2.logtext()
        with requests.Session() as h:
            for i in range(10):  # written after the checkpoint: still in the WAL
                assert h.get(s2.url("/kv/a-%d" % i)).json() == docs["a-%d" % i]
            assert h.get(s2.url("/kv/b-0")).status_code == 404  # lost, as the log says
        _wait_log(s2, "checkpoint done", count=2)
    finally:
        s2.stop(keep_dir=True)
    s3 = Server(workers=1, reuse_dir=s.dir)  # the checkpoint closed the gap: no flag needed
    try:
        assert requests.get(s3.url("/kv/a-3")).json() == docs["a-3"]
    finally:
        s3.stop()


def test_older_snapshot_is_refused():
    """A snapshot older than the first remaining segment (e.g. restored from an old copy)."""
    s = Server(workers=1, config=NO_RETAIN)
    data = os.path.join(s.dir, "data")
    with requests.Session() as h:
        for rnd in range(2):
            for i in range(40):
                assert h.put(s.url("/kv/o-%d-%d" % (rnd, i)), data=json.dumps({"r": rnd})).status_code == 200
            n = s.logtext().count("checkpoint done")
            assert h.post(s.url("/admin/checkpoint")).status_code == 202
            deadline = time.time() + 30
            while time.time() < deadline and s.logtext().count("checkpoint done") == n:
                time.sleep(0.1)
            if rnd == 0:
                shutil.copy(os.path.join(data, "l3kv.snap"), os.path.join(s.dir, "old.snap"))
    s.stop(keep_dir=True)
    shutil.copy(os.path.join(s.dir, "old.snap"), os.path.join(data, "l3kv.snap"))
    code, out = _run(s.dir)
    assert code == 2, out
    assert "older" in out, out
    shutil.rmtree(s.dir, ignore_errors=True)


def _salt(seg):
    with open(seg, "rb") as f:
        hdr = f.read(64)
    assert hdr[:8] == b"L3KVWAL1"
    return struct.unpack_from("<Q", hdr, 16)[0]


def _poison_wal(data):
    """Append to the last segment a PUT whose document fails verification and a PATCH
    that cannot apply to k-1, both with valid CRCs and the segment's salt."""
    seg = segments(data)[-1]
    salt = _salt(seg)
    with open(seg, "ab") as f:
        f.write(encode("put", "bad-doc", b"\x01\x02\x03\x04not a document!!", 10**9, salt))
        f.write(encode("patch", "k-1", b'[{"op":"remove","path":"/nope/deeper"}]', 10**9 + 1, salt))
    return seg


def _metric(s):
    return requests.get(s.url("/metrics"), timeout=5).json()["recovery"]["quarantined_records"]


def test_unappliable_wal_records_are_quarantined():
    s = Server(workers=1)
    with requests.Session() as h:
        for i in range(20):
            assert h.put(s.url("/kv/k-%d" % i), data=json.dumps({"i": i})).status_code == 200
    s.stop(keep_dir=True)
    data = os.path.join(s.dir, "data")
    _poison_wal(data)
    strict = os.path.join(s.dir, "strict")
    shutil.copytree(s.dir, strict, ignore=shutil.ignore_patterns("strict", "*.log"))
    # strict: stops, naming the record
    with open(os.path.join(strict, "config.json")) as f:
        cfg = json.load(f)
    cfg["storage"].update(data_dir=os.path.join(strict, "data"), wal_path=os.path.join(strict, "data", "data.wal"),
                          recovery="strict")
    with open(os.path.join(strict, "config.json"), "w") as f:
        json.dump(cfg, f)
    code, out = _run(strict)
    assert code == 1, out  # docs/server.md: strict stops the start with exit 1
    assert "strict" in out and "LSN 1000000000" in out and "bad-doc" in out, out
    assert not os.path.exists(os.path.join(strict, "data", "quarantine"))
    # salvage (the default): serves everything else, sets both records aside
    s2 = Server(workers=1, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            for i in range(20):
                assert h.get(s2.url("/kv/k-%d" % i)).json() == {"i": i}
            assert h.get(s2.url("/kv/bad-doc")).status_code == 404
            assert h.put(s2.url("/kv/new"), data="{}").status_code == 200
        assert _metric(s2) == 2
        assert "set aside 2 record(s)" in s2.logtext(), s2.logtext()
    finally:
        s2.stop(keep_dir=True)
    qdir = os.path.join(data, "quarantine")
    files = sorted(os.listdir(qdir))
    assert len(files) == 2 and all(f.endswith(".l3q") for f in files), files
    for f in files:
        with open(os.path.join(qdir, f), "rb") as fh:
            q = fh.read()
        assert q[:8] == b"L3KVQRN1" and crc32c(q[:60]) == struct.unpack_from("<I", q, 60)[0]
        assert crc32c(q[64:]) == struct.unpack_from("<I", q, 44)[0]
    p = subprocess.run([INSPECT, "quarantine", qdir, "--json"], capture_output=True, timeout=30)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "bad-doc" in out and "k-1" in out and '"files":2' in out, out
    # the quarantine is not re-applied: the next start is clean
    s3 = Server(workers=1, reuse_dir=s.dir)
    try:
        assert requests.get(s3.url("/kv/k-1")).json() == {"i": 1}
    finally:
        s3.stop()


def _poison_snapshot(path):
    """Insert an entry whose document fails verification; the trailer is recomputed so the
    file as a whole verifies (docs/wal.md 1.3)."""
    with open(path, "rb") as f:
        snap = bytearray(f.read())
    assert snap[:8] == b"L3KVSNP1"
    salt = struct.unpack_from("<Q", snap, 16)[0]
    body = bytes(snap[64:-32]) + encode("put", "bad-snap", b"\xff" * 40, 5, salt)
    count = struct.unpack_from("<Q", snap, len(snap) - 24)[0] + 1
    tr = bytearray(b"L3KVSNPE" + struct.pack("<QQI", count, len(body), crc32c(body)))
    tr += struct.pack("<I", crc32c(bytes(tr)))
    with open(path, "wb") as f:
        f.write(bytes(snap[:64]) + body + bytes(tr))


def test_unappliable_snapshot_entry_is_quarantined():
    s, docs = _checkpointed(n_before=30, n_after=3)
    data = os.path.join(s.dir, "data")
    _poison_snapshot(os.path.join(data, "l3kv.snap"))
    s2 = Server(workers=1, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            bad = [k for k, v in docs.items() if h.get(s2.url("/kv/" + k)).json() != v]
            assert not bad, bad[:5]
            assert h.get(s2.url("/kv/bad-snap")).status_code == 404
        assert _metric(s2) == 1
        assert "snapshot entry" in s2.logtext(), s2.logtext()
    finally:
        s2.stop()


def test_recovery_key_is_checked():
    cfg_dir = os.path.join("/tmp", "l3kv-it-recovery-check-%d" % os.getpid())
    os.makedirs(cfg_dir, exist_ok=True)
    path = os.path.join(cfg_dir, "config.json")
    for value, code in (("bogus", 2), ("strict", 0), ("salvage", 0)):
        with open(path, "w") as f:
            json.dump({"storage": {"recovery": value}}, f)
        p = subprocess.run([BIN, "--check", path], capture_output=True, timeout=30)
        assert p.returncode == code, (value, p.stdout + p.stderr)
    shutil.rmtree(cfg_dir, ignore_errors=True)
