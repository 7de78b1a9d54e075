"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec v1).

Outgoing requests carry three headers::

    webhook-id: <job id, the same on every retry>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body"> [v1,<...> ...]

Secrets are ``whsec_`` + base64 of 24 to 64 random bytes. During a rotation a
listener signs with every secret still in its grace period, space-separated,
so receivers that know either secret accept the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
import time
from collections.abc import Iterable, Mapping

from durian.exceptions import SignatureError

__all__ = [
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "Secret",
    "generate_secret",
    "parse_secret",
    "sign",
    "signature_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
#: How far a webhook-timestamp may be from the receiver's clock (the spec's 5 minutes).
DEFAULT_TOLERANCE = 300


class Secret:
    """A string that must not be revealed: ``repr``/``str`` show ``**********``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def generate_secret(nbytes: int = 32) -> str:
    """A fresh signing secret in the ``whsec_`` format."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode()


def parse_secret(secret: str | Secret) -> bytes:
    """The key bytes of a ``whsec_`` secret; a clear ``ValueError`` for anything else."""
    text = secret.reveal() if isinstance(secret, Secret) else secret
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a signing secret is 'whsec_' followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a signing secret holds 24 to 64 bytes of key, this one {len(key)}")
    return key


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[str | Secret]) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = []
    for secret in secrets:
        digest = hmac.new(parse_secret(secret), signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    if not parts:
        raise ValueError("sign() needs at least one secret")
    return " ".join(parts)


def signature_headers(
    msg_id: str, body: bytes, secrets: Iterable[str | Secret], *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(msg_id, ts, body, secrets),
    }


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Iterable[str | Secret],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check an incoming webhook; return its ``webhook-id``.

    ``headers`` may use any case. Accepts the request when any ``v1`` signature
    matches any of ``secrets`` and the timestamp is within ``tolerance``
    seconds; raises ``SignatureError`` saying which check failed otherwise.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        raw_ts = lowered["webhook-timestamp"]
        raw_sigs = lowered["webhook-signature"]
    except KeyError as missing:
        raise SignatureError(f"missing header {missing.args[0]!r}") from None
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"webhook-timestamp is {int(current - timestamp)} s away from now "
            f"(tolerance {tolerance} s)"
        )
    offered = [
        sig.split(",", 1)[1].encode()
        for sig in raw_sigs.split()
        if sig.startswith("v1,") and len(sig) > 3
    ]
    if not offered:
        raise SignatureError("webhook-signature holds no v1 signature")
    for expected in sign(msg_id, timestamp, body, secrets).split():
        expected_sig = expected.split(",", 1)[1].encode()
        if any(hmac.compare_digest(expected_sig, sig) for sig in offered):
            return msg_id
    raise SignatureError("no signature matches the secret(s)")
