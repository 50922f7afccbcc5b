# SPDX-License-Identifier: MIT
"""Access control behind h2o with the shipped etc/h2o/l3kv.conf.in: the Authorization
header reaches l3kv and its 401 (with WWW-Authenticate) and 403 come back unchanged; with
no token configured, protected mode sees through h2o (X-Forwarded-For names the client)."""
import shutil

import pytest
import requests

from l3kv_deploy import L3kv, h2o_bin, l3kv_test_config, mkworkdir
from test_h2o_proxy import H2o

TOKEN = "proxy-token-0123456789abcdef"
RO = "proxy-read-0123456789abcdef"


def stack(auth):
    exe = h2o_bin()
    if exe is None:
        pytest.skip("h2o is not installed (tools/deps-debian.sh --all installs it)")
    d = mkworkdir("l3kv-h2o-auth-")
    cfg = l3kv_test_config(d)
    cfg["auth"] = auth
    srv = L3kv(cfg, d)
    try:
        proxy = H2o(exe, srv.port, d)
    except BaseException:
        srv.stop()
        raise
    return d, srv, proxy


def stop_stack(d, srv, proxy):
    proxy.stop()
    srv.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_authorization_passes_through_h2o():
    d, srv, proxy = stack({"tokens": [{"name": "rw", "token": TOKEN, "scopes": ["read", "write"]},
                                      {"name": "ro", "token": RO, "scopes": ["read"]}]})
    try:
        b = proxy.base
        r = requests.put(b + "/kv/p", data='{"a":1}', headers={"Authorization": "Bearer " + TOKEN}, timeout=10)
        assert r.status_code in (200, 201), r.text
        r = requests.get(b + "/kv/p", headers={"Authorization": "Bearer " + TOKEN}, timeout=10)
        assert r.status_code == 200 and r.json() == {"a": 1}
        r = requests.get(b + "/kv/p", timeout=10)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="l3kv"'
        r = requests.delete(b + "/kv/p", headers={"Authorization": "Bearer " + RO}, timeout=10)
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
    finally:
        stop_stack(d, srv, proxy)


def test_protected_mode_sees_through_h2o():
    d, srv, proxy = stack({})
    try:
        # direct loopback: answered; through h2o the client is 127.0.0.1 too, so still answered
        assert requests.get(srv.base + "/kv/", timeout=10).status_code == 200
        assert requests.get(proxy.base + "/kv/", timeout=10).status_code == 200
        # a client h2o names as non-loopback in X-Forwarded-For is refused
        r = requests.get(srv.base + "/kv/", headers={"X-Forwarded-For": "192.0.2.7"}, timeout=10)
        assert r.status_code == 403 and r.json()["error"] == "protected_mode"
        r = requests.get(srv.base + "/kv/", headers={"X-Forwarded-For": "127.0.0.1, 192.0.2.7"}, timeout=10)
        assert r.status_code == 403
    finally:
        stop_stack(d, srv, proxy)
