# SPDX-License-Identifier: MIT
"""A data directory written by a server of an earlier document format (tests/fixtures/datadir-vN,
made by tests/fixtures/make-datadir.py N: a snapshot and WAL records after it) starts the
current server, which serves exactly what the old one served; a checkpoint and a restart keep
it. Version 2 documents are rebuilt into version 3 (the full form); version 3 documents are
current and served as they were; a document written again is stored in the current form
(small ones packed, version 4)."""
import json
import os

import pytest
import shutil
import struct
import tempfile

import requests

from conftest import Server

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
BIN = {"Accept": "application/vnd.l3kv.doc"}


def version(s, key):
    r = requests.get(s.url("/kv/" + key), headers=BIN, timeout=10)
    assert r.status_code == 200, r.text
    return struct.unpack_from("<H", r.content, 4)[0]


def served(s, keys):
    out = {}
    for k in keys:
        r = requests.get(s.url("/kv/" + k), timeout=10)
        assert r.status_code in (200, 404), r.text
        out[k] = r.json() if r.status_code == 200 else None
    return out


@pytest.mark.parametrize("old", [2, 3])
def test_previous_format_data_directory_is_served_identically(old):
    fixture = os.path.join(FIXTURES, "datadir-v%d" % old)
    want = json.load(open(os.path.join(fixture, "expected.json")))
    d = tempfile.mkdtemp(prefix="l3kv-it-")
    shutil.copytree(os.path.join(fixture, "data"), os.path.join(d, "data"))
    os.chmod(os.path.join(d, "data"), 0o700)
    s = Server(workers=1, reuse_dir=d)
    try:
        assert served(s, want) == want
        assert version(s, "big") == 3  # handed back in the full form of the current format
        # written again: the small document is packed, and reads back the same
        assert requests.put(s.url("/kv/small"), data=json.dumps(want["small"]), timeout=10).status_code == 200
        assert version(s, "small") == 4
        assert requests.post(s.url("/admin/checkpoint"), timeout=10).status_code in (200, 202)
        s.stop(keep_dir=True)
        s = Server(workers=1, reuse_dir=d)
        assert served(s, want) == want
        assert version(s, "small") == 4
    finally:
        s.stop()
