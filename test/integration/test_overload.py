"""Overload: tickerd's subscriber reading behind what Redis sends.

When tickerd cannot keep up with what it is owed (too many fast clients
for its core, or a stall), the backlog builds up in Redis's output buffer
for its subscriber connection until Redis cuts it, and then every client
of every symbol loses what was in flight. Instead, once the subscriber has
been behind for --overload-behind-ms, every flush conflates each client's
unsent quotes to the newest per symbol (hub.c check_ingest), so the loop's
time goes back to reading. Here the backlog is made by stopping tickerd
(SIGSTOP) while another producer publishes into Redis, with Redis told
to keep it all: on SIGCONT tickerd drains it behind Redis for longer than
the threshold."""
import json
import os
import signal
import time

from conftest import wait_for
from test_sentinel import ws_and_sse

SYMS = ["OVA", "OVB"]
BACKLOG = 100_000        # messages published while tickerd is stopped (~20 MB)
BATCH = 5_000            # per pipeline round trip
BEHIND_MS = 20           # --overload-behind-ms: a drain of BACKLOG takes far longer anywhere


def payload(sym, n):
    return json.dumps({"T": "q", "S": sym, "bx": "V", "bp": n, "bs": 1, "ax": "V", "ap": n + 0.5, "as": 1,
                       "t": "2026-12-03T16:00:00Z"}, separators=(",", ":"))


def test_a_subscriber_behind_redis_conflates_every_client_instead_of_being_cut(redis_server, tickerd_factory):
    r = redis_server.client()
    # Redis keeps the whole backlog: what is tested is tickerd's side of it.
    r.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--overload-behind-ms", str(BEHIND_MS))
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="ready")
    ws, sock, cols = ws_and_sse(t, SYMS)
    wait_for(lambda: t.status()["streaming"]["subscriptions"] == 4 or None, what="both clients subscribed")

    os.kill(t.proc.pid, signal.SIGSTOP)
    try:
        for start in range(0, BACKLOG, BATCH):
            p = r.pipeline(transaction=False)
            for n in range(start, start + BATCH):
                sym = SYMS[n % 2]
                p.publish("quotes:" + sym, payload(sym, n))
            p.execute()
    finally:
        os.kill(t.proc.pid, signal.SIGCONT)

    # The newest quote of each symbol reaches both clients (conflation
    # keeps the newest), and far fewer than all of them did.
    last = {SYMS[0]: BACKLOG - 2, SYMS[1]: BACKLOG - 1}
    wait_for(lambda: all(c.max_bp(s) == last[s] for c in cols.values() for s in SYMS) or None, timeout=30,
             what="the newest quote of each symbol on both clients")
    st = t.status()
    ov = st["streaming"]["overload"]
    assert ov["episodes"] >= 1 and ov["conflated"] > 0 and ov["flushes"] > 0, ov
    for name, c in cols.items():
        got = sum(len(c.quotes(s)) for s in SYMS)
        assert 0 < got < BACKLOG, (name, got)
        assert c.error is None, c.error
    # Nothing was cut: the subscriber stayed, no gap, no client closed.
    assert st["redis"]["subscriber"]["reconnects"] == 0
    assert st["streaming"]["gaps"] == 0 and st["streaming"]["slow_closes"] == 0
    assert st["streaming"]["clients"] == 2
    began = [e for e in t.log_events() if e["event"] == "stream_overloaded"]
    assert began and began[0]["behind_ms"] >= BEHIND_MS and began[0]["clients"] == 2

    # Caught up: the next message after the hold ends the episode, with a
    # line that says how many quotes it conflated, and quotes flow whole again.
    time.sleep(2.5)  # HUB_OVERLOAD_HOLD_MS 2000
    r.publish("quotes:OVA", payload("OVA", BACKLOG + 1))
    ended = wait_for(lambda: [e for e in t.log_events() if e["event"] == "stream_caught_up"], what="stream_caught_up")
    assert ended[0]["conflated"] > 0
    assert t.status()["streaming"]["overload"]["now"] is False
    n_before = {name: len(c.quotes("OVB")) for name, c in cols.items()}
    for n in range(10):
        r.publish("quotes:OVB", payload("OVB", BACKLOG + 10 + n))
    wait_for(lambda: all(len(c.quotes("OVB")) == n_before[name] + 10 for name, c in cols.items()) or None,
             what="every quote after the episode, none conflated")
    for c in cols.values():
        c.stop = True
        c.join(2)
    ws.close()
    sock.close()
