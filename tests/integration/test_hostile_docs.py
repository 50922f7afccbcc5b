# SPDX-License-Identifier: MIT
"""Hostile documents over real HTTP: whatever the server accepts it can serve, checkpoint
and recover, and what it refuses changes nothing.

- Hash flooding: member names computed to share one probe chain under the hash seed a
  document's binary form shows (Accept: application/vnd.l3kv.doc), sent by JSON Patch and
  by PUT; the stored documents verify (their binary form is accepted back), and a
  checkpoint and a restart still serve them.
- Nesting: JSON Patch add/copy/move past the depth limit answers 400 too_deep.
- Amplification: 19 copies of "" (each doubles the document) answer 413
  document_too_large; storage.max_document_bytes is enforced at its edge and checked by
  --check.
"""
import json
import os
import struct
import subprocess
import time

import requests

from conftest import BIN, Server

BIN_TYPE = "application/vnd.l3kv.doc"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
M64 = (1 << 64) - 1
MUL = 0x9FB21C651E98DF25


def doc_hash(seed, key):
    """The member-name hash of src/doc/format.h (l3_doc__hash)."""
    n = len(key)
    h = ((seed + 0x9E3779B97F4A7C15) & M64) ^ ((n * 0xC2B2AE3D27D4EB4F) & M64)
    i = 0
    while n - i >= 8:
        w = int.from_bytes(key[i:i + 8], "little")
        h = ((h ^ w) * MUL) & M64
        h ^= h >> 32
        i += 8
    k, r = key[i:], n - i
    if r >= 4:
        a = int.from_bytes(k[:4], "little")
        b = int.from_bytes(k[r - 4:r], "little")
        h = ((h ^ ((a << 32) | b)) * MUL) & M64
    elif r:
        w = (k[0] << 16) | (k[r >> 1] << 8) | k[r - 1]
        h = ((h ^ w) * MUL) & M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & M64
    h ^= h >> 33
    return h & 0xFFFFFFFF


def collide(seed, count=300, bits=10):
    """count 8-byte names whose hashes agree in the low `bits` bits: one probe chain in
    every table of up to 2^bits slots (an object of 300 members has 1024)."""
    mask = (1 << bits) - 1
    want, out, i = None, [], 0
    while len(out) < count:
        name = b"k%07x" % i
        i += 1
        hv = doc_hash(seed, name) & mask
        if want is None:
            want = hv
        if hv == want:
            out.append(name.decode())
    return out


def seed_of(s, h, key):
    r = h.get(s.url("/kv/" + key), headers={"Accept": BIN_TYPE})
    assert r.status_code == 200, r.text
    return struct.unpack_from("<I", r.content, 24)[0], r.content


def binary_roundtrip_ok(s, h, key):
    """The server's own binary form of key is accepted back by its verifier."""
    _, raw = seed_of(s, h, key)
    r = h.put(s.url("/kv/" + key + ".copy"), data=raw, headers={"Content-Type": BIN_TYPE})
    return r.status_code == 200, r.text


def checkpoint(s):
    r = requests.post(s.url("/admin/checkpoint"), timeout=5)
    assert r.status_code == 202, r.text
    deadline = time.time() + 60
    while time.time() < deadline and "checkpoint done" not in s.logtext():
        time.sleep(0.1)
    assert "checkpoint done" in s.logtext(), s.logtext()


def restart(s, config=None):
    s.stop(keep_dir=True)
    return Server(config=config, workers=1, reuse_dir=s.dir)


