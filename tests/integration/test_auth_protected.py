# SPDX-License-Identifier: MIT
"""Protected mode: with no token configured the server answers loopback peers only; a
request from another address gets 403 protected_mode. The non-loopback peer is a network
namespace joined to this one by a veth pair (addresses chosen here, reachable from nowhere
else); the test skips where namespaces cannot be made (not root, no `ip`)."""
import json
import os
import shutil
import subprocess

import pytest
import requests

from conftest import Server
from test_auth import ALL, AuthServer

NS = "l3kv-pm-%d" % os.getpid()
HOST_IF, NS_IF = "l3pmh%d" % (os.getpid() % 10000), "l3pmn%d" % (os.getpid() % 10000)
HOST_IP, NS_IP = "10.213.7.1", "10.213.7.2"
TOKEN = "remote-token-0123456789abcdef"


def sh(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("curl") is None:
        pytest.skip("needs root, ip(8) and curl to make a network namespace")
    steps = [
        ("ip", "netns", "add", NS),
        ("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF),
        ("ip", "link", "set", NS_IF, "netns", NS),
        ("ip", "addr", "add", HOST_IP + "/30", "dev", HOST_IF),
        ("ip", "link", "set", HOST_IF, "up"),
        ("ip", "netns", "exec", NS, "ip", "addr", "add", NS_IP + "/30", "dev", NS_IF),
        ("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up"),
        ("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"),
    ]
    for st in steps:
        r = sh(*st)
        if r.returncode != 0:
            sh("ip", "link", "del", HOST_IF)
            sh("ip", "netns", "del", NS)
            pytest.skip("cannot make a network namespace (%s): %s" % (" ".join(st), r.stderr.strip()))
    yield NS
    sh("ip", "link", "del", HOST_IF)
    sh("ip", "netns", "del", NS)


def remote(port, path, token=None):
    """GET from inside the namespace: (status, body)."""
    cmd = ["ip", "netns", "exec", NS, "curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}"]
    if token:
        cmd += ["-H", "Authorization: Bearer " + token]
    r = sh(*(cmd + ["http://%s:%d%s" % (HOST_IP, port, path)]))
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def start(auth=None):
    cfg = {"server": {"address": "0.0.0.0"}}
    if auth is not None:
        cfg["auth"] = auth
    if auth and auth.get("tokens"):
        auth["tokens"].append({"name": "all", "token": ALL, "scopes": ["monitor"]})
        return AuthServer(config=cfg, workers=1)
    return Server(config=cfg, workers=1)


def test_no_tokens_answers_loopback_only(netns):
    s = start()
    try:
        assert requests.get(s.url("/kv/"), timeout=5).status_code == 200  # loopback: everything
        for path in ("/kv/health", "/kv/", "/metrics", "/dashboard"):
            code, body = remote(s.port, path)
            assert code == 403, (path, code, body)
            j = json.loads(body)
            assert j["error"] == "protected_mode"
            assert "auth.tokens" in j["detail"] and "auth.protected_mode" in j["detail"]
    finally:
        s.stop()


def test_tokens_serve_remote_peers(netns):
    s = start({"tokens": [{"name": "r", "token": TOKEN, "scopes": ["read", "monitor"]}]})
    try:
        assert remote(s.port, "/kv/", TOKEN)[0] == 200
        assert remote(s.port, "/kv/")[0] == 401
        assert remote(s.port, "/kv/health")[0] == 200  # anonymous: health
    finally:
        s.stop()


def test_protected_mode_off_is_warned(netns):
    s = start({"protected_mode": False})
    try:
        assert remote(s.port, "/kv/")[0] == 200
        assert "auth.protected_mode is false" in s.logtext()
        assert " warn: " in [l for l in s.logtext().splitlines() if "protected_mode is false" in l][0]
    finally:
        s.stop()
