# SPDX-License-Identifier: MIT
"""Online backup (GET /admin/backup) and l3kv --restore on the real binary: a backup streamed
under a concurrent write load restores into a fresh directory with the same documents for
every key not written meanwhile, and every document valid; the inspector verifies the
file; a flipped byte or a cut file is refused by --restore (exit 2) and by the inspector;
a non-empty directory is refused without --force and replaced with it; data written after a
restore survives a restart. The scope (admin) is checked by test_auth.py's route matrix."""
import json
import os
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from conftest import BIN, Server

INSPECT = os.path.join(os.path.dirname(BIN), "..", "..", "tools", "l3kv-inspect", "l3kv-inspect")
# documents of ~2.7 KiB: a backup of more than 14 MiB, more than the loopback socket buffers
# (tcp_wmem + tcp_rmem maxima, about 10 MiB) and one piece hold, so the server is still
# producing it while the test waits for writes after the first piece
STABLE = 6000


def doc(i):
    return {"i": i, "name": "stable-%d" % i, "pad": "p%d" % i * (500 + i % 50), "list": [i, str(i), None]}


def fill(s, n):
    with requests.Session() as h:
        last = 0
        for i in range(n):
            r = h.put(s.url("/kv/stable-%d" % i), data=json.dumps(doc(i)), timeout=10)
            assert r.status_code in (200, 201), r.text
            last = int(r.headers["ETag"].strip('"W/'))
        return last


def fetch_all(s):
    out, cursor = {}, None
    with requests.Session() as h:
        for _ in range(10000):
            r = h.get(s.url("/kv/"), params={"limit": 1000, **({"cursor": cursor} if cursor else {})}, timeout=10)
            assert r.status_code == 200, r.text
            j = r.json()
            for k in j["keys"]:
                g = h.get(s.url("/kv/" + k), timeout=10)
                assert g.status_code == 200, g.text
                out[k] = g.json()  # every document parses as JSON
            cursor = j["cursor"]
            if cursor is None:
                return out
    raise AssertionError("listing did not end")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def restore_cfg(tmp, data_dir):
    path = os.path.join(tmp, "restore.json")
    with open(path, "w") as f:
        json.dump({"storage": {"data_dir": data_dir, "arena_bytes": 256 << 20}}, f)
    return path


