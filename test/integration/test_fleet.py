"""Several tickerd on one redis-server behave as one service: one lease
holder runs the feed, a kill -9 of the holder is covered by a standby
within the lease TTL, and no two instances publish the upstream's quotes
in the same period.

Who published a quote is read from the quote itself: every instance stamps
its messages with its own random "epoch", and the simulated feed stamps
each quote with the wall-clock time it was made ("t"). A test subscribes to
quotes:AAPL on Redis and keeps (epoch, t) of every message, in the order
Redis delivered them.
"""
import json
import os
import signal
import threading
import time

import pytest

from conftest import Tickerd, wait_for

TTL_MS = 1500
RENEW_MS = 300
# The takeover bound: the TTL, plus one round of the standby's own (it
# retries right after the holder's PTTL runs out), plus the test's polling.
TAKEOVER_SLACK_S = 1.0


def fleet_args(redis_url, *extra):
    # The lease tests tell publishers apart by their process epochs, which
    # only --memory-positions puts in the quotes (with positions in Redis
    # the epoch is the channel's): the lease does not depend on the mode.
    # The resume tests below run with the default, positions in Redis.
    return ("--redis-url", redis_url, "--feed", "sim", "--symbols", "AAPL", "--sim-rate", "200",
            "--lease-ttl-ms", str(TTL_MS), "--lease-renew-ms", str(RENEW_MS), "--memory-positions", "true") + tuple(extra)


def fleet_args_redis_positions(redis_url, *extra):
    return ("--redis-url", redis_url, "--feed", "sim", "--symbols", "AAPL", "--sim-rate", "200",
            "--lease-ttl-ms", str(TTL_MS), "--lease-renew-ms", str(RENEW_MS)) + tuple(extra)


def t_ns(ts):
    """'2026-12-03T07:38:34.938095117Z' -> ns since the epoch (sortable)."""
    base, _, frac = ts.rstrip("Z").partition(".")
    secs = time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return int(secs) * 10**9 + int((frac + "000000000")[:9])


class QuoteTape:
    """Every message on a channel, (epoch, t_ns), in Redis's order."""

    def __init__(self, redis_server, channel="quotes:AAPL"):
        self.pubsub = redis_server.client().pubsub()
        self.pubsub.subscribe(channel)
        self.tape = []
        self.first_seen = {}  # epoch -> time.monotonic() of its first message
        self.lock = threading.Lock()
        self.stop_flag = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag:
            m = self.pubsub.get_message(timeout=0.1)
            if m and m["type"] == "message":
                q = json.loads(m["data"])
                with self.lock:
                    self.first_seen.setdefault(q.get("epoch"), time.monotonic())
                    self.tape.append((q.get("epoch"), t_ns(q["t"]) if "t" in q else 0))

    def snapshot(self):
        with self.lock:
            return list(self.tape)

    def count_from(self, epoch):
        return sum(1 for e, _ in self.snapshot() if e == epoch)

    def close(self):
        self.stop_flag = True
        self.thread.join(5)
        self.pubsub.close()


def runs(tape):
    """The epochs in order of their runs: [A, B] for A A A B B."""
    out = []
    for e, _ in tape:
        if not out or out[-1] != e:
            out.append(e)
    return out


def holders(instances):
    roles = {}
    for t in instances:
        if t.proc.poll() is None:
            roles[t] = t.status()
    return [t for t, s in roles.items() if s["role"] == "holder"], roles


def one_holder(instances):
    h, roles = holders(instances)
    if len(h) != 1:
        return None
    ids = {s["lease"]["holder"] for s in roles.values()}
    return h[0] if ids == {h[0].status()["instance_id"]} else None


@pytest.fixture
def fleet(redis_server, tickerd_factory):
    def make(n, *extra):
        return [tickerd_factory(*fleet_args(redis_server.url, *extra)) for _ in range(n)]
    return make


