# SPDX-License-Identifier: MIT
"""POST /batch against the real server: random batches (plain and atomic) compared with a
Python model reply by reply; concurrent transfers between two counters keep their sum
(several clients, several workers), also while workers are SIGKILLed and across SIGKILLs
of the whole service in fsync mode (L3_BATCH_KILL_TRIALS trials, 3 here, 20 in the slow
suite); transactions over overlapping keys in opposite orders never deadlock; failed
compares run the failure branch; a failed write aborts the whole transaction; limits; the
change feed shows a transaction's changes contiguously; a restart keeps every transaction."""
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import Server, wait_until

KEYS = ["bm-%d" % i for i in range(6)]


def batch(s, body, session=None, timeout=30):
    r = (session or requests).post(s.url("/batch"), data=json.dumps(body), timeout=timeout)
    return r.status_code, r.json()


# ---------------------------------------------------------------- the model

class Model:
    """Documents and their versions as the server reported them; a view also holds
    ("ttl", key) for every key with a deadline (all far ahead: none expires here)."""

    def __init__(self):
        self.docs, self.ver = {}, {}

    def run(self, op, view):
        """Apply op to view (a dict key -> doc); return (status, payload) where payload is
        the expected doc / value, or the error name."""
        k, name = op["key"], op["op"]
        doc = view.get(k)
        if name == "get":
            if doc is None:
                return 404, "not_found"
            if "field" not in op:
                return 200, doc
            if not isinstance(doc, dict) or op["field"] not in doc:
                return 404, "path_not_found"
            return 200, doc[op["field"]]
        if name == "put":
            view[k] = op["doc"]
            if "ttl" in op:  # a PUT sets the deadline it gives and clears any other
                view[("ttl", k)] = True
            else:
                view.pop(("ttl", k), None)
            return 200, None
        if name == "delete":
            if doc is None:
                return 404, "not_found"
            del view[k]
            view.pop(("ttl", k), None)
            return 200, None
        if name == "patch":
            created = doc is None
            view[k] = merge(doc, op["merge"])
            return (201 if created else 200), None
        if doc is None:
            return 404, "not_found"
        if name in ("expire", "persist"):
            if name == "expire":
                view[("ttl", k)] = True
            else:
                view.pop(("ttl", k), None)
            return 200, None
        f = op["field"]
        if name == "incr":
            if not isinstance(doc, dict) or f not in doc:
                return 409, "path_not_found"
            if not isinstance(doc[f], int) or isinstance(doc[f], bool):
                return 409, "type_conflict"
            view[k] = dict(doc, **{f: doc[f] + op.get("by", 1)})
            return 200, view[k][f]
        if name == "set":
            if not isinstance(doc, dict):
                return 409, "path_not_found"
            view[k] = dict(doc, **{f: op["value"]})
            return 200, op["value"]
        if name == "append":
            if not isinstance(doc, dict) or f not in doc:
                return 404, "path_not_found"
            if not isinstance(doc[f], list):
                return 409, "type_conflict"
            view[k] = dict(doc, **{f: doc[f] + [op["value"]]})
            return 200, view[k][f]
        raise AssertionError(name)


def merge(doc, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for key, v in patch.items():
        if v is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), v)
    return out


def random_op(rnd, writes=True):
    k = rnd.choice(KEYS)
    names = ["get", "get", "put", "delete", "patch", "incr", "incr", "set", "append", "expire",
             "persist"] if writes else ["get"]
    name = rnd.choice(names)
    op = {"op": name, "key": k}
    if name == "get" and rnd.random() < 0.4:
        op["field"] = rnd.choice(["n", "l", "s"])
    elif name == "put":
        op["doc"] = rnd.choice([{"n": rnd.randint(-5, 5), "l": [], "s": "x"}, {"n": 1}, {"l": [1, {"a": None}]},
                                {"big": 123456789012345678901234567890, "f": 0.1, "u": "\u00e9\n"}])
        if rnd.random() < 0.3:
            op["ttl"] = 3600
    elif name == "expire":
        op["ttl"] = rnd.choice([600, 3600])
    elif name == "patch":
        op["merge"] = rnd.choice([{"n": rnd.randint(0, 9)}, {"s": None}, {"l": ["m"], "o": {"p": 1}}])
    elif name in ("incr", "set", "append"):
        op["field"] = rnd.choice(["n", "l", "s"])
        if name == "incr":
            op["by"] = rnd.randint(-3, 3)
        else:
            op["value"] = rnd.choice([1, "v", [2], {"z": True}, None, 2.5])
    return op


