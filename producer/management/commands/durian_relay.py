"""``manage.py durian_relay``: publish the event outbox to Kafka (``producer.outbox``)."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from producer.conf import get_settings
from producer.models import OutboxEvent
from producer.outbox import Relay, status


class Command(BaseCommand):
    help = (
        "Publish the events that transactions wrote to the outbox, in order, and delete "
        "each once Kafka has acknowledged it. Run one or more (PostgreSQL) per site."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the outbox's database")
        parser.add_argument(
            "--batch-size", type=int, default=500, help="rows published per round trip (500)"
        )
        parser.add_argument(
            "--poll-interval", type=float, default=1.0,
            help="seconds between looks at the table when no notice wakes the relay (1)",
        )  # fmt: skip
        parser.add_argument(
            "--drain", action="store_true", help="stop once no event of its shards waits"
        )
        parser.add_argument(
            "--status", action="store_true", help="print what waits in the outbox and exit"
        )
        parser.add_argument(
            "--retry-refused", action="store_true",
            help="let the rows Kafka refused for good go again (after raising its limit), and exit",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        if options["status"]:
            now = status(using)
            age = "-" if now.oldest_age is None else f"{now.oldest_age:.1f} s"
            self.stdout.write(f"waiting: {now.waiting}  refused: {now.refused}  oldest: {age}")
            return
        if options["retry_refused"]:
            count = OutboxEvent.objects.using(using).exclude(refused="").update(refused="")
            self.stdout.write(f"durian_relay: {count} refused event(s) will go again")
            return
        relay = Relay(get_settings(), using=using, batch_size=options["batch_size"],
                      poll_interval=options["poll_interval"])  # fmt: skip
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: relay.stop())
        published = relay.run(drain=options["drain"])
        self.stdout.write(f"durian_relay: {published} event(s) published")
