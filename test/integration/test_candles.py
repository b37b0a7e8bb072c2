"""Candles (issue 17): bars built from POSTed trades (whose timestamps the
test chooses) agree on the Redis channels, over WebSocket, over SSE and
from GET /candles; bad trades are counted and logged once; with two
instances only the lease holder publishes bars."""
import datetime
import json
import time

import pytest

from conftest import wait_for
from test_streaming import sse_events, sse_open
from wsclient import WS


def rfc3339(ns):
    s, frac = divmod(ns, 1_000_000_000)
    d = datetime.datetime.fromtimestamp(s, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def trade(sym, ns, p, s, i=1):
    return {"T": "t", "S": sym, "i": i, "x": "V", "p": p, "s": s, "c": ["@"], "z": "C", "t": rfc3339(ns)}


def post(t, *items):
    r = t.request("POST", "/quotes", body=list(items))
    assert r.status == 202, r.body


@pytest.fixture
def stack(redis_server, tickerd_factory):
    # no grace: a bar closes as soon as a later trade arrives
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--candle-grace-ms", "0",
                        "--candle-timeframes", "1s,1m")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    return t


def redis_bars(ps, want, timeout=5):
    """Closed bars from a Redis subscription, keyed by bar time."""
    got = {}
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.1)
        if m and m["type"] == "message":
            b = json.loads(m["data"])
            if b["closed"]:
                assert b["t"] not in got, "a closed bar was published twice"
                got[b["t"]] = b
    return got


def test_bars_agree_on_redis_ws_sse_and_get(stack, redis_server):
    ps = redis_server.client().pubsub(ignore_subscribe_messages=True)
    ps.subscribe("candles:1s:AAPL")
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "candles": {"symbols": ["AAPL"], "tf": "1s"}})
    assert ws.recv_json() == {"type": "subscribed", "candles": {"symbols": ["AAPL"], "tf": "1s"}}
    s, head, buf = sse_open(stack, "candles=AAPL&tf=1s")
    assert " 200 " in head.split("\r\n")[0]
    # one Redis subscription for both clients of the instance, besides the test's own
    wait_for(lambda: redis_server.client().pubsub_numsub("candles:1s:AAPL")[0][1] == 2 or None,
             what="tickerd's subscription to candles:1s:AAPL")

    base_s = time.time_ns() // 1_000_000_000 - 30
    if base_s % 60 >= 56:   # the trades span 3 s: keep them in one minute bar
        base_s -= 10
    base = base_s * 1_000_000_000
    post(stack,
         trade("AAPL", base + 100_000_000, 10.0, 100, 1),
         trade("AAPL", base + 900_000_000, 12.0, 50, 2),
         trade("AAPL", base + 400_000_000, 9.5, 10, 3),       # out of order, same bar
         trade("AAPL", base + 1_000_000_000, 11.0, 30, 4),    # exactly on the next boundary
         trade("AAPL", base + 1_500_000_000, 11.5, 20, 5))
    post(stack, trade("AAPL", base + 3_000_000_000, 13.0, 1, 6))   # closes the first two bars

    got = redis_bars(ps, 2)
    first, second = rfc3339(base)[:19] + "Z", rfc3339(base + 1_000_000_000)[:19] + "Z"
    assert sorted(got) == [first, second]
    a = got[first]
    assert (a["o"], a["h"], a["l"], a["c"], a["v"], a["n"]) == (10.0, 12.0, 9.5, 12.0, 160, 3)
    # VWAP to a hundredth of a cent, like prices
    assert a["vw"] == pytest.approx((10.0 * 100 + 12.0 * 50 + 9.5 * 10) / 160, abs=0.00005)
    assert a["src"] == "trades" and a["S"] == "AAPL" and a["tf"] == "1s"
    b = got[second]
    assert (b["o"], b["c"], b["v"], b["n"]) == (11.0, 11.5, 50, 2)

    # the same closed bars, byte for byte, over WebSocket and SSE
    ws_closed = {}
    while len(ws_closed) < 2:
        m = ws.recv_json()
        assert m["type"] == "candle" and m["channel"] == "candles:1s:AAPL"
        if m["data"]["closed"]:
            ws_closed[m["data"]["t"]] = m["data"]
    sse_closed = {}
    while len(sse_closed) < 2:
        evs, buf = sse_events(s, buf, 1)
        assert evs[0]["event"] == "candle"
        d = json.loads(evs[0]["data"])
        if d["closed"]:
            sse_closed[d["t"]] = d
    assert ws_closed == got and sse_closed == got

    # GET /candles: the same bars, then the open one
    r = stack.get("/candles/AAPL?tf=1s&limit=300")
    assert r.status == 200
    body = r.json()
    assert body["symbol"] == "AAPL" and body["tf"] == "1s" and body["count"] == 3
    assert body["bars"][:2] == [got[first], got[second]]
    assert body["bars"][2]["closed"] is False and body["bars"][2]["c"] == 13.0
    assert stack.get("/candles/AAPL?tf=1s&limit=1").json()["bars"][0]["c"] == 13.0
    # the minute bar holds all six trades, still open
    m = stack.get("/candles/AAPL?tf=1m").json()["bars"]
    assert len(m) == 1 and m[0]["n"] == 6 and m[0]["v"] == 211 and m[0]["closed"] is False

    # history on subscribe (WebSocket): the bars kept, oldest first
    ws2 = WS(stack.port)
    ws2.send_json({"action": "subscribe", "candles": {"symbols": ["AAPL"], "tf": "1s"}, "history": 2})
    assert ws2.recv_json()["type"] == "subscribed"
    h = ws2.recv_json()
    assert h["type"] == "candles" and h["symbol"] == "AAPL" and h["tf"] == "1s"
    assert h["bars"] == body["bars"][1:]


