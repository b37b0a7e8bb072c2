"""Per-client rate (issue 16 part 1): `interval_ms` on WebSocket subscribe
and as an SSE query parameter. A throttled client gets at most one update
per symbol per interval, always the newest and always the last of a burst;
clients with the same interval share one encoding per symbol and tick
(visible in /status); bad intervals are refused. Real binary, real
redis-server, raw sockets."""
import json
import math
import socket
import time

import pytest

from conftest import SANITIZED, wait_for
from test_quotes import quote
from test_streaming import channels, post, settled, sse_events, sse_open, stack, ws_subscribe  # noqa: F401 (stack: a fixture)
from wsclient import WS

INTERVAL_MS = 200


def rate(t):
    return t.status()["streaming"]["rate"]


def group(t, interval):
    gs = [g for g in rate(t)["groups"] if g["interval_ms"] == interval]
    return gs[0] if gs else None


def ws_quotes_until(ws, last_bp):
    """The quotes a WebSocket client gets up to the one with bid `last_bp`."""
    got = []
    while True:
        msg = ws.recv_json()
        if msg["type"] != "quote":
            continue
        got.append(msg["data"]["bp"])
        if got[-1] == last_bp:
            return got


def nothing_more(sock, seconds):
    """True when no byte arrives within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except socket.timeout:
        return True
    finally:
        sock.settimeout(5)


def burst(t, sym, n, spread_s):
    """Publishes quotes bp=1..n of `sym` over about `spread_s`; returns how
    long it took from the first POST to the last quote's answer."""
    start = time.monotonic()
    for i in range(1, n + 1):
        post(t, quote(sym, bp=i), settle=False)
        time.sleep(spread_s / n)
    settled(t)
    return time.monotonic() - start


def test_ws_burst_gets_at_most_one_per_interval_and_ends_on_the_last(stack, redis_server):
    slow = ws_subscribe(stack, "AAPL", interval_ms=INTERVAL_MS)
    live = ws_subscribe(stack, "AAPL")
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, what="SUBSCRIBE")
    n = 30
    took = burst(stack, "AAPL", n, 1.0)
    assert ws_quotes_until(live, n) == list(range(1, n + 1))   # unthrottled: every quote
    got = ws_quotes_until(slow, n)
    assert got[-1] == n                                        # the burst's last is delivered
    assert got == sorted(got) and len(set(got)) == len(got)    # newest only, never older, never twice
    assert len(got) <= math.ceil(took * 1000 / INTERVAL_MS) + 1, (got, took)
    assert len(got) < n
    assert nothing_more(slow.sock, 3 * INTERVAL_MS / 1000)     # nothing stale comes after the last
    r = rate(stack)
    assert r["skipped_ws"] == n - len(got)
    assert r["clients"] == 1 and group(stack, INTERVAL_MS)["clients"] == 1
    slow.close()
    live.close()


def test_a_burst_in_one_request_is_one_update(stack, redis_server):
    ws = ws_subscribe(stack, "AAPL", interval_ms=1000)
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, what="SUBSCRIBE")
    post(stack, *[quote("AAPL", bp=i) for i in range(1, 21)])
    got = ws_quotes_until(ws, 20)
    # the 20 quotes arrive within one loop turn or two: one update, or two if a tick fell between them
    assert got[-1] == 20 and len(got) <= 2, got
    ws.close()


def test_sse_interval(stack, redis_server):
    s, head, buf = sse_open(stack, f"symbols=AAPL&interval_ms={INTERVAL_MS}")
    assert " 200 " in head.split("\r\n")[0]
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, what="SUBSCRIBE")
    n = 30
    took = burst(stack, "AAPL", n, 1.0)
    got = []
    while not got or got[-1] != n:
        evs, buf = sse_events(s, buf, 1)
        if evs[0].get("event") == "quote":
            got.append(json.loads(evs[0]["data"])["bp"])
            assert evs[0]["id"].startswith("AAPL:")         # still resumable from its position
    assert got == sorted(got) and len(got) <= math.ceil(took * 1000 / INTERVAL_MS) + 1, (got, took)
    assert nothing_more(s, 3 * INTERVAL_MS / 1000)
    assert rate(stack)["skipped_sse"] == n - len(got)
    s.close()


def test_clients_with_one_interval_share_one_encoding(stack, redis_server):
    k, m = 5, 4
    clients = [ws_subscribe(stack, "AAPL", interval_ms=INTERVAL_MS) for _ in range(k)]
    other = ws_subscribe(stack, "AAPL", interval_ms=INTERVAL_MS + 100)
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, what="SUBSCRIBE")
    g = group(stack, INTERVAL_MS)
    assert g["clients"] == k and g["frames_encoded"] == 0
    deliveries = stack.status()["streaming"]["deliveries"]
    for i in range(1, m + 1):
        post(stack, quote("AAPL", bp=i))
        # every client has it before the next one is published: each quote is alone in its tick
        for ws in clients + [other]:
            assert ws_quotes_until(ws, i) == [i]
    g = group(stack, INTERVAL_MS)
    assert g["frames_encoded"] == m, g          # one per tick with a quote, not one per client
    assert group(stack, INTERVAL_MS + 100)["frames_encoded"] == m
    assert rate(stack)["frames_encoded"] == 2 * m
    assert stack.status()["streaming"]["deliveries"] - deliveries == m * (k + 1)
    assert rate(stack)["skipped_ws"] == 0
    metrics = stack.get("/metrics").body.decode()
    assert f"tickerd_stream_rate_frames_encoded_total {2 * m}" in metrics
    assert 'tickerd_stream_rate_skipped_total{transport="ws"} 0' in metrics
    for ws in clients + [other]:
        ws.close()
    # the last client gone, its group goes with it
    wait_for(lambda: rate(stack)["groups"] == [] or None, what="the groups to close")


