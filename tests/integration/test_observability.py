# SPDX-License-Identifier: MIT
"""Observability: the autoscale and wal sections of /metrics, the scale decisions with
their reasons after a load burst, and the /dashboard page (served as HTML, its script
run against the live server with node and, when installed, in headless chromium)."""
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import Server

SEED_KEYS = {
    "system": ["version", "uptime_s", "active_connections", "thread_count", "worker_processes",
               "worker_restarts_total", "inflight_requests", "accept_queue"],
    "throughput": ["requests_total", "connections_accepted_total", "bytes_received_total",
                   "bytes_sent_total", "http_errors_4xx", "http_errors_5xx"],
}
AUTOSCALE_INTS = ["interval_ms", "horizon_ms", "min_workers", "max_workers", "workers", "target_workers",
                  "steps_total", "scale_ups_total", "scale_downs_total", "invalid_samples_total"]
AUTOSCALE_NUMS = ["worker_capacity", "estimate", "rate", "prediction", "prediction_variance", "innovation"]
WAL_INTS = ["head", "tail", "durable", "pending_bytes", "records_total", "aborted_total", "bytes_written_total",
            "fsyncs_total", "batches_total", "write_errors_total", "segment", "segment_bytes", "disk_bytes",
            "error", "writer_pid"]
DASH_IDS = ["status", "sys", "as-workers", "as-target", "as-backlog", "as-inflight", "as-depth", "as-estimate",
            "as-rate", "as-prediction", "as-sd", "as-counts", "as-last", "chart", "decisions", "routes",
            "workers", "wal", "theme", "kpi-conn", "kpi-rps", "kpi-in", "kpi-out", "kpi-4xx", "kpi-5xx",
            "kpi-workers", "kpi-wal", "kpi-arena", "kpi-watchers", "chart-bytes", "chart-rps", "chart-lat"]
FAKEDOM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakedom.js")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


@pytest.fixture(scope="module")
def scaled():
    """A server whose autoscaler runs (1..3 workers, one request per worker)."""
    s = Server(config={"server": {"min_workers": 1, "max_workers": 3},
                       "autoscale": {"worker_capacity": 1, "cooldown_ms": 500, "interval_ms": 100,
                                     "horizon_ms": 400, "margin": 0, "measurement_noise": 1}})
    yield s
    s.stop()


def test_metrics_keep_seed_keys_and_add_sections(scaled):
    deadline = time.time() + 5
    while time.time() < deadline:  # "last_tick_age_ms" is null until the first tick,
        m = scaled.metrics()         # "writer_pid" 0 until the WAL writer runs
        if m["autoscale"]["last_tick_age_ms"] is not None and m["wal"]["writer_pid"] > 0:
            break
        time.sleep(0.05)
    for sect, keys in SEED_KEYS.items():
        for k in keys:
            assert k in m[sect], (sect, k)
    for sect in ("handlers", "workers", "store", "autoscale", "wal"):
        assert sect in m, sect
    a = m["autoscale"]
    assert a["enabled"] is True and a["available"] is True
    for k in AUTOSCALE_INTS:
        assert is_int(a[k]), (k, a[k])
    for k in AUTOSCALE_NUMS:
        assert is_num(a[k]), (k, a[k])
    assert a["interval_ms"] == 100 and a["horizon_ms"] == 400
    assert a["min_workers"] == 1 and a["max_workers"] == 3 and a["worker_capacity"] == 1
    assert 1 <= a["workers"] <= 3 and 1 <= a["target_workers"] <= 3
    assert a["estimate"] >= 0 and a["prediction"] >= 0 and a["prediction_variance"] >= 0
    q = a["queue_depth"]
    assert is_int(q["accept_backlog"]) and is_int(q["inflight"])
    assert q["in_connections"] is None or q["in_connections"] >= 0
    assert abs(q["total"] - (q["accept_backlog"] + q["inflight"] + (q["in_connections"] or 0))) <= 1e-4 * max(1.0, q["total"])
    cov = a["covariance"]
    assert len(cov) == 2 and all(len(r) == 2 for r in cov)
    assert cov[0][1] == cov[1][0] and cov[0][0] > 0 and cov[1][1] > 0
    assert cov[0][0] * cov[1][1] - cov[0][1] ** 2 >= -1e-6 * cov[0][0] * cov[1][1]  # PSD
    assert is_int(a["last_tick_age_ms"]) and a["last_tick_age_ms"] >= 0
    # the age is measured from the last tick: after a tick seen to happen since t0, the age
    # cannot exceed the time since t0 (+50 ms for the clocks' granularity)
    t0, steps0 = time.monotonic(), scaled.metrics()["autoscale"]["steps_total"]
    deadline = time.time() + 30
    while time.time() < deadline:
        a2 = scaled.metrics()["autoscale"]
        if a2["steps_total"] > steps0:
            break
        time.sleep(0.01)
    assert a2["steps_total"] > steps0, "no autoscale tick within 30 s"
    since_ms = (time.monotonic() - t0) * 1000
    assert 0 <= a2["last_tick_age_ms"] <= since_ms + 50, (a2["last_tick_age_ms"], since_ms)
    assert isinstance(a["last_decision"]["reason"], str) and a["last_decision"]["reason"]
    assert isinstance(a["decisions"], list)
    w = m["wal"]
    for k in WAL_INTS:
        assert is_int(w[k]), (k, w[k])
    assert isinstance(w["failstop"], bool) and w["failstop"] is False
    assert w["writer_pid"] > 0 and w["error"] == 0
    assert w["tail"] <= w["durable"] <= w["head"]
    assert w["pending_bytes"] == w["head"] - w["durable"]


