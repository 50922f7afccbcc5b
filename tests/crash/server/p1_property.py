#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Property test P1: whatever the server accepts, it can serve, checkpoint and recover.

Starts the real l3kv binary on a temporary data directory and drives random and
adversarial API sequences over plain HTTP/1.1 (http.client, so request targets go out
byte for byte). A model (Python dicts) holds what every acknowledged request must have
done; a refused request (4xx/5xx) must have changed nothing. At random points the driver
runs POST /admin/checkpoint, SIGTERM + restart, or (in fsync mode, where acknowledged
means durable) SIGKILL of every process of the service + restart, and then compares
EVERY document (GET each key, its ETag) and the key listing with the model.

Operations: PUT JSON, PUT of the binary form (GET with Accept: application/vnd.l3kv.doc,
PUT back with Content-Type: application/vnd.l3kv.doc), JSON Merge Patch, JSON Patch
(add/remove/replace/move/copy/test), POST set_int/set_double/set_str/set_bool/set_null/
incr, DELETE, If-Match (right and wrong versions).

Adversarial cases: member names crafted to collide under the hash seed the binary form
reveals (accepted means served, round-tripped and recovered), nesting beyond 512 levels through JSON Patch add/copy/move and merge
patch (refused with 400 too_deep, or accepted and then served and recovered identically),
copy from "" repeated (413 document_too_large, or accepted and recovered), keys with %2F,
dot segments and control bytes (a key is the raw path after /kv/ percent-decoded once;
control bytes are refused with 400 bad_key), numbers such as 007, 1e400 and -0, large
member counts, unicode keys and strings. Every 2xx body must be JSON.

For each operation the model states whether it must succeed, must fail, or may do either
(limits); whatever it did must then be what the server serves, also after every restart.
A start that fails is a failure (the log is printed) and ends the trial.

The run does not stop at the first failed check: each failure is printed with its check
name and the key is re-synchronised to what the server serves, so one defect does not hide
the others; a summary by check name closes the run.

