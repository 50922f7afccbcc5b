# SPDX-License-Identifier: MIT
"""Expiry against the real server: PUT ?ttl=, POST ?op=expire / ?op=persist, the L3KV-TTL
header, expired keys absent at once and removed in the background (an "expire" change in
the feed, store.expired in /metrics), which writes keep or clear a deadline, batches, and
deadlines across a graceful restart, a checkpoint, SIGKILL of the whole service and a
downtime longer than the TTL."""
import time

import pytest
import requests

from conftest import Server, wait_until


@pytest.fixture(scope="module")
def es():
    s = Server(workers=2)
    yield s
    s.stop()


def put(s, key, doc, ttl=None):
    q = "" if ttl is None else "?ttl=%s" % ttl
    return requests.put(s.url("/kv/" + key + q), json=doc, timeout=10)


def ttl_of(r):
    v = r.headers.get("L3KV-TTL")
    return None if v is None else int(v)


def feed_ops(s, cursor, key):
    r = requests.get(s.url("/changes?since=%s&timeout=0&limit=10000" % cursor), timeout=10)
    assert r.status_code == 200, r.text
    return [c["op"] for c in r.json()["changes"] if c["key"] == key]


def now_cursor(s):
    r = requests.get(s.url("/changes?since=now&timeout=0"), timeout=10)
    return r.json()["cursor"]


def test_put_ttl_header_then_gone(es):
    cur = now_cursor(es)
    expired0 = es.metrics()["store"]["expired"]
    r = put(es, "ex-a", {"v": 1}, ttl=2)
    assert r.status_code == 200, r.text
    r = requests.get(es.url("/kv/ex-a"), timeout=5)
    assert r.status_code == 200 and r.json() == {"v": 1}
    assert ttl_of(r) in (1, 2)
    assert put(es, "ex-plain", {"v": 2}).status_code == 200
    assert ttl_of(requests.get(es.url("/kv/ex-plain"), timeout=5)) is None
    # absent at once after the deadline, for every read path
    wait_until(lambda: requests.get(es.url("/kv/ex-a"), timeout=5).status_code == 404, "ex-a expires", 10)
    assert requests.get(es.url("/kv/ex-a?field=v"), timeout=5).status_code == 404
    assert requests.head(es.url("/kv/ex-a"), timeout=5).status_code == 404
    keys = requests.get(es.url("/kv/?prefix=ex-"), timeout=5).json()["keys"]
    assert "ex-a" not in [k["key"] if isinstance(k, dict) else k for k in keys]
    # removed in the background: a logged expire change, counted
    wait_until(lambda: es.metrics()["store"]["expired"] > expired0, "background reclaim", 15)
    wait_until(lambda: "expire" in feed_ops(es, cur, "ex-a"), "expire event in the feed", 15)
    assert feed_ops(es, cur, "ex-a") == ["put", "expire"]
    assert requests.get(es.url("/kv/ex-plain"), timeout=5).status_code == 200


def test_expire_and_persist_ops(es):
    assert put(es, "ex-b", {"n": 1}).status_code == 200
    r = requests.post(es.url("/kv/ex-b?op=expire&ttl=100"), timeout=5)
    assert r.status_code == 200, r.text
    v1 = r.json()["version"]
    g = requests.get(es.url("/kv/ex-b"), timeout=5)
    assert 99 <= ttl_of(g) <= 100 and int(g.headers["ETag"].strip('"')) == v1
    r = requests.post(es.url("/kv/ex-b?op=persist"), timeout=5)
    assert r.status_code == 200 and r.json()["version"] > v1
    assert ttl_of(requests.get(es.url("/kv/ex-b"), timeout=5)) is None
    # a missing key, bad ttls: clear errors, nothing changes
    r = requests.post(es.url("/kv/ex-missing?op=expire&ttl=5"), timeout=5)
    assert r.status_code == 404 and r.json()["error"]
    for bad in ("0", "-1", "abc", "1.5", "315360001", ""):
        r = requests.post(es.url("/kv/ex-b?op=expire&ttl=" + bad), timeout=5)
        assert r.status_code == 400 and r.json()["error"] == "bad_ttl", (bad, r.text)
        r = put(es, "ex-b", {"n": 99}, ttl=bad)
        assert r.status_code == 400 and r.json()["error"] == "bad_ttl", (bad, r.text)
    assert requests.post(es.url("/kv/ex-b?op=expire"), timeout=5).json()["error"] == "bad_ttl"
    g = requests.get(es.url("/kv/ex-b"), timeout=5)
    assert g.json() == {"n": 1} and ttl_of(g) is None
    # If-Match is honoured
    r = requests.post(es.url("/kv/ex-b?op=expire&ttl=50"), headers={"If-Match": '"1"'}, timeout=5)
    assert r.status_code == 412


def test_which_writes_keep_the_deadline(es):
    assert put(es, "ex-c", {"n": 1, "s": "x"}, ttl=300).status_code == 200
    assert requests.post(es.url("/kv/ex-c?op=incr&field=n"), timeout=5).status_code == 200
    assert requests.post(es.url("/kv/ex-c?op=set_str&field=s&val=y"), timeout=5).status_code == 200
    r = requests.patch(es.url("/kv/ex-c"), json={"m": True},
                       headers={"Content-Type": "application/merge-patch+json"}, timeout=5)
    assert r.status_code == 200
    g = requests.get(es.url("/kv/ex-c"), timeout=5)
    assert g.json() == {"n": 2, "s": "y", "m": True} and 295 <= ttl_of(g) <= 300
    assert put(es, "ex-c", {"n": 0}).status_code == 200  # a PUT without ttl clears it
    assert ttl_of(requests.get(es.url("/kv/ex-c"), timeout=5)) is None
    assert put(es, "ex-c", {"n": 0}, ttl=7).status_code == 200  # and one with ttl sets it
    assert ttl_of(requests.get(es.url("/kv/ex-c"), timeout=5)) == 7


