# SPDX-License-Identifier: MIT
"""Fixtures for the integration suite: start the real l3kv binary on a free port with a
temporary data directory, wait until it answers, stop it with SIGTERM and check that it
exits 0. L3KV_BIN names the executable (set by meson)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

BIN = os.environ.get("L3KV_BIN", "")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One running l3kv instance."""

    def __init__(self, config=None, workers=2, args=None, preexec_fn=None, reuse_dir=None):
        if not BIN or not os.path.exists(BIN):
            pytest.fail("L3KV_BIN does not name the l3kv executable: %r" % BIN)
        self.dir = reuse_dir or tempfile.mkdtemp(prefix="l3kv-it-")
        self.port = free_port()
        cfg = {
            "server": {"address": "127.0.0.1", "port": self.port,
                       "min_workers": workers, "max_workers": workers,
                       "shutdown_timeout_ms": 3000},
            "storage": {"data_dir": os.path.join(self.dir, "data"),
                        "wal_path": os.path.join(self.dir, "data", "data.wal"),
                        "arena_bytes": 256 << 20},
        }
        for sect, vals in (config or {}).items():
            cfg.setdefault(sect, {}).update(vals)
        self.config = cfg
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, self.config_path] + (args or []), stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     preexec_fn=preexec_fn, start_new_session=True)
        self.base = "http://127.0.0.1:%d" % self.port
        self.wait_ready()

    def url(self, path):
        return self.base + path

    def wait_ready(self, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("l3kv exited early with %s:\n%s" % (self.proc.returncode, self.logtext()))
            try:
                r = requests.get(self.url("/kv/health"), timeout=1)
                if r.status_code == 200:
                    m = requests.get(self.url("/metrics"), timeout=1).json()
                    if m["system"]["thread_count"] >= self.config["server"]["min_workers"]:
                        return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        pytest.fail("l3kv did not become ready:\n" + self.logtext())

    def metrics(self):
        return requests.get(self.url("/metrics"), timeout=5).json()

    def worker_pids(self):
        return [w["pid"] for w in self.metrics()["workers"] if w["state"] == "running" and w["pid"] > 0]

    def logtext(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill_all(self):
        """SIGKILL the supervisor and every child at once (a power cut for the processes)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        for name in ("l3kv-l3kv.%d" % self.proc.pid, "l3kv-pid-%d" % self.proc.pid):
            try:
                os.unlink(os.path.join("/dev/shm", name))  # the arena a killed supervisor left
            except OSError:
                pass

    def stop(self, check=True, keep_dir=False):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if check:
                    pytest.fail("l3kv did not stop on SIGTERM:\n" + self.logtext())
        self.log.close()
        if check:
            assert self.proc.returncode == 0, self.logtext()
            if not keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def srv():
    s = Server(workers=2)
    yield s
    s.stop()


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(pred, what, timeout=30.0, interval=0.02):
    """Poll pred() until it returns something true (returned); fail naming what did not
    happen within the (generous) timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= deadline:
            pytest.fail("within %.0f s: %s did not happen" % (timeout, what))
        time.sleep(interval)


def recv_head(sock):
    """Read from sock until the end of a response head (or the connection closes)."""
    out = b""
    while b"\r\n\r\n" not in out:
        data = sock.recv(65536)
        if not data:
            break
        out += data
    return out


def raw_request(port, data, timeout=5.0, read_all=False):
    """Send raw bytes, return the response bytes (until close, or the first response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not read_all and b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0].split(b":")[1]):
                    break
                if not cl and (b" 304 " in head.split(b"\r\n")[0] or b" 204 " in head.split(b"\r\n")[0]):
                    break
        return out
