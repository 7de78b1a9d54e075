"""The real HTTP receiver of the tests: aiohttp on a thread and event loop of its own.

It records every request and answers what ``answer`` says (``Answer``: a status,
headers, a body, a delay before answering, or a body trickled byte by byte). It
answers thousands of requests per second and keeps answering fast paths while
slow ones wait, and it can go down (its port refuses connections) and come back
on the same port. The demo receiver (``deploy/embedded/receiver.py``) is the
product's own: it verifies signatures for a person watching deliveries arrive.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from durian.embedded import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDictProxy[str]
    """Case-insensitive: ``headers["webhook-id"]`` and ``headers["Webhook-Id"]`` alike."""
    body: bytes
    at: float
    """time.monotonic() when the request arrived."""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass(frozen=True)
class Answer:
    status: int = 200
    delay: float = 0.0
    """Seconds to wait before answering."""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | str = "ok"
    trickle: float = 0.0
    """When set, the body is sent one byte at a time, this many seconds apart."""


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []
        self.answer: Callable[[Received], Answer] = lambda _request: Answer()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            request.path,
            CIMultiDictProxy(CIMultiDict(request.headers)),
            await request.read(),
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(received)
        answer = self.answer(received)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        body = answer.body.encode() if isinstance(answer.body, str) else answer.body
        if not answer.trickle:
            return web.Response(status=answer.status, headers=dict(answer.headers), body=body)
        response = web.StreamResponse(status=answer.status, headers=dict(answer.headers))
        await response.prepare(request)
        for byte in body:
            await response.write(bytes([byte]))
            await asyncio.sleep(answer.trickle)
        await response.write_eof()
        return response

    def _call(self, coro: object, timeout: float = 10) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> Receiver:
        self._thread.start()
        self.up()
        return self

    def up(self) -> None:
        """Listen (again) on the same port."""

        async def listen() -> None:
            app = web.Application(client_max_size=64 << 20)
            app.router.add_post("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
            await site.start()

        self._call(listen())

    def down(self) -> None:
        """Close the port and every open connection: connections are refused until ``up()``."""

        async def close() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

        self._call(close())

    def stop(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- what arrived ----------------------------------------------------------

    def to(self, path: str) -> list[Received]:
        """The requests to exactly ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def under(self, prefix: str) -> list[Received]:
        """The requests to paths that start with ``prefix``."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def ids(self, prefix: str) -> Counter[str]:
        """How often each webhook-id arrived under ``prefix``."""
        return Counter(r.webhook_id for r in self.under(prefix))
