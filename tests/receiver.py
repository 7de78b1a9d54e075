"""A real HTTP receiver for tests: records every request, answers what it is told."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Wraps pytest-httpserver: ``receiver.url("/x")``, ``receiver.requests``, ``answer``."""

    server: HTTPServer
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[Received], Response] = lambda _req: Response("ok", status=200)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        self.server.expect_request(re.compile(".*"), method="POST").respond_with_handler(
            self._handle
        )
        self.server.start()
        return self

    def _handle(self, request: Request) -> Response:
        received = Received(request.path, dict(request.headers), request.get_data())
        with self.lock:
            self.requests.append(received)
        return self.answer(received)

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def stop(self) -> None:
        if self.server.is_running():
            self.server.stop()
        self.server.clear()