def check_result(model, view, op, res, versions):
    """Compare one result with the model (view already updated by model.run)."""
    want, payload = model.run(op, view)
    assert res["status"] == want, (op, res, payload)
    if want >= 400:
        assert res["error"] == payload, (op, res)
        return
    if op["op"] == "get":
        assert res["doc"] == payload, (op, res)
        assert res["version"] == versions[op["key"]], (op, res, versions)
        return
    if payload is not None:
        assert res["value"] == payload, (op, res)
    assert res["version"] > max(versions.values() or [0]), (op, res)
    versions[op["key"]] = res["version"]


def test_random_batches_match_the_model(srv):
    rnd = random.Random(int(os.environ.get("L3_BATCH_SEED", "14")))
    model, versions = Model(), {}
    for rnd_no in range(120):
        if rnd_no % 10 == 9:
            check_store(srv, model, versions)
        if rnd.random() < 0.5:
            ops = [random_op(rnd) for _ in range(rnd.randint(1, 12))]
            st, body = batch(srv, {"ops": ops})
            assert st == 200, body
            assert len(body["results"]) == len(ops)
            for op, res in zip(ops, body["results"]):
                check_result(model, model.docs, op, res, versions)
            continue
        # atomic: compares that hold or not, per the model
        compares = []
        for _ in range(rnd.randint(0, 3)):
            k = rnd.choice(KEYS)
            kind = rnd.choice(["version", "exists", "equals"])
            if kind == "version":
                v = versions.get(k, 0) if k in model.docs else 0
                compares.append({"key": k, "version": v if rnd.random() < 0.7 else v + 1})
            elif kind == "exists":
                compares.append({"key": k, "exists": (k in model.docs) == (rnd.random() < 0.7)})
            else:
                d = model.docs.get(k)
                val = d.get("n") if isinstance(d, dict) else None
                compares.append({"key": k, "field": "n", "equals": val if rnd.random() < 0.7 else "nope"})
        holds = all(compare_holds(model, versions, c) for c in compares)
        success = [random_op(rnd) for _ in range(rnd.randint(0, 6))]
        failure = [random_op(rnd, writes=rnd.random() < 0.3) for _ in range(rnd.randint(0, 3))]
        st, body = batch(srv, {"atomic": True, "compare": compares, "success": success, "failure": failure})
        branch = success if holds else failure
        view, vers = dict(model.docs), dict(versions)
        fails = [i for i, op in enumerate(branch)
                 if op["op"] != "get" and Model().run(op, simulate(branch[:i], view))[0] >= 400]
        if fails:
            assert st == 409, body
            assert body["error"] == "transaction_aborted" and body["failed"] == fails[0], body
            assert body["succeeded"] == holds
            continue  # nothing changed: the model stays
        assert st == 200, body
        assert body["succeeded"] == holds, (compares, body)
        assert len(body["results"]) == len(branch)
        for op, res in zip(branch, body["results"]):
            check_result(model, view, op, res, vers)
        model.docs, versions = view, vers
    check_store(srv, model, versions)  # and the store agrees with the model at the end


def check_store(srv, model, versions):
    for k in KEYS:
        r = requests.get(srv.url("/kv/" + k), timeout=5)
        if k in model.docs:
            assert r.status_code == 200 and r.json() == model.docs[k], (k, r.text)
            assert r.headers["ETag"] == '"%d"' % versions[k]
            assert ("L3KV-TTL" in r.headers) == (("ttl", k) in model.docs), (k, r.headers)
        else:
            assert r.status_code == 404


def simulate(ops, view):
    v = dict(view)
    m = Model()
    for op in ops:
        m.run(op, v)
    return v


def compare_holds(model, versions, c):
    d = model.docs.get(c["key"])
    if "version" in c:
        return (versions.get(c["key"]) if d is not None else 0) == c["version"]
    if "exists" in c:
        return (d is not None) == c["exists"]
    return isinstance(d, dict) and "n" in d and d["n"] == c["equals"] and type(d["n"]) is type(c["equals"])


# ---------------------------------------------------------------- compares and aborts

