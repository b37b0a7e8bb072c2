"""Positions shared through Redis (issue 15, part 3): one Lua script per
message assigns the channel's seq, keeps its epoch, appends to the
channel's Redis Stream and PUBLISHes; any instance resumes any client from
that stream, also after its own restart. Real redis-server, real binary."""
import json

import pytest

from conftest import wait_for
from test_quotes import quote
from test_streaming import channels, sse_events, sse_open
from wsclient import WS

POS = "tickerd:{quotes:AAPL}:pos"
HIST = "tickerd:{quotes:AAPL}:hist"


def start(factory, redis_server, *extra):
    t = factory("--feed", "none", "--redis-url", redis_server.url, "--ping-interval-ms", "60000", *extra)
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    return t


def post(t, *quotes):
    r = t.request("POST", "/quotes", body=list(quotes))
    assert r.status == 202, r.body


def stream_seqs(redis_server):
    return [int(i.decode().split("-")[1]) for i, _ in redis_server.client().xrange(HIST)]


def wait_top(redis_server, n):
    wait_for(lambda: len(stream_seqs(redis_server)) >= n or None, what=f"{n} entries in the stream")


class Tape:
    """Every payload on quotes:AAPL, in Redis's order."""

    def __init__(self, redis_server):
        self.ps = redis_server.client().pubsub()
        self.ps.subscribe("quotes:AAPL")
        assert self.ps.get_message(timeout=2)["type"] == "subscribe"

    def take(self, n):
        out = []
        while len(out) < n:
            m = self.ps.get_message(timeout=5)
            assert m is not None, f"only {len(out)} of {n} messages"
            if m["type"] == "message":
                out.append(json.loads(m["data"]))
        return out


def test_two_instances_share_one_sequence(redis_server, tickerd_factory):
    a = start(tickerd_factory, redis_server)
    b = start(tickerd_factory, redis_server)
    tape = Tape(redis_server)
    for i in range(20):
        post(a if i % 2 else b, quote("AAPL", bp=i))
    got = tape.take(20)
    assert [q["seq"] for q in got] == list(range(1, 21))
    assert len({q["epoch"] for q in got}) == 1  # the channel's epoch, not an instance's
    assert sorted(q["bp"] for q in got) == list(range(20))
    assert stream_seqs(redis_server) == list(range(1, 21))
    pos = redis_server.client().hgetall(POS)
    assert pos[b"s"] == b"20" and pos[b"e"].decode() == got[0]["epoch"]
    # the stream holds the payloads exactly as published
    first = redis_server.client().xrange(HIST, count=1)[0][1][b"d"]
    assert json.loads(first) == got[0]


def test_stream_trimmed_by_maxlen(redis_server, tickerd_factory):
    t = start(tickerd_factory, redis_server, "--history-size", "10")
    for i in range(0, 600, 100):
        post(t, *[quote("AAPL", bp=i + j) for j in range(100)])
    wait_for(lambda: int(redis_server.client().hget(POS, "s") or 0) == 600 or None, what="600 positions")
    n = redis_server.client().xlen(HIST)
    # MAXLEN ~ trims whole stream nodes (100 entries by default): at least
    # 10 stay, and far fewer than 600.
    assert 10 <= n <= 250, n
    assert stream_seqs(redis_server)[-1] == 600


def test_noscript_after_script_flush_recovers(redis_server, tickerd_factory):
    t = start(tickerd_factory, redis_server)
    tape = Tape(redis_server)
    post(t, quote("AAPL", bp=1))
    assert tape.take(1)[0]["seq"] == 1
    redis_server.client().script_flush()
    post(t, *[quote("AAPL", bp=i) for i in range(2, 12)])
    got = tape.take(10)
    assert sorted(q["seq"] for q in got) == list(range(2, 12))
    pub = t.status()["redis"]["publisher"]
    assert pub["script_retries"] >= 1 and pub["errors"] == 0


def ws_resume(t, since, *symbols):
    ws = WS(t.port)
    ws.send_json({"action": "subscribe", "symbols": list(symbols or ["AAPL"]), "since": since})
    assert ws.recv_json()["type"] == "subscribed"
    msgs = []
    while True:
        m = ws.recv_json()
        msgs.append(m)
        if m["type"] == "recovery":
            return ws, msgs


def test_resume_from_another_instance(redis_server, tickerd_factory):
    a = start(tickerd_factory, redis_server)
    b = start(tickerd_factory, redis_server)  # never had a client of AAPL: its memory has nothing
    tape = Tape(redis_server)
    post(a, *[quote("AAPL", bp=i) for i in range(1, 31)])
    got = tape.take(30)
    since = f"AAPL:{got[4]['epoch']}:{got[4]['seq']}"
    ws, msgs = ws_resume(b, since)
    rec = msgs[-1]
    assert rec["recovered"] is True and rec["replayed"] == 25 and rec["since"] == since
    assert [m["data"]["bp"] for m in msgs[:-1]] == list(range(6, 31))
    assert [m["id"] for m in msgs[:-1]] == [f"AAPL:{got[0]['epoch']}:{s}" for s in range(6, 31)]
    assert b.status()["streaming"]["resumed_from_redis"] == 1
    # and live after the replay
    wait_for(lambda: "quotes:AAPL" in channels(redis_server) or None, what="SUBSCRIBE")
    post(a, quote("AAPL", bp=99))
    m = ws.recv_json()
    assert m["data"]["bp"] == 99 and m["id"].endswith(":31")


