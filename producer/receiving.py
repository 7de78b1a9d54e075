"""The receiving side: a Django view decorator that accepts webhooks from durian
(or any Standard Webhooks sender), the seed's ``listens`` view made safe::

    from producer.receiving import listens

    @listens(secret=settings.PERSON_HOOK_SECRET)
    def person_changed(request, webhook):
        Person.objects.update_or_create(name=webhook.data["name"], ...)
        return HttpResponse(status=204)

The decorator answers, before the view runs:

* 405 to anything but POST;
* 401 when a header is missing, the timestamp is outside ``tolerance`` seconds,
  or no signature matches (several secrets may be given during a rotation);
* 400 when the body is not a JSON object;
* with ``dedupe`` (seconds; Django's cache; off unless given), because a sender
  delivers at least once: 200 without calling the view again for a
  ``webhook-id`` the view answered with a 2xx within ``dedupe`` seconds, and
  409 (retry later) while the same id is in the view on another request. A
  webhook the view answered with anything else, or raised on, is taken again:
  the sender's retry is processed, never swallowed.

It exempts the view from CSRF (the signature is the proof of origin) and the
answer never shows the secret or a stack trace.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from durian.exceptions import SignatureError
from durian.signing import DEFAULT_TOLERANCE, verify

__all__ = ["Webhook", "listens"]

logger = logging.getLogger(__name__)

Secrets = str | Iterable[str] | Callable[[HttpRequest], str | Iterable[str]]

_TAKEN, _DONE = "taken", "done"
#: Seconds a webhook id stays claimed by a request still in the view (at most).
_TAKEN_FOR = 300


@dataclass(frozen=True)
class Webhook:
    """A verified webhook: its id (the same on every retry), type, time and data."""

    id: str
    type: str
    timestamp: datetime | None
    data: dict[str, Any]
    payload: dict[str, Any]


def _secrets(given: Secrets, request: HttpRequest) -> list[str]:
    value = given(request) if callable(given) else given
    return [value] if isinstance(value, str) else list(value)


def listens(
    secret: Secrets,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    dedupe: int | None = None,
    cache: str = "default",
) -> Callable[[Callable[..., HttpResponse]], Callable[[HttpRequest], HttpResponse]]:
    """Decorate a view ``view(request, webhook, *args, **kwargs)``; see the module docs.

    ``secret`` is a ``whsec_`` secret, several (rotation), or a function of the
    request that returns them (a secret per tenant, say).
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def receive(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != "POST":
                refused = JsonResponse({"error": "webhooks are POSTed"}, status=405)
                refused["Allow"] = "POST"
                return refused
            body = request.body
            secrets = _secrets(secret, request)
            if not secrets:
                logger.error("refused a webhook to %s: the secret function gave none", request.path)
                return JsonResponse({"error": "signature refused: no secret"}, status=401)
            try:
                msg_id = verify(body, request.headers, secrets, tolerance=tolerance)
            except SignatureError as exc:
                logger.warning("refused a webhook to %s: %s", request.path, exc)
                return JsonResponse({"error": f"signature refused: {exc}"}, status=401)
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return JsonResponse({"error": f"the body is not JSON: {exc}"}, status=400)
            if not isinstance(payload, dict):
                return JsonResponse({"error": "the body is not a JSON object"}, status=400)
            key = f"durian:webhook:{msg_id}"
            store = caches[cache]
            if dedupe and not store.add(key, _TAKEN, timeout=min(dedupe, _TAKEN_FOR)):
                if store.get(key) == _DONE:
                    return JsonResponse({"duplicate": msg_id}, status=200)
                busy = JsonResponse(
                    {"error": f"webhook {msg_id} is being processed; retry later"}, status=409
                )
                busy["Retry-After"] = "5"
                return busy
            data = payload.get("data")
            webhook = Webhook(
                id=msg_id,
                type=str(payload.get("type", "")),
                timestamp=_parse_time(payload.get("timestamp")),
                data=data if isinstance(data, dict) else {},
                payload=payload,
            )
            try:
                response: HttpResponse = view(request, webhook, *args, **kwargs)
            except BaseException:
                if dedupe:  # not handled: let the sender's retry through
                    store.delete(key)
                raise
            if dedupe:
                if 200 <= response.status_code < 300:
                    store.set(key, _DONE, timeout=dedupe)
                else:
                    store.delete(key)
            return response

        return receive

    return decorate


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
