# SPDX-License-Identifier: MIT
"""The array and path operations of POST /kv/{key} (op=append, insert, pop, remove, set,
create_parents) against a Python model: random sequences of operations on a few documents,
each reply (status, error name, value) and the document read back after it compared with
what the model computes; then a SIGKILL of the whole service and a restart, after which
recovery from the write-ahead log must give back exactly the model's documents."""
import copy
import json
import random
import urllib.parse
import uuid

import requests

from conftest import Server

VALUES = [0, 1, -7, 2 ** 40, True, False, None, "s", "~/.x", "é", [], [1, [2]], {}, {"k": [1, {"z": None}]}, 1.5]
NAMES = ["a", "b", "list", "x~y", "p/q"]


def rand_value(rng):
    return copy.deepcopy(rng.choice(VALUES))


def resolve(doc, segs):
    """The value at segs, or raise KeyError / IndexError."""
    cur = doc
    for s in segs:
        if isinstance(cur, list):
            if not s.isdigit() or int(s) >= len(cur) or (len(s) > 1 and s[0] == "0"):
                raise IndexError(s)
            cur = cur[int(s)]
        elif isinstance(cur, dict):
            cur = cur[s]
        else:
            raise KeyError(s)
    return cur


def is_index(s):
    return s.isdigit() and (s == "0" or s[0] != "0")


def pointer(segs):
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segs)


def rand_path(rng, doc, want_array):
    """Mostly an existing path (to an array when there is one), sometimes a missing one."""
    paths = []

    def walk(v, segs, depth):
        paths.append(segs)
        if depth > 4:
            return
        if isinstance(v, dict):
            for k, c in v.items():
                walk(c, segs + [k], depth + 1)
        elif isinstance(v, list):
            for i, c in enumerate(v):
                walk(c, segs + [str(i)], depth + 1)

    walk(doc, [], 0)
    paths = [p for p in paths if p]
    arrays = [p for p in paths if isinstance(resolve(doc, p), list)]
    r = rng.random()
    if arrays and r < (0.8 if want_array else 0.3):
        return rng.choice(arrays)
    if paths and r < 0.85:
        return rng.choice(paths)
    return (rng.choice(paths) if paths and rng.random() < 0.5 else []) + [rng.choice(NAMES) + "n"]


def model(doc, op, segs, params):
    """Apply op to doc (in place): (status, error name or None, reply value)."""
    try:
        target = resolve(doc, segs)
        found = True
    except (KeyError, IndexError):
        target, found = None, False
    parent_segs, last = segs[:-1], segs[-1]
    if op in ("append", "insert", "pop", "remove"):
        if not found:
            return 404, "path_not_found", None
        if op == "remove":
            parent = resolve(doc, parent_segs)
            if isinstance(parent, list):
                return 200, None, parent.pop(int(last))
            return 200, None, parent.pop(last)
        if not isinstance(target, list):
            return 409, "type_conflict", None
        if op == "append":
            target.extend(params["vals"])
            return 200, None, target
        if op == "insert":
            i = params["index"]
            if i < 0 or i > len(target):
                return 409, "path_not_found", None
            target[i:i] = params["vals"]
            return 200, None, target
        i = params.get("index", -1)
        if i < 0:
            i += len(target)
        if i < 0 or i >= len(target):
            return 409, "path_not_found", None
        return 200, None, target.pop(i)
    # set
    val = params["vals"][0]
    cur = doc
    for s in parent_segs:
        if not isinstance(cur, (dict, list)):
            return 409, "type_conflict", None  # the path goes through a scalar
        if isinstance(cur, list) and not is_index(s):
            return 400, "bad_path", None  # JSON Patch: an array takes only indexes
        if isinstance(cur, dict) and s not in cur and params.get("create_parents"):
            cur[s] = {}
        try:
            cur = resolve(cur, [s])
        except (KeyError, IndexError):
            return 409, "path_not_found", None
    if not isinstance(cur, (dict, list)):
        return 409, "type_conflict", None
    if isinstance(cur, list) and not is_index(last):
        return 400, "bad_path", None
    if isinstance(cur, dict):
        cur[last] = val
    elif isinstance(cur, list) and last.isdigit() and not (len(last) > 1 and last[0] == "0") \
            and int(last) <= len(cur):
        if int(last) == len(cur):
            cur.append(val)
        else:
            cur[int(last)] = val
    else:
        return 409, "path_not_found", None
    return 200, None, val


