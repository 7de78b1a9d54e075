"""``durian-stream``: run one stream-processor worker (start as many as you like).

Settings come from the ``DURIAN_*`` environment (see ``durian.conf``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from durian import conf
from durian.topic_admin import TopicAdmin
from stream_processor.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="durian-stream", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="-v: Faust's info log (assignments, recovery); -vv: debug",
    )  # fmt: skip
    args = parser.parse_args(argv)
    settings = conf.load()
    TopicAdmin(settings).ensure()
    app = create_app(settings)
    loglevel = {0: "warn", 1: "info"}.get(args.verbose, "debug")
    # Faust sets up logging when its worker starts; the table is read before that.
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(loglevel.upper().replace("WARN", "WARNING"))
    try:
        app.listener_table.preload(settings)  # type: ignore[attr-defined]
    finally:
        root.removeHandler(handler)
    sys.argv = [sys.argv[0], "worker", "--without-web", "--loglevel", loglevel]
    app.main()


if __name__ == "__main__":
    main()
