"""Streaming (issue 4): WebSocket and SSE clients fed from Redis through the
hub, reference-counted subscriptions, snapshots, recovery, slow consumers,
Redis restarts, and the WebSocket protocol rules (a port of the relevant
Autobahn|Testsuite families: framing, reserved bits, opcodes, fragmentation,
UTF-8, close)."""
import json
import socket
import struct
import time

import pytest

from conftest import SANITIZED, is_closed, read_response, wait_for
from test_quotes import quote
from wsclient import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WS, frame


@pytest.fixture
def stack(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--ping-interval-ms", "60000")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    return t


def channels(redis):
    return sorted(c.decode() for c in redis.client().pubsub_channels("quotes:*"))


def ws_subscribe(t, *symbols, **extra):
    ws = WS(t.port)
    assert ws.open, ws.response.body
    assert ws.response.header("x-request-id") and ws.response.header("date")
    ws.send_json(dict(action="subscribe", symbols=list(symbols), **extra))
    msg = ws.recv_json()
    assert msg["type"] == "subscribed" and msg["symbols"] == list(symbols)
    return ws


def post(t, *quotes, settle=True):
    r = t.request("POST", "/quotes", body=list(quotes))
    assert r.status == 202, r.body
    if settle:
        settled(t)


def settled(t):
    """Every published message answered: with positions in Redis the 202
    comes before the script's answers, and a message enters the memory
    history (snapshots, resume from memory) with its answer."""
    def done():
        p = t.status()["redis"]["publisher"]
        return p["inflight"] == 0 and p["outbox"] == 0 or None
    wait_for(done, what="the publish script's answers")


def test_ws_subscribe_receives_quotes_with_positions(stack, redis_server):
    ws = ws_subscribe(stack, "AAPL")
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, what="SUBSCRIBE")
    post(stack, quote("AAPL", bp=1), quote("MSFT", bp=2), quote("AAPL", bp=3))
    a = ws.recv_json()
    b = ws.recv_json()
    assert a["type"] == "quote" and a["channel"] == "quotes:AAPL" and a["symbol"] == "AAPL"
    assert [a["data"]["bp"], b["data"]["bp"]] == [1, 3]
    epoch = a["data"]["epoch"]
    assert a["id"] == f"AAPL:{epoch}:1" and b["id"] == f"AAPL:{epoch}:2"
    ws.send_json({"action": "list"})
    assert ws.recv_json() == {"type": "list", "symbols": ["AAPL"], "topics": []}
    ws.close()


def test_subscriptions_are_reference_counted(stack, redis_server):
    a = ws_subscribe(stack, "AAPL", "MSFT")
    b = ws_subscribe(stack, "MSFT")
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL", "quotes:MSFT"] or None, what="two channels")
    numsub = dict(redis_server.client().pubsub_numsub("quotes:MSFT"))
    assert numsub[b"quotes:MSFT"] == 1  # one Redis subscription however many clients
    post(stack, quote("MSFT", bp=5))
    assert a.recv_json()["data"]["bp"] == 5 and b.recv_json()["data"]["bp"] == 5
    a.send_json({"action": "unsubscribe", "symbols": ["AAPL", "MSFT"]})
    assert a.recv_json() == {"type": "unsubscribed", "symbols": ["AAPL", "MSFT"]}
    wait_for(lambda: channels(redis_server) == ["quotes:MSFT"] or None, what="AAPL unsubscribed")
    b.close()
    wait_for(lambda: channels(redis_server) == [] or None, what="MSFT unsubscribed after the last client left")
    a.close()


def test_snapshot_then_live(stack, redis_server):
    post(stack, quote("AAPL", bp=41), quote("AAPL", bp=42))
    ws = ws_subscribe(stack, "AAPL")
    first = ws.recv_json()
    assert first["type"] == "quote" and first["data"]["bp"] == 42
    # The snapshot comes from the store at once; live quotes only once Redis
    # has the SUBSCRIBE (a loaded machine showed the gap: the next quote was
    # published before it and never came).
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, what="the AAPL subscription")
    post(stack, quote("AAPL", bp=43))
    assert ws.recv_json()["data"]["bp"] == 43


