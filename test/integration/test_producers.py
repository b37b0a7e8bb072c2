"""Issue 15, part 4: messages that another producer (redis-cli, another
backend) PUBLISHes on a quote channel without tickerd's position ("seq" and
"epoch"). Against the real binary and a real redis-server: they reach
WebSocket and SSE clients without an id, are the latest quote for snapshots,
leave the positioned sequence alone (no gap, no recovery message), and bad
ones are refused, counted and logged at a bounded rate."""
import json
import time

from conftest import wait_for
from test_hostile import Sse, channel_count, post, quote, stack
from wsclient import WS

# What `redis-cli PUBLISH quotes:AAPL '...'` sends: a quote with no position.
FOREIGN = '{"T":"q","S":"AAPL","bp":1,"ap":2,"t":"2026-12-03T10:00:00Z"}'


def ws_subscribe(t, *symbols):
    """A WebSocket client subscribed to `symbols`, past its "subscribed"."""
    ws = WS(t.port)
    assert ws.open, ws.response.status
    ws.send_json({"action": "subscribe", "symbols": list(symbols)})
    ws.recv_until(lambda m: m["type"] == "subscribed")
    return ws


def refusals(t, channel):
    return [e for e in t.log_events() if e["event"] == "stream_message_refused" and e["channel"] == channel]


def test_positionless_quote_reaches_every_client_without_an_id(redis_server, tickerd_factory):
    """Fails on the code before part 4: the message was counted as
    bad_messages and dropped, so no client saw it."""
    t = stack(redis_server, tickerd_factory)
    ws = ws_subscribe(t, "AAPL")
    sse = Sse(t, "symbols=AAPL")
    wait_for(lambda: channel_count(t) == 1 or None, what="AAPL subscribed")
    r = redis_server.client()
    assert r.publish("quotes:AAPL", FOREIGN) == 1

    m = ws.recv_json()
    assert m["type"] == "quote" and m["channel"] == "quotes:AAPL" and m["symbol"] == "AAPL"
    assert "id" not in m
    assert m["data"] == json.loads(FOREIGN)
    ev = sse.events(1)[0]
    assert ev["event"] == "quote" and "id" not in ev
    assert ev["data"] == FOREIGN   # the producer's bytes, as they were published

    # the latest quote, for GET and for a new subscriber's snapshot
    assert t.get("/quotes/AAPL").json() == json.loads(FOREIGN)
    late_ws = ws_subscribe(t, "AAPL")
    snap = late_ws.recv_json()
    assert snap["type"] == "quote" and "id" not in snap and snap["data"] == json.loads(FOREIGN)
    late_sse = Sse(t, "symbols=AAPL")
    ev = late_sse.events(1)[0]
    assert "id" not in ev and ev["data"] == FOREIGN
    late_ws.close()
    late_sse.close()

    st = t.status()["streaming"]
    assert st["unpositioned"] == 1 and st["bad_messages"] == 0 and st["misfiled"] == 0
    assert "tickerd_stream_unpositioned_total 1" in t.get("/metrics").body.decode()
    ws.close()
    sse.close()


def test_positioned_quotes_around_positionless_ones_keep_their_sequence(redis_server, tickerd_factory):
    """tickerd's own quotes (POST /quotes) interleaved with another
    producer's: positions 1 and 2 follow each other with no gap or recovery
    message, and a resume from position 1 replays what came after it, the
    positionless message included."""
    t = stack(redis_server, tickerd_factory)
    ws = ws_subscribe(t, "AAPL")
    sse = Sse(t, "symbols=AAPL")
    wait_for(lambda: channel_count(t) == 1 or None, what="AAPL subscribed")
    r = redis_server.client()
    other = lambda bp: json.dumps(dict(json.loads(FOREIGN), bp=bp), separators=(",", ":"))
    # one at a time: a 202 means queued for Redis, so a PUBLISH right after
    # it could reach Redis first
    msgs = []
    for send in (lambda: r.publish("quotes:AAPL", other(1)),
                 lambda: post(t, quote("AAPL", bp=2, t="2026-12-03T10:00:01Z")),
                 lambda: r.publish("quotes:AAPL", other(3)),
                 lambda: post(t, quote("AAPL", bp=4, t="2026-12-03T10:00:03Z"))):
        send()
        msgs.append(ws.recv_json())
    assert [m["type"] for m in msgs] == ["quote"] * 4   # no recovery message in between
    assert [m["data"]["bp"] for m in msgs] == [1, 2, 3, 4]
    assert ["id" in m for m in msgs] == [False, True, False, True]
    assert msgs[1]["data"]["seq"] == 1 and msgs[3]["data"]["seq"] == 2
    assert msgs[1]["id"].endswith(":1") and msgs[3]["id"].endswith(":2")
    evs = sse.events(4)
    assert [e["event"] for e in evs] == ["quote"] * 4
    assert [e.get("id") for e in evs] == [None, msgs[1]["id"], None, msgs[3]["id"]]
    assert sse.nothing_more()
    st = t.status()["streaming"]
    assert st["gaps"] == 0 and st["unpositioned"] == 2
    time.sleep(0.2)   # the log is flushed every 100 ms
    assert not [e for e in t.log_events() if e["event"] == "stream_gap"]

    # EventSource resumes with the last id it saw: position 1, since the
    # positionless event after it had none
    resumed = Sse(t, "symbols=AAPL", {"Last-Event-ID": msgs[1]["id"]})
    evs = resumed.events(3)
    assert [json.loads(e["data"]).get("bp") for e in evs[:2]] == [3, 4]
    assert "id" not in evs[0] and evs[1]["id"] == msgs[3]["id"]
    rec = json.loads(evs[2]["data"])
    assert evs[2]["event"] == "recovery" and rec["recovered"] is True and rec["replayed"] == 2
    resumed.close()
    ws.close()
    sse.close()