def test_legacy_text_metrics_have_autoscale_lines(scaled):
    r = requests.get(scaled.url("/kv/metrics"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    vals = dict(line.split(" ", 1) for line in r.text.splitlines())
    for k in ("active_connections", "thread_count", "bytes_received_total", "http_errors_4xx"):
        assert k in vals, k
    assert vals["autoscale_enabled"] == "1"
    assert 1 <= int(vals["autoscale_target_workers"]) <= 3
    assert int(vals["autoscale_accept_backlog"]) >= 0 and int(vals["autoscale_inflight"]) >= 0
    assert float(vals["autoscale_estimate"]) >= 0 and float(vals["autoscale_prediction"]) >= 0


def test_autoscale_ticks_advance(scaled):
    a1 = scaled.metrics()["autoscale"]
    deadline = time.time() + 30  # 100 ms ticks: 3 more steps, however loaded the machine
    while time.time() < deadline:
        a2 = scaled.metrics()["autoscale"]
        if a2["steps_total"] >= a1["steps_total"] + 3:
            break
        time.sleep(0.05)
    assert a2["steps_total"] >= a1["steps_total"] + 3, (a1["steps_total"], a2["steps_total"])


def test_wal_figures_follow_writes(scaled):
    w1 = scaled.metrics()["wal"]
    for i in range(20):
        assert requests.put(scaled.url("/kv/obs-wal-%d" % i), json={"i": i, "pad": "x" * 100}).status_code == 200
    assert scaled.metrics()["wal"]["head"] >= w1["head"] + 20 * 100  # at least the padding of every record
    deadline, w2 = time.time() + 5, None
    while time.time() < deadline:
        w2 = scaled.metrics()["wal"]
        if w2["records_total"] >= w1["records_total"] + 20:
            break
        time.sleep(0.1)
    assert w2["records_total"] >= w1["records_total"] + 20, (w1, w2)
    assert w2["bytes_written_total"] > w1["bytes_written_total"]
    assert w2["disk_bytes"] > w1["disk_bytes"]


def test_autoscale_record_is_never_torn(scaled):
    """Many reads while the supervisor republishes every 100 ms: the two parts of every
    record always add up to its total, and the covariance is symmetric."""
    sess = requests.Session()
    for _ in range(150):
        a = sess.get(scaled.url("/metrics"), timeout=5).json()["autoscale"]
        q = a["queue_depth"]
        assert q["in_connections"] is None or q["in_connections"] >= 0
        assert abs(q["total"] - (q["accept_backlog"] + q["inflight"] + (q["in_connections"] or 0))) <= 1e-4 * max(1.0, q["total"]), a
        assert a["covariance"][0][1] == a["covariance"][1][0]
        assert a["available"] is True


def test_decisions_after_load_burst_have_reasons(scaled):
    """Clients that request an 8 MB document and do not read it keep requests in flight:
    depth 12 against one request per worker -> scale up, with its reason; once they
    go away the pool shrinks again and that decision is logged too."""
    s = scaled
    assert requests.put(s.url("/kv/obs-blob"), data=json.dumps({"b": "x" * (8 << 20)})).status_code == 200
    # the upload itself keeps a worker busy (which the autoscaler counts): let the pool
    # settle back to its minimum so the burst below has room to scale up
    deadline, calm_since = time.time() + 20, None
    while time.time() < deadline:  # one worker, and no decision pending, for a whole second
        m = s.metrics()["autoscale"]
        if m["workers"] != 1:
            calm_since = None
        elif calm_since is None:
            calm_since = time.time()
        elif time.time() - calm_since >= 1.0:
            break
        time.sleep(0.1)
    before = s.metrics()["autoscale"]
    assert before["workers"] == 1, before
    stuck = []
    try:
        for _ in range(12):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(b"GET /kv/obs-blob HTTP/1.1\r\nHost: x\r\n\r\n")
            stuck.append(c)
        deadline, a, peak_inflight = time.time() + 20, before, 0
        while time.time() < deadline:
            a = s.metrics()["autoscale"]
            peak_inflight = max(peak_inflight, a["queue_depth"]["inflight"])
            if a["scale_ups_total"] > before["scale_ups_total"] and a["decisions"] and peak_inflight >= 10:
                break
            time.sleep(0.1)
        assert a["scale_ups_total"] > before["scale_ups_total"], (a, s.logtext())
        assert peak_inflight >= 10, peak_inflight  # the stuck requests are counted as in flight
        up = a["decisions"][0]
        assert up["to"] > up["from"] >= 1 and up["to"] <= 3, up
        assert up["reason"].startswith("scale up"), up
        # margin 0, one request per worker: the forecast exceeded the old capacity
        assert up["measured"] >= 1 and up["prediction"] > up["from"] * 1, up
        now_ms = time.time() * 1000
        assert abs(up["time_ms"] - now_ms) < 15000 and is_int(up["age_ms"]), up
        assert a["estimate"] > 5, a
    finally:
        for c in stuck:
            c.close()
    deadline = time.time() + 15
    while time.time() < deadline:
        a = s.metrics()["autoscale"]
        if a["scale_downs_total"] > before["scale_downs_total"] and a["workers"] == 1:
            break
        time.sleep(0.2)
    assert a["scale_downs_total"] > before["scale_downs_total"], a
    downs = [d for d in a["decisions"] if d["to"] < d["from"]]
    assert downs and all(d["reason"].startswith("scale down") for d in downs), a["decisions"]
    times = [d["time_ms"] for d in a["decisions"]]
    assert times == sorted(times, reverse=True), times  # newest first
    assert len(a["decisions"]) <= 16
    assert a["scale_ups_total"] + a["scale_downs_total"] >= len(a["decisions"])


def test_autoscale_section_when_disabled(srv):
    """The session server has min == max workers: the section says the autoscaler is off."""
    a = srv.metrics()["autoscale"]
    assert a["enabled"] is False and a["available"] is True
    assert a["decisions"] == [] and a["steps_total"] == 0
    assert a["min_workers"] == a["max_workers"] == 2


def test_dashboard_is_self_contained_html(srv):
    r = requests.get(srv.url("/dashboard"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    for i in DASH_IDS:
        assert ('id="%s"' % i) in html, i
    assert "fetch('/metrics'" in html and "setInterval(tick, POLL_MS)" in html and "POLL_MS = 1000" in html
    assert "innerHTML" not in html  # figures reach the page as text, never as markup
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no external assets
    assert "<svg" in html


def run_dashboard_in_node(server, tmpdir):
    """Run the page's script in node against the live server with the DOM of fakedom.js
    (which throws when innerHTML is assigned); return {id: {"text":..., "html":...}}."""
    html = requests.get(server.url("/dashboard")).text
    script = re.search(r"<script>(.*)</script>", html, re.S).group(1)
    page_js = os.path.join(tmpdir, "page.js")
    with open(page_js, "w") as f:
        f.write(script)
    harness = os.path.join(tmpdir, "run.js")
    with open(harness, "w") as f:
        f.write(r"""
const fs = require('fs');
const base = process.argv[2];
const {els, html} = require(process.argv[4]);
const realFetch = globalThis.fetch;
globalThis.fetch = (u, o) => realFetch(base + u, o);
let ticks = 0;
globalThis.setInterval = (fn, ms) => { const h = setTimeout(function again() { if (++ticks < 3) { fn(); setTimeout(again, ms); } }, ms); return h; };
(0, eval)(fs.readFileSync(process.argv[3], 'utf8'));
setTimeout(() => {
    const out = {};
    for (const [k, v] of Object.entries(els)) out[k] = {text: v.textContent, html: html(v), data: v.dataset};
    console.log(JSON.stringify({els: out}));
}, 3500);
""")
    p = subprocess.run(["node", harness, server.base, page_js, FAKEDOM], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_dashboard_script_fills_the_page(scaled, tmp_path):
    out = run_dashboard_in_node(scaled, str(tmp_path))
    els = out["els"]
    assert not els["status"]["text"].startswith("error"), els["status"]
    assert els["status"]["text"].startswith("version ")
    m = scaled.metrics()
    assert re.fullmatch(r"\d+", els["as-workers"]["text"]), els["as-workers"]
    assert 1 <= int(els["as-workers"]["text"]) <= 3
    assert re.fullmatch(r"\d+", els["as-target"]["text"])
    assert re.fullmatch(r"\d+", els["as-backlog"]["text"]) and re.fullmatch(r"\d+", els["as-inflight"]["text"])
    for i in ("as-estimate", "as-rate", "as-prediction", "as-sd"):
        assert re.fullmatch(r"-?\d+\.\d\d", els[i]["text"]), (i, els[i])
    assert re.fullmatch(r"\d+ / \d+ / \d+", els["as-counts"]["text"])
    assert els["as-last"]["text"] and els["as-last"]["text"] != "-"
    assert "requests/s" in els["sys"]["html"] and "<td" in els["sys"]["html"]
    # the routes table: one row per route with median and p99
    for r in m["handlers"]:
        assert '<td class="k">%s</td>' % r in els["routes"]["html"], r
    assert "\u00b5s" in els["routes"]["html"]
    assert "writer pid" in els["wal"]["html"]
    for c in ("chart", "chart-bytes", "chart-rps"):
        assert "<polyline" in els[c]["html"], c  # two polls: the charts have lines
        assert int(els[c]["data"]["n"]) >= 2 and els[c]["data"]["gaps"] == "0", els[c]["data"]
    for k in ("kpi-conn", "kpi-rps", "kpi-in", "kpi-out", "kpi-4xx", "kpi-5xx", "kpi-arena"):
        assert re.fullmatch(r"\d+(\.\d+)?", els[k]["data"]["value"]), (k, els[k]["data"])
    assert re.fullmatch(r"\d+/\d+", els["kpi-workers"]["data"]["value"]), els["kpi-workers"]
    # the burst test ran before (same server): its decisions are in the table with reasons
    if m["autoscale"]["decisions"]:
        assert "scale up" in els["decisions"]["html"]
    assert "<th>reason</th>" in els["decisions"]["html"]
    assert els["kpi-watchers"]["data"].get("value") is None or "changes" in m


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_dashboard_in_headless_chromium(scaled):
    profile = tempfile.mkdtemp(prefix="l3kv-chromium-")
    try:
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            "--no-first-run", "--user-data-dir=" + profile, "--virtual-time-budget=3000",
                            "--dump-dom", scaled.url("/dashboard")],
                           capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    cell = re.search(r'id="as-workers"[^>]*>([^<]*)<', dom)
    assert cell and re.fullmatch(r"\d+", cell.group(1)), dom[:3000]
    assert re.search(r'id="sys"[^>]*>\s*<tbody>\s*<tr>|id="sys"[^>]*><tr>', dom), dom[:3000]
    assert "writer pid" in dom


SEQLOCK_STRESS_C = r"""
/* Writer thread publishes records whose every field encodes the same counter k; reader
 * threads check each record they read is all-k. Also counts how often a plain unlocked
 * copy of the same words mixes two records (shows the race window is really hit). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "obs.h"

static l3_obs_t o;
static atomic_int stop;

static void fill(l3_obs_as_t *a, uint64_t k)
{
    memset(a, 0, sizeof(*a));
    a->as_enabled = 1;
    a->as_workers = a->as_target = (uint32_t)k;
    a->as_backlog = a->as_inflight = a->as_steps = a->as_ups = a->as_downs = a->as_invalid = a->as_wall_ms = k;
    a->as_depth = a->as_estimate = a->as_predicted = a->as_p00 = (double)k;
    snprintf(a->as_last_text, sizeof(a->as_last_text), "reason %llu", (unsigned long long)k);
    a->as_nevents = L3_OBS_AS_EVENTS;
    for (unsigned i = 0; i < L3_OBS_AS_EVENTS; i++) {
        a->as_events[i].ae_wall_ms = a->as_events[i].ae_mono_ms = k;
        a->as_events[i].ae_from = a->as_events[i].ae_to = (uint32_t)k;
        snprintf(a->as_events[i].ae_text, sizeof(a->as_events[i].ae_text), "event %llu", (unsigned long long)k);
    }
}

static int check(const l3_obs_as_t *a)
{
    uint64_t k = a->as_steps;
    char buf[L3_OBS_AS_TEXT];
    if (a->as_workers != (uint32_t)k || a->as_backlog != k || a->as_invalid != k || a->as_wall_ms != k ||
        a->as_p00 != (double)k || a->as_nevents != L3_OBS_AS_EVENTS)
        return 0;
    snprintf(buf, sizeof(buf), "reason %llu", (unsigned long long)k);
    if (strcmp(buf, a->as_last_text) != 0)
        return 0;
    for (unsigned i = 0; i < L3_OBS_AS_EVENTS; i++) {
        snprintf(buf, sizeof(buf), "event %llu", (unsigned long long)k);
        if (a->as_events[i].ae_wall_ms != k || a->as_events[i].ae_to != (uint32_t)k ||
            strcmp(buf, a->as_events[i].ae_text) != 0)
            return 0;
    }
    return 1;
}

static void *writer(void *arg)
{
    (void)arg;
    static l3_obs_as_t a;
    for (uint64_t k = 1; !atomic_load(&stop); k++) {
        fill(&a, k);
        l3_obs_as_publish(&o, &a);
    }
    return NULL;
}

static long reads, torn, eagain, last_k_backwards;

static void *reader(void *arg)
{
    (void)arg;
    l3_obs_as_t a;
    uint64_t prev = 0;
    long r = 0, t = 0, e = 0, b = 0;
    while (!atomic_load(&stop)) {
        int rc = l3_obs_as_read(&o, &a);
        if (rc == -EAGAIN) { e++; continue; }
        if (rc != 0) continue;
        r++;
        if (!check(&a)) t++;
        if (a.as_steps < prev) b++;
        prev = a.as_steps;
    }
    __atomic_add_fetch(&reads, r, __ATOMIC_RELAXED);
    __atomic_add_fetch(&torn, t, __ATOMIC_RELAXED);
    __atomic_add_fetch(&eagain, e, __ATOMIC_RELAXED);
    __atomic_add_fetch(&last_k_backwards, b, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    int ms = argc > 1 ? atoi(argv[1]) : 1000;
    size_t len = l3_obs_region_size(4);
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    l3_obs_as_t a;
    if (base == MAP_FAILED || l3_obs_format(base, len, 4, 1) != 0 || l3_obs_attach(&o, base, len) != 0)
        return 2;
    if (l3_obs_as_read(&o, &a) != -ENOENT) /* nothing published yet */
        return 3;
    pthread_t w, r[3];
    pthread_create(&w, NULL, writer, NULL);
    for (int i = 0; i < 3; i++)
        pthread_create(&r[i], NULL, reader, NULL);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    pthread_join(w, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(r[i], NULL);
    if (l3_obs_as_read(&o, &a) != 0 || !check(&a))
        return 4;
    printf("{\"reads\":%ld,\"torn\":%ld,\"eagain\":%ld,\"backwards\":%ld,\"last\":%llu}\n", reads, torn, eagain,
           last_k_backwards, (unsigned long long)a.as_steps);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_autoscale_seqlock_never_torn_under_stress(tmp_path):
    """l3_obs_as_publish / l3_obs_as_read from src/obs/metrics.c, compiled here with a
    writer thread republishing as fast as it can and three readers: every record read
    is whole (all fields from the same publish) and readers never go back in time."""
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    src = tmp_path / "stress.c"
    src.write_text(SEQLOCK_STRESS_C)
    exe = tmp_path / "stress"
    cc = subprocess.run(["cc", "-std=gnu17", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
                         "-I", os.path.join(root, "src", "obs"), "-I", os.path.join(root, "include"),
                         str(src), os.path.join(root, "src", "obs", "metrics.c"), "-o", str(exe)],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    p = subprocess.run([str(exe), "1000"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    r = json.loads(p.stdout)
    assert r["reads"] > 1000, r
    assert r["torn"] == 0 and r["backwards"] == 0, r
    assert r["last"] > 1000, r
