# SPDX-License-Identifier: MIT
"""A data directory written by a server of document format version 2 (tests/fixtures/datadir-v2,
made by tests/fixtures/make-datadir-v2.py: a snapshot and WAL records after it) starts the
current server, which serves exactly what the old one served, in the current format; a
checkpoint and a restart keep it."""
import json
import os
import shutil
import struct
import tempfile

import requests

from conftest import Server

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "datadir-v2")


def served(s, keys):
    out = {}
    for k in keys:
        r = requests.get(s.url("/kv/" + k), timeout=10)
        assert r.status_code in (200, 404), r.text
        out[k] = r.json() if r.status_code == 200 else None
    return out


def test_previous_format_data_directory_is_served_identically():
    want = json.load(open(os.path.join(FIXTURE, "expected.json")))
    d = tempfile.mkdtemp(prefix="l3kv-it-")
    shutil.copytree(os.path.join(FIXTURE, "data"), os.path.join(d, "data"))
    os.chmod(os.path.join(d, "data"), 0o700)
    s = Server(workers=1, reuse_dir=d)
    try:
        assert served(s, want) == want
        r = requests.get(s.url("/kv/big"), headers={"Accept": "application/vnd.l3kv.doc"}, timeout=10)
        assert r.status_code == 200
        assert struct.unpack_from("<H", r.content, 4)[0] == 3  # handed back in the current format
        assert requests.post(s.url("/admin/checkpoint"), timeout=10).status_code in (200, 202)
        s.stop(keep_dir=True)
        s = Server(workers=1, reuse_dir=d)
        assert served(s, want) == want
    finally:
        s.stop()