def test_compare_failure_runs_failure(srv):
    doc = {"state": "ready", "o": {"a": 1, "b": [1.0]}}
    assert batch(srv, {"ops": [{"op": "put", "key": "cf", "doc": doc}]})[0] == 200
    v = requests.get(srv.url("/kv/cf"), timeout=5).headers["ETag"].strip('"')
    cases = [
        ([{"key": "cf", "version": int(v)}], True),
        ([{"key": "cf", "version": int(v) + 1}], False),
        ([{"key": "cf", "exists": True}, {"key": "cf-none", "exists": False}], True),
        ([{"key": "cf-none", "exists": True}], False),
        ([{"key": "cf-none", "version": 0}], True),
        ([{"key": "cf", "field": "state", "equals": "ready"}], True),
        ([{"key": "cf", "field": "state", "equals": "done"}], False),
        ([{"key": "cf", "field": "o", "equals": {"b": [1], "a": 1}}], True),  # member order, 1 == 1.0
        ([{"key": "cf", "field": "o", "equals": {"a": 1}}], False),
        ([{"key": "cf", "field": "missing", "equals": None}], False),
        ([{"key": "cf", "version": int(v)}, {"key": "cf", "field": "state", "equals": "x"}], False),
    ]
    for i, (compare, holds) in enumerate(cases):
        st, body = batch(srv, {"atomic": True, "compare": compare,
                               "success": [{"op": "put", "key": "cf-s%d" % i, "doc": 1}],
                               "failure": [{"op": "get", "key": "cf", "field": "state"},
                                           {"op": "put", "key": "cf-f%d" % i, "doc": 2}]})
        assert st == 200, body
        assert body["succeeded"] is holds, (compare, body)
        assert len(body["results"]) == (1 if holds else 2)
        if not holds:
            assert body["results"][0] == {"status": 200, "doc": "ready", "version": int(v)}
        s_st = requests.get(srv.url("/kv/cf-s%d" % i), timeout=5).status_code
        f_st = requests.get(srv.url("/kv/cf-f%d" % i), timeout=5).status_code
        assert (s_st, f_st) == ((200, 404) if holds else (404, 200)), compare


def test_failed_write_aborts_the_transaction(srv):
    batch(srv, {"ops": [{"op": "put", "key": "ab-a", "doc": {"n": 1}},
                        {"op": "put", "key": "ab-b", "doc": {"n": "s"}}]})
    before = [requests.get(srv.url("/kv/ab-" + k), timeout=5).text for k in "ab"]
    for bad in [{"op": "incr", "key": "ab-b", "field": "n"}, {"op": "expire", "key": "ab-a"},
                {"op": "delete", "key": "ab-none"}, {"op": "put", "key": "health", "doc": 1},
                {"op": "patch", "key": "ab-a", "json_patch": [{"op": "test", "path": "/n", "value": 2}]}]:
        st, body = batch(srv, {"atomic": True, "success": [
            {"op": "incr", "key": "ab-a", "field": "n", "by": 5},
            {"op": "put", "key": "ab-new", "doc": {}}, bad, {"op": "incr", "key": "ab-a", "field": "n"}]})
        assert st == 409, (bad, body)
        assert body["error"] == "transaction_aborted" and body["failed"] == 2 and "detail" in body
        assert len(body["results"]) == 3 and body["results"][2]["status"] >= 400
        assert [requests.get(srv.url("/kv/ab-" + k), timeout=5).text for k in "ab"] == before
        assert requests.get(srv.url("/kv/ab-new"), timeout=5).status_code == 404
    # outside a transaction the same operations each answer for themselves
    st, body = batch(srv, {"ops": [{"op": "expire", "key": "ab-a"}, {"op": "incr", "key": "ab-a", "field": "n"}]})
    assert st == 200
    assert body["results"][0]["status"] == 400 and body["results"][0]["error"] == "bad_ttl"
    assert body["results"][1]["status"] == 200 and body["results"][1]["value"] == 2


# ---------------------------------------------------------------- limits and bad requests

