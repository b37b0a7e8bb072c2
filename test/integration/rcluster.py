"""A real Redis Cluster on loopback for the tests and the benchmark: N
primaries with R replicas each, from Debian's redis-server
(--cluster-enabled yes) and `redis-cli --cluster create`, on free ports.
Slots are moved by hand (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE,
SETSLOT NODE), as `redis-cli --cluster reshard` does it."""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis

from conftest import wait_for

# Short, so that a failover takes about two seconds, not fifteen.
NODE_TIMEOUT_MS = 1000
CREATE_TIMEOUT_S = 30
# A node also listens on port + 10000 (the cluster bus): both must be free.
BUS_OFFSET = 10000
# Node and bus ports both below the kernel's ephemeral range (32768-60999
# by default): an outgoing connection of this or another process can take
# an ephemeral port between the check that it is free and redis-server's
# bind, and then the node exits at once (the likely cause when, in one CI
# run, a TLS node never answered within five seconds).
PORT_MIN, PORT_MAX = 10000, 32767 - BUS_OFFSET
# A node that still fails to bind is started again on other ports.
START_ATTEMPTS = 3
START_PING_S = 0.5
# A node alive but slow to answer (a stalled shared machine) is given this
# long, not the harness's usual five seconds: a cluster test is one of a
# few hundred, and a false failure costs the whole run.
START_TIMEOUT_S = 15


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cluster_port(taken=()):
    """A free node port whose bus port is free too, neither of them one of
    `taken` (the ports, node and bus, of the cluster's other nodes)."""
    for _ in range(1000):
        p = random.randint(PORT_MIN, PORT_MAX)
        if p not in taken and p + BUS_OFFSET not in taken and _bindable(p) and _bindable(p + BUS_OFFSET):
            return p
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    def __init__(self, primaries=3, replicas=1, password=None, tls=None):
        """tls: the certificate paths of test_redis_tls.py's pki fixture;
        then every port, the cluster bus and replication are TLS only."""
        self.password = password
        self.tls = tls
        self.dir = tempfile.mkdtemp(prefix="tickerd-cluster-")
        self.ports = []
        self.procs = {}
        # A cluster that fails to come up is stopped here: the caller never
        # gets the object to clean up, and its servers would outlive the test.
        try:
            for _ in range(primaries * (1 + replicas)):
                self.ports.append(self._start_node())
            if len(self.ports) == 1:
                # one shard: redis-cli --cluster create wants three masters
                self.client(self.ports[0]).execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            else:
                auth = ["-a", password, "--no-auth-warning"] if password else []
                subprocess.run(["redis-cli"] + self.cli_tls() + auth + ["--cluster", "create"] + [f"127.0.0.1:{p}" for p in self.ports] +
                               ["--cluster-replicas", str(replicas), "--cluster-yes"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=CREATE_TIMEOUT_S)
            wait_for(self._all_ok, timeout=CREATE_TIMEOUT_S, interval=0.1, what="cluster_state:ok everywhere")
            # a replica that never synced cannot be elected: wait for every link
            wait_for(self._replicas_synced, timeout=CREATE_TIMEOUT_S, interval=0.1, what="replicas in sync")
        except BaseException:
            self.cleanup()
            raise

    def _start_node(self):
        """Starts a node on free ports and waits until it answers; returns
        its port. A node that exits first (its port taken after all) is
        started again on other ports, its log's last line kept for the
        error if every attempt fails."""
        taken = {q for p in self.ports for q in (p, p + BUS_OFFSET)}
        why = ""
        for _ in range(START_ATTEMPTS):
            port = cluster_port(taken)
            self._start(port)
            proc = self.procs[port]
            # short pings: one to a port another listener holds would wait
            # out the whole deadline while the node has exited already
            wait_for(lambda: proc.poll() is not None or self._pings(port, START_PING_S),
                     timeout=START_TIMEOUT_S, what=f"redis-server :{port}")
            if proc.poll() is None:
                return port
            del self.procs[port]
            why = self._log_tail(port)
            taken |= {port, port + BUS_OFFSET}
        raise RuntimeError(f"no cluster node started in {START_ATTEMPTS} attempts; last: {why}")

    def _log_tail(self, port):
        try:
            with open(os.path.join(self.dir, str(port), "redis.log")) as f:
                lines = f.read().strip().splitlines()
            return lines[-1] if lines else "(empty log)"
        except OSError as e:
            return str(e)

    def _start(self, port):
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        listen = ["--port", str(port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes",
                      "--tls-cert-file", self.tls["server.crt"], "--tls-key-file", self.tls["server.key"],
                      "--tls-ca-cert-file", self.tls["ca.crt"], "--tls-auth-clients", "no",
                      # the bus always asks a connecting node for a client
                      # certificate; the server one is for serverAuth only
                      "--tls-client-cert-file", self.tls["client.crt"],
                      "--tls-client-key-file", self.tls["client.key"]]
        self.procs[port] = subprocess.Popen(
            ["redis-server", *auth, *listen, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--repl-diskless-sync-delay", "0", "--save", "", "--appendonly", "no", "--dir", d, "--logfile", os.path.join(d, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _pings(self, port, timeout=5):
        try:
            return self.client(port, timeout).ping()
        except Exception:
            return False

    def _all_ok(self):
        try:
            alive = [p for p in self.ports if self.procs[p].poll() is None]
            return all(b"cluster_state:ok" in self.client(p).execute_command("CLUSTER", "INFO") for p in alive) \
                and all(len(self.slots(p)) > 0 for p in alive)
        except Exception:
            return False

    def _replicas_synced(self):
        for p in self.ports:
            info = self.client(p).info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def cli_tls(self):
        return ["--tls", "--cacert", self.tls["ca.crt"]] if self.tls else []

    def client(self, port, timeout=5):
        # The harness's own client checks the chain but not the name: one test
        # gives a node a certificate for another host on purpose, and only
        # tickerd must refuse it. redis-py 6 (trixie) checks the name by
        # default, 4.3 (bookworm) does not; say it either way.
        tls = {"ssl": True, "ssl_ca_certs": self.tls["ca.crt"], "ssl_check_hostname": False} if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=timeout, **tls)

    @property
    def url(self):
        auth = f":{self.password}@" if self.password else ""
        return ("rediss" if self.tls else "redis") + "+cluster://" + auth + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def alive(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def slots(self, port=None):
        """[(lo, hi, primary port, primary id)] as `port` sees it."""
        out = []
        for lo, hi, primary, *_ in self.client(port or self.alive()[0]).execute_command("CLUSTER", "SLOTS"):
            out.append((lo, hi, int(primary[1]), primary[2].decode()))
        return out

    def primaries(self):
        return sorted({p for _, _, p, _ in self.slots()})

    def keyslot(self, key):
        return int(self.client(self.alive()[0]).execute_command("CLUSTER", "KEYSLOT", key))

    def owner(self, key, port=None):
        """(port, node id) of the primary of `key`'s slot."""
        s = self.keyslot(key)
        for lo, hi, p, nid in self.slots(port):
            if lo <= s <= hi:
                return p, nid
        return None, None

    def shardnumsub(self, port, channels):
        r = self.client(port).execute_command("PUBSUB", "SHARDNUMSUB", *channels)
        return {r[i].decode(): int(r[i + 1]) for i in range(0, len(r), 2)}

    def migrate(self, key, to_port=None):
        """Moves `key`'s slot, with its keys, to another primary; returns
        (slot, from port, to port)."""
        slot = self.keyslot(key)
        src, sid = self.owner(key)
        dst = to_port or next(p for p in self.primaries() if p != src)
        did = self.client(dst).execute_command("CLUSTER", "MYID").decode()
        S, D = self.client(src), self.client(dst)
        D.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
        S.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", did)
        while True:
            keys = S.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            auth = ["AUTH", self.password] if self.password else []
            S.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, *auth, "KEYS", *keys)
        self.assign(slot, did, dst, src)
        return slot, src, dst

    def assign(self, slot, node_id, new_port, old_port):
        """Ends a migration: SETSLOT NODE on the new owner first (then it
        answers), then on the old one, then on the others."""
        for p in (new_port, old_port):
            self.client(p).execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id)
        for p in self.alive():
            if p not in (new_port, old_port):
                try:
                    self.client(p).execute_command("CLUSTER", "SETSLOT", slot, "NODE", node_id)
                except redis.ResponseError:
                    pass  # a replica: it learns from its primary

    def kill(self, port):
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait()

    def pid(self, port):
        return self.procs[port].pid

    def cleanup(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