def test_one_holder_runs_the_feed(fleet, redis_server):
    inst = fleet(3)
    holder = wait_for(lambda: one_holder(inst), what="one lease holder")
    ids = {t.status()["instance_id"] for t in inst}
    assert len(ids) == 3 and all(len(i) == 16 for i in ids)
    tape = QuoteTape(redis_server)
    try:
        epoch = holder.status()["quotes"]["epoch"]
        wait_for(lambda: tape.count_from(epoch) >= 20, what="the holder's quotes")
        time.sleep(3 * RENEW_MS / 1000)
        # only the holder published; the standbys published nothing at all
        assert {e for e, _ in tape.snapshot()} == {epoch}
        for t in inst:
            s = t.status()
            if t is holder:
                assert s["quotes"]["upstream"] > 0 and s["lease"]["acquired"] == 1
            else:
                assert s["role"] == "standby" and s["quotes"]["upstream"] == 0
                assert s["lease"]["holder"] == holder.status()["instance_id"]
            assert t.get("/readyz").status == 200  # standbys serve too
        # POST /quotes stays open on a standby
        standby = next(t for t in inst if t is not holder)
        q = {"T": "q", "S": "MSFT", "bx": "V", "bp": 1.0, "bs": 1, "ax": "V", "ap": 1.1, "as": 1, "c": ["R"],
             "z": "C", "t": "2026-01-02T15:04:05Z"}
        r = standby.request("POST", "/quotes", body=[q])
        assert r.status in (200, 202), r.body
        wait_for(lambda: redis_server.client().hget("quotes:last", "MSFT"), what="the POSTed quote in Redis")
        metrics = holder.get("/metrics").body.decode()
        assert "tickerd_lease_holder 1" in metrics
        assert 'tickerd_instance_info{instance_id="%s",role="holder"} 1' % holder.status()["instance_id"] in metrics
    finally:
        tape.close()


def kill9_holder(inst, tape, while_down=None):
    """Kills the lease holder with SIGKILL and checks the takeover: within
    the TTL, by an instance that counts it, and quotes of one instance at a
    time before and after. Returns (old, new)."""
    old = wait_for(lambda: one_holder(inst), what="one lease holder")
    old_epoch, old_id = old.status()["quotes"]["epoch"], old.status()["instance_id"]
    wait_for(lambda: tape.count_from(old_epoch) >= 10, what="quotes before the kill")
    old.proc.send_signal(signal.SIGKILL)
    old.proc.wait()
    killed = time.monotonic()
    if while_down:
        while_down(old_id)
    rest = [t for t in inst if t is not old]
    new = wait_for(lambda: one_holder(rest), timeout=TTL_MS / 1000 + 5, interval=0.01, what="a new holder")
    took = time.monotonic() - killed
    assert took <= TTL_MS / 1000 + TAKEOVER_SLACK_S, "takeover took %.3f s" % took
    new_s = new.status()
    assert new_s["lease"]["takeovers"] == 1
    new_epoch = new_s["quotes"]["epoch"]
    wait_for(lambda: tape.count_from(new_epoch) >= 20, what="quotes after the takeover")
    # one run per publisher: never two instances' quotes interleaved
    assert runs(tape.snapshot()) == [old_epoch, new_epoch]
    return old, new


def test_kill9_holder_taken_over_within_ttl(fleet, redis_server):
    inst = fleet(3)
    tape = QuoteTape(redis_server)
    try:
        old, new = kill9_holder(inst, tape)
        other = next(t for t in inst if t is not old and t is not new)
        assert other.status()["quotes"]["upstream"] == 0
    finally:
        tape.close()


