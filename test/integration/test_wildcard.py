"""Wildcard subscriptions (issue 16 part 2): "*" and prefix patterns such as
"BRK.*" over WebSocket and SSE, one Redis PSUBSCRIBE per pattern per
process, one copy of each quote per client, the JWT restriction, the
slow-consumer policy, and resubscription after Redis restarts. Real binary,
real redis-server, real redis-cli."""
import json
import math
import socket
import subprocess
import time

import pytest

from conftest import SANITIZED, wait_for
from test_ops import secured, token  # noqa: F401 (a fixture)
from test_quotes import quote
from test_rate import nothing_more
from test_streaming import post, settled, sse_events, sse_open, stack, ws_subscribe  # noqa: F401 (stack: a fixture)
from wsclient import WS


def numpat(redis):
    return redis.client().execute_command("PUBSUB", "NUMPAT")


def patterns_are(redis, n):
    wait_for(lambda: numpat(redis) == n or None, what=f"PUBSUB NUMPAT == {n}")


def redis_cli_publish(redis, channel, payload):
    """A producer that is not tickerd: no position in the payload."""
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "PUBLISH", channel, payload],
                         capture_output=True, text=True, timeout=10, check=True)
    return int(out.stdout.strip())


def quotes_until(ws, last_symbol):
    """The symbols of the quotes received up to one of `last_symbol`."""
    got = []
    while True:
        m = ws.recv_json()
        if m["type"] == "quote":
            got.append(m["symbol"])
            if m["symbol"] == last_symbol:
                return got


def test_star_gets_a_symbol_nobody_subscribed_from_redis_cli(stack, redis_server):
    ws = ws_subscribe(stack, "*")
    s, head, buf = sse_open(stack, "symbols=*")
    assert " 200 " in head.split("\r\n")[0]
    patterns_are(redis_server, 1)
    assert redis_server.client().pubsub_channels("quotes:*") == []   # no channel: the pattern brings it
    payload = json.dumps(quote("XYZ", bp=42))
    assert redis_cli_publish(redis_server, "quotes:XYZ", payload) == 1   # one subscriber: tickerd's connection
    m = ws.recv_until(lambda m: m["type"] == "quote")
    assert m["symbol"] == "XYZ" and m["channel"] == "quotes:XYZ" and m["data"]["bp"] == 42
    evs, buf = sse_events(s, buf, 1)
    assert evs[0]["event"] == "quote" and json.loads(evs[0]["data"])["S"] == "XYZ"
    st = stack.status()
    assert st["streaming"]["pattern_deliveries"] == 2 and st["redis"]["subscriber"]["patterns"] == 1
    # Not a symbol: refused before it is interned or streamed.
    redis_cli_publish(redis_server, "quotes:not a symbol", payload)
    post(stack, quote("AFTER", bp=1))
    assert ws.recv_until(lambda m: m["type"] == "quote")["symbol"] == "AFTER"
    s.close()


def test_prefix_pattern_gets_matching_symbols_only(stack, redis_server):
    ws = ws_subscribe(stack, "BRK.*")
    patterns_are(redis_server, 1)
    post(stack, quote("AAPL"), quote("BRK.A", bp=1), quote("BRKX"), quote("BRK.B", bp=2), quote("MSFT"))
    post(stack, quote("BRK.END"))   # after the rest: channels go through several connections
    assert quotes_until(ws, "BRK.END") == ["BRK.A", "BRK.B", "BRK.END"]
    ws.send_json({"action": "list"})
    assert ws.recv_until(lambda m: m["type"] == "list")["symbols"] == ["BRK.*"]


def test_one_psubscribe_per_pattern_counted_and_released(stack, redis_server):
    wss = [ws_subscribe(stack, "*") for _ in range(6)]
    socks = [sse_open(stack, "symbols=*")[0] for _ in range(3)]
    brk = [ws_subscribe(stack, "BRK.*") for _ in range(2)]
    patterns_are(redis_server, 2)
    assert redis_server.client().pubsub_channels("quotes:*") == []   # patterns only, no channel per symbol
    st = stack.status()["streaming"]
    assert st["patterns"] == 2 and st["pattern_subscriptions"] == 11
    # Unsubscribing a pattern: the last client of BRK.* takes its PSUBSCRIBE with it.
    for ws in brk:
        ws.send_json({"action": "unsubscribe", "symbols": ["BRK.*"]})
        assert ws.recv_until(lambda m: m["type"] == "unsubscribed")["symbols"] == ["BRK.*"]
    patterns_are(redis_server, 1)
    for ws in wss[:-1]:
        ws.close()
    for s in socks:
        s.close()
    wait_for(lambda: stack.status()["streaming"]["pattern_subscriptions"] == 1 or None, what="clients gone")
    assert numpat(redis_server) == 1
    wss[-1].close()
    patterns_are(redis_server, 0)
    assert stack.status()["redis"]["subscriber"]["patterns"] == 0


