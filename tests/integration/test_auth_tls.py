# SPDX-License-Identifier: MIT
"""TLS with tokens: a CA and a server certificate made here with the openssl CLI; curl
over HTTP/2 and HTTP/1.1 with --cacert and a Bearer token, Python requests with the CA;
TLS 1.1 and a non-forward-secret TLS 1.2 suite are refused. Client certificates
(server.tls.client_ca, cert_subject entries): a verified certificate grants its entry's
scopes (named in the access log); one from another CA gets no handshake; a verified one
with another subject grants nothing; client_cert "require"; --check refusals."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import BIN
from test_auth import ALL, TOK, AuthServer, auth_config, rewrite, wait_for


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

    what = "TLS"

    def probe(self):
        """One readiness request over TLS."""
        return requests.get(self.url("/metrics"), headers={"Authorization": "Bearer " + ALL},
                            verify=self.ca, timeout=2)

    def wait_ready(self, timeout=15.0):
        self.base = "https://127.0.0.1:%d" % self.port
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("l3kv exited early:\n" + self.logtext())
            try:
                if self.probe().status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        text = self.logtext()
        self.kill_all()  # leave no server behind
        pytest.fail("l3kv (%s) did not become ready:\n%s" % (self.what, text))


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


# --- client certificates (server.tls.client_ca, cert_subject entries) --------------------

ALICE = "CN=alice,O=L3KV Test"  # RFC 2253 form: the most specific part first
BOB = "CN=bob,O=L3KV Test"


def make_client(d, ca, ca_key, name, subj, eku="clientAuth"):
    key, csr, crt = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem"))
    ext = os.path.join(d, name + ".cnf")
    with open(ext, "w") as f:
        f.write("extendedKeyUsage=%s\n" % eku)
    for cmd in (
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
         "-out", csr, "-subj", subj],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
         "-days", "2", "-extfile", ext],
    ):
        r = run(*cmd)
        assert r.returncode == 0, r.stderr
    return crt, key


@pytest.fixture(scope="module")
def cpki(pki):
    d = pki["dir"]
    ca_key = os.path.join(d, "ca.key")
    rogue_ca, rogue_key = os.path.join(d, "rogue-ca.pem"), os.path.join(d, "rogue-ca.key")
    r = run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", rogue_key, "-out", rogue_ca, "-days", "2", "-subj", "/CN=l3kv test CA")
    assert r.returncode == 0, r.stderr  # same name as the real CA, another key
    c = dict(pki)
    c["alice"] = make_client(d, pki["ca"], ca_key, "alice", "/O=L3KV Test/CN=alice")
    c["bob"] = make_client(d, pki["ca"], ca_key, "bob", "/O=L3KV Test/CN=bob")
    c["carol"] = make_client(d, pki["ca"], ca_key, "carol", "/O=L3KV Test/CN=carol")
    c["rogue"] = make_client(d, rogue_ca, rogue_key, "rogue", "/O=L3KV Test/CN=alice")
    c["server_only"] = make_client(d, pki["ca"], ca_key, "server-only", "/O=L3KV Test/CN=alice", eku="serverAuth")
    return c


def cert_config(cpki, mode=None, access=None):
    cfg = auth_config()
    cfg["auth"]["tokens"] += [{"name": "alice-cert", "cert_subject": ALICE, "scopes": ["read", "write"]},
                              {"name": "bob-cert", "cert_subject": BOB, "scopes": ["monitor"]}]
    tls = {"cert": cpki["crt"], "key": cpki["key"], "client_ca": cpki["ca"]}
    if mode:
        tls["client_cert"] = mode
    cfg["server"] = {"tls": tls}
    if access:
        cfg["log"] = {"access": access}
    return cfg


@pytest.fixture(scope="module")
def csrv(cpki, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("tls-access") / "access.log")
    s = TlsServer(cpki["ca"], config=cert_config(cpki, access=log), workers=1)
    s.access = log
    yield s
    s.stop()


def test_subject_format_is_openssl_rfc2253(cpki):
    r = run("openssl", "x509", "-in", cpki["alice"][0], "-noout", "-subject", "-nameopt", "RFC2253")
    assert r.stdout.strip() == "subject=" + ALICE, r.stdout  # the documented way to get the string


@pytest.mark.parametrize("proto,ver", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_client_cert_grants_entry_scopes(csrv, cpki, proto, ver):
    crt, key = cpki["alice"]
    name = "cert-%s" % ver
    r = curl(csrv, proto, "--cert", crt, "--key", key, "-X", "PUT", "-d", '{"by":"alice"}',
             csrv.url("/kv/" + name))
    assert r.stdout in ("201 " + ver, "200 " + ver), (r.stdout, r.stderr)
    r = curl(csrv, proto, "--cert", crt, "--key", key, csrv.url("/kv/" + name))
    assert r.stdout == "200 " + ver, (r.stdout, r.stderr)
    # alice's entry lacks monitor: 403, not 401 (the certificate is known)
    r = curl(csrv, proto, "--cert", crt, "--key", key, csrv.url("/metrics"))
    assert r.stdout == "403 " + ver, (r.stdout, r.stderr)
    # the same request without the certificate holds only the anonymous scopes
    r = curl(csrv, proto, csrv.url("/kv/" + name))
    assert r.stdout == "401 " + ver, (r.stdout, r.stderr)


@pytest.mark.parametrize("tlsmax", ["1.2", "1.3"])
def test_resumed_session_keeps_the_certificate(csrv, cpki, tlsmax):
    # two connections in one curl run: the second resumes the first one's TLS session
    crt, key = cpki["alice"]
    r = run("curl", "-sv", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} ", "--cacert", csrv.ca,
            "--http1.1", "-H", "Connection: close", "--tls-max", tlsmax, "--cert", crt, "--key", key,
            csrv.url("/kv/"), csrv.url("/kv/"))
    assert r.stdout == "200 200 ", (r.stdout, r.stderr)
    assert "re-using session" in r.stderr or "reusing session" in r.stderr.lower(), r.stderr


def test_requests_client_cert(csrv, cpki):
    r = requests.get(csrv.url("/kv/"), cert=cpki["alice"], verify=csrv.ca, timeout=5)
    assert r.status_code == 200, r.text
    r = requests.get(csrv.url("/metrics"), cert=cpki["bob"], verify=csrv.ca, timeout=5)
    assert r.status_code == 200, r.text  # bob's entry: monitor
    r = requests.get(csrv.url("/kv/"), cert=cpki["bob"], verify=csrv.ca, timeout=5)
    assert r.status_code == 403 and r.json() == {
        "error": "forbidden", "detail": "token 'bob-cert' lacks the 'read' scope this request needs"}


def test_certificate_from_another_ca_is_refused(csrv, cpki):
    # same subject as alice, same issuer name, but signed by another key: no handshake
    crt, key = cpki["rogue"]
    for proto in ("--http2", "--http1.1"):
        r = curl(csrv, proto, "--cert", crt, "--key", key, csrv.url("/kv/"))
        assert r.returncode != 0 and not r.stdout.startswith("200"), (r.stdout, r.stderr)
    # TLS 1.3: the client sends its certificate after the server's Finished, so the refusal
    # may come as an alert (SSLError) or as a closed connection; never as a response
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(csrv.url("/kv/"), cert=cpki["rogue"], verify=csrv.ca, timeout=5)
    # the server is still fine
    assert requests.get(csrv.url("/kv/"), cert=cpki["alice"], verify=csrv.ca, timeout=5).status_code == 200


def test_certificate_not_for_client_auth_is_refused(csrv, cpki):
    # the right CA and alice's subject, but an extended key usage without clientAuth
    crt, key = cpki["server_only"]
    r = curl(csrv, "--http2", "--cert", crt, "--key", key, csrv.url("/kv/"))
    assert r.returncode != 0 and not r.stdout.startswith("200"), (r.stdout, r.stderr)


def test_verified_certificate_with_unknown_subject_grants_nothing(csrv, cpki):
    r = requests.get(csrv.url("/kv/"), cert=cpki["carol"], verify=csrv.ca, timeout=5)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="l3kv"'
    assert requests.get(csrv.url("/kv/health"), cert=cpki["carol"], verify=csrv.ca, timeout=5).status_code == 200
    # a token still works on such a connection; a wrong token is 401 even with alice's certificate
    r = requests.get(csrv.url("/kv/"), cert=cpki["carol"], verify=csrv.ca, headers={"Authorization": "Bearer " + TOK["read"]},
                     timeout=5)
    assert r.status_code == 200
    r = requests.get(csrv.url("/kv/"), cert=cpki["alice"], verify=csrv.ca,
                     headers={"Authorization": "Bearer " + TOK["monitor"]}, timeout=5)
    assert r.status_code == 403  # a sent token decides; the certificate adds nothing to it


def test_access_log_names_the_certificate_entry(csrv, cpki):
    p = "/kv/logged-by-cert"
    assert requests.get(csrv.url(p), cert=cpki["alice"], verify=csrv.ca, timeout=5).status_code == 404
    deadline = time.time() + 20
    while time.time() < deadline:
        if os.path.exists(csrv.access):
            with open(csrv.access) as f:
                hits = [l.split() for l in f if " %s " % p in l]
            if hits:
                assert hits[0][2] == "alice-cert" and hits[0][3] == "GET" and hits[0][5] == "404", hits
                return
        time.sleep(0.05)
    pytest.fail("no access log line for %s:\n%s" % (p, csrv.logtext()))


def test_sighup_adds_and_removes_cert_subject_entries(cpki):
    s = TlsServer(cpki["ca"], config=cert_config(cpki), workers=1)
    try:
        def carol():
            return requests.get(s.url("/kv/"), cert=cpki["carol"], verify=s.ca, timeout=5).status_code
        assert carol() == 401
        auth = dict(s.config["auth"])
        auth["tokens"] = auth["tokens"] + [{"name": "carol-cert", "cert_subject": "CN=carol,O=L3KV Test",
                                            "scopes": ["read"]}]
        rewrite(s, auth)
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: carol() == 200, "carol's entry after SIGHUP", s)  # new connections see it
        # an entry naming alice's subject twice is refused; the set in force stays
        bad = dict(auth)
        bad["tokens"] = auth["tokens"] + [{"name": "dup", "cert_subject": ALICE, "scopes": ["admin"]}]
        rewrite(s, bad)
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "tokens not reloaded" in s.logtext(), "the refused reload", s)
        assert carol() == 200
        rewrite(s, s.config["auth"])
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: carol() == 401, "carol's entry removed after SIGHUP", s)
    finally:
        s.stop()


class CertTlsServer(TlsServer):
    """Readiness probed with a client certificate (client_cert: require)."""

    def __init__(self, ca, cert, **kw):
        self.client = cert
        super().__init__(ca, **kw)

    what = "TLS, client certificates required"

    def probe(self):
        return requests.get(self.url("/kv/health"), cert=self.client, verify=self.ca, timeout=2)


def test_client_cert_required(cpki):
    s = CertTlsServer(cpki["ca"], cpki["alice"], config=cert_config(cpki, mode="require"), workers=1)
    try:
        r = curl(s, "--http2", s.url("/kv/health"))  # no certificate: no handshake
        assert r.returncode != 0 and not r.stdout.startswith("200"), (r.stdout, r.stderr)
        with pytest.raises(requests.exceptions.ConnectionError):  # SSLError or closed (TLS 1.3)
            requests.get(s.url("/kv/health"), headers={"Authorization": "Bearer " + ALL}, verify=s.ca, timeout=5)
        r = curl(s, "--http2", "--cert", cpki["bob"][0], "--key", cpki["bob"][1], s.url("/metrics"))
        assert r.stdout == "200 2", (r.stdout, r.stderr)
    finally:
        s.stop()


# --- configuration refusals (exit 2 naming the key) --------------------------------------

def check_config(cfg, check=True):
    """Run `l3kv --check` (or a start, which must refuse and exit) on cfg: (exit code, output)."""
    d = tempfile.mkdtemp(prefix="l3kv-tlscheck-")
    try:
        cfg = dict(cfg)
        cfg["storage"] = {"data_dir": os.path.join(d, "data"), "arena_bytes": 64 << 20}
        cfg.setdefault("server", {}).update({"address": "127.0.0.1", "port": 0, "min_workers": 1,
                                             "max_workers": 1})
        p = os.path.join(d, "config.json")
        with open(p, "w") as f:
            json.dump(cfg, f)
        c = subprocess.run([BIN] + (["--check"] if check else []) + [p], capture_output=True, text=True,
                           timeout=60, cwd=d)
        return c.returncode, c.stdout + c.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_start_refuses_a_key_that_does_not_match(cpki):
    cfg = cert_config(cpki)
    cfg["server"]["tls"]["key"] = cpki["alice"][1]  # a valid key, not the certificate's
    assert check_config(cfg)[0] == 0  # --check reads no key material
    rc, out = check_config(cfg, check=False)
    assert rc == 2 and "server.tls.key" in out, (rc, out)


def test_start_refuses_cert_subject_without_client_ca(cpki):
    cfg = cert_config(cpki)
    cfg["server"]["tls"].pop("client_ca")
    rc, out = check_config(cfg, check=False)
    assert rc == 2 and "auth.tokens[7].cert_subject" in out, (rc, out)


def test_check_accepts_client_cert_config(cpki):
    rc, out = check_config(cert_config(cpki, mode="require"))
    assert rc == 0, out


@pytest.mark.parametrize("change,key", [
    (lambda c, k: c["server"]["tls"].update(client_ca="/nonexistent/ca.pem"), "server.tls.client_ca"),
    (lambda c, k: c["server"]["tls"].update(client_ca=k["key"]), "server.tls.client_ca"),  # no certificate in it
    (lambda c, k: c["server"]["tls"].update(client_cert="maybe"), "server.tls.client_cert"),
    (lambda c, k: c["server"]["tls"].pop("client_ca"), "auth.tokens[7].cert_subject"),
    (lambda c, k: (c["server"]["tls"].pop("client_ca"), c["auth"]["tokens"].pop(),
                   c["auth"]["tokens"].pop(), c["server"]["tls"].update(client_cert="optional")),
     "server.tls.client_cert"),
    (lambda c, k: c["server"].update(tls={"client_ca": k["ca"]}), "server.tls.client_ca"),
    (lambda c, k: c["auth"]["tokens"][7].update(cert_subject="/O=L3KV Test/CN=alice"), "auth.tokens[7].cert_subject"),
    (lambda c, k: c["auth"]["tokens"][8].update(cert_subject=ALICE), "auth.tokens[8].cert_subject"),
    (lambda c, k: c["auth"]["tokens"][7].update(cert_subject=""), "auth.tokens[7].cert_subject"),
    (lambda c, k: c["auth"]["tokens"][7].pop("cert_subject"), "auth.tokens[7]"),
    (lambda c, k: c["server"]["tls"].update(cert="/nonexistent/srv.pem"), "server.tls.cert"),
])
def test_check_refuses_bad_client_cert_config(cpki, change, key):
    cfg = cert_config(cpki)
    change(cfg, cpki)
    rc, out = check_config(cfg)
    assert rc == 2 and key in out, (rc, out)
