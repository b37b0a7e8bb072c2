"""tickerd --feed alpaca end to end: the real binary against the fake Alpaca
server (TLS with a throwaway CA) and a real redis-server, both started here
on free ports. Messages must land on their per-kind Redis channels with
"seq" and "epoch" added; bad credentials must be logged (never the secret)
and retried; missing credentials must stop tickerd at start.

Needs tickerd's main.c to wire alpaca_new() into the quote pipeline.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
import redis

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE = os.path.join(ROOT, "test", "support", "fake_alpaca.py")
TESTCA = os.path.join(ROOT, "test", "support", "testca.sh")
BIN = os.environ.get("TICKERD_BIN", os.path.join(ROOT, "build", "tickerd"))
KEY, SECRET = "testkey", "integration-secret-7f3a"
DEADLINE_S = 15


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=DEADLINE_S, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    subprocess.run([TESTCA, str(d)], check=True)
    return d


@pytest.fixture
def redis_server(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    wait_until(lambda: _pings(client), what="redis-server")
    yield port, client
    proc.terminate()
    proc.wait(10)


def _pings(client):
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


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
    redis_port, client = redis_server
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
    redis_port, _ = redis_server
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
    redis_port, _ = redis_server
    tickerd = start_tickerd(ca_dir, 1, redis_port, tmp_path / "tickerd.log", key=None, secret=None)
    try:
        rc = tickerd.wait(DEADLINE_S)
    finally:
        out, err = stop(tickerd)
    assert rc != 0
    assert "APCA_API_KEY_ID" in out + err and "APCA_API_SECRET_KEY" in out + err
