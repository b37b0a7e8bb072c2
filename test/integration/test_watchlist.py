"""Issue 16, part 3: watchlists. A client subscribed to many symbols gets
everything it is owed in one loop turn in one write, whatever symbols it came
from: against the real binary and a real redis-server, a burst published in
one Redis pipeline over several symbols reaches a WebSocket and an SSE client
complete and in order per symbol, in fewer writes than messages (the /status
counters streaming.sends and streaming.deliveries)."""
import json

from conftest import wait_for
from test_hostile import Sse, channel_count, stack
from test_producers import ws_subscribe

SYMBOLS = [f"WL{i}" for i in range(10)]
PER_SYMBOL = 20   # 200 messages, about 20 KB as Redis sends them


def foreign(sym, n):
    """What another producer PUBLISHes: a quote without tickerd's position;
    `bp` numbers the quotes of one symbol."""
    return json.dumps({"T": "q", "S": sym, "bp": n, "ap": n + 1, "t": "2026-12-03T10:00:00Z"},
                      separators=(",", ":"))


def test_burst_over_many_symbols_goes_out_in_fewer_writes_than_messages(redis_server, tickerd_factory):
    t = stack(redis_server, tickerd_factory)
    ws = ws_subscribe(t, *SYMBOLS)
    sse = Sse(t, "symbols=" + ",".join(SYMBOLS))
    wait_for(lambda: channel_count(t) == len(SYMBOLS) or None, what="the watchlist subscribed")
    before = t.status()["streaming"]

    # One pipeline, interleaved over the symbols: the subscriber connection
    # receives the burst in one go (Redis flushes a client's output once per
    # event-loop turn), several hiredis reads long.
    pipe = redis_server.client().pipeline(transaction=False)
    for n in range(PER_SYMBOL):
        for sym in SYMBOLS:
            pipe.publish(f"quotes:{sym}", foreign(sym, n))
    assert pipe.execute() == [1] * (PER_SYMBOL * len(SYMBOLS))

    total = PER_SYMBOL * len(SYMBOLS)
    ws_got = [ws.recv_json() for _ in range(total)]
    sse_got = sse.events(total)
    for got in ([m["data"] for m in ws_got], [json.loads(e["data"]) for e in sse_got]):
        # complete, and in order per symbol
        by_sym = {sym: [q["bp"] for q in got if q["S"] == sym] for sym in SYMBOLS}
        assert by_sym == {sym: list(range(PER_SYMBOL)) for sym in SYMBOLS}
    assert all(m["type"] == "quote" for m in ws_got)

    after = t.status()["streaming"]
    deliveries = after["deliveries"] - before["deliveries"]
    sends = after["sends"] - before["sends"]
    assert deliveries == 2 * total
    # Each client's share of the burst goes out in a few writes, not 200:
    # one per loop turn that found part of the burst, whatever its symbols.
    assert 2 <= sends <= deliveries // 4, (sends, deliveries)
    assert after["sends_per_delivery"] > 0
    ws.close()
    sse.close()


def test_sends_are_in_metrics(redis_server, tickerd_factory):
    t = stack(redis_server, tickerd_factory)
    body = t.get("/metrics").body.decode()
    assert "\ntickerd_stream_sends_total " in body
