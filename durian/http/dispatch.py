"""One webhook attempt: a signed POST with httpx, and what came of it.

The request follows Standard Webhooks: ``webhook-id`` is the job id (the same
on every retry), ``webhook-timestamp`` this attempt's time, and the body
``{"type", "timestamp", "data"}``. Redirects are not followed; connect, read
and total timeouts and a response-size cap always apply; the address guard
sits in the transport (``durian.http.transport``). httpx errors are
mapped to durian's delivery errors in ``map_http_errors`` and nowhere else.

What an answer means:

* 2xx: delivered.
* 410 Gone: the subscriber asks us to stop; the listener is disabled.
* a status in ``non_retryable_statuses`` (4xx): dead letter at once.
* anything else, 3xx included (redirects are never followed): retried; for 429,
  502, 503 and 504 a ``Retry-After`` is honoured up to ``max_retry_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import msgspec

from durian import conf
from durian.addresses import AddressPolicy
from durian.backoff import parse_retry_after
from durian.exceptions import (
    DeliveryError,
    DeliveryRefused,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from durian.http.transport import AddressRefused, check_literal, guarded_transport
from durian.records import DeliveryJob, ListenerSpec
from durian.signing import signature_headers

__all__ = ["AttemptResult", "Dispatcher", "map_http_errors", "webhook_body", "webhook_request"]

_EXCERPT = 1024
_HONOURS_RETRY_AFTER = {429, 502, 503, 504}
_USER_AGENT = "durian-webhooks/0.1"


def webhook_body(job: DeliveryJob) -> bytes:
    event = job.event
    return msgspec.json.encode(
        {"type": event.hook, "timestamp": event.occurred_at.isoformat(), "data": event.data}
    )


def webhook_request(job: DeliveryJob, listener: ListenerSpec) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an attempt: the listener's own headers, then the content
    type and the signature headers (which a listener's headers cannot replace)."""
    body = webhook_body(job)
    headers = {
        **listener.options.headers,
        "content-type": "application/json",
        **signature_headers(job.id, body, listener.signing_secrets()),
    }
    return body, headers


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    response_excerpt: str = ""
    gone: bool = False
    """The subscriber answered 410 Gone: disable the listener."""
    contacted: bool = True
    """A request was made (False when the address guard refused the host)."""


@contextlib.contextmanager
def map_http_errors() -> Iterator[None]:
    """Translate httpx's exceptions into durian's delivery errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        # The aiohttp transport reports every connection error as ConnectTimeout;
        # the OS-level cause (or the guard's refusal) says what really happened.
        cause = exc.__cause__
        reason = getattr(cause, "os_error", None) or (cause if isinstance(cause, OSError) else None)
        if isinstance(reason, AddressRefused) or (
            # aiohttp joins the errors of several addresses into one OSError
            isinstance(reason, OSError) and "deliveries to internal networks" in str(reason)
        ):
            raise DeliveryRefused(str(reason)) from None
        if reason is not None and not isinstance(reason, TimeoutError):
            raise TransientDeliveryError(f"connection failed: {reason}") from None
        raise TransientDeliveryError(f"timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise TransientDeliveryError(f"connection failed: {exc or type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise PermanentDeliveryError(f"request failed: {exc}") from None
    except httpx.InvalidURL as exc:
        raise PermanentDeliveryError(f"the listener URL cannot be used: {exc}") from None


class Dispatcher:
    """Sends webhooks as ``httpx.Request``s through one shared transport.

    The requests go to the transport directly, not through an ``httpx.AsyncClient``:
    a webhook needs none of the client's cookie jar, auth flow, redirect handling
    and event hooks, and they cost more than the transport itself
    (``benchmarks/transports.py``: 3,464 requests/s through the client, 5,791/s to
    the same transport directly, 64-way). Redirects are never followed either way.
    """

    def __init__(
        self, settings: conf.Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.policy = AddressPolicy.from_settings(settings)
        self.non_retryable = frozenset(settings.non_retryable_statuses)
        self.transport = transport or guarded_transport(self.policy)
        self.timeouts = httpx.Timeout(
            settings.delivery_timeout,
            connect=settings.connect_timeout,
            read=settings.read_timeout,
        ).as_dict()

    async def attempt(self, job: DeliveryJob, listener: ListenerSpec) -> AttemptResult:
        """POST ``job`` to ``listener`` (as it is now: its URL, headers, secrets)."""
        started = time.perf_counter()
        try:
            return await self._attempt(job, listener, started)
        except DeliveryError as exc:
            return AttemptResult(
                ok=False,
                status_code=exc.status_code,
                latency_ms=(time.perf_counter() - started) * 1000,
                error=str(exc),
                retryable=exc.retryable,
                contacted=not isinstance(exc, DeliveryRefused),
            )

    async def _attempt(
        self, job: DeliveryJob, listener: ListenerSpec, started: float
    ) -> AttemptResult:
        body, headers = webhook_request(job, listener)
        total = listener.options.timeout or self.settings.delivery_timeout
        with map_http_errors():
            url = httpx.URL(listener.url)
            if not self.policy.allow_all:
                # The host as httpx will connect to it, after its normalisation (IDNA,
                # dots); the socket factory checks the address again as it connects.
                check_literal(url.host, self.policy)
            request = httpx.Request(
                "POST",
                url,
                content=body,
                headers={"user-agent": _USER_AGENT, **headers},
                extensions={"timeout": self.timeouts},
            )
            try:
                async with asyncio.timeout(total):
                    response = await self.transport.handle_async_request(request)
                    try:
                        excerpt = await self._read_capped(response)
                    finally:
                        await response.aclose()
            except TimeoutError:
                raise TransientDeliveryError(
                    f"timed out: no complete answer within {total:g} s"
                ) from None
        latency = (time.perf_counter() - started) * 1000
        status = response.status_code
        if 200 <= status < 300:
            return AttemptResult(True, status, latency, response_excerpt=excerpt)
        retry_after = None
        if status in _HONOURS_RETRY_AFTER:
            retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
        if 300 <= status < 400:
            error = f"answered HTTP {status}, a redirect (redirects are not followed)"
        elif status == 410:
            error = "answered HTTP 410 Gone: the subscriber asked to stop"
        else:
            error = f"answered HTTP {status}"
        return AttemptResult(
            ok=False,
            status_code=status,
            latency_ms=latency,
            error=error,
            retryable=status != 410 and status not in self.non_retryable,
            retry_after=retry_after,
            response_excerpt=excerpt,
            gone=status == 410,
        )

    async def _read_capped(self, response: httpx.Response) -> str:
        """The start of the response body. A 2xx is a delivery however long its body:
        reading stops at ``max_response_bytes``. Any other answer longer than that
        fails the attempt for good."""
        cap = self.settings.max_response_bytes
        received = bytearray()
        async for chunk in response.aiter_raw():
            received += chunk
            if len(received) > cap:
                if 200 <= response.status_code < 300:
                    break
                raise PermanentDeliveryError(
                    f"the response is larger than {cap} bytes", status_code=response.status_code
                )
        return bytes(received[:_EXCERPT]).decode("utf-8", errors="replace")

    async def aclose(self) -> None:
        await self.transport.aclose()
