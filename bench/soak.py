#!/usr/bin/python3
"""make soak: tickerd under mixed load for a long time while Redis dies.

    /usr/bin/python3 bench/soak.py BIN [--minutes 30] [--out build/soak]

Starts its own redis-server and tickerd on free 127.0.0.1 ports and, for the
whole run, keeps up:
  - GET /hello on a few keep-alive connections (HELLO_RATE requests/s);
  - STREAM_CLIENTS WebSocket and SSE clients: most churn (live a few seconds
    to a minute, then close cleanly or are dropped with a TCP reset), a
    sticky tenth stays connected from start to end, through every Redis kill;
  - SLOW_READERS clients with tiny receive buffers that read 5 % of the time;
  - QUOTE_RATE quotes/s through POST /quotes, in batches, over SYMBOLS symbols.
Every KILL_EVERY_S Redis is killed with SIGKILL and restarted on the same port
after REDIS_DOWN_S. Every SAMPLE_S the RSS of tickerd and its /status counters
go to soak.csv.

At the end the load stops (sticky clients stay), the run settles, and it
checks, failing with exit status 1 on any miss:
  1. RSS plateaus: growth over the last third of the run, by a least-squares
     line through its samples, is under RSS_GROWTH_MAX;
  2. the publisher's counters add up: published + conflated + dropped +
     errors == quotes.queued (inflight and outbox drained to 0);
  3. no client is left subscribed to a channel Redis no longer delivers to
     it: the hub's channels are exactly the sticky clients' symbols, Redis
     has a subscriber on each of them (PUBSUB CHANNELS / NUMSUB), and a probe
     quote POSTed per symbol reaches every sticky client;
  4. the log holds no unexplained warning or error: each event is in
     EXPECTED_ANYTIME, or in EXPECTED_NEAR_KILL and logged while Redis was
     down or within KILL_EXPLAIN_S of its restart;
and /status answered every sample. It then plots RSS and deliveries/s to
soak.png with gnuplot.

Everything is bounded in count and time and goes to 127.0.0.1 only.
"""
import argparse
import asyncio
import base64
import calendar
import csv
import http.client
import json
import os
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import time

import redis

# ---- the load ----------------------------------------------------------------
SYMBOLS = 1000              # S0000 .. S0999
QUOTE_RATE = 5000           # quotes/s through POST /quotes
QUOTE_BATCH = 100           # quotes per POST
POST_CONNS = 4              # keep-alive connections that POST
HELLO_RATE = 100            # GET /hello per second
HELLO_CONNS = 4
STREAM_CLIENTS = 2000       # WebSocket + SSE clients at any time, sticky included
STICKY_SHARE = 0.10         # of STREAM_CLIENTS: connected for the whole run
SLOW_READERS = 100          # on top of STREAM_CLIENTS
SLOW_READ_EVERY_S = 1.0     # a slow reader pauses this long ...
SLOW_READ_WINDOW_S = 0.05   # ... then reads for this long
SLOW_SYMBOLS = 20           # symbols each slow reader subscribes to
LIFETIME_S = (5, 60)        # a churning client's life
DROP_SHARE = 0.5            # of churning clients' ends: a TCP reset, not a close
# ---- faults and sampling -------------------------------------------------------
KILL_EVERY_S = 120
REDIS_DOWN_S = 3
SAMPLE_S = 10
SETTLE_S = 20               # after the load stops, before the checks
PROBE_WAIT_S = 10
# ---- checks ---------------------------------------------------------------------
RSS_GROWTH_MAX = 0.05
KILL_EXPLAIN_S = 30
# Events a slow reader or the simulated task failures explain at any time.
EXPECTED_ANYTIME = {"slow_client_closed", "client_write_timeout", "task_failed"}
# Events a Redis kill explains: lost connections, failed reconnects and the
# commands that were in flight, and messages Redis dropped with it.
EXPECTED_NEAR_KILL = {"redis_lost", "redis_connect_failed", "redis_command_timeout",
                      "redis_hset_failed", "redis_sub_heartbeat_timeout", "stream_gap"}
