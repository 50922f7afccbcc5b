# SPDX-License-Identifier: MIT
"""The dashboard with tokens: its security headers (a Content-Security-Policy allowing only
the page's own script and style by hash, nosniff, no-referrer, DENY), the token prompt when
/metrics answers 401 (in headless Chromium, where the CSP is enforced, so the prompt shows
only if the hashed script runs), and the script sending the token it keeps in
sessionStorage (in node with a minimal DOM)."""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import requests

from test_auth import ALL, TOK, AuthServer, auth_config

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def dsrv():
    s = AuthServer(config=auth_config(), workers=1)
    yield s
    s.stop()


def sha(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_dashboard_security_headers(dsrv):
    r = requests.get(dsrv.url("/dashboard"), timeout=5)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none';")
    script = re.search(r"<script>(.*?)</script>", r.text, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", r.text, re.S).group(1)
    assert "script-src %s;" % sha(script) in csp
    assert "style-src %s;" % sha(style) in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert not re.search(r"\sstyle=|\son[a-z]+=", r.text)  # nothing inline the CSP would block
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Frame-Options"] == "DENY"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_dashboard_asks_for_a_token_in_chromium(dsrv):
    profile = tempfile.mkdtemp(prefix="l3kv-chromium-")
    try:
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            "--no-first-run", "--user-data-dir=" + profile, "--virtual-time-budget=3000",
                            "--dump-dom", dsrv.url("/dashboard")],
                           capture_output=True, text=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = p.stdout
    assert 'id="login"' in dom, p.stderr[-2000:]
    assert re.search(r'<form id="login"(?![^>]*hidden)', dom), dom[:2000]  # the prompt is shown
    assert "a token is needed to read /metrics" in dom  # the hashed script ran under the CSP


def run_page(server, tmpdir, token):
    """The page's script in node with sessionStorage holding `token`: (elements, requests
    it sent to /metrics with their Authorization header)."""
    html = requests.get(server.url("/dashboard"), timeout=5).text
    script = re.search(r"<script>(.*)</script>", html, re.S).group(1)
    page_js = os.path.join(tmpdir, "page.js")
    with open(page_js, "w") as f:
        f.write(script)
    harness = os.path.join(tmpdir, "run.js")
    with open(harness, "w") as f:
        f.write(r"""
const fs = require('fs');
const base = process.argv[2];
const els = {};
const store = {'l3kv-token': process.argv[4] || null};
if (!process.argv[4]) delete store['l3kv-token'];
globalThis.sessionStorage = {getItem: k => (k in store ? store[k] : null), setItem: (k, v) => { store[k] = v; },
                             removeItem: k => { delete store[k]; }};
globalThis.document = {getElementById(id) {
    return els[id] || (els[id] = {id: id, textContent: '', innerHTML: '', hidden: true});
}};
const sent = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (u, o) => { sent.push((o && o.headers && o.headers.Authorization) || null); return realFetch(base + u, o); };
globalThis.setInterval = () => 0;
(0, eval)(fs.readFileSync(process.argv[3], 'utf8'));
setTimeout(() => {
    console.log(JSON.stringify({status: els.status.textContent, login_hidden: els.login.hidden, sent: sent,
                                kept: store['l3kv-token'] || null}));
}, 1500);
""")
    p = subprocess.run(["node", harness, server.base, page_js, token or ""], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_dashboard_script_sends_the_kept_token(dsrv, tmp_path):
    out = run_page(dsrv, str(tmp_path), TOK["monitor"])
    assert out["sent"] == ["Bearer " + TOK["monitor"]]
    assert out["status"].startswith("version "), out
    assert out["login_hidden"] is True
    out = run_page(dsrv, str(tmp_path), None)
    assert out["sent"] == [None] and out["login_hidden"] is False
    assert "token is needed" in out["status"]
    out = run_page(dsrv, str(tmp_path), "not-a-known-token-0123456789")
    assert out["kept"] is None and out["login_hidden"] is False  # a refused token is dropped
    out = run_page(dsrv, str(tmp_path), TOK["read"])
    assert "monitor scope" in out["status"]