def test_quiet_symbol_closed_by_timer(stack, redis_server):
    ps = redis_server.client().pubsub(ignore_subscribe_messages=True)
    ps.subscribe("candles:1s:MSFT")
    wait_for(lambda: ps.get_message(timeout=0.05) is None or True, what="subscription")
    base = time.time_ns() // 1_000_000_000 * 1_000_000_000
    post(stack, trade("MSFT", base, 20.0, 5))
    # no later trade: the timer closes it about a second after its end
    got = redis_bars(ps, 1, timeout=5)
    assert list(got.values())[0]["v"] == 5


def test_mid_bars_without_trades(stack):
    q = {"T": "q", "S": "GOOG", "bx": "V", "bp": 10.0, "bs": 1, "ax": "V", "ap": 12.0, "as": 1,
         "t": rfc3339(time.time_ns())}
    post(stack, q)
    bars = wait_for(lambda: stack.get("/candles/GOOG?tf=1s").json().get("bars"), what="a mid bar")
    assert bars[0]["src"] == "mid" and bars[0]["o"] == 11.0 and bars[0]["v"] == 0 and bars[0]["vw"] is None


def test_bad_requests(stack):
    post(stack, trade("AAPL", time.time_ns(), 10.0, 1))
    for path, status, code in [("/candles/aapl", 400, "bad_symbol"),
                               ("/candles/AAPL?tf=2m", 400, "bad_timeframe"),
                               ("/candles/AAPL?tf=5m", 400, "bad_timeframe"),   # not configured here
                               ("/candles/AAPL?limit=0", 400, "bad_limit"),
                               ("/candles/AAPL?limit=301", 400, "bad_limit"),
                               ("/candles/NOPE", 404, "unknown_symbol")]:
        r = stack.get(path)
        assert r.status == status, path
        assert r.json()["error"] == code and r.json()["status"] == status
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "candles": {"symbols": ["AAPL"], "tf": "9m"}})
    assert ws.recv_json()["error"] == "bad_timeframe"
    s, head, _ = sse_open(stack, "candles=AAPL&tf=9m")
    assert " 400 " in head.split("\r\n")[0]


def test_bad_trades_counted_and_logged_once(stack):
    now = time.time_ns()
    post(stack, trade("BAD", now, 10.0, 0), trade("BAD", now, 10.0, 0),
         trade("BAD", now + 3600 * 1_000_000_000, 10.0, 5))
    st = wait_for(lambda: (c := stack.status()["candles"])["bad"]["size"] == 2 and c or None, what="bad counted")
    assert st["bad"]["future"] == 1 and st["trades"] == 0
    lines = wait_for(lambda: [e for e in stack.log_events() if e.get("event") == "candle_bad_trade"],
                     what="the log line")
    time.sleep(0.3)   # past the log's flush interval: a second line would be there
    lines = [e for e in stack.log_events() if e.get("event") == "candle_bad_trade"]
    assert len(lines) == 1 and lines[0]["symbol"] == "BAD" and lines[0]["reason"] == "size"
    assert stack.get("/candles/BAD?tf=1s").json()["count"] == 0