def test_history_on_subscribe(stack):
    post(stack, *[quote("MSFT", bp=i) for i in range(1, 8)])
    ws = ws_subscribe(stack, "MSFT", history=5)
    h = ws.recv_json()
    assert h["type"] == "history" and h["symbol"] == "MSFT"
    assert [q["bp"] for q in h["quotes"]] == [3, 4, 5, 6, 7]


def test_ws_recovery_with_since(stack):
    ws = ws_subscribe(stack, "AAPL", "MSFT")
    post(stack, quote("AAPL", bp=1))
    last = ws.recv_json()
    ws.close()
    post(stack, quote("MSFT", bp=2), quote("AAPL", bp=3))  # missed while away
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "symbols": ["AAPL", "MSFT"], "since": last["id"]})
    assert ws.recv_json()["type"] == "subscribed"
    replay = [ws.recv_json(), ws.recv_json()]
    assert [(m["symbol"], m["data"]["bp"]) for m in replay] == [("MSFT", 2), ("AAPL", 3)]
    rec = ws.recv_json()
    assert rec["type"] == "recovery" and rec["recovered"] is True and rec["replayed"] == 2


def test_ws_recovery_unknown_position_says_not_recovered(stack):
    post(stack, quote("AAPL", bp=9))
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "symbols": ["AAPL"], "since": "AAPL:0123456789abcdef:5"})
    assert ws.recv_json()["type"] == "subscribed"
    snap = ws.recv_json()
    assert snap["type"] == "quote" and snap["data"]["bp"] == 9
    rec = ws.recv_json()
    assert rec["type"] == "recovery" and rec["recovered"] is False


