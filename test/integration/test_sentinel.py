"""Redis Sentinel (issue 18, part 1): redis+sentinel:// discovery, the ROLE
check against a stale answer, and a kill -9 of the primary with quotes and
WebSocket/SSE clients running: promotion, tickerd following with every
connection, quotes flowing again, and each client's recovery signal per
symbol. Real redis-server processes (a primary, a replica, three
Sentinels) on free loopback ports."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, wait_for
from sentinel_topology import MASTER, Topology, client, free_port
from test_quotes import quote
from test_redis_tls import pki  # noqa: F401 (a module fixture: the test CA and certificates)
from test_streaming import post, settled, sse_open
from wsclient import OP_PING, OP_TEXT, WS

SYMS = ["AAPL", "MSFT"]
# A quote POSTed this long before the kill may still be on its way to the
# old primary when it dies: it belongs to the failover window.
IN_FLIGHT_SLACK_S = 0.3
POST_EVERY_S = 0.02
FAILOVER_TIMEOUT_S = 30


@pytest.fixture
def topology():
    t = Topology()
    yield t
    t.stop()


def sentinel_status(t):
    return t.status()["redis"].get("sentinel")


def ours(port):
    """tickerd's connections on a node: not the Sentinels' (named), the
    replication links (flag S) or this test's own."""
    return [c for c in client(port).client_list()
            if not c["name"] and "S" not in c["flags"] and c["cmd"] != "client|list"]


def ready(t):
    return t.get("/readyz").status == 200 or None


class Collector(threading.Thread):
    """Reads a client's messages into `msgs` as (monotonic time, dict)."""

    def __init__(self, read):
        super().__init__(daemon=True)
        self.read, self.msgs, self.stop, self.error = read, [], False, None
        self.start()

    def run(self):
        try:
            while not self.stop:
                try:
                    for m in self.read():
                        self.msgs.append((time.monotonic(), m))
                except socket.timeout:
                    continue
        except Exception as e:  # reported by the test, not lost in a thread
            if not self.stop:
                self.error = e

    def quotes(self, sym):
        return [(ts, m) for ts, m in self.msgs if m.get("type") == "quote" and m["symbol"] == sym]

    def recoveries(self, sym):
        return [(ts, m) for ts, m in self.msgs if m.get("type") == "recovery" and m.get("symbol") == sym]

    def max_bp(self, sym):
        q = self.quotes(sym)
        return q[-1][1]["data"]["bp"] if q else 0


def ws_reader(ws):
    ws.sock.settimeout(0.2)

    def read():
        op, payload = ws.recv_frame()
        return [] if op == OP_PING else [json.loads(payload)] if op == OP_TEXT else []
    return read


def ws_and_sse(t, syms):
    """A WebSocket and an SSE client of t on syms, each read by a
    Collector: (ws, SSE socket, {"ws": ..., "sse": ...})."""
    ws = WS(t.port)
    ws.send_json({"action": "subscribe", "symbols": syms})
    assert ws.recv_json()["type"] == "subscribed"
    sock, head, buf = sse_open(t, "symbols=" + ",".join(syms))
    assert " 200 " in head.split("\r\n")[0]
    return ws, sock, {"ws": Collector(ws_reader(ws)), "sse": Collector(sse_reader(sock, buf))}


def sse_reader(sock, buf):
    """SSE events as the WebSocket's dicts: quotes carry symbol and data."""
    sock.settimeout(0.2)
    state = {"buf": buf}

    def read():
        out = []
        while b"\n\n" not in state["buf"]:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("SSE stream closed")
            state["buf"] += chunk
        while b"\n\n" in state["buf"]:
            block, _, state["buf"] = state["buf"].partition(b"\n\n")
            ev = {}
            for line in block.decode().split("\n"):
                if line and not line.startswith(":"):
                    k, _, v = line.partition(": ")
                    ev[k] = v
            if ev.get("event") == "quote":
                data = json.loads(ev["data"])
                out.append({"type": "quote", "symbol": data["S"], "id": ev.get("id"), "data": data})
            elif ev.get("event") == "recovery":
                out.append(dict(json.loads(ev["data"]), type="recovery"))
        return out
    return read


