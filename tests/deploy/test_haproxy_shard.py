# SPDX-License-Identifier: MIT
"""Sharding behind the real HAProxy (Debian 12 package) with the shipped configuration
etc/haproxy/l3kv.cfg rendered for loopback ports (docs/scale-out.md): keys spread over three
l3kv nodes, each key on exactly one of them and read back through HAProxy; SIGTERM of one
node affects only its keys (503 while HAProxy still sees it up, then they hash to the other
nodes, which do not hold them: 404), the other keys keep their owner and their document;
going from three nodes to four with tools/l3kv-reshard moves about a quarter of the keys and
loses none; a stray copy on another node than the owner is reported or made the owner's per
--conflict. L3KV_SHARD_KEYS sets the number of keys (default 10000)."""
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
import requests

import render_haproxy_cfg
from l3kv_deploy import SRC_ROOT, L3kv, free_port, l3kv_test_config, mkworkdir, stop_like_systemd

N_KEYS = int(os.environ.get("L3KV_SHARD_KEYS", "10000"))
RESHARD = os.path.join(SRC_ROOT, "tools", "l3kv-reshard", "l3kv-reshard")
NODE_HDR = "X-L3KV-Node"
POOL = 8


def haproxy_bin():
    env = os.environ.get("HAPROXY_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    for p in ("/usr/sbin/haproxy", "/usr/bin/haproxy"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("haproxy")


def path_of(key):
    return "/kv/" + urllib.parse.quote(key, safe="/")


def doc_of(key):
    return {"key": key, "n": len(key), "tags": ["shard", key[-1:]]}


def key_names(n):
    # a few keys outside ASCII, so the percent-encoded path is what is hashed and routed
    return ["user/%05d" % i if i % 97 else "grüße/%05d" % i for i in range(n)]


class Haproxy:
    """haproxy -db with the shipped configuration, bound to a free loopback port and
    pointed at nodes [(name, id, port)]. Waits until every server answered a request."""

    def __init__(self, exe, nodes, workdir, tag):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.cfg = os.path.join(workdir, "haproxy-%s.cfg" % tag)
        text = render_haproxy_cfg.render_file("127.0.0.1:%d" % self.port,
                                              [(n, i, "127.0.0.1:%d" % p) for n, i, p in nodes])
        with open(self.cfg, "w") as f:
            f.write(text)
        c = subprocess.run([exe, "-c", "-f", self.cfg], capture_output=True, timeout=30)
        assert c.returncode == 0, c.stdout + c.stderr
        self.log_path = os.path.join(workdir, "haproxy-%s.log" % tag)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([exe, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        names = {n for n, _, _ in nodes}
        deadline = time.monotonic() + 30
        seen = set()
        while seen != names:
            assert self.proc.poll() is None, "haproxy exited: %s" % self.logtext()
            assert time.monotonic() < deadline, "servers seen %s of %s" % (seen, names)
            for i in range(64):
                try:
                    r = requests.head(self.base + path_of("probe/%d" % i), timeout=2)
                    seen.add(r.headers.get(NODE_HDR))
                except requests.RequestException:
                    pass
            seen.discard(None)
            time.sleep(0.05)

    def logtext(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def stop(self):
        stop_like_systemd(self.proc, timeout_s=10)
        self.log.close()


class Pool:
    """Keep-alive sessions, one per thread, and a thread pool running a function per key."""

    def __init__(self):
        self.local = threading.local()
        self.ex = concurrent.futures.ThreadPoolExecutor(POOL)

    def s(self):
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
        return self.local.s

    def map(self, fn, keys):
        return dict(zip(keys, self.ex.map(fn, keys)))


class Cluster:
    def __init__(self, workdir):
        self.dir = workdir
        self.nodes = {}   # name -> L3kv
        self.cfgs = {}
        self.ids = {}
        self.proxies = []

    def start_node(self, name, ident):
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        if name not in self.cfgs:
            cfg = l3kv_test_config(d, min_workers=1, max_workers=1)
            cfg["storage"]["arena_bytes"] = 128 << 20
            self.cfgs[name] = cfg
            self.ids[name] = ident
        self.nodes[name] = L3kv(self.cfgs[name], d)

    def spec(self, names):
        return [(n, self.ids[n], self.cfgs[n]["server"]["port"]) for n in names]

    def listing(self, name):
        base, keys, cursor = self.nodes[name].base, [], None
        while True:
            params = {"prefix": "", "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            r = requests.get(base + "/kv/", params=params, timeout=10)
            assert r.status_code == 200, r.text
            keys += r.json()["keys"]
            cursor = r.json()["cursor"]
            if not cursor:
                return keys

    def stop(self):
        for p in self.proxies:
            p.stop()
        for n in self.nodes.values():
            if n.proc.poll() is None:
                n.stop()


@pytest.fixture(scope="module")
def env():
    exe = haproxy_bin()
    if not exe:
        pytest.skip("haproxy is not installed (Debian package haproxy, tools/deps-debian.sh --all)")
    wd = mkworkdir("l3kv-shard-")
    c = Cluster(wd)
    try:
        for i, n in enumerate(("node1", "node2", "node3"), 1):
            c.start_node(n, i)
        c.exe = exe
        c.keys = key_names(N_KEYS)
        c.pool = Pool()
        yield c
    finally:
        c.stop()
    shutil.rmtree(wd, ignore_errors=True)


def read_all(pool, base, keys):
    def get(k):
        r = pool.s().get(base + path_of(k), timeout=10)
        return r.status_code, r.headers.get(NODE_HDR), (r.json() if r.status_code == 200 else None)
    return pool.map(get, keys)


def test_spread_and_read_back(env):
    hp = Haproxy(env.exe, env.spec(["node1", "node2", "node3"]), env.dir, "three")
    env.proxies.append(hp)
    env.hp3 = hp

    def put(k):
        r = env.pool.s().put(hp.base + path_of(k), data=json.dumps(doc_of(k)),
                             headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 200, (k, r.status_code, r.text)
        return r.headers.get(NODE_HDR)

    env.owner = env.pool.map(put, env.keys)
    per = {n: sum(1 for o in env.owner.values() if o == n) for n in ("node1", "node2", "node3")}
    third = N_KEYS / 3
    for n, cnt in per.items():
        assert 0.8 * third <= cnt <= 1.2 * third, per
    # each node holds exactly the keys HAProxy sent to it, and no key is on two nodes
    for n in per:
        held = env.listing(n)
        assert sorted(held) == sorted(k for k, o in env.owner.items() if o == n), n
    got = read_all(env.pool, hp.base, env.keys)
    for k in env.keys:
        assert got[k] == (200, env.owner[k], doc_of(k)), k


def test_node_death_affects_only_its_keys(env):
    hp = env.hp3
    dead = "node2"
    mine = [k for k in env.keys if env.owner[k] == dead]
    others = [k for k in env.keys if env.owner[k] != dead]
    rc = env.nodes[dead].stop()
    assert rc[0] == 0, rc
    # HAProxy marks the node down after two failed health checks (inter 1s, fall 2): until
    # then its keys answer 503; afterwards they hash to the remaining nodes, which lack them
    deadline = time.monotonic() + 30
    while True:
        r = requests.get(hp.base + path_of(mine[0]), timeout=10)
        if r.status_code == 404:
            break
        assert r.status_code == 503, (r.status_code, r.text)
        assert time.monotonic() < deadline, "haproxy never marked %s down" % dead
        time.sleep(0.1)
    got = read_all(env.pool, hp.base, env.keys)
    for k in others:
        assert got[k] == (200, env.owner[k], doc_of(k)), k
    for k in mine:
        st, node, _ = got[k]
        assert st == 404 and node not in (None, dead), (k, got[k])
    # the node comes back with its data: after two good checks its keys are its own again
    env.start_node(dead, env.ids[dead])
    deadline = time.monotonic() + 30
    while requests.get(hp.base + path_of(mine[0]), timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "haproxy never marked %s up again" % dead
        time.sleep(0.1)
    got = read_all(env.pool, hp.base, env.keys)
    for k in env.keys:
        assert got[k] == (200, env.owner[k], doc_of(k)), k


def test_reshard_three_to_four(env):
    env.start_node("node4", 4)
    hp4 = Haproxy(env.exe, env.spec(["node1", "node2", "node3", "node4"]), env.dir, "four")
    env.proxies.append(hp4)
    argv = [sys.executable, RESHARD, "--router", hp4.base, "--concurrency", str(POOL)]
    for n in ("node1", "node2", "node3", "node4"):
        argv += ["--node", "%s=%s" % (n, env.nodes[n].base)]
    dry = subprocess.run(argv + ["--dry-run"], capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["scanned"] == N_KEYS and planned["moved"] == 0, planned
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    stats = json.loads(run.stdout)
    assert stats["failed"] == 0 and stats["changed"] == 0 and stats["conflicts"] == 0, stats
    assert stats["moved"] == stats["misplaced"] == planned["misplaced"], (stats, planned)
    assert 0.15 * N_KEYS <= stats["moved"] <= 0.35 * N_KEYS, stats
    # nothing lost: every key reads back through the four-node HAProxy, from its one node
    got = read_all(env.pool, hp4.base, env.keys)
    for k in env.keys:
        assert got[k][0] == 200 and got[k][2] == doc_of(k), (k, got[k])
    new_owner = {k: got[k][1] for k in env.keys}
    moved = [k for k in env.keys if new_owner[k] != env.owner[k]]
    assert len(moved) == stats["moved"]
    assert all(new_owner[k] == "node4" for k in moved), "a key moved between old nodes"
    held = {}
    for n in ("node1", "node2", "node3", "node4"):
        for k in env.listing(n):
            assert k not in held, "%s on %s and %s" % (k, held[k], n)
            held[k] = n
    assert held == new_owner
    # a second run finds nothing left to move
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["misplaced"] == 0, again.stdout


def test_reshard_conflicts(env):
    """A key held by its owner and, as a stray copy, by another node (a write made while the
    owner was off the ring): --conflict report changes nothing and exits 1, keep-source makes
    the stray copy the owner's and removes it from the other node."""
    hp4 = env.proxies[-1]
    key = next(k for k in ("stray/%d" % i for i in range(200))
               if requests.head(hp4.base + path_of(k), timeout=10).headers.get(NODE_HDR) == "node4")
    url4, url1 = env.nodes["node4"].base + path_of(key), env.nodes["node1"].base + path_of(key)
    assert requests.put(url4, json={"v": "owner"}, timeout=10).status_code == 200
    assert requests.put(url1, json={"v": "stray"}, timeout=10).status_code == 200
    argv = [sys.executable, RESHARD, "--router", hp4.base, "--prefix", "stray/"]
    for n in ("node1", "node2", "node3", "node4"):
        argv += ["--node", "%s=%s" % (n, env.nodes[n].base)]
    rep = subprocess.run(argv + ["--conflict", "report"], capture_output=True, text=True, timeout=60)
    assert rep.returncode == 1, rep.stdout + rep.stderr
    stats = json.loads(rep.stdout)
    assert stats["scanned"] == 2 and stats["conflicts"] == 1 and stats["moved"] == 0, stats
    assert requests.get(url4, timeout=10).json() == {"v": "owner"}
    assert requests.get(url1, timeout=10).json() == {"v": "stray"}
    src = subprocess.run(argv + ["--conflict", "keep-source"], capture_output=True, text=True, timeout=60)
    assert src.returncode == 0, src.stdout + src.stderr
    assert json.loads(src.stdout)["moved"] == 1, src.stdout
    assert requests.get(url4, timeout=10).json() == {"v": "stray"}
    assert requests.get(url1, timeout=10).status_code == 404
    assert requests.get(hp4.base + path_of(key), timeout=10).json() == {"v": "stray"}
