# SPDX-License-Identifier: MIT
"""The systemd unit built from etc/systemd/l3kv.service.in: `systemd-analyze verify`, its
settings against what the server does, and its ExecStart run the way systemd runs it
(working directory, LimitNOFILE, KillSignal to the main process only, TimeoutStopSec),
with the shipped etc/config.json whose system paths are moved into a temporary
directory. Data written before the stop must be there after the restart.

L3KV_UNIT names the configured unit (meson: <build>/etc/l3kv.service); without it the
template is rendered here with L3KV_BINDIR / L3KV_SYSCONFDIR (default /usr/local)."""
import json
import os
import pwd
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

from l3kv_deploy import SRC_ROOT, L3kv, cleanup_shm, free_port, l3kv_bin, mkworkdir, stop_like_systemd

PREFIX = os.environ.get("L3KV_PREFIX", "/usr/local")
BINDIR = os.environ.get("L3KV_BINDIR", PREFIX + "/bin")
SYSCONFDIR = os.environ.get("L3KV_SYSCONFDIR", PREFIX + "/etc")
TEMPLATE = os.path.join(SRC_ROOT, "etc", "systemd", "l3kv.service.in")
SHIPPED_CONFIG = os.path.join(SRC_ROOT, "etc", "config.json")


def unit_text():
    p = os.environ.get("L3KV_UNIT", "")
    if p and os.path.exists(p):
        with open(p) as f:
            return f.read()
    with open(TEMPLATE) as f:
        text = f.read()
    for k, v in (("BINDIR", BINDIR), ("SYSCONFDIR", SYSCONFDIR),
                 ("DOCDIR", PREFIX + "/share/doc/l3kv")):
        text = text.replace("@%s@" % k, v)
    return text


def parse_unit(text):
    """{section: {key: [values in order]}}; continuation lines and comments handled."""
    out, sect, pending = {}, None, ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            sect = line[1:-1]
            out.setdefault(sect, {})
            continue
        k, _, v = line.partition("=")
        out[sect].setdefault(k.strip(), []).append(v.strip())
    return out


def svc(unit, key, default=None):
    vals = unit.get("Service", {}).get(key)
    return vals[-1] if vals else default


