"""TLS to Redis (issue 18 part 0): rediss:// against Debian's redis-server
started with --tls-port and --port 0 (no plaintext listener at all), with a
CA and certificates made by openssl for each test module."""
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN, IO_TIMEOUT_S, RedisServer, free_port, wait_for
from wsclient import WS

# Certificates live a day: the test needs minutes.
CERT_DAYS = "1"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_cert(d, name, ca, ext):
    """A key and a certificate signed by `ca`, with the extension section `ext` of ext.cnf."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", CERT_DAYS, "-extfile", "ext.cnf", "-extensions", ext, cwd=d)


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="tickerd-pki-")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        # Key identifiers and the CA's key usage: Python 3.13 (trixie) verifies
        # with VERIFY_X509_STRICT, which refuses certificates without them.
        ids = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        f.write("[server]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n" + ids +
                "[other]\nsubjectAltName=IP:10.9.9.9,DNS:redis.other.example\nextendedKeyUsage=serverAuth\n" + ids +
                "[client]\nextendedKeyUsage=clientAuth\n" + ids)
    for ca in ("ca", "wrongca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-days", CERT_DAYS, "-subj", f"/CN=tickerd test {ca}",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                cwd=d)
    make_cert(d, "server", "ca", "server")
    make_cert(d, "other", "ca", "other")
    make_cert(d, "client", "ca", "client")
    yield {name: os.path.join(d, name) for name in
           ("ca.crt", "wrongca.crt", "server.crt", "server.key", "other.crt", "other.key", "client.crt", "client.key")}
    shutil.rmtree(d, ignore_errors=True)


class TlsRedis(RedisServer):
    """redis-server with TLS only; restartable on the same port."""

    def __init__(self, pki, cert="server", auth_clients=False):
        self.pki, self.cert, self.auth_clients = pki, cert, auth_clients
        super().__init__()

    def start(self):
        args = ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--tls-cert-file", self.pki[f"{self.cert}.crt"], "--tls-key-file", self.pki[f"{self.cert}.key"],
                "--tls-ca-cert-file", self.pki["ca.crt"], "--tls-auth-clients", "yes" if self.auth_clients else "no",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING").strip() == "PONG" or None, what="redis-server over TLS")

    def cli_args(self):
        # The client certificate is signed by the CA the server trusts, so
        # redis-cli passes whether or not the server asks for one.
        return ["redis-cli", "--tls", "--cacert", self.pki["ca.crt"], "--cert", self.pki["client.crt"],
                "--key", self.pki["client.key"], "-h", "127.0.0.1", "-p", str(self.port)]

    def cli(self, *cmd):
        try:
            r = subprocess.run(self.cli_args() + list(cmd), capture_output=True, text=True, timeout=IO_TIMEOUT_S)
            return r.stdout
        except subprocess.TimeoutExpired:
            return ""

    def others(self):
        """CLIENT LIST lines of every client but the redis-cli asking."""
        return [line for line in self.cli("CLIENT", "LIST").splitlines() if line and "cmd=client|list" not in line]

    def tls_clients(self):
        return len(self.others())

    def clients_with_commands(self):
        """Clients that got past the TLS handshake and sent a command (one
        still in its handshake is listed with cmd=NULL)."""
        return [line for line in self.others() if "cmd=NULL" not in line]

    @property
    def url(self):
        return f"rediss://127.0.0.1:{self.port}"


class CliSubscriber:
    """redis-cli over TLS subscribed to channels; lines read with a deadline."""

    def __init__(self, server, *channels):
        self.proc = subprocess.Popen(server.cli_args() + ["SUBSCRIBE", *channels], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        for _ in channels:  # subscribe, channel, count
            self.lines(3)

    def _read(self):
        for line in self.proc.stdout:
            self.queue.put(line.rstrip("\n"))

    def lines(self, n):
        got, deadline = [], time.monotonic() + IO_TIMEOUT_S
        while len(got) < n:
            try:
                got.append(self.queue.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"redis-cli gave {got!r}, wanted {n} lines") from None
        return got

    def messages(self, n):
        out = []
        for _ in range(n):
            kind, channel, data = self.lines(3)
            assert kind == "message"
            out.append((channel, json.loads(data)))
        return out

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def tls_redis(pki):
    made = []

    def make(**kw):
        r = TlsRedis(pki, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.cleanup()


@pytest.fixture
def relay_tmp():
    """TMPDIR of tickerd: where the relays' one-shot unix sockets appear."""
    d = tempfile.mkdtemp(prefix="tickerd-relay-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def quote(sym, bp):
    return {"T": "q", "S": sym, "bx": "V", "bp": bp, "bs": 3, "ax": "V", "ap": bp + 0.5, "as": 1, "c": ["R"],
            "z": "C", "t": "2026-11-21T20:00:00.123456789Z"}


def ready(t):
    return t.get("/readyz").status == 200 or None


def redis_events(t, event):
    return [e for e in t.log_events() if e.get("event") == event]


def test_quotes_and_clients_over_rediss(pki, tls_redis, relay_tmp, tickerd_factory):
    r = tls_redis()
    t = tickerd_factory("--feed", "none", "--redis-url", r.url, "--redis-ca-file", pki["ca.crt"],
                        env={"TMPDIR": relay_tmp})
    wait_for(lambda: ready(t), what="tickerd ready over rediss://")
    # Every one of tickerd's Redis connections is a TLS one (the server has no
    # plaintext port), and every relay socket file is gone once connected.
    assert r.tls_clients() >= 3
    assert os.listdir(relay_tmp) == []
    cli = CliSubscriber(r, "quotes:AAPL")
    ws = WS(t.port)
    assert ws.open, ws.response.body
    ws.send_json({"action": "subscribe", "symbols": ["AAPL"]})
    assert ws.recv_json()["type"] == "subscribed"
    wait_for(lambda: r.cli("PUBSUB", "NUMSUB", "quotes:AAPL").split()[-1] == "2" or None,
             what="tickerd's SUBSCRIBE over TLS")
    resp = t.request("POST", "/quotes", body=[quote("AAPL", 1), quote("MSFT", 2), quote("AAPL", 3)])
    assert resp.status == 202, resp.body
    assert [(c, q["bp"]) for c, q in cli.messages(2)] == [("quotes:AAPL", 1), ("quotes:AAPL", 3)]
    got = [ws.recv_json(), ws.recv_json()]
    assert [m["data"]["bp"] for m in got] == [1, 3] and got[0]["data"]["seq"] == 1
    # Redis restarts: the relays are torn down with their connections and
    # new ones verify the server again; quotes flow once more.
    r.stop()
    wait_for(lambda: not ready(t), what="/readyz to notice Redis gone")
    r.start()
    wait_for(lambda: ready(t), timeout=15, what="tickerd back over rediss://")
    wait_for(lambda: r.cli("PUBSUB", "NUMSUB", "quotes:AAPL").split()[-1] == "1" or None,
             what="resubscribed after the restart")
    cli.close()
    cli = CliSubscriber(r, "quotes:AAPL")
    assert t.request("POST", "/quotes", body=[quote("AAPL", 4)]).status == 202
    assert cli.messages(1)[0][1]["bp"] == 4
    # (after notices of the outage: wait for the quote itself)
    assert ws.recv_until(lambda m: m.get("type") == "quote")["data"]["bp"] == 4
    cli.close()
    ws.close()
    assert os.listdir(relay_tmp) == []
    assert t.stop() == 0


def refused(t, reason, *detail_parts):
    """The connect-failure line for `reason` whose detail names the problem."""
    for e in redis_events(t, "redis_connect_failed"):
        if e.get("reason") == reason and any(p in e.get("detail", "") for p in detail_parts):
            return e
    return None


def assert_http_serves_but_not_ready(t):
    assert t.get("/healthz").status == 200
    r = t.get("/readyz")
    assert r.status == 503 and "redis" in r.json()["reason"], r.body


def test_certificate_for_another_host_is_refused(pki, tls_redis, tickerd_factory):
    r = tls_redis(cert="other")  # signed by the trusted CA, but for redis.other.example / 10.9.9.9
    t = tickerd_factory("--feed", "none", "--redis-url", r.url, "--redis-ca-file", pki["ca.crt"])
    e = wait_for(lambda: refused(t, "TLS certificate refused", "mismatch"), what="the refusal in the log")
    assert e["url"] == r.url and e["level"] == "warn"
    assert_http_serves_but_not_ready(t)
    # tickerd keeps retrying (a retry may be in its handshake right now), but
    # none of its connections ever gets to send a command
    assert r.clients_with_commands() == []
    assert t.stop() == 0


def test_wrong_ca_is_refused(pki, tls_redis, tickerd_factory):
    r = tls_redis()
    t = tickerd_factory("--feed", "none", "--redis-url", r.url, "--redis-ca-file", pki["wrongca.crt"])
    # (redis-server sends its CA along: OpenSSL then names the chain, else the issuer)
    wait_for(lambda: refused(t, "TLS certificate refused", "issuer certificate",
                             "self-signed certificate in certificate chain"), what="the refusal in the log")
    assert_http_serves_but_not_ready(t)
    # --ca-file alone is the fallback trust for Redis too: the right CA there works.
    t2 = tickerd_factory("--feed", "none", "--redis-url", r.url, "--ca-file", pki["ca.crt"])
    wait_for(lambda: ready(t2), what="tickerd ready with --ca-file")
    # Relays torn down mid-retry leave nothing behind (ASan checks leaks at exit).
    assert t.stop() == 0 and t2.stop() == 0


def test_client_certificate_required_by_the_server(pki, tls_redis, tickerd_factory):
    r = tls_redis(auth_clients=True)
    bare = tickerd_factory("--feed", "none", "--redis-url", r.url, "--redis-ca-file", pki["ca.crt"])
    # Without a certificate the server ends the session (TLS 1.3 checks the
    # client after the client's handshake is done): never ready.
    wait_for(lambda: [e for e in redis_events(bare, "redis_tls_closed") if "certificate required" in e["reason"]]
             or None, what="the server to refuse a client without a certificate")
    assert_http_serves_but_not_ready(bare)
    t = tickerd_factory("--feed", "none", "--redis-url", r.url, "--redis-ca-file", pki["ca.crt"],
                        "--redis-cert", pki["client.crt"], "--redis-key", pki["client.key"])
    wait_for(lambda: ready(t), what="tickerd ready with a client certificate")
    cli = CliSubscriber(r, "quotes:MSFT")
    assert t.request("POST", "/quotes", body=[quote("MSFT", 7)]).status == 202
    assert cli.messages(1)[0][1]["bp"] == 7
    cli.close()
    with open(pki["client.key"]) as f:
        key_body = f.read().splitlines()[1]
    assert key_body not in t.output() and all(key_body not in json.dumps(e) for e in t.log_events())
    assert bare.stop() == 0 and t.stop() == 0


@pytest.mark.parametrize("args,message", [
    (["--redis-cert", "CERT"], "--redis-cert and --redis-key go together"),
    (["--redis-ca-file", "/nonexistent/ca.pem"], "cannot load the CA file"),
    (["--redis-cert", "CERT", "--redis-key", "CA"], "cannot load the client key"),
])
def test_bad_tls_settings_stop_the_start(pki, args, message):
    args = [pki["client.crt"] if a == "CERT" else pki["ca.crt"] if a == "CA" else a for a in args]
    p = subprocess.run([BIN, "--port", "0", "--feed", "none", "--log-file", "", "--redis-url",
                        f"rediss://127.0.0.1:{free_port()}", *args], capture_output=True, text=True,
                       timeout=IO_TIMEOUT_S)
    assert p.returncode == 2
    assert message in p.stderr, p.stderr
