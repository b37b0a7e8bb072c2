"""A small raw WebSocket client for the tests: it can send what a browser
never would (unmasked frames, bad UTF-8, reserved bits), which is the point."""
import base64
import json
import os
import socket
import struct

from conftest import IO_TIMEOUT_S, read_response

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length_override=None):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length_override is None else length_override
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class WS:
    def __init__(self, port, path="/ws", headers=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"{extra}\r\n").encode())
        self.response, self.buf = read_response(self.sock)
        self.open = self.response.status == 101

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_json(self, obj):
        self.sock.sendall(frame(OP_TEXT, json.dumps(obj)))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv_frame(self):
        """(opcode, payload); raises socket.timeout when nothing comes."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        self.last_b0 = b0  # its RSV bits, for permessage-deflate (test_deflate.py)
        assert not (b1 & 0x80), "server frames are never masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv_json(self, skip_pings=True):
        while True:
            op, payload = self.recv_frame()
            if op == OP_PING and skip_pings:
                continue
            assert op == OP_TEXT, (op, payload)
            return json.loads(payload)

    def recv_until(self, pred, limit=1000):
        for _ in range(limit):
            msg = self.recv_json()
            if pred(msg):
                return msg
        raise AssertionError("message never came")

    def expect_close(self):
        """Reads until a close frame; returns its code."""
        while True:
            op, payload = self.recv_frame()
            if op == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
