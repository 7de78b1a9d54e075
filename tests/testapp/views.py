"""Views of the test app: a webhook receiver built with ``producer.receiving.listens``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from producer.receiving import Webhook, listens

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_dGVzdC1vbGQtc2VjcmV0LXZhbHVlLTAxMjM0NTY="

received: list[Webhook] = []
#: Statuses the next calls of ``person_changed`` answer, in order (then 200).
statuses: list[int] = []


@listens(secret=[SECRET, OLD_SECRET], dedupe=3600)
def person_changed(request: HttpRequest, webhook: Webhook) -> HttpResponse:
    received.append(webhook)
    return JsonResponse({"got": webhook.id}, status=statuses.pop(0) if statuses else 200)


@listens(secret=lambda request: [], dedupe=3600)
def nobody(request: HttpRequest, webhook: Webhook) -> HttpResponse:
    received.append(webhook)
    return HttpResponse(status=204)