def test_named_symbol_and_patterns_deliver_each_quote_once(stack, redis_server):
    both = ws_subscribe(stack, "AAPL", "*", "A*")
    other = ws_subscribe(stack, "AAPL")       # keeps quotes:AAPL subscribed on its own too
    patterns_are(redis_server, 2)
    wait_for(lambda: redis_server.client().pubsub_channels("quotes:*") == [b"quotes:AAPL"] or None,
             what="SUBSCRIBE quotes:AAPL")
    post(stack, *[quote("AAPL", bp=i) for i in range(1, 51)], quote("AMZN", bp=1))
    post(stack, quote("ZZ.END"))
    got = []
    while True:
        m = both.recv_json()
        if m["type"] == "quote":
            got.append((m["symbol"], m["data"]["bp"], m.get("id")))
            if m["symbol"] == "ZZ.END":
                break
    aapl = [g for g in got if g[0] == "AAPL"]
    assert [g[1] for g in aapl] == list(range(1, 51))            # every one, in order, once
    assert len({g[2] for g in aapl}) == 50
    assert [g[0] for g in got if g[0] != "AAPL"] == ["AMZN", "ZZ.END"]   # "*" and "A*" both match AMZN: once
    assert other.recv_until(lambda m: m["type"] == "quote")["data"]["bp"] == 1
    sub = stack.status()["redis"]["subscriber"]
    # Redis sent AAPL three times (the channel, "*", "A*") and AMZN twice:
    # the extra routes are dropped before the hub, which saw each once.
    assert sub["pattern_duplicates"] == 50 * 2 + 1
    assert stack.status()["streaming"]["gaps"] == 0


def test_pattern_snapshot_of_known_symbols(stack, redis_server):
    post(stack, quote("BRK.A", bp=1), quote("BRK.A", bp=2), quote("BRK.B", bp=3), quote("AAPL", bp=4))
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "symbols": ["BRK.*"]})
    assert ws.recv_json() == {"type": "subscribed", "symbols": ["BRK.*"]}
    snap = [ws.recv_json() for _ in range(2)]
    assert sorted((m["symbol"], m["data"]["bp"]) for m in snap) == [("BRK.A", 2), ("BRK.B", 3)]
    ws.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        ws.recv_json()


def test_snapshot_once_per_symbol_and_resume_with_patterns(stack, redis_server):
    post(stack, quote("AAPL", bp=1), quote("AMZN", bp=2), quote("MSFT", bp=3))
    ws = WS(stack.port)
    ws.send_json({"action": "subscribe", "symbols": ["AAPL", "*", "A*"]})
    assert ws.recv_json()["type"] == "subscribed"
    snap = [ws.recv_json() for _ in range(3)]
    assert sorted(m["symbol"] for m in snap) == ["AAPL", "AMZN", "MSFT"]   # each once
    ws.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        ws.recv_json()
    # A position names one symbol: the named one is replayed, the patterns
    # get their snapshot, and "recovered" is false (not every symbol was replayed).
    pos = [m for m in snap if m["symbol"] == "AAPL"][0]["id"]
    post(stack, quote("AAPL", bp=4), quote("MSFT", bp=5))
    again = WS(stack.port)
    again.send_json({"action": "subscribe", "symbols": ["AAPL", "*"], "since": pos})
    msgs = [again.recv_json() for _ in range(4)]
    assert msgs[0]["type"] == "subscribed"
    assert (msgs[1]["symbol"], msgs[1]["data"]["bp"]) == ("AAPL", 4)                      # replayed
    assert sorted((m["symbol"], m["data"]["bp"]) for m in msgs[2:]) == [("AMZN", 2), ("MSFT", 5)]
    rec = again.recv_json()
    assert rec["type"] == "recovery" and rec["recovered"] is False and rec["replayed"] == 1
    s, head, buf = sse_open(stack, "symbols=*", {"Last-Event-ID": pos})
    evs, buf = sse_events(s, buf, 4)
    assert [e["event"] for e in evs] == ["quote"] * 3 + ["recovery"]
    assert json.loads(evs[3]["data"])["recovered"] is False
    s.close()


