"""A Django web process that dies right after its commits, for the outbox tests:
``python -m tests.web_process N TAG``.

Saves ``N`` ``Person`` rows named ``TAG-<n>``, each in its own transaction (as
``ATOMIC_REQUESTS`` does per request), prints ``committed`` and kills itself with
SIGKILL: no exit handler, no flush. The database is ``DURIAN_TEST_DATABASE_URL``,
the durian settings are the ``DURIAN_*`` environment.
"""

from __future__ import annotations

import os
import signal
import sys

import django


def main(count: int, tag: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
    django.setup()
    from django.db import transaction

    from tests.testapp.models import Person

    for n in range(count):
        with transaction.atomic():
            Person.objects.create(name=f"{tag}-{n}")
    print("committed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
