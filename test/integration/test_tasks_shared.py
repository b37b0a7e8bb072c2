"""Tasks across instances (issue 15, part 5): a finished task is written to
Redis in batches, so that GET /tasks/{id} answers on another instance of
the fleet; with Redis away an instance still serves its own tasks, and
counts what it could not keep for the others."""
import time

from conftest import wait_for

PHASES = "400,400"  # long enough to look at a running task from the other side


def instance(tickerd_factory, redis_server, *extra):
    return tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--task-phases-ms", PHASES,
                           "--task-error-rate", "0", *extra)


def shared(t):
    return t.status()["tasks"]["shared"]


def test_task_created_on_a_is_read_on_b(tickerd_factory, redis_server):
    a = instance(tickerd_factory, redis_server)
    b = instance(tickerd_factory, redis_server)
    wait_for(lambda: shared(a)["connected"] and shared(b)["connected"], what="both connected")
    tid = a.get("/hello").json()["task_id"]
    # Running on A: B has no record of it yet (starts are not written).
    r = b.get(f"/tasks/{tid}")
    assert r.status == 404 and r.json()["error"] == "unknown_task"
    assert a.get(f"/tasks/{tid}").json()["state"] in ("pending", "running")
    # Finished on A: B answers from Redis, the same JSON A answers.
    wait_for(lambda: a.get(f"/tasks/{tid}").json()["state"] == "completed", what="completed on A")
    r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(b.get(f"/tasks/{tid}")), what="B answers")
    assert r.json() == a.get(f"/tasks/{tid}").json()
    assert r.json()["state"] == "completed" and r.json()["id"] == tid
    # One record, with the retention time as its TTL (10 min by default).
    pttl = redis_server.client().pttl(f"tickerd:task:{tid}")
    assert 0 < pttl <= 600000
    sa, sb = shared(a), shared(b)
    assert sa["records_written"] == 1 and sa["records_dropped"] == 0 and sa["batches"] == 1
    assert sb["lookups_found"] == 1 and sb["lookups_missing"] >= 1
    # An id nobody knows: 404 as before, after asking Redis.
    r = b.get("/tasks/00000000-0000-4000-8000-000000000000")
    assert r.status == 404 and r.json()["error"] == "unknown_task"


def test_many_tasks_go_in_batches(tickerd_factory, redis_server):
    a = instance(tickerd_factory, redis_server, "--task-phases-ms", "100,100")
    b = instance(tickerd_factory, redis_server)
    wait_for(lambda: shared(a)["connected"], what="connected")
    ids = [a.get("/hello").json()["task_id"] for _ in range(50)]
    wait_for(lambda: shared(a)["records_written"] == 50, what="50 records written")
    # Fewer batches than records: no round trip per task.
    assert shared(a)["batches"] < 50
    for tid in ids[::10]:
        assert b.get(f"/tasks/{tid}").json()["state"] == "completed"


def test_redis_away_own_tasks_served_records_bounded(tickerd_factory, redis_server):
    a = instance(tickerd_factory, redis_server, "--task-phases-ms", "50,50", "--task-share-queue", "2")
    wait_for(lambda: shared(a)["connected"], what="connected")
    redis_server.stop()
    wait_for(lambda: not shared(a)["connected"], what="disconnected")
    ids = [a.get("/hello").json()["task_id"] for _ in range(5)]
    wait_for(lambda: a.status()["tasks"]["completed"] == 5, what="5 completed")
    # A still answers for its own tasks.
    for tid in ids:
        r = a.get(f"/tasks/{tid}")
        assert r.status == 200 and r.json()["state"] == "completed"
    # Two wait for Redis, three were dropped: counted and logged.
    s = shared(a)
    assert s["records_waiting"] == 2 and s["records_dropped"] == 3
    ev = wait_for(lambda: [e for e in a.log_events() if e["event"] == "records_lost"] or None, what="log")
    assert ev[0]["reason"] == "queue full"
    # An id it does not hold cannot be looked up: 503, not a false 404.
    r = a.get("/tasks/00000000-0000-4000-8000-000000000000")
    assert r.status == 503 and r.json()["error"] == "task_lookup_unavailable"
    assert r.header("retry-after") == "1"
    # Redis back: the two waiting records are written.
    redis_server.start()
    wait_for(lambda: shared(a)["records_written"] == 2, timeout=15, what="waiting records written")
    keys = redis_server.client().keys("tickerd:task:*")
    assert len(keys) == 2 and {k.decode().split(":")[-1] for k in keys} == set(ids[:2])


def test_stalled_redis_lookup_bounded(tickerd_factory, redis_server):
    """A lookup waits for Redis at most RKV_GET_TIMEOUT_MS (1 s), then 503."""
    import signal
    a = instance(tickerd_factory, redis_server)
    wait_for(lambda: shared(a)["connected"], what="connected")
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = a.get("/tasks/00000000-0000-4000-8000-000000000000")
        assert r.status == 503 and time.monotonic() - t0 < 4
        assert a.get("/healthz").status == 200
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert shared(a)["lookups_timed_out"] == 1


def test_client_gone_while_looking_up(tickerd_factory, redis_server):
    """A client that leaves while its lookup waits: nothing answered, nothing leaked."""
    import signal
    a = instance(tickerd_factory, redis_server)
    wait_for(lambda: shared(a)["connected"], what="connected")
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        with a.connect() as s:
            s.sendall(b"GET /tasks/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.1)
        # Cancelled when the server sees the close, else answered into the
        # void at the timeout; either way it ends, counted, Redis still away.
        wait_for(lambda: shared(a)["lookups_cancelled"] + shared(a)["lookups_timed_out"] == 1, what="lookup ended")
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    # The late reply finds no one waiting.
    wait_for(lambda: a.get("/tasks/00000000-0000-4000-8000-000000000000").status == 404, what="Redis answers again")
    assert a.stop() == 0
