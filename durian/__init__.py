"""durian: webhooks for Django, pushed through Kafka.

The shared core that the producer (Django), the stream processor (Faust) and
the delivery workers (httpx) import. It imports none of those frameworks.
Django-side names live in ``producer`` (``from producer.hooks import ModelHook``);
the matchers keep the seed's path, ``from durian.match import Startswith``.
"""

from durian.conf import Settings, load
from durian.exceptions import (
    BrokerUnavailable,
    DecodeError,
    DeliveryError,
    DurianError,
    ImproperlyConfigured,
    InvalidListener,
    InvalidMatcher,
    ListenerNotFound,
    PermanentDeliveryError,
    PublishError,
    RecordError,
    SignatureError,
    TransientDeliveryError,
)
from durian.match import Any, Contains, Endswith, Is, Like, Startswith, deepmatch
from durian.records import (
    Attempt,
    DeliveryJob,
    Event,
    ListenerOptions,
    ListenerSpec,
    decode,
    encode,
)
from durian.signing import Secret, generate_secret, sign, signature_headers, verify
from durian.topics import TopicNames

__version__ = "0.1.0"

__all__ = [
    "Any",
    "Attempt",
    "BrokerUnavailable",
    "Contains",
    "DecodeError",
    "DeliveryError",
    "DeliveryJob",
    "DurianError",
    "Endswith",
    "Event",
    "ImproperlyConfigured",
    "InvalidListener",
    "InvalidMatcher",
    "Is",
    "Like",
    "ListenerNotFound",
    "ListenerOptions",
    "ListenerSpec",
    "PermanentDeliveryError",
    "PublishError",
    "RecordError",
    "Secret",
    "Settings",
    "SignatureError",
    "Startswith",
    "TopicNames",
    "TransientDeliveryError",
    "decode",
    "deepmatch",
    "encode",
    "generate_secret",
    "load",
    "sign",
    "signature_headers",
    "verify",
]