def test_hash_flood_serves_checkpoints_and_recovers():
    s = Server(workers=1)
    try:
        with requests.Session() as h:
            assert h.put(s.url("/kv/victim"), data='{"o":{}}').status_code == 200
            seed, _ = seed_of(s, h, "victim")
            names = collide(seed)
            # JSON Patch on the document whose seed the names were made for
            patch = [{"op": "add", "path": "/o/" + n, "value": i} for i, n in enumerate(names)]
            r = h.patch(s.url("/kv/victim"), data=json.dumps(patch), headers=JSON_PATCH)
            assert r.status_code == 200, r.text
            # a new document from the same names (made for another document's seed)
            flood = {n: i for i, n in enumerate(names)}
            assert h.put(s.url("/kv/flood"), data=json.dumps(flood)).status_code == 200
            for key in ("victim", "flood"):
                ok, text = binary_roundtrip_ok(s, h, key)
                assert ok, (key, text)
            expect_victim = {"o": {n: i for i, n in enumerate(names)}}
            assert h.get(s.url("/kv/victim")).json() == expect_victim
            # names crafted again for the (new) seed, by set paths this time
            seed2, _ = seed_of(s, h, "victim")
            more = collide(seed2, count=300)
            patch = [{"op": "add", "path": "/p", "value": {}}]
            patch += [{"op": "add", "path": "/p/" + n, "value": n} for n in more]
            assert h.patch(s.url("/kv/victim"), data=json.dumps(patch), headers=JSON_PATCH).status_code == 200
            ok, text = binary_roundtrip_ok(s, h, "victim")
            assert ok, text
            expect_victim["p"] = {n: n for n in more}
        checkpoint(s)
        s = restart(s)
        with requests.Session() as h:
            assert h.get(s.url("/kv/victim")).json() == expect_victim
            assert h.get(s.url("/kv/flood")).json() == flood
        # and once more from the WAL alone (no checkpoint in between)
        with requests.Session() as h:
            seed3, _ = seed_of(s, h, "flood")
            extra = collide(seed3, count=300)
            patch = [{"op": "add", "path": "/" + n, "value": 0} for n in extra]
            assert h.patch(s.url("/kv/flood"), data=json.dumps(patch), headers=JSON_PATCH).status_code == 200
            flood.update({n: 0 for n in extra})
        s = restart(s)
        with requests.Session() as h:
            assert h.get(s.url("/kv/flood")).json() == flood
    finally:
        s.stop()


def nested(depth, inner="0"):
    return "[" * depth + inner + "]" * depth


def test_nesting_through_patch_is_refused():
    s = Server(workers=1)
    try:
        with requests.Session() as h:
            body = '{"a":%s}' % nested(500)
            assert h.put(s.url("/kv/deep"), data=body).status_code == 200
            before = h.get(s.url("/kv/deep")).text
            deepest = "/a" + "/0" * 499
            cases = [
                [{"op": "add", "path": deepest + "/0", "value": json.loads(nested(20))}],
                [{"op": "replace", "path": deepest + "/0", "value": json.loads(nested(20))}],
                [{"op": "copy", "from": "/a", "path": deepest + "/0"}],
                [{"op": "add", "path": "/b", "value": json.loads(nested(20, ""))},
                 {"op": "move", "from": "/a", "path": "/b" + "/0" * 20}],
            ]
            for patch in cases:
                r = h.patch(s.url("/kv/deep"), data=json.dumps(patch), headers=JSON_PATCH)
                assert r.status_code == 400 and r.json()["error"] == "too_deep", (patch[-1]["op"], r.text)
                # the detail names the failing operation (its byte offset in the patch text, which
                # is valid JSON) and the limit
                off = 1 if len(patch) == 1 else len(json.dumps(patch[0])) + 3  # '[', op 0, ', '
                want = "patch at byte offset %d: the result would nest deeper than the depth limit (512)" % off
                assert r.json()["detail"] == want, (patch[-1]["op"], r.text)
                assert h.get(s.url("/kv/deep")).text == before
            # ~500 more levels per request, repeated, as an attacker would
            for _ in range(3):
                r = h.patch(s.url("/kv/deep"), data=json.dumps(
                    [{"op": "copy", "from": "", "path": deepest + "/0"}]), headers=JSON_PATCH)
                assert r.status_code == 400
            ok, text = binary_roundtrip_ok(s, h, "deep")
            assert ok, text
        checkpoint(s)
        s = restart(s)
        with requests.Session() as h:
            assert h.get(s.url("/kv/deep")).text == before
    finally:
        s.stop()


