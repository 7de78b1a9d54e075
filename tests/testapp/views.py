"""Views of the test app: a webhook receiver built with ``producer.receiving.listens``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from producer.receiving import Webhook, listens

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_dGVzdC1vbGQtc2VjcmV0LXZhbHVlLTAxMjM0NTY="

received: list[Webhook] = []


@listens(secret=[SECRET, OLD_SECRET], dedupe=3600)
def person_changed(request: HttpRequest, webhook: Webhook) -> HttpResponse:
    received.append(webhook)
    return JsonResponse({"got": webhook.id})