def test_limits_and_bad_requests():
    s = Server(config={"server": {"max_batch_ops": 10, "max_body_bytes": 4096}})
    try:
        get = {"op": "get", "key": "x"}
        assert batch(s, {"ops": [get] * 10})[0] == 200
        st, body = batch(s, {"ops": [get] * 11})
        assert st == 413 and body["error"] == "too_large" and "max_batch_ops" in body["detail"]
        st, body = batch(s, {"atomic": True, "compare": [{"key": "x", "exists": True}] * 5, "success": [get] * 6})
        assert st == 413, body
        st, body = batch(s, {"ops": [{"op": "put", "key": "x", "doc": "y" * 5000}]})
        assert st == 413 and body["error"] == "too_large"
        # results are bounded too: a read that would pass max_body_bytes gets its own 413
        assert batch(s, {"ops": [{"op": "put", "key": "big", "doc": "z" * 3000}]})[0] == 200
        st, body = batch(s, {"ops": [{"op": "get", "key": "big"}, {"op": "get", "key": "big"}]})
        assert st == 200 and [r["status"] for r in body["results"]] == [200, 413]
        for bad, error in [("{", "invalid_json"), ("[]", "bad_batch"), ('{"ops":{}}', "bad_batch"),
                           ('{"x":1}', "bad_batch"), ('{"ops":[1]}', "bad_batch"),
                           ('{"ops":[{"op":"get"}]}', "bad_batch"), ('{"ops":[{"op":"fly","key":"a"}]}', "bad_batch"),
                           ('{"ops":[{"op":"get","key":""}]}', "bad_batch"),
                           ('{"atomic":true,"compare":[{"key":"a"}]}', "bad_batch"),
                           ('{"atomic":true,"compare":[{"key":"a","version":1,"exists":true}]}', "bad_batch")]:
            r = requests.post(s.url("/batch"), data=bad, timeout=5)
            assert r.status_code == 400 and r.json()["error"] == error, (bad, r.text)
            assert "detail" in r.json()
        r = requests.post(s.url("/batch"), data=b"", timeout=5)
        assert r.status_code == 400 and r.json()["error"] == "invalid_json"
        r = requests.get(s.url("/batch"), timeout=5)
        assert r.status_code == 405 and r.headers["Allow"] == "POST"
        st, body = batch(s, {"ops": [{"op": "incr", "key": "x"}, {"op": "put", "key": "x"},
                                     {"op": "patch", "key": "x"}, {"op": "incr", "key": "x", "field": "n", "by": "1"}]})
        assert st == 200 and [r["status"] for r in body["results"]] == [400, 400, 400, 400], body
        # nothing was written by any of it
        assert requests.get(s.url("/kv/x"), timeout=5).status_code == 404
    finally:
        s.stop()


def test_transaction_size_limits():
    """More keys than a transaction may lock, and a WAL group larger than half the ring:
    413, and nothing of it is stored."""
    s = Server(config={"server": {"max_batch_ops": 2000}, "storage": {"wal_buffer_bytes": 1 << 20}})
    try:
        st, body = batch(s, {"atomic": True, "success": [{"op": "put", "key": "tl-%d" % i, "doc": i}
                                                         for i in range(1100)]})
        assert st == 413 and body["error"] == "transaction_too_large", body
        big = "x" * 8000
        st, body = batch(s, {"atomic": True, "success": [{"op": "put", "key": "tw-%d" % i, "doc": big}
                                                         for i in range(100)]})
        assert st == 413 and body["error"] == "too_large_for_wal", body
        st, body = batch(s, {"ops": [{"op": "get", "key": k} for k in ("tl-0", "tl-1099", "tw-0", "tw-99")]})
        assert [r["status"] for r in body["results"]] == [404] * 4
        # the same writes outside a transaction are each logged on their own
        st, body = batch(s, {"ops": [{"op": "put", "key": "tw-%d" % i, "doc": big} for i in range(100)]})
        assert st == 200 and all(r["status"] == 200 for r in body["results"])
    finally:
        s.stop()


# ---------------------------------------------------------------- concurrency

def transfer_body(a, b, amount):
    return {"atomic": True, "success": [{"op": "incr", "key": a, "field": "n", "by": -amount},
                                        {"op": "incr", "key": b, "field": "n", "by": amount}]}


def sum_now(s):
    st, body = batch(s, {"atomic": True, "success": [{"op": "get", "key": "acct-a", "field": "n"},
                                                     {"op": "get", "key": "acct-b", "field": "n"}]})
    assert st == 200, body
    return body["results"][0]["doc"] + body["results"][1]["doc"]


def run_transfers(s, stop, errors, counts, idx, seed):
    rnd = random.Random(seed)
    ses = requests.Session()
    while not stop.is_set():
        a, b = ("acct-a", "acct-b") if rnd.random() < 0.5 else ("acct-b", "acct-a")
        amount = rnd.randint(1, 9)
        try:
            st, body = batch(s, transfer_body(a, b, amount), session=ses)
        except requests.RequestException:
            continue  # a worker killed under the request
        if st != 200:
            if st == 503:
                continue
            errors.append(body)
            return
        counts[idx] += 1
        if rnd.random() < 0.2:
            try:
                total = sum_now(s)
            except requests.RequestException:
                continue  # a worker killed under the request
            if total != 2000:
                errors.append("sum %d" % total)
                return