# tickerd's settings for the run (see README, soak): history kept small so
# that RSS shows the service, not 1,000 symbols x 1,000 quotes of history.
TICKERD_ARGS = ["--feed", "none", "--log-level", "warn", "--history-size", "100",
                "--max-connections", "20000", "--max-stream-clients", "20000"]

WS_KEY = base64.b64encode(b"tickerd-soak-key").decode()
PROBE_SIZE_BASE = 900000000  # a probe quote's "bs": base + symbol index


def sym(i):
    return "S%04d" % i


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def quote(i, size=None):
    bid = round(100 + random.random() * 10, 2)
    return {"T": "q", "S": sym(i), "bx": "V", "bp": bid, "bs": size if size else random.randint(1, 9),
            "ax": "V", "ap": round(bid + 0.01, 2), "as": random.randint(1, 9), "c": ["R"], "z": "C",
            "t": now_iso()}


def ws_frame(data, opcode=0x1):
    """A masked client frame (payloads here are < 64 KiB)."""
    if isinstance(data, str):
        data = data.encode()
    mask = os.urandom(4)
    n = len(data)
    b0 = 0x80 | opcode
    head = bytes([b0, 0x80 | n]) if n < 126 else bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class Stats:
    def __init__(self):
        self.connects = self.refused = self.closes = self.drops = 0
        self.slow_connects = self.slow_closed_by_server = 0
        self.posts = self.post_errors = self.quotes_posted = 0
        self.hellos = self.hello_errors = 0
        self.bytes_in = 0
        self.pongs = 0
        self.live = set()  # StreamClients connected now


# ---- stream clients ---------------------------------------------------------------

class StreamProto(asyncio.Protocol):
    """Reads and counts, answers the server's WebSocket pings (it closes a
    client that does not), and in the probe phase looks for its symbols'
    probe quotes."""

    def __init__(self, client):
        self.client = client
        self.transport = None
        self.buf = b""
        self.frames = bytearray()  # WebSocket: bytes of an incomplete frame
        self.open = False
        self.lost = asyncio.get_running_loop().create_future()

    def ws_frames(self, data):
        """Walks the server's frames (unmasked) and answers each ping."""
        b = self.frames
        b += data
        off = 0
        while len(b) - off >= 2:
            n, hl = b[off + 1] & 0x7F, 2
            if n == 126:
                if len(b) - off < 4:
                    break
                n, hl = struct.unpack_from(">H", b, off + 2)[0], 4
            elif n == 127:
                if len(b) - off < 10:
                    break
                n, hl = struct.unpack_from(">Q", b, off + 2)[0], 10
            if len(b) - off < hl + n:
                break
            if b[off] & 0x0F == 0x9:
                self.transport.write(ws_frame(bytes(b[off + hl:off + hl + n]), opcode=0xA))
                self.client.stats.pongs += 1
            off += hl + n
        del b[:off]

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        c = self.client
        c.stats.bytes_in += len(data)
        if not self.open:
            self.buf += data
            if b"\r\n\r\n" in self.buf:
                head, _, rest = self.buf.partition(b"\r\n\r\n")
                self.open = head.startswith(b"HTTP/1.1 101") or head.startswith(b"HTTP/1.1 200")
                if not self.open:
                    c.stats.refused += 1
                    self.transport.close()
                self.buf = rest
                if self.open and c.websocket:
                    self.ws_frames(rest)
            if len(self.buf) > 65536:
                self.buf = self.buf[-256:]
            return
        if c.websocket:
            self.ws_frames(data)
        if c.probes_wanted:
            tail = self.buf + data
            for s in list(c.probes_wanted):
                if c.probe_markers[s] in tail:
                    c.probes_wanted.discard(s)
            self.buf = tail[-64:]

    def connection_lost(self, exc):
        self.client.stats.live.discard(self.client)
        if not self.lost.done():
            self.lost.set_result(exc)