def seconds(v):
    """systemd time span ("30", "30s", "1min 30s", "500ms", "infinity") in seconds."""
    if v.strip() == "infinity":
        return float("inf")
    units = {"": 1, "s": 1, "sec": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", v)
    assert parts and "".join(n + u for n, u in parts) == v.replace(" ", ""), v
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def unit():
    return parse_unit(unit_text())


@pytest.fixture(scope="module")
def shipped():
    with open(SHIPPED_CONFIG) as f:
        return json.load(f)


def execstart_argv(unit):
    vals = unit["Service"].get("ExecStart", [])
    assert len(vals) == 1, "the service takes exactly one ExecStart: %r" % vals
    v = vals[0].lstrip("-@:+!")  # systemd's prefixes
    return shlex.split(v)


def test_systemd_analyze_verify(unit):
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("systemd-analyze not installed")
    # verify checks that ExecStart's program exists: point it at the built binary
    argv = execstart_argv(unit)
    text = unit_text().replace(argv[0], l3kv_bin())
    d = mkworkdir("l3kv-unit-")
    try:
        p = os.path.join(d, "l3kv.service")
        with open(p, "w") as f:
            f.write(text)
        r = subprocess.run([sa, "verify", p], capture_output=True, timeout=60, cwd=d)
        msgs = [l for l in (r.stdout + r.stderr).decode().splitlines() if "l3kv.service" in l]
        assert r.returncode == 0 and not msgs, (r.returncode, r.stdout, r.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_execstart_uses_installed_paths(unit):
    argv = execstart_argv(unit)
    assert argv[0] == os.path.join(BINDIR, "l3kv")
    # etc/meson.build installs etc/config.json to <sysconfdir>/l3kv/config.json
    assert argv[1:] == [os.path.join(SYSCONFDIR, "l3kv", "config.json")]


def test_unit_settings_match_the_server(unit, shipped):
    stype = svc(unit, "Type", "simple")
    # the supervisor does not fork into the background; it sends READY=1 (sd_notify protocol)
    assert stype in ("simple", "exec", "notify"), stype
    # the signals the supervisor treats as a graceful stop (docs/server.md)
    assert svc(unit, "KillSignal", "SIGTERM") in ("SIGTERM", "SIGINT", "TERM", "INT")
    # the supervisor stops its children itself: they must not get the signal first
    assert svc(unit, "KillMode", "control-group") == "mixed"
    # stop bound: workers (shutdown_timeout_ms + 2 s), then the roles (the same again)
    stop_s = seconds(svc(unit, "TimeoutStopSec", "90"))
    drain_s = shipped["server"].get("shutdown_timeout_ms", 10000) / 1000.0
    assert stop_s >= 2 * (drain_s + 2), (stop_s, drain_s)
    assert svc(unit, "Restart", "no") in ("on-failure", "on-abnormal", "always")
    user = svc(unit, "User")
    if user is not None and svc(unit, "DynamicUser", "no") not in ("yes", "true", "1"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.fail("User=%s does not exist on this system" % user)
    # the data directory of the shipped config is the unit's state directory
    state = svc(unit, "StateDirectory")
    assert state, "no StateDirectory="
    data_dir = shipped["storage"]["data_dir"]
    assert os.path.normpath(data_dir) == os.path.join("/var/lib", state.split()[0])
    wal = shipped["storage"].get("wal_path", "")
    assert wal == "" or wal.startswith(data_dir.rstrip("/") + "/")
    wd = svc(unit, "WorkingDirectory")
    assert wd in (None, data_dir, "~") or wd.startswith(data_dir), wd


def shm_names(pid):
    return [n for n in ("l3kv-l3kv.%d" % pid, "l3kv-pid-%d" % pid)
            if os.path.exists(os.path.join("/dev/shm", n))]


def like_systemd(unit, shipped, workdir):
    """ExecStart's argv, config, working directory and preexec function, with the shipped
    config copied into workdir and its system paths moved there."""
    cfg = json.loads(json.dumps(shipped))
    data_dir = shipped["storage"]["data_dir"].rstrip("/")
    state = os.path.join(workdir, "state")
    cfg["storage"]["data_dir"] = state
    if cfg["storage"].get("wal_path"):
        cfg["storage"]["wal_path"] = cfg["storage"]["wal_path"].replace(data_dir, state, 1)
    cfg["server"]["address"] = "127.0.0.1"
    cfg["server"]["port"] = free_port()
    os.makedirs(state, exist_ok=True)  # StateDirectory= creates it before ExecStart
    argv = execstart_argv(unit)
    cfg_path = os.path.join(workdir, "config.json")  # where L3kv writes cfg
    argv = [l3kv_bin()] + [cfg_path if a == argv[1] else a for a in argv[1:]]
    wd = svc(unit, "WorkingDirectory")
    cwd = state + wd[len(data_dir):] if wd and wd.startswith(data_dir) else workdir
    nofile = svc(unit, "LimitNOFILE")

    def preexec():
        if nofile:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = hard if nofile == "infinity" else int(nofile.split(":")[-1])
            if hard != resource.RLIM_INFINITY:
                want = min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    return cfg, argv, cwd, preexec


def test_execstart_stop_restart_keeps_data(unit, shipped):
    d = mkworkdir("l3kv-unit-run-")
    stop_s = seconds(svc(unit, "TimeoutStopSec", "90"))
    sig = getattr(signal, "SIG" + svc(unit, "KillSignal", "SIGTERM").replace("SIG", ""))
    try:
        cfg, argv, cwd, preexec = like_systemd(unit, shipped, d)
        srv = L3kv(cfg, d, argv=argv, preexec_fn=preexec, cwd=cwd)
        # ExecStartPre-style check of the very file ExecStart reads
        r = subprocess.run([l3kv_bin(), "--check", srv.config_path], capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        docs = {"k%d" % i: {"i": i, "s": "v" * i, "a": list(range(i % 7))} for i in range(50)}
        docs["big"] = {"blob": "b" * (1 << 20), "n": 1}
        with requests.Session() as s:
            for k, v in docs.items():
                s.put(srv.base + "/kv/" + k, data=json.dumps(v), timeout=30).raise_for_status()
            r = s.post(srv.base + "/kv/big?op=incr&field=n&val=41", timeout=10)
            assert r.json()["value"] == 42
            docs["big"]["n"] = 42
            s.delete(srv.base + "/kv/k0", timeout=10).raise_for_status()
            del docs["k0"]
        pid = srv.proc.pid
        # ExecReload: SIGHUP to the main pid; the server keeps running and serving
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.3)
        assert srv.proc.poll() is None, srv.logtext()
        assert requests.get(srv.base + "/kv/k1", timeout=10).json() == docs["k1"]
        rc, took, left = stop_like_systemd(srv.proc, sig, stop_s)
        srv.log.close()
        assert rc == 0, "exit status %r after %.1f s:\n%s" % (rc, took, srv.logtext())
        assert took < stop_s
        assert not left, "processes left in the group after the main process exited: %r" % left
        assert not shm_names(pid), "arena not unlinked: %r" % shm_names(pid)
        # systemd would not restart it (exit 0 is a clean stop); start it again by hand
        srv2 = L3kv(cfg, d, argv=argv, preexec_fn=preexec, cwd=cwd)
        try:
            with requests.Session() as s:
                for k, v in docs.items():
                    r = s.get(srv2.base + "/kv/" + k, timeout=30)
                    assert r.status_code == 200 and r.json() == v, (k, r.status_code)
                assert s.get(srv2.base + "/kv/k0", timeout=10).status_code == 404
        finally:
            rc2, _, left2 = srv2.stop(stop_s)
        assert rc2 == 0 and not left2, srv2.logtext()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_sd_notify_ready_then_stopping(unit, shipped):
    """Type=notify: the supervisor sends READY=1 on $NOTIFY_SOCKET once it serves, and
    STOPPING=1 when it starts a graceful stop."""
    if svc(unit, "Type", "simple") != "notify":
        pytest.skip("unit is not Type=notify")
    d = mkworkdir("l3kv-unit-notify-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(d, "notify.sock")
    sock.bind(path)
    sock.settimeout(30)
    old = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = path
    try:
        cfg, argv, cwd, preexec = like_systemd(unit, shipped, d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        log = open(os.path.join(d, "l3kv.log"), "ab")
        # started without waiting for /kv/health: READY=1 is read first, then one request
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd, start_new_session=True, preexec_fn=preexec)
        try:
            msg = sock.recv(4096).decode()
            while msg == "WATCHDOG=1":  # WatchdogSec= keep-alives may come in between
                msg = sock.recv(4096).decode()
            assert "READY=1" in msg.split("\n"), msg
            # ready means serving: the first request after READY=1 is answered, no retry
            base = "http://127.0.0.1:%d" % cfg["server"]["port"]
            assert requests.get(base + "/kv/health", timeout=10).status_code == 200
            proc.send_signal(signal.SIGTERM)
            msg = sock.recv(4096).decode()
            while msg == "WATCHDOG=1":
                msg = sock.recv(4096).decode()
            assert "STOPPING=1" in msg.split("\n"), msg
        finally:
            rc, _, left = stop_like_systemd(proc, signal.SIGTERM, 30)
            log.close()
            if rc is None or left:
                cleanup_shm(proc.pid)
        with open(os.path.join(d, "l3kv.log"), "rb") as f:
            assert rc == 0, f.read().decode("utf-8", "replace")[-4000:]
    finally:
        if old is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        else:
            os.environ["NOTIFY_SOCKET"] = old
        sock.close()
        shutil.rmtree(d, ignore_errors=True)
