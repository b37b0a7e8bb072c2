#!/usr/bin/python3
"""bench/watchlist_burst.py <tickerd> <clients> <burst> <rounds>: a stall and
a burst, to compare builds on how a backlog from Redis is drained.

<clients> SSE clients of build/bench/fanout_client (20 of 100 symbols each,
no publisher) on a private redis-server and tickerd. Per round: tickerd is
stopped (SIGSTOP, what a shared machine's scheduler does for milliseconds),
<burst> quotes over the 100 symbols are PUBLISHed in one Redis pipeline,
tickerd continues (SIGCONT) and drains them. Prints, sorted over the rounds,
/status sends per delivery and tickerd's CPU (utime + stime) per delivery
for the drain. Not part of `make bench`: a tool for working on delivery
(README, "Watchlist fan-out"). Run with Debian's /usr/bin/python3 (redis-py).
Everything listens on 127.0.0.1 only."""
import json, os, signal, socket, subprocess, sys, time, urllib.request
import redis
tickerd, clients, burst, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
rp, tp = free(), free()
procs = []
procs.append(subprocess.Popen(["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
time.sleep(0.3)
td = subprocess.Popen([tickerd, "--host", "127.0.0.1", "--port", str(tp), "--redis-url", f"redis://127.0.0.1:{rp}", "--feed", "none",
                       "--log-file", "", "--log-level", "warn", "--max-stream-clients", "20000", "--max-connections", "30000"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
procs.append(td)
time.sleep(0.5)
err = subprocess.DEVNULL
cl = subprocess.Popen([os.path.join(os.path.dirname(os.path.abspath(tickerd)), "bench", "fanout_client"), "--mode", "sse-tickerd", "--port", str(tp), "--clients", str(clients),
                       "--symbols", "100", "--per-client", "20", "--prefix", "BX", "--pub", "none", "--rates", "1", "--runs", "1",
                       "--warmup-ms", "1000", "--window-ms", "600000", "--stop-p99-ms", "100000000"],
                      stdout=subprocess.DEVNULL, stderr=err)
procs.append(cl)
def status():
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{tp}/status"))["streaming"]
def ticks():
    f = open(f"/proc/{td.pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
try:
    for _ in range(600):   # 10,000 clients connect in a few seconds
        if status()["subscriptions"] >= clients * 20: break
        time.sleep(0.1)
    else:
        sys.exit("watchlist_burst.py: the clients did not all subscribe")
    time.sleep(1)
    r = redis.Redis(port=rp)
    per = clients * 20 // 100
    res = []
    for k in range(rounds):
        s0, t0 = status(), ticks()
        td.send_signal(signal.SIGSTOP)
        pipe = r.pipeline(transaction=False)
        for i in range(burst):
            sym = f"BX{i % 100}"
            pipe.publish(f"quotes:{sym}", json.dumps({"T": "q", "S": sym, "bp": i, "ap": i + 1, "t": "2026-12-03T10:00:00.000000000Z", "c": ["R"], "z": "C", "bx": "V", "ax": "V", "bs": 3, "as": 1}))
        pipe.execute()
        td.send_signal(signal.SIGCONT)
        want = s0["deliveries"] + burst * per
        for _ in range(600):   # at most 12 s per drain
            s1 = status()
            if s1["deliveries"] >= want: break
            time.sleep(0.02)
        time.sleep(0.3)
        s1, t1 = status(), ticks()
        d = s1["deliveries"] - s0["deliveries"]; s = s1["sends"] - s0["sends"]
        res.append((s / d, (t1 - t0) / os.sysconf("SC_CLK_TCK") / d * 1e6))
        time.sleep(0.3)
    res.sort()
    print(os.path.basename(tickerd), "clients", clients, "burst", burst, "sends/delivery", ["%.4f" % x[0] for x in res],
          "cpu us/delivery", sorted("%.3f" % x[1] for x in res))
finally:
    for p in reversed(procs):
        try: p.send_signal(signal.SIGCONT)
        except Exception: pass
        p.terminate()
    for p in procs:
        try: p.wait(timeout=5)
        except Exception: p.kill()
