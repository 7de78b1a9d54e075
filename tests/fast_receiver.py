"""A real HTTP receiver for load and fault tests: aiohttp on its own thread and event loop.

Unlike ``tests.receiver`` (one werkzeug thread), it answers thousands of requests
per second and keeps answering fast paths while slow ones sleep. It can go down
(its port refuses connections) and come back on the same port.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from durian.embedded import free_port


@dataclass(frozen=True)
class Hit:
    path: str
    webhook_id: str
    at: float
    """time.monotonic() when the request arrived."""
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


class FastReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.hits: list[Hit] = []
        self.answer: Callable[[Hit], Answer] = lambda _hit: Answer()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        hit = Hit(
            request.path,
            request.headers.get("webhook-id", ""),
            time.monotonic(),
            await request.read(),
        )
        with self._lock:
            self.hits.append(hit)
        answer = self.answer(hit)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.Response(status=answer.status, headers=dict(answer.headers), text="ok")

    def _call(self, coro: object, timeout: float = 10) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(self) -> FastReceiver:
        self._thread.start()
        self.up()
        return self

    def up(self) -> None:
        """Listen (again) on the same port."""

        async def listen() -> None:
            app = web.Application()
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

    def to(self, prefix: str) -> list[Hit]:
        with self._lock:
            return [hit for hit in self.hits if hit.path.startswith(prefix)]

    def ids(self, prefix: str) -> Counter[str]:
        """How often each webhook-id arrived under ``prefix``."""
        return Counter(hit.webhook_id for hit in self.to(prefix))
