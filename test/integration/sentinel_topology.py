"""A Redis primary, replicas and Sentinels on free loopback ports, from
Debian's redis-server (Sentinel is `redis-server <conf> --sentinel`, the
binary Debian's redis-sentinel package links to). Used by
test_sentinel.py and bench/failover.py; no pytest here.

Timeouts are short so that a failover takes a few seconds: a primary is
down for Sentinel after DOWN_AFTER_MS, and failovers of one master must be
2 x FAILOVER_TIMEOUT_MS apart (Sentinel's own rule).

With `tls` (the paths of test_redis_tls.py's pki fixture) every node and
Sentinel listens on TLS only (port 0), replication and the Sentinels'
links to the nodes and to each other are TLS too (tls-replication)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

MASTER = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 2000
QUORUM = 2
# Bounds of the helpers: a broken setup fails, never hangs.
START_TIMEOUT_S = 10
CONVERGE_TIMEOUT_S = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = pred()
        except Exception as e:  # a server still starting
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def client(port, tls=None, password=None):
    import redis
    kw = {"password": password} if password else {}
    if tls:
        kw |= {"ssl": True, "ssl_ca_certs": tls["ca.crt"], "ssl_certfile": tls["client.crt"],
              "ssl_keyfile": tls["client.key"]}
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2, **kw)


def tls_args(tls):
    """The TLS settings of a node or Sentinel, as (name, value) pairs."""
    if not tls:
        return []
    return [("tls-cert-file", tls["server.crt"]), ("tls-key-file", tls["server.key"]),
            ("tls-ca-cert-file", tls["ca.crt"]), ("tls-auth-clients", "no"), ("tls-replication", "yes")]


class Topology:
    """Primary + `replicas` replicas + `sentinels` Sentinels; stop() ends them all."""

    def __init__(self, replicas=1, sentinels=3, tls=None, sentinel_password=None):
        """sentinel_password: the Sentinels' own requirepass (and the one
        they give each other); the data nodes stay without AUTH."""
        self.tls = tls
        self.sentinel_password = sentinel_password
        self.dir = tempfile.mkdtemp(prefix="tickerd-sentinel-")
        self.procs = {}  # port -> Popen
        self.data_ports = [free_port() for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.primary_port = self.data_ports[0]
        try:
            self.start_data(self.primary_port, None)
            for p in self.data_ports[1:]:
                self.start_data(p, self.primary_port)
            for p in self.sentinel_ports:
                self.start_sentinel(p)
            self.wait_converged()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"{'rediss' if self.tls else 'redis'}+sentinel://{hosts}/{MASTER}"

    def client(self, port):
        return client(port, self.tls, self.sentinel_password if port in self.sentinel_ports else None)

    def _listen(self, port):
        """The port settings: TLS only with tls, plaintext only without."""
        return [("port", "0"), ("tls-port", str(port))] + tls_args(self.tls) if self.tls else [("port", str(port))]

    def _spawn(self, port, args):
        log = open(os.path.join(self.dir, f"{port}.out"), "wb")
        self.procs[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: self.client(port).ping(), START_TIMEOUT_S, f"redis on {port}")

    def start_data(self, port, replica_of):
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        # A full sync waits repl-diskless-sync-delay (5 s) for more replicas
        # by default: 0 here, so that a replica is in sync at once.
        args = ["redis-server", *[a for k, v in self._listen(port) for a in (f"--{k}", v)],
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", d, "--logfile", os.path.join(d, "redis.log")]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(port, args)

    def start_sentinel(self, port, monitor=None, down_after_ms=DOWN_AFTER_MS):
        d = os.path.join(self.dir, f"s{port}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "sentinel.conf")  # Sentinel rewrites it: one each
        with open(conf, "w") as f:
            f.write("".join(f"{k} {v}\n" for k, v in self._listen(port)))
            f.write(f"bind 127.0.0.1\ndir {d}\nlogfile {d}/sentinel.log\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {monitor or self.primary_port} {QUORUM}\n"
                    f"sentinel down-after-milliseconds {MASTER} {down_after_ms}\n"
                    f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                    f"sentinel parallel-syncs {MASTER} 1\n")
            if self.sentinel_password:
                f.write(f"requirepass {self.sentinel_password}\nsentinel sentinel-pass {self.sentinel_password}\n")
        self._spawn(port, ["redis-server", conf, "--sentinel"])

    def sentinel_primary(self, port=None):
        """(host, port) a Sentinel reports, or None."""
        r = self.client(port or self.sentinel_ports[0]).execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
        return (r[0].decode(), int(r[1])) if r else None

    def _healthy_replicas(self, sport, in_sync=False):
        """Replicas Sentinel `sport` lists as up. in_sync: and whose own INFO,
        read by Sentinel, says their link to the primary is up - the ones it
        would promote. A replica is listed (and its link connected) before
        Sentinel's first INFO of it comes back, and until then SENTINEL
        FAILOVER answers NOGOODSLAVE (sentinelSelectSlave skips a replica
        it never INFOed)."""
        reps = self.client(sport).execute_command("SENTINEL", "replicas", MASTER)
        ok = 0
        for r in reps:  # each a flat [field, value, ...] list
            f = dict(zip(r[::2], r[1::2]))
            flags = f[b"flags"].decode()
            if "s_down" in flags or "disconnected" in flags:
                continue
            if in_sync and f.get(b"master-link-status") != b"ok":
                continue
            ok += 1
        return ok

    def promotable_replicas(self, sport):
        return self._healthy_replicas(sport, in_sync=True)

    def wait_converged(self, timeout=CONVERGE_TIMEOUT_S):
        """Every Sentinel agrees on the primary, knows the other Sentinels and
        every replica, healthy: a failover is possible from here."""
        want = (("127.0.0.1", self.primary_port), len(self.sentinel_ports) - 1, len(self.data_ports) - 1)

        state = {}

        def ok():
            for p in self.data_ports:
                if p != self.primary_port and p in self.procs:
                    link = self.client(p).info("replication").get("master_link_status")
                    if link != "up":
                        state["why"] = f"replica {p} link {link}"
                        return False
            for sp in self.sentinel_ports:
                c = self.client(sp)
                got = (self.sentinel_primary(sp), len(c.execute_command("SENTINEL", "sentinels", MASTER)),
                       self._healthy_replicas(sp))
                if got != want:
                    state["why"] = f"Sentinel {sp}: {got}, want {want}"
                    return False
            return True
        try:
            wait_until(ok, timeout, "the Sentinels to converge", interval=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}: {state.get('why')}") from None

    def kill_primary(self):
        """kill -9 of the primary; returns its port."""
        port = self.primary_port
        p = self.procs.pop(port)
        p.kill()
        p.wait()
        return port

    def wait_promoted(self, old_port, timeout=CONVERGE_TIMEOUT_S):
        """Waits until a Sentinel names another node and that node says
        master; returns its port."""
        def promoted():
            a = self.sentinel_primary()
            if not a or a[1] == old_port:
                return None
            role = self.client(a[1]).execute_command("ROLE")
            return a[1] if role[0] in (b"master", "master") else None
        self.primary_port = wait_until(promoted, timeout, "a replica to be promoted")
        return self.primary_port

    def restart_as_replica(self, port):
        """The killed node back, as a replica of the current primary."""
        self.start_data(port, self.primary_port)
        self.wait_converged()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
