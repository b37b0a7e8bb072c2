"""permessage-deflate (RFC 7692) on /ws (issue 16, part 4): negotiation and
its parameters, compressed and fragmented client messages, the limits
(decompression bombs close 1009), RSV1 rules, one compressed frame shared by
every client per message, a real client (Python websockets), and a port of
the Autobahn|Testsuite 12.x (message and fragment sizes) and 13.x (parameter
offers) families: what they check, written here, not their code."""
import asyncio
import base64
import json
import os
import zlib

import pytest

from conftest import SANITIZED, is_closed, wait_for
from test_quotes import quote
from test_streaming import post
from wsclient import OP_CONT, OP_PING, OP_TEXT, WS, frame

ACCEPTED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: removed by the sender, put back by the receiver
RSV1 = 4                    # wsclient.frame's rsv argument is RSV1..3 as bits 2..0
MAX_MESSAGE = 65536         # TD_DEFAULT_WS_MAX_MESSAGE: the bound on inflated client messages too


def compress(data, wbits=15, level=6):
    """A client's compressed message, without context takeover. zlib cannot
    deflate with a 256-byte window, so 8 compresses with 9 (our server
    inflates with the full window anyway)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -max(wbits, 9))
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-len(TAIL)]


def window_of(ext):
    for p in (ext or "").split(";"):
        k, _, v = p.strip().partition("=")
        if k == "server_max_window_bits":
            return int(v.strip('"'))
    return 15


class ZWS(WS):
    """The raw client of wsclient.py, with permessage-deflate: it inflates
    server frames with RSV1 using the window the server agreed to."""

    def __init__(self, port, offer="permessage-deflate", headers=None):
        h = dict(headers or {})
        if offer is not None:
            h["Sec-WebSocket-Extensions"] = offer
        super().__init__(port, headers=h)
        self.ext = self.response.header("sec-websocket-extensions")
        self.window = window_of(self.ext)
        self.compressed = []  # per frame received: whether RSV1 was set

    def recv_frame(self):
        op, payload = super().recv_frame()
        rsv1 = bool(self.last_b0 & 0x40)
        assert not (self.last_b0 & 0x30), "RSV2/RSV3 never set"
        if op != OP_PING:
            self.compressed.append(rsv1)
        if rsv1:
            assert self.ext, "RSV1 from a server that did not agree to deflate"
            payload = zlib.decompressobj(-self.window).decompress(payload + TAIL)
        return op, payload

    def send_compressed(self, data, fragment=0, wbits=15, op=OP_TEXT):
        if isinstance(data, str):
            data = data.encode()
        z = compress(data, wbits)
        chunks = [z[i:i + fragment] for i in range(0, len(z), fragment)] if fragment else [z]
        chunks = chunks or [b""]
        out = b""
        for i, c in enumerate(chunks):
            out += frame(op if i == 0 else OP_CONT, c, fin=i == len(chunks) - 1, rsv=RSV1 if i == 0 else 0)
        self.send_raw(out)


def deflate_stats(t):
    return t.status()["streaming"]["ws_deflate"]


def padded_list(size, kind="text"):
    """A "list" action of exactly `size` bytes: repetitive text, or base64 of
    random bytes (which barely compresses), as Autobahn 12 varies payloads."""
    base = '{"action":"list","pad":""}' if size >= 26 else '{"p":""}'  # shorter: answered with bad_action
    n = size - len(base)
    pad = ("tickerd " * (n // 8 + 1))[:n] if kind == "text" else base64.b64encode(os.urandom(n))[:n].decode()
    msg = base[:-2] + pad + base[-2:]
    assert len(msg) == size
    return msg


@pytest.fixture
def plain(tickerd_factory):
    return tickerd_factory("--feed", "none", "--ping-interval-ms", "60000")


@pytest.fixture
def zstack(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--ping-interval-ms", "60000",
                        "--history-size", "200", "--ws-max-message", str(4 * MAX_MESSAGE))
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="redis connection")
    return t


# ---- negotiation ------------------------------------------------------------------

@pytest.mark.parametrize("offer, answer", [
    ("permessage-deflate", ACCEPTED),
    ("permessage-deflate; client_max_window_bits", ACCEPTED),
    ("permessage-deflate; client_max_window_bits=10", ACCEPTED),
    ("permessage-deflate; client_no_context_takeover", ACCEPTED),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover", ACCEPTED),
    ("permessage-deflate; server_max_window_bits=10", ACCEPTED + "; server_max_window_bits=10"),
    ("permessage-deflate; server_max_window_bits=8", ACCEPTED + "; server_max_window_bits=8"),
    ('permessage-deflate; server_max_window_bits="12"', ACCEPTED + "; server_max_window_bits=12"),
    ("PerMessage-Deflate ;  Server_Max_Window_Bits = 15", ACCEPTED + "; server_max_window_bits=15"),
    # the first acceptable offer, in the client's order of preference
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits", ACCEPTED),
    ("x-webkit-deflate-frame, permessage-deflate", ACCEPTED),
    (", permessage-deflate,", ACCEPTED),
])
def test_offer_accepted(plain, offer, answer):
    ws = ZWS(plain.port, offer)
    assert ws.open, ws.response.body
    assert ws.ext == answer
    ws.close()


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=08",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; client_max_window_bits=0",
    'permessage-deflate; client_max_window_bits="1 0"',
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    "permessage-deflate; mux",
    "x-webkit-deflate-frame",
])
def test_offer_declined_handshake_succeeds(plain, offer):
    """RFC 7692 7.1: a server MUST decline an offer with an unknown, repeated
    or invalid parameter; the handshake itself succeeds, uncompressed."""
    before = deflate_stats(plain)
    ws = ZWS(plain.port, offer)
    assert ws.open and ws.ext is None
    ws.send_json({"action": "list"})
    assert ws.recv_json()["type"] == "list" and ws.compressed == [False]
    ws.close()
    after = deflate_stats(plain)
    assert after["offers_accepted"] == before["offers_accepted"]
    assert after["offers_declined"] == before["offers_declined"] + ("permessage-deflate" in offer)


@pytest.mark.parametrize("value", [
    "permessage-deflate;",
    "permessage-deflate; =10",
    'permessage-deflate; server_max_window_bits="10',
    "permessage-deflate x",
    "permessage-deflate; server_max_window_bits=1 0",
    ";",
    "permessage-deflate; a=b=c",
])
def test_malformed_header_refused(plain, value):
    """A value that does not follow RFC 6455 9.1's grammar: nothing can be
    agreed from it, and the handshake is refused with 400."""
    before = deflate_stats(plain)["offers_malformed"]
    ws = ZWS(plain.port, value)
    assert ws.response.status == 400 and not ws.open
    assert json.loads(ws.response.body)["error"] == "bad_extensions"
    ws.close()
    assert deflate_stats(plain)["offers_malformed"] == before + 1


def test_extension_on_a_second_header_line(plain):
    """RFC 7230 3.2.2: several lines of one list header are one list."""
    key = base64.b64encode(os.urandom(16)).decode()
    resp = plain.raw((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Extensions: x-foo\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode())
    assert resp.status == 101 and resp.header("sec-websocket-extensions") == ACCEPTED
    # every line is read: a malformed one after an accepted one is still refused
    resp = plain.raw((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Extensions: ;\r\n\r\n").encode())
    assert resp.status == 400


def test_no_offer_no_extension(plain):
    ws = ZWS(plain.port, None)
    assert ws.open and ws.ext is None
    ws.close()


# ---- client messages ----------------------------------------------------------------

@pytest.mark.parametrize("fragment", [0, 1, 3, 16, 100])
def test_compressed_fragmented_client_message(plain, fragment):
    before = deflate_stats(plain)["messages_inflated"]
    ws = ZWS(plain.port)
    ws.send_compressed(json.dumps({"action": "list", "pad": "x" * 500}), fragment=fragment)
    assert ws.recv_json()["type"] == "list"
    # a control frame between the fragments of a compressed message is fine
    z = compress(b'{"action":"list"}')
    ws.send_raw(frame(OP_TEXT, z[:3], fin=False, rsv=RSV1) + frame(OP_PING, b"p") + frame(OP_CONT, z[3:]))
    op, payload = ws.recv_frame()
    assert payload == b"p"
    assert ws.recv_json()["type"] == "list"
    ws.close()
    assert deflate_stats(plain)["messages_inflated"] == before + 2


def test_plain_messages_still_work_on_a_deflate_connection(plain):
    """RFC 7692 6: RSV1 clear is an uncompressed message, always allowed."""
    ws = ZWS(plain.port)
    ws.send_json({"action": "list"})
    assert ws.recv_json()["type"] == "list"
    ws.close()


def test_empty_compressed_message(plain):
    ws = ZWS(plain.port)
    ws.send_raw(frame(OP_TEXT, b"\x00", rsv=RSV1))  # RFC 7692 7.2.3.6: the empty message
    assert ws.recv_json()["error"] == "bad_json"
    ws.close()


def test_decompression_bomb_closed_1009(plain):
    bomb = compress(b"[" + b" " * (16 * 1024 * 1024) + b"]", level=9)
    assert len(bomb) < MAX_MESSAGE  # the compressed message itself is within the limit
    before = deflate_stats(plain)["inflate_too_big"]
    rss = plain.rss_bytes()
    ws = ZWS(plain.port)
    ws.send_compressed(b"")  # warm up: one normal inflation
    ws.recv_json()
    ws.send_raw(frame(OP_TEXT, bomb, rsv=RSV1))
    assert ws.expect_close() == 1009
    assert is_closed(ws.sock)
    assert deflate_stats(plain)["inflate_too_big"] == before + 1
    # inflation stopped at the limit: nothing near 16 MiB was ever allocated
    assert plain.rss_bytes() - rss < 8 * 1024 * 1024
    events = wait_for(lambda: [e for e in plain.log_events() if e["event"] == "ws_protocol_error"], what="log line")
    assert events[-1]["close_code"] == 1009 and "inflated" in events[-1]["error"]


def test_inflated_size_limit_is_exact(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--ws-max-message", "4096")
    ws = ZWS(t.port)
    ws.send_compressed(padded_list(4096))
    assert ws.recv_json()["type"] == "list"
    ws.send_compressed(padded_list(4097))
    assert ws.expect_close() == 1009
    ws.close()


@pytest.mark.parametrize("raw, code", [
    pytest.param(frame(OP_TEXT, b"\xff\xff\xff\xff", rsv=RSV1), 1007, id="not DEFLATE"),
    pytest.param(frame(OP_TEXT, compress(b'{"a":"\xc3\x28"}'), rsv=RSV1), 1007, id="invalid UTF-8 inside"),
    pytest.param(frame(OP_PING, b"", rsv=RSV1), 1002, id="RSV1 on a ping"),
    pytest.param(frame(OP_TEXT, compress(b"{}")[:1], fin=False, rsv=RSV1) + frame(OP_CONT, compress(b"{}")[1:], rsv=RSV1),
                 1002, id="RSV1 on a continuation"),
    pytest.param(frame(OP_TEXT, compress(b"{}"), rsv=RSV1 | 2), 1002, id="RSV2 with RSV1"),
])
def test_compressed_protocol_errors(plain, raw, code):
    ws = ZWS(plain.port)
    ws.send_raw(raw)
    assert ws.expect_close() == code
    ws.close()


def test_rsv1_without_deflate_is_a_protocol_error(plain):
    ws = ZWS(plain.port, None)
    ws.send_raw(frame(OP_TEXT, compress(b'{"action":"list"}'), rsv=RSV1))
    assert ws.expect_close() == 1002
    ws.close()


def test_back_reference_into_a_previous_message_is_refused(plain):
    """client_no_context_takeover was agreed: a message that refers to the
    previous one's bytes is not inflatable on its own (1007)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = c.compress(b'{"action":"list","pad":"abcdefghijklmnopqrstuvwxyz"}') + c.flush(zlib.Z_SYNC_FLUSH)
    second = c.compress(b'{"action":"list","pad":"abcdefghijklmnopqrstuvwxyz"}') + c.flush(zlib.Z_SYNC_FLUSH)
    ws = ZWS(plain.port)
    ws.send_raw(frame(OP_TEXT, first[:-4], rsv=RSV1))
    assert ws.recv_json()["type"] == "list"
    ws.send_raw(frame(OP_TEXT, second[:-4], rsv=RSV1))
    assert ws.expect_close() == 1007
    ws.close()


