# SPDX-License-Identifier: MIT
"""The Prometheus text exposition of /metrics: content negotiation (JSON stays the default),
`promtool check metrics` on the exposition, `promtool check rules` / `check config` on
etc/prometheus, exact counters after a known sequence of requests in both forms, and the
end-to-end histogram against the handler histogram in fsync mode. promtool comes with the
Debian package `prometheus` (tools/deps-debian.sh --all installs it)."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import Server, wait_until

PROM_CT = "text/plain; version=0.0.4; charset=utf-8"
# what Prometheus 2.42 sends when it scrapes
SCRAPER_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                  "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
ETC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc", "prometheus")
ADMIN_TOK = "prom-test-admin-token-0123456789abcdef"
MON_TOK = "prom-test-monitor-token-0123456789abcdef"


def promtool():
    p = shutil.which("promtool")
    if p is None:
        pytest.skip("promtool not installed (Debian package prometheus, tools/deps-debian.sh --all)")
    return p


@pytest.fixture(scope="module")
def fsync_srv():
    s = Server(config={"storage": {"durability": "fsync"}})
    yield s
    s.stop()


def parse_prom(text):
    """{(name, frozenset(labels)): value} of an exposition; checks every line's shape."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, line
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(p, name, **labels):
    return p[(name, frozenset(labels.items()))]


def test_content_negotiation(fsync_srv):
    u = fsync_srv.url("/metrics")
    r = requests.get(u)  # requests sends Accept: */*
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "handlers" in r.json() and r.headers["vary"] == "Accept"
    for accept in ("text/plain; version=0.0.4", SCRAPER_ACCEPT, "text/plain",
                   "application/json;q=0.2, text/plain;q=0.9"):
        r = requests.get(u, headers={"Accept": accept})
        assert r.status_code == 200 and r.headers["content-type"] == PROM_CT, accept
        assert r.text.startswith("# HELP l3kv_") and "\nl3kv_requests_total " in r.text
    for accept in ("application/json", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                   "text/plain, application/json", "text/plain;q=0.5, */*", "*/*"):
        r = requests.get(u, headers={"Accept": accept})
        assert r.headers["content-type"] == "application/json", accept
        r.json()
    r = requests.get(u + "?format=prometheus")
    assert r.status_code == 200 and r.headers["content-type"] == PROM_CT
    r = requests.get(u + "?format=json", headers={"Accept": "text/plain; version=0.0.4"})
    assert r.headers["content-type"] == "application/json"
    r.json()
    before = requests.get(u + "?format=prometheus").text
    r = requests.get(u + "?format=xml")
    assert r.status_code == 400 and r.json()["error"] == "bad_request" and "format" in r.json()["detail"]
    # the legacy text form is untouched
    r = requests.get(fsync_srv.url("/kv/metrics"))
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and "requests_total " in r.text
    assert "# TYPE" not in r.text and "# TYPE" in before


