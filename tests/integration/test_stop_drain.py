# SPDX-License-Identifier: MIT
"""A graceful stop drains the WAL ring whatever state the writer is in.

The WAL writer is SIGKILLed as soon as each replacement starts, so its restart backoff
grows to seconds; while it is down, documents written in buffered mode are acknowledged
from the ring. A SIGTERM in that window must still get every acknowledged write to disk
(the supervisor starts the writer at once for the stop) and exit 0; a restart on the same
data directory serves all of them."""
import os
import re
import signal
import time

import requests

from conftest import Server


def wait_log(s, pattern, start=0, timeout=15.0):
    """Wait until the log (from offset start) matches pattern; the match object."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.compile(pattern).search(s.logtext(), start)
        if m:
            return m
        time.sleep(0.02)
    raise AssertionError("no %r in the log:\n%s" % (pattern, s.logtext()))


def test_sigterm_with_the_writer_in_backoff_keeps_every_acknowledged_write():
    s = Server(config={"storage": {"durability": "buffered"}}, workers=2)
    try:
        m = wait_log(s, r"wal writer started \(pid (\d+)\)")
        for _ in range(8):
            pid = int(m.group(1))
            os.kill(pid, signal.SIGKILL)
            died = wait_log(s, r"wal writer \(pid %d\) died: [^\n]*restarting in (\d+) ms" % pid, m.end())
            backoff = int(died.group(1))
            if backoff >= 3200:
                break
            m = wait_log(s, r"wal writer started \(pid (\d+)\)", died.end())
        assert backoff >= 3200, s.logtext()
        # the writer is down for seconds now: write while it is
        with requests.Session() as h:
            for i in range(200):
                r = h.put(s.url("/kv/drain-%d" % i), json={"i": i}, timeout=5)
                assert r.status_code == 200, (i, r.status_code, r.text)
        assert "wal writer started" not in s.logtext()[died.end():], "writer restarted too soon for the test"
        s.proc.send_signal(signal.SIGTERM)
        code = s.proc.wait(timeout=30)
        log = s.logtext()
        assert code == 0, log
        # the writer ran for the stop (started at once, not after its backoff)
        assert re.search(r"wal writer started \(pid \d+\)", log[died.end():]), log
    finally:
        s.stop(check=False, keep_dir=True)
    s2 = Server(config={"storage": {"durability": "buffered"}}, workers=2, reuse_dir=s.dir)
    try:
        missing = []
        with requests.Session() as h:
            for i in range(200):
                r = h.get(s2.url("/kv/drain-%d" % i), timeout=5)
                if r.status_code != 200 or r.json() != {"i": i}:
                    missing.append(i)
        assert not missing, "%d of 200 acknowledged writes lost: %s" % (len(missing), missing[:10])
    finally:
        s2.stop()
