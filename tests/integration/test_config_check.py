# SPDX-License-Identifier: MIT
"""`l3kv --check` and a normal start validate the configuration the same way: every
setting a subsystem would refuse at start-up (the autoscaler's parameter validator, the WAL
ring's minimum size, the arena's room for the ring) is rejected up front with exit code 2
and a message naming the key as written in config.json; a configuration that passes the
check starts."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from conftest import BIN, Server, free_port

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def ring_min_bytes():
    """L3_WAL_RING_MIN_BYTES as written in include/l3kv/wal.h (a sum of literals)."""
    with open(os.path.join(ROOT, "include", "l3kv", "wal.h")) as f:
        m = re.search(r"#define\s+L3_WAL_RING_MIN_BYTES\s+\(([0-9u+\s]+)\)", f.read())
    assert m, "L3_WAL_RING_MIN_BYTES not found in wal.h"
    return sum(int(t.strip().rstrip("u")) for t in m.group(1).split("+"))


RING_MIN = ring_min_bytes()


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="l3kv-cfg-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def base_config(d):
    """A configuration that starts: loopback, a free port, a private data directory."""
    return {
        "server": {"address": "127.0.0.1", "port": free_port(), "min_workers": 1, "max_workers": 2,
                   "shutdown_timeout_ms": 3000},
        "storage": {"data_dir": os.path.join(d, "data"), "arena_bytes": 256 << 20},
    }


def merged(d, overrides):
    cfg = base_config(d)
    for sect, vals in overrides.items():
        cfg.setdefault(sect, {}).update(vals)
    return cfg


def write(d, cfg, name="config.json"):
    p = os.path.join(d, name)
    with open(p, "w") as f:
        json.dump(cfg, f) if not isinstance(cfg, str) else f.write(cfg)
    return p


def check(path, cwd=None):
    if not BIN or not os.path.exists(BIN):
        pytest.fail("L3KV_BIN does not name the l3kv executable: %r" % BIN)
    return subprocess.run([BIN, "--check", path], capture_output=True, timeout=10, cwd=cwd)


def start_expecting_failure(path, cwd):
    """Start the server for real; a configuration error must end it before it serves."""
    p = subprocess.Popen([BIN, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)  # a clean stop also removes the arena
        try:
            p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        pytest.fail("l3kv started with a configuration it should have refused")
    return p.returncode, err


# (overrides, the key the message must name, keys it must not name)
BAD = [
    ({"autoscale": {"measurement_noise": 0}}, "autoscale.measurement_noise", ["autoscale.r "]),
    ({"autoscale": {"measurement_noise": -1.5}}, "autoscale.measurement_noise", ["autoscale.r "]),
    ({"autoscale": {"worker_capacity": 0}}, "autoscale.worker_capacity", ["autoscale.capacity"]),
    ({"autoscale": {"down_fill": 0}}, "autoscale.down_fill", []),
    ({"autoscale": {"down_fill": 1.01}}, "autoscale.down_fill", []),
    ({"autoscale": {"interval_ms": 60001}}, "autoscale.interval_ms", []),
    ({"autoscale": {"interval_ms": 70000}}, "autoscale.interval_ms", []),
    ({"autoscale": {"horizon_ms": 60001}}, "autoscale.horizon_ms", []),
    ({"autoscale": {"margin": 10.5}}, "autoscale.margin", []),
    ({"autoscale": {"process_noise": -1}}, "autoscale.process_noise", ["q_depth"]),
    ({"autoscale": {"rate_noise": -1}}, "autoscale.rate_noise", ["q_rate"]),
    ({"autoscale": {"cooldown_ms": 3600001}}, "autoscale.cooldown_ms", []),
    ({"autoscale": {"max_step_up": 0}}, "autoscale.max_step_up", []),
    ({"storage": {"wal_buffer_bytes": 65536}}, "storage.wal_buffer_bytes", []),
    ({"storage": {"wal_buffer_bytes": RING_MIN - 1}}, "storage.wal_buffer_bytes", []),
    # the ring does not fit in the arena, or leaves no room for the rest
    ({"storage": {"arena_bytes": 256 << 20, "wal_buffer_bytes": 512 << 20}}, "storage.wal_buffer_bytes", []),
    ({"storage": {"arena_bytes": 256 << 20, "wal_buffer_bytes": 256 << 20}}, "storage.wal_buffer_bytes", []),
    ({"storage": {"arena_bytes": 1 << 20}}, "storage.arena_bytes", []),
    ({"storage": {"data_dir": ""}}, "storage.data_dir", []),
    ({"storage": {"wal_path": "/tmp/" + "x" * 4090}}, "storage.wal_path", []),
    ({"log": {"file": ""}}, "log.file", []),
    ({"storage": {"lock_timeout_ms": 0}}, "storage.lock_timeout_ms", []),
    ({"storage": {"lock_timeout_ms": 3600001}}, "storage.lock_timeout_ms", []),
    # cross-field errors name the aliases the user wrote
    ({"server": {"min_workers": 3, "max_workers": 2}}, "server.min_workers", ["min_threads", "max_threads"]),
    ({"server": {"min_workers": 3, "max_workers": 2}}, "server.max_workers", ["min_threads", "max_threads"]),
]


def ids(case):
    return json.dumps(case[0], separators=(",", ":"))[:60]


@pytest.mark.parametrize("overrides,key,not_named", BAD, ids=[ids(c) for c in BAD])
def test_check_rejects_with_exit_2_naming_the_key(tmp, overrides, key, not_named):
    cfg = merged(tmp, overrides)
    r = check(write(tmp, cfg), cwd=tmp)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.decode()
    assert "'%s'" % key in err, err
    for other in not_named:
        assert other not in err, err
    assert b"configuration is valid" not in r.stdout


# An empty data_dir would put the WAL in "/" if it were not refused: not started for real.
START = [c for c in BAD if c[0].get("storage", {}).get("data_dir") != ""]


@pytest.mark.parametrize("overrides,key,not_named", START, ids=[ids(c) for c in START])
def test_start_refuses_with_exit_2_naming_the_key(tmp, overrides, key, not_named):
    """The start runs the same check: exit 2, the user's key, nothing created on disk."""
    cfg = merged(tmp, overrides)
    rc, err = start_expecting_failure(write(tmp, cfg), tmp)
    err = err.decode()
    assert rc == 2, (rc, err)
    assert "'%s'" % key in err, err
    for other in not_named:
        assert other not in err, err
    assert not os.path.exists(os.path.join(tmp, "data")), "the data directory was created"