def test_paused_holder_stops_before_takeover(fleet, redis_server):
    """A holder that cannot renew (SIGSTOP: it cannot even tell) must not
    publish once resumed: its deadline passed. Quotes it made before the
    pause may still reach Redis late, but every quote it made is older than
    every quote of the instance that took over."""
    inst = fleet(2)
    old = wait_for(lambda: one_holder(inst), what="one lease holder")
    other = next(t for t in inst if t is not old)
    old_epoch = old.status()["quotes"]["epoch"]
    tape = QuoteTape(redis_server)
    try:
        wait_for(lambda: tape.count_from(old_epoch) >= 10, what="quotes before the pause")
        old.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: other.status()["role"] == "holder", timeout=TTL_MS / 1000 + 5, what="the takeover")
            new_epoch = other.status()["quotes"]["epoch"]
            wait_for(lambda: tape.count_from(new_epoch) >= 10, what="the new holder's quotes")
        finally:
            old.proc.send_signal(signal.SIGCONT)
        # the resumed instance notices, steps down, and stays down
        wait_for(lambda: old.status()["role"] == "standby", what="the old holder to step down")
        time.sleep(5 * RENEW_MS / 1000)
        s = old.status()
        assert s["lease"]["lost"] == 1 and s["lease"]["holder"] == other.status()["instance_id"]
        tape_now = tape.snapshot()
        newest_old = max(t for e, t in tape_now if e == old_epoch)
        oldest_new = min(t for e, t in tape_now if e == new_epoch)
        assert newest_old < oldest_new, "the paused holder published after the takeover"
        assert {e for e, _ in tape_now} == {old_epoch, new_epoch}
        assert other.status()["role"] == "holder"
    finally:
        tape.close()


def test_redis_gone_holder_stops_then_a_holder_returns(fleet, redis_server):
    """Redis killed: nobody can renew, so the holder steps down at its
    deadline (within the TTL of its last renew) and its feed stops; every
    instance keeps serving HTTP. Redis back: one holder again, quotes flow."""
    inst = fleet(2)
    old = wait_for(lambda: one_holder(inst), what="one lease holder")
    redis_server.stop()
    stopped = time.monotonic()
    wait_for(lambda: old.status()["role"] == "standby", timeout=TTL_MS / 1000 + 2, what="the holder to step down")
    assert time.monotonic() - stopped <= TTL_MS / 1000 + 0.5
    # "role" is lease_held(), read off the clock: it says standby the moment
    # the deadline passes, while the step-down itself (expired_unrenewed,
    # the role callback that stops the feed) is the deadline timer's, which
    # runs in a later loop turn. Under load a /status can fall in between:
    # wait for the step-down, then check it was the expiry, once.
    s = wait_for(lambda: (st := old.status())["lease"]["expired_unrenewed"] >= 1 and st,
                 what="the deadline timer's step-down")
    assert s["lease"]["expired_unrenewed"] == 1 and s["role"] == "standby"
    upstream = s["quotes"]["upstream"]
    time.sleep(3 * RENEW_MS / 1000)
    assert old.status()["quotes"]["upstream"] == upstream  # its feed is stopped
    assert all(t.get("/hello").status == 200 for t in inst)
    redis_server.start()
    new = wait_for(lambda: one_holder(inst), timeout=15, what="a holder after Redis came back")
    tape = QuoteTape(redis_server)
    try:
        epoch = new.status()["quotes"]["epoch"]
        wait_for(lambda: tape.count_from(epoch) >= 10, what="quotes after Redis came back")
        assert {e for e, _ in tape.snapshot()} == {epoch}
    finally:
        tape.close()


def test_clean_stop_hands_over_at_once(fleet, redis_server):
    inst = fleet(2)
    old = wait_for(lambda: one_holder(inst), what="one lease holder")
    other = next(t for t in inst if t is not old)
    assert old.stop() == 0
    stopped = time.monotonic()
    wait_for(lambda: other.status()["role"] == "holder", what="the takeover")
    # released, not expired: the standby's next round finds the key gone
    assert time.monotonic() - stopped < TTL_MS / 1000
    events = [e["event"] for e in old.log_events()]
    assert "lease_released" in events