def test_bad_patterns_are_refused(stack, redis_server):
    ws = WS(stack.port)
    bad = ["A*B", "**", "*A", "brk.*", "ABCDEFGHIJKLMNOP*", "BR K*"]
    ws.send_json({"action": "subscribe", "symbols": bad + ["OK*"]})
    errors = [ws.recv_json() for _ in bad]
    assert [(e["error"], e["symbol"]) for e in errors] == [("bad_symbol", b) for b in bad]
    assert ws.recv_json() == {"type": "subscribed", "symbols": ["OK*"]}
    for q in ("symbols=A*B", "symbols=AAPL,**", "symbols=x*"):
        assert stack.get("/stream?" + q).status == 400
    ws.send_json({"action": "subscribe", "symbols": [f"P{i}*" for i in range(9)]})
    errors = [ws.recv_json() for _ in range(2)]
    assert errors[0]["error"] == "too_many_symbols" and errors[0]["symbol"] == "P7*"   # OK* + 7: eight
    patterns_are(redis_server, 8)


def test_jwt_symbols_claim_restricts_patterns(secured, redis_server):
    aapl = WS(secured.port, headers={"Authorization": "Bearer " + token({"symbols": ["AAPL"]})})
    assert aapl.open
    aapl.send_json({"action": "subscribe", "symbols": ["*", "A*", "AAPL"]})
    refused = [aapl.recv_json() for _ in range(2)]
    assert [(e["error"], e["symbol"]) for e in refused] == [("forbidden_symbol", "*"), ("forbidden_symbol", "A*")]
    assert aapl.recv_json() == {"type": "subscribed", "symbols": ["AAPL"]}
    brk = WS(secured.port, headers={"Authorization": "Bearer " + token({"symbols": ["BRK.*"]})})
    brk.send_json({"action": "subscribe", "symbols": ["*", "BRK*", "BRK.*", "BRK.A*", "BRK.B"]})
    refused = [brk.recv_json() for _ in range(2)]
    assert [e["symbol"] for e in refused] == ["*", "BRK*"]
    assert brk.recv_json() == {"type": "subscribed", "symbols": ["BRK.*", "BRK.A*", "BRK.B"]}
    # SSE: refused with 403 before anything is subscribed.
    r = secured.get("/stream?symbols=*&token=" + token({"symbols": ["AAPL"]}))
    assert r.status == 403 and r.json()["error"] == "forbidden_symbol"
    s, head, _ = sse_open(secured, "symbols=*&token=" + token({"symbols": ["*"]}))
    assert " 200 " in head.split("\r\n")[0]
    st = secured.status()["streaming"]
    assert st["auth_denied_patterns"] == 5
    patterns_are(redis_server, 3)     # BRK.*, BRK.A* and *
    wait_for(lambda: [e for e in secured.log_events() if e["event"] == "subscriber_pattern_denied"] or None,
             what="the refusal's log line")
    s.close()