# ---- server messages ------------------------------------------------------------------

def subscribe(ws, *symbols, **extra):
    ws.send_json(dict(action="subscribe", symbols=list(symbols), **extra))
    msg = ws.recv_json()
    assert msg["type"] == "subscribed", msg
    return msg


def test_one_compressed_frame_per_message_shared_by_clients(zstack):
    zs = [ZWS(zstack.port) for _ in range(4)]
    p = ZWS(zstack.port, None)
    for ws in zs + [p]:
        subscribe(ws, "AAPL")
    before = deflate_stats(zstack)
    n = 5
    post(zstack, *[quote("AAPL", bp=i) for i in range(1, n + 1)])
    for ws in zs + [p]:
        got = [ws.recv_json() for _ in range(n)]
        assert [q["data"]["bp"] for q in got] == list(range(1, n + 1))
        assert all(q["type"] == "quote" and q["symbol"] == "AAPL" for q in got)
    assert all(ws.compressed[-n:] == [True] * n for ws in zs)
    assert p.compressed[-n:] == [False] * n
    after = deflate_stats(zstack)
    assert after["frames_compressed"] - before["frames_compressed"] == n        # once per message
    assert after["sent_compressed"] - before["sent_compressed"] == n * len(zs)  # shared by 4 clients
    assert after["bytes_saved"] > before["bytes_saved"]
    metrics = zstack.get("/metrics").body.decode()
    assert f"tickerd_ws_deflate_frames_compressed_total {after['frames_compressed']}" in metrics
    for ws in zs + [p]:
        ws.close()


