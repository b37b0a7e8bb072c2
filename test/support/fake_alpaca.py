#!/usr/bin/python3
"""A fake Alpaca market-data server for tests and `make bench`.

Speaks Alpaca's v2 stream protocol (and the v1beta1/news stream, on any
path ending in /news) over WebSocket, with TLS when --cert/--key are given,
and optionally the REST latest-quote endpoint on a second port.

On start it prints one line to stdout, `READY <ws_port> <rest_port>`
(rest_port 0 without --rest), and then logs one event per line to stderr.
Ports default to 0: the kernel picks free ones, so tests never race.

Modes (--mode) say what happens after a connection subscribed:
  happy     --batches arrays of mixed kinds for the subscribed symbols
            (0: forever), --interval-ms apart
  badauth   every auth answers 402 "auth failed" (like wrong credentials)
  drop      --drop-after data messages, then the TCP connection is cut
  fragment  a message sent as several continuation frames with a ping between them
  ping      a server ping; once the pong came back, a trade for PONG
  oversize  a frame header announcing 8 GiB
  invalid   a frame with a reserved opcode
  flood     quotes in batches of --flood-batch, as fast as the client reads
  stall     nothing more, and nothing read: pings and close frames go unanswered
With --bad-once the fault (oversize, invalid, drop, badauth) happens on the
first connection only; later connections behave as `happy`.

Alpaca's connection rule (--one-session): one authenticated session per key
at a time. Another auth with the right credentials meanwhile is answered
with error 406 "connection limit exceeded"; the refused socket stays open
(more auths may be sent on it, each refused while the slot is taken) and is
closed by the server --refused-close-ms after its first 406. The slot frees
--slot-free-ms after the session's connection closed with a WebSocket close,
--slot-hold-ms after one that just vanished (Alpaca keeps a half-dead
session's slot for up to ~90 s). --throttle-first N
answers the first N WebSocket upgrades with HTTP 429.

REST (--rest): GET /v2/stocks/{SYMBOL}/quotes/latest with the same
credentials in APCA-API-KEY-ID / APCA-API-SECRET-KEY. Symbols:
NOPE -> 404, EMPTY -> 200 with an all-zero quote, SLOW -> answered after
--rest-delay-ms, FAIL -> 500, BADJSON -> 200 with broken JSON, any other ->
200 with a quote. GET /_stats -> {"SYMBOL": requests seen, ...}.
"""
import argparse
import asyncio
import http
import json
import os
import ssl
import struct
import sys
import time

import websockets

ARGS = None
STATS = {"connections": 0, "rest": {}, "upgrades": 0}
# --one-session: the connection holding the key's one slot, and when a
# slot released by a closed session becomes free again (monotonic seconds).
SLOT = {"holder": None, "free_at": 0.0}


def log(event, **kw):
    kw["event"] = event
    sys.stderr.write(json.dumps(kw) + "\n")
    sys.stderr.flush()


def now_ts():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)


def quote(sym, i=0):
    return {"T": "q", "S": sym, "bx": "V", "bp": round(189.5 + i * 0.01, 2), "bs": 3, "ax": "V",
            "ap": round(189.52 + i * 0.01, 2), "as": 1, "c": ["R"], "z": "C", "t": now_ts()}


def trade(sym, i=0):
    return {"T": "t", "S": sym, "i": i + 1, "x": "V", "p": 189.51, "s": 100, "c": ["@"], "z": "C",
            "t": now_ts()}


def bar(sym, i=0):
    return {"T": "b", "S": sym, "o": 189.0, "h": 190.0, "l": 188.5, "c": 189.5, "v": 12345,
            "t": now_ts(), "n": 10, "vw": 189.3}


def status(sym, i=0):
    return {"T": "s", "S": sym, "sc": "T", "sm": "Trading", "rc": "", "rm": "", "t": now_ts(), "z": "C"}


