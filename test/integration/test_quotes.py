"""The quote pipeline (issue 3): POST /quotes and the simulated feed into
per-ticker Redis channels, against a real redis-server."""
import json
import re
import time

import pytest

from conftest import RedisServer, read_response, wait_for

KEYS = ["T", "S", "bx", "bp", "bs", "ax", "ap", "as", "c", "z", "t", "seq", "epoch"]


def quote(sym, bp=100.0, ap=100.5, t="2026-11-21T20:00:00.123456789Z"):
    return {"T": "q", "S": sym, "bx": "V", "bp": bp, "bs": 3, "ax": "V", "ap": ap, "as": 1, "c": ["R"], "z": "C",
            "t": t}


def subscriber(redis, *channels, pattern=False):
    ps = redis.client().pubsub(ignore_subscribe_messages=True)
    (ps.psubscribe if pattern else ps.subscribe)(*channels)
    wait_for(lambda: ps.get_message(timeout=0.05) is None or True, what="subscription")
    return ps


def drain(ps, n, timeout=5):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.1)
        if m and m["type"] in ("message", "pmessage"):
            got.append((m["channel"].decode(), json.loads(m["data"])))
    return got


@pytest.fixture
def pipe(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url)
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    return t


def test_subscribers_get_their_quotes_in_order(pipe, redis_server):
    aapl = subscriber(redis_server, "quotes:AAPL")
    msft = subscriber(redis_server, "quotes:MSFT")
    everything = subscriber(redis_server, "quotes:*", pattern=True)
    batch = [quote("AAPL", bp=1 + i, ap=2 + i) if i % 2 == 0 else quote("MSFT", bp=10 + i, ap=11 + i) for i in range(20)]
    r = pipe.request("POST", "/quotes", body=batch)
    assert r.status == 202, r.body
    assert r.json()["accepted"] == 20 and r.json()["quotes"] == 20
    a = drain(aapl, 10)
    m = drain(msft, 10)
    allq = drain(everything, 20)
    assert [q["bp"] for _, q in a] == [1 + i for i in range(0, 20, 2)]
    assert [q["bp"] for _, q in m] == [10 + i for i in range(1, 20, 2)]
    assert [q["seq"] for _, q in a] == list(range(1, 11))
    assert len(allq) == 20 and {c for c, _ in allq} == {"quotes:AAPL", "quotes:MSFT"}
    for _, q in a:
        assert list(q.keys()) == KEYS
        assert re.fullmatch(r"[0-9a-f]{16}", q["epoch"])
    assert drain(aapl, 1, timeout=0.3) == []  # nothing extra


def test_one_object_is_accepted(pipe, redis_server):
    ps = subscriber(redis_server, "quotes:AAL")
    r = pipe.request("POST", "/quotes", body=quote("AAL"))
    assert r.status == 202 and r.json()["accepted"] == 1
    assert drain(ps, 1)[0][1]["S"] == "AAL"


def test_bad_batch_publishes_nothing(pipe, redis_server):
    ps = subscriber(redis_server, "quotes:*", pattern=True)
    bad = [quote("AAPL"), quote("MSFT"), dict(quote("AAPL"), bp="cheap")]
    r = pipe.request("POST", "/quotes", body=bad)
    assert r.status == 400
    assert "item 2" in r.json()["message"] and '"bp"' in r.json()["message"]
    r = pipe.request("POST", "/quotes", body=[quote("aapl!")])
    assert r.status == 400 and "item 0" in r.json()["message"]
    r = pipe.request("POST", "/quotes", body="[{not json")
    assert r.status == 400
    r = pipe.request("POST", "/quotes", body='"a string"')
    assert r.status == 400
    assert drain(ps, 1, timeout=0.5) == []
    assert pipe.get("/quotes/AAPL").status == 404
    st = pipe.status()["quotes"]
    assert st["batches_rejected"] == 4 and st["queued"] == 0