def test_only_the_lease_holder_publishes_bars(redis_server, tickerd_factory):
    args = ("--redis-url", redis_server.url, "--feed", "sim", "--symbols", "AAPL", "--sim-rate", "100",
            "--sim-trades", "1", "--candle-timeframes", "1s", "--candle-grace-ms", "0")
    a, b = tickerd_factory(*args), tickerd_factory(*args)
    holder = wait_for(lambda: next((t for t in (a, b) if t.status()["role"] == "holder"), None), what="a holder")
    standby = b if holder is a else a
    ps = redis_server.client().pubsub(ignore_subscribe_messages=True)
    ps.subscribe("candles:1s:AAPL")
    got = redis_bars(ps, 3, timeout=8)   # asserts no closed bar twice
    assert len(got) == 3
    assert standby.status()["candles"]["trades"] == 0
    assert holder.status()["candles"]["trades"] > 0
    # the standby's clients get the holder's bars through Redis
    ws = WS(standby.port)
    ws.send_json({"action": "subscribe", "candles": {"symbols": ["AAPL"], "tf": "1s"}})
    assert ws.recv_json()["type"] == "subscribed"
    assert ws.recv_json()["type"] == "candle"


def test_trades_streamed_to_clients_that_asked(stack, redis_server):
    """The tape: {"trades": [..]} over WebSocket and ?trades= over SSE get
    each published trade of their symbols, nothing of others; a quote
    subscriber of the same symbol gets no trade."""
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "trades": ["AAPL"]})
    assert ws.recv_json() == {"type": "subscribed", "trades": ["AAPL"]}
    quotes_only = WS(stack.port)
    quotes_only.send_json({"action": "subscribe", "symbols": ["AAPL"]})
    assert quotes_only.recv_json()["type"] == "subscribed"
    s, head, buf = sse_open(stack, "trades=AAPL,MSFT")
    assert " 200 " in head.split("\r\n")[0]
    # one Redis subscription for the instance's two trade clients
    wait_for(lambda: redis_server.client().pubsub_numsub("trades:AAPL")[0][1] == 1 or None,
             what="tickerd's subscription to trades:AAPL")
    wait_for(lambda: redis_server.client().pubsub_numsub("trades:MSFT")[0][1] == 1 or None,
             what="tickerd's subscription to trades:MSFT")
    now = time.time_ns()
    post(stack, trade("AAPL", now, 10.25, 100, 7), trade("GOOG", now, 5.0, 1, 8), trade("MSFT", now, 20.5, 3, 9))
    m = ws.recv_json()
    assert m["type"] == "trade" and m["channel"] == "trades:AAPL" and m["symbol"] == "AAPL"
    assert (m["data"]["S"], m["data"]["p"], m["data"]["s"], m["data"]["i"]) == ("AAPL", 10.25, 100, 7)
    evs, buf = sse_events(s, buf, 2)
    assert [e["event"] for e in evs] == ["trade", "trade"]
    assert sorted((json.loads(e["data"])["S"], json.loads(e["data"])["i"]) for e in evs) == [("AAPL", 7), ("MSFT", 9)]
    # the same payload on both transports, as published
    aapl = next(json.loads(e["data"]) for e in evs if json.loads(e["data"])["S"] == "AAPL")
    assert aapl == m["data"]
    # unsubscribing stops them; the quotes-only client never gets a trade
    ws.send_json({"action": "unsubscribe", "trades": ["AAPL"]})
    assert ws.recv_json() == {"type": "unsubscribed", "trades": ["AAPL"]}
    post(stack, trade("AAPL", now + 1, 10.5, 1, 10),
         {"T": "q", "S": "AAPL", "bx": "V", "bp": 10.0, "bs": 1, "ax": "V", "ap": 11.0, "as": 1, "t": rfc3339(now + 2)})
    evs, buf = sse_events(s, buf, 1)
    assert evs[0]["event"] == "trade" and json.loads(evs[0]["data"])["i"] == 10
    # the SSE client got trade 10 from the same Redis message: the WebSocket
    # client would have had it queued before the answer to "list"
    ws.send_json({"action": "list"})
    assert ws.recv_json()["type"] == "list"
    while (q := quotes_only.recv_json())["type"] != "quote":
        assert q["type"] != "trade"
    st = stack.status()["candles"]
    assert st["stream_deliveries"] >= 4 and st["stream_bad_messages"] == 0
    # a bad symbol is refused like a quote subscription's
    ws.send_json({"action": "subscribe", "trades": ["bad sym"]})
    assert ws.recv_json()["error"] == "bad_symbol"


