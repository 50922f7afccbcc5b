# SPDX-License-Identifier: MIT
"""Worker crash recovery keeps the service up: with workers SIGKILLed over and over (far
more often than every 10 s, so the restart backoff of a crashing slot grows), the last
live worker is restarted at once, without backoff, and the service answers after every
kill. Checked on the supervisor's log lines and on HTTP answers, with generous deadlines
(the restore time itself is measured by tools/bench/restore)."""
import os
import re
import signal
import time

import requests

from conftest import Server, wait_until


def wait_log(s, pattern, start=0, timeout=15.0):
    deadline = time.time() + timeout
    rx = re.compile(pattern)
    while time.time() < deadline:
        m = rx.search(s.logtext(), start)
        if m:
            return m
        time.sleep(0.01)
    raise AssertionError("no %r in the log:\n%s" % (pattern, s.logtext()))


def wait_serving(s, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(s.url("/kv/health"), timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise AssertionError("service did not answer after a kill:\n" + s.logtext())


def age_s(pid):
    """Seconds since process pid started (/proc/<pid>/stat field 22 against /proc/uptime)."""
    with open("/proc/%d/stat" % pid) as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return up - start_ticks / os.sysconf("SC_CLK_TCK")


def running(s):
    """{slot: pid} of running workers, from the metrics."""
    return {w["slot"] if "slot" in w else i: w["pid"]
            for i, w in enumerate(s.metrics()["workers"]) if w["state"] == "running" and w["pid"] > 0}


def test_last_worker_is_restarted_at_once_and_service_answers_after_every_kill():
    s = Server(workers=2)
    try:
        for rnd in range(6):
            wait_serving(s)
            live = running(s)
            deadline = time.time() + 15
            while len(live) < 2 and time.time() < deadline:  # a slot may still be in its backoff
                time.sleep(0.02)
                live = running(s)
            assert len(live) == 2, (rnd, live, s.logtext())
            (sa, pa), (sb, pb) = sorted(live.items())
            start = len(s.logtext())
            # first kill: the sibling lives, this slot restarts after its backoff
            os.kill(pa, signal.SIGKILL)
            da = wait_log(s, r"worker %d \(pid %d\) died: " % (sa, pa), start)
            wait_serving(s)
            # second kill: pb is the last live worker now, unless slot sa came back already;
            # it has lived past the supervisor's start-up window (a worker dying right after
            # its start keeps the backoff: that is a failing start, not a crash under load)
            wait_until(lambda: age_s(pb) >= 0.2, "worker %d older than the start-up window" % pb)
            os.kill(pb, signal.SIGKILL)
            m = wait_log(s, r"worker %d \(pid %d\) died: [^\n]*" % (sb, pb), start)
            # the supervisor's log is in event order: was sa restarted before pb died?
            back = re.search(r"worker %d started" % sa, s.logtext()[da.end():m.start()])
            if not back:
                assert "restarting at once" in m.group(0), m.group(0)
                wait_log(s, r"worker %d started \(pid \d+\)" % sb, m.end())
            wait_serving(s)
        log = s.logtext()
        # the slot killed first in every round crashed often enough for its backoff to grow
        assert re.search(r"died: [^\n]*restarting in (?:[4-9]\d\d|\d{4,}) ms", log), log
        # every death of a last live worker was followed at once by a restart (no backoff)
        for m in re.finditer(r"worker (\d+) \(pid \d+\) died: [^\n]*restarting at once", log):
            assert re.search(r"worker %s started" % m.group(1), log[m.end():]), log
        assert "restarting at once" in log, log
    finally:
        s.stop()