def test_resume_after_restart_sse(redis_server, tickerd_factory):
    t = start(tickerd_factory, redis_server)
    s, head, buf = sse_open(t, "symbols=AAPL")
    wait_for(lambda: "quotes:AAPL" in channels(redis_server) or None, what="SUBSCRIBE")
    post(t, *[quote("AAPL", bp=i) for i in range(1, 4)])
    evs, buf = sse_events(s, buf, 3)
    last = evs[-1]["id"]
    s.close()
    t.stop()
    other = start(tickerd_factory, redis_server)
    post(other, *[quote("AAPL", bp=i) for i in range(4, 9)])  # missed while down
    wait_top(redis_server, 8)
    again = start(tickerd_factory, redis_server)  # restarted: empty memory
    s, head, buf = sse_open(again, "symbols=AAPL", {"Last-Event-ID": last})
    evs, buf = sse_events(s, buf, 6)
    assert [json.loads(e["data"])["bp"] for e in evs[:5]] == [4, 5, 6, 7, 8]
    assert evs[5]["event"] == "recovery"
    rec = json.loads(evs[5]["data"])
    assert rec["recovered"] is True and rec["replayed"] == 5
    s.close()


def test_resume_past_the_stream_is_not_recovered(redis_server, tickerd_factory):
    t = start(tickerd_factory, redis_server, "--history-size", "10")
    tape = Tape(redis_server)
    post(t, *[quote("AAPL", bp=i) for i in range(1, 301)])
    got = tape.take(300)
    fresh = start(tickerd_factory, redis_server)
    # trimmed away: all or nothing, the latest quote and recovered false
    ws, msgs = ws_resume(fresh, f"AAPL:{got[0]['epoch']}:1")
    assert msgs[-1]["recovered"] is False and msgs[-1]["replayed"] == 0
    assert [m["data"]["bp"] for m in msgs[:-1]] == [300]
    # another epoch: the channel's hash is gone (FLUSHALL), a new epoch starts
    redis_server.client().flushall()
    post(t, quote("AAPL", bp=1000))
    new = tape.take(1)[0]
    assert new["seq"] == 1 and new["epoch"] != got[0]["epoch"]
    ws, msgs = ws_resume(start(tickerd_factory, redis_server), f"AAPL:{got[0]['epoch']}:299")
    assert msgs[-1]["recovered"] is False


def test_memory_positions_mode_uses_no_stream(redis_server, tickerd_factory):
    t = start(tickerd_factory, redis_server, "--memory-positions", "true")
    tape = Tape(redis_server)
    post(t, quote("AAPL", bp=1))
    q = tape.take(1)[0]
    assert q["seq"] == 1 and q["epoch"] == t.status()["quotes"]["epoch"]
    assert not redis_server.client().exists(HIST, POS)


def two_instances_after_five_quotes(redis_server, tickerd_factory):
    """Instances a and b on one Redis, AAPL seq 1-5 posted to a and seen on
    Redis: (a, b, a Redis client, the channel's epoch)."""
    a = start(tickerd_factory, redis_server)
    b = start(tickerd_factory, redis_server)
    tape = Tape(redis_server)
    post(a, *[quote("AAPL", bp=i) for i in range(1, 6)])
    return a, b, redis_server.client(), tape.take(5)[0]["epoch"]


def test_replayed_message_published_late_is_not_sent_twice(redis_server, tickerd_factory):
    """The script XADDs, then PUBLISHes; an instance reads the stream and
    receives the PUBLISH on two connections, so a resume's read can answer
    before the subscriber delivers a message the read already held. Made
    certain here: an entry written as the script writes it, but published
    only after the replay. The resumed client gets it once, then the next."""
    a, b, r, epoch = two_instances_after_five_quotes(redis_server, tickerd_factory)
    late = r.xrange(HIST, min="0-5", max="0-5")[0][1][b"d"].replace(b'"seq":5,', b'"seq":6,')
    r.hincrby(POS, "s", 1)
    r.xadd(HIST, {"d": late}, id="0-6")
    listeners = r.pubsub_numsub("quotes:AAPL")[0][1]
    ws, msgs = ws_resume(b, f"AAPL:{epoch}:5")
    assert [m["id"] for m in msgs[:-1]] == [f"AAPL:{epoch}:6"]
    assert msgs[-1]["recovered"] is True and msgs[-1]["replayed"] == 1
    wait_for(lambda: r.pubsub_numsub("quotes:AAPL")[0][1] == listeners + 1 or None, what="b's SUBSCRIBE")
    r.publish("quotes:AAPL", late)
    post(a, quote("AAPL", bp=7))
    m = ws.recv_until(lambda m: m["type"] == "quote")
    assert m["id"] == f"AAPL:{epoch}:7", "the replayed message came again live"
    ws.close()


def test_other_producer_passes_a_resumed_clients_hold(redis_server, tickerd_factory):
    """After a replay from Redis the client stays held for positioned
    messages up to the last replayed one (the test above); a message without
    a position, from another producer, cannot be a repeat and is delivered
    at once, not held until the next positioned quote."""
    a, b, r, epoch = two_instances_after_five_quotes(redis_server, tickerd_factory)
    listeners = r.pubsub_numsub("quotes:AAPL")[0][1]
    ws, msgs = ws_resume(b, f"AAPL:{epoch}:3")
    assert msgs[-1]["recovered"] is True and msgs[-1]["replayed"] == 2
    wait_for(lambda: r.pubsub_numsub("quotes:AAPL")[0][1] == listeners + 1 or None, what="b's SUBSCRIBE")
    r.publish("quotes:AAPL", json.dumps(quote("AAPL", bp=42)))
    m = ws.recv_until(lambda m: m["type"] == "quote")
    assert "id" not in m and m["data"]["bp"] == 42
    ws.close()