def request(h, s, key, op, segs, params, rng):
    q = {"op": op, "field": pointer(segs)}
    if all(c not in seg for seg in segs for c in "./~") and rng.random() < 0.5:
        q["field"] = ".".join(segs)  # the dotted spelling
    if op in ("append", "insert", "set"):
        vals = params["vals"]
        if op != "set" and (len(vals) > 1 or rng.random() < 0.3):
            q["val"], q["multi"] = json.dumps(vals), "true"
        else:
            q["val"] = json.dumps(vals[0])
    if "index" in params:
        q["index"] = str(params["index"])
    if params.get("create_parents"):
        q["create_parents"] = "true"
    return h.post(s.url("/kv/%s?%s" % (key, urllib.parse.urlencode(q))))


def rand_op(rng, doc):
    op = rng.choice(["append"] * 3 + ["insert"] * 3 + ["pop"] * 2 + ["remove", "set", "set"])
    segs = rand_path(rng, doc, op in ("append", "insert", "pop"))
    params = {}
    if op in ("append", "insert", "set"):
        params["vals"] = [rand_value(rng) for _ in range(1 if op == "set" else rng.randint(1, 3))]
    if op == "insert":
        params["index"] = rng.randint(-1, 4)
    if op == "pop" and rng.random() < 0.6:
        params["index"] = rng.randint(-3, 4)
    if op == "set" and rng.random() < 0.5:
        params["create_parents"] = True
        if rng.random() < 0.5:
            segs = segs + [rng.choice(NAMES) + "p", rng.choice(NAMES)]
    return op, segs, params


def run_ops(h, s, docs, rng, n):
    for _ in range(n):
        key = rng.choice(sorted(docs))
        op, segs, params = rand_op(rng, docs[key])
        before = copy.deepcopy(docs[key])
        status, name, value = model(docs[key], op, segs, params)
        if status != 200:
            docs[key] = before  # a refused request changes nothing
        r = request(h, s, key, op, segs, params, rng)
        ctx = (key, op, segs, params, before, r.text[:300])
        assert r.status_code == status, ctx
        if status == 200:
            body = r.json()
            assert body["value"] == value, ctx
            assert r.headers["ETag"] == '"%d"' % body["version"], ctx
        else:
            assert r.json()["error"] == name, ctx
        g = h.get(s.url("/kv/" + key))
        assert g.status_code == 200 and g.json() == docs[key], ctx


