# SPDX-License-Identifier: MIT
"""Files of the data directory: private whatever the umask (directory 0700; WAL segments,
snapshots, their .tmp and set-aside files 0600), and a data directory that group or others
may write to is refused (exit 2) before anything is read or written."""
import glob
import json
import os
import stat
import subprocess
import time

import requests

from conftest import BIN, Server, free_port


def _umask0():
    os.umask(0)


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _wait_log(s, text, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline and text not in s.logtext():
        time.sleep(0.1)
    assert text in s.logtext(), s.logtext()


def test_files_are_private_with_umask_000():
    s = Server(workers=1, preexec_fn=_umask0)
    data = os.path.join(s.dir, "data")
    try:
        with requests.Session() as h:
            for i in range(60):
                r = h.put(s.url("/kv/f-%d" % i), data=json.dumps({"i": i, "pad": "x" * 2000}))
                assert r.status_code == 200, r.text
            assert h.post(s.url("/admin/checkpoint")).status_code == 202
            _wait_log(s, "checkpoint done")
            assert h.put(s.url("/kv/after"), data="{}").status_code == 200
    finally:
        s.stop(keep_dir=True)
    # a torn tail set aside at the next start
    segs = sorted(glob.glob(os.path.join(data, "data.wal.[0-9]*")))
    assert segs, os.listdir(data)
    with open(segs[-1], "ab") as f:
        f.write(b"\x48\x00\x00\x00garbage-that-is-not-a-record" + b"\x01" * 100)
    s2 = Server(workers=1, preexec_fn=_umask0, reuse_dir=s.dir)
    try:
        assert requests.get(s2.url("/kv/f-3")).json()["i"] == 3
    finally:
        s2.stop(keep_dir=True)
    assert _mode(data) == 0o700, oct(_mode(data))
    names = os.listdir(data)
    assert any(".corrupt-" in n for n in names), names
    assert "l3kv.snap" in names, names
    for n in names:
        p = os.path.join(data, n)
        if os.path.islink(p):
            continue
        assert _mode(p) == 0o600, (n, oct(_mode(p)))


def test_snapshot_tmp_is_not_followed():
    """A symlink planted at the snapshot's .tmp name is not written through."""
    s = Server(workers=1, preexec_fn=_umask0)
    data = os.path.join(s.dir, "data")
    victim = os.path.join(s.dir, "victim")
    with open(victim, "w") as f:
        f.write("precious")
    os.symlink(victim, os.path.join(data, "l3kv.snap.tmp"))
    try:
        assert requests.put(s.url("/kv/a"), data="{}").status_code == 200
        assert requests.post(s.url("/admin/checkpoint")).status_code == 202
        _wait_log(s, "checkpoint")
        deadline = time.time() + 30
        while time.time() < deadline and not os.path.exists(os.path.join(data, "l3kv.snap")):
            time.sleep(0.1)
    finally:
        s.stop(keep_dir=True)
    with open(victim) as f:
        assert f.read() == "precious"


def test_data_dir_writable_by_others_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o777)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"server": {"address": "127.0.0.1", "port": free_port()},
                               "storage": {"data_dir": str(data)}}))
    p = subprocess.run([BIN, str(cfg)], capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 2, out
    assert "data_dir" in out and "writable" in out, out
    assert os.listdir(data) == []
