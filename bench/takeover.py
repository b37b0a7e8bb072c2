#!/usr/bin/python3
"""Takeover time after kill -9 of the lease holder (issue 15).

    /usr/bin/python3 bench/takeover.py build/tickerd [--tries 10] [--instances 3]
                                       [--ttl-ms 5000] [--renew-ms 1000]

Starts a redis-server and N tickerd (--feed sim, AAPL at 100 quotes/s) on
free loopback ports, subscribes to quotes:AAPL, then `--tries` times: waits
a random part of a renew interval (so that the kill falls anywhere in the
renew cycle), kills the holder with SIGKILL and measures

  - takeover: from the kill to the first quote published by another
    instance (told apart by the message's epoch), as a subscriber sees it;
  - gap: from the old holder's last quote to the new holder's first.

A replacement instance is started after each try, so N stay up. Prints a
markdown section (every try, the median and the worst) to stdout. Every
process it starts is stopped on exit. Defaults are tickerd's own lease
settings.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# Bounds of the harness: a broken build fails the run, never hangs it.
START_TIMEOUT_S = 10
TAKEOVER_TIMEOUT_S = 60
MAX_TRIES = 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise SystemExit("takeover.py: timed out waiting for " + what)


class Proc:
    def __init__(self, argv, log):
        self.log = open(log, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.log.close()


def status(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tickerd")
    ap.add_argument("--tries", type=int, default=10)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--ttl-ms", type=int, default=5000)
    ap.add_argument("--renew-ms", type=int, default=1000)
    a = ap.parse_args()
    a.tries = max(1, min(a.tries, MAX_TRIES))
    tmp = tempfile.mkdtemp(prefix="tickerd-takeover-")
    procs = []
    try:
        rport = free_port()
        procs.append(Proc(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no"], os.path.join(tmp, "redis.log")))
        import redis
        r = redis.Redis(port=rport, socket_timeout=5)
        wait_for(lambda: _ping(r), START_TIMEOUT_S, "redis-server")

        seq = [0]

        def start_instance():
            seq[0] += 1
            port = free_port()
            p = Proc([a.tickerd, "--port", str(port), "--redis-url", "redis://127.0.0.1:%d" % rport,
                      "--memory-positions", "true", "--feed", "sim", "--symbols", "AAPL", "--sim-rate", "100", "--lease-ttl-ms", str(a.ttl_ms),
                      "--lease-renew-ms", str(a.renew_ms), "--log-file", os.path.join(tmp, "t%d.log" % seq[0])],
                     os.path.join(tmp, "t%d.out" % seq[0]))
            p.port = port
            procs.append(p)
            wait_for(lambda: status(port), START_TIMEOUT_S, "tickerd on port %d" % port)
            return p

        inst = [start_instance() for _ in range(a.instances)]
        first, last = {}, {}
        lock = threading.Lock()
        ps = r.pubsub()
        ps.subscribe("quotes:AAPL")
        stop = [False]

        def listen():
            while not stop[0]:
                m = ps.get_message(timeout=0.1)
                if m and m["type"] == "message":
                    e = json.loads(m["data"])["epoch"]
                    now = time.monotonic()
                    with lock:
                        first.setdefault(e, now)
                        last[e] = now

        th = threading.Thread(target=listen, daemon=True)
        th.start()
        rows = []
        for i in range(a.tries):
            def holder():
                for t in inst:
                    s = status(t.port)
                    if s and s["role"] == "holder":
                        return t, s["quotes"]["epoch"]
                return None
            old, old_epoch = wait_for(holder, TAKEOVER_TIMEOUT_S, "a holder")
            wait_for(lambda: old_epoch in first, TAKEOVER_TIMEOUT_S, "the holder's quotes")
            time.sleep(random.uniform(0, a.renew_ms / 1000.0))
            old.p.send_signal(signal.SIGKILL)
            old.p.wait()
            killed = time.monotonic()
            inst.remove(old)
            epochs_before = set(first)
            new_epoch = wait_for(lambda: next(iter(set(first) - epochs_before), None), TAKEOVER_TIMEOUT_S,
                                 "quotes from a new holder")
            with lock:
                takeover = first[new_epoch] - killed
                gap = first[new_epoch] - last[old_epoch]
            rows.append((takeover, gap))
            print("try %d: takeover %.3f s, quote gap %.3f s" % (i + 1, takeover, gap), file=sys.stderr)
            inst.append(start_instance())
        stop[0] = True
        th.join(5)
        takes = [t for t, _ in rows]
        gaps = [g for _, g in rows]
        print("## Takeover after kill -9 of the lease holder\n")
        print("%d tickerd on one redis-server, sim feed (AAPL, 100 quotes/s), lease TTL %d ms, renew %d ms; "
              "%d tries, each killing the holder at a random point of its renew cycle. "
              "Takeover: kill to the new holder's first quote on quotes:AAPL (a subscriber's view). "
              "Machine: %d CPUs, load average before %s.\n"
              % (a.instances, a.ttl_ms, a.renew_ms, a.tries, os.cpu_count(), LOAD_BEFORE))
        print("| | median | worst | best |")
        print("|---|---|---|---|")
        print("| takeover (s) | %.3f | %.3f | %.3f |" % (statistics.median(takes), max(takes), min(takes)))
        print("| quote gap (s) | %.3f | %.3f | %.3f |" % (statistics.median(gaps), max(gaps), min(gaps)))
        print("\nEvery try (s): " + ", ".join("%.3f" % t for t in takes))
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _ping(r):
    try:
        return r.ping()
    except Exception:
        return False


LOAD_BEFORE = open("/proc/loadavg").read().split()[0:3]
LOAD_BEFORE = " ".join(LOAD_BEFORE)

if __name__ == "__main__":
    main()
