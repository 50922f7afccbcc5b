# SPDX-License-Identifier: MIT
"""log.access: one line per request (time, peer, token name, method, path, status, bytes,
duration); never the token, never the query string; reopened on SIGHUP (logrotate)."""
import os
import re
import signal
import time

import pytest
import requests

from test_auth import ALL, TOK, AuthServer, auth_config

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+):(\d+) (\S+) ([A-Z]+) (\S+) (\d{3}) (\d+) "
                  r"(\d+\.\d{6})$")


def lines(p):
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return f.read().splitlines()


def wait_lines(p, pred, srv, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ls = lines(p)
        if pred(ls):
            return ls
        time.sleep(0.05)
    pytest.fail("access log %s: %r\n%s" % (p, lines(p), srv.logtext()))


def test_access_log_lines_and_reopen(tmp_path):
    log = str(tmp_path / "access.log")
    cfg = auth_config()
    cfg["log"] = {"access": log}
    s = AuthServer(config=cfg, workers=1)
    try:
        h = {"Authorization": "Bearer " + TOK["write"]}
        put_r = requests.put(s.url("/kv/doc%20one"), data='{"a":1}', headers=h, timeout=5)
        assert put_r.status_code == 200
        assert requests.get(s.url("/kv/doc%20one?secret=1"), timeout=5).status_code == 401
        assert requests.get(s.url("/kv/x?token=" + ALL), timeout=5).status_code == 400
        ls = wait_lines(log, lambda ls: any(" 400 " in l for l in ls), s)
        for l in ls:
            assert LINE.match(l), l
            assert ALL not in l and TOK["write"] not in l and "secret" not in l and "?" not in l, l
        put = [LINE.match(l) for l in ls if " PUT " in l][0]
        assert put.group(1) == "127.0.0.1" and put.group(3) == "write" and put.group(5) == "/kv/doc%2520one"
        assert put.group(6) == "200" and int(put.group(7)) == len(put_r.content), (put.group(0), put_r.content)
        get = [LINE.match(l) for l in ls if " GET /kv/doc" in l][0]
        assert get.group(3) == "-" and get.group(6) == "401"
        assert os.stat(log).st_mode & 0o077 == 0
        # logrotate: rename, SIGHUP, new lines go to a new file
        os.rename(log, log + ".1")
        s.proc.send_signal(signal.SIGHUP)
        wait_lines(log + ".1", lambda ls: True, s)

        def rotated(_):
            requests.get(s.url("/kv/health"), timeout=5)
            return any("/kv/health" in l for l in lines(log))
        wait_lines(log, rotated, s)
    finally:
        s.stop()
