"""Redis Cluster with sharded pub/sub (issue 18, part 2): tickerd on
redis+cluster:// publishes each channel's script on its slot's primary with
SPUBLISH, subscribes with SSUBSCRIBE on one connection per node, follows a
slot migration and a primary's failover, and its clients get a recovery
signal. A real cluster of Debian's redis-server (three primaries with a
replica each), the real binary, WebSocket and SSE clients over sockets."""
import json
import threading
import time


import pytest
import redis

from conftest import wait_for
from rcluster import RedisCluster
from test_candles import rfc3339, trade
from test_quotes import quote
from test_redis_tls import pki  # noqa: F401 (the CA and certificates, a fixture)
from test_streaming import sse_events, sse_open
from wsclient import WS

# 100 symbols: the three shards all get some (checked below).
SYMBOLS = [f"Z{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(100)]
PER_SYMBOL = 5
# How long a failover may take here: cluster-node-timeout (1 s), the
# replica's election, and tickerd reading the map again, with room to spare
# on a loaded 2-core machine.
FAILOVER_S = 20


@pytest.fixture(scope="module")
def cluster():
    c = RedisCluster(3, 1)
    yield c
    c.cleanup()


@pytest.fixture
def own_cluster():
    c = RedisCluster(3, 1)
    yield c
    c.cleanup()


def start(factory, cluster, *extra):
    t = factory("--redis-url", cluster.url, "--ping-interval-ms", "60000", *extra)
    wait_for(lambda: t.get("/readyz").status == 200 or None, timeout=10, what="cluster connections")
    return t


def subscribed_everywhere(cluster, channels, want):
    """Every channel has `want` subscribers on its owner and none elsewhere."""
    for p in cluster.primaries():
        counts = cluster.shardnumsub(p, channels)
        for ch in channels:
            owner, _ = cluster.owner(ch)
            if counts[ch] != (want if owner == p else 0):
                return False
    return True


def ws_subscribe(t, symbols):
    ws = WS(t.port)
    ws.send_json({"action": "subscribe", "symbols": symbols})
    assert ws.recv_json()["type"] == "subscribed"
    return ws


def test_quotes_over_all_shards_reach_ws_and_sse_clients(cluster, tickerd_factory):
    channels = [f"quotes:{s}" for s in SYMBOLS]
    owners = {cluster.owner(ch)[0] for ch in channels}
    assert owners == set(cluster.primaries()), "the symbols must span every shard"
    a = start(tickerd_factory, cluster, "--feed", "none")
    b = start(tickerd_factory, cluster, "--feed", "none")
    ws_a, ws_b = ws_subscribe(a, SYMBOLS), ws_subscribe(b, SYMBOLS)
    s, head, buf = sse_open(a, "symbols=" + ",".join(SYMBOLS))
    assert " 200 " in head.split("\r\n")[0]
    # two clients on a, one on b: each tickerd subscribes each channel once
    wait_for(lambda: subscribed_everywhere(cluster, channels, 2), timeout=10, what="SSUBSCRIBE on every owner")
    r = a.request("POST", "/quotes", body=[quote(sym, bp=k + 1) for k in range(PER_SYMBOL) for sym in SYMBOLS])
    assert r.status == 202, r.body
    total = PER_SYMBOL * len(SYMBOLS)
    for ws in (ws_a, ws_b):
        got = {}
        for _ in range(total):
            m = ws.recv_json()
            assert m["type"] == "quote", m
            got.setdefault(m["symbol"], []).append((m["data"]["seq"], m["data"]["bp"]))
        assert set(got) == set(SYMBOLS)
        for sym, seen in got.items():
            seqs = [q for q, _ in seen]
            assert seqs == list(range(seqs[0], seqs[0] + PER_SYMBOL)), (sym, seen)
            assert [bp for _, bp in seen] == [k + 1 for k in range(PER_SYMBOL)], (sym, seen)
    evs, buf = sse_events(s, buf, total)
    assert sorted((json.loads(e["data"])["S"], json.loads(e["data"])["bp"]) for e in evs) == \
        sorted((sym, k + 1) for k in range(PER_SYMBOL) for sym in SYMBOLS)
    st = a.status()["redis"]
    assert st["publisher"]["published"] == total and st["publisher"]["errors"] == 0, st
    assert st["subscriber"]["channels"] == len(SYMBOLS), st
    # nothing went by classic PUBLISH: no classic subscriber saw a channel
    for p in cluster.primaries():
        assert cluster.client(p).execute_command("PUBSUB", "NUMSUB", channels[0])[1] == 0
    s.close()
    ws_b.close()
    ws_a.close()
    # the last client gone: SUNSUBSCRIBE everywhere
    wait_for(lambda: subscribed_everywhere(cluster, channels, 0), timeout=10, what="SUNSUBSCRIBE")
    # a clean shutdown: every node connection closed, nothing leaked (ASan)
    assert a.stop() == 0 and b.stop() == 0, a.output() + b.output()


def test_lease_follows_its_keys_slot_when_it_moves(cluster, tickerd_factory):
    """Fails on the first version: the lease got MOVED answers from the old
    owner, never read the map again, and the feed stopped at its deadline."""
    t = start(tickerd_factory, cluster, "--feed", "sim", "--symbols", ",".join(SIM), "--sim-rate", "120",
              "--lease-ttl-ms", "1500", "--lease-renew-ms", "300")
    wait_for(lambda: t.status()["role"] == "holder" or None, what="the lease")
    slot, src, dst = cluster.migrate("tickerd:lease:sim")
    time.sleep(3)  # two TTLs: an unrenewed lease would have run out
    st = t.status()["lease"]
    assert t.status()["role"] == "holder" and st["lost"] == 0, st
    assert cluster.client(dst).get("tickerd:lease:sim").decode() == st["holder"]
    before = t.status()["redis"]["publisher"]["published"]
    wait_for(lambda: t.status()["redis"]["publisher"]["published"] > before + 20 or None, what="quotes going on")
    assert t.stop() == 0, t.output()


def test_ask_during_a_migration_is_followed(cluster, tickerd_factory):
    """A slot half-way through a migration: its keys already on the new
    owner, the old one still owns the slot and answers ASK. The script is
    sent again after ASKING to the named node, once. Failed on the first
    version: the ASK/MOVED answer's "<slot> <host:port>" was parsed as if it
    still began with the word, no node was found, and the quote dropped."""
    t = start(tickerd_factory, cluster, "--feed", "none")
    sym = SYMBOLS[7]
    ch = f"quotes:{sym}"
    assert t.request("POST", "/quotes", body=[quote(sym, bp=1)]).status == 202
    wait_for(lambda: t.status()["redis"]["publisher"]["published"] == 1 or None, what="the first quote")
    slot = cluster.keyslot(ch)
    src, sid = cluster.owner(ch)
    dst = next(p for p in cluster.primaries() if p != src)
    did = cluster.client(dst).execute_command("CLUSTER", "MYID").decode()
    S, D = cluster.client(src), cluster.client(dst)
    seq = int(S.hget(f"tickerd:{{{ch}}}:pos", "s"))
    D.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
    S.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
    keys = S.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
    S.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
    try:
        assert t.request("POST", "/quotes", body=[quote(sym, bp=2)]).status == 202
        wait_for(lambda: t.status()["redis"]["publisher"]["published"] == 2 or None, what="the quote after ASK")
        assert t.status()["redis"]["publisher"]["errors"] == 0
        # it went to the importing node, in the same stream, with the next seq
        pipe = D.pipeline(transaction=False)  # one connection: ASKING, then the read
        pipe.execute_command("ASKING")
        pipe.hget(f"tickerd:{{{ch}}}:pos", "s")
        assert int(pipe.execute()[1]) == seq + 1
    finally:
        for p in (dst, src):
            cluster.client(p).execute_command("CLUSTER", "SETSLOT", slot, "NODE", did)
    assert t.stop() == 0, t.output()


def test_cluster_with_a_password(tickerd_factory):
    """AUTH on every connection: the map reads, the shard publishers and the
    sharded subscriber's own connections; the password never reaches the log."""
    c = RedisCluster(3, 0, password="s3cret-pw")
    try:
        t = start(tickerd_factory, c, "--feed", "none")
        syms = SYMBOLS[:30]
        ws = ws_subscribe(t, syms)
        wait_for(lambda: subscribed_everywhere(c, [f"quotes:{s}" for s in syms], 1), timeout=10, what="SSUBSCRIBE")
        assert t.request("POST", "/quotes", body=[quote(s, bp=7) for s in syms]).status == 202
        got = {ws.recv_json()["symbol"] for _ in syms}
        assert got == set(syms)
        ws.close()
        assert t.stop() == 0, t.output()
        with open(t.log_path) as f:
            assert "s3cret-pw" not in f.read()
    finally:
        c.cleanup()


class Reader:
    """Reads a WS client in a thread: quotes by symbol, recovery messages."""

    def __init__(self, ws):
        self.ws, self.quotes, self.recoveries, self.lock = ws, {}, [], threading.Lock()
        self.stop = False
        self.ws.sock.settimeout(0.5)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                m = self.ws.recv_json()
            except (TimeoutError, OSError):
                continue
            with self.lock:
                if m.get("type") == "quote":
                    self.quotes.setdefault(m["symbol"], []).append(
                        (time.monotonic(), m["data"]["seq"], m["data"]["epoch"]))
                elif m.get("type") == "recovery":
                    self.recoveries.append((time.monotonic(), m))

    def after(self, sym, t0):
        with self.lock:
            return [q for q in self.quotes.get(sym, []) if q[0] > t0]

    def recovery_of(self, sym, t0):
        with self.lock:
            return [m for t, m in self.recoveries if t > t0 and m["symbol"] == sym]

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.ws.close()


SIM = SYMBOLS[:12]


def test_slot_migration_resubscribes_and_signals_recovery(cluster, tickerd_factory):
    t = start(tickerd_factory, cluster, "--feed", "sim", "--symbols", ",".join(SIM), "--sim-rate", "240")
    rd = Reader(ws_subscribe(t, SIM))
    sym = SIM[0]
    ch = f"quotes:{sym}"
    wait_for(lambda: len(rd.after(sym, 0)) >= 5 or None, what="quotes before the move")
    t0 = time.monotonic()
    slot, src, dst = cluster.migrate(ch)
    # the node told tickerd (an unsolicited sunsubscribe): it subscribes on the new owner
    wait_for(lambda: cluster.shardnumsub(dst, [ch])[ch] == 1 and cluster.shardnumsub(src, [ch])[ch] == 0,
             timeout=10, what="SSUBSCRIBE on the slot's new owner")
    rec = wait_for(lambda: rd.recovery_of(sym, t0), timeout=10, what="a recovery message")
    assert "recovered" in rec[0], rec
    later = wait_for(lambda: [q for q in rd.after(sym, t0)][5:] or None, timeout=10, what="quotes after the move")
    before = rd.after(sym, 0)
    # the sequence goes on from the migrated keys (same epoch, higher seq)
    assert later[-1][2] == before[0][2] and later[-1][1] > before[0][1]
    if rec[0]["recovered"]:
        seqs = [s for _, s, _ in before]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "recovered: true, so nothing may be missing"
    events = [e["event"] for e in t.log_events()]
    assert "redis_shard_channel_moved" in events
    st = t.status()["redis"]
    assert st["subscriber"]["state"] == "ready" and st["publisher"]["state"] == "ready", st
    rd.close()
    assert t.stop() == 0, t.output()


def test_primary_killed_replica_promoted_quotes_flow_again(own_cluster, tickerd_factory):
    cluster = own_cluster
    t = start(tickerd_factory, cluster, "--feed", "sim", "--symbols", ",".join(SIM), "--sim-rate", "240")
    rd = Reader(ws_subscribe(t, SIM))
    sym = SIM[0]
    ch = f"quotes:{sym}"
    wait_for(lambda: len(rd.after(sym, 0)) >= 5 or None, what="quotes before the kill")
    victim, _ = cluster.owner(ch)
    t0 = time.monotonic()
    cluster.kill(victim)
    # the replica takes over the slot
    promoted = wait_for(lambda: (lambda p: p if p and p != victim else None)(cluster.owner(ch)[0]),
                        timeout=FAILOVER_S, interval=0.1, what="the replica's promotion")
    # quotes of the failed shard flow again, to the same client
    wait_for(lambda: len(rd.after(sym, t0)) >= 5 or None, timeout=FAILOVER_S, what="quotes after the failover")
    rec = wait_for(lambda: rd.recovery_of(sym, t0), timeout=10, what="a recovery message")
    if not rec[0]["recovered"]:
        assert rec[0]["missed_from"] <= rec[0]["missed_to"], rec
    assert cluster.shardnumsub(promoted, [ch])[ch] == 1
    # the other shards' symbols never stopped
    others = [s for s in SIM if cluster.owner(f"quotes:{s}")[0] != promoted]
    for s in others:
        assert rd.after(s, t0), s
    wait_for(lambda: t.status()["redis"]["publisher"]["state"] == "ready" or None, what="publisher ready")
    events = [e["event"] for e in t.log_events()]
    assert "redis_shard_lost" in events
    rd.close()
    assert t.stop() == 0, t.output()


def test_cluster_over_tls(pki, tickerd_factory):  # noqa: F811
    """rediss+cluster://: a cluster with TLS ports only (no plaintext port,
    TLS on the bus and replication), so every connection tickerd makes -- map
    reads, shard publishers, the sharded subscriber's own sockets, the lease
    -- is a verified TLS one, or nothing would work."""
    c = RedisCluster(3, 1, tls=pki)
    try:
        assert c.url.startswith("rediss+cluster://")
        channels = [f"quotes:{s}" for s in SYMBOLS]
        # owners once, over one connection: each c.client() call is a new
        # TLS handshake, too slow for subscribed_everywhere's polling
        ask, slots = c.client(c.primaries()[0]), c.slots()
        owners = {}
        for ch in channels:
            k = int(ask.execute_command("CLUSTER", "KEYSLOT", ch))
            owners[ch] = next(p for lo, hi, p, _ in slots if lo <= k <= hi)
        assert set(owners.values()) == set(c.primaries())

        def subscribed_once():
            return all(n == (1 if owners[ch] == p else 0)
                       for p in c.primaries() for ch, n in c.shardnumsub(p, channels).items())

        a = start(tickerd_factory, c, "--feed", "none", "--redis-ca-file", pki["ca.crt"])
        ws = ws_subscribe(a, SYMBOLS)
        wait_for(subscribed_once, timeout=10, what="SSUBSCRIBE over TLS once on every owner")
        r = a.request("POST", "/quotes", body=[quote(sym, bp=k + 1) for k in range(PER_SYMBOL) for sym in SYMBOLS])
        assert r.status == 202, r.body
        got = {}
        for _ in range(PER_SYMBOL * len(SYMBOLS)):
            m = ws.recv_json()
            assert m["type"] == "quote", m
            got.setdefault(m["symbol"], []).append(m["data"]["bp"])
        assert got == {sym: [k + 1 for k in range(PER_SYMBOL)] for sym in SYMBOLS}
        st = a.status()["redis"]
        assert st["publisher"]["published"] == PER_SYMBOL * len(SYMBOLS) and st["publisher"]["errors"] == 0, st
        # the lease (routed by its key's slot) and a simulated feed on it
        b = start(tickerd_factory, c, "--feed", "sim", "--symbols", ",".join(SIM), "--sim-rate", "120",
                  "--redis-ca-file", pki["ca.crt"])
        wait_for(lambda: b.status()["role"] == "holder" or None, what="the lease over TLS")
        owner, _ = c.owner("tickerd:lease:sim")
        assert c.client(owner).get("tickerd:lease:sim").decode() == b.status()["lease"]["holder"]
        assert ws.recv_until(lambda m: m.get("type") == "quote" and m["data"].get("bp") not in range(1, 6))
        ws.close()
        # candles over TLS: a's bar store writes on the series' primary, b reads it there
        sym = "TLSC"
        ws = WS(a.port)
        ws.send_json({"action": "subscribe", "candles": {"symbols": [sym], "tf": "1m"}})
        assert ws.recv_json()["type"] == "subscribed"
        base = (time.time_ns() // 60_000_000_000 - 5) * 60_000_000_000
        r = a.request("POST", "/quotes", body=[trade(sym, base, 10.0, 5, 1), trade(sym, base + 60_000_000_000, 11.0, 1, 2)])
        assert r.status == 202, r.body
        bar = ws.recv_until(lambda m: m["type"] == "candle" and m["data"]["closed"])["data"]
        assert (bar["o"], bar["v"]) == (10.0, 5)
        assert wait_for(lambda: [x for x in b.get(f"/candles/{sym}?tf=1m").json().get("bars", []) if x["closed"]] or None,
                        what="the bar read on the other instance") == [bar]
        ws.close()
        assert b.stop() == 0, b.output()
        assert a.stop() == 0, a.output()
    finally:
        c.cleanup()


def test_cluster_over_tls_refuses_a_certificate_for_another_host(pki, tickerd_factory):  # noqa: F811
    """One TLS node whose certificate names 10.9.9.9, not the 127.0.0.1 the
    URL and the map name: refused with a clear line, HTTP keeps serving."""
    c = RedisCluster(1, 0, tls=dict(pki, **{"server.crt": pki["other.crt"], "server.key": pki["other.key"]}))
    try:
        t = tickerd_factory("--feed", "none", "--redis-url", c.url, "--redis-ca-file", pki["ca.crt"])
        wait_for(lambda: any(e.get("reason") == "TLS certificate refused" and "mismatch" in e.get("detail", "")
                             for e in t.log_events() if e.get("event") == "redis_connect_failed") or None,
                 what="the refusal in the log")
        assert t.get("/healthz").status == 200
        assert t.get("/readyz").status == 503
        assert t.stop() == 0, t.output()
    finally:
        c.cleanup()


class ShardSubscriber:
    """A plain client of one node with SSUBSCRIBE, as redis-cli would be
    (redis-py 4.3 has no ssubscribe: the command and the pushed arrays by
    hand, over one of its connections)."""

    def __init__(self, cluster, port, channels):
        self.conn = redis.Connection(host="127.0.0.1", port=port, password=cluster.password, socket_timeout=5)
        self.conn.send_command("SSUBSCRIBE", *channels)
        for _ in channels:
            kind, _, _ = self.conn.read_response()
            assert kind == b"ssubscribe"

    def closed_bars(self, want, timeout=10, after=""):
        """{(channel, t): bar} of the closed bars pushed, until `want` of
        them start after `after` (all of them are returned)."""
        got, deadline = {}, time.monotonic() + timeout
        while sum(t > after for _, t in got) < want and time.monotonic() < deadline:
            # redis-py drops the connection on a read timeout: poll first
            if not self.conn.can_read(timeout=0.2):
                continue
            kind, ch, payload = self.conn.read_response()
            assert kind == b"smessage"
            b = json.loads(payload)
            if b["closed"]:
                key = (ch.decode(), b["t"])
                assert key not in got, "a closed bar was published twice"
                got[key] = b
        return got

    def close(self):
        self.conn.disconnect()


# Symbols of the candle tests only: the module's cluster keeps the bars of
# the other tests' simulated feeds (SIM), newer than the trades posted here.
CANDLE_SYMBOLS = [f"CN{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(100)]


def one_symbol_per_shard(cluster, tf):
    """A symbol whose bar channel each primary owns."""
    by_owner = {}
    for sym in CANDLE_SYMBOLS:
        by_owner.setdefault(cluster.owner(f"candles:{tf}:{sym}")[0], sym)
    assert set(by_owner) == set(cluster.primaries())
    return by_owner


def candle_args(*extra):
    return ("--candle-grace-ms", "0", "--candle-timeframes", "1s,1m", *extra)


def test_candles_on_a_cluster_agree_on_shards_ws_sse_and_another_instance(cluster, tickerd_factory):
    """Bars built by one instance on a Cluster: each series' script runs on
    its slot's primary and SPUBLISHes there; a plain SSUBSCRIBE client of
    that node, a WebSocket client of another instance, an SSE client of the
    builder and GET /candles on the other instance (read from the key's
    primary) all see the same closed bars. Failed before: tickerd refused
    candles on a Cluster (candles_off), GET /candles answered 404."""
    by_owner = one_symbol_per_shard(cluster, "1s")
    syms = sorted(by_owner.values())
    for sym in syms:
        # the channel has no hash tag: it hashes to the key's tag, one slot
        assert cluster.keyslot(f"candles:1s:{sym}") == cluster.keyslot(f"tickerd:{{candles:1s:{sym}}}:bars")
    a = start(tickerd_factory, cluster, "--feed", "none", *candle_args())
    b = start(tickerd_factory, cluster, "--feed", "none", *candle_args())
    for t in (a, b):
        wait_for(lambda t=t: t.status()["candles"]["store"]["connected"] or None, what="the candle store's shards")
    raw = {p: ShardSubscriber(cluster, p, [f"candles:1s:{sym}"]) for p, sym in by_owner.items()}
    ws = WS(b.port)
    ws.send_json({"action": "subscribe", "candles": {"symbols": syms, "tf": "1s"}})
    assert ws.recv_json()["type"] == "subscribed"
    s, head, buf = sse_open(a, "candles=" + ",".join(syms) + "&tf=1s")
    assert " 200 " in head.split("\r\n")[0]
    channels = [f"candles:1s:{sym}" for sym in syms]
    # the raw client, and each instance once, on the owner only
    wait_for(lambda: subscribed_everywhere(cluster, channels, 3), timeout=10, what="SSUBSCRIBE of the bar channels")

    base = (time.time_ns() // 1_000_000_000 - 30) * 1_000_000_000
    items = []
    for k, sym in enumerate(syms):
        items += [trade(sym, base + 100_000_000, 10.0 + k, 100, 1), trade(sym, base + 900_000_000, 12.0 + k, 50, 2),
                  trade(sym, base + 1_200_000_000, 11.0 + k, 30, 3), trade(sym, base + 3_000_000_000, 13.0, 1, 4)]
    r = a.request("POST", "/quotes", body=items)
    assert r.status == 202, r.body
    # two closed bars per symbol, each on its own shard
    shard = {}
    for p, sub in raw.items():
        got = sub.closed_bars(2)
        assert {ch for ch, _ in got} == {f"candles:1s:{by_owner[p]}"}, got
        shard.update(got)
    assert len(shard) == 2 * len(syms)
    first = rfc3339(base)[:19] + "Z"
    for k, sym in enumerate(syms):
        bar = shard[(f"candles:1s:{sym}", first)]
        assert (bar["o"], bar["h"], bar["c"], bar["v"], bar["n"]) == (10.0 + k, 12.0 + k, 12.0 + k, 150, 2), bar
    # the same closed bars over WebSocket (instance b) and SSE (instance a)
    ws_closed = {}
    while len(ws_closed) < len(shard):
        m = ws.recv_json()
        assert m["type"] == "candle", m
        if m["data"]["closed"]:
            ws_closed[(m["channel"], m["data"]["t"])] = m["data"]
    assert ws_closed == shard
    sse_closed = {}
    while len(sse_closed) < len(shard):
        evs, buf = sse_events(s, buf, 1)
        d = json.loads(evs[0]["data"])
        if evs[0]["event"] == "candle" and d["closed"]:
            sse_closed[(f"candles:1s:{d['S']}", d["t"])] = d
    assert sse_closed == shard
    # GET /candles on the instance that built none: from each key's primary
    for sym in syms:
        r = b.get(f"/candles/{sym}?tf=1s")
        assert r.status == 200, r.body
        closed = [x for x in r.json()["bars"] if x["closed"]]
        assert closed == sorted((v for (ch, _), v in shard.items() if ch == f"candles:1s:{sym}"), key=lambda x: x["t"])
        # the open bar follows (its update is sent within a second)
        wait_for(lambda sym=sym: b.get(f"/candles/{sym}?tf=1s").json()["bars"][-1]["c"] == 13.0 or None,
                 what="the open bar in the store")
    # the subscribe's history on that instance: read from the key's primary too
    ws2 = WS(b.port)
    ws2.send_json({"action": "subscribe", "candles": {"symbols": [syms[-1]], "tf": "1s"}, "history": 10})
    assert ws2.recv_json()["type"] == "subscribed"
    h = ws2.recv_until(lambda m: m["type"] == "candles")
    assert "unavailable" not in h and [x for x in h["bars"] if x["closed"]] == \
        sorted((v for (ch, _), v in shard.items() if ch == f"candles:1s:{syms[-1]}"), key=lambda x: x["t"])
    ws2.close()
    st_a, st_b = a.status()["candles"], b.status()["candles"]
    assert st_b["trades"] == 0 and st_b["store"]["reads"] > len(syms), st_b
    assert st_a["store"]["errors"] == 0 and st_a["store"]["stored"] == st_a["store"]["sent"], st_a
    # nothing went by classic PUBLISH: no node counts a classic subscriber
    for p in cluster.primaries():
        assert cluster.client(p).execute_command("PUBSUB", "NUMSUB", *channels)[1::2] == [0] * len(channels)
    for sub in raw.values():
        sub.close()
    s.close()
    ws.close()
    assert a.stop() == 0 and b.stop() == 0, a.output() + b.output()


def test_candles_flow_again_after_the_primary_of_a_series_is_killed(own_cluster, tickerd_factory):
    """kill -9 of the primary that owns a series' key and channel: once its
    replica is promoted, the store's script runs there, a client of the new
    primary gets the new bars, the tickerd's WebSocket client gets them
    (its SSUBSCRIBE moved with the slot) and the key holds them."""
    cluster = own_cluster
    t = start(tickerd_factory, cluster, "--feed", "sim", "--symbols", ",".join(SIM), "--sim-rate", "240",
              "--sim-trades", "1", "--candle-grace-ms", "0", "--candle-timeframes", "1s")
    sym = SIM[0]
    ch, key = f"candles:1s:{sym}", f"tickerd:{{candles:1s:{sym}}}:bars"
    ws = WS(t.port)
    # every symbol: the other shards' bars keep the socket busy meanwhile
    ws.send_json({"action": "subscribe", "candles": {"symbols": SIM, "tf": "1s"}})
    assert ws.recv_json()["type"] == "subscribed"

    def closed_bar_of(sym, after):
        return lambda m: m["type"] == "candle" and m["channel"] == f"candles:1s:{sym}" and m["data"]["closed"] \
            and m["data"]["t"] > after

    ws.recv_until(closed_bar_of(sym, ""), limit=5000)
    victim, _ = cluster.owner(ch)
    killed_at = rfc3339(time.time_ns())[:19] + "Z"
    cluster.kill(victim)
    promoted = wait_for(lambda: (lambda p: p if p and p != victim else None)(cluster.owner(ch)[0]),
                        timeout=FAILOVER_S, interval=0.1, what="the replica's promotion")
    raw = ShardSubscriber(cluster, promoted, [ch])
    # bars of this series made after the kill, on the new primary and over WebSocket
    got = raw.closed_bars(1, timeout=FAILOVER_S, after=killed_at)
    assert any(t_ > killed_at for (_, t_) in got), got
    ws.recv_until(closed_bar_of(sym, killed_at), limit=20000)
    stored = [json.loads(b) for b in cluster.client(promoted).zrange(key, 0, -1)]
    assert any(b["closed"] and b["t"] > killed_at for b in stored)
    wait_for(lambda: t.status()["candles"]["store"]["connected"] or None, what="the store on the new primary")
    # closed bars in flight or waiting at the kill went to the new primary, none given up
    st = wait_for(lambda: (s := t.status()["candles"]["store"])["waiting"] == 0 and s or None, what="no bar waiting")
    assert st["dropped"] == 0, st
    raw.close()
    ws.close()
    assert t.stop() == 0, t.output()


def test_candle_store_follows_ask_then_moved_when_a_series_slot_migrates(cluster, tickerd_factory):
    """A series' slot half-way through a migration (its key already on the
    new owner): the closed bar meets ASK and is sent once more, after
    ASKING, to the importing node. Once the slot is the new owner's, the old
    one answers MOVED and the next closed bar goes to the new owner; the
    WebSocket client's SSUBSCRIBE moved with the slot."""
    t = start(tickerd_factory, cluster, "--feed", "none", *candle_args())
    wait_for(lambda: t.status()["candles"]["store"]["connected"] or None, what="the candle store's shards")
    sym = CANDLE_SYMBOLS[-1]
    ch, key = f"candles:1s:{sym}", f"tickerd:{{candles:1s:{sym}}}:bars"
    ws = WS(t.port)
    ws.send_json({"action": "subscribe", "candles": {"symbols": [sym], "tf": "1s"}})
    assert ws.recv_json()["type"] == "subscribed"
    base = (time.time_ns() // 1_000_000_000 - 30) * 1_000_000_000

    def post_trades(*tr):
        return t.request("POST", "/quotes", body=list(tr)).status == 202
    assert post_trades(trade(sym, base, 10.0, 5, 1))
    src, sid = cluster.owner(ch)
    wait_for(lambda: cluster.client(src).zcard(key) == 1 or None, what="the open bar on its owner")
    slot = cluster.keyslot(ch)
    dst = next(p for p in cluster.primaries() if p != src)
    did = cluster.client(dst).execute_command("CLUSTER", "MYID").decode()
    S, D = cluster.client(src), cluster.client(dst)
    D.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
    S.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
    keys = S.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
    S.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
    try:
        assert post_trades(trade(sym, base + 2_000_000_000, 11.0, 1, 2))   # closes the first bar: ASK

        def on_importing_node():
            pipe = D.pipeline(transaction=False)   # one connection: ASKING, then the read
            pipe.execute_command("ASKING")
            pipe.zrange(key, 0, -1)
            return [json.loads(b) for b in pipe.execute()[1]]
        stored = wait_for(lambda: (b := on_importing_node()) and b[0]["closed"] and b or None,
                          what="the closed bar on the importing node")
        assert (stored[0]["c"], stored[0]["v"]) == (10.0, 5)
    finally:
        cluster.assign(slot, did, dst, src)
    # the subscriber moved with the slot (an unsolicited sunsubscribe) before the next bar
    wait_for(lambda: cluster.shardnumsub(dst, [ch])[ch] == 1 and cluster.shardnumsub(src, [ch])[ch] == 0,
             timeout=10, what="SSUBSCRIBE on the slot's new owner")
    assert post_trades(trade(sym, base + 4_000_000_000, 12.0, 1, 3))   # closes the second: MOVED, then dst
    wait_for(lambda: [json.loads(b)["closed"] for b in D.zrange(key, 0, -1)][:2] == [True, True] or None,
             what="the second closed bar on the new owner")
    second = rfc3339(base + 2_000_000_000)[:19] + "Z"
    m = ws.recv_until(lambda m: m["type"] == "candle" and m["data"]["closed"] and m["data"]["t"] == second)
    assert (m["data"]["c"], m["data"]["v"]) == (11.0, 1)
    st = t.status()["candles"]["store"]
    assert st["resent"] >= 2 and st["dropped"] == 0 and st["waiting"] == 0, st
    ws.close()
    assert t.stop() == 0, t.output()
