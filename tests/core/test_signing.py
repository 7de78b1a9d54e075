from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
import standardwebhooks
import svix.webhooks

from durian.exceptions import SignatureError
from durian.signing import Secret, generate_secret, parse_secret, sign, signature_headers, verify

BODY = json.dumps({"type": "person", "data": {"name": "Joe"}}).encode()


def test_generated_secrets_are_whsec_with_32_random_bytes() -> None:
    one, two = generate_secret(), generate_secret()
    assert one.startswith("whsec_") and one != two
    assert len(parse_secret(one)) == 32


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("abc", "starts with 'whsec_'"),
        ("whsec_!!!", "followed by base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ],
)
def test_bad_secrets_are_refused_with_a_reason(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_secret(secret)


def test_standardwebhooks_library_accepts_our_signature() -> None:
    secret = generate_secret()
    headers = signature_headers("msg_1", BODY, [secret])
    payload = standardwebhooks.Webhook(secret).verify(BODY, headers)
    assert payload == json.loads(BODY)


def test_svix_library_accepts_our_signature() -> None:
    secret = generate_secret()
    headers = signature_headers("msg_2", BODY, [secret])
    svix.webhooks.Webhook(secret).verify(BODY, headers)


def test_during_rotation_receivers_with_either_secret_accept() -> None:
    old, new = generate_secret(), generate_secret()
    headers = signature_headers("msg_3", BODY, [new, old])
    assert len(headers["webhook-signature"].split()) == 2
    standardwebhooks.Webhook(old).verify(BODY, headers)
    standardwebhooks.Webhook(new).verify(BODY, headers)
    assert verify(BODY, headers, [old]) == "msg_3"


def test_we_verify_what_standardwebhooks_signs() -> None:
    secret = generate_secret()
    ts = int(time.time())
    sig = standardwebhooks.Webhook(secret).sign(
        "msg_4", dt.datetime.fromtimestamp(ts, dt.UTC), BODY.decode()
    )
    headers = {"Webhook-Id": "msg_4", "Webhook-Timestamp": str(ts), "Webhook-Signature": sig}
    assert verify(BODY, headers, [secret]) == "msg_4"


def test_tampered_body_is_rejected_by_us_and_by_the_public_verifiers() -> None:
    secret = generate_secret()
    headers = signature_headers("msg_5", BODY, [secret])
    tampered = BODY.replace(b"Joe", b"Eve")
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(tampered, headers, [secret])
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(tampered, headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(secret).verify(tampered, headers)


def test_stale_timestamp_is_rejected() -> None:
    secret = generate_secret()
    stale = int(time.time()) - 3600
    headers = signature_headers("msg_6", BODY, [secret], timestamp=stale)
    with pytest.raises(SignatureError, match="tolerance 300 s"):
        verify(BODY, headers, [secret])
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(BODY, headers)
    assert verify(BODY, headers, [secret], now=stale + 10) == "msg_6"


def test_wrong_secret_is_rejected() -> None:
    headers = signature_headers("msg_7", BODY, [generate_secret()])
    with pytest.raises(SignatureError):
        verify(BODY, headers, [generate_secret()])
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(generate_secret()).verify(BODY, headers)


def test_changed_id_invalidates_the_signature() -> None:
    secret = generate_secret()
    headers = signature_headers("msg_8", BODY, [secret])
    headers["webhook-id"] = "msg_9"
    with pytest.raises(SignatureError):
        verify(BODY, headers, [secret])


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing header 'webhook-id'"),
        (
            {"webhook-id": "m", "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
            "whole number",
        ),
        ({"webhook-id": "m", "webhook-timestamp": "{now}", "webhook-signature": "v2,x"}, "no v1"),
    ],
)
def test_malformed_headers_say_what_is_wrong(headers: dict[str, str], message: str) -> None:
    filled = {k: v.replace("{now}", str(int(time.time()))) for k, v in headers.items()}
    with pytest.raises(SignatureError, match=message):
        verify(BODY, filled, [generate_secret()])


def test_signature_is_the_spec_formula() -> None:
    key = b"k" * 32
    secret = "whsec_" + base64.b64encode(key).decode()
    expected = base64.b64encode(
        hmac.new(key, b"msg_x.1700000000." + BODY, hashlib.sha256).digest()
    ).decode()
    assert sign("msg_x", 1700000000, BODY, [secret]) == f"v1,{expected}"


def test_secret_never_shows_its_value() -> None:
    secret = Secret("whsec_topsecret")
    assert "topsecret" not in repr(secret) and "topsecret" not in str(secret)
    assert "topsecret" not in f"{secret}"
    assert secret.reveal() == "whsec_topsecret"