Exit 0 pass, 1 fail, 77 skip. Environment: L3KV_BIN, P1_TRIALS (default 1), P1_OPS (ops
per trial, default 300), P1_RESTARTS (restart events per trial, default 3), P1_SEED
(default 20261202; "random" picks one; always printed), P1_DEEP (levels the deep-nesting
case tries to reach in the first trial, default 5000; later trials stop at 5000). Trial i
runs fsync mode when i is even (SIGKILL allowed), buffered otherwise. L3_SLOW_SECONDS (the
bounded run of the slow suite): no new trial starts once that many seconds have passed.
storage.max_document_bytes is set to 1 MiB when the binary accepts it (a binary that does
not is a failed check).
"""
import collections
import copy as copymod
import http.client
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

BIN = os.environ.get("L3KV_BIN", "")
BINARY = "application/vnd.l3kv.doc"
failures = collections.Counter()
opstats = collections.Counter()  # (operation, "accepted"/"refused") over the run
first_failure = {}

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from l3proc import free_port, kill_service, unlink_arena  # noqa: E402


def is_int64(v):
    """A JSON integer the server keeps as an int (beyond int64 it is a number like 1e20)."""
    return isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63

class StartFailure(Exception):
    pass


def fail(check, detail):
    failures[check] += 1
    first_failure.setdefault(check, detail)
    if failures[check] <= 3:
        print("FAIL [%s] %s" % (check, detail[:1500]), flush=True)


# ---- keys -------------------------------------------------------------------------------

def key_of(raw):
    """The key a raw request target suffix names: percent-decoded exactly once, no
    dot-segment processing."""
    return urllib.parse.unquote_to_bytes(raw).decode("utf-8", "surrogateescape")


def raw_of(key):
    return urllib.parse.quote(key.encode("utf-8", "surrogateescape"), safe="")


def bad_key(key):
    return any(ord(c) < 0x20 or ord(c) == 0x7f for c in key)


# ---- model helpers ----------------------------------------------------------------------

def depth(v):
    best, todo = 0, [(v, 1)]
    while todo:
        x, d = todo.pop()
        if isinstance(x, (dict, list)):
            best = max(best, d)
            todo.extend((c, d + 1) for c in (x.values() if isinstance(x, dict) else x))
    return best


def ptr_parse(p):
    if p == "":
        return []
    if not p.startswith("/"):
        raise ValueError("bad pointer")
    return [t.replace("~1", "/").replace("~0", "~") for t in p[1:].split("/")]


def ptr_str(toks):
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in toks)


def arr_index(a, t, allow_end):
    if t == "-" and allow_end:
        return len(a)
    if not t.isdigit() or (len(t) > 1 and t[0] == "0"):
        raise KeyError(t)
    i = int(t)
    if i > len(a) or (i == len(a) and not allow_end):
        raise KeyError(t)
    return i


def walk(doc, toks):
    for t in toks:
        if isinstance(doc, dict):
            doc = doc[t]
        elif isinstance(doc, list):
            doc = doc[arr_index(doc, t, False)]
        else:
            raise KeyError(t)
    return doc


def jp_apply(doc, ops):
    """RFC 6902 on a copy; raises on any failure."""
    doc = copymod.deepcopy(doc)

    def add(doc, toks, val):
        if not toks:
            return val
        parent = walk(doc, toks[:-1])
        if isinstance(parent, dict):
            parent[toks[-1]] = val
        elif isinstance(parent, list):
            parent.insert(arr_index(parent, toks[-1], True), val)
        else:
            raise KeyError("parent")
        return doc

    def remove(doc, toks):
        if not toks:
            raise KeyError("remove root")
        parent = walk(doc, toks[:-1])
        if isinstance(parent, dict):
            v = parent.pop(toks[-1])
        elif isinstance(parent, list):
            v = parent.pop(arr_index(parent, toks[-1], False))
        else:
            raise KeyError("parent")
        return doc, v

    for op in ops:
        o, path = op["op"], ptr_parse(op["path"])
        if o == "add":
            doc = add(doc, path, copymod.deepcopy(op["value"]))
        elif o == "remove":
            doc, _ = remove(doc, path)
        elif o == "replace":
            walk(doc, path)
            if not path:
                doc = copymod.deepcopy(op["value"])
            else:
                doc, _ = remove(doc, path)
                doc = add(doc, path, copymod.deepcopy(op["value"]))
        elif o == "move":
            frm = ptr_parse(op["from"])
            if path[:len(frm)] == frm and path != frm:
                raise KeyError("move into itself")
            if frm == path:
                walk(doc, frm)
                continue
            if not frm:
                raise KeyError("move root")
            doc, v = remove(doc, frm)
            doc = add(doc, path, v)
        elif o == "copy":
            v = copymod.deepcopy(walk(doc, ptr_parse(op["from"])))
            doc = add(doc, path, v)
        elif o == "test":
            if not jeq(walk(doc, path), op["value"]):
                raise KeyError("test failed")
        else:
            raise KeyError("op")
    return doc


def jeq(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) == type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(jeq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(jeq(x, y) for x, y in zip(a, b))
    return type(a) == type(b) and a == b


def merge(target, patch):
    if not isinstance(patch, dict):
        return copymod.deepcopy(patch)
    out = copymod.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def nest_list(n, leaf=None):
    v = [] if leaf is None else leaf
    for _ in range(n - 1 if leaf is None else n):
        v = [v]
    return v


def nest_obj(n, leaf):
    v = leaf
    for _ in range(n):
        v = {"a": v}
    return v


M64 = (1 << 64) - 1


def name_hash(seed, name):
    """The member-name hash of the binary document format for an 8-byte name (the
    multiply-xorshift word step and the murmur3 finaliser), to craft colliding names."""
    assert len(name) == 8
    x = ((seed + 0x9E3779B97F4A7C15) & M64) ^ ((8 * 0xC2B2AE3D27D4EB4F) & M64)
    x = ((x ^ int.from_bytes(name, "little")) * 0x9FB21C651E98DF25) & M64
    x ^= x >> 32
    x ^= x >> 33
    x = (x * 0xff51afd7ed558ccd) & M64
    x ^= x >> 33
    x = (x * 0xc4ceb9fe1a85ec53) & M64
    x ^= x >> 33
    return x & 0xffffffff


_INF = {float("inf"): "\x00l3kv+inf\x00", float("-inf"): "\x00l3kv-inf\x00"}


def _mark_inf(v):
    if isinstance(v, float) and v in _INF:
        return _INF[v]
    if isinstance(v, dict):
        return {k: _mark_inf(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_mark_inf(x) for x in v]
    return v


def dumps(v):
    """JSON text of v. A number the server keeps beyond double range (1e400, which Python
    reads as inf) is written back as 1e400, never as the non-JSON token Infinity."""
    text = json.dumps(_mark_inf(v), ensure_ascii=False, separators=(",", ":"))
    text = text.replace('"\\u0000l3kv+inf\\u0000"', "1e400").replace('"\\u0000l3kv-inf\\u0000"', "-1e400")
    return text.encode("utf-8", "surrogatepass")


# ---- server ----------------------------------------------------------------------------

class Server:
    def __init__(self, base, durability, extra):
        self.base = base
        self.port = free_port()
        cfg = {"server": {"address": "127.0.0.1", "port": self.port, "min_workers": 2,
                          "max_workers": 2, "shutdown_timeout_ms": 5000},
               "storage": {"data_dir": os.path.join(base, "data"),
                           "wal_path": os.path.join(base, "data", "data.wal"),
                           "arena_bytes": 512 << 20, "durability": durability}}
        for sect, vals in extra.items():
            cfg[sect].update(vals)
        self.cfg_path = os.path.join(base, "config.json")
        with open(self.cfg_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(base, "server.log")
        self.proc = None
        self.conn = None

    def start(self):
        self.port = free_port()
        with open(self.cfg_path) as f:
            cfg = json.load(f)
        cfg["server"]["port"] = self.port
        with open(self.cfg_path, "w") as f:
            json.dump(cfg, f)
        with open(self.log_path, "ab") as log:
            log.write(b"---- start ----\n")
            log.flush()
            self.proc = subprocess.Popen([BIN, self.cfg_path], stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.base, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise StartFailure("l3kv exited with %s during start:\n%s" % (self.proc.returncode, self.logtail()))
            try:
                st, _, body = self.request("GET", "/metrics", timeout=2)
                if st == 200 and json.loads(body)["system"]["thread_count"] >= 2:
                    return
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                self.conn = None
            time.sleep(0.05)
        raise StartFailure("l3kv not ready after 60 s:\n" + self.logtail())

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def logtail(self, n=60):
        """The log since the last start, at most its last n lines."""
        text = self.logtext()
        return "\n".join(text[text.rfind("---- start ----"):].splitlines()[-n:])

    def request(self, method, target, body=None, headers=None, timeout=60):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
                hdrs = dict(headers or {})
                if body is not None:
                    hdrs.setdefault("Content-Length", str(len(body)))
                for k, v in hdrs.items():
                    self.conn.putheader(k, v)
                self.conn.endheaders(body)
                r = self.conn.getresponse()
                data = r.read()
                h = {k.lower(): v for k, v in r.getheaders()}
                if h.get("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, h, data
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 1 or method not in ("GET", "HEAD"):
                    raise
        raise AssertionError("unreachable")

    def stop(self):
        if self.conn:
            self.conn.close()
            self.conn = None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            fail("sigterm-stop", "l3kv did not stop within 60 s of SIGTERM:\n" + self.logtail())
            return
        if self.proc.returncode != 0:
            fail("sigterm-exit", "l3kv exited %s on SIGTERM:\n%s" % (self.proc.returncode, self.logtail()))

    def kill(self):
        if self.conn:
            self.conn.close()
            self.conn = None
        kill_service(self.proc, timeout=30)
        self.pids_killed = getattr(self, "pids_killed", []) + [self.proc.pid]

    def cleanup_shm(self):
        for pid in getattr(self, "pids_killed", []) + ([self.proc.pid] if self.proc else []):
            unlink_arena(pid)


# ---- the driver -------------------------------------------------------------------------

class Trial:
    def __init__(self, rng, n, durability, nops, nrestarts, deep, maxdoc):
        self.rng, self.n, self.durability = rng, n, durability
        self.nops, self.nrestarts, self.deep, self.maxdoc = nops, nrestarts, deep, maxdoc
        self.model = {}    # key -> document
        self.tainted = set()  # keys left out of the run after a key-aliasing failure
        self.etag = {}     # key -> ETag of the last acknowledged change
        self.base = tempfile.mkdtemp(prefix="l3kv-p1-")
        extra = {"storage": {"max_document_bytes": maxdoc}} if maxdoc else {}
        self.extra = extra
        self.srv = Server(self.base, durability, extra)
        self.ops_done = 0
        self.deaths_seen = 0
        self.events = collections.Counter()

    # -- HTTP with the checks every response gets
    def req(self, method, raw, body=None, headers=None, what=""):
        try:
            st, h, data = self.srv.request(method, raw, body, headers)
        except (OSError, http.client.HTTPException) as e:
            fail("connection", "%s %s: %r (%s)\n%s" % (method, raw[:120], e, what, self.srv.logtail(20)))
            return 0, {}, b""
        if st >= 500 and st != 507:
            fail("5xx", "%s %s -> %d %s (%s)" % (method, raw[:120], st, data[:300], what))
        if method != "HEAD" and st not in (204, 304):
            ctype = h.get("content-type", "")
            if not (st == 200 and ctype.startswith(BINARY)):
                try:
                    j = json.loads(data)
                except ValueError:
                    fail("reply-not-json", "%s %s -> %d %r (%s)" % (method, raw[:120], st, data[:200], what))
                    j = None
                if st >= 400 and not (isinstance(j, dict) and "error" in j):
                    fail("error-body", "%s %s -> %d %r" % (method, raw[:120], st, data[:200]))
        return st, h, data

    def errname(self, data):
        try:
            return json.loads(data).get("error")
        except (ValueError, AttributeError):
            return None

    def target(self, key):
        return "/kv/" + raw_of(key)

    def acked(self, key, h):
        if "etag" in h:
            self.etag[key] = h["etag"]

    def server_doc(self, key):
        try:
            st, h, data = self.srv.request("GET", self.target(key))
        except (OSError, http.client.HTTPException) as e:
            fail("connection", "GET %r: %r\n%s" % (key[:80], e, self.srv.logtail(20)))
            return None, None, 0
        if st == 404:
            return None, None, st
        try:
            return json.loads(data), h.get("etag"), st
        except ValueError:
            return "<not JSON: %r>" % data[:200], h.get("etag"), st

    def resync(self, key):
        doc, et, st = self.server_doc(key)
        if st == 0:  # the server cannot serve it (failure recorded): the key leaves the run
            self.tainted.add(key)
        if st != 200:
            self.model.pop(key, None)
            self.etag.pop(key, None)
        else:
            self.model[key] = doc
            self.etag[key] = et

    def check_key(self, key, check, ctx):
        doc, et, st = self.server_doc(key)
        want = self.model.get(key)
        if key not in self.model:
            if st != 404:
                fail(check, "%s: key %r should be absent, server %d %s" % (ctx, key[:80], st, str(doc)[:200]))
                self.resync(key)
            return
        if st != 200 or not jeq(doc, want):
            fail(check, "%s: key %r: server %d %s, model %s" % (ctx, key[:80], st, str(doc)[:300], str(want)[:300]))
            self.resync(key)
            return
        if key in self.etag and et != self.etag[key]:
            fail(check + "-etag", "%s: key %r ETag %s, last acknowledged %s" % (ctx, key[:80], et, self.etag[key]))
            self.etag[key] = et

    def listing(self):
        keys, cursor, pages = [], None, 0
        while pages < 1000:
            t = "/kv/?limit=10000" + ("&cursor=" + urllib.parse.quote(cursor, safe="") if cursor else "")
            st, _, data = self.srv.request("GET", t)
            if st != 200:
                fail("listing", "GET %s -> %d %r" % (t, st, data[:200]))
                return None
            j = json.loads(data)
            keys += j["keys"]
            if j.get("count") != len(j["keys"]):
                fail("listing-count", "count %s for %d keys" % (j.get("count"), len(j["keys"])))
            cursor = j.get("cursor")
            pages += 1
            if not cursor:
                break
        return keys

    def verify_all(self, ctx):
        for key in list(self.model):
            self.check_key(key, "after-" + ctx, ctx)
        keys = self.listing()
        if keys is not None:
            got = collections.Counter(k for k in keys if k not in self.tainted)
            want = collections.Counter(self.model.keys())
            if got != want:
                extra = [k for k in got if k not in want][:10]
                missing = [k for k in want if k not in got][:10]
                dup = [k for k in got if got[k] > 1][:10]
                fail("listing-after-" + ctx, "%s: listed but not in model %r; in model, not listed %r; listed twice %r"
                     % (ctx, extra, missing, dup))
                for k in extra:
                    self.resync(k)

    # -- restart events
    def checkpoint(self):
        before = self.srv.logtext().count("checkpoint done")
        st, _, data = self.req("POST", "/admin/checkpoint", b"")
        if st != 202:
            fail("checkpoint", "POST /admin/checkpoint -> %d %r" % (st, data[:200]))
            return
        deadline = time.time() + 120
        while time.time() < deadline and self.srv.logtext().count("checkpoint done") == before:
            if self.srv.proc.poll() is not None:
                raise StartFailure("l3kv died during a checkpoint:\n" + self.srv.logtail())
            time.sleep(0.05)
        if self.srv.logtext().count("checkpoint done") == before:
            fail("checkpoint", "no 'checkpoint done' within 120 s:\n" + self.srv.logtail())

    def worker_deaths(self):
        died = [l for l in self.srv.logtext().splitlines() if " died: " in l]
        if len(died) > self.deaths_seen:
            fail("worker-died", "%d worker death(s) in the log: %s" % (len(died) - self.deaths_seen,
                                                                       died[self.deaths_seen][:300]))
            self.deaths_seen = len(died)

    def fresh_start(self):
        """After a failed start (recorded): go on with the trial's remaining operations on a
        new, empty data directory, so one defect does not hide the others."""
        if self.srv.proc and self.srv.proc.poll() is None:
            self.srv.kill()
        self.srv.cleanup_shm()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = tempfile.mkdtemp(prefix="l3kv-p1-")
        self.srv = Server(self.base, self.durability, self.extra)
        self.model, self.etag, self.deaths_seen = {}, {}, 0
        print("trial %d: op %d: going on with an empty data directory" % (self.n, self.ops_done), flush=True)
        self.srv.start()

    def event(self, kind):
        try:
            self.event1(kind)
        except StartFailure as e:
            fail("start", "trial %d (%s) after %s: %s" % (self.n, self.durability, kind, e))
            self.fresh_start()

    def event1(self, kind):
        self.worker_deaths()
        self.events[kind] += 1
        print("trial %d: op %d: %s" % (self.n, self.ops_done, kind), flush=True)
        if kind == "checkpoint":
            self.checkpoint()
        elif kind == "checkpoint+sigterm":
            self.checkpoint()
            self.srv.stop()
            self.srv.start()
        elif kind == "sigterm":
            self.srv.stop()
            self.srv.start()
        elif kind == "sigkill":
            self.srv.kill()
            self.srv.start()
        self.verify_all(kind)

    # -- random content
    def rstr(self):
        r = self.rng
        alpha = ["a", "b", "z", "~", "/", "é", "ключ", "✓", "\"", "\\", "\u0000", "\n", "😀", " ", "%2F"]
        return "".join(r.choice(alpha) for _ in range(r.randint(0, 6)))

    def rval(self, d=0):
        r = self.rng
        c = r.randint(0, 9 if d < 4 else 5)
        if c == 0:
            return None
        if c == 1:
            return r.choice([True, False])
        if c == 2:
            return r.choice([0, -1, 7, 2**53, -2**63, 2**63 - 1, r.randint(-1000, 1000)])
        if c == 3:
            return r.choice([0.5, -2.25, 1e300, -1.5e-300, 3.0, r.randint(-4000, 4000) / 8])
        if c in (4, 5):
            return self.rstr()
        if c in (6, 7):
            return {self.rstr(): self.rval(d + 1) for _ in range(r.randint(0, 4))}
        return [self.rval(d + 1) for _ in range(r.randint(0, 4))]

    def rkey(self):
        r = self.rng
        if self.model and r.random() < 0.7:
            return r.choice(sorted(self.model))
        return self.newkey()

    def newkey(self):
        r = self.rng
        for _ in range(100):
            k = self.newkey1()
            if k not in self.tainted:
                return k
        return "fresh-%d" % r.randrange(10**9)

    def newkey1(self):
        r = self.rng
        return r.choice(["k%d" % r.randint(0, 30), "u-ключ-%d" % r.randint(0, 3), "a/b%d" % r.randint(0, 3),
                         "sp ace", "q?x".replace("?", "%3F"), "é✓😀"])

    def paths(self, doc, limit=200):
        """(pointer tokens, value) for every location in doc (bounded)."""
        out, todo = [], [([], doc)]
        while todo and len(out) < limit:
            toks, v = todo.pop()
            out.append((toks, v))
            if isinstance(v, dict):
                todo.extend((toks + [k], c) for k, c in v.items())
            elif isinstance(v, list):
                todo.extend((toks + [str(i)], c) for i, c in enumerate(v))
        return out

    # -- one operation: send, compare outcome with the model's prediction, update the model
    def expect(self, key, st, h, data, must, newdoc, what, delete=False):
        """must: True (must succeed), False (must be refused), None (either)."""
        ok = 200 <= st < 300
        label = what.split(" [")[0].split(" ?")[0].split(" {")[0].split(' "')[0]
        if label.startswith("POST"):
            label = "POST " + (what.split("op=")[1].split("&")[0] if "op=" in what else "")
        opstats[(label[:40], "accepted" if ok else "refused")] += 1
        if ok and must is False:
            fail("accepted-invalid", "%s on %r -> %d %r" % (what, key[:60], st, data[:200]))
            self.resync(key)
            return
        if not ok and must is True:
            fail("refused-valid", "%s on %r -> %d %r" % (what, key[:60], st, data[:300]))
        if ok:
            if delete:
                self.model.pop(key, None)
                self.etag.pop(key, None)
            else:
                self.model[key] = newdoc
                self.acked(key, h)
        self.check_key(key, "served", what)

    def op_put(self, key, doc=None, must=True, what="PUT"):
        """Returns (status, body), like op_jpatch."""
        doc = self.rval() if doc is None else doc
        if self.rng.random() < 0.5 and not isinstance(doc, (dict, list)):
            doc = {"v": doc}
        if what == "PUT" and isinstance(doc, dict) and self.rng.random() < 0.5:
            doc.update({"n": self.rng.randint(-9, 9), "s": "x", "f": 0.5, "b": False})  # for POST ops
        body = dumps(doc)
        st, h, data = self.req("PUT", self.target(key), body, {"Content-Type": "application/json"}, what)
        self.expect(key, st, h, data, must, doc, what)
        return st, data

    def op_binary(self, key):
        if key not in self.model:
            return
        st, h, data = self.req("GET", self.target(key), headers={"Accept": BINARY}, what="GET binary")
        if st != 200 or not h.get("content-type", "").startswith(BINARY):
            fail("binary-get", "GET %r binary -> %d %s %r" % (key[:60], st, h.get("content-type"), data[:100]))
            return
        dst = key if self.rng.random() < 0.5 else "bin-" + str(self.rng.randint(0, 9))
        st2, h2, data2 = self.req("PUT", self.target(dst), data, {"Content-Type": BINARY}, "PUT binary")
        if not 200 <= st2 < 300:
            fail("binary-roundtrip", "the server's own binary form of %r refused: %d %r" % (key[:60], st2, data2[:200]))
        self.expect(dst, st2, h2, data2, None, copymod.deepcopy(self.model[key]), "PUT binary")

    def op_merge(self, key, patch=None, must=None):
        patch = patch if patch is not None else (
            {self.rstr(): self.rval() if self.rng.random() < 0.7 else None for _ in range(3)}
            if self.rng.random() < 0.9 else self.rval())
        base = self.model.get(key)
        new = merge(base, patch)
        if must is None:
            must = True if self.within_limits(new) else None
        st, h, data = self.req("PATCH", self.target(key), dumps(patch),
                               {"Content-Type": "application/merge-patch+json"}, "merge patch")
        self.expect(key, st, h, data, must, new, "merge patch")

    def rpatch_ops(self, doc):
        r, ops = self.rng, []
        for _ in range(r.randint(1, 4)):
            locs = self.paths(doc)
            toks, _ = r.choice(locs)
            o = r.choice(["add", "add", "remove", "replace", "move", "copy", "test"])
            p = ptr_str(toks)
            if o == "add":
                ctoks, cv = r.choice(locs)
                if isinstance(cv, dict):
                    p = ptr_str(ctoks + [self.rstr()])
                elif isinstance(cv, list):
                    p = ptr_str(ctoks + [r.choice(["-", str(len(cv)), "0", str(len(cv) + 1)])])
                ops.append({"op": "add", "path": p, "value": self.rval(2)})
            elif o in ("remove",):
                ops.append({"op": o, "path": p if r.random() < 0.9 else p + "/nope"})
            elif o == "replace":
                ops.append({"op": o, "path": p, "value": self.rval(2)})
            elif o == "test":
                _, v = r.choice(locs)
                ops.append({"op": "test", "path": p, "value": v if r.random() < 0.5 else walk(doc, toks)})
            else:
                ftoks, _ = r.choice(locs)
                dtoks, dv = r.choice(locs)
                dest = ptr_str(dtoks + ([self.rstr()] if isinstance(dv, dict) else ["-"] if isinstance(dv, list) else []))
                ops.append({"op": o, "from": ptr_str(ftoks), "path": dest})
            try:
                doc = jp_apply(doc, ops[-1:])
            except (KeyError, ValueError, IndexError):
                pass
        return ops

    def within_limits(self, doc):
        """A result the server must accept: not deeper than 512, well under
        storage.max_document_bytes. Past those, refusing (too_deep, document_too_large) is
        as right as accepting."""
        # (the binary form may be several times the JSON text: a wide margin)
        return depth(doc) <= 512 and (not self.maxdoc or len(dumps(doc)) * 8 < self.maxdoc)

    def op_jpatch(self, key, ops=None, must="auto", what="JSON Patch"):
        """must: "auto" (the model's prediction, relaxed past the limits), True, False or None
        (either)."""
        if key not in self.model:
            return self.op_put(key)
        base = self.model[key]
        ops = ops if ops is not None else self.rpatch_ops(base)
        try:
            new, predicted = jp_apply(base, ops), True
        except (KeyError, ValueError, IndexError):
            new, predicted = None, False
        if must == "auto":
            # the operations apply one after another: a state between them past the limits
            # (a copy nesting past 512 that a later operation cuts back) may be refused too
            fits = predicted and all(self.within_limits(jp_apply(base, ops[:n])) for n in range(1, len(ops) + 1))
            must = predicted if not predicted or fits else None
        elif must is True and not predicted:
            raise AssertionError("driver bug: %r on %r" % (ops, base))
        st, h, data = self.req("PATCH", self.target(key), dumps(ops),
                               {"Content-Type": "application/json-patch+json"}, what)
        self.expect(key, st, h, data, must if predicted else False, new, what + " " + json.dumps(ops)[:200])
        return st, data

    def op_post(self, key):
        r = self.rng
        if key not in self.model or not isinstance(self.model[key], dict):
            self.op_put(key, {"n": r.randint(0, 9), "s": "x", "f": 1.5, "b": True})
            return
        doc = self.model[key]
        # plain member names only: "" or names with "." or a leading "/" are paths
        names = [k for k in doc if k.isascii() and k.isalnum()]
        field = r.choice(names + ["new%d" % r.randint(0, 3)]) if names and r.random() < 0.8 else \
            "new%d" % r.randint(0, 3)
        cur = doc.get(field, "<missing>")
        op = r.choice(["set_int", "set_double", "set_str", "set_bool", "set_null", "incr", "incr"])
        if r.random() < 0.7:  # mostly an op that fits the member's type, so most succeed
            if isinstance(cur, bool):
                op = "set_bool"
            elif isinstance(cur, int):
                op = r.choice(["incr", "incr", "set_int", "set_double"])
            elif isinstance(cur, float):
                op = "set_double"
            elif isinstance(cur, str) and cur != "<missing>":
                op = "set_str"
        val = None
        must = True
        if op == "set_int":
            val = r.choice(["5", "-3", str(2**63 - 1), "007", "1e3", "9223372036854775808", "x"])
            iv = None
            if val.lstrip("-").isdigit() and not (len(val.lstrip("-")) > 1 and val.lstrip("-")[0] == "0"):
                iv = int(val)
                if not -2**63 <= iv < 2**63:
                    iv = None
            if iv is None:
                must = None if val == "007" else False   # 007: refused, or stored as 7
                newv = 7 if val == "007" else None
            else:
                newv = iv
            if cur != "<missing>" and not is_int64(cur):
                must = False   # an integer beyond int64 is stored as a number, not an int
        elif op == "set_double":
            val = r.choice(["1.5", "-0", "1e400", "0.25", "abc"])
            newv = {"1.5": 1.5, "-0": -0.0, "0.25": 0.25}.get(val)
            must = newv is not None if val != "1e400" else None
            if cur != "<missing>" and (isinstance(cur, bool) or not isinstance(cur, (int, float))):
                must = False
        elif op == "set_str":
            val = self.rstr()
            newv = val
            if cur != "<missing>" and not isinstance(cur, str):
                must = False
        elif op == "set_bool":
            val, newv = r.choice([("true", True), ("false", False), ("1", True), ("0", False), ("yes", None)])
            must = newv is not None
            if cur != "<missing>" and not isinstance(cur, bool):
                must = False
        elif op == "set_null":
            newv = None
        else:
            val = r.choice([None, "1", "-5", "007", str(2**62)])
            d = 1 if val is None else (7 if val == "007" else int(val))
            if val == "007":
                must = None
            if cur == "<missing>" or not is_int64(cur):
                must = False if cur != "<missing>" else None   # incr on a missing member: either
                newv = d
            else:
                newv = cur + d
                if not -2**63 <= newv < 2**63:
                    must = False
        q = "?op=%s&field=%s" % (op, urllib.parse.quote(field, safe=""))
        if val is not None:
            q += "&val=" + urllib.parse.quote(val, safe="")
        headers = {}
        if key in self.etag and r.random() < 0.2:
            if r.random() < 0.5:
                headers["If-Match"] = self.etag[key]
            else:
                headers["If-Match"] = '"999999999"'
                must = False
        if must is True and not self.within_limits(doc):
            # a new member may need its object's table grown, even on a compacted copy: near
            # storage.max_document_bytes a refusal (413, nothing changed) is as right as success
            must = None
        st, h, data = self.req("POST", self.target(key) + q, b"", headers, "POST " + q)
        new = copymod.deepcopy(doc)
        if 200 <= st < 300:
            try:
                echoed = json.loads(data).get("value")
            except (ValueError, AttributeError):
                echoed = "<not JSON>"
            if newv is None and op != "set_null" and must is None:
                newv = echoed
            if op in ("set_int", "set_double", "incr") and echoed != "<not JSON>" and not jeq(echoed, newv):
                if not (isinstance(echoed, (int, float)) and isinstance(newv, float) and math.isnan(newv)):
                    fail("echo", "POST %s on %r echoed %r, stored should be %r" % (q, key, echoed, newv))
            if op == "set_double" and val == "1e400":
                # whatever it stored, take what the server serves from now on
                d2, _, _ = self.server_doc(key)
                newv = d2.get(field) if isinstance(d2, dict) else newv
        new[field] = newv
        self.expect(key, st, h, data, must, new, "POST " + q)

    def op_delete(self, key):
        headers, must = {}, key in self.model
        if key in self.etag and self.rng.random() < 0.3:
            if self.rng.random() < 0.5:
                headers["If-Match"] = self.etag[key]
            else:
                headers["If-Match"] = '"999999998"'
                must = False
        st, h, data = self.req("DELETE", self.target(key), None, headers, "DELETE")
        self.expect(key, st, h, data, must, None, "DELETE", delete=True)

    def op_put_ifmatch(self, key):
        doc = {"im": self.rng.randint(0, 99)}
        if key in self.etag and self.rng.random() < 0.5:
            hdr, must = self.etag[key], True
        else:
            hdr, must = '"999999997"', False
        st, h, data = self.req("PUT", self.target(key), dumps(doc), {"If-Match": hdr}, "PUT If-Match")
        self.expect(key, st, h, data, must, doc, "PUT If-Match " + hdr)

    # -- adversarial cases
    alias_raws = ["tmp%2F..%2Fvictim", "a%2Fb%2F..%2F..%2Fvictim", "a/../victim", "x/./y", "x/y",
                  "%2E%2E%2Fvictim", "a%2Fb%2F..%2F..%2F..%2Fmetrics"]
    alias_cases = [(r, True) for r in alias_raws if r != "x/y"] + [
        ("a%2Fb", True), ("%25%32%46", True), ("%D0%BA%D0%BB%D1%8E%D1%87", True)]

    def adv_keys(self):
        self.op_put("victim", {"victim": True})
        for raw, must in self.alias_cases:
            key = key_of(raw)
            doc = {"raw": raw}
            st, h, data = self.req("PUT", "/kv/" + raw, dumps(doc), {"Content-Type": "application/json"}, "PUT key")
            if not 200 <= st < 300:
                fail("key-refused", "PUT /kv/%s (key %r) -> %d %r" % (raw, key, st, data[:200]))
                continue
            self.model[key] = doc
            self.acked(key, h)
            st, h, data = self.srv.request("GET", "/kv/" + raw)
            try:
                served = json.loads(data)
            except ValueError:
                served = data[:100]
            if st != 200 or served != doc:
                fail("key-alias", "GET /kv/%s (key %r) -> %d %r, PUT stored %r" % (raw, key, st, data[:120], doc))
            self.check_key("victim", "key-alias", "after PUT /kv/" + raw)
        for raw in ("%00x", "a%01b", "tab%09", "nl%0A", "del%7F", "%1B[31m"):
            key = key_of(raw)
            st, h, data = self.req("PUT", "/kv/" + raw, b'{"c":1}', {"Content-Type": "application/json"}, "PUT ctl key")
            if st != 400 or self.errname(data) != "bad_key":
                fail("key-control-byte", "PUT /kv/%s -> %d %r (want 400 bad_key)" % (raw, st, data[:120]))
            if 200 <= st < 300:
                self.model[key] = {"c": 1}
                self.acked(key, h)
        self.check_key("victim", "key-alias", "after the key cases")
        if failures["key-alias"] or failures["key-refused"]:
            # keys alias on this server: the model cannot know which key holds what, so the
            # keys of this case leave the run (their failure is recorded above) and do not
            # cascade into every later check
            for raw in self.alias_raws + ["victim"]:
                self.tainted.add(key_of(raw))
                self.model.pop(key_of(raw), None)
                self.etag.pop(key_of(raw), None)
            for k in self.listing() or []:
                if k not in self.model:
                    self.tainted.add(k)

    def adv_numbers(self):
        for text, want in ((b'{"n":007}', None), (b'{"n":-0}', {"n": 0}), (b'{"n":1e400}', "either"),
                           (b'{"n":-1.5e-300}', {"n": -1.5e-300}), (b'{"n":01.5}', None),
                           (b'{"n":1.}', None), (b'{"n":.5}', None), (b'{"n":+1}', None),
                           (b'{"n":123456789012345678901234567890}', "either"), (b'{"n":-}', None)):
            key = "num-" + str(abs(hash(text)) % 1000)
            st, h, data = self.req("PUT", self.target(key), text, {"Content-Type": "application/json"}, "PUT number")
            if want is None:
                self.expect(key, st, h, data, False, None, "PUT " + text.decode())
            elif want == "either":
                if 200 <= st < 300:
                    d, et, _ = self.server_doc(key)
                    self.model[key] = d   # served from now on, identically after every restart
                    self.etag[key] = et
                else:
                    self.check_key(key, "served", "PUT " + text.decode())
            else:
                self.expect(key, st, h, data, True, want, "PUT " + text.decode())
        # query values are parsed as strictly as bodies; a reply echoes what was stored
        key = "num-ops"
        self.op_put(key, {"i": 1, "d": 0.5})
        for q, fld in (("op=set_int&field=i&val=007", "i"), ("op=incr&field=i&val=007", "i"),
                       ("op=set_int&field=i&val=%2B5", "i"), ("op=set_double&field=d&val=1e400", "d"),
                       ("op=set_double&field=d&val=-0", "d"), ("op=set_int&field=i&val=-0", "i"),
                       ("op=incr&field=i&val=9223372036854775807", "i")):
            before = copymod.deepcopy(self.model[key])
            st, h, data = self.req("POST", self.target(key) + "?" + q, b"", None, "POST " + q)
            if 200 <= st < 300:
                d, et, _ = self.server_doc(key)
                try:
                    echoed = json.loads(data).get("value")
                except (ValueError, AttributeError):
                    echoed = "<not JSON>"
                if isinstance(d, dict) and not jeq(echoed, d.get(fld)):
                    fail("echo", "POST ?%s echoed %r (%r), stored %r" % (q, echoed, data[:80], d.get(fld)))
                self.model[key] = d
                self.etag[key] = et
            else:
                self.check_key(key, "served", "refused POST ?" + q)
                if self.model.get(key) != before:
                    fail("refused-changed", "POST ?%s refused but the document changed" % q)

    def adv_hashflood(self):
        """Member names crafted to share one home slot under the seed the server's own
        binary form reveals (one connection: one worker): whatever the PUT answers, an
        accepted document must be served, round-trip through its binary form and recover."""
        self.op_put("hf-probe", {"x": 1}, what="PUT probe")
        st, h, data = self.req("GET", self.target("hf-probe"), headers={"Accept": BINARY}, what="GET binary")
        if st != 200 or len(data) < 28:
            fail("binary-get", "GET hf-probe binary -> %d %r" % (st, data[:60]))
            return
        seed = int.from_bytes(data[24:28], "little")
        names, i = [], 0
        while len(names) < 300:  # low 11 bits equal: one home slot in tables up to 2048
            nm = b"%08x" % i
            if name_hash(seed, nm) & 2047 == 0:
                names.append(nm.decode())
            i += 1
        doc = {n: k for k, n in enumerate(names)}
        self.op_put("hf-doc", doc, must=None, what="PUT colliding names")
        if "hf-doc" in self.model:
            self.op_binary("hf-doc")

    def adv_big(self):
        n = self.rng.choice([20000, 60000])
        doc = {"m%d" % i: i for i in range(n)}
        # near storage.max_document_bytes a refusal (413) is as right as success
        self.op_put("big-members", doc, must=True if self.within_limits(doc) else None)
        arr = {"a": list(range(n))}
        self.op_put("big-array", arr, must=True if self.within_limits(arr) else None)
        self.op_jpatch("big-members", [{"op": "add", "path": "/zz", "value": 1}, {"op": "remove", "path": "/m0"}])

    def adv_deep(self):
        """Nesting beyond 512 through every write path: refused with 400 too_deep and nothing
        changed, or accepted and then served and recovered identically."""
        step = 500
        key = "deep-jp"
        self.op_put(key, nest_list(step - 10, leaf=[]), what="PUT deep 491")
        inner = step - 10   # pointer "/0" * inner names the innermost (empty) array
        while inner < self.deep and key in self.model:
            # append a 490-level value to the innermost array
            st, data = self.op_jpatch(key, [{"op": "add", "path": "/0" * inner + "/-",
                                             "value": nest_list(step - 10)}],
                                      must=None, what="JSON Patch add deep")
            if not 200 <= st < 300:
                if st and (st != 400 or self.errname(data) != "too_deep"):
                    fail("deep-refusal", "JSON Patch add beyond 512 -> %d %r (want 400 too_deep)" % (st, data[:200]))
                break
            inner += step - 10
        print("trial %d: JSON Patch add reached %d levels" % (self.n, depth(self.model.get(key))), flush=True)
        # copy and move of a deep subtree under itself
        k2 = "deep-copy"
        self.op_put(k2, {"a": nest_list(400), "b": nest_list(400)}, what="PUT deep 401")
        for o in ("copy", "move"):
            if k2 not in self.model:
                break
            src = "/a" if o == "copy" else "/b"
            if o == "move" and "b" not in self.model[k2]:
                break
            dest = "/a" + "/0" * 390 + "/-"
            if o == "move":
                dest = "/a" + "/0" * 390 + "/-"
            st, data = self.op_jpatch(k2, [{"op": o, "from": src, "path": dest}], must=None,
                                      what="JSON Patch %s deep" % o)
            if not 200 <= st < 300 and (st != 400 or self.errname(data) != "too_deep"):
                fail("deep-refusal", "JSON Patch %s beyond 512 -> %d %r (want 400 too_deep)" % (o, st, data[:200]))
        # merge patch: a 500-level object merged under a 500-level object
        k3 = "deep-merge"
        self.op_put(k3, nest_obj(500, {"x": 1}), what="PUT deep obj 501")
        patch = nest_obj(300, {"x": nest_obj(200, 1)})
        before = self.model.get(k3)
        new = merge(before, patch)
        st, h, data = self.req("PATCH", self.target(k3), dumps(patch),
                               {"Content-Type": "application/merge-patch+json"}, "merge patch deep")
        self.expect(k3, st, h, data, None if depth(new) > 512 else True, new, "merge patch deep")
        if not 200 <= st < 300 and (st != 400 or self.errname(data) != "too_deep"):
            fail("deep-refusal", "merge patch beyond 512 -> %d %r (want 400 too_deep)" % (st, data[:200]))
        # binary PUT of the deepest accepted document
        for k in (key, k2, k3):
            if k in self.model and depth(self.model[k]) > 512:
                self.op_binary(k)
        # a straight PUT beyond 512 must be refused
        st, h, data = self.req("PUT", self.target("deep-put"), dumps(nest_list(600)),
                               {"Content-Type": "application/json"}, "PUT 600")
        self.expect("deep-put", st, h, data, False, None, "PUT 600 levels")

    def adv_amplify(self):
        key = "amp"
        self.op_put(key, {"s": "x" * 40})
        copies = self.rng.choice([10, 12, 14])
        ops = [{"op": "copy", "from": "", "path": "/c%d" % i} for i in range(copies)]
        new = jp_apply(self.model[key], ops)
        size = len(dumps(new))
        must = None if self.maxdoc and size * 8 > self.maxdoc else True
        st, data = self.op_jpatch(key, ops, must=must, what="copy from \"\" x%d (%d bytes as JSON)" % (copies, size))
        if self.maxdoc:
            # past the limit: 413 document_too_large and nothing changed
            k2 = "amp2"
            self.op_put(k2, {"s": "y" * 100})
            n = 1
            while (100 << n) < 2 * self.maxdoc:
                n += 1
            ops = [{"op": "copy", "from": "", "path": "/c%d" % i} for i in range(n)]
            st, h, data = self.req("PATCH", self.target(k2), dumps(ops),
                                   {"Content-Type": "application/json-patch+json"}, "amplify")
            if st != 413 or self.errname(data) != "document_too_large":
                fail("amplify-limit", "copy from \"\" x%d past storage.max_document_bytes=%d -> %d %r"
                     % (n, self.maxdoc, st, data[:200]))
            self.expect(k2, st, h, data, False, None, "amplify past the limit")

    def run(self):
        r = self.rng
        kinds = ["checkpoint", "checkpoint+sigterm", "sigterm"] + (["sigkill", "sigkill"] if self.durability == "fsync" else [])
        at = sorted(r.sample(range(10, max(11, self.nops)), min(self.nrestarts, max(1, self.nops - 10))))
        adv = {r.randrange(self.nops): f for f in (self.adv_keys, self.adv_numbers, self.adv_deep,
                                                     self.adv_amplify, self.adv_big, self.adv_hashflood)}
        self.srv.start()
        try:
            for i in range(self.nops):
                self.ops_done = i
                if i in adv:
                    print("trial %d: op %d: %s" % (self.n, i, adv[i].__name__), flush=True)
                    adv[i]()
                key = self.rkey()
                c = r.random()
                if c < 0.20:
                    self.op_put(key)
                elif c < 0.28:
                    self.op_binary(key)
                elif c < 0.40:
                    self.op_merge(key)
                elif c < 0.62:
                    self.op_jpatch(key)
                elif c < 0.82:
                    self.op_post(key)
                elif c < 0.90:
                    self.op_delete(key)
                else:
                    self.op_put_ifmatch(key)
                while at and at[0] == i:
                    at.pop(0)
                    self.event(r.choice(kinds))
            # every trial ends with a checkpoint and a restart from it
            self.event("checkpoint+sigterm")
            if self.durability == "fsync":
                self.event("sigkill")
            self.worker_deaths()
            self.srv.stop()
        except StartFailure as e:
            fail("start", "trial %d (%s): %s" % (self.n, self.durability, e))
        except Exception:  # a driver error must still end with the summary, and fail
            import traceback
            fail("driver-error", "trial %d op %d: %s" % (self.n, self.ops_done, traceback.format_exc()))
        finally:
            if self.srv.proc and self.srv.proc.poll() is None:
                self.srv.kill()
            self.srv.cleanup_shm()
            shutil.rmtree(self.base, ignore_errors=True)


def supports_max_document_bytes(maxdoc):
    base = tempfile.mkdtemp(prefix="l3kv-p1c-")
    try:
        cfg = {"storage": {"data_dir": os.path.join(base, "d"), "max_document_bytes": maxdoc}}
        p = os.path.join(base, "c.json")
        with open(p, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([BIN, "--check", p], capture_output=True, timeout=30)
        return r.returncode == 0, (r.stdout + r.stderr).decode("utf-8", "replace").strip()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main():
    if not BIN or not os.access(BIN, os.X_OK):
        print("SKIP: L3KV_BIN does not name the l3kv executable: %r" % BIN)
        return 77
    seed = os.environ.get("P1_SEED", "20261202")
    seed = random.SystemRandom().randrange(1, 2**32) if seed == "random" else int(seed, 0)
    trials = int(os.environ.get("P1_TRIALS", "1"))
    nops = int(os.environ.get("P1_OPS", "300"))
    nrestarts = int(os.environ.get("P1_RESTARTS", "3"))
    deep = int(os.environ.get("P1_DEEP", "5000"))
    print("p1: P1_SEED=%d P1_TRIALS=%d P1_OPS=%d P1_RESTARTS=%d P1_DEEP=%d" % (seed, trials, nops, nrestarts, deep),
          flush=True)
    maxdoc = 1 << 20
    ok, out = supports_max_document_bytes(maxdoc)
    if not ok:
        fail("max_document_bytes", "l3kv --check refuses storage.max_document_bytes: " + out[:300])
        maxdoc = 0
    t0 = time.time()
    total_ops, events = 0, collections.Counter()
    budget = float(os.environ.get("L3_SLOW_SECONDS") or 0)
    done = 0
    for n in range(trials):
        if budget > 0 and n > 0 and time.time() - t0 > budget:
            print("p1: L3_SLOW_SECONDS=%g spent after %d trials" % (budget, n))
            break
        done += 1
        rng = random.Random(seed * 1000003 + n)
        # the first trial nests as deep as asked, later ones stop at 5000 (each step costs a
        # request whose pointer is as long as the nesting)
        t = Trial(rng, n, "fsync" if n % 2 == 0 else "buffered", nops, nrestarts,
                  deep if n == 0 else min(deep, 5000), maxdoc)
        t.run()
        total_ops += t.ops_done + 1
        events.update(t.events)
    print("p1: %d trials, %d ops, events %s, %.1f s" % (done, total_ops, dict(events), time.time() - t0))
    print("p1: operations (accepted/refused): " + ", ".join(
        "%s %d/%d" % (op, opstats[(op, "accepted")], opstats[(op, "refused")])
        for op in sorted({op for op, _ in opstats})))
    if failures:
        print("p1: FAILED checks (count, first):")
        for check, cnt in sorted(failures.items()):
            print("  %-24s %5d  %s" % (check, cnt, first_failure[check][:400].replace("\n", " | ")))
        print("p1: reproduce with P1_SEED=%d" % seed)
        return 1
    print("p1: all checks passed")
    return 0


if __name__ == "__main__":
    sys.setrecursionlimit(1000000)
    threading.stack_size(512 << 20)
    res = []
    th = threading.Thread(target=lambda: res.append(main()))
    th.start()
    th.join()
    sys.exit(res[0] if res else 1)