def test_concurrent_transfers_keep_the_sum():
    s = Server(workers=3)
    try:
        batch(s, {"ops": [{"op": "put", "key": "acct-a", "doc": {"n": 1000}},
                          {"op": "put", "key": "acct-b", "doc": {"n": 1000}}]})
        stop, errors, counts = threading.Event(), [], [0] * 4
        ts = [threading.Thread(target=run_transfers, args=(s, stop, errors, counts, i, i)) for i in range(4)]
        for t in ts:
            t.start()
        wait_until(lambda: sum(counts) >= 600 or errors, "600 transfers", timeout=60)
        # worker SIGKILLs in the middle of it: each dead worker's transaction is rolled back
        # (or forward) by the next locker, the supervisor starts a new one
        for _ in range(3):
            pids = s.worker_pids()
            before = sum(counts)
            os.kill(random.choice(pids), signal.SIGKILL)
            wait_until(lambda: sum(counts) >= before + 100 or errors, "transfers after a kill", timeout=60)
        stop.set()
        for t in ts:
            t.join()
        assert not errors, errors[:3]
        assert sum_now(s) == 2000
        m = s.metrics()
        assert m["store"]["keys"] >= 2
    finally:
        s.stop()


def test_opposite_key_orders_never_deadlock():
    """Clients whose transactions name the same keys in opposite orders (many keys, so
    that lock acquisitions overlap): with a short lock timeout a deadlock would answer
    503 within a second; every transaction must commit, and the counts add up."""
    s = Server(workers=3, config={"storage": {"lock_timeout_ms": 1000}})
    try:
        keys = ["dl-%d" % i for i in range(400)]
        batch(s, {"ops": [{"op": "put", "key": k, "doc": {"n": 0}} for k in keys]})
        errors, done = [], [0] * 6

        def client(i):
            ses = requests.Session()
            order = keys if i % 2 == 0 else list(reversed(keys))
            for j in range(40):
                ks = order[(j % 3) * 50:]
                st, body = batch(s, {"atomic": True, "compare": [{"key": ks[-1], "exists": True}],
                                     "success": [{"op": "incr", "key": k, "field": "n"} for k in ks]}, session=ses)
                if st != 200:
                    errors.append((st, body))
                    return
                done[i] += len(ks)

        ts = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=300)
        assert not errors, errors[:3]
        st, body = batch(s, {"ops": [{"op": "get", "key": k, "field": "n"} for k in keys]})
        assert sum(r["doc"] for r in body["results"]) == sum(done)
    finally:
        s.stop()


# ---------------------------------------------------------------- the change feed, restarts

def test_feed_shows_a_transaction_contiguously(srv):
    cur = requests.get(srv.url("/changes?feed=longpoll&timeout=0"), timeout=5).json()["cursor"]
    stop = threading.Event()

    def noise():
        ses = requests.Session()
        i = 0
        while not stop.is_set():
            ses.put(srv.url("/kv/feed-noise-%d" % (i % 7)), data='{"i":%d}' % i, timeout=5)
            i += 1

    t = threading.Thread(target=noise)
    t.start()
    txs = []
    try:
        for i in range(30):
            st, body = batch(srv, {"atomic": True, "success": [
                {"op": "put", "key": "feed-tx-%d-%d" % (i, j), "doc": {"j": j}} for j in range(4)]})
            assert st == 200
            txs.append([r["version"] for r in body["results"]])
    finally:
        stop.set()
        t.join()
    seen = []
    while len(seen) < 10000:
        r = requests.get(srv.url("/changes?feed=longpoll&timeout=0&limit=10000&since=" + cur), timeout=10).json()
        if not r["changes"]:
            break
        seen += r["changes"]
        cur = r["cursor"]
    order = [(c["key"], c["version"]) for c in seen]
    for i, versions in enumerate(txs):
        want = [("feed-tx-%d-%d" % (i, j), v) for j, v in enumerate(versions)]
        at = order.index(want[0])
        assert order[at:at + 4] == want, (i, order[at - 2:at + 6])
        assert all(c["op"] == "put" for c in seen[at:at + 4])


