# SPDX-License-Identifier: MIT
"""A poisoned arena is rebuilt from the WAL, not served on.

The fault is injected into the live server's arena: its state word (ah_state, offset
224 of the arena header, outside the header checksum: docs/store.md) is set to POISONED,
as the store does when a lock repair cannot complete. The server must refuse writes
(503 store_poisoned, never a 200), stop by itself with exit code 3 (so that systemd's
Restart=on-failure starts it again) after draining the WAL, and the next start on the
same data directory must serve every write acknowledged before the fault."""
import errno
import mmap
import os
import struct
import time

import pytest
import requests

from conftest import Server

AH_STATE = 224
POISONED = 2


@pytest.mark.parametrize("mode", ["buffered", "fsync"])
def test_poisoned_arena_stops_with_exit_3_and_the_restart_keeps_every_acknowledged_write(mode):
    cfg = {"storage": {"durability": mode}}
    s = Server(config=cfg, workers=2)
    try:
        with requests.Session() as h:
            for i in range(100):
                r = h.put(s.url("/kv/p-%d" % i), json={"i": i}, timeout=5)
                assert r.status_code == 200, r.text
        path = "/dev/shm/l3kv-l3kv.%d" % s.proc.pid
        if not os.path.exists(path):
            pytest.skip("arena not found at %s" % path)
        with open(path, "r+b") as f:
            m = mmap.mmap(f.fileno(), 4096)
            assert struct.unpack_from("<I", m, AH_STATE)[0] == 1  # READY
            struct.pack_into("<I", m, AH_STATE, POISONED)
            m.close()
        # writes are refused while the server stops (or the connection is refused once it has)
        answers = []
        deadline = time.time() + 2
        while time.time() < deadline and s.proc.poll() is None:
            try:
                r = requests.put(s.url("/kv/after"), json={"x": 1}, timeout=5)
                answers.append((r.status_code, r.json().get("error") if r.status_code != 200 else None))
            except (requests.RequestException, ValueError):
                pass
        assert all(a == (503, "store_poisoned") for a in answers), answers
        code = s.proc.wait(timeout=30)
        log = s.logtext()
        assert code == 3, log
        assert "arena is poisoned" in log, log
    finally:
        s.stop(check=False, keep_dir=True)
    s2 = Server(config=cfg, workers=2, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            for i in range(100):
                r = h.get(s2.url("/kv/p-%d" % i), timeout=5)
                assert r.status_code == 200 and r.json() == {"i": i}, (i, r.status_code)
            assert h.get(s2.url("/kv/after"), timeout=5).status_code == 404
            assert h.put(s2.url("/kv/after"), json={"x": 2}, timeout=5).status_code == 200
    finally:
        s2.stop()