def test_bad_lease_options_refused():
    import subprocess
    from conftest import BIN
    r = subprocess.run([BIN, "--lease-ttl-ms", "1000", "--lease-renew-ms", "950", "--log-file", ""],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "lease" in r.stderr


# ---- three instances behind a real load balancer ----------------------------

NGINX_CONF = """
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  upstream tickerd {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://tickerd;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_buffering off;
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""


class Nginx:
    """Debian's nginx as the load balancer, on a free loopback port."""

    def __init__(self, backends):
        import subprocess
        import tempfile
        from conftest import free_port
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tickerd-nginx-")
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.chmod(self.dir, 0o755)
        os.chmod(os.path.join(self.dir, "tmp"), 0o777)
        servers = "\n".join("    server 127.0.0.1:%d max_fails=1 fail_timeout=5s;" % p for p in backends)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, servers=servers, port=self.port))
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._up, what="nginx to listen")

    def _up(self):
        import socket
        assert self.proc.poll() is None, "nginx exited: " + open(os.path.join(self.dir, "error.log")).read()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def get(self, path):
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
            return r.status, json.loads(r.read())

    def cleanup(self):
        import shutil
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def nginx_factory():
    started = []

    def make(backends):
        n = Nginx(backends)
        started.append(n)
        return n

    yield make
    for n in started:
        n.cleanup()


def test_fleet_behind_load_balancer_survives_kill9_of_holder(fleet, redis_server, nginx_factory):
    inst = fleet(3)
    lb = nginx_factory([t.port for t in inst])
    # the load balancer spreads requests over all three
    seen = {lb.get("/status")[1]["instance_id"] for _ in range(12)}
    assert len(seen) == 3

    def lb_answers_without(old_id):
        # the load balancer keeps answering from the others meanwhile
        for _ in range(6):
            status, body = lb.get("/status")
            assert status == 200 and body["instance_id"] != old_id

    tape = QuoteTape(redis_server)
    try:
        old, new = kill9_holder(inst, tape, while_down=lb_answers_without)
        # the holder's id as every survivor and the balancer see it
        new_id = new.status()["instance_id"]
        for _ in range(6):
            assert lb.get("/status")[1]["lease"]["holder"] == new_id
    finally:
        tape.close()


# ---- resume anywhere: positions in the Redis streams ---------------------------

class Via:
    """Connections through the load balancer, for the stream helpers."""

    def __init__(self, port):
        self.port = port

    def connect(self):
        import socket
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)


def seq_of(pos):
    return int(pos.rsplit(":", 1)[1])


def on_instance(t, kind, opener, tries=9):
    """Opens stream clients through the balancer until one lands on `t`
    (its /status counts it); the others are closed."""
    for _ in range(tries):
        before = t.status()["streaming"][kind]
        c = opener()
        time.sleep(0.1)
        if t.status()["streaming"][kind] == before + 1:
            return c
        c[0].close() if isinstance(c, tuple) else c.close()
    raise AssertionError("no client landed on the instance")


def ws_drain(ws):
    """Quote ids until the connection ends."""
    ids = []
    try:
        while True:
            m = ws.recv_json()
            if m["type"] == "quote":
                ids.append(m["id"])
    except (ConnectionError, OSError):
        return ids


def sse_drain(s, buf):
    ids = []
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    for block in buf.decode(errors="replace").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("id: "):
                ids.append(line[4:])
    return ids


def ws_resume(port, since, live):
    """Subscribes to AAPL from `since`; the quote ids up to `live` quotes
    past the recovery message, and that message."""
    from wsclient import WS
    ws = WS(port)
    ws.send_json({"action": "subscribe", "symbols": ["AAPL"], "since": since})
    assert ws.recv_json()["type"] == "subscribed"
    ids, rec = [], None
    while rec is None or len(ids) < rec["replayed"] + live:
        m = ws.recv_json()
        if m["type"] == "recovery":
            rec = m
        elif m["type"] == "quote":
            ids.append(m["id"])
    return ws, ids, rec