def test_history_and_snapshot_compressed(zstack):
    post(zstack, *[quote("MSFT", bp=i) for i in range(1, 101)])
    ws = ZWS(zstack.port)
    subscribe(ws, "MSFT", history=100)
    h = ws.recv_json()
    assert h["type"] == "history" and [q["bp"] for q in h["quotes"]] == list(range(1, 101))
    assert ws.compressed[-1] is True
    s = ZWS(zstack.port)
    subscribe(s, "MSFT")
    snap = s.recv_json()
    assert snap["type"] == "quote" and snap["data"]["bp"] == 100 and s.compressed[-1] is True
    ws.close()
    s.close()


def test_short_messages_go_plain(plain):
    """Below WSD_MIN_BYTES compressing cannot pay: RSV1 stays clear."""
    ws = ZWS(plain.port)
    ws.send_json({"action": "unsubscribe", "symbols": []})
    msg = ws.recv_json()
    assert msg == {"type": "unsubscribed", "symbols": []} and ws.compressed == [False]
    ws.close()


def test_small_server_window_gets_plain_frames_past_it(zstack):
    """server_max_window_bits=9: a compressed frame is sent only for a message
    of at most 512 bytes (its distances then fit the client's window);
    longer ones go plain, so the client never sees a distance it cannot read."""
    post(zstack, *[quote("IBM", bp=i) for i in range(1, 21)])
    ws = ZWS(zstack.port, "permessage-deflate; server_max_window_bits=9")
    assert ws.window == 9
    subscribe(ws, "IBM", history=20)
    h = ws.recv_json()
    assert h["type"] == "history" and len(h["quotes"]) == 20 and ws.compressed[-1] is False
    post(zstack, quote("IBM", bp=21))
    q = ws.recv_json()
    assert q["data"]["bp"] == 21 and ws.compressed[-1] is True
    ws.close()