class StreamClient:
    def __init__(self, port, stats, symbols, websocket, rcvbuf=None):
        self.port, self.stats, self.symbols, self.websocket = port, stats, symbols, websocket
        self.rcvbuf = rcvbuf
        self.proto = None
        self.probes_wanted = set()
        self.probe_markers = {s: b'"bs":%d' % (PROBE_SIZE_BASE + int(s[1:])) for s in symbols}

    async def connect(self):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        _, self.proto = await loop.create_connection(lambda: StreamProto(self), sock=sock)
        if self.websocket:
            req = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % WS_KEY).encode()
            req += ws_frame(json.dumps({"action": "subscribe", "symbols": self.symbols}))
        else:
            req = ("GET /stream?symbols=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
                   % ",".join(self.symbols)).encode()
        self.proto.transport.write(req)
        self.stats.connects += 1
        self.stats.live.add(self)

    def alive(self):
        return self.proto is not None and not self.proto.lost.done()

    def end(self, drop):
        if not self.alive():
            return
        t = self.proto.transport
        if drop:
            # a reset, as from a client that vanished: no close handshake
            sock = t.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.stats.drops += 1
        else:
            self.stats.closes += 1
        t.close()


def pick_symbols(rng, n):
    return [sym(i) for i in rng.sample(range(SYMBOLS), n)]


async def churner(port, stats, rng, stop):
    while not stop.is_set():
        c = StreamClient(port, stats, pick_symbols(rng, rng.choice((1, 1, 2))), rng.random() < 0.5)
        try:
            await c.connect()
        except OSError:
            stats.refused += 1
            await asyncio.sleep(1)
            continue
        life = rng.uniform(*LIFETIME_S)
        try:
            await asyncio.wait_for(asyncio.shield(c.proto.lost), life)
        except asyncio.TimeoutError:
            pass
        c.end(drop=rng.random() < DROP_SHARE)
        await asyncio.sleep(rng.uniform(0, 0.5))


async def slow_reader(port, stats, rng, stop):
    """Subscribes to many symbols and reads for SLOW_READ_WINDOW_S a second;
    when the server closes it (slow client), it comes back."""
    while not stop.is_set():
        c = StreamClient(port, stats, pick_symbols(rng, SLOW_SYMBOLS), rng.random() < 0.5, rcvbuf=4096)
        try:
            await c.connect()
        except OSError:
            await asyncio.sleep(1)
            continue
        stats.slow_connects += 1
        t = c.proto.transport
        while c.alive() and not stop.is_set():
            t.pause_reading()
            await asyncio.sleep(SLOW_READ_EVERY_S)
            if not c.alive():
                break
            # read for a moment, then pause again; long enough for the loop to
            # see an EOF behind the data (a reader the server closed)
            t.resume_reading()
            await asyncio.sleep(SLOW_READ_WINDOW_S)
        if not c.alive():
            stats.slow_closed_by_server += 1
        else:
            c.end(drop=False)
        await asyncio.sleep(rng.uniform(0.5, 2))


# ---- HTTP load ----------------------------------------------------------------------

class Http:
    """One keep-alive HTTP/1.1 connection, reconnected on failure."""

    def __init__(self, port):
        self.port = port
        self.r = self.w = None

    async def request(self, method, path, body=b"", timeout=10):
        if self.w is None:
            self.r, self.w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), timeout)
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n" % (method, path, len(body))
        if body:
            head += "Content-Type: application/json\r\n"
        self.w.write(head.encode() + b"\r\n" + body)
        try:
            status_line = await asyncio.wait_for(self.r.readline(), timeout)
            length = 0
            while True:
                line = await asyncio.wait_for(self.r.readline(), timeout)
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                if k.lower() == "content-length":
                    length = int(v)
            data = await asyncio.wait_for(self.r.readexactly(length), timeout)
            return int(status_line.split()[1]), data
        except Exception:
            self.close()
            raise

    def close(self):
        if self.w:
            self.w.close()
        self.r = self.w = None