def sse_resume(via, last, live):
    """ws_resume for SSE: AAPL from Last-Event-ID `last`."""
    from test_streaming import sse_events, sse_open
    s, head, buf = sse_open(via, "symbols=AAPL", {"Last-Event-ID": last}, http="1.0")
    ids, rec = [], None
    while rec is None or len(ids) < rec["replayed"] + live:
        evs, buf = sse_events(s, buf, 1)
        if evs[0].get("event") == "recovery":
            rec = json.loads(evs[0]["data"])
        elif "id" in evs[0]:
            ids.append(evs[0]["id"])
    return s, ids, rec


def check_resumed(ids_after, last, rec):
    """The replay and the live quotes after it continue the sequence from
    the last position the client had, with nothing missing."""
    assert rec["recovered"] is True, rec
    seqs = [seq_of(i) for i in ids_after]
    assert seqs[:1] == [seq_of(last) + 1], (last, seqs[:5])
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a hole in the resumed sequence"
    assert {i.split(":")[1] for i in ids_after} == {last.split(":")[1]}  # the channel's one epoch


def test_clients_of_killed_holder_resume_anywhere(redis_server, tickerd_factory, nginx_factory):
    from test_streaming import sse_events, sse_open
    from wsclient import WS
    inst = [tickerd_factory(*fleet_args_redis_positions(redis_server.url)) for _ in range(3)]
    lb = nginx_factory([t.port for t in inst])
    via = Via(lb.port)
    holder = wait_for(lambda: one_holder(inst), what="one lease holder")

    def open_ws():
        ws = WS(lb.port)
        assert ws.open
        ws.send_json({"action": "subscribe", "symbols": ["AAPL"]})
        return ws

    ws = on_instance(holder, "ws_clients", open_ws)
    s, head, buf = on_instance(holder, "sse_clients", lambda: sse_open(via, "symbols=AAPL", http="1.0"))
    evs, buf = sse_events(s, buf, 5)
    ws.recv_until(lambda m: m["type"] == "quote")
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait()
    ws_last = ws_drain(ws)[-1]
    sse_ids = [e["id"] for e in evs if "id" in e] + sse_drain(s, buf)
    sse_last = sse_ids[-1]
    rest = [t for t in inst if t is not holder]
    wait_for(lambda: one_holder(rest), timeout=TTL_MS / 1000 + 5, what="a new holder")

    # WebSocket: through the balancer to a survivor, from its last position
    ws, ids, rec = ws_resume(lb.port, ws_last, 20)
    check_resumed(ids, ws_last, rec)
    ws.close()

    # SSE: the same with Last-Event-ID
    s, ids, rec = sse_resume(via, sse_last, 20)
    check_resumed(ids, sse_last, rec)
    s.close()

    # A restarted instance (empty memory) resumes a client too.
    again = tickerd_factory(*fleet_args_redis_positions(redis_server.url))
    wait_for(lambda: again.get("/readyz").status == 200 or None, what="the restarted instance")
    ws, ids, rec = ws_resume(again.port, ws_last, 5)
    check_resumed(ids, ws_last, rec)
    assert again.status()["streaming"]["resumed_from_redis"] == 1


# ---- the Alpaca feed: one session per key, 406 after an unclean takeover ----

@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory):
    import subprocess
    d = tmp_path_factory.mktemp("ca")
    subprocess.run([os.path.join(os.path.dirname(__file__), "..", "support", "testca.sh"), str(d)], check=True)
    return d


# The fake keeps a vanished session's slot this long (Alpaca: up to ~90 s).
SLOT_HOLD_MS = 4000


