"""Every error durian raises on purpose.

The tree::

    DurianError
    ├── ImproperlyConfigured       settings that cannot work; lists every problem at once
    ├── RecordError                a record that is not what its topic promises
    │   └── DecodeError            ... read from Kafka, with topic, partition and offset
    ├── InvalidListener            a listener that would be refused (bad URL, matcher, regex)
    │   └── InvalidMatcher         a match spec or pattern that cannot be evaluated
    ├── ListenerNotFound           no listener with that id on the listeners topic
    ├── SignatureError             an incoming webhook whose signature or timestamp is wrong
    ├── PublishError               Kafka did not accept a record (raised on flush)
    │   └── EventTooLarge          ... refused before the commit: over ``max_event_bytes``
    ├── BrokerUnavailable          the broker or Redis did not answer in time
    └── DeliveryError              one delivery attempt failed; ``retryable`` says what next
        ├── TransientDeliveryError     timeouts, connect errors, failed answers
        └── PermanentDeliveryError     410, non-retryable 4xx, oversize response
            └── DeliveryRefused        not sent at all: the address guard refused the host

Third-party exceptions are translated into these at one boundary each; code
elsewhere never catches library exceptions.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BrokerUnavailable",
    "DecodeError",
    "DeliveryError",
    "DeliveryRefused",
    "DurianError",
    "EventTooLarge",
    "ImproperlyConfigured",
    "InvalidListener",
    "InvalidMatcher",
    "ListenerNotFound",
    "PermanentDeliveryError",
    "PublishError",
    "RecordError",
    "SignatureError",
    "TransientDeliveryError",
]


class DurianError(Exception):
    """Base class of every error durian raises."""


class ImproperlyConfigured(DurianError):
    """The settings cannot work. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"durian is not configured correctly:\n{lines}")


class RecordError(DurianError):
    """A record does not match the schema of its type."""


class DecodeError(RecordError):
    """A record read from Kafka could not be decoded.

    Carries where it was read so that the log line and the parking topic can
    name it: ``durian.events[3]@1042``.
    """

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(message)

    @property
    def location(self) -> str:
        if self.topic is None:
            return "<bytes>"
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def __str__(self) -> str:
        base = super().__str__()
        return base if self.topic is None else f"{base} (at {self.location})"


class InvalidListener(DurianError, ValueError):
    """A listener that durian refuses to store; the message says what to fix."""


class InvalidMatcher(InvalidListener):
    """A match spec, matcher or regular expression that cannot be evaluated."""


class ListenerNotFound(DurianError, LookupError):
    """No listener with that id exists (or it was deleted)."""


class SignatureError(DurianError):
    """An incoming webhook failed verification (signature, timestamp or headers)."""


class PublishError(DurianError):
    """Kafka did not accept one or more records."""


class EventTooLarge(PublishError, ValueError):
    """An event larger than ``max_event_bytes``: refused when it is sent, before the
    transaction commits, so it is reported once and not again by a failing flush."""


class BrokerUnavailable(DurianError):
    """A service (Kafka broker, Redis) did not answer in time."""


class DeliveryError(DurianError):
    """One delivery attempt failed. ``retryable`` decides between retry and dead letter."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """Worth retrying: timeouts, connection errors, and answers other than 2xx (by default)."""

    retryable = True


class PermanentDeliveryError(DeliveryError):
    """Not worth retrying: 410, 4xx statuses set as non-retryable, oversize responses."""

    retryable = False


class DeliveryRefused(PermanentDeliveryError):
    """durian refused to send at all (the address guard); the endpoint was not contacted."""
