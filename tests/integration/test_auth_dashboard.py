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
FAKEDOM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakedom.js")


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
const {els} = require(process.argv[5]);
const store = {'l3kv-token': process.argv[4] || null};
if (!process.argv[4]) delete store['l3kv-token'];
globalThis.sessionStorage = {getItem: k => (k in store ? store[k] : null), setItem: (k, v) => { store[k] = v; },
                             removeItem: k => { delete store[k]; }};
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
    p = subprocess.run(["node", harness, server.base, page_js, token or "", FAKEDOM], capture_output=True,
                       text=True, timeout=30)
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


CDP_JS = r"""
// Drive headless Chromium over --remote-debugging-pipe (fd 3: commands, fd 4: replies,
// NUL-separated JSON): open the dashboard, put the token in its sessionStorage, reload,
// and report what the page shows.
const {spawn} = require('child_process');
const [chromium, profile, url, token] = process.argv.slice(2);
const ch = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--user-data-dir=' + profile,
    '--remote-debugging-pipe', 'about:blank'], {stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe']});
const out = ch.stdio[3], inp = ch.stdio[4];
let buf = '', id = 0;
const waiting = {};
inp.on('data', d => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\0')) >= 0) {
        const m = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (m.id && waiting[m.id]) { waiting[m.id](m); delete waiting[m.id]; }
    }
});
function send(method, params, sessionId) {
    return new Promise(res => {
        const m = {id: ++id, method, params: params || {}};
        if (sessionId) m.sessionId = sessionId;
        waiting[m.id] = res;
        out.write(JSON.stringify(m) + '\0');
    });
}
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
    const t = await send('Target.createTarget', {url: 'about:blank'});
    const a = await send('Target.attachToTarget', {targetId: t.result.targetId, flatten: true});
    const s = a.result.sessionId;
    const ev = async e => (await send('Runtime.evaluate', {expression: e, returnByValue: true}, s)).result.result.value;
    await send('Page.enable', {}, s);
    await send('Page.navigate', {url}, s);
    let before = '';
    for (let i = 0; i < 100 && !before.includes('token'); i++) { await sleep(100); before = String(await ev("document.getElementById('status').textContent")); }
    await ev("sessionStorage.setItem('l3kv-token', " + JSON.stringify(token) + ")");
    await send('Page.reload', {}, s);
    let after = '';
    for (let i = 0; i < 100 && !after.startsWith('version'); i++) { await sleep(100); after = String(await ev("document.getElementById('status').textContent")); }
    const hidden = await ev("document.getElementById('login').hidden");
    const workers = await ev("document.getElementById('workers').innerHTML");
    console.log(JSON.stringify({before, after, hidden, workers}));
    ch.kill();
    process.exit(0);
})().catch(e => { console.error(e); ch.kill(); process.exit(1); });
"""


@pytest.mark.skipif(not os.path.exists(CHROMIUM) or shutil.which("node") is None,
                    reason="chromium and node are needed")
def test_dashboard_with_a_token_in_chromium(dsrv, tmp_path):
    js = tmp_path / "cdp.js"
    js.write_text(CDP_JS)
    profile = tempfile.mkdtemp(prefix="l3kv-chromium-")
    try:
        p = subprocess.run(["node", str(js), CHROMIUM, profile, dsrv.url("/dashboard"), TOK["monitor"]],
                           capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert "token is needed" in out["before"], out
    assert out["after"].startswith("version "), out  # the page sent the kept token
    assert out["hidden"] is True
    assert "<td" in out["workers"] and "running" in out["workers"]
