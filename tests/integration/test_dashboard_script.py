# SPDX-License-Identifier: MIT
"""The dashboard's script in node (fakedom.js) fed a known sequence of /metrics answers at
known times (performance.now() and fetch replaced): rates are counter deltas over the
measured time between answers, a late answer or a counter that went down leaves a gap,
write latency quantiles come from histogram deltas (the end-to-end histogram when present,
the handler one otherwise), and the watchers card and stages table appear only when
/metrics has them. The page itself is fetched from the real server."""
import copy
import json
import os
import re
import shutil

import pytest
import requests

FAKEDOM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakedom.js")
ROUTES = ["get", "put", "delete", "post", "patch", "list", "health", "metrics", "other"]

HARNESS = r"""
const fs = require('fs');
const {els, html} = require(process.argv[4]);
const answers = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
let clock = 0, i = 0, poll = null;
Object.defineProperty(globalThis, 'performance', {value: {now: () => clock}, configurable: true});
globalThis.fetch = async () => { const m = answers[i++].m; return {status: 200, ok: true, json: async () => m}; };
globalThis.setInterval = fn => { poll = fn; return 1; };
clock = answers[0].t;
(0, eval)(fs.readFileSync(process.argv[3], 'utf8'));
const snap = () => {
    const o = {};
    for (const [k, v] of Object.entries(els)) o[k] = {text: v.textContent, html: html(v), data: Object.assign({}, v.dataset), hidden: v.hidden};
    return o;
};
(async () => {
    const out = [];
    await new Promise(r => setTimeout(r, 50));
    out.push(snap());
    for (let k = 1; k < answers.length; k++) {
        clock = answers[k].t;
        await poll();
        out.push(snap());
    }
    console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"""


def hist(rows):
    n = sum(r[2] for r in rows)
    return {"count": n, "mean_ns": 0, "median_ns": 0, "p99_ns": 0, "histogram": rows}


def metrics(req, bin_, bout, e4, e5, put_handler, put_e2e=None, extra=None):
    handlers = {r: hist([]) for r in ROUTES}
    handlers["put"] = hist(put_handler)
    handlers["get"] = hist([[100, 128, req]])
    if put_e2e is not None:
        for r in ROUTES:
            handlers[r]["e2e"] = hist([])
        handlers["put"]["e2e"] = hist(put_e2e)
    m = {"system": {"version": "0.1.0", "uptime_s": 1.0, "active_connections": 2, "thread_count": 1,
                    "worker_processes": 1, "worker_restarts_total": 0, "inflight_requests": 0, "accept_queue": 0},
         "throughput": {"requests_total": req, "connections_accepted_total": 1, "bytes_received_total": bin_,
                        "bytes_sent_total": bout, "http_errors_4xx": e4, "http_errors_5xx": e5},
         "handlers": handlers,
         "workers": [{"slot": 0, "pid": None, "state": "<b>running</b>", "active_connections": 1,
                      "connections_accepted_total": 1, "requests_total": req}],
         "store": {"heap_bytes": 1000, "used_bytes": 250},
         "autoscale": {"enabled": False, "max_workers": 1, "decisions": []},
         "wal": {"head": 100, "durable": 60, "tail": 0, "pending_bytes": 40, "bytes_written_total": req * 10,
                 "records_total": 1, "fsyncs_total": 1, "segment": 1, "disk_bytes": 1, "write_errors_total": 0,
                 "failstop": False, "writer_pid": None}}
    m.update(extra or {})
    return m


