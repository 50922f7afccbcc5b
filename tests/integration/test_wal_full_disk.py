# SPDX-License-Identifier: MIT
"""A start after a crash on a full disk: the torn tail of the last segment cannot be copied
aside (no space), yet recovery must not need space. The server starts, serves reads,
refuses writes with 507 while the disk stays full, accepts them when space returns, and a
later start with space moves the tail aside as usual (docs/wal.md section 5)."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import Server


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


def _fill(path):
    """Write until the filesystem is full; returns the filler's size."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                n += f.write(chunk)
            except OSError:
                break
        while True:
            try:
                n += f.write(b"\0" * 512)
            except OSError:
                break
    return n


def test_start_on_full_disk_after_torn_tail():
    base = tempfile.mkdtemp(prefix="l3kv-full-start-")
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    _mount_tmpfs(base, mnt)
    s = s2 = s3 = None
    data = os.path.join(mnt, "data")
    cfg = {"storage": {"data_dir": data, "wal_path": os.path.join(data, "data.wal"),
                       "checkpoint_bytes": 1 << 30}}
    try:
        s = Server(config=cfg, workers=1, reuse_dir=base)
        docs = {}
        with requests.Session() as h:
            for i in range(30):
                docs["d-%d" % i] = {"i": i, "pad": "q" * 3000}
                assert h.put(s.url("/kv/d-%d" % i), data=json.dumps(docs["d-%d" % i])).status_code == 200
        s.stop(keep_dir=True)
        segs = sorted(glob.glob(os.path.join(data, "data.wal.[0-9]*")))
        last = segs[-1]
        good_len = os.path.getsize(last)
        with open(last, "ab") as f:  # a torn record: length says 64 KiB, the bytes stop early
            f.write(b"\x00\x00\x01\x00" + b"\xab" * 200000)
        torn_len = os.path.getsize(last)
        # the graceful stop left feed.pos, which the next start reads and deletes: removed
        # first, so that the start does not free the block it holds on the full disk
        os.unlink(os.path.join(data, "feed.pos"))
        filler = os.path.join(mnt, "filler.bin")
        _fill(filler)
        s2 = Server(config=cfg, workers=1, reuse_dir=base)
        with requests.Session() as h:
            for k, v in docs.items():
                assert h.get(s2.url("/kv/" + k)).json() == v, k
            r = h.put(s2.url("/kv/new"), data=json.dumps({"pad": "n" * 100000}))
            assert r.status_code == 507 and r.json()["error"] == "disk_full", (r.status_code, r.text[:200])
            assert set(r.json()) == {"error", "detail"}
            assert h.get(s2.url("/kv/new")).status_code == 404  # refused before it was applied
        log = s2.logtext()
        assert re.search(r"set aside in place", log), log[-3000:]
        assert os.path.getsize(last) == torn_len  # nothing was cut: no copy could be made
        os.unlink(filler)
        with requests.Session() as h:
            ok, deadline = None, time.time() + 20
            while time.time() < deadline:
                r = h.put(s2.url("/kv/later"), data=json.dumps({"ok": 1}))
                if r.status_code == 200:
                    ok = r
                    break
                time.sleep(0.1)
            assert ok is not None, s2.logtext()[-3000:]
        s2.stop(keep_dir=True)
        s3 = Server(config=cfg, workers=1, reuse_dir=base)  # space now: the tail moves aside
        with requests.Session() as h:
            for k, v in docs.items():
                assert h.get(s3.url("/kv/" + k)).json() == v, k
            assert h.get(s3.url("/kv/later")).json() == {"ok": 1}
        s3.stop(keep_dir=True)
        assert os.path.getsize(last) == good_len
        aside = glob.glob(last + ".corrupt-*")
        assert len(aside) == 1 and os.path.getsize(aside[0]) == torn_len - good_len, aside
        assert not glob.glob(last + ".end-*")
    finally:
        for x in (s, s2, s3):
            if x is not None and x.proc.poll() is None:
                x.proc.kill()
                x.proc.wait()
        subprocess.run(["umount", "-l", mnt], timeout=20)
        shutil.rmtree(base, ignore_errors=True)
