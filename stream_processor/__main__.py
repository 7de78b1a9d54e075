"""``durian-stream``: run one stream-processor worker (start as many as you like)."""

from __future__ import annotations

import sys

from durian import conf
from durian.store import TopicAdmin
from stream_processor.app import create_app


def main() -> None:
    settings = conf.load()
    TopicAdmin(settings).ensure()
    app = create_app(settings)
    loglevel = {"-v": "info", "-vv": "debug"}.get(sys.argv[-1], "warn")
    sys.argv = [sys.argv[0], "worker", "--without-web", "--loglevel", loglevel]
    app.main()


if __name__ == "__main__":
    main()
