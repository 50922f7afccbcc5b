# SPDX-License-Identifier: MIT
"""Helpers for the deployment tests: start the real l3kv binary and an h2o reverse proxy
on free loopback ports with temporary directories, wait until they answer, and stop them
the way systemd does (SIGTERM to the main process, bounded wait, then SIGKILL to the
whole group). Environment: L3KV_BIN (the l3kv executable, set by meson), H2O_BIN
(optional; default: h2o found in /usr/sbin, /usr/bin or PATH)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("L3KV_BIN", "")

sys.path.insert(0, os.path.join(SRC_ROOT, "tests", "lib"))
from l3proc import free_port  # noqa: E402  (re-exported for the deploy tests)
from l3proc import unlink_arena as cleanup_shm  # noqa: E402  (the arena a SIGKILLed supervisor left)


def l3kv_bin():
    if not BIN or not os.access(BIN, os.X_OK):
        pytest.fail("L3KV_BIN does not name the l3kv executable: %r" % BIN)
    return BIN


def h2o_bin():
    """The h2o executable, or None. Debian 12 installs it as /usr/bin/h2o."""
    env = os.environ.get("H2O_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    for p in ("/usr/sbin/h2o", "/usr/bin/h2o"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("h2o")


def wait_http(url, deadline_s, proc=None, what="server", logtext=lambda: ""):
    """Poll url until it answers 200; fail if proc exits or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail("%s exited early with %s:\n%s" % (what, proc.returncode, logtext()))
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    pytest.fail("%s did not answer %s within %.0f s:\n%s" % (what, url, deadline_s, logtext()))


def stop_like_systemd(proc, sig=signal.SIGTERM, timeout_s=30.0):
    """KillMode=mixed: `sig` to the main process only, wait up to timeout_s, then SIGKILL
    to the whole process group. Returns (exit status or None if it had to be killed,
    seconds it took, pids of the group still alive after the main process exited)."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - t0
    # a child already on its way out (exit signalled, not yet reaped by init) is given a
    # moment; one still there after it is a leftover, named with its command line
    leftovers = group_members(proc.pid)
    settle = time.monotonic() + 2.0
    while leftovers and time.monotonic() < settle:
        time.sleep(0.05)
        leftovers = group_members(proc.pid)
    leftovers = [(pid, cmdline(pid)) for pid in leftovers]
    if rc is None or leftovers:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return rc, took, leftovers


def cmdline(pid):
    """The command line of a process, or '?' when it is gone."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def group_members(pgid):
    """Pids (not zombies) whose process group is pgid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d))
    return out


class L3kv:
    """One l3kv instance: cfg is written to workdir/config.json and the server started as
    argv (default `l3kv workdir/config.json`) in cwd (default workdir)."""

    def __init__(self, cfg, workdir, argv=None, preexec_fn=None, cwd=None):
        self.dir = workdir
        self.cfg = cfg
        self.config_path = os.path.join(workdir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=1)
        self.port = cfg["server"]["port"]
        self.base = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(workdir, "l3kv.log")
        self.log = open(self.log_path, "ab")
        argv = argv or [l3kv_bin(), self.config_path]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=cwd or workdir,
                                     start_new_session=True, preexec_fn=preexec_fn)
        wait_http(self.base + "/kv/health", 20, self.proc, "l3kv", self.logtext)

    def logtext(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-6000:]

    def stop(self, timeout_s=30.0):
        res = stop_like_systemd(self.proc, signal.SIGTERM, timeout_s)
        if res[0] is None or res[2]:
            cleanup_shm(self.proc.pid)
        self.log.close()
        return res


def l3kv_test_config(workdir, **server):
    """A small configuration for a test instance: loopback, a free port, its own data dir."""
    cfg = {
        "server": {"address": "127.0.0.1", "port": free_port(), "min_workers": 2,
                   "max_workers": 2, "shutdown_timeout_ms": 3000},
        "storage": {"data_dir": os.path.join(workdir, "data"), "arena_bytes": 256 << 20},
        "autoscale": {"enabled": False},
    }
    cfg["server"].update(server)
    return cfg


def mkworkdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)  # h2o switches to an unprivileged user and must still reach it
    return d