def test_alpaca_406_after_kill9_resumes_when_slot_frees(ca_dir, redis_server, tickerd_factory, tmp_path):
    import re
    import subprocess
    fake_log = open(tmp_path / "fake.log", "w")
    fake = subprocess.Popen(["/usr/bin/python3", os.path.join(os.path.dirname(__file__), "..", "support", "fake_alpaca.py"),
                             "--cert", str(ca_dir / "server.pem"), "--key", str(ca_dir / "server.key"),
                             "--key-id", "testkey", "--secret", "fleet-secret", "--exit-on-stdin-eof",
                             "--one-session", "--slot-hold-ms", str(SLOT_HOLD_MS), "--batches", "0",
                             "--interval-ms", "20"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=fake_log, text=True)
    try:
        m = re.match(r"READY (\d+) (\d+)", fake.stdout.readline())
        assert m
        env = {"APCA_API_KEY_ID": "testkey", "APCA_API_SECRET_KEY": "fleet-secret"}
        # publishers told apart by their process epochs (see fleet_args)
        args = ("--redis-url", redis_server.url, "--memory-positions", "true", "--feed", "alpaca", "--symbols", "AAPL",
                "--alpaca-url", "wss://127.0.0.1:%s/v2/test" % m.group(1), "--ca-file", str(ca_dir / "ca.pem"),
                "--lease-ttl-ms", str(TTL_MS), "--lease-renew-ms", str(RENEW_MS))
        inst = [tickerd_factory(*args, env=env) for _ in range(2)]
        old = wait_for(lambda: one_holder(inst), timeout=10, what="one lease holder")
        new = next(t for t in inst if t is not old)
        tape = QuoteTape(redis_server)
        try:
            old_epoch = old.status()["quotes"]["epoch"]
            wait_for(lambda: tape.count_from(old_epoch) >= 10, timeout=10, what="Alpaca quotes via the holder")
            # one upstream session for the fleet: the standby never connected
            assert new.status()["upstream"] is None or new.status()["upstream"]["data"]["state"] == "disconnected"
            fake_events = lambda: [json.loads(l) for l in open(tmp_path / "fake.log") if l.startswith("{")]
            assert sum(1 for e in fake_events() if e["event"] == "connect") == 1
            old.proc.send_signal(signal.SIGKILL)
            old.proc.wait()
            killed = time.monotonic()  # the fake cannot see the session vanish before this
            # the fake holds the vanished session's slot: the new holder is refused
            wait_for(lambda: new.status()["role"] == "holder", timeout=TTL_MS / 1000 + 5, what="the takeover")
            wait_for(lambda: (new.status()["upstream"] or {}).get("data", {}).get("limit_refusals", 0) >= 1,
                     timeout=10, what="a 406 for the new holder")
            released = [e for e in fake_events() if e["event"] == "slot_released"]
            assert released and released[0]["clean"] is False
            new_epoch = new.status()["quotes"]["epoch"]
            assert tape.count_from(new_epoch) == 0
            wait_for(lambda: tape.count_from(new_epoch) >= 5, timeout=SLOT_HOLD_MS / 1000 + 10,
                     what="quotes once the slot frees")
            # within seconds of the slot freeing (no earlier than killed + hold):
            # the auth retries are at most 2 s apart, plus 2 s for the rest
            assert tape.first_seen[new_epoch] - killed <= SLOT_HOLD_MS / 1000 + 2 + 2
            up = new.status()["upstream"]["data"]
            assert up["state"] == "streaming" and up["limit_refusals"] >= 1 and up["auth_retries"] >= 1
            metrics = new.get("/metrics").body.decode()
            assert re.search(r'tickerd_upstream_refused_total\{code="406"\} [1-9]', metrics)
            assert any(e.get("event") == "alpaca_error" and e.get("code") == 406 for e in new.log_events())
            assert "fleet-secret" not in open(new.log_path).read()
            assert runs(tape.snapshot()) == [old_epoch, new_epoch]
        finally:
            tape.close()
    finally:
        fake.stdin.close()
        try:
            fake.wait(5)
        except subprocess.TimeoutExpired:
            fake.kill()
            fake.wait()
        fake_log.close()