def test_start_refuses_measurement_noise_zero_under_its_own_name(tmp):
    """The audit's case: the start used to fail with exit 1 naming 'autoscale.r'."""
    rc, err = start_expecting_failure(write(tmp, merged(tmp, {"autoscale": {"measurement_noise": 0}})), tmp)
    assert rc == 2, err
    assert b"'autoscale.measurement_noise' must be > 0" in err, err
    assert b"autoscale.r " not in err


def test_alias_named_as_written(tmp):
    cfg = merged(tmp, {})
    cfg["server"] = {"address": "127.0.0.1", "port": 0, "min_threads": 5, "max_threads": 3}
    r = check(write(tmp, cfg), cwd=tmp)
    assert r.returncode == 2
    assert b"'server.min_threads'" in r.stderr and b"'server.max_threads'" in r.stderr, r.stderr
    assert b"min_workers" not in r.stderr


def test_shipped_and_empty_configs_pass(tmp):
    r = check(os.path.join(ROOT, "etc", "config.json"))
    assert r.returncode == 0, r.stderr
    assert b"configuration is valid" in r.stdout
    r = check(write(tmp, "{}"), cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert b"configuration is valid" in r.stdout


def test_wal_buffer_minimum_is_the_ring_minimum(tmp):
    r = check(write(tmp, merged(tmp, {"storage": {"wal_buffer_bytes": RING_MIN}})), cwd=tmp)
    assert r.returncode == 0, r.stderr
    r = check(write(tmp, merged(tmp, {"storage": {"wal_buffer_bytes": RING_MIN - 1}})), cwd=tmp)
    assert r.returncode == 2 and str(RING_MIN).encode() in r.stderr, r.stderr


def test_smallest_ring_starts(tmp):
    s = Server(config={"storage": {"wal_buffer_bytes": RING_MIN}}, workers=1)
    try:
        m = s.metrics()
        assert m["system"]["thread_count"] == 1
    finally:
        s.stop()


def test_arena_minimum_stated_by_check_is_enough_to_start(tmp):
    """--check states the smallest arena for a ring; exactly that starts, a page less is refused."""
    ring = 64 << 20
    cfg = merged(tmp, {"storage": {"arena_bytes": ring, "wal_buffer_bytes": ring}})
    cfg["server"]["max_workers"] = 2
    r = check(write(tmp, cfg), cwd=tmp)
    assert r.returncode == 2, r.stderr
    m = re.search(rb"at least (\d+) bytes", r.stderr)
    assert m, r.stderr
    need = int(m.group(1))
    assert ring + (1 << 20) < need < ring + (64 << 20), need  # ring + 1 MiB heap + the fixed regions
    assert need % 4096 == 0
    cfg["storage"]["arena_bytes"] = need - 4096
    r = check(write(tmp, cfg), cwd=tmp)
    assert r.returncode == 2 and b"'storage.arena_bytes'" in r.stderr, r.stderr
    cfg["storage"]["arena_bytes"] = need
    assert check(write(tmp, cfg), cwd=tmp).returncode == 0
    s = Server(config={"storage": {"arena_bytes": need, "wal_buffer_bytes": ring}}, workers=2)
    try:
        assert s.metrics()["system"]["thread_count"] == 2
    finally:
        s.stop()


# The edges of every autoscale range the configuration accepts, and what the autoscaler's
# own validator (src/scale/policy.c) allows there: interval 1..60000 ms, horizon 0..60000 ms,
# noises >= 0 (r > 0), capacity > 0, down_fill in (0, 1], margin 0..10, cooldown
# 0..3600000 ms, max_step_up >= 1. A start with min < max workers runs the validator.
EDGES = [
    {"interval_ms": 60000, "horizon_ms": 60000, "process_noise": 1e12, "rate_noise": 1e12,
     "measurement_noise": 1e12, "worker_capacity": 1e12, "down_fill": 1, "margin": 10,
     "cooldown_ms": 3600000, "max_step_up": 64},
    {"interval_ms": 10, "horizon_ms": 0, "process_noise": 0, "rate_noise": 0,
     "measurement_noise": 1e-9, "worker_capacity": 1e-9, "down_fill": 1e-9, "margin": 0,
     "cooldown_ms": 0, "max_step_up": 1},
]


@pytest.mark.parametrize("edge", EDGES, ids=["upper", "lower"])
def test_autoscale_range_edges_pass_check_and_start(tmp, edge):
    cfg = merged(tmp, {"autoscale": dict(edge, enabled=True)})
    r = check(write(tmp, cfg), cwd=tmp)
    assert r.returncode == 0, r.stderr
    s = Server(config={"autoscale": dict(edge, enabled=True), "server": {"max_workers": 2}}, workers=1)
    try:
        a = s.metrics()["autoscale"]
        assert a["enabled"] is True, a
        assert a["interval_ms"] == edge["interval_ms"] and a["horizon_ms"] == edge["horizon_ms"]
    finally:
        s.stop()
