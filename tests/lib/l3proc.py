# SPDX-License-Identifier: MIT
"""Process helpers shared by the Python tests that start, kill and restart the real l3kv
binary (tests/crash/server/*.py, tests/integration/test_durability_more.py). Standard
library only; a script adds this directory to sys.path:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))

The service is the supervisor (started with start_new_session=True, so its pid is its
process group), its workers, and the WAL writer and checkpointer, which run in process
groups of their own: killing the service means killing every descendant, not the group
alone."""
import glob
import os
import signal
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """pid and every process below it (via /proc/<pid>/task/*/children)."""
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        for f in glob.glob("/proc/%d/task/*/children" % p):
            try:
                with open(f) as fh:
                    kids = [int(x) for x in fh.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def alive(pid):
    """Running: neither a zombie nor gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def kill_service(proc, timeout=10.0):
    """SIGKILL the supervisor's process group and every descendant at once (a power cut
    for the processes, the page cache stays), reap the supervisor (a subprocess.Popen) and
    wait until none of them runs. Returns the pids that still run after timeout (empty
    on success); the caller decides whether that is a failure."""
    pids = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling interval
    return [p for p in pids if alive(p)]


def unlink_arena(pid):
    """Remove the shared-memory arena a killed supervisor (pid) left in /dev/shm."""
    for name in ("l3kv-l3kv.%d" % pid, "l3kv-pid-%d" % pid):
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError:
            pass
