"""tickerd --feed alpaca end to end: the real binary against the fake Alpaca
server (TLS with a throwaway CA) and a real redis-server, both started here
on free ports. Messages must land on their per-kind Redis channels with
"seq" and "epoch" added; bad credentials must be logged (never the secret)
and retried; missing credentials must stop tickerd at start.
"""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import free_port, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE = os.path.join(ROOT, "test", "support", "fake_alpaca.py")
TESTCA = os.path.join(ROOT, "test", "support", "testca.sh")
BIN = os.environ.get("TICKERD_BIN", os.path.join(ROOT, "build", "tickerd"))
KEY, SECRET = "testkey", "integration-secret-7f3a"
DEADLINE_S = 15


def wait_until(pred, timeout=DEADLINE_S, what="condition"):
    return wait_for(pred, timeout=timeout, interval=0.05, what=what)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    subprocess.run([TESTCA, str(d)], check=True)
    return d


def start_fake(ca_dir, *args):
    proc = subprocess.Popen(["/usr/bin/python3", FAKE,
                             "--cert", str(ca_dir / "server.pem"), "--key", str(ca_dir / "server.key"),
                             "--key-id", KEY, "--secret", SECRET, "--exit-on-stdin-eof"] + list(args),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.match(r"READY (\d+) (\d+)", line)
    assert m, "fake server did not start: %r" % line
    return proc, int(m.group(1))


def start_tickerd(ca_dir, ws_port, redis_port, log_path, key=KEY, secret=SECRET, extra=()):
    env = dict(os.environ)
    env.pop("APCA_API_KEY_ID", None)
    env.pop("APCA_API_SECRET_KEY", None)
    if key is not None:
        env["APCA_API_KEY_ID"] = key
    if secret is not None:
        env["APCA_API_SECRET_KEY"] = secret
    args = [BIN, "--host", "127.0.0.1", "--port", str(free_port()), "--feed", "alpaca",
            "--alpaca-url", "wss://127.0.0.1:%d/v2/test" % ws_port, "--ca-file", str(ca_dir / "ca.pem"),
            "--redis-url", "redis://127.0.0.1:%d" % redis_port, "--symbols", "AAPL,MSFT",
            "--alpaca-channels", "quotes,trades,bars", "--log-file", str(log_path)] + list(extra)
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.communicate() if proc.stdout else ("", "")


def test_messages_land_on_their_channels(ca_dir, redis_server, tmp_path):
    redis_port, client = redis_server.port, redis_server.client()
    pubsub = client.pubsub()
    channels = ["quotes:AAPL", "quotes:MSFT", "trades:AAPL", "bars:MSFT"]
    pubsub.subscribe(*channels)
    fake, ws_port = start_fake(ca_dir, "--batches", "0", "--interval-ms", "50")
    tickerd = start_tickerd(ca_dir, ws_port, redis_port, tmp_path / "tickerd.log")
    seen = {}
    try:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end and len(seen) < len(channels):
            m = pubsub.get_message(timeout=0.2)
            if m and m["type"] == "message":
                seen.setdefault(m["channel"].decode(), json.loads(m["data"]))
            assert tickerd.poll() is None, "tickerd exited: %s" % (tickerd.communicate(),)
    finally:
        out, err = stop(tickerd)
        stop(fake)
    assert sorted(seen) == sorted(channels), "got %s; tickerd stderr: %s" % (sorted(seen), err[-2000:])
    q = seen["quotes:AAPL"]
    assert q["T"] == "q" and q["S"] == "AAPL" and q["bp"] > 0 and q["ax"] == "V"
    assert isinstance(q["seq"], int) and q["seq"] >= 1
    assert re.fullmatch(r"[0-9a-f]{16}", q["epoch"])
    assert seen["trades:AAPL"]["T"] == "t" and seen["trades:AAPL"]["p"] == 189.51
    assert seen["bars:MSFT"]["T"] == "b" and seen["bars:MSFT"]["S"] == "MSFT"
    log = (tmp_path / "tickerd.log").read_text()
    assert "alpaca_subscribed" in log
    assert SECRET not in log + out + err


def test_bad_credentials_logged_and_retried(ca_dir, redis_server, tmp_path):
    redis_port = redis_server.port
    fake, ws_port = start_fake(ca_dir)
    log_path = tmp_path / "tickerd.log"
    tickerd = start_tickerd(ca_dir, ws_port, redis_port, log_path, secret="wrong-" + SECRET)
    try:
        def logged(text):
            assert tickerd.poll() is None, "tickerd exited: %s" % (tickerd.communicate(),)
            return log_path.exists() and text in log_path.read_text()
        wait_until(lambda: logged('"code":402'), what="the 402 in tickerd's log")
        wait_until(lambda: logged("alpaca_backoff"), what="a backoff")
        assert tickerd.poll() is None, "tickerd must keep running and retry"
    finally:
        out, err = stop(tickerd)
        stop(fake)
    assert SECRET not in log_path.read_text() + out + err


def test_missing_credentials_stop_tickerd(ca_dir, redis_server, tmp_path):
    redis_port = redis_server.port
    tickerd = start_tickerd(ca_dir, 1, redis_port, tmp_path / "tickerd.log", key=None, secret=None)
    try:
        rc = tickerd.wait(DEADLINE_S)
    finally:
        out, err = stop(tickerd)
    assert rc != 0
    assert "APCA_API_KEY_ID" in out + err and "APCA_API_SECRET_KEY" in out + err


def start_fake_rest(ca_dir, *args):
    proc = subprocess.Popen(["/usr/bin/python3", FAKE,
                             "--cert", str(ca_dir / "server.pem"), "--key", str(ca_dir / "server.key"),
                             "--key-id", KEY, "--secret", SECRET, "--exit-on-stdin-eof", "--rest"] + list(args),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.match(r"READY (\d+) (\d+)", proc.stdout.readline())
    assert m, "fake server did not start"
    return proc, int(m.group(2))


def http_get(port, path):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body)


def test_rest_fallback_for_unknown_symbols(ca_dir, redis_server, tmp_path):
    """GET /quotes/{symbol} with nothing stored asks the REST API (deferred, never
    blocking), caches the answer, and maps upstream failures to 404/502/504."""
    redis_port, client = redis_server.port, redis_server.client()
    fake, rest_port = start_fake_rest(ca_dir, "--rest-delay-ms", "7000")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TICKERD_"))}
    env.update(APCA_API_KEY_ID=KEY, APCA_API_SECRET_KEY=SECRET)
    port = free_port()
    tickerd = subprocess.Popen([BIN, "--port", str(port), "--feed", "none", "--redis-url",
                                "redis://127.0.0.1:%d" % redis_port, "--ca-file", str(ca_dir / "ca.pem"),
                                "--alpaca-rest-url", "https://127.0.0.1:%d" % rest_port,
                                "--log-file", str(tmp_path / "tickerd.log")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _connects(port), what="tickerd")
        status, body = http_get(port, "/quotes/AAPL")
        assert status == 200 and body["T"] == "q" and body["S"] == "AAPL" and body["seq"] == 1
        # cached: the second look-up is answered from memory, the fake sees one request
        assert http_get(port, "/quotes/AAPL")[0] == 200
        assert http_get(port, "/quotes/NOPE")[0] == 404
        assert http_get(port, "/quotes/FAIL")[0] == 502
        assert http_get(port, "/quotes/BADJSON")[0] == 502
        import threading
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=http_get(port, "/quotes/SLOW")))
        start = time.monotonic()
        t.start()
        time.sleep(0.5)
        # while that look-up waits on the upstream, the loop keeps serving
        assert http_get(port, "/healthz")[0] == 200 and t.is_alive()
        t.join(DEADLINE_S)
        assert slow["r"][0] == 504 and slow["r"][1]["error"] == "timeout"
        assert time.monotonic() - start < DEADLINE_S
    finally:
        stop(tickerd)
        stop(fake)
    log = (tmp_path / "tickerd.log").read_text()
    assert SECRET not in log


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