def test_transactions_survive_restarts():
    s = Server(config={"storage": {"durability": "fsync"}})
    d = s.dir
    try:
        for i in range(20):
            st, _ = batch(s, {"atomic": True, "success": [{"op": "put", "key": "rs-%d" % i, "doc": {"i": i}},
                                                          {"op": "incr", "key": "rs-sum", "field": "n"}
                                                          if i else {"op": "put", "key": "rs-sum", "doc": {"n": 0}}]})
            assert st == 200
        s.stop(keep_dir=True)
        s = Server(reuse_dir=d, config={"storage": {"durability": "fsync"}})
        assert requests.get(s.url("/kv/rs-sum"), timeout=5).json() == {"n": 19}
        st, _ = batch(s, {"atomic": True, "success": [{"op": "delete", "key": "rs-%d" % i} for i in range(10)]})
        assert st == 200
        s.kill_all()
        s = Server(reuse_dir=d, config={"storage": {"durability": "fsync"}})
        got = [requests.get(s.url("/kv/rs-%d" % i), timeout=5).status_code for i in range(20)]
        assert got == [404] * 10 + [200] * 10
    finally:
        s.stop()


def test_inspector_shows_transaction_groups():
    """l3kv-inspect wal marks the records of a transaction group (first, part, last, only)."""
    inspect = os.path.join(os.path.dirname(os.environ["L3KV_BIN"]), "..", "..", "tools", "l3kv-inspect",
                           "l3kv-inspect")
    s = Server(workers=1)
    try:
        batch(s, {"atomic": True, "success": [{"op": "put", "key": "ig-%d" % i, "doc": i} for i in range(3)]})
        batch(s, {"atomic": True, "success": [{"op": "put", "key": "ig-one", "doc": 1}]})
        batch(s, {"ops": [{"op": "put", "key": "ig-plain", "doc": 1}]})
    finally:
        s.stop(keep_dir=True)
    got = []
    for seg in sorted(glob.glob(os.path.join(s.dir, "data", "data.wal.[0-9]*"))):
        p = subprocess.run([inspect, "--json", "wal", seg], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        got += [(j["key"], j.get("tx")) for j in map(json.loads, p.stdout.splitlines())
                if not j.get("summary") and j.get("key", "").startswith("ig-")]
    shutil.rmtree(s.dir, ignore_errors=True)
    assert got == [("ig-0", "first"), ("ig-1", "part"), ("ig-2", "last"), ("ig-one", "only"),
                   ("ig-plain", None)], got


def test_transfers_across_service_sigkill_fsync():
    """SIGKILL of every process of the service during concurrent transfers (fsync mode),
    restart, and the sum holds; every acknowledged transfer is there, no unsent one is."""
    trials = int(os.environ.get("L3_BATCH_KILL_TRIALS", "3"))
    rnd = random.Random(int(os.environ.get("L3_BATCH_SEED", "7")))
    cfg = {"storage": {"durability": "fsync"}}
    s = Server(config=cfg, workers=2)
    d = s.dir
    try:
        # a transfer moves 1 from a to b: a + b stays 2000, b - 1000 counts the applied ones
        batch(s, {"ops": [{"op": "put", "key": "acct-a", "doc": {"n": 1000}},
                          {"op": "put", "key": "acct-b", "doc": {"n": 1000}}]})
        acked_total = 0
        for trial in range(trials):
            acked, sent, lock = [0], [0], threading.Lock()
            stop = threading.Event()

            def client():
                ses = requests.Session()
                while not stop.is_set():
                    with lock:
                        sent[0] += 1
                    try:
                        st, _ = batch(s, transfer_body("acct-a", "acct-b", 1), session=ses, timeout=10)
                    except (requests.RequestException, ValueError):
                        return
                    if st == 200:
                        with lock:
                            acked[0] += 1

            ts = [threading.Thread(target=client) for _ in range(3)]
            for t in ts:
                t.start()
            wait_until(lambda: acked[0] >= 20, "transfers before the kill", timeout=60)
            time.sleep(rnd.random() * 0.3)
            s.kill_all()
            stop.set()
            for t in ts:
                t.join()
            s = Server(reuse_dir=d, config=cfg, workers=2)
            a = requests.get(s.url("/kv/acct-a"), timeout=5).json()["n"]
            b = requests.get(s.url("/kv/acct-b"), timeout=5).json()["n"]
            assert a + b == 2000, (trial, a, b)
            applied = b - 1000
            assert acked_total + acked[0] <= applied <= acked_total + sent[0], (trial, applied, acked, sent)
            acked_total = applied
    finally:
        s.stop()
