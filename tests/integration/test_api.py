# SPDX-License-Identifier: MIT
"""Every endpoint of the REST API and every error status, against the real binary."""
import json
import uuid

import requests

from conftest import raw_request


def k():
    return "t-" + uuid.uuid4().hex[:12]


def err(r, status, name=None):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    if name is not None:
        assert body["error"] == name, body
    assert "Content-Length" in r.headers or r.status_code in (204, 304)
    return body


def test_health_and_dashboard(srv, session):
    r = session.get(srv.url("/kv/health"))
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = session.get(srv.url("/dashboard"))
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    assert "/metrics" in r.text and int(r.headers["Content-Length"]) == len(r.content)


def test_put_get_delete_roundtrip(srv, session):
    key = k()
    doc = {"name": "x", "n": 1, "f": 1.5, "b": True, "z": None, "a": [1, "two", {"three": 3}]}
    r = session.put(srv.url("/kv/" + key), data=json.dumps(doc), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    etag = r.headers["ETag"]
    assert etag.startswith('"') and int(etag.strip('"')) > 0
    r = session.get(srv.url("/kv/" + key))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.json() == doc
    assert r.headers["ETag"] == etag
    r = session.delete(srv.url("/kv/" + key))
    assert r.status_code == 200 and int(r.headers["ETag"].strip('"')) > int(etag.strip('"'))
    err(session.get(srv.url("/kv/" + key)), 404, "not_found")
    err(session.delete(srv.url("/kv/" + key)), 404, "not_found")


def test_head_matches_get_without_body(srv, session):
    key = k()
    session.put(srv.url("/kv/" + key), data='{"a":[1,2,3]}')
    g = session.get(srv.url("/kv/" + key))
    h = session.head(srv.url("/kv/" + key))
    assert h.status_code == 200 and h.content == b""
    assert h.headers["Content-Length"] == g.headers["Content-Length"]
    assert h.headers["ETag"] == g.headers["ETag"]
    # on the wire: HEAD then GET on one keep-alive connection; the HEAD must carry no body
    raw = raw_request(srv.port, ("HEAD /kv/%s HTTP/1.1\r\nHost: x\r\n\r\nGET /kv/%s HTTP/1.1\r\nHost: x\r\n"
                                 "Connection: close\r\n\r\n" % (key, key)).encode(), read_all=True)
    assert raw.count(b"HTTP/1.1 200") == 2
    assert raw.endswith(b'{"a":[1,2,3]}')
    assert raw.count(b'{"a":[1,2,3]}') == 1


def test_field_get_dotted_and_pointer(srv, session):
    key = k()
    session.put(srv.url("/kv/" + key), data='{"a":{"b":[10,{"c":"deep"}]},"x/y":1}')
    assert session.get(srv.url("/kv/%s?field=a.b.0" % key)).json() == 10
    assert session.get(srv.url("/kv/%s?field=/a/b/1/c" % key)).json() == "deep"
    assert session.get(srv.url("/kv/%s?field=/x~1y" % key)).json() == 1
    assert session.get(srv.url("/kv/%s?field=a" % key)).json() == {"b": [10, {"c": "deep"}]}
    err(session.get(srv.url("/kv/%s?field=a.nope" % key)), 404)
    err(session.get(srv.url("/kv/%s?field=/a/b/x~2" % key)), 400, "bad_path")


def test_post_ops(srv, session):
    key = k()
    session.put(srv.url("/kv/" + key), data='{"n":1,"d":0.5,"s":"x","b":false,"o":{}}')
    u = srv.url("/kv/" + key)
    r = session.post(u + "?op=set_int&field=n&val=42")
    assert r.status_code == 200 and r.json()["value"] == 42 and "ETag" in r.headers
    r = session.post(u + "?op=set_double&field=d&val=2.25")
    assert r.status_code == 200 and r.json()["value"] == 2.25
    r = session.post(u + "?op=set_str&field=s&val=hello%20world")
    assert r.status_code == 200 and r.json()["value"] == "hello world"
    r = session.post(u + "?op=set_bool&field=b&val=true")
    assert r.status_code == 200 and r.json()["value"] is True
    r = session.post(u + "?op=set_null&field=o")
    assert r.status_code == 200 and r.json()["value"] is None
    r = session.post(u + "?op=incr&field=n&val=8")
    assert r.status_code == 200 and r.json()["value"] == 50
    r = session.post(u + "?op=incr&field=/n")
    assert r.json()["value"] == 51
    r = session.post(u + "?op=set_int&field=new&val=-7")  # a missing member is created
    assert r.status_code == 200
    r = session.post(u + "?op=set_double&field=n&val=1.5")  # a number may become a double
    assert r.status_code == 200
    assert session.get(u).json() == {"n": 1.5, "d": 2.25, "s": "hello world", "b": True, "o": None, "new": -7}


def test_post_errors_change_nothing(srv, session):
    key = k()
    u = srv.url("/kv/" + key)
    session.put(u, data='{"s":"str","n":1}')
    before = session.get(u)
    err(session.post(u + "?op=set_int&field=s&val=5"), 409, "type_conflict")
    err(session.post(u + "?op=incr&field=s"), 409, "type_conflict")
    err(session.post(u + "?op=set_int&field=n&val=abc"), 400, "bad_value")
    err(session.post(u + "?op=set_int&field=n&val=99999999999999999999"), 400, "bad_value")
    err(session.post(u + "?op=set_double&field=n&val=nan"), 400, "bad_value")
    err(session.post(u + "?op=set_bool&field=n&val=maybe"), 400, "bad_value")
    err(session.post(u + "?op=frobnicate&field=n&val=1"), 400, "bad_op")
    err(session.post(u + "?field=n&val=1"), 400, "bad_op")
    err(session.post(u + "?op=set_int&val=1"), 400, "bad_path")
    err(session.post(u + "?op=set_int&field=a.b.c&val=1"), 409)
    err(session.post(u + "?op=set_str&field=s&val=%ff"), 400, "bad_value")
    err(session.post(u + "?op=set_int&field=n&val=%zz"), 400)
    err(session.post(srv.url("/kv/%s-missing?op=set_int&field=n&val=1" % key)), 404, "not_found")
    after = session.get(u)
    assert after.content == before.content and after.headers["ETag"] == before.headers["ETag"]


def test_put_errors(srv, session):
    key = k()
    u = srv.url("/kv/" + key)
    session.put(u, data='{"keep":true}')
    b = err(session.put(u, data='{"a": [1, 2,, 3]}'), 400, "invalid_json")
    assert "offset 12" in b["detail"], b
    err(session.put(u, data="{\"a\": \"\xff\"}".encode("latin-1")), 400, "invalid_json")
    err(session.put(u, data="<a/>", headers={"Content-Type": "application/xml"}), 415, "unsupported_media_type")
    assert session.get(u).json() == {"keep": True}
    # 411: PUT without a body
    raw = raw_request(srv.port, ("PUT /kv/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % key).encode())
    assert raw.startswith(b"HTTP/1.1 411"), raw[:200]
    # 414: key longer than 1024 bytes
    err(session.put(srv.url("/kv/" + "k" * 1100), data="{}"), 414)
    err(session.get(srv.url("/kv/" + "k" * 1100)), 414)
    assert session.get(u).json() == {"keep": True}


def test_reserved_keys(srv, session):
    for name in ("health", "metrics"):
        err(session.put(srv.url("/kv/" + name), data="{}"), 400, "reserved_key")
        err(session.delete(srv.url("/kv/" + name)), 400, "reserved_key")
        err(session.post(srv.url("/kv/%s?op=set_int&field=a&val=1" % name)), 400, "reserved_key")
    assert session.get(srv.url("/kv/health")).json() == {"status": "ok"}
    t = session.get(srv.url("/kv/metrics"))
    assert t.status_code == 200 and t.headers["Content-Type"].startswith("text/plain")
    assert "active_connections" in t.text and "bytes_received_total" in t.text


def test_method_not_allowed(srv, session):
    r = session.request("OPTIONS", srv.url("/kv/" + k()))
    err(r, 405, "method_not_allowed")
    assert "PUT" in r.headers["Allow"] and "PATCH" in r.headers["Allow"]
    r = session.post(srv.url("/metrics"))
    err(r, 405)
    assert r.headers["Allow"] == "GET, HEAD"
    err(session.put(srv.url("/kv/"), data="{}"), 405)
    err(session.get(srv.url("/nope")), 404, "not_found")


def test_etag_conditionals(srv, session):
    key = k()
    u = srv.url("/kv/" + key)
    e1 = session.put(u, data='{"v":1}').headers["ETag"]
    r = session.get(u, headers={"If-None-Match": e1})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == e1
    other = '"%d"' % (int(e1.strip('"')) + 1000)  # a version this document does not have
    r = session.get(u, headers={"If-None-Match": other})
    assert r.status_code == 200 and r.json() == {"v": 1} and r.headers["ETag"] == e1
    r = session.put(u, data='{"v":2}', headers={"If-Match": '"999999999"'})
    err(r, 412, "precondition_failed")
    assert session.get(u).json() == {"v": 1}
    r = session.put(u, data='{"v":2}', headers={"If-Match": e1})
    assert r.status_code == 200
    e2 = r.headers["ETag"]
    assert e2 != e1
    err(session.delete(u, headers={"If-Match": e1}), 412)
    err(session.post(u + "?op=set_int&field=v&val=5", headers={"If-Match": e1}), 412)
    assert session.post(u + "?op=set_int&field=v&val=5", headers={"If-Match": e2}).status_code == 200
    err(session.put(srv.url("/kv/" + k()), data="{}", headers={"If-Match": "*"}), 412)
    assert session.get(u, headers={"If-None-Match": "*"}).status_code == 304


def test_create_only_put(srv, session):
    u = srv.url("/kv/" + k())
    r = session.put(u, data='{"v":1}', headers={"If-None-Match": "*"})
    assert r.status_code == 200, r.text
    e1 = r.headers["ETag"]
    err(session.put(u, data='{"v":2}', headers={"If-None-Match": "*"}), 412, "precondition_failed")
    err(session.put(u, data='{"v":2}', headers={"If-None-Match": e1}), 400, "bad_value")
    err(session.put(u, data='{"v":2}', headers={"If-None-Match": "*", "If-Match": e1}), 400, "bad_value")
    r = session.get(u)
    assert r.json() == {"v": 1} and r.headers["ETag"] == e1
    # of concurrent creates of one key exactly one succeeds, and its body is the stored one
    import concurrent.futures
    u2 = srv.url("/kv/" + k())

    def create(i):
        with requests.Session() as s:
            return i, s.put(u2, data='{"writer":%d}' % i, headers={"If-None-Match": "*"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(create, range(16)))
    won = [i for i, c in codes if c == 200]
    assert len(won) == 1 and all(c in (200, 412) for _, c in codes), codes
    assert session.get(u2).json() == {"writer": won[0]}


def test_merge_patch(srv, session):
    key = k()
    u = srv.url("/kv/" + key)
    session.put(u, data='{"a":1,"b":{"c":2,"d":3},"e":[1]}')
    r = session.patch(u, data='{"b":{"c":null,"x":9},"e":"s","f":true}',
                      headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert session.get(u).json() == {"a": 1, "b": {"d": 3, "x": 9}, "e": "s", "f": True}
    # a merge patch on a missing document creates it
    u2 = srv.url("/kv/" + k())
    r = session.patch(u2, data='{"new":1}', headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 201 and session.get(u2).json() == {"new": 1}


def test_json_patch_atomic(srv, session):
    key = k()
    u = srv.url("/kv/" + key)
    session.put(u, data='{"a":1,"list":[1,2]}')
    ct = {"Content-Type": "application/json-patch+json"}
    ops = [{"op": "add", "path": "/b", "value": {"c": 1}}, {"op": "remove", "path": "/a"},
           {"op": "add", "path": "/list/-", "value": 3}, {"op": "test", "path": "/b/c", "value": 1}]
    r = session.patch(u, data=json.dumps(ops), headers=ct)
    assert r.status_code == 200, r.text
    assert session.get(u).json() == {"list": [1, 2, 3], "b": {"c": 1}}
    before = session.get(u).content
    # the first op would apply, the failing test must undo everything
    bad = [{"op": "replace", "path": "/list/0", "value": 100}, {"op": "test", "path": "/b/c", "value": 2}]
    err(session.patch(u, data=json.dumps(bad), headers=ct), 409)
    bad2 = [{"op": "replace", "path": "/list/0", "value": 100}, {"op": "remove", "path": "/nope"}]
    err(session.patch(u, data=json.dumps(bad2), headers=ct), 409)
    err(session.patch(u, data='[{"op":"add"', headers=ct), 400)
    err(session.patch(u, data='{}', headers={"Content-Type": "text/csv"}), 415)
    assert session.get(u).content == before
    err(session.patch(srv.url("/kv/" + k()), data="[]", headers=ct), 404)


def test_listing_paged(srv, session):
    prefix = "lst-" + uuid.uuid4().hex[:6] + "-"
    keys = {prefix + str(i) for i in range(25)}
    for key in keys:
        assert session.put(srv.url("/kv/" + key), data="{}").status_code == 200
    seen, cursor, pages = [], None, 0
    while True:
        params = {"prefix": prefix, "limit": 10}
        if cursor:
            params["cursor"] = cursor
        r = session.get(srv.url("/kv/"), params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["keys"]) <= 10
        seen += body["keys"]
        pages += 1
        cursor = body["cursor"]
        if cursor is None:
            break
        assert pages < 20
    assert set(seen) == keys and pages >= 3
    err(session.get(srv.url("/kv/"), params={"limit": "x"}), 400)
    err(session.get(srv.url("/kv/"), params={"cursor": "-1"}), 400)


def test_binary_put_previous_format_version(srv, session):
    """A binary document of format version 2 (tests/fixtures/doc-v2) is verified by its own
    rules and stored rebuilt into the current version; served identically, and binary GET
    returns the current version (packed, version 4: the document is small)."""
    import os
    import struct
    fix = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "doc-v2")
    raw = open(os.path.join(fix, "doc.v2.bin"), "rb").read()
    want = json.load(open(os.path.join(fix, "doc.json")))
    assert struct.unpack_from("<H", raw, 4)[0] == 2
    key = k()
    r = session.put(srv.url("/kv/" + key), data=raw, headers={"Content-Type": "application/vnd.l3kv.doc"})
    assert r.status_code == 200, r.text
    assert session.get(srv.url("/kv/" + key)).json() == want
    r = session.get(srv.url("/kv/" + key), headers={"Accept": "application/vnd.l3kv.doc"})
    assert r.status_code == 200 and struct.unpack_from("<H", r.content, 4)[0] == 4
    assert len(r.content) < len(raw)


def test_binary_transfer(srv, session):
    key = k()
    doc = {"bin": [1, 2.5, "x", None, {"k": True}]}
    session.put(srv.url("/kv/" + key), data=json.dumps(doc))
    r = session.get(srv.url("/kv/" + key), headers={"Accept": "application/vnd.l3kv.doc"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.l3kv.doc"
    raw = r.content
    assert raw[:1] != b"{" and len(raw) % 8 == 0
    key2 = k()
    r = session.put(srv.url("/kv/" + key2), data=raw, headers={"Content-Type": "application/vnd.l3kv.doc"})
    assert r.status_code == 200, r.text
    assert session.get(srv.url("/kv/" + key2)).json() == doc
    # corrupted buffers are verified and refused; nothing is stored
    for bad in (raw[:-8], raw[:16], b"\x00" * 64, bytes([raw[0] ^ 0xFF]) + raw[1:], b"{}"):
        err(session.put(srv.url("/kv/" + key + "-bad"), data=bad,
                        headers={"Content-Type": "application/vnd.l3kv.doc"}), 400)
    err(session.get(srv.url("/kv/" + key + "-bad")), 404)
    # flip a byte in the middle of the value area
    mid = bytearray(raw)
    mid[len(mid) // 2] ^= 0x5A
    r = session.put(srv.url("/kv/" + key + "-mid"), data=bytes(mid),
                    headers={"Content-Type": "application/vnd.l3kv.doc"})
    assert r.status_code in (200, 400)
    if r.status_code == 200:  # the flip landed in a place verify accepts: it must still be valid JSON
        assert session.get(srv.url("/kv/" + key + "-mid")).status_code == 200


def test_metrics_json(srv, session):
    session.get(srv.url("/kv/health"))
    session.get(srv.url("/kv/does-not-exist-" + k()))
    m = session.get(srv.url("/metrics")).json()
    s, t = m["system"], m["throughput"]
    assert s["thread_count"] == 2 and s["active_connections"] >= 1
    assert s["inflight_requests"] >= 1 and s["accept_queue"] == 0  # the /metrics request itself; nothing waits
    for f in ("bytes_received_total", "bytes_sent_total", "http_errors_4xx", "http_errors_5xx", "requests_total"):
        assert isinstance(t[f], int)
    assert t["http_errors_4xx"] >= 1 and t["bytes_received_total"] > 0 and t["bytes_sent_total"] > 0
    g = m["handlers"]["get"]
    assert g["count"] >= 1 and g["median_ns"] > 0
    assert sum(c for _, _, c in g["histogram"]) == g["count"]
    assert all(lo < hi for lo, hi, _ in g["histogram"])
    lo_med = [lo for lo, hi, c in g["histogram"]]
    assert min(lo_med) <= g["median_ns"] <= max(hi for _, hi, _ in g["histogram"])
    assert len([w for w in m["workers"] if w["state"] == "running"]) == 2
    assert "keys" in m["store"]


def test_percent_encoded_keys(srv, session):
    u = srv.url("/kv/a%20b%2Fc")
    assert session.put(u, data='{"k":1}').status_code == 200
    assert session.get(srv.url("/kv/a b/c")).json() == {"k": 1}
    r = session.get(srv.url("/kv/"), params={"prefix": "a b/"})
    assert "a b/c" in r.json()["keys"]