def run(srv, tmp_path, answers):
    html = requests.get(srv.url("/dashboard"), timeout=5).text
    (tmp_path / "page.js").write_text(re.search(r"<script>(.*)</script>", html, re.S).group(1))
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    (tmp_path / "run.js").write_text(HARNESS)
    import subprocess
    p = subprocess.run(["node", str(tmp_path / "run.js"), str(tmp_path / "answers.json"), str(tmp_path / "page.js"),
                        FAKEDOM], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def sequence(e2e):
    """Answers at 0, 2000 ms (rates over 2 s), 5000 ms (3 s later: a gap), 6000 ms, then a
    restart (counters down: a gap) and one more."""
    stages = {"stages": {s: hist([[64, 72, 5]]) for s in ("document_op", "serialize", "handler")},
              "changes": {"watchers": 3}} if e2e else {}
    a = [[1000, 2000, 10]]
    b = a + [[4000, 8000, 100]]
    return [{"t": 0, "m": metrics(100, 1000, 2000, 5, 1, [[100, 128, 10]], a if e2e else None, stages)},
            {"t": 2000, "m": metrics(300, 5000, 2400, 9, 1, [[100, 128, 10], [200, 256, 100]],
                                     b if e2e else None, stages)},
            {"t": 5000, "m": metrics(400, 6000, 2500, 9, 2, [[100, 128, 10], [200, 256, 100]],
                                     b if e2e else None, stages)},
            {"t": 6000, "m": metrics(500, 6500, 2600, 10, 2, [[100, 128, 10], [200, 256, 100]],
                                     b if e2e else None, stages)},
            {"t": 7000, "m": metrics(10, 100, 100, 0, 0, [], [] if e2e else None, stages)},
            {"t": 8000, "m": metrics(20, 300, 200, 0, 0, [[100, 128, 1]], [[1000, 2000, 1]] if e2e else None,
                                     stages)}]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("e2e", [True, False])
def test_rates_gaps_and_latency_from_known_answers(srv, tmp_path, e2e):
    out = run(srv, tmp_path, sequence(e2e))
    first, two, late, after, restart, again = out
    assert first["chart-bytes"]["data"]["n"] == "0"  # one answer: no rate yet
    assert first["kpi-4xx"]["data"]["value"] == "5" and first["kpi-4xx"]["data"]["rate"] == ""
    k = two
    assert k["kpi-rps"]["data"]["value"] == "100.0"  # 200 requests over the measured 2 s, not 1 s
    assert k["kpi-in"]["data"]["value"] == "2000" and k["kpi-out"]["data"]["value"] == "200"
    assert k["kpi-4xx"]["data"] == {"value": "9", "rate": "2.00"}
    assert k["kpi-5xx"]["data"] == {"value": "1", "rate": "0.00"}
    assert k["kpi-workers"]["data"]["value"] == "1/1"
    assert k["kpi-arena"]["data"]["value"] == "25.000"
    assert k["kpi-wal"]["data"] == {"value": "40", "lag": "40.0"}  # 40 pending bytes at 1000 B/s
    assert json.loads(k["chart-bytes"]["data"]["last"]) == [2000, 200]
    assert json.loads(k["chart-rps"]["data"]["last"])[0] == 100  # get: 200 more over 2 s
    p50, p99 = json.loads(k["chart-lat"]["data"]["last"])
    if e2e:  # the 100 new end-to-end samples in [4000, 8000) ns
        assert (p50, p99) == (6000, 7960), (p50, p99)
        assert ">8.8 \u00b5s</text>" in k["chart-lat"]["html"]  # the axis: 1.1 x the top, in µs
        assert "end to end" in k["lat-src"]["text"]
        assert "e2e median" in k["routes"]["html"]
    else:  # the 100 new handler samples in [200, 256) ns
        assert (p50, p99) == (228, 255.44), (p50, p99)
        assert ">281.0 ns</text>" in k["chart-lat"]["html"]
        assert k["lat-src"]["text"] == "(handler)"
        assert "e2e median" not in k["routes"]["html"]
    # watchers and stages only when /metrics has them
    assert k["kpi-watchers"]["hidden"] is (not e2e)
    assert k["stages-box"]["hidden"] is (not e2e)
    if e2e:
        assert k["kpi-watchers"]["data"]["value"] == "3"
        assert "document_op" in k["stages"]["html"]
    # a string from /metrics is text, not markup
    assert "&lt;b&gt;running&lt;/b&gt;" in k["workers"]["html"] and "<b>" not in k["workers"]["html"]
    # 3 s after the previous answer: a gap in every rate chart, not a point (nor a spike)
    for c in ("chart-bytes", "chart-rps", "chart-lat"):
        assert late[c]["data"]["last"] == "null" and late[c]["data"]["gaps"] == "1", (c, late[c]["data"])
    assert late["chart"]["data"]["last"] != "null"  # the queue chart shows levels, not rates
    assert json.loads(after["chart-bytes"]["data"]["last"]) == [500, 100]
    # the counters went down (a restart): a gap again, then rates from the new counters
    assert restart["chart-bytes"]["data"]["last"] == "null" and restart["chart-bytes"]["data"]["gaps"] == "2"
    assert restart["kpi-rps"]["data"]["value"] == ""
    assert again["kpi-rps"]["data"]["value"] == "10.0"
    assert int(again["chart-bytes"]["data"]["n"]) == 5