def test_write_to_an_expired_key_starts_afresh(es):
    cur = now_cursor(es)
    assert put(es, "ex-d", {"old": 1, "n": 5}, ttl=1).status_code == 200
    wait_until(lambda: requests.get(es.url("/kv/ex-d"), timeout=5).status_code == 404, "ex-d expires", 10)
    # an in-place op on an expired key is a missing key, not the old document
    assert requests.post(es.url("/kv/ex-d?op=incr&field=n"), timeout=5).status_code == 404
    r = requests.patch(es.url("/kv/ex-d"), json={"new": 1},
                       headers={"Content-Type": "application/merge-patch+json"}, timeout=5)
    assert r.status_code in (200, 201), r.text
    g = requests.get(es.url("/kv/ex-d"), timeout=5)
    assert g.json() == {"new": 1} and ttl_of(g) is None
    ops = feed_ops(es, cur, "ex-d")
    assert ops == ["put", "expire", "merge"], ops


def test_batch_ttl_expire_persist(es):
    body = {"ops": [{"op": "put", "key": "ex-b1", "doc": {"a": 1}, "ttl": 60},
                    {"op": "put", "key": "ex-b2", "doc": {"a": 2}},
                    {"op": "expire", "key": "ex-b2", "ttl": 30},
                    {"op": "expire", "key": "ex-b3", "ttl": 30},
                    {"op": "expire", "key": "ex-b2", "ttl": 0}]}
    r = requests.post(es.url("/batch"), json=body, timeout=10)
    assert r.status_code == 200, r.text
    st = [x["status"] for x in r.json()["results"]]
    assert st == [200, 200, 200, 404, 400], r.text
    assert r.json()["results"][4]["error"] == "bad_ttl"
    assert 59 <= ttl_of(requests.get(es.url("/kv/ex-b1"), timeout=5)) <= 60
    assert 29 <= ttl_of(requests.get(es.url("/kv/ex-b2"), timeout=5)) <= 30
    atomic = {"atomic": True, "compare": [{"key": "ex-b1", "exists": True}],
              "success": [{"op": "persist", "key": "ex-b1"},
                          {"op": "put", "key": "ex-b4", "doc": {"t": 1}, "ttl": 9},
                          {"op": "expire", "key": "ex-b2", "ttl": 500}],
              "failure": []}
    r = requests.post(es.url("/batch"), json=atomic, timeout=10)
    assert r.status_code == 200 and r.json()["succeeded"] is True, r.text
    assert ttl_of(requests.get(es.url("/kv/ex-b1"), timeout=5)) is None
    assert ttl_of(requests.get(es.url("/kv/ex-b4"), timeout=5)) == 9
    assert 499 <= ttl_of(requests.get(es.url("/kv/ex-b2"), timeout=5)) <= 500
    # a failed write aborts the transaction's deadline changes too
    atomic["success"] = [{"op": "expire", "key": "ex-b1", "ttl": 5},
                         {"op": "incr", "key": "ex-nothing", "field": "n"}]
    r = requests.post(es.url("/batch"), json=atomic, timeout=10)
    assert r.status_code == 409, r.text
    assert ttl_of(requests.get(es.url("/kv/ex-b1"), timeout=5)) is None


@pytest.mark.parametrize("how", ["graceful", "checkpoint", "sigkill"])
def test_deadlines_survive_restart(how):
    cfg = {"storage": {"durability": "fsync"}} if how == "sigkill" else None
    s = Server(workers=1, config=cfg)
    try:
        assert put(s, "r-short", {"v": 1}, ttl=2).status_code == 200
        assert put(s, "r-long", {"v": 2}, ttl=600).status_code == 200
        assert put(s, "r-none", {"v": 3}).status_code == 200
        assert put(s, "r-persisted", {"v": 4}, ttl=2).status_code == 200
        assert requests.post(s.url("/kv/r-persisted?op=persist"), timeout=5).status_code == 200
        if how == "checkpoint":
            assert requests.post(s.url("/admin/checkpoint"), timeout=5).status_code == 202
            wait_until(lambda: "checkpoint done" in s.logtext(), "checkpoint", 30)
        if how == "sigkill":
            s.kill_all()
        else:
            s.stop(keep_dir=True)
        time.sleep(2.5)  # r-short's deadline passes while the server is down
        s2 = Server(workers=1, config=cfg, reuse_dir=s.dir)
        try:
            assert requests.get(s2.url("/kv/r-short"), timeout=5).status_code == 404
            g = requests.get(s2.url("/kv/r-long"), timeout=5)
            assert g.status_code == 200 and 590 <= ttl_of(g) <= 600
            for k in ("r-none", "r-persisted"):
                g = requests.get(s2.url("/kv/" + k), timeout=5)
                assert g.status_code == 200 and ttl_of(g) is None, k
            wait_until(lambda: s2.metrics()["store"]["expired"] >= 1, "reclaim after the start", 15)
        finally:
            s2.stop(keep_dir=True)
        # the reclaim was logged: a third start does not bring r-short back either
        s3 = Server(workers=1, config=cfg, reuse_dir=s.dir)
        try:
            assert requests.get(s3.url("/kv/r-short"), timeout=5).status_code == 404
            assert requests.get(s3.url("/kv/r-long"), timeout=5).status_code == 200
        finally:
            s3.stop()
    finally:
        if s.proc.poll() is None:
            s.stop(check=False)
