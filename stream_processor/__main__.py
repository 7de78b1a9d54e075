"""``durian-stream``: run one stream-processor worker (start as many as you like).

Settings come from the ``DURIAN_*`` environment (see ``durian.conf``).
"""

from __future__ import annotations

import argparse
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
    sys.argv = [sys.argv[0], "worker", "--without-web", "--loglevel", loglevel]
    app.main()


if __name__ == "__main__":
    main()
