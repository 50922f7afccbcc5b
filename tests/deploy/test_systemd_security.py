# SPDX-License-Identifier: MIT
"""The systemd unit's sandbox: `systemd-analyze security --offline=true` rates the unit built
from etc/systemd/l3kv.service.in at most 2.5, and the directives the server depends on
(io_uring's system calls, the state directory, the shared-memory arena) are kept."""
import os
import re
import shutil
import subprocess

import pytest

from l3kv_deploy import l3kv_bin, mkworkdir
from l3kv_deploy import L3kv, l3kv_test_config
from test_systemd_unit import execstart_argv, parse_unit, unit_text

MAX_EXPOSURE = 2.5


def test_security_score_at_most_2_5():
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("systemd-analyze not installed")
    text = unit_text()
    text = text.replace(execstart_argv(parse_unit(text))[0], l3kv_bin())
    d = mkworkdir("l3kv-unit-sec-")
    try:
        p = os.path.join(d, "l3kv.service")
        with open(p, "w") as f:
            f.write(text)
        r = subprocess.run([sa, "security", "--offline=true", "--no-pager", p], capture_output=True, text=True,
                           timeout=60, cwd=d)
        if "--offline" in r.stderr and "unrecognized" in r.stderr:
            pytest.skip("this systemd-analyze has no --offline")
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
        assert m, r.stdout + r.stderr
        assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_sandbox_keeps_what_the_server_needs():
    svc = parse_unit(unit_text())["Service"]
    filt = " ".join(svc.get("SystemCallFilter", []))
    for sc in ("@system-service", "io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert sc in filt.split(), (sc, filt)
    assert svc["UMask"] == ["0077"]
    assert svc["ProtectSystem"] == ["strict"]
    assert svc["StateDirectory"] == ["l3kv"]  # the only writable place but /dev/shm and /tmp
    assert svc["CapabilityBoundingSet"] == [""]
    assert svc["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]


def test_watchdog_keepalive_while_serving():
    """WatchdogSec=: the supervisor sends WATCHDOG=1 on $NOTIFY_SOCKET after READY=1."""
    import socket
    assert int(parse_unit(unit_text())["Service"]["WatchdogSec"][0]) >= 10
    d = mkworkdir("l3kv-unit-wd-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(d, "notify.sock")
    sock.bind(path)
    sock.settimeout(30)
    old = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = path
    srv = None
    try:
        srv = L3kv(l3kv_test_config(d), d)
        msgs = []
        while "WATCHDOG=1" not in msgs:
            msgs += sock.recv(4096).decode().split("\n")
        assert "READY=1" in msgs
    finally:
        if srv is not None:
            srv.stop(30)
        if old is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        else:
            os.environ["NOTIFY_SOCKET"] = old
        sock.close()
        shutil.rmtree(d, ignore_errors=True)