async def poster(port, stats, rng, stop, share):
    """Posts QUOTE_RATE * share quotes/s in batches, on its schedule."""
    h = Http(port)
    interval = QUOTE_BATCH / (QUOTE_RATE * share)
    nxt = time.monotonic()
    while not stop.is_set():
        body = json.dumps([quote(rng.randrange(SYMBOLS)) for _ in range(QUOTE_BATCH)]).encode()
        try:
            status, _ = await h.request("POST", "/quotes", body)
            if status == 202:
                stats.posts += 1
                stats.quotes_posted += QUOTE_BATCH
            else:
                stats.post_errors += 1
        except (OSError, asyncio.TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
            stats.post_errors += 1
            await asyncio.sleep(0.2)
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1:
            nxt = time.monotonic()  # behind by more than a second: do not burst to catch up


async def hello(port, stats, stop):
    h = Http(port)
    interval = HELLO_CONNS / HELLO_RATE
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            status, _ = await h.request("GET", "/hello")
            if status == 200:
                stats.hellos += 1
            else:
                stats.hello_errors += 1
        except (OSError, asyncio.TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
            stats.hello_errors += 1
            await asyncio.sleep(0.2)
        await asyncio.sleep(max(0, interval - (time.monotonic() - t0)))


# ---- processes -------------------------------------------------------------------------

class Procs:
    def __init__(self, args):
        self.args = args
        self.redis = self.tickerd = None
        self.redis_port = free_port()
        self.port = free_port()
        self.kills = []  # (killed_at, restarted_at) wall clock
        self.t0 = time.time()  # the start of the load

    def start_redis(self):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--logfile", os.path.join(self.args.out, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if redis.Redis(port=self.redis_port, socket_timeout=1).ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill_redis(self):
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait()

    def start_tickerd(self):
        log = os.path.join(self.args.out, "tickerd.log")
        if os.path.exists(log):
            os.unlink(log)
        self.tickerd = subprocess.Popen(
            [self.args.bin, "--port", str(self.port), "--host", "127.0.0.1",
             "--redis-url", "redis://127.0.0.1:%d" % self.redis_port, "--log-file", log] + TICKERD_ARGS,
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.args.out, "tickerd.stderr"), "w"))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                status(self.port)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("tickerd did not start")

    def rss_kb(self):
        with open("/proc/%d/status" % self.tickerd.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        for p in (self.tickerd, self.redis):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def status(port, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/status")
        return json.loads(c.getresponse().read())
    finally:
        c.close()


# ---- sampling ----------------------------------------------------------------------------

COLUMNS = ["t_s", "rss_kb", "redis_up", "open_connections", "stream_clients", "hub_channels",
           "deliveries", "hub_conflated", "slow_closes", "gaps", "queued", "published",
           "pub_conflated", "pub_dropped", "pub_errors", "inflight", "outbox", "sub_state",
           "sub_channels", "buffers_live", "buffers_pooled", "log_warnings", "log_errors",
           "load_connects", "load_drops", "load_quotes_posted", "load_post_errors", "load_hellos",
           "load_hello_errors"]


def sample(procs, t0, stats, redis_up):
    s = status(procs.port)
    pub, sub, st = s["redis"]["publisher"], s["redis"]["subscriber"], s["streaming"]
    return {"t_s": round(time.time() - t0, 1), "rss_kb": procs.rss_kb(), "redis_up": int(redis_up),
            "open_connections": s["open_connections"], "stream_clients": st["clients"],
            "hub_channels": st["channels"], "deliveries": st["deliveries"], "hub_conflated": st["conflated"],
            "slow_closes": st["slow_closes"], "gaps": st["gaps"], "queued": s["quotes"]["queued"],
            "published": pub["published"], "pub_conflated": pub["conflated"], "pub_dropped": pub["dropped"],
            "pub_errors": pub["errors"], "inflight": pub["inflight"], "outbox": pub["outbox"],
            "sub_state": sub["state"], "sub_channels": sub["channels"], "buffers_live": s["buffers"]["live"],
            "buffers_pooled": s["buffers"]["pooled"], "log_warnings": s["log"]["warnings"],
            "log_errors": s["log"]["errors"], "load_connects": stats.connects, "load_drops": stats.drops,
            "load_quotes_posted": stats.quotes_posted, "load_post_errors": stats.post_errors,
            "load_hellos": stats.hellos, "load_hello_errors": stats.hello_errors}


# ---- the run --------------------------------------------------------------------------------

async def run(args, procs):
    rng = random.Random(args.seed)
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = procs.t0 = time.time()
    duration = args.minutes * 60
    samples, failures = [], []
    redis_up = True

    n_sticky = int(STREAM_CLIENTS * STICKY_SHARE)
    sticky = [StreamClient(procs.port, stats, pick_symbols(rng, rng.choice((1, 2))), i % 2 == 0)
              for i in range(n_sticky)]
    for c in sticky:
        await c.connect()
        await asyncio.sleep(0.002)
    tasks = [asyncio.ensure_future(churner(procs.port, stats, random.Random(rng.random()), stop))
             for _ in range(STREAM_CLIENTS - n_sticky)]
    tasks += [asyncio.ensure_future(slow_reader(procs.port, stats, random.Random(rng.random()), stop))
              for _ in range(SLOW_READERS)]
    tasks += [asyncio.ensure_future(poster(procs.port, stats, random.Random(rng.random()), stop, 1 / POST_CONNS))
              for _ in range(POST_CONNS)]
    tasks += [asyncio.ensure_future(hello(procs.port, stats, stop)) for _ in range(HELLO_CONNS)]

    csv_path = os.path.join(args.out, "soak.csv")
    with open(csv_path, "w", newline="") as f:
        out = csv.DictWriter(f, COLUMNS)
        out.writeheader()
        next_sample, next_kill = t0 + SAMPLE_S, t0 + KILL_EVERY_S
        while time.time() < t0 + duration:
            await asyncio.sleep(0.25)
            now = time.time()
            if now >= next_kill and redis_up:
                procs.kill_redis()
                redis_up = False
                killed_at = now
                print("%6.0fs  redis killed" % (now - t0), flush=True)
            if not redis_up and now >= killed_at + REDIS_DOWN_S:
                await loop.run_in_executor(None, procs.start_redis)
                redis_up = True
                procs.kills.append((killed_at, time.time()))
                next_kill = killed_at + KILL_EVERY_S
            if now >= next_sample:
                next_sample += SAMPLE_S
                try:
                    row = await loop.run_in_executor(None, sample, procs, t0, stats, redis_up)
                except (OSError, ValueError, KeyError) as e:
                    failures.append("/status did not answer at %.0fs: %s" % (now - t0, e))
                    continue
                samples.append(row)
                out.writerow(row)
                f.flush()
                print("%6.0fs  rss %6.1f MB  clients %5d  deliveries %10d  queued %9d  published %9d  redis %s"
                      % (row["t_s"], row["rss_kb"] / 1024, row["stream_clients"], row["deliveries"], row["queued"],
                         row["published"], row["sub_state"]), flush=True)
            if procs.tickerd.poll() is not None:
                failures.append("tickerd exited with status %d" % procs.tickerd.returncode)
                break
        if not redis_up:
            await loop.run_in_executor(None, procs.start_redis)
            procs.kills.append((killed_at, time.time()))
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in list(stats.live - set(sticky)):
            c.end(drop=False)
        print("load stopped; settling %ds" % SETTLE_S, flush=True)
        await asyncio.sleep(SETTLE_S)
        final = await loop.run_in_executor(None, sample, procs, t0, stats, redis_up)
        out.writerow(final)
    failures += await checks(args, procs, samples, final, sticky, stats)
    for c in sticky:
        c.end(drop=False)
    return samples, final, stats, failures


async def checks(args, procs, samples, final, sticky, stats):
    failures = []
    report = []

    # 1. RSS plateau over the last third
    last = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] * 2 / 3] if samples else []
    if len(last) >= 3:
        xs = [s["t_s"] for s in last]
        ys = [s["rss_kb"] for s in last]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        start = my + slope * (xs[0] - mx)
        growth = slope * (xs[-1] - xs[0]) / start
        report.append("RSS: last third %.1f -> %.1f MB (fit), growth %.2f%% (max %.0f%%); peak %.1f MB"
                      % (start / 1024, (start + slope * (xs[-1] - xs[0])) / 1024, growth * 100,
                         RSS_GROWTH_MAX * 100, max(s["rss_kb"] for s in samples) / 1024))
        if growth >= RSS_GROWTH_MAX:
            failures.append("RSS grew %.2f%% over the last third" % (growth * 100))
    else:
        failures.append("too few samples for the RSS check")

    # 2. counters add up
    total = final["published"] + final["pub_conflated"] + final["pub_dropped"] + final["pub_errors"]
    report.append("publisher: published %d + conflated %d + dropped %d + errors %d = %d; queued %d; inflight %d, outbox %d"
                  % (final["published"], final["pub_conflated"], final["pub_dropped"], final["pub_errors"], total,
                     final["queued"], final["inflight"], final["outbox"]))
    if final["inflight"] or final["outbox"]:
        failures.append("publisher not drained after settling")
    if total != final["queued"]:
        failures.append("published + conflated + dropped + errors = %d != queued %d" % (total, final["queued"]))

    # 3. subscriptions: hub vs Redis, and a probe per symbol to every sticky client
    alive = [c for c in sticky if c.alive() and c.proto.open]
    symbols = sorted({s for c in alive for s in c.symbols})
    r = redis.Redis(port=procs.redis_port, socket_timeout=5)
    channels = sorted(ch.decode() for ch in r.pubsub_channels("quotes:*"))
    numsub = dict((k.decode(), v) for k, v in r.pubsub_numsub(*["quotes:" + s for s in symbols])) if symbols else {}
    missing = [s for s in symbols if numsub.get("quotes:" + s, 0) < 1]
    extra = sorted(set(channels) - {"quotes:" + s for s in symbols})
    report.append("subscriptions: %d of %d sticky clients connected, %d symbols; hub channels %d; Redis channels %d"
                  % (len(alive), len(sticky), len(symbols), final["hub_channels"], len(channels)))
    if len(alive) < len(sticky):
        failures.append("%d sticky clients were disconnected" % (len(sticky) - len(alive)))
    if missing:
        failures.append("Redis has no subscriber on %d channels that have clients: %s" % (len(missing), missing[:5]))
    if extra:
        failures.append("Redis still delivers %d channels no client wants: %s" % (len(extra), extra[:5]))
    if final["hub_channels"] != len(symbols):
        failures.append("hub has %d channels, sticky clients want %d" % (final["hub_channels"], len(symbols)))
    for c in alive:
        c.probes_wanted = set(c.symbols)
    h = Http(procs.port)
    for i in range(0, len(symbols), QUOTE_BATCH):
        batch = [quote(int(s[1:]), size=PROBE_SIZE_BASE + int(s[1:])) for s in symbols[i:i + QUOTE_BATCH]]
        st, body = await h.request("POST", "/quotes", json.dumps(batch).encode())
        if st != 202:
            failures.append("probe POST answered %d: %s" % (st, body[:200]))
    h.close()
    deadline = time.time() + PROBE_WAIT_S
    while time.time() < deadline and any(c.probes_wanted for c in alive):
        await asyncio.sleep(0.2)
    starved = [c for c in alive if c.probes_wanted]
    report.append("probe: %d of %d sticky clients got a probe quote on each of their symbols"
                  % (len(alive) - len(starved), len(alive)))
    if starved:
        failures.append("%d sticky clients did not get their probes (e.g. %s)"
                        % (len(starved), sorted(starved[0].probes_wanted)))

    # 4. the log
    unexplained, counts = {}, {}
    with open(os.path.join(args.out, "tickerd.log")) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                unexplained["(not JSON)"] = unexplained.get("(not JSON)", 0) + 1
                continue
            if e.get("level") not in ("warn", "error"):
                continue
            ev = e.get("event")
            counts[ev] = counts.get(ev, 0) + 1
            if ev in EXPECTED_ANYTIME:
                continue
            if ev in EXPECTED_NEAR_KILL:
                t = calendar.timegm(time.strptime(e["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
                if any(k - 1 <= t <= up + KILL_EXPLAIN_S for k, up in procs.kills):
                    continue
                ev += " (away from any Redis kill)"
            unexplained[ev] = unexplained.get(ev, 0) + 1
    report.append("log warnings/errors by event: %s" % json.dumps(counts, sort_keys=True))
    if unexplained:
        failures.append("unexplained log events: %s" % json.dumps(unexplained, sort_keys=True))

    report.append("load: %d stream connects (%d refused), %d closes, %d resets; slow readers %d connects, "
                  "%d closed by the server; %d pongs; %d quotes posted (%d POST errors); %d /hello (%d errors); %d Redis kills"
                  % (stats.connects, stats.refused, stats.closes, stats.drops, stats.slow_connects,
                     stats.slow_closed_by_server, stats.pongs, stats.quotes_posted, stats.post_errors, stats.hellos,
                     stats.hello_errors, len(procs.kills)))
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))
    return failures


def plot(args, samples, procs):
    """RSS (MB) and deliveries/s over time, Redis kills as vertical lines."""
    data = os.path.join(args.out, "plot.dat")
    with open(data, "w") as f:
        prev = None
        for s in samples:
            rate = "%.0f" % ((s["deliveries"] - prev["deliveries"]) / (s["t_s"] - prev["t_s"])) if prev else "?"
            f.write("%.2f %.2f %s\n" % (s["t_s"] / 60, s["rss_kb"] / 1024, rate))
            prev = s
    kills = "".join('set arrow from %.3f, graph 0 to %.3f, graph 1 nohead lc rgb "#d62728" dt 2\n'
                    % ((k - procs.t0) / 60, (k - procs.t0) / 60) for k, _ in procs.kills)
    script = """
set terminal pngcairo size 1000,500 font ",10"
set output '%s'
set title "tickerd soak: %g min, %d WS/SSE clients churning, %d quotes/s, Redis SIGKILLed every %d s (dashed)"
set xlabel "minutes"
set ylabel "RSS (MB)"
set y2label "deliveries/s"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key top left
set grid
set datafile missing "?"
%s
plot '%s' using 1:2 with lines lw 2 lc rgb "#1f77b4" title "RSS", \\
     '' using 1:3 axes x1y2 with lines lc rgb "#ff7f0e" title "deliveries/s"
""" % (args.png, args.minutes, STREAM_CLIENTS, QUOTE_RATE, KILL_EVERY_S, kills, data)
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bin")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--out", default="build/soak")
    ap.add_argument("--png", default=None, help="default: OUT/soak.png")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    args.png = args.png or os.path.join(args.out, "soak.png")
    os.makedirs(args.out, exist_ok=True)
    # a descriptor per client, and tickerd inherits the limit
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # stopped by a signal, still stop redis-server and tickerd (the finally
    # below); a background job started by a shell ignores SIGINT, so TERM too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = Procs(args)
    try:
        procs.start_redis()
        procs.start_tickerd()
        print("soak: %g min, tickerd :%d, redis :%d, output in %s"
              % (args.minutes, procs.port, procs.redis_port, args.out), flush=True)
        samples, final, stats, failures = asyncio.run(run(args, procs))
    finally:
        procs.stop()
    if samples:
        plot(args, samples, procs)
        print("plot: %s" % args.png)
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("soak passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
