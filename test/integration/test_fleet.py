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


def test_kill9_holder_taken_over_within_ttl(fleet, redis_server):
    inst = fleet(3)
    old = wait_for(lambda: one_holder(inst), what="one lease holder")
    old_epoch = old.status()["quotes"]["epoch"]
    tape = QuoteTape(redis_server)
    try:
        wait_for(lambda: tape.count_from(old_epoch) >= 10, what="quotes before the kill")
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        killed = time.monotonic()
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
        other = next(t for t in rest if t is not new)
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
