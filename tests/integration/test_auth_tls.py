# SPDX-License-Identifier: MIT
"""TLS with tokens: a CA and a server certificate made here with the openssl CLI; curl
over HTTP/2 and HTTP/1.1 with --cacert and a Bearer token, Python requests with the CA;
TLS 1.1 and a non-forward-secret TLS 1.2 suite are refused."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from test_auth import ALL, TOK, AuthServer, auth_config


def run(*a):
    return subprocess.run(list(a), capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def pki():
    if shutil.which("openssl") is None or shutil.which("curl") is None:
        pytest.skip("needs the openssl CLI and curl")
    d = tempfile.mkdtemp(prefix="l3kv-tls-")
    ca_key, ca, key, csr, crt = (os.path.join(d, n) for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for cmd in (
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=l3kv test CA"],
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
         "-out", csr, "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
         "-days", "2", "-extfile", ext],
    ):
        r = run(*cmd)
        assert r.returncode == 0, r.stderr
    yield {"dir": d, "ca": ca, "key": key, "crt": crt}
    shutil.rmtree(d, ignore_errors=True)


class TlsServer(AuthServer):
    def __init__(self, ca, **kw):
        self.ca = ca
        super().__init__(**kw)

    def wait_ready(self, timeout=15.0):
        self.base = "https://127.0.0.1:%d" % self.port
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("l3kv exited early:\n" + self.logtext())
            try:
                if requests.get(self.url("/metrics"), headers={"Authorization": "Bearer " + ALL},
                                verify=self.ca, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        text = self.logtext()
        self.kill_all()  # leave no server behind
        pytest.fail("l3kv (TLS) did not become ready:\n" + text)


@pytest.fixture(scope="module")
def tsrv(pki):
    cfg = auth_config()
    cfg["server"] = {"tls": {"cert": pki["crt"], "key": pki["key"]}}
    s = TlsServer(pki["ca"], config=cfg, workers=1)
    yield s
    s.stop()


def curl(s, *args):
    return run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--cacert", s.ca,
               *args)


@pytest.mark.parametrize("proto,ver", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_with_token(tsrv, proto, ver):
    r = curl(tsrv, proto, "-H", "Authorization: Bearer " + TOK["read"], tsrv.url("/kv/"))
    assert r.stdout == "200 " + ver, (r.stdout, r.stderr)
    r = curl(tsrv, proto, tsrv.url("/kv/"))
    assert r.stdout == "401 " + ver, (r.stdout, r.stderr)


def test_requests_with_ca(tsrv):
    r = requests.get(tsrv.url("/kv/"), headers={"Authorization": "Bearer " + TOK["read"]}, verify=tsrv.ca,
                     timeout=5)
    assert r.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tsrv.url("/kv/"), timeout=5)  # not trusted without the CA


def test_old_protocols_and_weak_suites_refused(tsrv):
    # curl -v shows its Client hello went out (the client offered it, so the refusal is the
    # server's), then exits 35: the TLS handshake failed
    r = curl(tsrv, "-v", "--tlsv1.1", "--tls-max", "1.1", tsrv.url("/kv/health"))
    assert "TLSv1.1 (OUT), TLS handshake, Client hello" in r.stderr, r.stderr
    assert r.returncode == 35 and r.stdout.startswith("000"), (r.returncode, r.stdout)
    r = curl(tsrv, "-v", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-SHA", tsrv.url("/kv/health"))
    assert "TLSv1.2 (OUT), TLS handshake, Client hello" in r.stderr, r.stderr
    assert r.returncode == 35 and r.stdout.startswith("000"), (r.returncode, r.stdout)
    r = curl(tsrv, "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256", tsrv.url("/kv/health"))
    assert r.stdout.startswith("200"), (r.stdout, r.stderr)