# ---- a real client ----------------------------------------------------------------------

def test_python_websockets_client(zstack):
    """Python websockets (10 on bookworm, 15 on trixie) negotiates, compresses
    what it sends and inflates what it gets."""
    websockets = pytest.importorskip("websockets")
    post(zstack, *[quote("NVDA", bp=i) for i in range(1, 11)])
    before = deflate_stats(zstack)

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{zstack.port}/ws", compression="deflate") as ws:
            resp = getattr(ws, "response", None)
            headers = resp.headers if resp is not None and hasattr(resp, "headers") else ws.response_headers
            ext = headers.get("Sec-WebSocket-Extensions")
            await ws.send(json.dumps({"action": "subscribe", "symbols": ["NVDA"], "history": 10}))
            sub = json.loads(await asyncio.wait_for(ws.recv(), 5))
            hist = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await asyncio.get_running_loop().run_in_executor(None, post, zstack, quote("NVDA", bp=11))
            live = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return ext, sub, hist, live

    ext, sub, hist, live = asyncio.run(run())
    assert ext.startswith(ACCEPTED)
    assert sub["type"] == "subscribed" and sub["symbols"] == ["NVDA"]
    assert [q["bp"] for q in hist["quotes"]] == list(range(1, 11))
    assert live["type"] == "quote" and live["data"]["bp"] == 11
    after = deflate_stats(zstack)
    assert after["messages_inflated"] > before["messages_inflated"]  # its subscribe came compressed
    assert after["sent_compressed"] == before["sent_compressed"] + 2  # history, quote; "subscribed" is too short