def closed_bars(t, path):
    return [b for b in t.get(path).json().get("bars", []) if b["closed"]]


def test_a_standby_started_late_answers_history_from_redis(redis_server, tickerd_factory):
    """Only the lease holder builds bars; a standby started after they were
    made answers GET /candles and the subscribe's "history" with the
    holder's bars, which it never saw live, read back from Redis."""
    args = ("--redis-url", redis_server.url, "--feed", "sim", "--symbols", "AAPL", "--sim-rate", "100",
            "--sim-trades", "1", "--candle-timeframes", "1s,1m", "--candle-grace-ms", "0")
    holder = tickerd_factory(*args)
    wait_for(lambda: holder.status()["role"] == "holder" or None, what="the holder")
    wait_for(lambda: len(closed_bars(holder, "/candles/AAPL?tf=1s")) >= 3 or None, timeout=10,
             what="three closed bars on the holder")
    standby = tickerd_factory(*args)
    wait_for(lambda: standby.get("/readyz").status == 200 or None, what="the standby's redis connections")
    wait_for(lambda: standby.status()["candles"]["store"]["connected"] or None, what="the standby's candle store")
    assert standby.status()["role"] == "standby"
    r = standby.get("/candles/AAPL?tf=1s&limit=300")
    assert r.status == 200, r.body
    s = r.json()
    h = holder.get("/candles/AAPL?tf=1s&limit=300").json()
    assert s["symbol"] == "AAPL" and s["tf"] == "1s" and s["count"] == len(s["bars"])
    closed_s = [b for b in s["bars"] if b["closed"]]
    assert len(closed_s) >= 3
    # the same window on the holder: the same closed bars, value for value
    lo, hi = closed_s[0]["t"], closed_s[-1]["t"]
    assert [b for b in h["bars"] if b["closed"] and lo <= b["t"] <= hi] == closed_s
    # the standby builds none itself
    assert standby.status()["candles"]["trades"] == 0
    assert standby.status()["candles"]["store"]["reads"] >= 1
    # limit: the newest ones
    two = standby.get("/candles/AAPL?tf=1s&limit=2").json()["bars"]
    assert len(two) == 2 and two[0]["t"] < two[1]["t"]
    # the minute series too (its one bar is open: the standby has the holder's last update of it)
    m = standby.get("/candles/AAPL?tf=1m").json()["bars"]
    assert m and m[-1]["S"] == "AAPL" and m[-1]["tf"] == "1m"
    # a symbol nobody built bars for
    assert standby.get("/candles/ZZZZ?tf=1s").status == 404
    # history on subscribe, on the standby's WebSocket
    ws = WS(standby.port)
    ws.send_json({"action": "subscribe", "candles": {"symbols": ["AAPL"], "tf": "1s"}, "history": 300})
    assert ws.recv_json()["type"] == "subscribed"
    while (msg := ws.recv_json())["type"] != "candles":
        assert msg["type"] == "candle"   # live bars may come before the read from Redis
    assert msg["symbol"] == "AAPL" and msg["tf"] == "1s" and "unavailable" not in msg
    by_t = {b["t"]: b for b in holder.get("/candles/AAPL?tf=1s&limit=300").json()["bars"]}
    hist_closed = [b for b in msg["bars"] if b["closed"]]
    assert len(hist_closed) >= 3 and all(by_t[b["t"]] == b for b in hist_closed)


