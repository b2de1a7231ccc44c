"""`driftstream services` and the demo as a user runs them: up, answering, then gone."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
import yaml
from confluent_kafka.admin import AdminClient

from driftstream.config import parse_config
from driftstream.runtime.services import KAFKA_ENV, REDIS_ENV, kafka_answers, redis_answers

pytestmark = pytest.mark.integration


class Command:
    """``python -m driftstream ...`` with its own TMPDIR, its output read as it comes."""

    def __init__(self, tmp_path, *args):
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in (KAFKA_ENV, REDIS_ENV)}
        env["TMPDIR"] = str(self.tmp)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftstream", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out, self.err = [], []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line)

    def wait_for(self, lines, text, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the output: {''.join(self.err)[-2000:]}")

    def finish(self, signum, timeout=60):
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_services_start_answer_and_go_away(tmp_path, signum):
    command = Command(tmp_path, "services")
    try:
        command.wait_for(command.out, f"export {REDIS_ENV}=")
        text = "".join(command.out)
        bootstrap = re.search(rf"^export {KAFKA_ENV}=(\S+)$", text, re.M).group(1)
        url = re.search(rf"^export {REDIS_ENV}=(\S+)$", text, re.M).group(1)
        assert f"Kafka  {bootstrap}" in text and f"Redis  {url}" in text

        assert redis.Redis.from_url(url).ping()
        assert AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10) is not None
        # The snippet is YAML with the keys `driftstream run --config` reads.
        snippet = yaml.safe_load(text.split("once.\n", 1)[1].split("\n\n", 1)[0])
        assert snippet == {
            "kafka": {"client": {"bootstrap.servers": bootstrap}},
            "redis": {"url": url},
        }
        config = parse_config({"models": {"m": {"baseline": "b.json"}}, **snippet})
        assert config.redis.url.get_secret_value() == url
        assert len(list(command.tmp.iterdir())) == 2  # a folder per server, meanwhile

        assert command.finish(signum) == 0, "".join(command.err)
    finally:
        command.kill()
    assert "Traceback" not in "".join(command.err)
    assert list(command.tmp.iterdir()) == []
    assert not redis_answers(url)
    assert not kafka_answers(bootstrap, timeout=1)


def test_services_refuse_a_port_in_use(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        command = Command(tmp_path, "services", "--redis-port", str(port))
        code = command.process.wait(60)
    for reader in command._readers:
        reader.join(10)
    errors = [line for line in command.err if line.startswith("driftstream: error:")]
    assert code == 2
    assert errors == [
        f"driftstream: error: --redis-port {port} on 127.0.0.1 is in use: stop what holds it "
        "or choose another\n"
    ]
    assert list(command.tmp.iterdir()) == []


def test_the_demo_leaves_no_folder_behind(tmp_path):
    command = Command(tmp_path, "demo", "--events", "3000", "--no-labels")
    try:
        code = command.process.wait(300)
    finally:
        command.kill()
    for reader in command._readers:
        reader.join(10)
    assert code == 0, "".join(command.err)[-2000:]
    assert "alerts read back" in "".join(command.out)
    assert list(command.tmp.iterdir()) == []


def test_a_demo_stopped_by_sigterm_cleans_up(tmp_path):
    command = Command(tmp_path, "demo", "--events", "20000")
    try:
        command.wait_for(command.err, "producing")
        assert list(command.tmp.iterdir())  # the services' folders and the demo's own
        code = command.finish(signal.SIGTERM)
    finally:
        command.kill()
    errors = "".join(command.err)
    assert code == 130, errors[-2000:]
    assert "driftstream: interrupted" in errors
    assert "Traceback" not in errors
    assert list(command.tmp.iterdir()) == []