def test_random_sequences_match_the_model_and_survive_recovery():
    rng = random.Random(1414)
    s = Server(workers=2, config={"storage": {"durability": "fsync"}})
    docs = {"arr-%s-%d" % (uuid.uuid4().hex[:6], i): {"a": {"list": [1, 2]}, "b": [], "c": "x"}
            for i in range(4)}
    try:
        with requests.Session() as h:
            for key, d in docs.items():
                assert h.put(s.url("/kv/" + key), data=json.dumps(d)).status_code == 200
            run_ops(h, s, docs, rng, 400)
    finally:
        s.kill_all()  # the arena is gone: the restart rebuilds every document from the WAL
    s2 = Server(workers=1, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            for key, d in docs.items():
                assert h.get(s2.url("/kv/" + key)).json() == d, key
            run_ops(h, s2, docs, rng, 100)
    finally:
        s2.stop()


def test_if_match_errors_and_feed(srv, session):
    key = "arr-" + uuid.uuid4().hex[:10]
    r = session.post(srv.url("/kv/%s?op=append&field=a&val=1" % key))
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    v = session.put(srv.url("/kv/" + key), data='{"a":[1]}').json()["version"]
    cur = session.get(srv.url("/changes?since=now&feed=longpoll&timeout=0")).json()["cursor"]
    r = session.post(srv.url("/kv/%s?op=append&field=a&val=2" % key), headers={"If-Match": '"%d"' % (v + 1000)})
    assert r.status_code == 412 and r.json()["error"] == "precondition_failed"
    r = session.post(srv.url("/kv/%s?op=append&field=a&val=2" % key), headers={"If-Match": '"%d"' % v})
    assert r.status_code == 200 and r.json()["value"] == [1, 2]
    v2 = r.json()["version"]
    for q, status, name in [("op=append&field=a&val=1,2", 400, "bad_value"),
                            ("op=append&field=a&val=", 400, "bad_value"),
                            ("op=append&field=a&multi=true&val=3", 400, "bad_value"),
                            ("op=insert&field=a&val=3", 400, "bad_value"),
                            ("op=pop&field=a&index=x", 400, "bad_value"),
                            ("op=set&field=a..b&val=1", 400, "bad_path"),
                            ("op=set&field=&val=1", 400, "bad_path"),
                            ("op=set&field=a&val=" + "[" * 600 + "]" * 600, 400, "too_deep")]:
        r = session.post(srv.url("/kv/%s?%s" % (key, q)))
        assert (r.status_code, r.json()["error"]) == (status, name), (q, r.text)
    # a val that tries to smuggle a second patch operation is one (refused) value
    evil = urllib.parse.quote('1},{"op":"remove","path":""},{"op":"add","path":"/z","value":1')
    r = session.post(srv.url("/kv/%s?op=set&field=z&val=%s" % (key, evil)))
    assert r.status_code == 400 and r.json()["error"] == "bad_value"
    assert session.get(srv.url("/kv/" + key)).json() == {"a": [1, 2]}
    feed = session.get(srv.url("/changes?since=%s&prefix=%s&feed=longpoll&timeout=0" % (cur, key)), timeout=10)
    assert [(c["op"], c["version"]) for c in feed.json()["changes"]] == [("patch", v2)], feed.text[:300]
    r = session.post(srv.url("/kv/%s?op=set&field=z&multi=true&val=%s" % (key, urllib.parse.quote("[1,2]"))))
    assert r.status_code == 200 and r.json()["value"] == [1, 2]  # set stores one value, multi or not
    assert session.get(srv.url("/kv/" + key)).json() == {"a": [1, 2], "z": [1, 2]}


def test_document_size_limit(tmp_path):
    s = Server(workers=1, config={"storage": {"max_document_bytes": 4096}})
    try:
        key = "arr-big"
        assert requests.put(s.url("/kv/" + key), data='{"a":[]}').status_code == 200
        chunk = urllib.parse.quote(json.dumps("x" * 1500))
        codes = [requests.post(s.url("/kv/%s?op=append&field=a&val=%s" % (key, chunk))).status_code
                 for _ in range(4)]
        assert codes[0] == 200 and codes[-1] == 413, codes
        r = requests.post(s.url("/kv/%s?op=append&field=a&val=%s" % (key, chunk)))
        assert r.json()["error"] == "document_too_large"
        n = len(requests.get(s.url("/kv/" + key)).json()["a"])
        assert n == codes.count(200)
    finally:
        s.stop()


def test_concurrent_appends_lose_nothing(srv):
    """Two clients appending to one array (two workers): a change between an operation's
    read and its patch makes it start over, so every answered append is in the array once."""
    import threading
    key = "arr-" + uuid.uuid4().hex[:10]
    assert requests.put(srv.url("/kv/" + key), data='{"l":[]}').status_code == 200
    results = {}

    def client(tag):
        with requests.Session() as h:
            out = []
            for i in range(150):
                r = h.post(srv.url("/kv/%s?op=append&field=l&val=%s" % (key, urllib.parse.quote('"%s%d"' % (tag, i)))))
                assert r.status_code in (200, 503), r.text
                if r.status_code == 503:
                    assert r.json()["error"] == "overloaded"
                out.append(("%s%d" % (tag, i), r.status_code, r.json().get("value")))
            results[tag] = out

    ts = [threading.Thread(target=client, args=(t,)) for t in "ab"]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    got = requests.get(srv.url("/kv/%s?field=l" % key)).json()
    ok = [v for tag in "ab" for v, st, _ in results[tag] if st == 200]
    assert sorted(got) == sorted(ok) and ok
    for tag in "ab":  # each client's appends keep their order
        mine = [v for v in got if v.startswith(tag)]
        assert mine == [v for v, st, _ in results[tag] if st == 200]
        for v, st, value in results[tag]:  # each reply is the array as that append left it
            assert st != 200 or (value == got[:len(value)] and value[-1] == v), (v, value)
