# SPDX-License-Identifier: MIT
"""The seed's client scenarios, and many concurrent clients on the same keys."""
import json
import random
import threading
import uuid

import requests


def canon(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def test_seed_put_then_get_equal(srv, session):
    docs = [
        {"user": "alice", "age": 30},
        {"complex": {"ints": [1, -2, 9007199254740993], "floats": [0.1, 1e-300, 1.7976931348623157e308],
                     "strings": ["", "üñí©ødé ✓", "quote\" backslash\\ nl\n tab\t", "\u0000"],
                     "bools": [True, False], "null": None}},
        {"nested": {"l1": {"l2": {"l3": {"l4": [[[{"deep": "yes"}]]]}}}}},
        [1, 2, 3],
        "just a string",
        42,
        {"big": 123456789012345678901234567890, "e": 1.5e300},
        {},
        [],
    ]
    for i, doc in enumerate(docs):
        key = "seed-%d-%s" % (i, uuid.uuid4().hex[:6])
        r = session.put(srv.url("/kv/" + key), data=json.dumps(doc, ensure_ascii=False).encode())
        assert r.status_code == 200, r.text
        got = session.get(srv.url("/kv/" + key))
        assert got.status_code == 200
        assert canon(got.json()) == canon(doc)


def test_numbers_round_trip(srv, session):
    """Numbers keep sign, magnitude and exactness through PUT/GET."""
    nums = [0, -0.5, -1, -9223372036854775808, 9223372036854775807, 18446744073709551616, -3.14, -1e-5,
            -1e-300, -1.5e-300, 2.5e-310, -2.5e-310, 1e308, -1e308, 5e-324]
    key = "nums-" + uuid.uuid4().hex[:6]
    assert session.put(srv.url("/kv/" + key), data=json.dumps(nums)).status_code == 200
    got = session.get(srv.url("/kv/" + key)).json()
    assert got == nums, [(a, b) for a, b in zip(nums, got) if a != b]


def test_seed_set_int_then_get(srv, session):
    key = "seed-si-" + uuid.uuid4().hex[:6]
    session.put(srv.url("/kv/" + key), data='{"counter": 0, "meta": {"hits": 5}}')
    r = session.post(srv.url("/kv/%s?op=set_int&field=counter&val=17" % key))
    assert r.status_code == 200
    r = session.post(srv.url("/kv/%s?op=set_int&field=meta.hits&val=6" % key))
    assert r.status_code == 200
    assert session.get(srv.url("/kv/" + key)).json() == {"counter": 17, "meta": {"hits": 6}}


def test_seed_delete_then_404(srv, session):
    key = "seed-del-" + uuid.uuid4().hex[:6]
    session.put(srv.url("/kv/" + key), data='{"x":1}')
    assert session.delete(srv.url("/kv/" + key)).status_code == 200
    assert session.get(srv.url("/kv/" + key)).status_code == 404


def test_concurrent_clients_same_keys(srv):
    """16 threads hammer 4 keys with incr, set_int, PUT and GET; counters must add up exactly,
    every read must be a complete document written by someone."""
    keys = ["conc-%d-%s" % (i, uuid.uuid4().hex[:6]) for i in range(4)]
    with requests.Session() as s:
        for key in keys:
            assert s.put(srv.url("/kv/" + key), data='{"count":0,"tag":"init","pad":"' + "p" * 200 + '"}').status_code == 200
    nthreads, nops = 16, 60
    incrs = [[0] * len(keys) for _ in range(nthreads)]
    failures = []

    def run(tid):
        rng = random.Random(tid)
        with requests.Session() as s:
            for _ in range(nops):
                ki = rng.randrange(len(keys))
                u = srv.url("/kv/" + keys[ki])
                op = rng.random()
                try:
                    if op < 0.5:
                        r = s.post(u + "?op=incr&field=count&val=1")
                        if r.status_code == 200:
                            incrs[tid][ki] += 1
                        else:
                            failures.append(("incr", r.status_code, r.text))
                    elif op < 0.7:
                        r = s.post(u + "?op=set_str&field=tag&val=t%d" % tid)
                        if r.status_code != 200:
                            failures.append(("set_str", r.status_code, r.text))
                    else:
                        r = s.get(u)
                        doc = r.json()
                        if r.status_code != 200 or set(doc) != {"count", "tag", "pad"} or doc["pad"] != "p" * 200:
                            failures.append(("get", r.status_code, r.text[:100]))
                except Exception as e:  # noqa: BLE001 - any exception is a failure
                    failures.append(("exc", repr(e)))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:5]
    with requests.Session() as s:
        for ki, key in enumerate(keys):
            doc = s.get(srv.url("/kv/" + key)).json()
            assert doc["count"] == sum(incrs[t][ki] for t in range(nthreads)), (key, doc)
            assert doc["tag"] == "init" or doc["tag"].startswith("t")


def test_concurrent_puts_never_torn(srv):
    key = "torn-" + uuid.uuid4().hex[:6]
    versions = [{"writer": w, "body": [w] * (50 + w * 40)} for w in range(8)]
    texts = {canon(v) for v in versions}
    bad = []

    def writer(w):
        with requests.Session() as s:
            for _ in range(40):
                r = s.put(srv.url("/kv/" + key), data=json.dumps(versions[w]))
                if r.status_code != 200:
                    bad.append(r.status_code)

    def reader():
        with requests.Session() as s:
            for _ in range(80):
                r = s.get(srv.url("/kv/" + key))
                if r.status_code == 200 and canon(r.json()) not in texts:
                    bad.append(r.text[:80])

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(8)] + \
         [threading.Thread(target=reader) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not bad, bad[:5]