def take_backup(s, path, during=None):
    """Stream the backup to path; `during` runs after the first piece, while the server is
    still producing the rest (the response is read with back-pressure)."""
    with requests.get(s.url("/admin/backup?rate_mib=0"), stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/octet-stream"
        lsn = int(r.headers["X-L3KV-Backup-LSN"])
        it = r.iter_content(65536)
        with open(path, "wb") as f:
            f.write(next(it))
            if during:
                during()
            for piece in it:
                f.write(piece)
    return lsn


def restored_server(tmp_dir, backup):
    """--restore backup into a fresh directory, then start a server on it."""
    base = tempfile.mkdtemp(prefix="l3kv-rs-", dir=tmp_dir)
    data = os.path.join(base, "data")
    p = run([BIN, "--restore", backup, restore_cfg(base, data)])
    assert p.returncode == 0, p.stderr
    return Server(workers=2, reuse_dir=base)


def test_backup_under_load_restores_identical(tmp_path):
    s = Server(workers=2)
    last_fill = fill(s, STABLE)
    stop, written, lock = threading.Event(), {}, threading.Lock()
    progress = threading.Semaphore(0)

    errors = []

    def writer(t):
        try:
            with requests.Session() as h:
                n = 0
                while not stop.is_set():
                    k = "live-%d-%d" % (t, n % 300)
                    r = h.put(s.url("/kv/" + k), data=json.dumps({"t": t, "n": n}), timeout=10)
                    assert r.status_code == 200, r.text
                    with lock:
                        written.setdefault(k, []).append(n)
                    n += 1
                    progress.release()
        except Exception as e:  # reported to the test's thread: an assert here would only warn
            errors.append("writer %d: %r" % (t, e))
            progress.release()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    backup = str(tmp_path / "b.snap")

    def during():  # 200 writes acknowledged while the backup is being streamed
        for _ in range(200):
            assert progress.acquire(timeout=60)

    try:
        lsn = take_backup(s, backup, during)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, (errors, s.logtext()[-3000:])
    assert s.metrics()["system"]["worker_restarts_total"] == 0, s.logtext()[-3000:]
    assert lsn >= last_fill and os.path.getsize(backup) > 14 << 20
    ins = run([INSPECT, "--json", "wal", backup])
    assert ins.returncode == 0, ins.stdout + ins.stderr
    head = json.loads(ins.stdout.splitlines()[0])
    assert head["snapshot"] is True and head["lsn"] == lsn
    original = {k: v for k, v in fetch_all(s).items() if k.startswith("stable-")}
    s.stop()
    r = restored_server(str(tmp_path), backup)
    try:
        got = fetch_all(r)
        stable = {k: v for k, v in got.items() if k.startswith("stable-")}
        assert stable == original and len(stable) == STABLE
        for k, v in got.items():
            if k.startswith("live-"):
                assert v["n"] in written[k], (k, v)  # a version that was really written
            else:
                assert k.startswith("stable-"), k
        # writes after the restore survive a restart (the restored directory's WAL counts)
        assert requests.put(r.url("/kv/after"), data='{"after":true}', timeout=10).status_code in (200, 201)
        assert requests.delete(r.url("/kv/stable-7"), timeout=10).status_code in (200, 204)
        r.stop(keep_dir=True)
        r2 = Server(workers=2, reuse_dir=r.dir)
        assert requests.get(r2.url("/kv/after"), timeout=10).json() == {"after": True}
        assert requests.get(r2.url("/kv/stable-7"), timeout=10).status_code == 404
        assert requests.get(r2.url("/kv/stable-8"), timeout=10).json() == doc(8)
        r2.stop()
    finally:
        if r.proc.poll() is None:
            r.stop(check=False)


@pytest.fixture(scope="module")
def small_backup(tmp_path_factory):
    s = Server(workers=1)
    fill(s, 300)
    path = str(tmp_path_factory.mktemp("bk") / "small.snap")
    take_backup(s, path)
    s.stop()
    return path


@pytest.mark.parametrize("where", ["header", "entry", "trailer", "truncated"])
def test_damaged_backup_refused(tmp_path, small_backup, where):
    data = bytearray(open(small_backup, "rb").read())
    if where == "header":
        data[33] ^= 0x01  # inside sn_lsn: the header CRC fails
    elif where == "entry":
        data[len(data) // 2] ^= 0x40
    elif where == "trailer":
        data[-12] ^= 0x01  # st_crc_all
    else:
        data = data[:len(data) - 100]
    bad = str(tmp_path / "bad.snap")
    with open(bad, "wb") as f:
        f.write(data)
    ins = run([INSPECT, "wal", bad])
    assert ins.returncode == 1, ins.stdout + ins.stderr
    target = str(tmp_path / "target")
    p = run([BIN, "--restore", bad, restore_cfg(str(tmp_path), target)])
    assert p.returncode == 2, p.stderr
    assert "not a valid backup" in p.stderr
    assert not os.path.exists(os.path.join(target, "l3kv.snap"))
    assert run([INSPECT, "wal", small_backup]).returncode == 0  # the intact one passes


def test_nonempty_directory_needs_force(tmp_path, small_backup):
    old = Server(workers=1)
    assert requests.put(old.url("/kv/old-only"), data='{"old":1}', timeout=10).status_code in (200, 201)
    old.stop(keep_dir=True)
    cfg = old.config_path
    p = run([BIN, "--restore", small_backup, cfg])
    assert p.returncode == 2 and "not empty" in p.stderr and "--force" in p.stderr, p.stderr
    p = run([BIN, "--force", cfg])
    assert p.returncode == 2, p.stderr  # --force alone is a usage error
    p = run([BIN, "--restore", small_backup, "--force", cfg])
    assert p.returncode == 0, p.stderr
    r = Server(workers=1, reuse_dir=old.dir)
    try:
        assert requests.get(r.url("/kv/old-only"), timeout=10).status_code == 404
        assert requests.get(r.url("/kv/stable-5"), timeout=10).json() == doc(5)
        assert len(fetch_all(r)) == 300
    finally:
        r.stop()


def test_backup_head_and_bad_method(srv):
    h = requests.head(srv.url("/admin/backup"), timeout=10)
    assert h.status_code == 200 and h.headers["X-L3KV-Backup-LSN"].isdigit() and h.content == b""
    p = requests.post(srv.url("/admin/backup"), timeout=10)
    assert p.status_code == 405 and p.json()["error"]


def test_backup_rate_limit(tmp_path, small_backup):
    s = Server(workers=1)
    try:
        fill(s, 2000)  # about 5 MiB
        for bad in ("x", "", "65537", "-1", "1.5"):
            r = requests.get(s.url("/admin/backup?rate_mib=" + bad), timeout=10)
            assert r.status_code == 400 and r.json()["error"] == "bad_value", (bad, r.text)
        r = requests.get(s.url("/admin/backup?rate_mib"), timeout=10)
        assert r.status_code == 400 and r.json()["error"] == "bad_value"
        t = time.monotonic()
        r = requests.get(s.url("/admin/backup?rate_mib=2"), timeout=60)
        dt = time.monotonic() - t
        assert r.status_code == 200
        # the throttle never lets the stream run ahead of 2 MiB/s (a lower bound only)
        assert dt >= (len(r.content) - (64 << 10)) / (2 << 20) * 0.95, (dt, len(r.content))
        path = str(tmp_path / "rated.snap")
        with open(path, "wb") as f:
            f.write(r.content)
        assert run([INSPECT, "wal", path]).returncode == 0
    finally:
        s.stop()
