"""HTTP client options for the delivery workers, measured against one local receiver.

Each option POSTs the same signed ~1 KB JSON body N times at a given
concurrency to an aiohttp receiver in another process; the figures are
requests per second and latency p50/p99. The baseline is a bare
``aiohttp.ClientSession`` (no httpx at all) in the same run.

    python benchmarks/transports.py [N] [CONCURRENCY]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from durian.embedded import free_port
from durian.signing import generate_secret, signature_headers

BODY = (
    b'{"type":"person","timestamp":"2026-11-24T12:00:00+00:00","data":{"name":"'
    + b"J" * 900
    + b'"}}'
)
HEADERS = {
    "content-type": "application/json",
    **signature_headers("msg_1", BODY, [generate_secret()]),
}


def serve(port: int) -> None:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def measure(
    send: Callable[[], Awaitable[int]], n: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            started = time.perf_counter()
            status = await send()
            assert status == 204, status
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started), latencies


def row(name: str, rate: float, latencies: list[float]) -> None:
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{name:44} {rate:9,.0f}/s   p50 {cuts[49] * 1000:6.1f} ms   p99 {cuts[98] * 1000:7.1f} ms"
    )


async def run(url: str, n: int, concurrency: int) -> None:
    async with aiohttp.ClientSession() as session:

        async def bare() -> int:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                return response.status

        await measure(bare, 200, concurrency)
        row(
            f"aiohttp ClientSession (baseline), c={concurrency}",
            *await measure(bare, n, concurrency),
        )

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    options: list[tuple[str, httpx.AsyncClient]] = [
        ("httpx AsyncClient, default transport", httpx.AsyncClient(limits=limits)),
        (
            "httpx AsyncClient, httpx-aiohttp transport",
            httpx.AsyncClient(transport=AiohttpTransport()),
        ),
    ]
    for name, client in options:
        async with client:

            async def post(client: httpx.AsyncClient = client) -> int:
                async with client.stream("POST", url, content=BODY, headers=HEADERS) as response:
                    await response.aread()
                    return response.status_code

            await measure(post, 200, concurrency)
            row(f"{name}, c={concurrency}", *await measure(post, n, concurrency))

    # The transport alone, as durian's Dispatcher drives it: httpx's Request and Response
    # types without the client's cookie jar, auth and redirect machinery.
    transport = AiohttpTransport()
    async with transport:
        timeout = httpx.Timeout(10.0).as_dict()

        async def direct() -> int:
            request = httpx.Request(
                "POST", url, content=BODY, headers=HEADERS, extensions={"timeout": timeout}
            )
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
            return response.status_code

        await measure(direct, 200, concurrency)
        row(f"httpx-aiohttp transport, no client, c={concurrency}",
            *await measure(direct, n, concurrency))  # fmt: skip


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    port = free_port()
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    time.sleep(1.0)
    try:
        asyncio.run(run(f"http://127.0.0.1:{port}/hook", n, concurrency))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