def news(sym, i=0):
    return {"T": "n", "id": 1000 + i, "headline": "Test headline", "summary": "", "author": "fake",
            "created_at": now_ts(), "updated_at": now_ts(), "url": "", "content": "",
            "symbols": [sym], "source": "fake"}


KINDS = [("quotes", quote), ("trades", trade), ("bars", bar), ("statuses", status), ("news", news)]


def raw_frame(opcode, payload, fin=True, length=None):
    """A server frame (unmasked), written on the transport past websockets'
    checks so that we can send what its API refuses to."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


def symbols_of(sub, channel):
    syms = sub.get(channel) or []
    return ["AAPL", "MSFT"] if syms == ["*"] else syms


def batch(sub, i):
    out = []
    for channel, make in KINDS:
        for sym in symbols_of(sub, channel):
            out.append(make(sym, i))
    return out


async def send_json(ws, obj):
    await ws.send(json.dumps(obj, separators=(",", ":")))


async def handshake(ws, conn_no, bad):
    """connected -> auth -> subscribe. Returns the subscription, or None."""
    await send_json(ws, [{"T": "success", "msg": "connected"}])
    authed = False
    refused_at = None
    while True:
        try:
            msg = json.loads(await ws.recv())
        except (ValueError, TypeError):
            await send_json(ws, [{"T": "error", "code": 400, "msg": "invalid syntax"}])
            continue
        action = msg.get("action") if isinstance(msg, dict) else None
        if action == "auth":
            if authed:
                await send_json(ws, [{"T": "error", "code": 403, "msg": "already authenticated"}])
                continue
            good = msg.get("key") == ARGS.key_id and msg.get("secret") == ARGS.secret
            if ARGS.mode == "badauth" and bad:
                good = False
            log("auth", conn=conn_no, ok=good)
            if not good:
                await send_json(ws, [{"T": "error", "code": 402, "msg": "auth failed"}])
                await ws.close()
                return None
            if ARGS.one_session and (SLOT["holder"] is not None or time.monotonic() < SLOT["free_at"]):
                log("limit", conn=conn_no, holder=SLOT["holder"])
                await send_json(ws, [{"T": "error", "code": 406, "msg": "connection limit exceeded"}])
                if refused_at is None:
                    refused_at = time.monotonic()
                    asyncio.get_running_loop().call_later(ARGS.refused_close_ms / 1000.0,
                                                          lambda: asyncio.ensure_future(ws.close()))
                continue
            if ARGS.one_session:
                SLOT["holder"] = conn_no
            authed = True
            await send_json(ws, [{"T": "success", "msg": "authenticated"}])
        elif action == "subscribe":
            if not authed:
                await send_json(ws, [{"T": "error", "code": 401, "msg": "not authenticated"}])
                continue
            sub = {k: msg[k] for k, _ in KINDS if isinstance(msg.get(k), list)}
            log("subscribe", conn=conn_no, sub=sub)
            reply = {"T": "subscription"}
            reply.update(sub)
            await send_json(ws, [reply])
            return sub
        else:
            await send_json(ws, [{"T": "error", "code": 400, "msg": "invalid syntax"}])


async def idle(ws):
    async for _ in ws:
        pass


async def run_mode(ws, mode, sub, conn_no):
    t = ws.transport
    if mode == "happy" or mode == "badauth":
        i = 0
        while ARGS.batches == 0 or i < ARGS.batches:
            await send_json(ws, batch(sub, i))
            i += 1
            if ARGS.interval_ms:
                await asyncio.sleep(ARGS.interval_ms / 1000.0)
        await idle(ws)
    elif mode == "drop":
        sym = (symbols_of(sub, "quotes") or ["AAPL"])[0]
        for i in range(ARGS.drop_after):
            await send_json(ws, [quote(sym, i)])
        await asyncio.sleep(0.05)
        log("drop", conn=conn_no)
        t.abort()
    elif mode == "fragment":
        payload = json.dumps(batch(sub, 0), separators=(",", ":")).encode()
        parts = [payload[i:i + 7] for i in range(0, len(payload), 7)]
        for k, part in enumerate(parts):
            op = 0x1 if k == 0 else 0x0
            t.write(raw_frame(op, part, fin=(k == len(parts) - 1)))
            if k == 1:
                t.write(raw_frame(0x9, b"mid-fragment"))
        log("fragmented", conn=conn_no, frames=len(parts))
        await idle(ws)
    elif mode == "ping":
        waiter = await ws.ping(b"fake-ping")
        await asyncio.wait_for(waiter, 5)
        log("pong", conn=conn_no)
        await send_json(ws, [trade("PONG")])
        await idle(ws)
    elif mode == "oversize":
        t.write(raw_frame(0x1, b"[{" * 8, length=8 << 30))
        log("oversize", conn=conn_no)
        await idle(ws)
    elif mode == "invalid":
        t.write(raw_frame(0x3, b"reserved opcode"))
        log("invalid", conn=conn_no)
        await idle(ws)
    elif mode == "stall":
        t.pause_reading()
        log("stall", conn=conn_no)
        await asyncio.sleep(3600)
    elif mode == "flood":
        sym = (symbols_of(sub, "quotes") or ["AAPL"])[0]
        i = 0
        while True:
            await send_json(ws, [quote(sym, i + k) for k in range(ARGS.flood_batch)])
            i += ARGS.flood_batch


def request_path(ws):
    """The request path: websockets 14+ (its new asyncio API, trixie's 15)
    has it on ws.request and calls the handler with the connection alone;
    the legacy API of websockets 10 (bookworm) on ws.path."""
    request = getattr(ws, "request", None)
    return request.path if request is not None else ws.path


async def ws_handler(ws):
    path = request_path(ws)
    STATS["connections"] += 1
    conn_no = STATS["connections"]
    bad = not ARGS.bad_once or conn_no == 1
    mode = ARGS.mode if bad else "happy"
    log("connect", conn=conn_no, path=path, mode=mode)
    clean = True
    try:
        sub = await handshake(ws, conn_no, bad)
        if sub is not None:
            await run_mode(ws, mode, sub, conn_no)
    except websockets.ConnectionClosed as e:
        log("closed", conn=conn_no, code=e.code)
        if e.code == 1006:
            clean = False
    except asyncio.TimeoutError:
        log("timeout", conn=conn_no)
    finally:
        if SLOT["holder"] == conn_no:
            SLOT["holder"] = None
            hold_ms = ARGS.slot_free_ms if clean else ARGS.slot_hold_ms
            SLOT["free_at"] = time.monotonic() + hold_ms / 1000.0
            log("slot_released", conn=conn_no, clean=clean, free_in_ms=hold_ms)


def process_request(conn_or_path, request_or_headers):
    """--throttle-first: refuse the first upgrades as Alpaca's limiter does.
    websockets 14+ (trixie's 15) calls it with (connection, request) and takes
    connection.respond(); the legacy API of 10 (bookworm) with (path,
    headers) and takes a (status, headers, body) tuple."""
    STATS["upgrades"] += 1
    if STATS["upgrades"] > ARGS.throttle_first:
        return None
    log("throttled", upgrade=STATS["upgrades"])
    if hasattr(conn_or_path, "respond"):
        return conn_or_path.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "too many requests\n")
    return (http.HTTPStatus.TOO_MANY_REQUESTS, [("Content-Type", "text/plain")], b"too many requests\n")


# ---- REST ----------------------------------------------------------------

def http_response(status, body, reason="OK"):
    body = body.encode() if isinstance(body, str) else body
    head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
        status, reason, len(body))
    return head.encode() + body


async def rest_handler(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
            ConnectionError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = (lines[0].split(" ") + ["", "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    out = await rest_route(method, target, headers)
    try:
        writer.write(out)
        await writer.drain()
        writer.close()
    except ConnectionError:
        pass


async def rest_route(method, target, headers):
    if target == "/_stats":
        return http_response(200, json.dumps(STATS["rest"]))
    parts = target.split("?", 1)[0].split("/")
    # ['', 'v2', 'stocks', SYM, 'quotes', 'latest']
    if method != "GET" or len(parts) != 6 or parts[1:3] != ["v2", "stocks"] or parts[4:] != ["quotes", "latest"]:
        return http_response(404, '{"message":"not found"}', "Not Found")
    sym = parts[3]
    STATS["rest"][sym] = STATS["rest"].get(sym, 0) + 1
    log("rest", symbol=sym)
    if headers.get("apca-api-key-id") != ARGS.key_id or headers.get("apca-api-secret-key") != ARGS.secret:
        return http_response(403, '{"message":"forbidden"}', "Forbidden")
    if sym == "NOPE":
        return http_response(404, '{"message":"not found"}', "Not Found")
    if sym == "FAIL":
        return http_response(500, '{"message":"internal server error"}', "Internal Server Error")
    if sym == "BADJSON":
        return http_response(200, '{"symbol":"BADJSON","quote":{"t":')
    if sym == "EMPTY":
        q = {"t": "0001-01-01T00:00:00Z", "ax": "", "ap": 0, "as": 0, "bx": "", "bp": 0, "bs": 0,
             "c": None, "z": ""}
        return http_response(200, json.dumps({"symbol": sym, "quote": q}))
    if sym == "SLOW":
        await asyncio.sleep(ARGS.rest_delay_ms / 1000.0)
    q = quote(sym)
    del q["T"], q["S"]
    return http_response(200, json.dumps({"symbol": sym, "quote": q}))


async def main():
    ctx = None
    if ARGS.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
    server = await websockets.serve(ws_handler, ARGS.host, ARGS.port, ssl=ctx, ping_interval=None,
                                    max_size=1 << 20, compression=None, process_request=process_request)
    ws_port = server.sockets[0].getsockname()[1]
    rest_port = 0
    if ARGS.rest:
        rest = await asyncio.start_server(rest_handler, ARGS.host, ARGS.rest_port, ssl=ctx)
        rest_port = rest.sockets[0].getsockname()[1]
    print("READY %d %d" % (ws_port, rest_port), flush=True)
    if ARGS.exit_on_stdin_eof:
        # The test holds our stdin open: when it exits, however it exits,
        # we see EOF and go too, so no server outlives a failed test.
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(0, lambda: os.read(0, 4096) or (done.done() or done.set_result(None)))
        await done
        return
    await asyncio.Future()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rest", action="store_true")
    p.add_argument("--rest-port", type=int, default=0)
    p.add_argument("--rest-delay-ms", type=int, default=3000)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--key-id", default="testkey")
    p.add_argument("--secret", default="testsecret")
    p.add_argument("--mode", default="happy",
                   choices=["happy", "badauth", "drop", "fragment", "ping", "oversize", "invalid", "flood",
                            "stall"])
    p.add_argument("--bad-once", action="store_true")
    p.add_argument("--one-session", action="store_true", help="one authenticated session per key (406)")
    p.add_argument("--refused-close-ms", type=int, default=10000,
                   help="--one-session: a refused socket is closed this long after its first 406")
    p.add_argument("--slot-free-ms", type=int, default=400,
                   help="--one-session: the slot frees this long after its session closed")
    p.add_argument("--slot-hold-ms", type=int, default=400,
                   help="--one-session: the slot frees this long after its session vanished (no close frame)")
    p.add_argument("--throttle-first", type=int, default=0, help="answer the first N upgrades with HTTP 429")
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="exit when stdin reaches EOF (the test that started us is gone)")
    p.add_argument("--batches", type=int, default=3, help="happy: batches to send, 0: forever")
    p.add_argument("--interval-ms", type=int, default=0, help="happy: pause between batches")
    p.add_argument("--drop-after", type=int, default=3)
    p.add_argument("--flood-batch", type=int, default=100)
    return p.parse_args()


if __name__ == "__main__":
    ARGS = parse_args()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