def test_resubscribing_changes_the_interval(stack, redis_server):
    ws = ws_subscribe(stack, "AAPL", interval_ms=1000)
    ws.send_json({"action": "list"})
    assert ws.recv_json()["interval_ms"] == 1000
    ws.send_json({"action": "subscribe", "interval_ms": 0})
    msg = ws.recv_json()
    assert msg == {"type": "subscribed", "symbols": [], "interval_ms": 0}
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, what="SUBSCRIBE")
    wait_for(lambda: rate(stack)["groups"] == [] or None, what="the group to close")
    post(stack, *[quote("AAPL", bp=i) for i in range(1, 11)])
    assert ws_quotes_until(ws, 10) == list(range(1, 11))   # every quote again
    # and back: a symbol added later is throttled too
    ws.send_json({"action": "subscribe", "symbols": ["MSFT"], "interval_ms": 500})
    assert ws.recv_json() == {"type": "subscribed", "symbols": ["MSFT"], "interval_ms": 500}
    g = group(stack, 500)
    assert g["clients"] == 1 and g["symbols"] == 2
    ws.close()


@pytest.mark.parametrize("bad", [10, 49, 60001, -1, "250", 1.5, None])
def test_ws_bad_intervals_are_refused(stack, bad):
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "symbols": ["AAPL"], "interval_ms": bad})
    msg = ws.recv_json()
    assert msg["type"] == "error" and msg["error"] == "bad_interval", msg
    assert "50" in msg["message"] and "60000" in msg["message"]
    ws.send_json({"action": "list"})
    msg = ws.recv_json()
    assert msg["symbols"] == [] and "interval_ms" not in msg     # nothing of the refused subscribe was done
    ws.close()


@pytest.mark.parametrize("bad", ["10", "49", "60001", "abc", "", "-5", "2.5", "99999999999999999999"])
def test_sse_bad_intervals_are_refused(stack, bad):
    r = stack.get(f"/stream?symbols=AAPL&interval_ms={bad}")
    assert r.status == 400 and r.json()["error"] == "bad_interval", r.body
    assert stack.status()["streaming"]["clients"] == 0


def test_distinct_intervals_are_limited(stack):
    limit = 32   # HUB_RATE_MAX_GROUPS
    conns = []
    for i in range(limit):
        ws = WS(stack.port)
        ws.send_json({"action": "subscribe", "symbols": ["AAPL"], "interval_ms": 100 + i})
        assert ws.recv_json()["type"] == "subscribed"
        conns.append(ws)
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "symbols": ["AAPL"], "interval_ms": 5000})
    msg = ws.recv_json()
    assert msg["type"] == "error" and msg["error"] == "unavailable", msg
    ws.send_json({"action": "subscribe", "symbols": ["AAPL"], "interval_ms": 100})   # one in use still joins
    assert ws.recv_json()["type"] == "subscribed"
    r = stack.get("/stream?symbols=AAPL&interval_ms=7000")
    assert r.status == 503 and r.json()["error"] == "unavailable"
    assert len(rate(stack)["groups"]) == limit
    for c in conns + [ws]:
        c.close()


def test_a_throttled_client_that_stops_reading_is_cut_off(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--client-soft-bytes", "65536",
                        "--client-hard-bytes", "262144", "--client-soft-ms", "500")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis")
    symbols = [f"S{i}" for i in range(200)]
    slow = WS(t.port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # every tick owes it up to 200 quotes: a client that never reads falls behind within a few ticks
    slow.send_json({"action": "subscribe", "symbols": symbols, "interval_ms": 50})
    fast = ws_subscribe(t, "S0")
    rss0 = t.rss_bytes()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and t.status()["streaming"]["slow_closes"] == 0:
        post(t, *[quote(s) for s in symbols])
    st = t.status()["streaming"]
    assert st["slow_closes"] == 1 and st["rate"]["skipped_ws"] > 0
    if not SANITIZED:
        assert t.rss_bytes() - rss0 < 64 * 1024 * 1024
    wait_for(lambda: t.status()["streaming"]["rate"]["groups"] == [] or None, what="its group to close")
    fast.sock.settimeout(5)
    post(t, quote("S0", bp=12345))
    fast.recv_until(lambda m: m.get("data", {}).get("bp") == 12345, limit=1_000_000)


def test_shutdown_with_throttled_clients_connected(stack):
    """An interval group's timer lives as long as its clients: a SIGTERM
    that closes them lets the loop end (and, sanitized, frees everything)."""
    clients = [ws_subscribe(stack, "AAPL", interval_ms=100 + i) for i in range(3)]
    s, head, _ = sse_open(stack, "symbols=AAPL&interval_ms=100")
    assert len(rate(stack)["groups"]) == 3
    assert stack.stop() == 0
    with open(stack.stdout_path, errors="replace") as f:
        out = f.read()
    assert "Sanitizer" not in out and "runtime error" not in out, out
    for c in clients:
        c.close()
    s.close()
