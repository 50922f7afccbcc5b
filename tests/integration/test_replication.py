# SPDX-License-Identifier: MIT
"""Read replicas (docs/scale-out.md): real primary and replica processes over real HTTP.
A replica bootstraps from the primary's backup, follows its change feed, converges to
identical documents, refuses writes, resumes after SIGKILL without a full copy, bootstraps
again when the primary no longer retains its position, and is promoted to a primary."""
import json
import os
import random
import subprocess
import threading
import time

import requests

from conftest import BIN, Server, wait_until


def replica_of(primary, config=None, reuse_dir=None, workers=1):
    cfg = {"replication": {"primary": primary.base, "retry_ms": 100}}
    for k, v in (config or {}).items():
        cfg.setdefault(k, {}).update(v)
    return Server(config=cfg, workers=workers, reuse_dir=reuse_dir)


def stop_all(*servers):
    """Stop every server given and check that it exits 0 (one that died by itself fails the
    test); one killed on purpose (kill_all, which closes its log) or None is passed over."""
    for s in servers:
        if s is not None and not s.log.closed:
            s.stop()


def repl(s, headers=None):
    return requests.get(s.url("/metrics"), headers=headers, timeout=10).json()["replication"]


def all_docs(s, headers=None):
    """Every key and its document, listed page by page."""
    out, cursor = {}, None
    while True:
        q = "/kv/?limit=1000" + ("&cursor=" + cursor if cursor else "")
        r = requests.get(s.url(q), headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        page = r.json()
        for k in page["keys"]:
            d = requests.get(s.url("/kv/" + requests.utils.quote(k, safe="")), headers=headers, timeout=10)
            if d.status_code == 200:
                out[k] = d.json()
        cursor = page.get("cursor")
        if not cursor:
            return out


def converged(p, r, ph=None, rh=None):
    """The replica caught up (lag 0) and holds exactly the primary's documents."""
    def same():
        m = repl(r, rh)
        if m["state"] != "following" or m["lag_records"] != 0:
            return False
        return all_docs(p, ph) == all_docs(r, rh)
    wait_until(same, "the replica converging to the primary", timeout=60, interval=0.3)


def flood(p, keys, seconds, stop=None):
    """Writers: PUT, PATCH, set, incr and DELETE over keys for `seconds` (or until stop is set)."""
    end = time.time() + seconds

    def one(seed):
        rnd = random.Random(seed)
        with requests.Session() as ses:
            while time.time() < end and not (stop and stop.is_set()):
                k = p.url("/kv/" + rnd.choice(keys))
                op = rnd.random()
                if op < 0.5:
                    ses.put(k, data=json.dumps({"n": rnd.randint(0, 10**6), "t": "x" * rnd.randint(0, 200)}),
                            timeout=10)
                elif op < 0.65:
                    ses.patch(k, data='{"p":%d}' % rnd.randint(0, 99),
                              headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
                elif op < 0.8:
                    ses.post(k + "?op=incr&field=n", timeout=10)
                elif op < 0.9:
                    ses.post(k + "?op=set_int&field=n&val=%d" % rnd.randint(0, 99), timeout=10)
                else:
                    ses.delete(k, timeout=10)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    return ts


def test_replica_converges_under_a_write_flood():
    p = Server(workers=2)
    r = None
    try:
        keys = ["f-%d" % i for i in range(300)]
        for k in keys:
            requests.put(p.url("/kv/" + k), data='{"n":0}', timeout=10)
        ts = flood(p, keys, 4.0)
        time.sleep(1.0)
        r = replica_of(p)  # bootstraps while the flood runs
        lags = []
        while any(t.is_alive() for t in ts):
            lags.append(repl(r)["lag_records"])
            time.sleep(0.1)
        for t in ts:
            t.join()
        converged(p, r)
        m = repl(r)
        assert m["role"] == "replica" and m["primary"] == p.base and m["bootstraps_total"] == 1
        assert m["applied_total"] > 0 and m["lag_ms"] == 0
        # the replica serves the feed of its own log too
        c = requests.get(r.url("/changes?since=now&timeout=0"), timeout=10)
        assert c.status_code == 200 and "cursor" in c.json()
    finally:
        stop_all(r, p)


def test_replica_refuses_writes_and_serves_reads():
    p = Server(workers=1)
    r = None
    try:
        assert requests.put(p.url("/kv/ro-a"), data='{"v":1}', timeout=10).status_code == 200
        r = replica_of(p)
        wait_until(lambda: requests.get(r.url("/kv/ro-a"), timeout=10).status_code == 200, "the copy")
        k = r.url("/kv/ro-a")
        for resp in (requests.put(k, data='{"v":2}', timeout=10), requests.delete(k, timeout=10),
                     requests.post(k + "?op=incr&field=v", timeout=10),
                     requests.patch(k, data='{"v":3}', headers={"Content-Type": "application/merge-patch+json"},
                                    timeout=10),
                     requests.post(r.url("/batch"), data='{"ops":[{"op":"put","key":"ro-b","doc":{}}]}',
                                   timeout=10)):
            assert resp.status_code == 403, resp.text
            body = resp.json()
            assert body["error"] == "read_only" and p.base in body["detail"]
        # a batch that only reads is served
        b = requests.post(r.url("/batch"), data='{"ops":[{"op":"get","key":"ro-a"}]}', timeout=10)
        assert b.status_code == 200, b.text
        assert requests.get(k, timeout=10).json() == {"v": 1}
        assert requests.get(r.url("/kv/ro-b"), timeout=10).status_code == 404
        # the primary is not a replica: promote is refused there
        pr = requests.post(p.url("/admin/promote"), timeout=10)
        assert pr.status_code == 409 and pr.json()["error"] == "not_replica"
        assert repl(p) == {"role": "primary"}
    finally:
        stop_all(r, p)


def test_sigkill_replica_resumes_without_a_full_copy():
    p = Server(workers=2)
    r = None
    try:
        keys = ["k-%d" % i for i in range(200)]
        for k in keys:
            requests.put(p.url("/kv/" + k), data='{"n":0}', timeout=10)
        r = replica_of(p)
        wait_until(lambda: repl(r)["state"] == "following", "the replica following")
        stop = threading.Event()
        ts = flood(p, keys, 30.0, stop)
        time.sleep(1.5)
        d = r.dir
        r.kill_all()  # mid-stream
        time.sleep(1.0)  # the primary goes on writing while the replica is down
        r = replica_of(p, reuse_dir=d)
        time.sleep(1.0)
        stop.set()
        for t in ts:
            t.join()
        converged(p, r)
        assert repl(r)["bootstraps_total"] == 0, r.logtext()
        assert "resuming from its saved position" in r.logtext()
        # and a graceful restart resumes too
        r.stop(keep_dir=True)
        requests.put(p.url("/kv/after-stop"), data='{"x":1}', timeout=10)
        r = replica_of(p, reuse_dir=d)
        converged(p, r)
        assert repl(r)["bootstraps_total"] == 0
    finally:
        stop_all(r, p)


def test_expired_position_bootstraps_again():
    """A primary that no longer retains the replica's position (it crashed, so cursors of its
    previous run are 410): the replica copies it again, keys deleted meanwhile included."""
    p = Server(workers=1)
    r = None
    try:
        for i in range(50):
            requests.put(p.url("/kv/e-%d" % i), data='{"i":%d}' % i, timeout=10)
        r = replica_of(p)
        wait_until(lambda: repl(r)["state"] == "following" and repl(r)["lag_records"] == 0, "following")
        rd = r.dir
        r.stop(keep_dir=True)
        for i in range(10):
            requests.delete(p.url("/kv/e-%d" % i), timeout=10)
        requests.post(p.url("/admin/checkpoint"), timeout=10)
        wait_until(lambda: requests.get(p.url("/kv/e-0"), timeout=10).status_code == 404, "deleted")
        time.sleep(0.5)  # the writer has written the deletions
        pd, port = p.dir, p.port
        p.kill_all()
        p = Server(workers=1, reuse_dir=pd)
        r = replica_of(p, reuse_dir=rd)
        wait_until(lambda: repl(r)["bootstraps_total"] == 1, "a second bootstrap", timeout=30)
        converged(p, r)
        assert requests.get(r.url("/kv/e-0"), timeout=10).status_code == 404
        assert "no longer retains position" in r.logtext() or "belongs to another primary" in r.logtext()
    finally:
        stop_all(r, p)


def test_promote_after_the_primary_dies():
    p = Server(workers=1)
    r = None
    try:
        for i in range(100):
            requests.put(p.url("/kv/pm-%d" % i), data='{"i":%d}' % i, timeout=10)
        r = replica_of(p)
        converged(p, r)
        p.kill_all()
        pr = requests.post(r.url("/admin/promote"), timeout=10)
        assert pr.status_code == 200, pr.text
        assert repl(r)["role"] == "promoted"
        w = requests.put(r.url("/kv/pm-new"), data='{"after":true}', timeout=10)
        assert w.status_code == 200, w.text
        assert requests.post(r.url("/kv/pm-1?op=incr&field=i"), timeout=10).json()["value"] == 2
        assert requests.post(r.url("/admin/promote"), timeout=10).status_code == 409
        # a restart with the same configuration stays a primary
        d = r.dir
        r.stop(keep_dir=True)
        r = replica_of(p, reuse_dir=d)
        assert repl(r)["role"] == "promoted"
        assert requests.put(r.url("/kv/pm-new2"), data="{}", timeout=10).status_code == 200
        assert requests.get(r.url("/kv/pm-new"), timeout=10).json() == {"after": True}
    finally:
        stop_all(r, p)


def test_replica_with_a_replicate_token():
    """With access control on the primary, a token holding only `replicate` is enough."""
    import tempfile
    tok_p, tok_r = "p" * 32, "r" * 32
    auth = {"auth": {"tokens": [{"name": "admin", "token": tok_p, "scopes": ["read", "write", "monitor", "admin"]},
                                {"name": "replica", "token": tok_r, "scopes": ["replicate"]}],
                     "anonymous": ["health", "monitor"]}}
    p = Server(config=auth, workers=1)
    r = None
    h = {"Authorization": "Bearer " + tok_p}
    try:
        for i in range(20):
            assert requests.put(p.url("/kv/t-%d" % i), data="{}", headers=h, timeout=10).status_code == 200
        hr = {"Authorization": "Bearer " + tok_r}
        assert requests.put(p.url("/kv/t-x"), data="{}", headers=hr, timeout=10).status_code == 403
        assert requests.get(p.url("/admin/backup"), headers=hr, timeout=10).status_code == 200
        assert requests.post(p.url("/admin/checkpoint"), headers=hr, timeout=10).status_code == 403
        tf = tempfile.NamedTemporaryFile("w", delete=False)
        tf.write(tok_r + "\n")
        tf.close()
        r = replica_of(p, config={"replication": {"token_file": tf.name}})
        wait_until(lambda: repl(r)["state"] == "following", "following with the token")
        converged(p, r, ph=h)
        os.unlink(tf.name)
    finally:
        stop_all(r, p)


def test_bad_replication_config_is_refused(tmp_path):
    for primary in ("ftp://x:1", "http://", "http://h:1/path", "http://u@h:1", "localhost:8080"):
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"replication": {"primary": primary}}))
        res = subprocess.run([BIN, "--check", str(cfg)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 2, (primary, res.stdout, res.stderr)
        assert "replication.primary" in res.stderr


def test_replicated_durability_times_out_honestly_without_a_replica():
    p = Server(config={"storage": {"durability": "replicated", "replication_timeout_ms": 300}}, workers=1)
    try:
        t = time.monotonic()
        w = requests.put(p.url("/kv/lonely"), data='{"v":1}', timeout=10)
        assert w.status_code == 503 and w.json()["error"] == "replication_timeout", w.text
        assert time.monotonic() - t >= 0.25 and w.headers.get("Retry-After") == "1"
        # the outcome the error states: applied on this node, only not known to be on a replica
        assert requests.get(p.url("/kv/lonely"), timeout=10).json() == {"v": 1}
    finally:
        p.stop()


def test_replicated_durability_loses_no_acknowledged_write():
    """storage.durability "replicated": SIGKILL the primary at a random point of a write flood,
    promote the replica: every write the primary acknowledged is there (>= 20 trials)."""
    trials = int(os.environ.get("L3_REPL_TRIALS", "20"))
    rnd = random.Random(int(os.environ.get("L3_SEED", "7")))
    total = 0
    for trial in range(trials):
        p = Server(config={"storage": {"durability": "replicated", "replication_timeout_ms": 10000}}, workers=2)
        r = replica_of(p)
        try:
            wait_until(lambda: repl(r)["state"] == "following", "following")
            acked, lock, stop = {}, threading.Lock(), threading.Event()

            def writer(tid):
                n = 0
                with requests.Session() as ses:
                    while not stop.is_set():
                        n += 1
                        k = "t%d-%d-%d" % (trial, tid, n)
                        try:
                            resp = ses.put(p.url("/kv/" + k), data='{"n":%d}' % n, timeout=15)
                        except requests.RequestException:
                            return
                        if resp.status_code == 200:
                            with lock:
                                acked[k] = n

            ts = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
            for t in ts:
                t.start()
            time.sleep(rnd.uniform(0.2, 0.8))
            p.kill_all()
            stop.set()
            for t in ts:
                t.join()
            assert requests.post(r.url("/admin/promote"), timeout=10).status_code == 200
            with requests.Session() as ses:
                for k, n in acked.items():
                    g = ses.get(r.url("/kv/" + k), timeout=10)
                    assert g.status_code == 200 and g.json() == {"n": n}, (trial, k, g.status_code, g.text)
            total += len(acked)
        finally:
            stop_all(r, p)
    assert total > trials  # the trials did acknowledge writes


def test_damaged_state_file_means_a_new_copy():
    """replica.state is checked (magic, version, CRC): a damaged one is not trusted, the
    replica copies the primary again and converges."""
    p = Server(workers=1)
    r = None
    try:
        for i in range(30):
            requests.put(p.url("/kv/d-%d" % i), data='{"i":%d}' % i, timeout=10)
        r = replica_of(p)
        converged(p, r)
        d = r.dir
        r.stop(keep_dir=True)
        path = os.path.join(d, "data", "replica.state")
        with open(path, "r+b") as f:
            f.seek(30)
            b = f.read(1)
            f.seek(30)
            f.write(bytes([b[0] ^ 0x40]))
        requests.delete(p.url("/kv/d-0"), timeout=10)
        r = replica_of(p, reuse_dir=d)
        converged(p, r)
        assert repl(r)["bootstraps_total"] == 1
        assert "replica.state is damaged" in r.logtext()
        assert requests.get(r.url("/kv/d-0"), timeout=10).status_code == 404
    finally:
        stop_all(r, p)


def test_refused_by_the_primary_keeps_retrying(tmp_path):
    """A primary that refuses the replica's token: the replica stays up, says "connecting",
    logs the primary's answer and still refuses writes."""
    auth = {"auth": {"tokens": [{"name": "admin", "token": "a" * 32, "scopes": ["read", "write", "monitor", "admin"]}],
                     "anonymous": ["health", "monitor"]}}
    p = Server(config=auth, workers=1)
    r = None
    try:
        tf = tmp_path / "bad.token"
        tf.write_text("b" * 32 + "\n")
        r = replica_of(p, config={"replication": {"token_file": str(tf)}})
        wait_until(lambda: repl(r)["state"] == "connecting", "the replica reporting the refusal")
        assert "the primary answered 401" in r.logtext()
        assert requests.put(r.url("/kv/x"), data="{}", timeout=10).status_code == 403
        assert repl(r)["bootstraps_total"] == 0
    finally:
        stop_all(r, p)