def test_closed_bars_wait_for_redis_in_order(redis_server, tickerd_factory):
    """While Redis is away, a closed bar waits for it and is not replaced by
    the next bar's first update (the publishers' outbox, which keeps the
    newest message per channel, used to do that)."""
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--candle-grace-ms", "0",
                        "--candle-timeframes", "1s")
    wait_for(lambda: t.status()["candles"]["store"]["connected"] or None, what="the candle store")
    redis_server.stop()
    wait_for(lambda: not t.status()["candles"]["store"]["connected"] or None, what="the store to see Redis gone")
    base = (time.time_ns() // 1_000_000_000 - 20) * 1_000_000_000
    for k in range(3):
        post(t, trade("CLSD", base + k * 1_000_000_000, 10.0 + k, 10 + k, k + 1))
    # a fourth bar 30 s ahead closes the three while Redis is away, and
    # stays open itself for the rest of the test
    post(t, trade("CLSD", time.time_ns() + 30 * 1_000_000_000, 20.0, 1, 4))
    st = t.status()["candles"]["store"]
    assert st["waiting"] == 3 and st["queued"] == 3
    redis_server.start()
    wait_for(lambda: t.status()["candles"]["store"]["waiting"] == 0 or None, timeout=10, what="the queue to drain")
    stored = [json.loads(b) for b in redis_server.client().zrange("tickerd:{candles:1s:CLSD}:bars", 0, -1)]
    assert [(b["c"], b["v"], b["closed"]) for b in stored] == [(10.0, 10, True), (11.0, 11, True), (12.0, 12, True)]
    assert t.status()["candles"]["store"]["dropped"] == 0


def test_a_correction_is_placed_by_the_trade_it_names(redis_server, tickerd_factory):
    """Alpaca's correction names its trade ("oi"): the bar of that trade is
    corrected, not the bar of the correction's own time; an unknown id is
    counted."""
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--candle-grace-ms", "10000",
                        "--candle-timeframes", "1s")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    base = (time.time_ns() // 1_000_000_000 - 3) * 1_000_000_000
    post(t, trade("CORR", base + 100_000_000, 10.0, 100, 501), trade("CORR", base + 1_100_000_000, 12.0, 50, 502))

    def correction(oi, ns):
        return {"T": "c", "S": "CORR", "x": "V", "oi": oi, "op": 10.0, "os": 100, "oc": ["@"], "ci": 900 + oi,
                "cp": 10.5, "cs": 80, "cc": ["@"], "z": "C", "t": rfc3339(ns)}
    # stamped in the second bar's second; names the first bar's trade
    post(t, correction(501, base + 1_500_000_000), correction(777, base + 1_600_000_000))
    bars = wait_for(lambda: (b := t.get("/candles/CORR?tf=1s").json()["bars"]) and b[0]["v"] == 80 and b or None,
                    what="the first bar corrected")
    assert (bars[0]["o"], bars[0]["c"], bars[0]["v"], bars[0]["n"]) == (10.5, 10.5, 80, 1)
    assert (bars[1]["c"], bars[1]["v"]) == (12.0, 50)
    st = t.status()["candles"]
    assert st["adjusted"] == 1 and st["adjust_unknown"] == 1


def test_a_closed_bar_refused_with_noscript_is_sent_again(stack, redis_server):
    """The server's scripts flushed (SCRIPT FLUSH, a restart without
    persistence of scripts): the closed bar that meets NOSCRIPT is kept,
    the script loaded again and the bar sent once more. Failed before: that
    bar was lost, and the set kept its last in-progress version."""
    ps = redis_server.client().pubsub(ignore_subscribe_messages=True)
    ps.subscribe("candles:1s:NOSC")
    wait_for(lambda: ps.get_message(timeout=0.05) is None or True, what="subscription")
    base = (time.time_ns() // 1_000_000_000 - 20) * 1_000_000_000
    post(stack, trade("NOSC", base, 10.0, 5, 1))
    wait_for(lambda: redis_server.client().zcard("tickerd:{candles:1s:NOSC}:bars") == 1 or None,
             what="the in-progress bar stored")
    redis_server.client().script_flush()
    post(stack, trade("NOSC", base + 2_000_000_000, 11.0, 1, 2))   # closes the first bar
    got = redis_bars(ps, 1)
    assert [(b["c"], b["v"]) for b in got.values()] == [(10.0, 5)]
    stored = [json.loads(b) for b in redis_server.client().zrange("tickerd:{candles:1s:NOSC}:bars", 0, 0)]
    assert stored[0]["closed"] is True and stored[0]["v"] == 5
    st = stack.status()["candles"]["store"]
    assert st["resent"] >= 1 and st["dropped"] == 0, st


def test_a_closed_bar_in_flight_when_the_connection_drops_is_sent_again(stack, redis_server):
    """Redis drops the store's connection while a closed bar's script waits
    in it (CLIENT PAUSE WRITE holds the script, CLIENT KILL drops the
    connection): the bar was kept, and goes again once the store is back,
    before the bars closed meanwhile. Failed before: the bar was lost with
    the connection."""
    r = redis_server.client()
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.subscribe("candles:1s:DROP")
    wait_for(lambda: ps.get_message(timeout=0.05) is None or True, what="subscription")
    base = (time.time_ns() // 1_000_000_000 - 20) * 1_000_000_000
    post(stack, trade("DROP", base, 10.0, 5, 1))
    wait_for(lambda: r.zcard("tickerd:{candles:1s:DROP}:bars") == 1 or None, what="the open bar stored")
    sent = stack.status()["candles"]["store"]["sent"]
    r.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        post(stack, trade("DROP", base + 1_000_000_000, 11.0, 6, 2))   # closes the first bar: held by the pause
        wait_for(lambda: stack.status()["candles"]["store"]["sent"] > sent or None, what="the closed bar sent")
        r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        wait_for(lambda: stack.status()["candles"]["store"]["resent"] >= 1 or None, what="the bar kept for later")
        post(stack, trade("DROP", base + 2_000_000_000, 12.0, 7, 3))   # closes the second while away
    finally:
        r.execute_command("CLIENT", "UNPAUSE")
    got = redis_bars(ps, 2)   # asserts no closed bar twice
    assert [(b["c"], b["v"]) for b in got.values()] == [(10.0, 5), (11.0, 6)]
    stored = [json.loads(b) for b in r.zrange("tickerd:{candles:1s:DROP}:bars", 0, -1)]
    assert [(b["c"], b["closed"]) for b in stored[:2]] == [(10.0, True), (11.0, True)]
    st = stack.status()["candles"]["store"]
    assert st["dropped"] == 0 and st["waiting"] == 0, st


def test_in_progress_bars_of_many_series_go_in_batches(redis_server, tickerd_factory):
    """Classic mode sends a tick's in-progress bars in batches (one script
    call for up to CSTORE_BATCH_MAX bars): every series' bar is still
    published on its own channel and stored in its own set, and Redis saw
    fewer script calls than bars. 40 symbols x 2 timeframes = 80 bars,
    more than one batch; minute timeframes, so no bar closes meanwhile.
    Failed before the batches: the bars took 80 calls."""
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--candle-timeframes", "1m,5m")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    r = redis_server.client()
    syms = [f"BT{k:02d}" for k in range(40)]
    ps = r.pubsub(ignore_subscribe_messages=True)
    ps.psubscribe("candles:*:BT*")
    wait_for(lambda: ps.get_message(timeout=0.05) is None or True, what="subscription")
    r.config_resetstat()
    now = time.time_ns()
    post(t, *[trade(s, now, 10.0 + k, 1 + k, 100 + k) for k, s in enumerate(syms)])
    seen = {}
    deadline = time.monotonic() + 5
    while len(seen) < 2 * len(syms) and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.1)
        if m and m["type"] == "pmessage":
            ch = m["channel"]
            seen.setdefault(ch.decode() if isinstance(ch, bytes) else ch, json.loads(m["data"]))
    assert len(seen) == 2 * len(syms), sorted(seen)
    for k, s in enumerate(syms):
        for tf in ("1m", "5m"):
            b = seen[f"candles:{tf}:{s}"]
            assert (b["S"], b["tf"], b["c"], b["v"], b["closed"]) == (s, tf, 10.0 + k, 1 + k, False)
            stored = [json.loads(x) for x in r.zrange(f"tickerd:{{candles:{tf}:{s}}}:bars", 0, -1)]
            assert len(stored) == 1 and (stored[0]["c"], stored[0]["v"]) == (10.0 + k, 1 + k)
    # each trade is one call of the publisher's position script; the 80
    # bars are two calls (64 + 16), with room for a tick that split them
    calls = r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert len(syms) < calls <= len(syms) + 4, calls
    st = t.status()["candles"]["store"]
    assert st["sent"] >= 2 * len(syms) and st["stored"] >= 2 * len(syms), st
