"""RSS of tickerd before, with and after a crowd of SSE clients (issue 14).

    /usr/bin/python3 bench/rss_crowd.py [path/to/tickerd]

Starts its own redis-server and tickerd on free ports (127.0.0.1), connects
5,000 SSE clients over 50 symbols, publishes 1,000 quotes through POST
/quotes, closes every client, and prints RSS at start, with the clients, and
3 s after they left (the once-a-second malloc_trim check has run by then).
Not part of `make bench`: a figure for README's memory paragraph."""
import json
import os
import socket
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))
import conftest  # noqa: E402

CLIENTS = 5000
SYMBOLS = 50
ROUNDS = 20


def main():
    conftest.BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "tickerd"))
    r = conftest.RedisServer()
    t = conftest.Tickerd(["--feed", "none", "--redis-url", r.url])
    socks = []
    try:
        conftest.wait_for(lambda: t.get("/readyz").status == 200 or None)
        start = t.rss_bytes()
        for i in range(CLIENTS):
            s = socket.create_connection(("127.0.0.1", t.port))
            s.sendall(f"GET /stream?symbols=S{i % SYMBOLS},T{i % 7} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(s)
        conftest.wait_for(lambda: t.status()["streaming"]["clients"] == CLIENTS or None, timeout=60)
        for k in range(ROUNDS):
            body = json.dumps([{"T": "q", "S": f"S{j}", "bx": "V", "bp": 1.5 + k, "bs": 3, "ax": "V", "ap": 2.5,
                                "as": 1, "c": ["R"], "z": "C", "t": "2026-11-21T20:00:00Z"} for j in range(SYMBOLS)])
            assert t.request("POST", "/quotes", body=body).status == 202
        time.sleep(1)
        peak = t.rss_bytes()
        for s in socks:
            s.close()
        socks = []
        conftest.wait_for(lambda: t.status()["streaming"]["clients"] == 0 or None, timeout=60)
        time.sleep(3)
        after = t.rss_bytes()
        mib = 2 ** 20
        print(f"{conftest.BIN}: start {start / mib:.1f} MiB, {CLIENTS} clients {peak / mib:.1f} MiB, "
              f"3 s after they left {after / mib:.1f} MiB; buffers {t.status()['buffers']}")
    finally:
        for s in socks:
            s.close()
        t.cleanup()
        r.cleanup()


if __name__ == "__main__":
    main()
