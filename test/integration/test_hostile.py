"""Issue 14: hostile input and faults (slowloris, clients that never read,
resubscribed channels, misfiled messages, symbols with '/', overflowing
parameters, number format, SIGHUP, a Redis that never answers), against the
real binary over real sockets with a real redis-server."""
import json
import os
import select
import signal
import socket
import threading
import time
import urllib.parse

from conftest import IO_TIMEOUT_S, SANITIZED, RedisServer, free_port, is_closed, read_response, wait_for

# The header timeout of the slowloris tests, and the pause between the bytes
# the attacker trickles: well under the timeout, so that only a deadline
# fixed at accept (not one restarted by every read) can close them.
HEADER_TIMEOUT_MS = 1000
TRICKLE_PAUSE_S = 0.2
# How long the attacker keeps trickling before the test gives up on the
# server closing it: several header timeouts.
TRICKLE_FOR_S = 4.0


def trickle_until_closed(socks, prefix=b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "):
    """Sends `prefix` then one header byte per TRICKLE_PAUSE_S on every socket
    until each was closed by the server or TRICKLE_FOR_S passed. Returns the
    seconds after which each socket was seen closed (None: still open)."""
    start = time.monotonic()
    closed = [None] * len(socks)
    for s in socks:
        s.sendall(prefix)
        s.setblocking(False)
    while time.monotonic() - start < TRICKLE_FOR_S and None in closed:
        for i, s in enumerate(socks):
            if closed[i] is not None:
                continue
            try:
                if s.recv(65536) == b"":
                    closed[i] = time.monotonic() - start
                    continue
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = time.monotonic() - start
                continue
            try:
                s.send(b"a")
            except OSError:
                closed[i] = time.monotonic() - start
        time.sleep(TRICKLE_PAUSE_S)
    return closed


def test_slowloris_trickling_under_the_timeout_is_closed_at_the_deadline(tickerd_factory):
    """Fails on the code before issue 14: every read restarted the header
    timer, so a byte every 200 ms kept the connections open for ever."""
    t = tickerd_factory("--feed", "none", "--header-timeout-ms", str(HEADER_TIMEOUT_MS))
    socks = [t.connect() for _ in range(20)]
    try:
        closed = trickle_until_closed(socks)
    finally:
        for s in socks:
            s.close()
    assert None not in closed, f"still open after {TRICKLE_FOR_S}s: {closed}"
    assert all(c >= HEADER_TIMEOUT_MS / 1000 * 0.8 for c in closed), closed
    st = t.status()["http"]
    assert st["header_timeouts"] == 20
    assert st["idle_timeouts"] == 0
    assert wait_for(lambda: len([e for e in t.log_events() if e["event"] == "client_header_timeout"]) == 20 or None,
                    what="20 client_header_timeout lines")


def test_slowloris_on_a_keepalive_connection_is_timed_from_its_first_byte(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--header-timeout-ms", str(HEADER_TIMEOUT_MS))
    with t.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s)[0].status == 200
        # idle longer than the header timeout: that is the idle timeout's business
        time.sleep(HEADER_TIMEOUT_MS / 1000 * 1.5)
        closed = trickle_until_closed([s])
    assert closed[0] is not None, "the trickled second request was never timed out"
    assert t.status()["http"]["header_timeouts"] == 1


def test_silent_connection_is_closed_at_the_header_deadline(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--header-timeout-ms", "300", "--idle-timeout-ms", "60000")
    with t.connect() as s:
        assert is_closed(s, timeout=3)
    assert t.status()["http"]["header_timeouts"] == 1


def test_complete_requests_are_not_hurried_by_the_header_deadline(tickerd_factory):
    """The deadline is per request: a keep-alive client sending whole requests
    now and then for longer than the header timeout is served throughout."""
    t = tickerd_factory("--feed", "none", "--header-timeout-ms", "400")
    with t.connect() as s:
        for _ in range(5):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0].status == 200
            time.sleep(0.2)
    assert t.status()["http"]["header_timeouts"] == 0


def test_pipelining_client_that_never_reads_hits_the_write_timeout(tickerd_factory):
    """Fails on the code before issue 14: there was no --write-timeout-ms, and
    the held-back pipelined requests were timed out as headers (after the
    10 s header timeout, counted in header_timeouts)."""
    t = tickerd_factory("--feed", "none", "--header-timeout-ms", "300", "--write-timeout-ms", "1500")
    s = t.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    req = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n" * 100
    blocked_since = None
    try:
        # requests until the server stops reading us (TCP pushes back), or closes
        while blocked_since is None or time.monotonic() - blocked_since < 0.3:
            try:
                s.send(req)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                time.sleep(0.01)
            except ConnectionResetError:
                break
        assert wait_for(lambda: t.status()["http"]["write_timeouts"] == 1 or None, timeout=5,
                        what="the write timeout")
    finally:
        s.close()
    st = t.status()["http"]
    assert st["header_timeouts"] == 0
    wait_for(lambda: any(e["event"] == "client_write_timeout" for e in t.log_events()) or None,
             what="a client_write_timeout line")
