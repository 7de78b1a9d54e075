"""``manage.py durian_log``: keep the delivery log (attempts topic -> database)."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from producer.conf import get_settings
from producer.log import AttemptLog


class Command(BaseCommand):
    help = "Store delivery attempts from Kafka in the database and prune old ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retention-days", type=float, default=30, help="keep attempts this long (30)"
        )
        parser.add_argument(
            "--drain", action="store_true", help="stop once the topic is read to its end"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        log = AttemptLog(get_settings(), retention_days=options["retention_days"])
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: log.stop())
        written = log.run(drain=options["drain"])
        self.stdout.write(f"durian_log: {written} attempt(s) stored")
