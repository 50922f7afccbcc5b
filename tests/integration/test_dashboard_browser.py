# SPDX-License-Identifier: MIT
"""The dashboard in headless Chromium (driven over the DevTools protocol, cdp.py) against
the real server under load: a background thread sends PUT, GET, DELETE, 404 and 400
requests and bursts of fresh connections past server.max_connections (503s), so every
KPI card and every chart has something to show. Checks: each KPI value and each chart's
newest data change between two polls, no console error or CSP refusal, the page is dark
(measured from the screenshot's pixels) unless the system asks for light, the theme
toggle is remembered, the page fits a 390-pixel-wide screen, a lost poll leaves a gap.
Screenshots (desktop, 390 px, light) are kept in <build>/test-artifacts/dashboard/
(or $L3KV_ARTIFACTS), printed by the test."""
import json
import os
import socket
import threading
import time

import pytest
import requests

import cdp
from conftest import BIN, Server

KPIS = {"kpi-conn": ["value"], "kpi-rps": ["value"], "kpi-in": ["value"], "kpi-out": ["value"],
        "kpi-4xx": ["value", "rate"], "kpi-5xx": ["value", "rate"], "kpi-workers": ["value"],
        "kpi-wal": ["value", "lag"], "kpi-arena": ["value"], "kpi-watchers": ["value"]}
CHARTS = ["chart-bytes", "chart-rps", "chart-lat", "chart"]
SAMPLE_JS = """JSON.stringify({polls: Number(document.body.dataset.polls || 0),
  kpi: Object.fromEntries([...document.querySelectorAll('.card')].map(c => [c.id,
       {hidden: c.hidden, value: c.dataset.value, rate: c.dataset.rate, lag: c.dataset.lag}])),
  charts: Object.fromEntries([...document.querySelectorAll('svg')].map(s => [s.id,
       {n: Number(s.dataset.n), gaps: Number(s.dataset.gaps), last: s.dataset.last,
        lines: s.querySelectorAll('polyline').length}]))})"""
BG_JS = "getComputedStyle(document.body).backgroundColor"


def artifacts_dir():
    d = os.environ.get("L3KV_ARTIFACTS") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(BIN)))), "test-artifacts")
    d = os.path.join(d, "dashboard")
    os.makedirs(d, exist_ok=True)
    return d


