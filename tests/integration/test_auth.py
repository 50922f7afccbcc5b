# SPDX-License-Identifier: MIT
"""Access control: bearer tokens with scopes, the anonymous scopes, 401/403 replies, the
refusal of tokens in the query string, --check on token settings, /metrics process ids
only for admin, and token reload on SIGHUP (a bad new set keeps the old one)."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import BIN, Server

SCOPES = ["read", "write", "monitor", "admin", "health", "replicate"]
TOK = {s: "tok-%s-0123456789abcdef" % s for s in SCOPES}
ALL = "tok-all-scopes-0123456789abcdef"
WRONG = "tok-wrong-0123456789abcdef"


def hdr(tok):
    return {"Authorization": "Bearer " + tok} if tok else {}


class AuthServer(Server):
    """A Server whose readiness probe carries a token holding every scope."""

    token = ALL

    def wait_ready(self, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("l3kv exited early with %s:\n%s" % (self.proc.returncode, self.logtext()))
            try:
                r = requests.get(self.url("/metrics"), headers=hdr(self.token), timeout=1)
                if r.status_code == 200 and \
                        r.json()["system"]["thread_count"] >= self.config["server"]["min_workers"]:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        text = self.logtext()
        self.kill_all()  # leave no server behind
        pytest.fail("l3kv did not become ready:\n" + text)


def auth_config(extra=None):
    toks = [{"name": s, "token": TOK[s], "scopes": [s]} for s in SCOPES]
    toks.append({"name": "all", "token_sha256": hashlib.sha256(ALL.encode()).hexdigest(),
                 "scopes": SCOPES})
    a = {"tokens": toks}
    a.update(extra or {})
    return {"auth": a}


@pytest.fixture(scope="module")
def asrv():
    s = AuthServer(config=auth_config(), workers=2)
    r = requests.put(s.url("/kv/present"), data='{"a":1}', headers=hdr(ALL), timeout=5)
    assert r.status_code == 200, r.text  # a PUT answers 200 (docs/api.md)
    yield s
    s.stop()


# route table: (method, path, body, scope needed (or a tuple: any of them) or None, statuses that mean
# "answered")
ROUTES = [
    ("GET", "/kv/health", None, "health", {200}),
    ("GET", "/kv/metrics", None, "monitor", {200}),
    ("GET", "/kv/", None, ("read", "replicate"), {200}),
    ("GET", "/kv", None, ("read", "replicate"), {200}),
    ("GET", "/kv/present", None, ("read", "replicate"), {200}),
    ("HEAD", "/kv/present", None, ("read", "replicate"), {200}),
    ("PUT", "/kv/w-{n}", '{"x":1}', "write", {200, 201}),
    ("POST", "/kv/w-{n}", '{"x":1}', "write", {200, 201, 400, 409}),
    ("DELETE", "/kv/absent-{n}", None, "write", {404}),
    ("PUT", "/kv/health", '{}', "write", {400}),
    ("GET", "/metrics", None, "monitor", {200}),
    ("POST", "/admin/checkpoint", None, "admin", {202, 503}),
    ("GET", "/admin/checkpoint", None, "admin", {405}),
    ("GET", "/admin/backup", None, ("admin", "replicate"), {200}),
    ("POST", "/admin/promote", None, "admin", {409}),  # a primary: not_replica
    ("GET", "/admin/promote", None, "admin", {405}),
    ("POST", "/admin/backup", None, "admin", {405}),
    ("POST", "/batch", '{"ops":[{"op":"get","key":"present"}]}', "read", {200}),
    ("POST", "/batch", '{"ops":[{"op":"put","key":"w-{n}","doc":{"x":1}}]}', "write", {200}),
    ("POST", "/batch", '{"atomic":true,"compare":[{"key":"present","exists":true}],"success":[{"op":"get",'
                       '"key":"present"}],"failure":[{"op":"delete","key":"absent-{n}"}]}', "write", {200}),
    ("GET", "/batch", None, "read", {405}),
    ("GET", "/changes?since=now&timeout=0", None, ("read", "replicate"), {200}),
    ("POST", "/changes", None, "read", {405}),
    ("GET", "/dashboard", None, None, {200}),
    ("GET", "/dashboard/", None, None, {200}),
]
ANON = {"health"}  # the default anonymous scopes once tokens exist

CASES = []
for (m, p, b, need, ok) in ROUTES:
    needs = set(need) if isinstance(need, tuple) else {need}
    CASES.append((m, p, b, None, ok if need is None or needs & ANON else {401}))
    CASES.append((m, p, b, WRONG, {401}))
    for s in SCOPES:
        CASES.append((m, p, b, TOK[s], ok if need is None or s in needs or needs & ANON else {403}))
    CASES.append((m, p, b, ALL, ok))


@pytest.mark.parametrize("method,path,body,tok,expect", CASES,
                         ids=["%s %s %s" % (c[0], c[1], (c[3] or "none")[:12]) for c in CASES])
def test_route_scope_matrix(asrv, method, path, body, tok, expect):
    path = path.replace("{n}", str(len(CASES)) + str(time.monotonic_ns()))
    r = requests.request(method, asrv.url(path), data=body, headers=hdr(tok), timeout=5)
    assert r.status_code in expect, (method, path, tok, r.status_code, r.text)
    if r.status_code == 401:
        assert r.headers.get("WWW-Authenticate") == 'Bearer realm="l3kv"'
        if method != "HEAD":
            assert r.json()["error"] == "unauthorized"
    if r.status_code == 403 and method != "HEAD":
        j = r.json()
        assert j["error"] == "forbidden"
        assert "scope" in j["detail"]


def test_route_matrix_covers_every_route():
    """Every path of the route table (src/server/routes.c) is in ROUTES above."""
    import re
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "server", "routes.c")
    with open(src) as f:
        paths = set(re.findall(r'R\("([^"]+)"\)', f.read()))
    covered = {p.split("?")[0] for (_m, p, _b, _n, _o) in ROUTES}
    covered |= {"/kv/" for p in covered if p.startswith("/kv/")}  # the /kv/{key} prefix entry
    assert paths and paths <= covered, paths - covered


def test_forbidden_names_scope(asrv):
    r = requests.put(asrv.url("/kv/x"), data="{}", headers=hdr(TOK["read"]), timeout=5)
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden",
                        "detail": "token 'read' lacks the 'write' scope this request needs"}
    r = requests.post(asrv.url("/admin/checkpoint"), headers=hdr(TOK["monitor"]), timeout=5)
    assert r.status_code == 403 and "'admin'" in r.json()["detail"]


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token " + ALL,
                                   "Bearer " + ALL + "x", "Bearer short", "bearer" + ALL])
def test_other_schemes_and_bad_tokens_are_401(asrv, value):
    r = requests.get(asrv.url("/kv/present"), headers={"Authorization": value}, timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="l3kv"'
    assert r.json()["error"] == "unauthorized"


def test_bearer_scheme_is_case_insensitive(asrv):
    r = requests.get(asrv.url("/kv/present"), headers={"Authorization": "bearer " + TOK["read"]}, timeout=5)
    assert r.status_code == 200


@pytest.mark.parametrize("q", ["?token=" + ALL, "?access_token=" + ALL, "?a=1&TOKEN=x", "?access_token"])
def test_token_in_query_is_refused_and_not_logged(asrv, q):
    r = requests.get(asrv.url("/kv/present" + q), headers=hdr(ALL), timeout=5)
    assert r.status_code == 400
    assert r.json()["error"] == "token_in_query"
    assert ALL not in asrv.logtext()


def test_metrics_pids_only_for_admin(asrv):
    m = requests.get(asrv.url("/metrics"), headers=hdr(TOK["monitor"]), timeout=5).json()
    assert m["workers"] and all(w["pid"] is None for w in m["workers"])
    assert m.get("wal") is None or m["wal"].get("writer_pid") is None
    m = requests.get(asrv.url("/metrics"), headers=hdr(ALL), timeout=5).json()
    assert any(isinstance(w["pid"], int) and w["pid"] > 0 for w in m["workers"])


def test_anonymous_scopes_configurable():
    s = AuthServer(config=auth_config({"anonymous": ["read", "health"]}), workers=1)
    try:
        assert requests.get(s.url("/kv/"), timeout=5).status_code == 200
        assert requests.get(s.url("/metrics"), timeout=5).status_code == 401
        assert requests.put(s.url("/kv/a"), data="{}", timeout=5).status_code == 401
        # a known token still gets the anonymous scopes too
        assert requests.get(s.url("/kv/"), headers=hdr(TOK["monitor"]), timeout=5).status_code == 200
    finally:
        s.stop()
    s = AuthServer(config=auth_config({"anonymous": []}), workers=1)
    try:
        assert requests.get(s.url("/kv/health"), timeout=5).status_code == 401
    finally:
        s.stop()


# --- --check and start refuse bad token settings -----------------------------------------

@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="l3kv-auth-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_check(d, auth):
    cfg = {"server": {"address": "127.0.0.1", "port": 0},
           "storage": {"data_dir": os.path.join(d, "data"), "arena_bytes": 64 << 20},
           "auth": auth}
    p = os.path.join(d, "config.json")
    with open(p, "w") as f:
        json.dump(cfg, f)
    c = subprocess.run([BIN, "--check", p], capture_output=True, text=True, timeout=30)
    return c.returncode, c.stdout + c.stderr, p


def write_file(d, name, text, mode):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, mode)
    return p


def test_check_accepts_good_tokens(tmp):
    f = write_file(tmp, "ops.token", "ops-token-0123456789abcdef\n", 0o600)
    rc, out, _ = run_check(tmp, {"tokens": [
        {"name": "app", "token_sha256": hashlib.sha256(b"x" * 32).hexdigest(), "scopes": ["read", "write"]},
        {"name": "ops", "token_file": f, "scopes": ["monitor", "admin"]},
        {"name": "dev", "token": "dev-token-0123456789", "scopes": ["read"]}],
        "anonymous": ["health"], "protected_mode": True})
    assert rc == 0, out


BAD = [
    ({"tokens": [{"name": "a", "token": "short-token", "scopes": ["read"]}]},
     "auth.tokens[0].token", "at least 16"),
    ({"tokens": [{"name": "a", "token": "a-long-enough-token-1", "scopes": ["raed"]}]},
     "auth.tokens[0].scopes", "raed"),
    ({"tokens": [{"name": "a", "token": "a-long-enough-token-1", "scopes": []}]},
     "auth.tokens[0].scopes", "non-empty"),
    ({"anonymous": ["everything"]}, "auth.anonymous", "everything"),
    ({"tokens": [{"name": "a", "token_sha256": "abc", "scopes": ["read"]}]},
     "auth.tokens[0].token_sha256", "64 hex"),
    ({"tokens": [{"name": "a", "scopes": ["read"]}]}, "auth.tokens[0]", "exactly one"),
    ({"tokens": [{"name": "a", "token": "a-long-enough-token-1", "token_sha256": "0" * 64,
                  "scopes": ["read"]}]}, "auth.tokens[0]", "exactly one"),
    ({"tokens": [{"token": "a-long-enough-token-1", "scopes": ["read"]}]}, "auth.tokens[0].name", "missing"),
    ({"tokens": [{"name": "a", "token": "a-long-enough-token-1", "scopes": ["read"]},
                 {"name": "a", "token": "a-long-enough-token-2", "scopes": ["read"]}]},
     "auth.tokens[1].name", "twice"),
    ({"tokens": [{"name": "a", "token": "a-long-enough-token-1", "scopes": ["read"], "cert": 1}]},
     "auth.tokens[0].cert", "unknown key"),
    ({"tokenz": []}, "auth.tokenz", "unknown key"),
    ({"protected_mode": "no"}, "auth.protected_mode", "true or false"),
]


@pytest.mark.parametrize("auth,key,words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_check_refuses_bad_tokens(tmp, auth, key, words):
    rc, out, p = run_check(tmp, auth)
    assert rc == 2, out
    assert key in out and words in out, out
    # a start refuses the same file with the same message
    c = subprocess.run([BIN, p], capture_output=True, text=True, timeout=30)
    assert c.returncode == 2 and key in c.stdout + c.stderr


def test_check_refuses_token_files(tmp):
    f = write_file(tmp, "open.token", "ops-token-0123456789abcdef\n", 0o640)
    rc, out, _ = run_check(tmp, {"tokens": [{"name": "o", "token_file": f, "scopes": ["read"]}]})
    assert rc == 2 and "auth.tokens[0].token_file" in out and "group or others" in out, out
    f = write_file(tmp, "short.token", "tiny\n", 0o600)
    rc, out, _ = run_check(tmp, {"tokens": [{"name": "o", "token_file": f, "scopes": ["read"]}]})
    assert rc == 2 and "auth.tokens[0].token_file" in out and "at least 16" in out, out
    rc, out, _ = run_check(tmp, {"tokens": [{"name": "o", "token_file": os.path.join(tmp, "nope"),
                                             "scopes": ["read"]}]})
    assert rc == 2 and "auth.tokens[0].token_file" in out and "cannot open" in out, out
    if os.geteuid() != 0:  # root reads a mode-000 file anyway
        f = write_file(tmp, "unreadable.token", "ops-token-0123456789abcdef\n", 0o000)
        rc, out, _ = run_check(tmp, {"tokens": [{"name": "o", "token_file": f, "scopes": ["read"]}]})
        assert rc == 2 and "auth.tokens[0].token_file" in out, out


def test_token_file_authenticates(tmp):
    f = write_file(tmp, "ops.token", "file-token-0123456789abcdef\n", 0o600)
    cfg = auth_config()
    cfg["auth"]["tokens"].append({"name": "ops", "token_file": f, "scopes": ["monitor"]})
    s = AuthServer(config=cfg, workers=1)
    try:
        r = requests.get(s.url("/metrics"), headers=hdr("file-token-0123456789abcdef"), timeout=5)
        assert r.status_code == 200
    finally:
        s.stop()


# --- SIGHUP reloads tokens ----------------------------------------------------------------

def wait_for(pred, what, srv, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail("timed out waiting for %s:\n%s" % (what, srv.logtext()))


def rewrite(srv, auth):
    cfg = dict(srv.config)
    cfg["auth"] = auth
    tmp = srv.config_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f)
    os.replace(tmp, srv.config_path)


def status(srv, tok, path="/kv/"):
    return requests.get(srv.url(path), headers=hdr(tok), timeout=5).status_code


def test_sighup_reloads_tokens():
    s = AuthServer(config=auth_config(), workers=2)
    try:
        old, new = TOK["read"], "rotated-token-0123456789abcdef"
        assert status(s, old) == 200 and status(s, new) == 401
        a = auth_config()["auth"]
        a["tokens"] = [t for t in a["tokens"] if t["name"] != "read"]
        a["tokens"].append({"name": "read2", "token": new, "scopes": ["read"]})
        rewrite(s, a)
        s.proc.send_signal(signal.SIGHUP)
        # every worker answers with the new set: many requests, each on a new connection
        wait_for(lambda: all(status(s, new) == 200 and status(s, old) == 401 for _ in range(20)),
                 "the rotated token", s)
        # a bad set (short token) is refused: the previous one stays and the log says why
        bad = json.loads(json.dumps(a))
        bad["tokens"].append({"name": "tiny", "token": "tiny", "scopes": ["read"]})
        rewrite(s, bad)
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: s.logtext().count("tokens not reloaded") >= 3, "the refusal in the log", s)
        assert "auth.tokens[7].token" in s.logtext()
        assert all(status(s, new) == 200 and status(s, old) == 401 for _ in range(20))
        # a worker forked after the reload has the new set too (the supervisor reloaded)
        pids = [w["pid"] for w in requests.get(s.url("/metrics"), headers=hdr(ALL), timeout=5).json()["workers"]
                if w["state"] == "running" and w["pid"] > 0]
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: len([w for w in requests.get(s.url("/metrics"), headers=hdr(ALL), timeout=5)
                              .json()["workers"] if w["state"] == "running" and w["pid"] > 0
                              and w["pid"] != pids[0]]) >= 2, "the restarted worker", s)
        assert all(status(s, new) == 200 and status(s, old) == 401 for _ in range(20))
    finally:
        s.stop()
