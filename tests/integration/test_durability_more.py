# SPDX-License-Identifier: MIT
"""Server-level durability beyond test_durability.py, all against the real l3kv binary over
HTTP: only the WAL writer has the WAL segments open (and it holds the io_uring instance);
the writer SIGKILLed alone under load is restarted and loses nothing; a torn tail and a
flipped bit are cut off at recovery, kept aside and reported; a full disk (small tmpfs)
refuses writes, keeps serving reads, loses nothing acknowledged and resumes when space
returns. The WAL formats the tests parse are drawn in docs/wal.md."""
import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import requests

from conftest import Server, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from l3proc import descendants  # noqa: E402

SEG_HDR = 64  # docs/wal.md 1.2


def fd_targets(pid):
    targets = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            targets.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass  # closed while we looked
    return targets


def segments(data_dir):
    """Live WAL segments (data.wal.<digits>), in sequence order."""
    names = [n for n in os.listdir(data_dir) if re.fullmatch(r"data\.wal\.\d{8,}", n)]
    return [os.path.join(data_dir, n) for n in sorted(names, key=lambda n: int(n.rsplit(".", 1)[1]))]


def records(path):
    """(offset, length, key) of every record of a segment, parsed independently of the
    server (docs/wal.md 1.1: wr_len at 0, wr_klen at 12, key at 32)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"L3KVWAL1", path
    out, off = [], SEG_HDR
    while off + 40 <= len(data):
        ln, = struct.unpack_from("<I", data, off)
        if ln < 40 or off + ln > len(data):
            break
        klen, = struct.unpack_from("<I", data, off + 12)
        out.append((off, ln, data[off + 32:off + 32 + klen].decode()))
        off += ln
    assert off == len(data), "%s: %d trailing bytes after the last record" % (path, len(data) - off)
    return out


def writer_pid(s):
    """The WAL writer's pid from /metrics; the writer publishes it once it runs, which can
    be a moment after the server answers its first request (start, or a restart)."""
    deadline = time.time() + 10
    pid = s.metrics()["wal"]["writer_pid"]
    while pid <= 0 and time.time() < deadline:
        time.sleep(0.05)
        pid = s.metrics()["wal"]["writer_pid"]
    assert pid > 0
    return pid


# --- 1. only the writer has the WAL open, and it holds an io_uring instance ----------------

def test_only_the_writer_has_the_wal_open():
    s = Server(workers=2)
    try:
        with requests.Session() as h:
            for i in range(20):
                assert h.put(s.url("/kv/o-%d" % i), data=json.dumps({"i": i})).status_code == 200
        data = os.path.realpath(os.path.join(s.dir, "data"))
        wpid = writer_pid(s)
        workers = set(s.worker_pids())
        assert len(workers) == 2
        procs = descendants(s.proc.pid)
        # the tree is the supervisor, 2 workers and the writer (a checkpointer only when one runs)
        assert set(procs) >= workers | {s.proc.pid, wpid}, (procs, workers, wpid)
        active = os.path.realpath(os.path.join(data, "data.wal"))
        assert re.fullmatch(r".*/data\.wal\.\d{8,}", active), active
        wal_holders, ring_holders = {}, []
        for p in procs:
            t = fd_targets(p)
            wal = [x for x in t if x.startswith(data + "/data.wal")]
            if wal:
                wal_holders[p] = wal
            if "anon_inode:[io_uring]" in t:
                ring_holders.append(p)
        assert list(wal_holders) == [wpid], wal_holders
        assert active in wal_holders[wpid], (active, wal_holders)
        assert wpid in ring_holders, ring_holders
        for p in workers | {s.proc.pid}:
            assert p not in ring_holders, "pid %d (not the writer) holds an io_uring" % p
    finally:
        s.stop()


# --- 2. the writer SIGKILLed alone under load ----------------------------------------------

@pytest.mark.parametrize("mode", ["buffered", "fsync"])
def test_writer_sigkilled_alone_under_load(mode):
    cfg = {"storage": {"durability": mode}}
    s = Server(config=cfg, workers=2)
    nthreads, nkeys = 4, 16
    acked = {}   # key -> last acknowledged n
    sent = {}    # key -> last n sent
    statuses, errors = {}, []
    lock = threading.Lock()
    stop = threading.Event()

    def client(t):
        n = 0
        with requests.Session() as h:
            while not stop.is_set():
                n += 1
                key = "w-%d-%d" % (t, n % nkeys)
                with lock:
                    sent[key] = n
                try:
                    r = h.put(s.url("/kv/" + key), data=json.dumps({"k": key, "n": n}), timeout=10)
                except requests.RequestException as e:
                    with lock:
                        errors.append(repr(e))
                    time.sleep(0.05)
                    continue
                with lock:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        acked[key] = n
                    elif r.status_code == 503 and r.json().get("error") == "overloaded":
                        pass  # the ring is full while the writer is down: a clean refusal
                    elif r.status_code == 503 and mode == "fsync" and r.json().get("error") == "durability_unknown":
                        pass
                    else:
                        errors.append("status %d %s" % (r.status_code, r.text[:100]))

    try:
        old = writer_pid(s)
        threads = [threading.Thread(target=client, args=(t,)) for t in range(nthreads)]
        for t in threads:
            t.start()
        wait_until(lambda: statuses.get(200, 0) > 20, "20 writes acknowledged before the kill")
        with lock:
            before = sum(statuses.values())
        os.kill(old, signal.SIGKILL)
        deadline = time.time() + 10
        new = old
        while time.time() < deadline:
            log = s.logtext()
            at = log.find("wal writer (pid %d) died" % old)
            m = re.search(r"wal writer started \(pid (\d+)\)", log[at:]) if at >= 0 else None
            if m:
                new = int(m.group(1))
                break
            time.sleep(0.05)
        assert new != old, s.logtext()
        with lock:
            acked_at_restart = statuses.get(200, 0)
        wait_until(lambda: statuses.get(200, 0) > acked_at_restart + 20,
                   "20 writes acknowledged by the restarted writer")
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        with lock:
            after = sum(statuses.values())
        assert before > 20 and after > before + 20, (before, after)  # load before and after the kill
        assert not errors, errors[:5]
        assert set(statuses) <= {200, 503}, statuses
        assert writer_pid(s) == new
        assert "wal writer (pid %d) died: signal 9" % old in s.logtext()
        # what the live server serves is exactly the model (last value acknowledged, or a
        # later one that was sent)
        served = {}
        with requests.Session() as h:
            for key in sent:
                r = h.get(s.url("/kv/" + key), timeout=5)
                assert r.status_code == 200 or key not in acked, (key, r.status_code)
                if r.status_code == 200:
                    doc = r.json()
                    assert doc["k"] == key and acked.get(key, 0) <= doc["n"] <= sent[key], (key, doc, acked.get(key))
                    served[key] = doc
        assert s.metrics()["wal"]["error"] == 0
    except BaseException:
        stop.set()
        s.stop(check=False)
        raise
    s.stop(keep_dir=True)
    s2 = Server(config=cfg, workers=2, reuse_dir=s.dir)
    try:
        with requests.Session() as h:
            bad = []
            for key, doc in served.items():
                r = h.get(s2.url("/kv/" + key), timeout=5)
                if r.status_code != 200 or r.json() != doc:
                    bad.append((key, doc, r.status_code, r.text[:80]))
            assert not bad, bad[:5]
            assert len(served) >= len(acked)
    finally:
        s2.stop()


# --- 3. torn tail and a flipped bit ----------------------------------------------------------

def _write_docs(s, prefix, n):
    docs = {}
    with requests.Session() as h:
        for i in range(n):
            key = "%s-%03d" % (prefix, i)
            docs[key] = {"k": key, "i": i, "pad": "p" * (50 + 7 * i)}
            assert h.put(s.url("/kv/" + key), data=json.dumps(docs[key])).status_code == 200
    return docs


def _check_after_damage(s, data_dir, kept, lost, seg, cut_off, seg_size, log_seg):
    log = s.logtext()
    with requests.Session() as h:
        for key, doc in kept.items():
            r = h.get(s.url("/kv/" + key), timeout=5)
            assert r.status_code == 200 and r.json() == doc, (key, r.status_code, r.text[:80])
        for key in lost:
            r = h.get(s.url("/kv/" + key), timeout=5)
            assert r.status_code == 404, (key, r.status_code, r.text[:80])
        listed = h.get(s.url("/kv/?limit=10000"), timeout=5).json()["keys"]
        assert sorted(listed) == sorted(kept), (len(listed), len(kept))
        # the server keeps serving writes after the recovery
        assert h.put(s.url("/kv/after"), data='{"x":1}', timeout=5).status_code == 200
    aside = glob.glob(seg + ".corrupt-*")
    assert len(aside) == 1, os.listdir(data_dir)
    assert os.path.getsize(aside[0]) == seg_size - cut_off, (aside, seg_size, cut_off)
    assert os.path.getsize(seg) == cut_off
    m = re.search(r"wal: log ended early in (\S+) at offset (\d+) \(([^)]*)\); discarded (\d+) bytes in (\d+) "
                  r"file\(s\), set aside \(first: (\S+)\)", log)
    assert m, log
    assert m.group(1) == log_seg and int(m.group(2)) == cut_off and m.group(6) == aside[0], (m.groups(), seg, cut_off)
    assert int(m.group(4)) >= seg_size - cut_off and int(m.group(5)) >= 1, m.groups()
    return aside


def test_torn_tail_is_cut_and_kept_aside():
    s = Server(workers=2)
    docs = _write_docs(s, "t", 60)
    s.stop(keep_dir=True)
    data = os.path.join(s.dir, "data")
    segs = segments(data)
    assert len(segs) == 1, segs
    recs = records(segs[0])
    assert [r[2] for r in recs] == sorted(docs), "one record per PUT, in request order"
    off, ln, last_key = recs[-1]
    size = os.path.getsize(segs[0])
    assert size == off + ln
    with open(segs[0], "r+b") as f:
        f.truncate(off + ln // 2)  # torn in the middle of the last record
    kept = {k: v for k, v in docs.items() if k != last_key}
    s2 = Server(workers=2, reuse_dir=s.dir)
    try:
        log_seg = re.search(r"log ended early in (\S+)", s2.logtext())
        assert log_seg, s2.logtext()
        assert os.path.realpath(log_seg.group(1)) == os.path.realpath(segs[0])
        _check_after_damage(s2, data, kept, [last_key], segs[0], off, off + ln // 2, log_seg.group(1))
        assert re.search(r" 59 WAL records from 1 segments", s2.logtext()), s2.logtext()
    except BaseException:
        s2.stop(check=False)
        raise
    s2.stop(keep_dir=True)
    # a second recovery finds a clean log and keeps the write made after the first one
    s3 = Server(workers=2, reuse_dir=s.dir)
    try:
        assert "log ended early" not in s3.logtext().split("l3kv 0.1.0 starting")[-1]
        assert len(glob.glob(segs[0] + ".corrupt-*")) == 1
        with requests.Session() as h:
            assert h.get(s3.url("/kv/after")).json() == {"x": 1}
            assert h.get(s3.url("/kv/" + sorted(kept)[-1])).json() == kept[sorted(kept)[-1]]
    finally:
        s3.stop()


def test_bit_flip_in_the_middle_ends_the_log_there():
    s = Server(workers=2)
    docs1 = _write_docs(s, "a", 60)
    s.stop(keep_dir=True)
    s = Server(workers=2, reuse_dir=s.dir)  # the second run writes into a new segment
    docs2 = _write_docs(s, "b", 20)
    s.stop(keep_dir=True)
    data = os.path.join(s.dir, "data")
    segs = segments(data)
    recs_by_seg = [(g, records(g)) for g in segs]
    recs_by_seg = [(g, r) for g, r in recs_by_seg if r]
    assert len(recs_by_seg) == 2, [(g, len(r)) for g, r in recs_by_seg]
    seg1, recs1 = recs_by_seg[0]
    seg2, recs2 = recs_by_seg[1]
    assert [r[2] for r in recs1] == sorted(docs1) and [r[2] for r in recs2] == sorted(docs2)
    size = os.path.getsize(seg1)
    mid = size // 2
    hit = [r for r in recs1 if r[0] <= mid < r[0] + r[1]][0]
    idx = recs1.index(hit)
    with open(seg1, "r+b") as f:
        f.seek(mid)
        b = f.read(1)
        f.seek(mid)
        f.write(bytes([b[0] ^ 0x10]))
    kept = {r[2]: docs1[r[2]] for r in recs1[:idx]}
    lost = [r[2] for r in recs1[idx:]] + [r[2] for r in recs2]
    assert 10 < len(kept) < 50
    s2 = Server(workers=2, reuse_dir=s.dir)
    try:
        log_seg = re.search(r"log ended early in (\S+)", s2.logtext())
        assert log_seg, s2.logtext()
        assert os.path.realpath(log_seg.group(1)) == os.path.realpath(seg1)
        _check_after_damage(s2, data, kept, lost, seg1, hit[0], size, log_seg.group(1))
        assert re.search(r" %d WAL records from" % idx, s2.logtext()), (idx, s2.logtext())
        # the later (valid-looking) segment is set aside whole, not replayed and not deleted
        aside2 = glob.glob(seg2 + ".corrupt-*")
        assert len(aside2) == 1 and not os.path.exists(seg2), os.listdir(data)
        assert os.path.getsize(aside2[0]) == recs2[-1][0] + recs2[-1][1]
    finally:
        s2.stop()


def _mount_tmpfs(base, mnt):
    """Mount an 8 MiB tmpfs on mnt, or skip the test (not root, no mount(8), no tmpfs)."""
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        why = r.stdout.decode(errors="replace").strip()
        ok = r.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as e:
        why, ok = repr(e), False
    if not ok:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("cannot mount a tmpfs: %s" % why)


def _stop_expect_0(s):
    s.proc.send_signal(signal.SIGTERM)
    s.proc.wait(timeout=60)
    log = s.logtext()
    s.log.close()
    assert s.proc.returncode == 0, log


# --- 5. disk full ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["buffered", "fsync"])
def test_disk_full_refuses_writes_and_resumes(mode):
    base = tempfile.mkdtemp(prefix="l3kv-full-")
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    _mount_tmpfs(base, mnt)
    s = s2 = None
    try:
        filler = os.path.join(mnt, "filler.bin")
        with open(filler, "wb") as f:
            f.write(b"\0" * (3 << 20))
        cfg = {"storage": {"durability": mode, "data_dir": os.path.join(mnt, "data"),
                           "wal_path": os.path.join(mnt, "data", "data.wal"),
                           "checkpoint_bytes": 1 << 30}}
        s = Server(config=cfg, workers=2, reuse_dir=base)
        acked, refused = {}, {}
        pad = "z" * (60 << 10)
        refusal = None
        with requests.Session() as h:
            for i in range(400):  # 400 x 60 KiB = 24 MiB: far more than the 5 MiB left
                key = "f-%03d" % i
                doc = {"k": key, "i": i, "pad": pad}
                r = h.put(s.url("/kv/" + key), data=json.dumps(doc), timeout=15)
                if r.status_code == 200:
                    acked[key] = doc
                    continue
                refused[key] = doc
                refusal = r
                break
            assert refusal is not None, "8 MiB filesystem took %d x 60 KiB" % len(acked)
            assert refusal.headers["Content-Type"].startswith("application/json")
            err = refusal.json()
            assert set(err) == {"error", "detail"}, err
            # the write that met the full disk: refused before it was applied (507 disk_full),
            # or, in fsync mode only, applied and then not made durable (503 durability_unknown)
            allowed = {(507, "disk_full")} | ({(503, "durability_unknown")} if mode == "fsync" else set())
            assert (refusal.status_code, err["error"]) in allowed, (refusal.status_code, refusal.text[:200])
            assert 40 <= len(acked) <= 130, len(acked)
            # the refusal persists while the disk stays full (not a one-off) ...
            deadline = time.time() + 5
            while time.time() < deadline and s.metrics()["wal"]["error"] == 0:
                time.sleep(0.05)
            assert s.metrics()["wal"]["error"] < 0, s.metrics()["wal"]
            r = h.put(s.url("/kv/f-again"), data=json.dumps({"k": "f-again"}), timeout=15)
            assert r.status_code == 507 and r.json()["error"] == "disk_full", (r.status_code, r.text[:200])
            refused["f-again"] = {"k": "f-again"}
            # ... and reads are still served, acknowledged values included
            for key in list(acked)[:: max(1, len(acked) // 10)] + [list(acked)[-1]]:
                r = h.get(s.url("/kv/" + key), timeout=5)
                assert r.status_code == 200 and r.json() == acked[key], key
            assert h.get(s.url("/kv/health"), timeout=5).status_code == 200
            # space returns: the writer retries and writes are accepted again
            os.unlink(filler)
            ok, deadline = None, time.time() + 15
            while time.time() < deadline:
                r = h.put(s.url("/kv/f-resumed"), data=json.dumps({"k": "f-resumed"}), timeout=15)
                if r.status_code == 200:
                    ok = r
                    break
                time.sleep(0.1)
            assert ok is not None, s.logtext()
            acked["f-resumed"] = {"k": "f-resumed"}
            for i in range(10):
                key = "g-%d" % i
                acked[key] = {"k": key, "i": i}
                assert h.put(s.url("/kv/" + key), data=json.dumps(acked[key]), timeout=15).status_code == 200
            assert s.metrics()["wal"]["error"] == 0
            # the writer's own events are lines of the server log, with a level
            log = s.logtext()
            stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z l3kv\[\d+\] "
            assert re.search(stamp + r"error: wal writer: .*data\.wal\.\d+: ", log, re.M), log[-2000:]
            assert re.search(stamp + r"info: wal writer: .*writes resumed$", log, re.M), log[-2000:]
            assert "l3kv-wal-writer:" not in log, log[-2000:]
        _stop_expect_0(s)
        s2 = Server(config=cfg, workers=2, reuse_dir=base)
        with requests.Session() as h:
            bad = [k for k, v in acked.items()
                   if (lambda r: r.status_code != 200 or r.json() != v)(h.get(s2.url("/kv/" + k), timeout=5))]
            assert not bad, (len(bad), bad[:5])
            for key, doc in refused.items():  # a refused write may have been applied, never half-applied
                r = h.get(s2.url("/kv/" + key), timeout=5)
                assert r.status_code == 404 or r.json() == doc, (key, r.status_code)
        _stop_expect_0(s2)
    finally:
        for x in (s, s2):
            if x is not None:
                if x.proc.poll() is None:
                    x.proc.kill()
                    x.proc.wait()
                x.log.close()
        subprocess.run(["umount", "-l", mnt], timeout=20)
        shutil.rmtree(base, ignore_errors=True)


def test_sigterm_while_disk_full_does_not_exit_0():
    """docs/wal.md 7: a graceful stop exits 0 only if the writer drained and synced. With the
    disk still full at SIGTERM (buffered mode) an acknowledged record cannot be written: the
    writer says so and fails, and the service must not report a clean stop."""
    base = tempfile.mkdtemp(prefix="l3kv-full-")
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    _mount_tmpfs(base, mnt)
    s = None
    try:
        cfg = {"storage": {"data_dir": os.path.join(mnt, "data"),
                           "wal_path": os.path.join(mnt, "data", "data.wal")}}
        s = Server(config=cfg, workers=2, reuse_dir=base)
        with requests.Session() as h:
            for i in range(400):
                r = h.put(s.url("/kv/f-%03d" % i), data=json.dumps({"pad": "z" * (60 << 10)}), timeout=15)
                if r.status_code != 200:
                    break
            assert r.status_code == 507 and r.json()["error"] == "disk_full", (r.status_code, r.text[:200])
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(timeout=60)
        log = s.logtext()
        assert "ring bytes not written" in log, log
        assert s.proc.returncode == 1, "exit %s although acknowledged records were not written:\n%s" % (s.proc.returncode, log)
    finally:
        if s is not None:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
            s.log.close()
        subprocess.run(["umount", "-l", mnt], timeout=20)
        shutil.rmtree(base, ignore_errors=True)


def test_checkpoint_on_demand_then_restart():
    """POST /admin/checkpoint makes the supervisor write a snapshot now (whatever the WAL
    size); the WAL segments it covers are dropped and a restart recovers from it."""
    s = Server(workers=2)
    docs = _write_docs(s, "cp", 30)
    data = os.path.join(s.dir, "data")
    snap = os.path.join(data, "l3kv.snap")
    assert not os.path.exists(snap)
    r = requests.post(s.url("/admin/checkpoint"), timeout=5)
    assert r.status_code == 202 and r.json()["ok"] is True, r.text
    assert requests.get(s.url("/admin/checkpoint"), timeout=5).status_code == 405
    deadline = time.time() + 20
    while time.time() < deadline and "checkpoint done" not in s.logtext():
        time.sleep(0.1)
    assert "checkpoint on demand" in s.logtext() and "checkpoint done" in s.logtext(), s.logtext()
    assert os.path.getsize(snap) > 0
    with requests.Session() as h:  # writes after the checkpoint land in the WAL on top of it
        assert h.put(s.url("/kv/after-cp"), data='{"late":true}').status_code == 200
    s.stop(keep_dir=True)
    s2 = Server(workers=2, reuse_dir=s.dir)
    try:
        assert "snapshot loaded (30 documents)" in s2.logtext(), s2.logtext()
        with requests.Session() as h:
            for key, doc in docs.items():
                assert h.get(s2.url("/kv/" + key)).json() == doc, key
            assert h.get(s2.url("/kv/after-cp")).json() == {"late": True}
    finally:
        s2.stop()


def _segments(data):
    return sorted(p for p in glob.glob(os.path.join(data, "data.wal.*")) if re.search(r"\.\d+$", p))


def _reserved_bytes(paths):
    """Bytes allocated on disk beyond each file's size (fallocate reservations)."""
    total = 0
    for p in paths:
        st = os.stat(p)
        total += max(0, st.st_blocks * 512 - ((st.st_size + 4095) // 4096) * 4096)
    return total


def test_restarts_keep_the_link_on_records_and_give_back_reservations():
    """After restarts (graceful and SIGKILL) data.wal still opens the segment holding the
    last records, and segments no writer is appending to hold no reserved blocks, so disk
    use cannot grow by a segment reservation per restart."""
    s = Server(workers=1)
    data = os.path.join(s.dir, "data")
    docs = {}
    try:
        with requests.Session() as h:
            for i in range(50):
                docs["r-%d" % i] = {"i": i, "pad": "p" * 200}
                assert h.put(s.url("/kv/r-%d" % i), data=json.dumps(docs["r-%d" % i])).status_code == 200
        _stop_expect_0(s)
        for rnd in range(4):
            s = Server(workers=1, reuse_dir=s.dir)
            if rnd % 2:
                s.kill_all()
            else:
                _stop_expect_0(s)
        segs = _segments(data)
        assert len(segs) >= 2, segs
        link = os.path.join(data, "data.wal")
        assert os.path.islink(link)
        target = os.path.join(data, os.readlink(link))
        assert os.path.getsize(target) > SEG_HDR + 50 * 200, (target, os.path.getsize(target))
        # SIGKILLed writers leave their reservation; the next writer gives it back
        s = Server(workers=1, reuse_dir=s.dir)
        live = _segments(data)
        active = max(live, key=lambda p: int(p.rsplit(".", 1)[1]))
        assert _reserved_bytes([p for p in live if p != active]) < (1 << 20), \
            [(p, os.stat(p).st_blocks * 512, os.stat(p).st_size) for p in live]
        with requests.Session() as h:
            for k, v in docs.items():
                assert h.get(s.url("/kv/" + k)).json() == v
        _stop_expect_0(s)
        assert _reserved_bytes(_segments(data)) < (1 << 20)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        shutil.rmtree(s.dir, ignore_errors=True)


def test_arena_of_a_killed_instance_is_removed_at_the_next_start():
    s = Server(workers=1)
    arena = "/dev/shm/l3kv-l3kv.%d" % s.proc.pid
    try:
        assert os.path.exists(arena)
        os.killpg(s.proc.pid, signal.SIGKILL)  # no cleanup by the test either
        s.proc.wait()
        s.log.close()
        assert os.path.exists(arena)
        s2 = Server(workers=1, reuse_dir=s.dir)
        assert not os.path.exists(arena)
        assert not os.path.exists("/dev/shm/l3kv-pid-%d" % s.proc.pid)
        assert re.search(r"removed \d+ shared-memory arena", s2.logtext()), s2.logtext()[-1000:]
        _stop_expect_0(s2)
        assert not os.path.exists("/dev/shm/l3kv-l3kv.%d" % s2.proc.pid)  # a clean stop removes its own
    finally:
        for p in (arena, "/dev/shm/l3kv-pid-%d" % s.proc.pid):
            try:
                os.unlink(p)
            except OSError:
                pass
        shutil.rmtree(s.dir, ignore_errors=True)