def lum(rgb):
    """Relative luminance 0..255 of "rgb(r, g, b)"."""
    r, g, b = [int(v) for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    return (2126 * r + 7152 * g + 722 * b) / 10000


class Load:
    """Requests of every kind in a thread, every few rounds a burst of 30 fresh
    connections (over the 8 a worker may hold: some get 503) that also moves the queue
    depth, the autoscaler and the active-connection count, and now and then a quiet phase."""

    def __init__(self, srv):
        self.srv, self.stop, self.counts = srv, threading.Event(), {}
        self.watchers = "changes" in srv.metrics()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def count(self, status):
        self.counts[status] = self.counts.get(status, 0) + 1

    def burst(self):
        socks = []
        try:
            for _ in range(30):
                c = socket.create_connection(("127.0.0.1", self.srv.port), timeout=5)
                c.sendall(b"GET /kv/dash-1 HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(c)
            for c in socks:
                try:
                    line = c.recv(64).split(b"\r\n", 1)[0].split()
                    if len(line) >= 2:
                        self.count(int(line[1]))
                except OSError:
                    pass
        except OSError:
            pass
        finally:
            for c in socks:
                c.close()

    def watch(self, ms):
        try:
            requests.get(self.srv.url("/changes?since=now&feed=longpoll&prefix=dash-none-&timeout=%d" % ms),
                         timeout=10)
        except requests.RequestException:
            pass

    def run(self):
        s, i = requests.Session(), 0
        while not self.stop.is_set():
            i += 1
            try:
                self.count(s.put(self.srv.url("/kv/dash-%d" % i), json={"i": i, "pad": "x" * (i % 500)}).status_code)
                self.count(s.get(self.srv.url("/kv/dash-%d" % i)).status_code)
                self.count(s.get(self.srv.url("/kv/dash-missing")).status_code)
                if i % 3 == 0:
                    self.count(s.put(self.srv.url("/kv/dash-bad"), data=b"{not json").status_code)
                    self.count(s.delete(self.srv.url("/kv/dash-%d" % (i - 1))).status_code)
            except requests.RequestException:
                s = requests.Session()
            if i % 40 == 0:
                self.burst()
            if i % 150 == 0:
                # a quiet phase (a write every 0.2 s, so write latency keeps its data): the
                # autoscaler scales down, so the workers figure moves too (a pool pinned at its
                # maximum by steady load would never change)
                end = time.time() + 2.5
                while time.time() < end and not self.stop.wait(0.2):
                    try:
                        self.count(s.put(self.srv.url("/kv/dash-q"), json={"q": i}).status_code)
                    except requests.RequestException:
                        s = requests.Session()
            if self.watchers and i % 60 == 0:
                threading.Thread(target=self.watch, args=(300 + (i % 7) * 300,), daemon=True).start()

    def close(self):
        self.stop.set()
        self.t.join(timeout=30)


@pytest.fixture(scope="module")
def loaded():
    if not os.path.exists(cdp.CHROMIUM):
        pytest.skip("chromium is not installed (tools/deps-debian.sh --all)")
    s = Server(workers=1, config={"server": {"min_workers": 1, "max_workers": 3, "max_connections": 24},
                                  "autoscale": {"worker_capacity": 1, "cooldown_ms": 500, "interval_ms": 100,
                                                "horizon_ms": 400, "margin": 0, "measurement_noise": 1},
                                  # records wait in the ring up to 200 ms (buffered hold), so a
                                  # poll sees WAL bytes pending and not only the rare poll that
                                  # lands within the default 10 ms of a write
                                  "storage": {"flush_interval_ms": 200}})
    load = Load(s)
    b = cdp.Browser()
    try:
        yield s, load, b
    finally:
        b.close()
        load.close()
        s.stop()


def open_page(b, srv, scheme="dark", width=1280, height=900, mobile=False):
    b.call("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
           session=True)
    b.viewport(width, height, mobile)
    b.navigate(srv.url("/dashboard"))
    b.wait_for("document.body && Number(document.body.dataset.polls || 0) >= 2", timeout=60)


def fresh(b, srv):
    """The dashboard loaded with no theme kept and no problem logged yet."""
    b.navigate(srv.url("/dashboard"))
    b.wait_for("!!document.body")
    b.eval("localStorage.clear(), true")
    b.events.clear()


def sample(b):
    return json.loads(b.eval(SAMPLE_JS))


def next_sample(b, after):
    b.wait_for("Number(document.body.dataset.polls || 0) > %d" % after, timeout=30)
    return sample(b)


def test_every_kpi_and_chart_changes_under_load(loaded):
    srv, load, b = loaded
    fresh(b, srv)
    open_page(b, srv)
    prev = sample(b)
    watchers = not prev["kpi"]["kpi-watchers"]["hidden"]
    assert watchers == ("changes" in srv.metrics()), prev["kpi"]["kpi-watchers"]  # shown iff /metrics has it
    want = {(k, f) for k, fs in KPIS.items() for f in fs if k != "kpi-watchers" or watchers}
    want |= {(c, "last") for c in CHARTS}
    changed, seen, deadline = set(), [prev], time.time() + 120
    while want - changed and time.time() < deadline:
        cur = next_sample(b, prev["polls"])
        for k, f in want:
            if k in cur["kpi"]:
                a, z = prev["kpi"][k][f], cur["kpi"][k][f]
            else:
                a, z = prev["charts"][k]["last"], cur["charts"][k]["last"]
                if a in (None, "null") or z in (None, "null"):
                    continue  # a gap is no data
            if a not in (None, "") and z not in (None, "") and a != z:
                changed.add((k, f))
        prev = cur
        seen.append(cur)
    assert not want - changed, ("never changed between two polls", sorted(want - changed), seen[-3:], load.counts)
    m = srv.metrics()
    k = prev["kpi"]
    assert 0 < int(k["kpi-4xx"]["value"]) <= m["throughput"]["http_errors_4xx"], (k["kpi-4xx"], m["throughput"])
    assert 0 < int(k["kpi-5xx"]["value"]) <= m["throughput"]["http_errors_5xx"], (k["kpi-5xx"], m["throughput"])
    assert 1 <= int(k["kpi-workers"]["value"].split("/")[0]) <= 3, k["kpi-workers"]
    assert 0 < float(k["kpi-arena"]["value"]) < 100, k["kpi-arena"]
    for c in CHARTS:
        assert prev["charts"][c]["lines"] >= 1, (c, prev["charts"][c])
    # the end-to-end histograms and the stages are used when /metrics has them
    e2e = any("e2e" in h for h in m["handlers"].values())
    assert ("end to end" in b.eval("document.getElementById('lat-src').textContent")) == e2e
    assert b.eval("document.getElementById('stages-box').hidden") == ("stages" not in m)
    if "stages" in m:
        assert "document_op" in b.eval("document.getElementById('stages').textContent")
    assert b.problems() == []


def test_dark_by_default_and_screenshots(loaded):
    srv, _, b = loaded
    out = artifacts_dir()
    print("dashboard screenshots in", out)
    # with no choice kept, a system that does not ask for light gets the dark page (headless
    # Chromium answers "light" unless told, so the system's side is set here)
    fresh(b, srv)
    open_page(b, srv, "dark")
    next_sample(b, sample(b)["polls"])
    png = b.screenshot(os.path.join(out, "desktop.png"))
    hist = cdp.luminance_histogram(png)
    total, dark = sum(hist), sum(hist[:60])
    mode = max(range(256), key=lambda i: hist[i])
    assert mode < 40 and dark > 0.6 * total, ("not dark", mode, dark / total, out)
    # the style's base rule, the one no media query overrides, is the dark one
    base = b.eval("(() => { const r = [...document.styleSheets[0].cssRules].find(x => x.selectorText === ':root');"
                  " return r.style.getPropertyValue('--bg').trim(); })()")
    assert base.startswith("#") and sum(int(base[i:i + 2], 16) for i in (1, 3, 5)) < 3 * 64, base
    # 390 px: nothing wider than the screen, the page still dark
    b.viewport(390, 844, True)
    next_sample(b, sample(b)["polls"])
    assert b.eval("document.documentElement.scrollWidth") <= 390
    assert b.eval("Math.max(...[...document.querySelectorAll('.card,.chart,.tw')].map(e => "
                  "e.getBoundingClientRect().right))") <= 390
    hist = cdp.luminance_histogram(b.screenshot(os.path.join(out, "mobile-390.png")))
    assert max(range(256), key=lambda i: hist[i]) < 40, ("390 px screenshot not dark", out)
    assert b.problems() == []


def test_theme_follows_system_and_toggle_is_kept(loaded):
    srv, _, b = loaded
    fresh(b, srv)
    open_page(b, srv, "light")
    assert lum(b.eval(BG_JS)) > 200, b.eval(BG_JS)  # the system asks for light
    open_page(b, srv, "dark")
    assert lum(b.eval(BG_JS)) < 40
    b.eval("document.getElementById('theme').click(), true")
    b.wait_for("getComputedStyle(document.body).backgroundColor !== 'rgb(15, 19, 24)'")
    assert lum(b.eval(BG_JS)) > 200, b.eval(BG_JS)
    assert b.eval("localStorage.getItem('l3kv-theme')") == "light"
    open_page(b, srv, "dark")  # reloaded on a dark system: the choice wins
    assert lum(b.eval(BG_JS)) > 200, b.eval(BG_JS)
    b.viewport(1280, 900)
    next_sample(b, next_sample(b, sample(b)["polls"])["polls"])  # a few points in the charts
    b.screenshot(os.path.join(artifacts_dir(), "desktop-light.png"))
    b.eval("document.getElementById('theme').click(), true")
    assert lum(b.eval(BG_JS)) < 40 and b.eval("localStorage.getItem('l3kv-theme')") == "dark"
    b.eval("localStorage.clear(), true")
    assert b.problems() == []


def test_a_lost_poll_leaves_a_gap(loaded):
    srv, _, b = loaded
    fresh(b, srv)
    open_page(b, srv, "dark")
    s0 = next_sample(b, sample(b)["polls"])
    b.call("Network.enable", session=True)
    b.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                "uploadThroughput": -1}, session=True)
    time.sleep(3.5)  # at least three polls fail
    b.call("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                "uploadThroughput": -1}, session=True)
    s1 = next_sample(b, s0["polls"])
    s2 = next_sample(b, s1["polls"])
    for c in ("chart-bytes", "chart-rps", "chart-lat"):
        assert s2["charts"][c]["gaps"] == s0["charts"][c]["gaps"] + 1, (c, s0["charts"][c], s2["charts"][c])
    assert s1["charts"]["chart-bytes"]["last"] == "null"  # the first answer after the gap is no point
    assert s2["charts"]["chart-bytes"]["last"] != "null"
    # the failed fetches are the only problems the page logged
    probs = b.problems()
    assert all("ERR_INTERNET_DISCONNECTED" in p for p in probs), probs
    b.events.clear()