# ---- Autobahn 12.x: compressed messages of many sizes, auto-fragmented -------------------

AB12_SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072]
AB12_FRAGMENTS = [0, 256, 1024, 4096]


@pytest.mark.parametrize("kind", ["text", "random"])
@pytest.mark.parametrize("fragment", AB12_FRAGMENTS)
def test_autobahn12_client_message_sizes(zstack, kind, fragment):
    ws = ZWS(zstack.port)
    for size in AB12_SIZES:
        ws.send_compressed(padded_list(size, kind), fragment=fragment)
        msg = ws.recv_json()
        assert msg["type"] == "list" if size >= 26 else msg["error"] == "bad_action", (size, msg)
    ws.close()


@pytest.mark.parametrize("quotes", [1, 2, 5, 20, 60, 200])
def test_autobahn12_server_message_sizes(zstack, quotes):
    post(zstack, *[quote("AMD", bp=i) for i in range(1, quotes + 1)])
    ws = ZWS(zstack.port)
    subscribe(ws, "AMD", history=quotes)
    h = ws.recv_json()
    assert [q["bp"] for q in h["quotes"]][-quotes:] == list(range(1, quotes + 1))
    ws.close()


# ---- Autobahn 13.x: parameter offers, then traffic both ways ---------------------------

AB13_OFFERS = [
    ("permessage-deflate", 15),
    ("permessage-deflate; client_no_context_takeover", 15),
    ("permessage-deflate; client_max_window_bits=8", 8),
    ("permessage-deflate; client_max_window_bits=15", 15),
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits=8", 8),
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits=15", 15),
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits=9, "
     "permessage-deflate; client_no_context_takeover, permessage-deflate", 9),
] + [(f"permessage-deflate; server_max_window_bits={b}; client_max_window_bits={b}", b) for b in range(8, 16)]


@pytest.mark.parametrize("offer, wbits", AB13_OFFERS)
def test_autobahn13_parameter_offers(zstack, offer, wbits):
    post(zstack, *[quote("TSLA", bp=i) for i in range(1, 41)])
    ws = ZWS(zstack.port, offer)
    assert ws.ext and ws.ext.startswith(ACCEPTED)
    for size in [64, 1024, 16384]:
        ws.send_compressed(padded_list(size), fragment=1024, wbits=wbits)
        assert ws.recv_json()["type"] == "list"
    for n in [1, 5, 40]:
        subscribe(ws, "TSLA", history=n)
        h = ws.recv_json()
        assert h["type"] == "history" and [q["bp"] for q in h["quotes"]] == list(range(41 - n, 41))
        ws.send_json({"action": "unsubscribe", "symbols": ["TSLA"]})
        assert ws.recv_json()["type"] == "unsubscribed"
    ws.close()


# ---- memory ------------------------------------------------------------------------------

@pytest.mark.skipif(SANITIZED, reason="RSS is not a bound under ASan")
def test_memory_per_connection_is_that_of_a_plain_one(zstack):
    """No zlib stream per connection: a client that negotiated deflate, sent
    a compressed message and received compressed ones costs the server what
    a plain client costs (a zlib deflate context would be ~300 KiB each)."""
    n = 300
    post(zstack, *[quote("META", bp=i) for i in range(1, 21)])

    def crowd(offer):
        before = zstack.rss_bytes()
        socks = []
        for _ in range(n):
            ws = ZWS(zstack.port, offer)
            if offer:
                ws.send_compressed(json.dumps({"action": "subscribe", "symbols": ["META"], "history": 20}))
            else:
                ws.send_json({"action": "subscribe", "symbols": ["META"], "history": 20})
            ws.recv_json()
            assert ws.recv_json()["type"] == "history"
            socks.append(ws)
        return socks, zstack.rss_bytes() - before

    warm_socks, _ = crowd(None)  # the first crowd also grows the server's pools and arenas
    plain_socks, plain_delta = crowd(None)
    deflate_socks, deflate_delta = crowd("permessage-deflate")
    assert deflate_socks[0].compressed[-1] is True
    per_plain, per_deflate = plain_delta / n, deflate_delta / n
    print(f"RSS per connection: plain {per_plain:.0f} B, deflate {per_deflate:.0f} B")
    assert per_deflate < per_plain + 1024, (per_plain, per_deflate)
    for ws in warm_socks + plain_socks + deflate_socks:
        ws.close()