def test_malformed_messages_are_counted_and_logged_once_per_channel(redis_server, tickerd_factory):
    """Fails on the code before part 4: one refusal line a second for all
    channels together, so MAL2's line was swallowed by MAL1's."""
    t = stack(redis_server, tickerd_factory)
    sse = Sse(t, "symbols=MAL1,MAL2")
    wait_for(lambda: channel_count(t) == 2 or None, what="MAL1 and MAL2 subscribed")
    r = redis_server.client()
    for bad in ("not json", "[1,2]", '{"S":"MAL1"', '"MAL1"', '{"S":"MAL1","S":"MAL1"}'):
        r.publish("quotes:MAL1", bad)
    r.publish("quotes:MAL2", "{")
    # a good message after them: once it arrives, they were all handled
    good = '{"T":"q","S":"MAL1","bp":5}'
    r.publish("quotes:MAL1", good)
    ev = sse.events(1)[0]
    assert ev["data"] == good and sse.nothing_more()
    st = t.status()["streaming"]
    assert st["bad_messages"] == 6 and st["unpositioned"] == 1
    assert "tickerd_stream_refused_total 6" in t.get("/metrics").body.decode()
    logged = wait_for(lambda: len(refusals(t, "quotes:MAL2")) == 1 and refusals(t, "quotes:MAL1"),
                      what="one refusal line per channel")
    assert len(logged) == 1 and logged[0]["reason"] == "not a JSON object" and logged[0]["suppressed"] == 0
    # more within the minute: counted, not logged
    for _ in range(3):
        r.publish("quotes:MAL1", "garbage")
    r.publish("quotes:MAL1", good)
    sse.events(1)
    assert t.status()["streaming"]["bad_messages"] == 9
    time.sleep(0.2)   # the log is flushed every 100 ms
    assert len(refusals(t, "quotes:MAL1")) == 1
    assert t.get("/healthz").status == 200
    sse.close()


def test_misfiled_positionless_message_is_refused(redis_server, tickerd_factory):
    """Another producer's quote of MSFT on quotes:EXT3 (or one without "S") is
    not EXT3's: refused as misfiled, as positioned ones are since issue 14."""
    t = stack(redis_server, tickerd_factory)
    sse = Sse(t, "symbols=EXT3")
    wait_for(lambda: channel_count(t) == 1 or None, what="EXT3 subscribed")
    r = redis_server.client()
    r.publish("quotes:EXT3", '{"T":"q","S":"MSFT","bp":1}')
    r.publish("quotes:EXT3", '{"T":"q","bp":1}')
    good = '{"T":"q","S":"EXT3","bp":7}'
    r.publish("quotes:EXT3", good)
    ev = sse.events(1)[0]
    assert ev["data"] == good and sse.nothing_more()
    st = t.status()["streaming"]
    assert st["misfiled"] == 2 and st["unpositioned"] == 1
    assert t.get("/quotes/EXT3").json()["bp"] == 7
    assert t.get("/quotes/MSFT").status == 404
    refused = wait_for(lambda: refusals(t, "quotes:EXT3") or None, what="the refusal logged")
    assert refused[0]["reason"] == 'the payload\'s symbol "S" is not the channel\'s'
    sse.close()
