"""Fixtures shared by the integration tests: a real tickerd binary on a free
port, a real redis-server on a free port, and raw-socket HTTP helpers.

Every process a test starts is stopped when the test ends, pass or fail."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TICKERD_BIN", os.path.join(ROOT, "build", "tickerd"))
# Time limits of the helpers below: a broken server fails a test, never hangs it.
START_TIMEOUT_S = 10
IO_TIMEOUT_S = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=IO_TIMEOUT_S, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())


def read_response(sock, buf=b"", head_request=False):
    """Reads one HTTP/1.1 response from `sock`; returns (Response, leftover)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {buf[:200]!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, status, reason = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = 0 if head_request else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        rest += chunk
    return Response(int(status), reason, headers, rest[:length]), rest[length:]


def is_closed(sock, timeout=IO_TIMEOUT_S):
    """True when the peer closed (EOF or reset) within `timeout`, discarding data."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class Tickerd:
    def __init__(self, args=(), env=None, cwd=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tickerd-test-")
        self.log_path = os.path.join(self.dir, "tickerd.log")
        self.stdout_path = os.path.join(self.dir, "stdout")
        argv = [BIN, "--port", str(self.port), "--log-file", self.log_path] + list(args)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKERD_", "APCA_"))}
        full_env.pop("REDIS_URL", None)
        full_env.update(env or {})
        self.stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.stdout, stderr=subprocess.STDOUT, env=full_env,
                                     cwd=cwd or self.dir)
        wait_for(self._up, timeout=START_TIMEOUT_S, what="tickerd to listen")

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"tickerd exited with {self.proc.returncode}: {self.output()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S)
        return s

    def raw(self, data, head_request=False):
        """Sends raw bytes on a new connection and reads one response."""
        with self.connect() as s:
            s.sendall(data)
            resp, _ = read_response(s, head_request=head_request)
            return resp

    def request(self, method, path, body=None, headers=None):
        hdrs = {"Host": "127.0.0.1"}
        hdrs.update(headers or {})
        if body is not None:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            elif isinstance(body, str):
                body = body.encode()
            hdrs["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        return self.raw(head.encode() + (body or b""), head_request=(method == "HEAD"))

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def status(self):
        return self.get("/status").json()

    def log_events(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def output(self):
        self.stdout.flush()
        with open(self.stdout_path, "rb") as f:
            return f.read().decode(errors="replace")

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("tickerd did not exit after " + sig.name)
        self.stdout.close()
        return self.proc.returncode

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.stdout.closed:
            self.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A real redis-server on a free port; restartable on the same port."""

    def __init__(self, password=None, start=True):
        self.port = free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="tickerd-redis-")
        self.proc = None
        if start:
            self.start()

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._pings, what="redis-server to answer")

    def _pings(self):
        try:
            return self.client().ping()
        except Exception:
            return False

    @property
    def url(self):
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    def client(self, **kw):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=IO_TIMEOUT_S, **kw)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def tickerd_factory():
    started = []

    def make(*args, env=None, cwd=None):
        t = Tickerd(args, env=env, cwd=cwd)
        started.append(t)
        return t

    yield make
    for t in started:
        t.cleanup()


@pytest.fixture
def tickerd(tickerd_factory):
    """A tickerd with fast tasks and no Redis needs (feed none)."""
    return tickerd_factory("--feed", "none", "--task-phases-ms", "100,100", "--task-error-rate", "0")


@pytest.fixture
def redis_server():
    r = RedisServer()
    yield r
    r.cleanup()
