#!/usr/bin/python3
"""Writes the seed corpora of the fuzz harnesses into test/fuzz/seeds/<harness>/.

The seeds are committed; this script says how each was made, so a change of
format (a harness's control bytes, say) regenerates them all. Run it from
the repository root: /usr/bin/python3 test/fuzz/make_seeds.py

Each harness's input format is described at the top of its .c file.
"""
import base64
import hashlib
import hmac
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

# The secret fuzz_jwt.c signs with (FUZZ_JWT_SECRET there).
JWT_SECRET = b"fuzz-secret"


def put(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- WebSocket frames ---------------------------------------------------------

def frame(op, payload=b"", fin=True, mask=None, rsv=0):
    """One frame; `mask` (4 bytes) masks it, as a client must."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | rsv << 4 | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


M = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def ws_frame_seeds():
    # 4 control bytes (split seed x3, then max-size / stop-after), then the stream
    ctl_whole = b"\x05\x00\x00\x00"
    ctl_split = b"\x11\x22\x33\x81"  # small maximum (65 bytes), stop after one event
    streams = {
        "text_unmasked": frame(TEXT, "hello"),
        "text_masked": frame(TEXT, "hello", mask=M),
        "binary_masked": frame(BINARY, bytes(range(200)), mask=M),
        # a 64-bit length; only the start of the payload follows (the seed stays small)
        "binary_len64": frame(BINARY, b"x" * 70000)[:200],
        "fragmented_text": frame(TEXT, "hel", fin=False, mask=M) + frame(PING, "p", mask=M)
        + frame(CONT, "lo", fin=False, mask=M) + frame(CONT, " \xc3\xa9", mask=M),
        "control_frames": frame(PING, "are you there", mask=M) + frame(PONG, "", mask=M)
        + frame(PING, b"\x00" * 125, mask=M),
        "close_reason": frame(CLOSE, close_payload(1000, b"bye"), mask=M),
        "close_empty": frame(CLOSE, b"", mask=M),
        "close_bad_code": frame(CLOSE, close_payload(1005), mask=M),
        "close_bad_utf8": frame(CLOSE, close_payload(1000, b"\xff"), mask=M),
        "ping_too_long": frame(PING, b"x" * 126, mask=M),
        "ping_fragmented": frame(PING, "x", fin=False, mask=M),
        "rsv_bits": frame(TEXT, "x", rsv=4, mask=M),
        "cont_without_start": frame(CONT, "x", mask=M),
        "bad_opcode": frame(3, "x", mask=M),
        "text_split_utf8": frame(TEXT, "\xe2\x82", fin=False, mask=M) + frame(CONT, "\xac", mask=M),
        "len16_nonminimal": bytes([0x81, 0xFE, 0x00, 0x05]) + M + bytes(c ^ M[i % 4] for i, c in enumerate(b"hello")),
    }
    for name, s in streams.items():
        put("fuzz_ws_frame", name, ctl_whole + s)
    put("fuzz_ws_frame", "text_masked_small_max", ctl_split + streams["fragmented_text"])


# ---- HTTP requests, WebSocket and SSE upgrades ----------------------------------

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: " + WS_KEY + "\r\nSec-WebSocket-Version: 13\r\n\r\n")


def jmsg(obj):
    return json.dumps(obj, separators=(",", ":"))


def http_seeds():
    h = "fuzz_http_request"
    # first byte: the split size (byte % 64 + 1); '\x3f' writes 64-byte pieces, '\x00' 1 byte
    big, one = b"\x3f", b"\x00"
    q = jmsg({"T": "q", "S": "AAPL", "bx": "V", "bp": 189.5, "bs": 3, "ax": "V", "ap": 189.52, "as": 1,
              "c": ["R"], "z": "C", "t": "2026-11-21T20:00:00.123456789Z"})
    post = "POST /quotes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(q), q)
    seeds = {
        "get_hello": "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "head_status": "HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n",
        "post_quote": post,
        "post_chunked": "POST /quotes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(q), q),
        "pipelined": "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        + post + "GET /quotes/AAPL HTTP/1.1\r\nHost: x\r\n\r\nGET /quotes/AAPL/history?limit=5 HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "pipelined_many": "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 40,
        "pipelined_http10": "GET /hello HTTP/1.0\r\n\r\nGET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "routes": "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /tasks?limit=2&state=done HTTP/1.1\r\nHost: x\r\n\r\nGET /tasks/0b9e3a52-7c1d-4d2e-9f00-1234567890ab HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /quotes HTTP/1.1\r\nHost: x\r\n\r\nGET /dashboard/app.js HTTP/1.1\r\nHost: x\r\n\r\n"
        "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "query_encoding": "GET /quotes/BTC%2FUSD?limit=99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /quotes/BRK.B/history?limit=-1&limit=3 HTTP/1.1\r\nHost: x\r\n\r\nGET /tasks?limit=%31%30&state=%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
        "expect_continue": "POST /quotes HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s" % (len(q), q),
        # request smuggling and header abuse: each must be a 400 and a close
        "smuggle_cl_te": "POST /quotes HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "smuggle_te_cl": "POST /quotes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "smuggle_bare_cr": "GET /hello HTTP/1.1\r\nHost: x\r\nX: a\rTransfer-Encoding: chunked\r\n\r\n",
        "smuggle_obs_fold": "GET /hello HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n  folded\r\n\r\n",
        "smuggle_double_cl": "POST /quotes HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n[]",
        "smuggle_host_space": "GET /hello HTTP/1.1\r\nHost : x\r\n\r\n",
        "smuggle_te_obfuscated": "POST /quotes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "no_host": "GET /hello HTTP/1.1\r\n\r\n",
        "http2_version": "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n",
        "lf_only": "GET /hello HTTP/1.1\nHost: x\n\n",
        "header_too_long": "GET /hello HTTP/1.1\r\nHost: x\r\nX: " + "a" * 17000 + "\r\n\r\n",
        "body_too_large": "POST /quotes HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + "[" * 5000,
        # WebSocket: upgrade, then masked client frames after the headers
        "ws_subscribe": UPGRADE + frame(TEXT, jmsg({"action": "subscribe", "symbols": ["AAPL", "BTC/USD"]}), mask=M).decode("latin-1")
        + frame(TEXT, jmsg({"action": "list"}), mask=M).decode("latin-1")
        + frame(TEXT, jmsg({"action": "unsubscribe", "symbols": ["AAPL"]}), mask=M).decode("latin-1")
        + frame(CLOSE, close_payload(1000, b"bye"), mask=M).decode("latin-1"),
        "ws_fragmented": UPGRADE + frame(TEXT, '{"action":"sub', fin=False, mask=M).decode("latin-1")
        + frame(PING, "p", mask=M).decode("latin-1") + frame(CONT, 'scribe","symbols":["MSFT"],"history":3}', mask=M).decode("latin-1"),
        "ws_bad_messages": UPGRADE + frame(BINARY, b"\x00\x01", mask=M).decode("latin-1")
        + frame(TEXT, "[1,2]", mask=M).decode("latin-1") + frame(TEXT, '{"action":"dance"}', mask=M).decode("latin-1")
        + frame(TEXT, '{"action":"subscribe","symbols":["bad sym"]}', mask=M).decode("latin-1")
        + frame(TEXT, "hello", mask=None).decode("latin-1"),
        # wildcards: "*", a prefix and "*", malformed patterns, unsubscribe of a pattern
        "ws_patterns": UPGRADE + frame(TEXT, jmsg({"action": "subscribe", "symbols": ["*", "BRK.*", "AAPL", "A*B", "**", "b*"]}), mask=M).decode("latin-1")
        + frame(TEXT, jmsg({"action": "list"}), mask=M).decode("latin-1")
        + frame(TEXT, jmsg({"action": "unsubscribe", "symbols": ["*", "BRK.*", "C*"]}), mask=M).decode("latin-1")
        + frame(CLOSE, close_payload(1000, b"bye"), mask=M).decode("latin-1"),
        "sse_patterns": "GET /stream?symbols=*,BRK.*,AAPL HTTP/1.1\r\nHost: x\r\n\r\n",
        "sse_bad_pattern": "GET /stream?symbols=AAPL,A*B HTTP/1.1\r\nHost: x\r\n\r\n",
        "ws_bad_upgrade": "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n",
        "ws_upgrade_on_hello": "GET /hello HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: " + WS_KEY + "\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85",
        # SSE: the stream takes the connection over; bytes after it are ignored
        "sse_stream": "GET /stream?symbols=AAPL,MSFT&history=5 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        "sse_resume": "GET /stream?symbols=AAPL HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0123456789abcdef-42\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
        "sse_resume_param": "GET /stream?symbols=BTC%2FUSD&last_event_id=0123456789abcdef-1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "sse_bad": "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /stream?symbols=,,,&history=x HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    for name, s in seeds.items():
        data = s.encode("latin-1")
        put(h, name, big + data)
    for name in ("pipelined", "ws_subscribe", "smuggle_bare_cr", "sse_stream"):
        put(h, name + "_bytewise", one + seeds[name].encode("latin-1"))


# ---- Alpaca and stream messages -------------------------------------------------

def stream_msg_seeds():
    h = "fuzz_stream_msg"
    seeds = {
        "alpaca_connected": [{"T": "success", "msg": "connected"}],
        "alpaca_authenticated": [{"T": "success", "msg": "authenticated"}],
        "alpaca_error_406": [{"T": "error", "code": 406, "msg": "connection limit exceeded"}],
        "alpaca_error_auth": [{"T": "error", "code": 402, "msg": "auth failed"}, {"T": "error", "code": 409, "msg": "insufficient subscription"}],
        "alpaca_subscription": [{"T": "subscription", "trades": ["AAPL"], "quotes": ["AMD", "CLDR"], "bars": ["*"],
                                 "updatedBars": [], "dailyBars": ["VOO"], "statuses": ["*"], "lulds": [],
                                 "corrections": ["AAPL"], "cancelErrors": ["AAPL"]}],
        "alpaca_quotes_mixed": [{"T": "q", "S": "AMD", "bx": "U", "bp": 87.66, "bs": 1, "ax": "Q", "ap": 87.68, "as": 4,
                                 "t": "2021-02-22T15:51:45.335689322Z", "c": ["R"], "z": "C"},
                                {"T": "t", "i": 96921, "S": "AAPL", "x": "D", "p": 126.55, "s": 1,
                                 "t": "2021-02-22T15:51:44.208Z", "c": ["@", "I"], "z": "C"},
                                {"T": "b", "S": "SPY", "o": 388.985, "h": 389.13, "l": 388.975, "c": 389.12, "v": 49378,
                                 "t": "2021-02-22T19:15:00Z", "n": 461, "vw": 389.062639}],
        "crypto_quote": [{"T": "q", "S": "BTC/USD", "bp": 67000.5, "bs": 0.25, "ap": 67001, "as": 0.1,
                          "t": "2024-03-12T10:27:48.858228144Z"}],
        "unknown_type": [{"T": "zz", "S": "AAPL"}, {"S": "AAPL"}, {"T": "q"}, {"T": "q", "S": ""}],
        "wrong_types": [{"T": "q", "S": 5, "bp": "1", "bs": -1, "t": 7}, {"T": 1}, [], None, 3],
        "deep": json.loads("[" * 40 + "]" * 40),
    }
    for name, v in seeds.items():
        put(h, name + ".json", json.dumps(v, separators=(",", ":")))
    put(h, "not_array.json", '{"T":"q","S":"AAPL","bp":1}')
    put(h, "huge_numbers.json", '[{"T":"q","S":"AAPL","bp":1e400,"bs":99999999999999999999,"ap":-0.0,"as":1E-7,"t":"2026-01-01T00:00:00Z"}]')
    put(h, "escapes.json", '[{"T":"q","S":"A\\u0041PL","bp":1.5,"bs":1,"ap":1.6,"as":1,"t":"2026-01-01T00:00:00\\u005a"}]')
    put(h, "duplicate_keys.json", '[{"T":"q","S":"AAPL","S":"MSFT","bp":1,"bs":1,"ap":2,"as":1,"t":"2026-01-01T00:00:00Z"}]')


# ---- JWT ------------------------------------------------------------------------

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def jwt_seeds():
    """fuzz_jwt input: one mode byte, then either a raw token (mode even) or
    header JSON, NUL, claims JSON (mode odd), which the harness signs."""
    h = "fuzz_jwt"
    hdr = jmsg({"alg": "HS256", "typ": "JWT"})
    claims = {
        "symbols": jmsg({"sub": "u1", "exp": 4102444800, "symbols": ["AAPL", "BTC/USD", "MS*"]}),
        "expired": jmsg({"sub": "u1", "exp": 1, "symbols": ["*"]}),
        "nbf_future": jmsg({"sub": "u1", "exp": 4102444800, "nbf": 4102444000}),
        "no_exp": jmsg({"sub": "u1"}),
        "bad_symbols": jmsg({"exp": 4102444800, "symbols": ["bad sym", 5, "*A*"]}),
        "float_exp": jmsg({"exp": 4.1e9, "symbols": []}),
    }
    for name, c in claims.items():
        put(h, "signed_" + name, b"\x01" + hdr.encode() + b"\x00" + c.encode())
    put(h, "signed_alg_none", b"\x01" + jmsg({"alg": "none"}).encode() + b"\x00" + claims["symbols"].encode())
    put(h, "signed_dup_keys", b"\x01" + b'{"alg":"HS256","alg":"none"}\x00' + claims["symbols"].encode())
    signing = b64u(hdr.encode()) + b"." + b64u(claims["symbols"].encode())
    sig = b64u(hmac.new(JWT_SECRET, signing, hashlib.sha256).digest())
    put(h, "raw_valid", b"\x00" + signing + b"." + sig)
    put(h, "raw_bad_sig", b"\x00" + signing + b"." + sig[:-2] + b"AA")
    put(h, "raw_padding", b"\x00" + signing + b"==." + sig)
    put(h, "raw_two_parts", b"\x00" + signing)
    put(h, "raw_bearer", b"\x00Bearer " + signing + b"." + sig)


# ---- small parsers: Redis URL, options, query strings, ids ---------------------------

def params_seeds():
    """fuzz_params input: one byte picks the parser, the rest is its input
    (see fuzz_params.c)."""
    h = "fuzz_params"
    cases = {
        "redis_url": (0, "redis://user:p%40ss@127.0.0.1:6380/2"),
        "redis_url_unix": (0, "unix:///run/redis/redis.sock"),
        "redis_url_v6": (0, "redis://[::1]:6379"),
        "redis_url_bad": (0, "redis://host:99999/x"),
        "redis_url_tls": (0, "rediss://:p%40ss@redis.example.com:6380/1"),
        "options_tls": (1, "--redis-url\x00rediss://h:6380\x00--redis-ca-file\x00/ca.pem\x00--redis-cert\x00c.pem\x00--redis-key\x00k.pem"),
        "options": (1, "--port\x008080\x00--redis-url\x00redis://127.0.0.1:6379\x00--task-phases-ms\x0010,20,30\x00--log-level\x00debug"),
        "options_eq": (1, "--port=0\x00--history-size=100\x00--sim-rate=2.5\x00--auth\x00--max-body-bytes=1e3"),
        "options_env": (2, "TICKERD_PORT=70000\x00REDIS_URL=redis://x\x00TICKERD_AUTH=1\x00TICKERD_JWT_SECRET=s"),
        "query": (3, "symbols=AAPL,MSFT&history=5&limit=10&token=a%2Eb.c&last_event_id=%30"),
        "query_bad": (3, "limit=%&limit=%G1&&=&symbols=%00x&history"),
        "uuid": (4, "0b9e3a52-7c1d-4d2e-9f00-1234567890ab"),
        "epoch": (5, "0123456789abcdef"),
        "task_state": (6, "running"),
        "sentinel_url": (7, "redis+sentinel://u:p%40ss@127.0.0.1:26379,[::1],h-2:26380/mymaster/2"),
        "sentinel_url_bad": (7, "redis+sentinel://h,,h:0/m b/x"),
        "pattern": (8, "BRK.*"),
        "pattern_star": (8, "*"),
        "pattern_bad": (8, "A*B*"),
        "cluster_url": (9, "redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001,node-3:7002/"),
    }
    for name, (mode, s) in cases.items():
        put(h, name, bytes([mode]) + s.encode())


# ---- permessage-deflate (fuzz_ws_deflate.c: mode byte, limit byte, data) ----------

def deflate_seeds():
    import zlib
    h = "fuzz_ws_deflate"

    def z(data):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]

    offers = {
        "offer_plain": "permessage-deflate",
        "offer_params": "permessage-deflate; server_no_context_takeover; client_max_window_bits; server_max_window_bits=10",
        "offer_quoted": 'x-foo; a="b\\"c", permessage-deflate; server_max_window_bits="12"',
        "offer_bad": "permessage-deflate; =1",
    }
    for name, v in offers.items():
        put(h, name, bytes([0, 0]) + v.encode())
    msg = json.dumps({"action": "subscribe", "symbols": ["AAPL", "MSFT"] * 10}).encode()
    put(h, "inflate_msg", bytes([1, 255]) + z(msg))
    put(h, "inflate_bomb", bytes([1, 3]) + z(b" " * 100000))
    key = b"\x01\x02\x03\x04"
    zm = z(msg)
    put(h, "parse_compressed", bytes([2, 255]) + frame(1, zm, mask=key, rsv=4))
    put(h, "parse_fragmented", bytes([2, 255]) + frame(1, zm[:5], fin=False, mask=key, rsv=4)
        + frame(9, b"p", mask=key) + frame(0, zm[5:], mask=key))
    put(h, "round_trip", bytes([3, 0]) + json.dumps({"type": "history", "quotes": [{"S": "AAPL", "bp": i} for i in range(30)]}).encode())


if __name__ == "__main__":
    ws_frame_seeds()
    http_seeds()
    stream_msg_seeds()
    jwt_seeds()
    params_seeds()
    deflate_seeds()