def test_promtool_check_metrics(fsync_srv):
    tool = promtool()
    for i in range(5):
        requests.put(fsync_srv.url("/kv/pt%d" % i), data=json.dumps({"i": i}))
        requests.get(fsync_srv.url("/kv/pt%d" % i))
    text = requests.get(fsync_srv.url("/metrics"), headers={"Accept": SCRAPER_ACCEPT}).text
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
    p = parse_prom(text)
    # every histogram: cumulative buckets, +Inf == _count
    for (name, labels), v in p.items():
        if name.endswith("_count") and name[:-6] + "_bucket" in {n for n, _ in p}:
            base = name[:-6]
            buckets = sorted(((float(dict(l)["le"]), bv) for (n, l), bv in p.items()
                              if n == base + "_bucket" and l - {("le", dict(l)["le"])} == labels))
            assert buckets[-1][0] == float("inf") and buckets[-1][1] == v, (name, labels)
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), (name, labels)
    # a broken exposition is what promtool refuses (so the check above can fail)
    bad = text.replace("l3kv_requests_total", "l3kv_requests", 1)
    r = subprocess.run([tool, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_promtool_check_rules_and_config(tmp_path):
    tool = promtool()
    r = subprocess.run([tool, "check", "rules", os.path.join(ETC, "l3kv-rules.yml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 6 rules found" in r.stdout
    rules = open(os.path.join(ETC, "l3kv-rules.yml")).read()
    for metric in ("l3kv_wal_failstop", "l3kv_wal_disk_full", 'l3kv_http_errors_total{class="5xx"}',
                   "l3kv_worker_restarts_total", "l3kv_store_used_bytes / l3kv_store_heap_bytes > 0.9"):
        assert metric in rules, metric
    # the scrape config, with its token file and rule file where promtool can find them
    cfg = open(os.path.join(ETC, "prometheus.yml")).read()
    assert "credentials_file: /etc/prometheus/l3kv.token" in cfg
    tok = tmp_path / "l3kv.token"
    tok.write_text(MON_TOK)
    tok.chmod(0o600)
    shutil.copy(os.path.join(ETC, "l3kv-rules.yml"), tmp_path / "l3kv-rules.yml")
    (tmp_path / "prometheus.yml").write_text(cfg.replace("/etc/prometheus/l3kv.token", str(tok)))
    r = subprocess.run([tool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def raw(port, method, path, body=None, ctype="application/json"):
    """One request on its own connection; returns (request bytes, response bytes, status)."""
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (method, path, port)
    data = body.encode() if body is not None else b""
    if body is not None:
        head += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(data))
    req = head.encode() + b"\r\n" + data
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            h, sep, b = out.partition(b"\r\n\r\n")
            if sep:
                cl = [l for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(b) >= int(cl[0].split(b":")[1]):
                    break
    return req, out, int(out.split(b" ", 2)[1])


def body_of(resp):
    return resp.partition(b"\r\n\r\n")[2].decode()


SEQUENCE = [  # method, path, body, expected status
    ("PUT", "/kv/x0", '{"i":0}', 200), ("PUT", "/kv/x1", '{"i":1}', 200), ("PUT", "/kv/x2", '{"i":2}', 200),
    ("GET", "/kv/x0", None, 200), ("GET", "/kv/x1", None, 200), ("GET", "/kv/nothing-here", None, 404),
    ("PUT", "/kv/bad", "{", 400), ("GET", "/no-such-route", None, 404), ("DELETE", "/kv/x2", None, 200),
]


def settled_metrics(port, deadline_s=30):
    """A /metrics reading that counts every response sent before it: sent bytes are accounted
    as a connection's writes complete, so a response of the server's start-up probe may still
    come in later. Read until the one reading between two others is all that came in."""
    q, r, _ = raw(port, "GET", "/metrics")
    m = json.loads(body_of(r))
    deadline = time.time() + deadline_s
    while True:
        q2, r2, _ = raw(port, "GET", "/metrics")
        m2 = json.loads(body_of(r2))
        sent = m2["throughput"]["bytes_sent_total"] - m["throughput"]["bytes_sent_total"]
        if sent == len(r) or time.time() > deadline:
            return q2, r2, m2
        q, r, m = q2, r2, m2


def test_exact_counters_after_known_requests():
    s = Server(config={"storage": {"durability": "fsync"}})
    try:
        port = s.port
        req0, resp0, m0 = settled_metrics(port)
        rx, tx = len(req0), len(resp0)  # bytes of requests/responses m0 does not count
        for method, path, body, status in SEQUENCE:
            q, r, st = raw(port, method, path, body)
            assert st == status, (method, path, r)
            rx += len(q)
            tx += len(r)
        # sent bytes are accounted per connection as its writes complete: poll until every
        # earlier response is in (each poll's own bytes then count too)
        deadline = time.time() + 30
        while True:
            q, r, _ = raw(port, "GET", "/metrics")
            m1 = json.loads(body_of(r))
            d_tx = m1["throughput"]["bytes_sent_total"] - m0["throughput"]["bytes_sent_total"]
            if d_tx >= tx or time.time() > deadline:
                break
            rx += len(q)
            tx += len(r)
        t0, t1 = m0["throughput"], m1["throughput"]
        assert d_tx == tx
        assert t1["bytes_received_total"] - t0["bytes_received_total"] == rx
        assert t1["http_errors_4xx"] - t0["http_errors_4xx"] == 3
        assert t1["http_errors_5xx"] - t0["http_errors_5xx"] == 0
        h0, h1 = m0["handlers"], m1["handlers"]
        want = {"put": 4, "get": 3, "delete": 1, "other": 1, "post": 0, "patch": 0, "list": 0, "health": 0}
        for route, n in want.items():
            assert h1[route]["count"] - h0[route]["count"] == n, route
            assert h1[route]["e2e"]["count"] - h0[route]["e2e"]["count"] == n, route
        polls = h1["metrics"]["count"] - h0["metrics"]["count"]
        assert polls >= 1 and h1["metrics"]["e2e"]["count"] - h0["metrics"]["e2e"]["count"] == polls
        assert t1["requests_total"] - t0["requests_total"] == len(SEQUENCE) + polls
        st0, st1 = m0["stages"], m1["stages"]
        assert st1["document_op"]["count"] - st0["document_op"]["count"] == 8
        assert st1["serialize"]["count"] - st0["serialize"]["count"] == 2
        assert st1["handler"]["count"] - st0["handler"]["count"] == 8
        # the same figures in the Prometheus form: exactly one request (the JSON read) later
        _, rj, _ = raw(port, "GET", "/metrics")
        mj = json.loads(body_of(rj))
        _, rp, _ = raw(port, "GET", "/metrics?format=prometheus")
        p = parse_prom(body_of(rp))
        assert val(p, "l3kv_requests_total") == mj["throughput"]["requests_total"] + 1
        assert val(p, "l3kv_http_errors_total", **{"class": "4xx"}) == mj["throughput"]["http_errors_4xx"]
        assert val(p, "l3kv_http_errors_total", **{"class": "5xx"}) == mj["throughput"]["http_errors_5xx"]
        assert val(p, "l3kv_http_received_bytes_total") > mj["throughput"]["bytes_received_total"]
        for route, h in mj["handlers"].items():
            extra = 1 if route == "metrics" else 0
            assert val(p, "l3kv_handler_duration_seconds_count", route=route) == h["count"] + extra, route
            assert val(p, "l3kv_request_duration_seconds_count", route=route) == h["e2e"]["count"] + extra
            assert val(p, "l3kv_handler_duration_seconds_bucket", route=route, le="+Inf") == h["count"] + extra
            if not extra:
                assert abs(val(p, "l3kv_handler_duration_seconds_sum", route=route) -
                           h["mean_ns"] * h["count"] / 1e9) <= h["count"] * 1e-9 + 1e-9
        for stage, h in mj["stages"].items():
            assert val(p, "l3kv_stage_duration_seconds_count", stage=stage) == h["count"], stage
        ch = mj["changes"]
        assert val(p, "l3kv_changes_watchers") == ch["watchers"] == 0
        assert val(p, "l3kv_changes_events_sent_total") == ch["events_sent_total"]
        assert val(p, "l3kv_changes_resets_total") == ch["resets_total"]
        workers = {dict(l)["worker"]: v for (n, l), v in p.items() if n == "l3kv_worker_requests_total"}
        assert sum(workers.values()) == val(p, "l3kv_requests_total")
        assert {str(w["slot"]) for w in mj["workers"]} == set(workers)
    finally:
        s.stop()


def test_e2e_includes_durable_wait_in_fsync_mode(fsync_srv):
    m0 = fsync_srv.metrics()
    n = 20
    for i in range(n):
        assert requests.put(fsync_srv.url("/kv/e2e%d" % i), data=json.dumps({"v": i})).status_code == 200
    m1 = fsync_srv.metrics()
    h0, h1 = m0["handlers"]["put"], m1["handlers"]["put"]
    assert h1["count"] - h0["count"] == n
    assert h1["e2e"]["count"] - h0["e2e"]["count"] == n
    # every request's end-to-end time >= its handler time: the e2e distribution lies to the
    # right, bucket by bucket (cumulative counts), and its total is larger (the fsync wait)
    def cum(h):
        c, out = 0, {}
        for lo, hi, k in h["histogram"]:
            c += k
            out[hi] = c
        return out
    ch, ce = cum(h1), cum(h1["e2e"])
    bounds = sorted(set(ch) | set(ce))
    last_h = last_e = 0
    for b in bounds:
        last_h, last_e = ch.get(b, last_h), ce.get(b, last_e)
        assert last_e <= last_h, b
    sum_h = h1["mean_ns"] * h1["count"] - h0["mean_ns"] * h0["count"]
    sum_e = h1["e2e"]["mean_ns"] * h1["e2e"]["count"] - h0["e2e"]["mean_ns"] * h0["e2e"]["count"]
    assert sum_e > sum_h
    assert h1["e2e"]["p99_ns"] >= h1["p99_ns"] and h1["e2e"]["median_ns"] >= h1["median_ns"]
    # the same in the exposition: cumulative e2e <= cumulative handler at every le
    p = parse_prom(requests.get(fsync_srv.url("/metrics?format=prometheus")).text)
    les = [dict(l)["le"] for (nm, l) in p if nm == "l3kv_handler_duration_seconds_bucket"
           and dict(l)["route"] == "put"]
    assert len(les) == 25 and "+Inf" in les
    for le in les:
        assert val(p, "l3kv_request_duration_seconds_bucket", route="put", le=le) <= \
            val(p, "l3kv_handler_duration_seconds_bucket", route="put", le=le), le


def test_process_ids_only_for_admin():
    # anonymous "monitor" so that the fixture's readiness probe reads /metrics without a token
    s = Server(config={"auth": {"anonymous": ["health", "monitor"], "tokens": [
        {"name": "mon", "token": MON_TOK, "scopes": ["monitor"]},
        {"name": "adm", "token": ADMIN_TOK, "scopes": ["monitor", "admin"]}]}})
    try:
        u = s.url("/metrics?format=prometheus")
        # the writer publishes its pid when its setup is done, which may follow the first answer
        wait_until(lambda: requests.get(s.url("/metrics"), headers={"Authorization": "Bearer " + ADMIN_TOK})
                   .json()["wal"]["writer_pid"] > 0, "the WAL writer publishing its pid")
        mon = requests.get(u, headers={"Authorization": "Bearer " + MON_TOK})
        adm = requests.get(u, headers={"Authorization": "Bearer " + ADMIN_TOK})
        assert mon.status_code == 200 and adm.status_code == 200
        assert "l3kv_worker_pid" not in mon.text and "l3kv_wal_writer_pid" not in mon.text
        pa = parse_prom(adm.text)
        pids = [v for (n, l), v in pa.items() if n == "l3kv_worker_pid"]
        assert pids and all(v > 0 for v in pids)
        assert val(pa, "l3kv_wal_writer_pid") > 0
        anon = requests.get(u)
        assert anon.status_code == 200 and "l3kv_worker_pid" not in anon.text
        assert requests.get(u, headers={"Authorization": "Bearer not-a-known-token-0123456789"}).status_code == 401
    finally:
        s.stop()


def test_rules_and_grafana_name_only_exported_families(fsync_srv, tmp_path):
    """Every l3kv_ metric the alert rules and the Grafana dashboard query is in a live
    exposition, and every dashboard query is valid PromQL (promtool checks it as a rule)."""
    tool = promtool()
    requests.put(fsync_srv.url("/kv/names"), data="{}")
    names = {n for n, _ in parse_prom(requests.get(fsync_srv.url("/metrics?format=prometheus")).text)}
    dash = json.load(open(os.path.join(ETC, "..", "grafana", "l3kv.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    rules = open(os.path.join(ETC, "l3kv-rules.yml")).read()
    used = set(re.findall(r"\bl3kv_[a-z0-9_]+", rules + "\n".join(exprs)))
    assert used and used <= names, used - names
    lines = ["groups:", "  - name: grafana", "    rules:"]
    for i, e in enumerate(exprs):
        lines += ["      - record: grafana:panel_%d" % i, "        expr: %s" % json.dumps(e)]
    (tmp_path / "dash-rules.yml").write_text("\n".join(lines) + "\n")
    r = subprocess.run([tool, "check", "rules", str(tmp_path / "dash-rules.yml")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
