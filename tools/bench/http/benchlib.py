# SPDX-License-Identifier: MIT
"""Shared helpers of the l3kv benchmark drivers (tools/bench/{http,durability,autoscale}).

Starts the real l3kv binary with a temporary configuration and data directory on a free
loopback port, drives load with wrk (Lua scripts for request bodies), parses wrk's
throughput and latency distribution, and stops or crashes the whole process tree.
Nothing here asserts timing: the drivers print figures, as ratios to a baseline measured
in the same run wherever there is one.

The drivers in other directories import it with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_bin(name):
    """An absolute path for a binary given as a path or as a name on PATH."""
    if "/" in name:
        return os.path.abspath(name)
    return shutil.which(name) or name


def http(method, url, body=None, ctype="application/json", timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def dir_usage(path):
    """(apparent bytes, allocated bytes, file count) of every regular file under path."""
    size = alloc = n = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:  # deleted while we walk (checkpoints remove segments)
                continue
            if not os.path.islink(os.path.join(root, f)):
                size += st.st_size
                alloc += st.st_blocks * 512
                n += 1
    return size, alloc, n


def wal_bytes(data_dir):
    """Bytes of the live WAL segments (data.wal.<seq>, not the symlink nor aside files)."""
    total = 0
    for p in glob.glob(os.path.join(data_dir, "data.wal.*")):
        if re.search(r"\.wal\.\d+$", p) and not os.path.islink(p):
            try:
                total += os.stat(p).st_size
            except OSError:
                pass
    return total


def cpu_ns(pids):
    """CPU time of the processes (every thread), ns."""
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def descendants(pid):
    """Every live process below pid (the l3kv roles run in their own process groups, so a
    killpg of the supervisor's group alone does not reach them)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


class Server:
    """One l3kv instance: temp dir (or a reused one), free port, stderr captured to a file."""

    def __init__(self, binary, config=None, workers=2, min_workers=None, max_workers=None,
                 reuse_dir=None, log_level="info", ready_timeout=60.0):
        self.binary = binary
        self.dir = reuse_dir or tempfile.mkdtemp(prefix="l3kv-bench-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        mn = min_workers if min_workers is not None else workers
        mx = max_workers if max_workers is not None else workers
        cfg = {"server": {"address": "127.0.0.1", "port": self.port, "min_workers": mn,
                          "max_workers": mx, "shutdown_timeout_ms": 5000},
               "storage": {"data_dir": self.data, "arena_bytes": 1 << 30},
               "log": {"level": log_level}}
        for sect, vals in (config or {}).items():
            cfg.setdefault(sect, {}).update(vals)
        self.config = cfg
        self.config_path = os.path.join(self.dir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        self.log_path = os.path.join(self.dir, "stderr.%d.log" % time.time_ns())
        self.log = open(self.log_path, "ab")
        self.base = "http://127.0.0.1:%d" % self.port
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen([binary, self.config_path], stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.dir, start_new_session=True)
        self.ready_s = self.wait_ready(ready_timeout)

    def url(self, path):
        return self.base + path

    def wait_ready(self, timeout):
        """Seconds from the start of the process until /kv/health answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("l3kv exited early (%s):\n%s" % (self.proc.returncode, self.logtext()[-3000:]))
            try:
                with urllib.request.urlopen(self.url("/kv/health"), timeout=1) as r:
                    r.read()
                    if r.status == 200:
                        return time.monotonic() - self.t_start
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.005)
        raise SystemExit("l3kv did not answer /kv/health within %.0f s:\n%s" % (timeout, self.logtext()[-3000:]))

    def metrics(self):
        return get_json(self.url("/metrics"))

    def logtext(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def recovered_ms(self):
        """(ms, records, segments) from the 'recovered in X ms' log line, or None."""
        m = re.search(r"recovered in ([\d.]+) ms: .*?(\d+) WAL records from (\d+) segments", self.logtext())
        return (float(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None

    def stop(self, timeout=60):
        """Graceful stop (SIGTERM; the WAL writer drains the ring). Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
        self.log.close()
        return self.proc.returncode

    def kill_all(self):
        """SIGKILL the supervisor, its process group and every descendant (a crash of the
        whole service), then remove the shared-memory arena a killed supervisor leaves."""
        if self.proc.poll() is None:
            pids = descendants(self.proc.pid)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.wait()
        if not self.log.closed:
            self.log.close()
        for name in ("l3kv-l3kv.%d" % self.proc.pid, "l3kv-pid-%d" % self.proc.pid):
            try:
                os.unlink(os.path.join("/dev/shm", name))
            except OSError:
                pass

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _secs(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    return float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")


def parse_wrk(out):
    """Figures of one wrk --latency run: rps, requests, p50/p75/p90/p99 (seconds), non2xx,
    socket errors (text or None)."""
    r = {"rps": 0.0, "requests": 0, "non2xx": 0, "errors": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors:.*", out)
    if m:
        r["errors"] = m.group(0)
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M)
        r["p" + pct] = _secs(m.group(1)) if m else float("nan")
    return r


def write_lua(tmp, text):
    path = os.path.join(tmp, "s%d.lua" % (abs(hash(text)) % 10**12))
    with open(path, "w") as f:
        f.write(text)
    return path


def wrk_cmd(url, duration, threads=2, conns=64, lua_path=None, timeout_s=None):
    args = ["wrk", "-t%d" % min(threads, conns), "-c%d" % conns, "-d%ds" % duration, "--latency"]
    if timeout_s:
        args += ["--timeout", "%ds" % timeout_s]
    if lua_path:
        args += ["-s", lua_path]
    return args + [url]


def wrk(url, duration, threads=2, conns=64, lua_path=None):
    """Run wrk to completion and return parse_wrk() of its output (plus 'out')."""
    p = subprocess.run(wrk_cmd(url, duration, threads, conns, lua_path), capture_output=True, text=True,
                       timeout=duration + 60)
    r = parse_wrk(p.stdout)
    r["out"] = p.stdout
    return r


# The start of a wrk script that numbers its threads: `tid` is 0, 1, ... in every thread.
LUA_THREAD_IDS = """local nthreads = 0
function setup(thread)
    thread:set("tid", nthreads)
    nthreads = nthreads + 1
end
"""


def lua_keyed(method, nkeys, body_bytes, prefix="k", seed=1, extra_get_pct=0, close=False):
    """A wrk script: `method` on /kv/<prefix><1..nkeys> chosen at random per request, JSON body
    of about body_bytes whose counter changes every request (so every PUT is a real update).
    extra_get_pct percent of the requests are GETs of the same keys instead. close: every
    request carries `Connection: close` (a new connection per request)."""
    pad = max(0, body_bytes - 40)
    conn = ', ["Connection"] = "close"' if close else ""
    return """-- generated by tools/bench/http/benchlib.py
""" + LUA_THREAD_IDS + """local n = 0
local pad = string.rep("x", %d)
local hdr = {["Content-Type"] = "application/json"%s}
local ghdr = {%s}
function init(args)
    math.randomseed(%d + 7919 * tid)
end
function request()
    n = n + 1
    local key = "/kv/%s" .. math.random(1, %d)
    if %d > 0 and math.random(1, 100) <= %d then
        return wrk.format("GET", key, ghdr)
    end
    return wrk.format("%s", key, hdr, '{"t":' .. tid .. ',"n":' .. n .. ',"pad":"' .. pad .. '"}')
end
""" % (pad, conn, conn.lstrip(", "), seed, prefix, nkeys, extra_get_pct, extra_get_pct, method)


def stop_procs(procs, timeout=20):
    """SIGTERM every process of procs (subprocess.Popen), then wait for each up to timeout
    seconds and SIGKILL one that is still there."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def fmt_s(x, micro="us"):
    """Seconds as a short latency string; `micro` names the microsecond."""
    if x != x:  # NaN
        return "n/a"
    if x < 1e-3:
        return "%.0f %s" % (x * 1e6, micro)
    if x < 1.0:
        return "%.2f ms" % (x * 1e3)
    return "%.2f s" % x


def fmt_bytes(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n
