#!/usr/bin/python3
"""Failover time with Redis Sentinel (issue 18): kill -9 of the primary to
quotes flowing again.

    /usr/bin/python3 bench/failover.py build/tickerd [--tries 10] [--post-ms 10]

Starts a primary, a replica and three Sentinels (test/integration/
sentinel_topology.py: down-after 1000 ms, failover-timeout 2000 ms) and one
tickerd on `redis+sentinel://`, a WebSocket client subscribed to AAPL, and
a thread POSTing one AAPL quote every --post-ms (bp = a counter). Then
`--tries` times: kill -9 the primary and measure

  - total: from the kill to the first quote on the client POSTed after the
    kill (its bp is above every bp POSTed before: quotes flow again);
  - sentinel: from the kill to tickerd's sentinel_primary_changed line
    (Sentinel's detection, election and promotion, and the +switch-master
    message reaching tickerd);
  - tickerd: the rest, from that line to the quote on the client
    (reconnect, ROLE, SCRIPT LOAD, resubscribe, the outbox's flush).

The killed node is started again as a replica of the new primary and the
next try waits until the Sentinels see it in sync, and until Sentinel's own
spacing of failovers of one master (2 x failover-timeout) has passed.
Prints a markdown section to stdout; every process it starts is stopped on
exit.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
from sentinel_topology import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, Topology, free_port, wait_until  # noqa: E402
from wsclient import OP_TEXT, WS  # noqa: E402

# Bounds of the harness: a broken build fails the run, never hangs it.
START_TIMEOUT_S = 10
FAILOVER_LIMIT_S = 60
MAX_TRIES = 50
# Sentinel starts no failover of a master within 2 x failover-timeout of
# the last one; the margin covers its random start delay (up to 1 s).
SPACING_S = 2 * FAILOVER_TIMEOUT_MS / 1000 + 1.5


def http(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


def quote(bp):
    return {"T": "q", "S": "AAPL", "bx": "V", "bp": bp, "bs": 1, "ax": "V", "ap": bp + 1, "as": 1,
            "t": "2026-11-21T20:00:00.123456789Z"}


def log_times(path, event):
    """Wall-clock times of `event` lines in tickerd's log."""
    out = []
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            if e["event"] == event:
                out.append(datetime.datetime.fromisoformat(e["ts"].rstrip("Z")).replace(
                    tzinfo=datetime.timezone.utc).timestamp())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tickerd")
    ap.add_argument("--tries", type=int, default=10)
    ap.add_argument("--post-ms", type=int, default=10)
    a = ap.parse_args()
    tries = min(a.tries, MAX_TRIES)
    load = open("/proc/loadavg").read().split()[:3]
    topo = Topology()
    d = tempfile.mkdtemp(prefix="tickerd-failover-")
    log = os.path.join(d, "tickerd.log")
    port = free_port()
    tk = subprocess.Popen([os.path.abspath(a.tickerd), "--port", str(port), "--feed", "none", "--redis-url", topo.url,
                           "--log-file", log, "--ping-interval-ms", "60000"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    got = {"bp": 0, "at": 0.0, "posted": 0}
    try:
        wait_until(lambda: http(port, "GET", "/readyz")[0] == 200, START_TIMEOUT_S, "tickerd ready")
        ws = WS(port)
        ws.send_json({"action": "subscribe", "symbols": ["AAPL"]})
        assert ws.recv_json()["type"] == "subscribed"

        def read():
            ws.sock.settimeout(0.2)
            while not stop.is_set():
                try:
                    op, payload = ws.recv_frame()
                except OSError:
                    continue
                if op == OP_TEXT:
                    m = json.loads(payload)
                    if m.get("type") == "quote" and m["data"]["bp"] > got["bp"]:
                        got["bp"], got["at"] = m["data"]["bp"], time.time()

        def post():
            n = 0
            while not stop.is_set():
                n += 1
                got["posted"] = n
                try:
                    http(port, "POST", "/quotes", [quote(n)])
                except OSError:
                    pass
                time.sleep(a.post_ms / 1000)

        threads = [threading.Thread(target=f, daemon=True) for f in (read, post)]
        for t in threads:
            t.start()
        totals, sentinels, tickerds = [], [], []
        last_promotion = 0.0
        for i in range(tries):
            wait_until(lambda: got["bp"] > 0 and time.time() - got["at"] < 0.5, START_TIMEOUT_S, "quotes flowing")
            time.sleep(max(0.0, last_promotion + SPACING_S - time.monotonic()))
            old = topo.primary_port
            before = got["posted"]  # sent before the kill, in flight or done
            t_kill = time.time()
            topo.kill_primary()
            wait_until(lambda: got["bp"] > before and got["at"] > t_kill, FAILOVER_LIMIT_S, "quotes after the kill",
                       interval=0.005)
            total = got["at"] - t_kill
            topo.wait_promoted(old)
            last_promotion = time.monotonic()
            moved = wait_until(lambda: [t for t in log_times(log, "sentinel_primary_changed") if t > t_kill],
                               START_TIMEOUT_S, "the sentinel_primary_changed line")
            totals.append(total)
            sentinels.append(moved[0] - t_kill)
            tickerds.append(total - sentinels[-1])
            print("try %d: total %.3f s (sentinel %.3f s, tickerd %.3f s)" % (i + 1, total, sentinels[-1],
                                                                            tickerds[-1]), file=sys.stderr)
            topo.restart_as_replica(old)
        print("## Failover with Redis Sentinel (kill -9 of the primary)\n")
        print("A primary, a replica and three Sentinels (quorum 2, down-after-milliseconds %d, failover-timeout "
              "%d) on loopback; one tickerd on `redis+sentinel://`; one AAPL quote POSTed every %d ms; a "
              "WebSocket client. %d tries; load average before: %s.\n" % (DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS,
                                                                         a.post_ms, tries, " ".join(load)))
        print("| | median | worst | best |")
        print("|---|---|---|---|")
        for name, v in (("kill to quotes flowing again (s)", totals), ("of which Sentinel: kill to +switch-master "
                        "seen (s)", sentinels), ("of which tickerd: switch to the quote on the client (s)", tickerds)):
            print("| %s | %.3f | %.3f | %.3f |" % (name, statistics.median(v), max(v), min(v)))
        print("\nEvery try, total (s): " + ", ".join("%.3f" % t for t in totals))
        print("Every try, tickerd's part (ms): " + ", ".join("%.1f" % (t * 1000) for t in tickerds))
    finally:
        stop.set()
        tk.terminate()
        try:
            tk.wait(10)
        except subprocess.TimeoutExpired:
            tk.kill()
            tk.wait()
        topo.stop()


if __name__ == "__main__":
    main()