class Poster(threading.Thread):
    """POSTs one quote per symbol every POST_EVERY_S, bp = a counter;
    `posted[n]` is (monotonic time sent, HTTP status)."""

    def __init__(self, t):
        super().__init__(daemon=True)
        self.t, self.posted, self.stop, self.error = t, {}, False, None
        self.start()

    def run(self):
        n = 0
        try:
            while not self.stop:
                n += 1
                sent = time.monotonic()
                r = self.t.request("POST", "/quotes", body=[quote(s, bp=n) for s in SYMS])
                self.posted[n] = (sent, r.status)
                time.sleep(POST_EVERY_S)
        except Exception as e:
            self.error = e


def seq_of(m):
    return int(m["id"].rsplit(":", 1)[1])


def check_client(name, col, poster, t_kill, t_resume):
    """What a client must have seen across the failover, per symbol."""
    for sym in SYMS:
        quotes = col.quotes(sym)
        recs = [m for ts, m in col.recoveries(sym) if ts >= t_kill]
        assert len(recs) == 1, f"{name} {sym}: one recovery signal after the failover, got {recs}"
        rec = recs[0]
        seqs = [seq_of(m) for _, m in quotes]
        bps = [m["data"]["bp"] for _, m in quotes]
        assert bps == sorted(set(bps)), f"{name} {sym}: quotes out of order or twice"
        gaps = [(a + 1, b - 1) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
        if rec["recovered"]:
            assert gaps == [], f"{name} {sym}: recovered:true but positions skipped {gaps}"
        else:
            assert gaps == [(rec["missed_from"], rec["missed_to"])], (name, sym, rec, gaps)
        # Only quotes of the failover window may be missing, and every
        # quote accepted outside it arrived.
        got = set(bps)
        for n, (sent, status) in poster.posted.items():
            if status != 202 or n in got:
                continue
            assert t_kill - IN_FLIGHT_SLACK_S <= sent <= t_resume, \
                f"{name} {sym}: quote {n} sent {sent - t_kill:+.3f}s from the kill is missing"


def test_failover_moves_every_connection_and_clients_recover(topology, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", topology.url, "--ping-interval-ms", "60000")
    wait_for(lambda: ready(t), timeout=10, what="ready through the Sentinels")
    old = topology.primary_port
    st = sentinel_status(t)
    assert st["primary"] == f"127.0.0.1:{old}" and st["master"] == MASTER
    assert st["sentinels"] == 3 and st["sentinels_ready"] == 3
    wait_for(lambda: sentinel_status(t)["sentinels_subscribed"] == 3 or None, what="+switch-master subscriptions")
    # Every connection of the process is on the primary (publishers,
    # subscriber, history reader, task records, lease-less: --feed none).
    n_before = len(ours(old))
    assert n_before >= 6, client(old).client_list()

    ws, sock, cols = ws_and_sse(t, SYMS)
    poster = Poster(t)
    try:
        wait_for(lambda: all(c.max_bp(s) >= 20 for c in cols.values() for s in SYMS) or None,
                 timeout=10, what="quotes before the kill")
        t_kill = time.monotonic()
        topology.kill_primary()
        new = topology.wait_promoted(old, timeout=FAILOVER_TIMEOUT_S)
        assert new != old
        wait_for(lambda: sentinel_status(t)["primary"] == f"127.0.0.1:{new}" or None, timeout=FAILOVER_TIMEOUT_S,
                 what="tickerd to follow")
        # Quotes flow again: a quote POSTed after tickerd followed reaches both clients.
        n_after = max(poster.posted)
        wait_for(lambda: all(c.max_bp(s) > n_after for c in cols.values() for s in SYMS) or None,
                 timeout=FAILOVER_TIMEOUT_S, what="quotes after the failover")
        t_resume = time.monotonic()
        time.sleep(0.5)
    finally:
        poster.stop = True
        poster.join(5)
    assert poster.error is None, poster.error
    settled(t)
    last = max(poster.posted)
    wait_for(lambda: all(c.max_bp(s) == last for c in cols.values() for s in SYMS) or None,
             what="the last quote on every client")
    for c in cols.values():
        c.stop = True
        c.join(2)
        assert c.error is None, c.error
    for name, c in cols.items():
        check_client(name, c, poster, t_kill, t_resume)

    # A Sentinel answers a query with the promoted replica before it
    # publishes +switch-master (that waits for the failover's end), so
    # tickerd may follow by a query first: the event is waited for.
    wait_for(lambda: sentinel_status(t)["switch_events"] >= 1 or None, timeout=FAILOVER_TIMEOUT_S,
             what="a +switch-master event")
    st = sentinel_status(t)
    assert st["switches"] == 1 and st["stale_answers"] == 0
    moved = wait_for(lambda: [e for e in t.log_events() if e["event"] == "sentinel_primary_changed"],
                     what="the sentinel_primary_changed line")
    assert moved[0]["from"] == f"127.0.0.1:{old}" and moved[0]["to"] == f"127.0.0.1:{new}"
    # Every connection moved: the new primary has as many of ours as the old one had.
    wait_for(lambda: len(ours(new)) == n_before or None, what="every connection on the new primary")
    assert t.status()["redis"]["subscriber"]["state"] == "ready" and ready(t)
    ws.close()
    sock.close()


def ws_through_a_kill(topo, t):
    """A WS client on SYMS while quotes are POSTed; the primary killed with
    -9 once quotes flow, then waited for until tickerd follows and quotes
    flow again. Returns (ws, collector, poster, new primary port, kill time,
    resume time)."""
    old = topo.primary_port
    ws = WS(t.port)
    ws.send_json({"action": "subscribe", "symbols": SYMS})
    assert ws.recv_json()["type"] == "subscribed"
    col = Collector(ws_reader(ws))
    poster = Poster(t)
    try:
        wait_for(lambda: all(col.max_bp(s) >= 20 for s in SYMS) or None, timeout=10, what="quotes before the kill")
        t_kill = time.monotonic()
        topo.kill_primary()
        new = topo.wait_promoted(old, timeout=FAILOVER_TIMEOUT_S)
        wait_for(lambda: sentinel_status(t)["primary"] == f"127.0.0.1:{new}" or None,
                 timeout=FAILOVER_TIMEOUT_S, what="tickerd to follow")
        n_after = max(poster.posted)
        wait_for(lambda: all(col.max_bp(s) > n_after for s in SYMS) or None, timeout=FAILOVER_TIMEOUT_S,
                 what="quotes after the failover")
        t_resume = time.monotonic()
    finally:
        poster.stop = True
        poster.join(5)
    assert poster.error is None, poster.error
    return ws, col, poster, new, t_kill, t_resume


def test_failover_over_tls(pki, tickerd_factory):  # noqa: F811
    """rediss+sentinel://: Sentinels, primary and replica on TLS only (port
    0), tickerd verifies each against the test CA (the primary by the
    address the Sentinels announce: the certificate has IP SAN 127.0.0.1),
    quotes reach a WS client, and a kill -9 of the primary is followed."""
    topo = Topology(tls=pki)
    try:
        t = tickerd_factory("--feed", "none", "--redis-url", topo.url, "--redis-ca-file", pki["ca.crt"],
                            "--ping-interval-ms", "60000")
        wait_for(lambda: ready(t), timeout=10, what="ready through the Sentinels over TLS")
        old = topo.primary_port
        st = sentinel_status(t)
        assert st["primary"] == f"127.0.0.1:{old}" and st["sentinels_ready"] == 3
        wait_for(lambda: sentinel_status(t)["sentinels_subscribed"] == 3 or None, what="+switch-master over TLS")
        ws, col, poster, new, t_kill, t_resume = ws_through_a_kill(topo, t)
        settled(t)
        last = max(poster.posted)
        wait_for(lambda: all(col.max_bp(s) == last for s in SYMS) or None, what="the last quote over TLS")
        col.stop = True
        col.join(2)
        assert col.error is None, col.error
        check_client("ws", col, poster, t_kill, t_resume)
        assert t.status()["redis"]["subscriber"]["state"] == "ready"
        # No plaintext anywhere: every node has port 0, so tickerd reached
        # the new primary over TLS or not at all.
        assert topo.client(new).config_get("port")["port"] == "0"
        assert not [e for e in t.log_events() if e.get("reason") == "TLS certificate refused"]
        ws.close()
    finally:
        topo.stop()


SENTINEL_PW = "s3ntinel-only-pw"


def test_sentinels_with_their_own_password(tickerd_factory):
    """Sentinels with `requirepass` (the data nodes without): tickerd asks
    them with TICKERD_SENTINEL_PASSWORD, follows a kill -9 of the primary
    through its authenticated +switch-master subscriptions, and a wrong or
    missing password is a clear log line, never the password itself."""
    topo = Topology(sentinel_password=SENTINEL_PW)
    try:
        wrong = tickerd_factory("--feed", "none", "--redis-url", topo.url, env={"TICKERD_SENTINEL_PASSWORD": "not-it"})
        none = tickerd_factory("--feed", "none", "--redis-url", topo.url)
        t = tickerd_factory("--feed", "none", "--redis-url", topo.url, "--ping-interval-ms", "60000",
                            env={"TICKERD_SENTINEL_PASSWORD": SENTINEL_PW})
        wait_for(lambda: ready(t), timeout=10, what="ready through Sentinels with a password")
        wait_for(lambda: sentinel_status(t)["sentinels_subscribed"] == 3 or None, what="authenticated subscriptions")
        refused = wait_for(lambda: [e for e in wrong.log_events()
                                    if e["event"] == "redis_auth_failed" and e["conn"].startswith("sentinel")],
                           what="the wrong password's redis_auth_failed line")
        assert "WRONGPASS" in refused[0]["error"] or "invalid" in refused[0]["error"], refused[0]
        wait_for(lambda: [e for e in none.log_events() if "NOAUTH" in json.dumps(e)] or None,
                 what="a NOAUTH answer logged for the missing password")
        for other in (wrong, none):
            assert other.get("/healthz").status == 200 and other.get("/readyz").status == 503
            assert sentinel_status(other)["sentinels_ready"] == 0 or sentinel_status(other).get("primary") is None
        for x in (t, wrong, none):
            assert SENTINEL_PW not in x.output() and "not-it" not in x.output()

        ws, col, _, _, _, _ = ws_through_a_kill(topo, t)
        # Heard on an authenticated subscription; it may come after tickerd
        # followed by a query (see the test above).
        wait_for(lambda: sentinel_status(t)["switch_events"] >= 1 or None, timeout=FAILOVER_TIMEOUT_S,
                 what="a +switch-master event on an authenticated subscription")
        col.stop = True
        col.join(2)
        ws.close()
    finally:
        topo.stop()


def test_stale_answer_is_refused_by_role(tickerd_factory):
    """A Sentinel that names a replica (here: one told to monitor it, which
    it keeps reporting: its down-after is far beyond the test): tickerd
    connects, ROLE says slave, nothing is sent there, and it asks again."""
    topo = Topology(replicas=1, sentinels=0)
    try:
        primary, replica = topo.data_ports
        sport = free_port()
        topo.start_sentinel(sport, monitor=replica, down_after_ms=600000)
        t = tickerd_factory("--feed", "none", "--redis-url", f"redis+sentinel://127.0.0.1:{sport}/{MASTER}")
        wait_for(lambda: (sentinel_status(t) or {}).get("stale_answers", 0) >= 2 or None, timeout=10,
                 what="ROLE to refuse the replica")
        assert sentinel_status(t)["primary"] == f"127.0.0.1:{replica}"
        assert t.get("/readyz").status == 503
        assert t.status()["redis"]["publisher"]["state"] != "ready"
        refused = wait_for(lambda: [e for e in t.log_events() if e["event"] == "redis_not_primary"],
                           what="the redis_not_primary line")
        assert refused and refused[0]["role"] == "slave" and refused[0]["port"] == replica
        assert t.request("POST", "/quotes", body=[quote("AAPL", bp=1)]).status == 202  # waits in the outbox
        time.sleep(0.3)
        assert client(replica).keys("*") == [] and client(primary).keys("*") == []
    finally:
        topo.stop()


@pytest.mark.parametrize("url, why", [
    ("redis+sentinel://127.0.0.1:26379", "master name"),
    ("redis+sentinel://127.0.0.1:26379/", "master name"),
    ("redis+sentinel://127.0.0.1:26379,/m", "empty Sentinel address"),
    ("redis+sentinel://127.0.0.1:0/m", "bad port"),
    ("redis+sentinel://h/m/x", "db number"),
    ("redis+sentinel://h/m b", "master name"),
    ("redis+sentinel://user@h/m", "userinfo"),
])
def test_bad_sentinel_urls_are_refused_at_start(url, why):
    r = subprocess.run([BIN, "--port", str(free_port()), "--feed", "none", "--redis-url", url],
                       capture_output=True, timeout=10, text=True)
    assert r.returncode == 2 and "redis_bad_url" in r.stdout + r.stderr and why in r.stdout + r.stderr, r


def away_while_posting(t, r, ws, prepare, bps):
    """Kills the subscriber's connection and POSTs `bps` (AAPL) before it
    is back, after prepare(): the subscriber returns after its backoff
    (>= 50 ms), and on a loaded machine the POSTs may be too late; then the
    client got them live, and the round is tried again with new prices.
    Returns the offset added to `bps` in the round that worked."""
    numsub = lambda: r.pubsub_numsub("quotes:AAPL")[0][1]  # noqa: E731
    for attempt in range(1, 6):
        base = attempt * 10
        prepare()
        r.client_kill_filter(_type="pubsub")
        post(t, *[quote("AAPL", bp=base + b) for b in bps])
        if numsub() == 0:
            wait_for(lambda: numsub() == 1 or None, timeout=10, what="re-SUBSCRIBE")
            return base
        ws.sock.settimeout(0.5)
        try:
            while True:
                ws.recv_json()
        except socket.timeout:
            ws.sock.settimeout(5)
    raise AssertionError("the subscriber always came back before the POSTs")


def aapl_client(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--ping-interval-ms", "60000")
    wait_for(lambda: ready(t), what="ready")
    ws = WS(t.port)
    ws.send_json({"action": "subscribe", "symbols": ["AAPL"]})
    assert ws.recv_json()["type"] == "subscribed"
    r = redis_server.client()
    wait_for(lambda: r.pubsub_numsub("quotes:AAPL")[0][1] == 1 or None, what="SUBSCRIBE")
    post(t, quote("AAPL", bp=1), quote("AAPL", bp=2))
    assert [ws.recv_json()["data"]["bp"] for _ in range(2)] == [1, 2]
    return t, ws, r


POS, HIST = "tickerd:{quotes:AAPL}:pos", "tickerd:{quotes:AAPL}:hist"


def test_new_epoch_while_resubscribing_is_a_gap_filled_from_history(redis_server, tickerd_factory):
    """What a failover to a replica without the channel's position looks
    like, on one redis-server: the position hash is gone (a new epoch
    starts at 1) and the subscriber is away while two messages go out.
    The first message after the resubscribe is seq 3 of a new epoch: the
    hub fills 1-2 from this instance's history and says recovered:true
    (before, it said recovered:true and the client never got them)."""
    t, ws, r = aapl_client(redis_server, tickerd_factory)
    base = away_while_posting(t, r, ws, lambda: r.delete(POS, HIST), [2, 3])
    post(t, quote("AAPL", bp=base + 4))
    msgs = [ws.recv_json() for _ in range(4)]
    assert [m["type"] for m in msgs] == ["quote", "quote", "recovery", "quote"], msgs
    assert [msgs[i]["data"]["bp"] for i in (0, 1, 3)] == [base + 2, base + 3, base + 4]
    assert [seq_of(msgs[i]) for i in (0, 1, 3)] == [1, 2, 3]
    assert msgs[2]["recovered"] is True and msgs[2]["replayed"] == 2
    ws.close()


def test_sequence_that_went_back_is_not_recovered(redis_server, tickerd_factory):
    """A failover to a replica that missed the last writes, on one
    redis-server: the channel's sequence goes back (the client saw 1-2; the
    new line publishes 1 while the subscriber is away, then 2). The client
    gets recovered:false covering positions 1-2, then the new line."""
    t, ws, r = aapl_client(redis_server, tickerd_factory)
    epoch = r.hget(POS, "e")
    base = away_while_posting(t, r, ws, lambda: (r.delete(HIST), r.hset(POS, "s", 0)), [3])
    post(t, quote("AAPL", bp=base + 4))
    rec, q = ws.recv_json(), ws.recv_json()
    assert r.hget(POS, "e") == epoch  # the same epoch: a rewind, not a new line
    assert rec["type"] == "recovery" and rec["recovered"] is False, rec
    assert (rec["missed_from"], rec["missed_to"]) == (1, 2)
    assert q["data"]["bp"] == base + 4 and seq_of(q) == 2
    wait_for(lambda: [e for e in t.log_events() if e["event"] == "stream_rewound"], what="stream_rewound")
    ws.close()


def test_older_configuration_is_passed_over(tickerd_factory):
    """Right after a failover, Sentinels that have not heard of it name the
    old primary. Here: Sentinel A made a failover (configuration epoch 1,
    the replica promoted); Sentinel B, listed second, monitors another
    server that says master, at epoch 0. With A stopped, a re-check asks B:
    its answer is older than what tickerd saw, so tickerd stays on the
    promoted node and never connects to B's."""
    topo = Topology(replicas=1, sentinels=0)
    a_port, b_port = free_port(), free_port()
    try:
        primary, replica = topo.data_ports
        topo.start_sentinel(a_port, down_after_ms=600000)
        wait_for(lambda: topo.promotable_replicas(a_port) == 1 or None, timeout=15,
                 what="A to see the replica in sync")
        client(a_port).execute_command("SENTINEL", "FAILOVER", MASTER)
        wait_for(lambda: topo.sentinel_primary(a_port) == ("127.0.0.1", replica) or None, timeout=15,
                 what="A's failover")
        # B comes up only after tickerd took A's answer: a round asks the
        # Sentinels whose connection is READY, in list order, so with both
        # up from the start the first round could find B's connection up
        # before A's and take B's primary (seen under load).
        t = tickerd_factory("--feed", "none", "--redis-url",
                            f"redis+sentinel://127.0.0.1:{a_port},127.0.0.1:{b_port}/{MASTER}")
        wait_for(lambda: ready(t), timeout=10, what="ready")
        st = sentinel_status(t)
        assert st["primary"] == f"127.0.0.1:{replica}" and st["config_epoch"] >= 1
        other = free_port()
        topo.start_data(other, None)
        topo.start_sentinel(b_port, monitor=other, down_after_ms=600000)
        wait_for(lambda: sentinel_status(t)["sentinels_ready"] == 2 or None, timeout=15,
                 what="tickerd's connection to B")
        topo.procs[a_port].send_signal(signal.SIGSTOP)
        client(replica).client_kill_filter(_type="normal")
        client(replica).client_kill_filter(_type="pubsub")
        wait_for(lambda: sentinel_status(t)["stale_configs"] >= 1 or None, timeout=10,
                 what="B's older answer to be passed over")
        wait_for(lambda: ready(t), timeout=10, what="ready again on the promoted node")
        assert sentinel_status(t)["primary"] == f"127.0.0.1:{replica}"
        assert ours(other) == []
    finally:
        if a_port in topo.procs:
            topo.procs[a_port].send_signal(signal.SIGCONT)
        topo.stop()