def test_slow_wildcard_client_is_closed_and_memory_bounded(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--client-soft-bytes", "65536",
                        "--client-hard-bytes", "262144", "--client-soft-ms", "500", "--stream-idle-ms", "600000")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis")
    slow = WS(t.port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.send_json({"action": "subscribe", "symbols": ["*"]})
    fast = ws_subscribe(t, "S0")
    patterns_are(redis_server, 1)
    rss0 = t.rss_bytes()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and t.status()["streaming"]["slow_closes"] == 0:
        # 400 symbols: conflated to one quote each, the queue still holds more than the soft limit
        post(t, *[dict(quote(f"S{i % 400}"), z="C") for i in range(800)])
    st = t.status()["streaming"]
    assert st["slow_closes"] == 1 and st["conflated"] > 0 and st["pattern_deliveries"] > 0
    if not SANITIZED:
        assert t.rss_bytes() - rss0 < 64 * 1024 * 1024
    # Closed (the kernel may still be handing the reader what was sent),
    # and its pattern went with it.
    assert st["clients"] == 1 and st["pattern_subscriptions"] == 0
    patterns_are(redis_server, 0)
    fast.sock.settimeout(5)
    post(t, quote("S0", bp=12345))
    fast.recv_until(lambda m: m.get("data", {}).get("bp") == 12345, limit=1_000_000)
    wait_for(lambda: any(e["event"] == "slow_client_closed" for e in t.log_events()) or None, what="log line")


def test_patterns_resubscribed_after_redis_restart(stack, redis_server):
    ws = ws_subscribe(stack, "*")
    named = ws_subscribe(stack, "MSFT")
    patterns_are(redis_server, 1)
    redis_server.stop()
    wait_for(lambda: stack.get("/readyz").status != 200 or None, what="redis lost")
    redis_server.start()
    wait_for(lambda: stack.get("/readyz").status == 200 or None, timeout=15, what="redis back")
    patterns_are(redis_server, 1)
    wait_for(lambda: redis_server.client().pubsub_channels("quotes:*") == [b"quotes:MSFT"] or None,
             what="SUBSCRIBE again")
    redis_cli_publish(redis_server, "quotes:NEW", json.dumps(quote("NEW", bp=7)))
    m = ws.recv_until(lambda m: m["type"] == "quote")
    assert m["symbol"] == "NEW" and m["data"]["bp"] == 7
    named.close()


INTERVAL_MS = 250


def throttled_quotes(ws, syms, n):
    """The bids a WebSocket client gets per symbol, up to bid `n` of each."""
    got = {sym: [] for sym in syms}
    while any(not v or v[-1] != n for v in got.values()):
        m = ws.recv_json()
        if m["type"] == "quote":
            got[m["symbol"]].append(m["data"]["bp"])
    return got


def test_star_with_interval_gets_newest_per_symbol_per_interval(stack, redis_server):
    """A throttled "*" client (WebSocket and SSE): at most one update per
    matching symbol per interval, the newest, ending on each symbol's last
    quote (trailing edge); an unthrottled "*" client still gets all."""
    syms = ["AAA", "BBB", "CCC"]
    slow = ws_subscribe(stack, "*", interval_ms=INTERVAL_MS)
    live = ws_subscribe(stack, "*")
    s, head, buf = sse_open(stack, f"symbols=*&interval_ms={INTERVAL_MS}")
    assert " 200 " in head.split("\r\n")[0]
    patterns_are(redis_server, 1)
    n = 24
    start = time.monotonic()
    for i in range(1, n + 1):
        post(stack, *[quote(sym, bp=i) for sym in syms], settle=False)
        time.sleep(1.5 / n)
    settled(stack)
    took = time.monotonic() - start
    bound = math.ceil(took * 1000 / INTERVAL_MS) + 1
    assert throttled_quotes(live, syms, n) == {sym: list(range(1, n + 1)) for sym in syms}
    for name, got in (("ws", throttled_quotes(slow, syms, n)), ("sse", None)):
        if got is None:
            got = {sym: [] for sym in syms}
            while any(not v or v[-1] != n for v in got.values()):
                evs, buf = sse_events(s, buf, 1)
                if evs[0].get("event") == "quote":
                    q = json.loads(evs[0]["data"])
                    got[q["S"]].append(q["bp"])
        for sym, bids in got.items():
            assert bids[-1] == n, (name, sym, bids)                          # the burst's last
            assert bids == sorted(set(bids)), (name, sym, bids)              # newest only, never twice
            assert len(bids) <= bound, (name, sym, bids, took)
        assert sum(len(b) for b in got.values()) < len(syms) * n, name
    assert nothing_more(slow.sock, 3 * INTERVAL_MS / 1000)                   # nothing stale after the last
    assert nothing_more(s, 3 * INTERVAL_MS / 1000)
    r = stack.status()["streaming"]["rate"]
    assert r["clients"] == 2
    # one encoding per transport per symbol per tick at most, shared by the phases
    assert 0 < r["frames_encoded"] <= 2 * len(syms) * bound
    slow.close()
    s.close()
    wait_for(lambda: stack.status()["streaming"]["rate"]["clients"] == 0 or None, what="throttled clients gone")
    live.close()


def test_named_symbol_and_star_throttled_get_it_once_per_tick(stack, redis_server):
    """A client with AAPL and "*" that sets interval_ms after them: AAPL
    comes once per tick (its own subscription; "*" does not repeat it),
    other symbols through "*" on the same ticks."""
    ws = ws_subscribe(stack, "AAPL", "*")
    ws.send_json({"action": "subscribe", "interval_ms": INTERVAL_MS})
    assert ws.recv_until(lambda m: m["type"] != "quote")["type"] == "subscribed"
    patterns_are(redis_server, 1)
    n = 20
    start = time.monotonic()
    for i in range(1, n + 1):
        post(stack, quote("AAPL", bp=i), quote("MSFT", bp=i), settle=False)
        time.sleep(1.0 / n)
    settled(stack)
    took = time.monotonic() - start
    ids = []
    got = {"AAPL": [], "MSFT": []}
    while any(not v or v[-1] != n for v in got.values()):
        m = ws.recv_json()
        if m["type"] == "quote":
            got[m["symbol"]].append(m["data"]["bp"])
            ids.append(m["id"])
    assert len(ids) == len(set(ids))                                         # no quote twice
    for sym, bids in got.items():
        assert bids[-1] == n and bids == sorted(set(bids)), (sym, bids)
        assert len(bids) <= math.ceil(took * 1000 / INTERVAL_MS) + 1, (sym, bids, took)
    assert len(got["AAPL"]) < n
    assert nothing_more(ws.sock, 3 * INTERVAL_MS / 1000)
    assert stack.status()["streaming"]["rate"]["clients"] == 1
    ws.close()