def test_copy_amplification_is_refused_early():
    """19 copies of the whole document, each doubling it (2 KiB -> 1 GiB), in one PATCH."""
    s = Server(workers=1)
    try:
        with requests.Session() as h:
            doc = {"pad": "x" * 2000}
            assert h.put(s.url("/kv/amp"), data=json.dumps(doc)).status_code == 200
            patch = [{"op": "copy", "from": "", "path": "/c%d" % i} for i in range(19)]
            r = h.patch(s.url("/kv/amp"), data=json.dumps(patch), headers=JSON_PATCH)
            assert r.status_code == 413 and r.json()["error"] == "document_too_large", r.text
            assert h.get(s.url("/kv/amp")).json() == doc
            # the worker lived through it and still serves
            assert h.get(s.url("/kv/health")).status_code == 200
    finally:
        s.stop()


def test_max_document_bytes_edge():
    limit = 1 << 16
    s = Server(workers=1, config={"storage": {"max_document_bytes": limit}})
    try:
        with requests.Session() as h:
            # a string value costs its bytes rounded to 8 plus 8; the rest is small overhead
            small = {"s": "y" * (limit - 1024)}
            assert h.put(s.url("/kv/edge"), data=json.dumps(small)).status_code == 200
            _, raw = seed_of(s, h, "edge")
            assert len(raw) <= limit
            r = h.put(s.url("/kv/edge2"), data=json.dumps({"s": "y" * limit}))
            assert r.status_code == 413 and r.json()["error"] == "document_too_large", r.text
            assert h.get(s.url("/kv/edge2")).status_code == 404
            # growing the stored one past the limit: merge patch, JSON Patch, set
            r = h.patch(s.url("/kv/edge"), data=json.dumps({"t": "z" * 2048}),
                        headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 413 and r.json()["error"] == "document_too_large", r.text
            r = h.patch(s.url("/kv/edge"), data=json.dumps([{"op": "add", "path": "/t", "value": "z" * 2048}]),
                        headers=JSON_PATCH)
            assert r.status_code == 413, r.text
            assert h.get(s.url("/kv/edge")).json() == small
            # a small change still fits
            r = h.patch(s.url("/kv/edge"), data=json.dumps({"t": 1}),
                        headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            # a binary PUT of a document above the limit (built by a server with the default)
        t = Server(workers=1)
        try:
            with requests.Session() as h2:
                assert h2.put(t.url("/kv/big"), data=json.dumps({"s": "y" * (2 * limit)})).status_code == 200
                _, big = seed_of(t, h2, "big")
        finally:
            t.stop()
        with requests.Session() as h:
            r = h.put(s.url("/kv/big"), data=big, headers={"Content-Type": BIN_TYPE})
            assert r.status_code == 413 and r.json()["error"] == "document_too_large", r.text
    finally:
        s.stop()


def test_check_validates_max_document_bytes(tmp_path):
    for bad, word in ((100, "out of range"), (1 << 40, "out of range"), ("64M", "integer")):
        cfg = {"server": {"address": "127.0.0.1", "port": 1},
               "storage": {"data_dir": str(tmp_path / "data"), "arena_bytes": 256 << 20,
                           "max_document_bytes": bad}}
        p = tmp_path / "c.json"
        p.write_text(json.dumps(cfg))
        r = subprocess.run([BIN, "--check", str(p)], capture_output=True, timeout=10)
        msg = (r.stdout + r.stderr).decode()
        assert r.returncode == 2 and "storage.max_document_bytes" in msg and word in msg, msg
    cfg["storage"]["max_document_bytes"] = 1 << 20
    cfg["server"]["port"] = 8080
    p.write_text(json.dumps(cfg))
    r = subprocess.run([BIN, "--check", str(p)], capture_output=True, timeout=10)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