def sse_open(t, query, headers=None, http="1.1"):
    """http="1.0" through a proxy: nginx then passes the body on as it
    comes, without the chunked framing these readers do not parse."""
    s = t.connect()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall(f"GET /stream?{query} HTTP/{http}\r\nHost: x\r\n{extra}\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, _, rest = buf.partition(b"\r\n\r\n")
    return s, head.decode(), rest


def sse_events(s, buf, n):
    events = []
    while len(events) < n:
        while b"\n\n" not in buf:
            buf += s.recv(65536)
        block, _, buf = buf.partition(b"\n\n")
        ev = {}
        for line in block.decode().split("\n"):
            if line.startswith(":") or not line:
                continue
            k, _, v = line.partition(": ")
            ev[k] = v
        if "event" in ev or "data" in ev:
            events.append(ev)
    return events, buf


def test_sse_stream_and_resume(stack):
    s, head, buf = sse_open(stack, "symbols=AAPL,MSFT")
    assert " 200 " in head.split("\r\n")[0] and "text/event-stream" in head
    post(stack, quote("AAPL", bp=1), quote("MSFT", bp=2))
    evs, buf = sse_events(s, buf, 2)
    assert [e["event"] for e in evs] == ["quote", "quote"]
    assert json.loads(evs[0]["data"])["bp"] == 1 and evs[0]["id"].startswith("AAPL:")
    s.close()
    post(stack, quote("MSFT", bp=3))
    s, head, buf = sse_open(stack, "symbols=AAPL,MSFT", {"Last-Event-ID": evs[1]["id"]})
    evs, buf = sse_events(s, buf, 2)
    assert json.loads(evs[0]["data"])["bp"] == 3
    assert evs[1]["event"] == "recovery" and json.loads(evs[1]["data"])["recovered"] is True
    s.close()


def test_sse_bad_requests(stack):
    assert stack.get("/stream").status == 400
    assert stack.get("/stream?symbols=aapl!").status == 400


def test_bad_actions_keep_the_connection(stack):
    ws = WS(stack.port)
    ws.send_raw(frame(OP_TEXT, "{not json"))
    assert ws.recv_json()["error"] == "bad_json"
    ws.send_json({"action": "dance"})
    assert ws.recv_json()["error"] == "bad_action"
    ws.send_json({"action": "subscribe", "symbols": ["GOOD", "bad sym"]})
    err = ws.recv_json()
    assert err["error"] == "bad_symbol" and err["symbol"] == "bad sym"
    assert ws.recv_json() == {"type": "subscribed", "symbols": ["GOOD"]}
    ws.send_raw(frame(OP_BINARY, b"\x00\x01"))
    assert ws.recv_json()["error"] == "bad_message"
    ws.send_raw(frame(OP_PING, b"hi"))
    assert ws.recv_frame() == (OP_PONG, b"hi")


VIOLATIONS = [
    pytest.param(frame(OP_TEXT, "{}", mask=False), 1002, id="unmasked client frame"),
    pytest.param(frame(OP_TEXT, "{}", rsv=4), 1002, id="reserved bit"),
    pytest.param(frame(3, b""), 1002, id="reserved opcode"),
    pytest.param(frame(OP_PING, b"", fin=False), 1002, id="fragmented control frame"),
    pytest.param(frame(OP_PING, b"x" * 126), 1002, id="control frame over 125 bytes"),
    pytest.param(frame(OP_CONT, b"x"), 1002, id="continuation without start"),
    pytest.param(frame(OP_TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"), 1007, id="invalid UTF-8"),
    pytest.param(frame(OP_TEXT, b"\xf0\x90", fin=False) + frame(OP_CONT, b"\x28\x80"), 1007, id="UTF-8 broken across fragments"),
    pytest.param(frame(OP_TEXT, b"x" * 70000), 1009, id="oversize message"),
    pytest.param(frame(OP_CLOSE, b"\x03"), 1002, id="close with 1 byte"),
    pytest.param(frame(OP_CLOSE, struct.pack("!H", 1005)), 1002, id="close with invalid code"),
]


@pytest.mark.parametrize("data,code", VIOLATIONS)
def test_protocol_violations_close_with_the_right_code(stack, data, code):
    ws = WS(stack.port)
    try:
        ws.send_raw(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before it has read an oversize frame
    assert ws.expect_close() == code
    assert is_closed(ws.sock, timeout=3)
    wait_for(lambda: stack.status()["streaming"]["ws_clients"] == 0 or None, what="session freed")


def test_fragmented_message_is_reassembled(stack):
    ws = WS(stack.port)
    msg = json.dumps({"action": "subscribe", "symbols": ["AAPL"]}).encode()
    ws.send_raw(frame(OP_TEXT, msg[:5], fin=False) + frame(OP_PING, b"p") + frame(OP_CONT, msg[5:12], fin=False) +
                frame(OP_CONT, msg[12:]))
    assert ws.recv_frame() == (OP_PONG, b"p")
    assert ws.recv_json()["type"] == "subscribed"


def test_close_handshake_is_echoed(stack):
    ws = WS(stack.port)
    ws.send_raw(frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
    assert ws.expect_close() == 1000
    assert is_closed(ws.sock)


def test_handshake_errors(stack):
    r = stack.get("/ws")
    assert r.status == 426
    r = stack.raw(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert r.status == 400


def test_slow_client_is_closed_and_memory_bounded(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--client-soft-bytes", "65536",
                        "--client-hard-bytes", "262144", "--client-soft-ms", "500")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis")
    slow = WS(t.port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.send_json({"action": "subscribe", "symbols": [f"S{i}" for i in range(20)]})
    fast = ws_subscribe(t, "S0")
    rss0 = t.rss_bytes()
    big = "x" * 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and t.status()["streaming"]["slow_closes"] == 0:
        post(t, *[dict(quote(f"S{i % 20}"), z="C") for i in range(500)])
    st = t.status()["streaming"]
    assert st["slow_closes"] == 1
    assert st["conflated"] > 0
    if not SANITIZED:
        assert t.rss_bytes() - rss0 < 64 * 1024 * 1024
    # the fast client is still served
    fast.sock.settimeout(5)
    post(t, quote("S0", bp=12345))
    fast.recv_until(lambda m: m.get("data", {}).get("bp") == 12345, limit=1_000_000)
    assert any(e["event"] == "slow_client_closed" for e in t.log_events()) or wait_for(
        lambda: any(e["event"] == "slow_client_closed" for e in t.log_events()) or None, what="log line")


def test_slow_client_that_caught_up_is_not_closed(redis_server, tickerd_factory):
    """Going over the soft limit starts --client-soft-ms; emptying the queue
    stops it. A client that fell behind, caught up, and falls behind again
    later gets the whole --client-soft-ms again, not what was left."""
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--client-soft-bytes", "32768",
                        "--client-hard-bytes", "16777216", "--client-soft-ms", "1000")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis")
    # A default receive buffer: a small one would make catching up take minutes.
    slow = WS(t.port)
    slow.send_json({"action": "subscribe", "symbols": [f"S{i}" for i in range(20)]})

    def fall_behind(conflated_before):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and t.status()["streaming"]["conflated"] == conflated_before:
            post(t, *[dict(quote(f"S{i % 20}"), z="C") for i in range(500)])
        return t.status()["streaming"]["conflated"]

    conflated = fall_behind(0)
    assert conflated > 0
    assert not is_closed(slow.sock, timeout=0.5)   # reads everything: the queue empties
    time.sleep(1.3)                                 # longer than --client-soft-ms
    assert fall_behind(conflated) > conflated       # over the soft limit again
    assert t.status()["streaming"]["slow_closes"] == 0
    assert not is_closed(slow.sock, timeout=0.5)


def test_pings_keep_answering_clients_and_idle_ones_are_closed(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--ping-interval-ms", "200",
                        "--stream-idle-ms", "1000")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis")
    alive, idle = ws_subscribe(t, "AAPL"), ws_subscribe(t, "AAPL")
    pings, deadline = 0, time.monotonic() + 1.6
    while time.monotonic() < deadline:
        alive.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            op, payload = alive.recv_frame()
        except socket.timeout:
            break
        if op == OP_PING:
            pings += 1
            alive.send_raw(frame(OP_PONG, payload))
    assert pings >= 2                      # one per 200 ms after the first (due within 200 ms)
    idle.sock.settimeout(5)
    assert idle.expect_close() == 1001     # it never answered: "idle timeout"
    alive.sock.settimeout(5)
    alive.send_json({"action": "list"})
    assert alive.recv_json()["type"] == "list"


def test_sse_keepalive_comments(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--ping-interval-ms", "200")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis")
    s, head, buf = sse_open(t, "symbols=AAPL")
    s.settimeout(5)
    while buf.count(b": keep-alive\n\n") < 2:
        buf += s.recv(4096)
    s.close()


def test_redis_restart_keeps_clients_and_resubscribes(stack, redis_server):
    ws = ws_subscribe(stack, "AAPL")
    post(stack, quote("AAPL", bp=1))
    assert ws.recv_json()["data"]["bp"] == 1
    redis_server.stop()
    time.sleep(0.3)
    redis_server.start()
    wait_for(lambda: channels(redis_server) == ["quotes:AAPL"] or None, timeout=15, what="re-SUBSCRIBE")
    wait_for(lambda: stack.get("/readyz").status == 200 or None, timeout=15, what="ready")
    post(stack, quote("AAPL", bp=2))
    rec = ws.recv_json()
    # the client learns whether anything was lost: here nothing (seq 2 follows 1)
    assert rec["type"] == "recovery" and rec["recovered"] is True
    assert ws.recv_json()["data"]["bp"] == 2


def test_another_instance_publishes(redis_server, tickerd_factory):
    a = tickerd_factory("--feed", "none", "--redis-url", redis_server.url)
    b = tickerd_factory("--feed", "none", "--redis-url", redis_server.url)
    for t in (a, b):
        wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis")
    ws = ws_subscribe(b, "MSFT")
    wait_for(lambda: channels(redis_server) == ["quotes:MSFT"] or None, what="B subscribed")
    post(a, quote("MSFT", bp=77))
    got = ws.recv_json()
    assert got["data"]["bp"] == 77
    # positions are the channel's, kept in Redis by the publish script
    assert got["data"]["epoch"] == redis_server.client().hget("tickerd:{quotes:MSFT}:pos", "e").decode()


def test_tasks_topic(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--task-phases-ms", "50,50",
                        "--task-error-rate", "0")
    ws = WS(t.port)
    ws.send_json({"action": "subscribe", "topics": ["tasks"]})
    assert ws.recv_json()["type"] == "subscribed"
    tid = t.get("/hello").json()["task_id"]
    states = []
    while "completed" not in states:
        m = ws.recv_json()
        if m["type"] == "task" and m["task"]["id"] == tid:
            states.append(m["task"]["state"])
    assert states == ["pending", "running", "running", "completed"]