def test_oversize_body_is_413(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--max-body-bytes", "2000")
    r = t.request("POST", "/quotes", body=[quote("AAPL")] * 40)
    assert r.status == 413


def test_ingest_token(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, env={"TICKERD_INGEST_TOKEN": "s3cret"})
    assert t.request("POST", "/quotes", body=[quote("AAPL")]).status == 401
    assert t.request("POST", "/quotes", body=[quote("AAPL")], headers={"Authorization": "Bearer nope"}).status == 401
    r = t.request("POST", "/quotes", body=[quote("AAPL")], headers={"Authorization": "Bearer s3cret"})
    assert r.status == 202
    assert "s3cret" not in open(t.log_path).read()


def test_latest_quote_endpoints_and_hash(pipe, redis_server):
    pipe.request("POST", "/quotes", body=[quote("AAPL", bp=1), quote("AAPL", bp=2), quote("MSFT", bp=3)])
    # 202 means accepted: with positions in Redis (the default) a quote is
    # stored once the publish script's reply brings its position back
    latest = wait_for(lambda: (q := pipe.get("/quotes/AAPL").json()).get("seq") == 2 and q or None,
                      what="AAPL's position from the publish script")
    assert latest["bp"] == 2 and latest["seq"] == 2
    assert pipe.get("/quotes/ZZZZ").status == 404
    assert pipe.get("/quotes/bad!sym").status == 400
    listing = pipe.get("/quotes").json()
    assert set(listing["quotes"]) == {"AAPL", "MSFT"}
    hist = pipe.get("/quotes/AAPL/history?limit=5").json()
    assert [q["bp"] for q in hist["quotes"]] == [1, 2]
    r = redis_server.client()
    wait_for(lambda: r.hget("quotes:last", "AAPL") is not None or None, what="quotes:last")
    assert json.loads(r.hget("quotes:last", "AAPL"))["bp"] == 2


def test_sim_feed_publishes_alpaca_quotes(redis_server, tickerd_factory):
    ps = subscriber(redis_server, "quotes:*", pattern=True)
    t = tickerd_factory("--feed", "sim", "--sim-rate", "200", "--symbols", "AAPL,MSFT", "--redis-url", redis_server.url)
    got = drain(ps, 20)
    assert len(got) == 20
    for channel, q in got:
        assert channel == f"quotes:{q['S']}" and q["S"] in ("AAPL", "MSFT")
        assert q["ap"] > q["bp"] > 0 and q["T"] == "q"
    assert t.status()["quotes"]["received"]["quotes"] >= 20


def test_redis_refused_at_start_then_arrives(tickerd_factory):
    redis = RedisServer(start=False)  # a port with nothing listening yet
    try:
        t = tickerd_factory("--feed", "none", "--redis-url", redis.url)
        assert t.get("/healthz").status == 200
        r = t.get("/readyz")
        assert r.status == 503 and "redis" in r.json()["reason"]
        assert t.request("POST", "/quotes", body=[quote("AAPL")]).status == 202  # kept in the outbox
        redis.start()
        ps = subscriber(redis, "quotes:AAPL")
        wait_for(lambda: t.get("/readyz").status == 200 or None, timeout=10, what="reconnect")
        t.request("POST", "/quotes", body=[quote("AAPL", bp=7)])
        # the quote kept in the outbox (flushed on connect) may arrive first, if we subscribed in time
        got = [q for _, q in drain(ps, 2, timeout=2)]
        assert got[-1]["bp"] == 7 and [q["seq"] for q in got] == sorted(q["seq"] for q in got)
    finally:
        redis.cleanup()


def test_redis_killed_mid_stream_then_restarted(pipe, redis_server):
    for i in range(5):
        pipe.request("POST", "/quotes", body=[quote("AAPL", bp=i + 1)])
    redis_server.stop()
    # HTTP keeps being served while Redis is gone; quotes conflate per symbol
    for i in range(50):
        r = pipe.request("POST", "/quotes", body=[quote("AAPL", bp=100 + i), quote("MSFT", bp=200 + i)])
        assert r.status == 202
        assert pipe.get("/healthz").status == 200
    assert pipe.get("/readyz").status == 503
    redis_server.start()
    ps = subscriber(redis_server, "quotes:*", pattern=True)
    wait_for(lambda: pipe.get("/readyz").status == 200 or None, timeout=10, what="reconnect")
    # the outbox flushed the newest quote of each symbol: a subscriber that joined
    # after the flush sees new ones; the hash holds the newest
    r = redis_server.client()
    wait_for(lambda: r.hget("quotes:last", "MSFT") is not None or None, what="quotes:last after reconnect")
    assert json.loads(r.hget("quotes:last", "MSFT"))["bp"] == 249

    def settled():
        p = pipe.status()["redis"]["publisher"]
        return p if p["inflight"] == 0 and p["outbox"] == 0 else None

    p = wait_for(settled, what="publisher to settle")
    q = pipe.status()["quotes"]
    assert p["reconnects"] >= 1
    assert p["conflated"] >= 90
    # every quote handed to the publisher was published, conflated, dropped or lost with the connection
    assert p["published"] + p["conflated"] + p["dropped"] + p["errors"] == q["queued"]
    pipe.request("POST", "/quotes", body=[quote("AAPL", bp=999)])
    # flushed outbox entries (the newest of each symbol) may come first
    got = [q for _, q in drain(ps, 3, timeout=2) if q["S"] == "AAPL"]
    assert got[-1]["bp"] == 999 and all(q["bp"] == 149 for q in got[:-1])


def test_post_answers_wait_while_redis_is_behind(redis_server, tickerd_factory):
    """With more PUBLISH unanswered than --ingest-max-backlog, a POST's 202
    waits for Redis instead of letting the outbox conflate its quotes."""
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--ingest-max-backlog", "10")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    ps = subscriber(redis_server, "quotes:AAPL")
    batch = [quote("AAPL", bp=1 + i) for i in range(100)]
    body = json.dumps(batch).encode()
    post = (b"POST /quotes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body)) + body
    # Redis stops answering normal clients for a while: the 100 PUBLISH stay unanswered
    redis_server.client().execute_command("CLIENT", "PAUSE", "1500", "ALL")  # < INGEST_PACE_MAX_WAIT_MS
    paused_at = time.monotonic()
    waiting = t.connect()
    waiting.sendall(post)
    leaving = t.connect()
    leaving.sendall(post)

    def paced():
        s = t.status()["quotes"]["paced_posts"]
        return s if s["waiting"] == 2 else None

    assert wait_for(paced, timeout=2, what="two answers waiting")["total"] == 2
    assert time.monotonic() - paused_at < 1.5, "Redis woke up before the check ran"
    # a waiting connection is not read (see README): this client is noticed
    # gone when its answer is written
    leaving.close()
    waiting.settimeout(10)
    resp, _ = read_response(waiting)
    waiting.close()
    assert resp.status == 202 and resp.json()["accepted"] == 100
    got = [q["bp"] for _, q in drain(ps, 200, timeout=5)]
    assert got == [1 + i for i in range(100)] * 2  # every quote of both batches, in order
    s = t.status()
    assert s["redis"]["publisher"]["conflated"] == 0
    assert s["quotes"]["paced_posts"] == {"total": 2, "waiting": 0, "expired": 0}
    assert t.get("/healthz").status == 200


def test_post_answers_do_not_wait_for_a_redis_that_is_down(pipe, redis_server):
    redis_server.stop()
    wait_for(lambda: pipe.get("/readyz").status == 503 or None, what="publisher to notice")
    r = pipe.request("POST", "/quotes", body=[quote("AAPL", bp=i) for i in range(100)])
    assert r.status == 202
    assert pipe.status()["quotes"]["paced_posts"]["total"] == 0


def test_post_answer_does_not_wait_for_a_stalled_redis_forever(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--ingest-max-backlog", "10")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    redis_server.client().execute_command("CLIENT", "PAUSE", "4000", "ALL")  # > INGEST_PACE_MAX_WAIT_MS
    r = t.request("POST", "/quotes", body=[quote("AAPL", bp=i) for i in range(100)])
    assert r.status == 202
    assert t.status()["quotes"]["paced_posts"] == {"total": 1, "waiting": 0, "expired": 1}


def test_heartbeats_are_not_counted_as_published_quotes(pipe, redis_server):
    """The subscriber's health check PUBLISHes through the first publisher;
    those must stay out of published/errors, whose sum with conflated and
    dropped is what the pipeline queued."""
    ps = subscriber(redis_server, "*", pattern=True)
    hb = wait_for(lambda: next((m for m in [ps.get_message(timeout=0.1)]
                                if m and m["type"] == "pmessage" and not m["channel"].startswith(b"quotes:")), None),
                  what="a heartbeat")
    assert hb["data"]
    p = pipe.status()["redis"]["publisher"]
    assert p["published"] == 0 and p["errors"] == 0 and pipe.status()["quotes"]["queued"] == 0
