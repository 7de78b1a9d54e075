"""``manage.py durian_hooks``: announce this site's hooks on the hooks topic."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from producer import publish
from producer.conf import get_settings
from producer.publish import announce_hooks


class Command(BaseCommand):
    help = (
        "Write this site's registered hooks to the hooks topic, so that `durian listeners "
        "add` can check a hook name without the site (a site also does it when it first "
        "publishes an event)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        names = announce_hooks(get_settings())
        publish.flush(30)
        self.stdout.write(f"durian_hooks: announced {len(names)} hook(s): {', '.join(names)}")
