"""``durian-deliver``: run one delivery worker (start as many as you like)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import uvloop

from delivery_workers.consumer import DeliveryWorker
from durian import conf
from durian.topic_admin import TopicAdmin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="durian-deliver", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=64, help="jobs in flight at most")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="-v: log every failed attempt; -vv: and every scheduling decision",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(
        level={0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = conf.load()
    for problem in conf.check(settings):
        logging.getLogger("durian").warning("%s: %s %s", problem.id, problem.msg, problem.hint)
    TopicAdmin(settings).ensure()
    # uvloop: the worker's event loop turns for every job several times (measured:
    # a seventh of its time in asyncio's own machinery).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run(settings, args.concurrency))


async def _run(settings: conf.Settings, concurrency: int) -> None:
    worker = DeliveryWorker(settings, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


if __name__ == "__main__":
    main()
