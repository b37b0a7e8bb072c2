"""Resume of N messages from the Redis stream: instance A publishes N+10
quotes of AAPL; a WebSocket client of instance B (which never had a client
of AAPL, so its memory holds none of them) subscribes with `since` N
messages back; timed from the subscribe until the `recovery` message that
follows the last replayed quote. Prints p50/p99/max in ms."""
import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "test", "integration"))
from wsclient import WS  # noqa: E402


def post(port, quotes):
    req = urllib.request.Request("http://127.0.0.1:%d/quotes" % port, data=json.dumps(quotes).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--publisher", type=int, required=True)
    ap.add_argument("--resumer", type=int, required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--tries", type=int, default=50)
    a = ap.parse_args()
    q = {"T": "q", "S": "AAPL", "bx": "V", "bp": 1.0, "bs": 1, "ax": "V", "ap": 1.1, "as": 1, "c": ["R"],
         "z": "C", "t": "2026-11-21T20:00:00.123456789Z"}
    total = a.messages + 10
    for i in range(0, total, 500):
        post(a.publisher, [dict(q, bp=1.0 + j / 100) for j in range(i, min(total, i + 500))])
    import redis
    r = redis.Redis(port=a.redis_port)
    deadline = time.time() + 30
    while int(r.hget("tickerd:{quotes:AAPL}:pos", "s") or 0) < total and time.time() < deadline:
        time.sleep(0.05)
    top = int(r.hget("tickerd:{quotes:AAPL}:pos", "s"))
    epoch = r.hget("tickerd:{quotes:AAPL}:pos", "e").decode()
    since = "AAPL:%s:%d" % (epoch, top - a.messages)
    times = []
    for _ in range(a.tries):
        ws = WS(a.resumer)
        t0 = time.perf_counter()
        ws.send_json({"action": "subscribe", "symbols": ["AAPL"], "since": since})
        n = 0
        while True:
            m = ws.recv_json()
            if m["type"] == "quote":
                n += 1
            elif m["type"] == "recovery":
                break
        times.append((time.perf_counter() - t0) * 1000)
        assert m["recovered"] is True and n == a.messages and m["replayed"] == a.messages, (m, n)
        ws.close()
        time.sleep(0.05)  # the instance unsubscribes; the next try reads the stream again
    times.sort()
    p = lambda x: times[min(len(times) - 1, int(round(x * (len(times) - 1))))]
    print("%.2f %.2f %.2f" % (p(0.5), p(0.99), times[-1]))


main()
