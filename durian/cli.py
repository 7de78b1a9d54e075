"""The ``durian`` command: the embedded stack, topics, listeners, dead letters and audits.

Settings come from the ``DURIAN_*`` environment (see ``durian.conf``);
``--bootstrap-servers`` and ``--prefix`` override the two most used ones.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import FrameType
from typing import IO, Any, NoReturn

import click
import msgspec

from durian import conf
from durian.audit import audit
from durian.dead_letters import DeadLetter, DeadLetters
from durian.embedded import EmbeddedStack, hide_password
from durian.exceptions import DecodeError, DurianError, InvalidListener, ListenerNotFound
from durian.hook_store import read_hooks
from durian.listener_store import ListenerSnapshot, ListenerStore
from durian.listeners import changed, new_listener
from durian.match import Any as AnyMatcher
from durian.match import (
    Is,
    Matcher,
    compile_spec,
    matcher_from_text,
    parse_operand,
    spec_from_json,
    spec_to_json,
)
from durian.records import ListenerSpec, decode, encode
from durian.topic_admin import TopicAdmin

__all__ = ["main"]

_PROGRESS_FROM = 20_000  # records; smaller tables are read before a bar would be seen
_BROKER_WAIT = 5.0  # seconds a command waits for the broker to answer at all


class _Context:
    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides
        self.needs_broker = True
        """``durian up`` starts the broker; every other command talks to one."""
        self._settings: conf.Settings | None = None

    @property
    def settings(self) -> conf.Settings:
        """The settings, once the broker has answered: one clear message within a few
        seconds when it does not, instead of the client's retries for a minute."""
        if self._settings is None:
            settings = conf.load(overrides=self.overrides)
            if self.needs_broker:
                TopicAdmin(settings).wait_ready(_BROKER_WAIT)
            self._settings = settings
        return self._settings


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn durian's errors into a one-paragraph message and exit status 1."""
    try:
        yield
    except (DurianError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bootstrap-servers", metavar="HOST:PORT", help="Kafka bootstrap servers.")
@click.option("--prefix", metavar="PREFIX", help="Topic prefix (default: durian).")
@click.version_option(package_name="durian")
@click.pass_context
def main(ctx: click.Context, bootstrap_servers: str | None, prefix: str | None) -> None:
    """durian: webhooks for Django, pushed through Kafka."""
    overrides: dict[str, Any] = {}
    if bootstrap_servers:
        overrides["bootstrap_servers"] = bootstrap_servers
    if prefix:
        overrides["topic_prefix"] = prefix
    ctx.obj = _Context(overrides)
    # librdkafka logs every failed connection attempt; a command says what went wrong
    # once, in its own words (``_Context.settings``, ``_errors``).
    logging.getLogger("durian.kafka.client").setLevel(logging.CRITICAL)


# -- durian up ---------------------------------------------------------------


@main.command()
@click.option("--port", type=int, default=None, help="Broker port (default: from settings).")
@click.pass_obj
def up(obj: _Context, port: int | None) -> None:
    """Start the embedded broker and Redis, create the topics, run until Ctrl-C."""
    with _errors():
        obj.needs_broker = False
        settings = obj.settings
        host, _, configured = settings.bootstrap_servers.split(",")[0].rpartition(":")
        stack = EmbeddedStack(
            broker_host=host if host in ("127.0.0.1", "localhost") else "127.0.0.1",
            broker_port=int(configured) if port is None else port,
            redis_url=settings.redis_url,
        )
        _stop_on_sigterm()
        try:
            stack.start(on_step=lambda line: click.echo(f"durian up: {line}"))
            assert stack.redis_url is not None
            settings = msgspec.structs.replace(
                settings,
                bootstrap_servers=stack.bootstrap_servers,
                redis_url=stack.redis_url,
                embedded=True,
            )
            statuses = TopicAdmin(settings).ensure()
            click.echo(f"durian up: topics  {len(statuses)} ready under {settings.topic_prefix}.*")
            click.echo("durian up: ready. In another shell:")
            redis = ""
            if stack.redis_url != conf.Settings().redis_url:  # not the default: say which
                redis = f" DURIAN_REDIS_URL={hide_password(stack.redis_url)}"
            click.echo(
                f"    export DURIAN_EMBEDDED=true "
                f"DURIAN_BOOTSTRAP_SERVERS={stack.bootstrap_servers}{redis}"
            )
            click.echo("    durian listeners add --hook person --url https://example.com/hook")
            click.echo("durian up: Ctrl-C stops everything.")
            while stack.broker.running and (stack.redis is None or stack.redis.running):
                time.sleep(0.5)
            raise DurianError("an embedded service exited on its own; stopping the rest")
        except KeyboardInterrupt:
            click.echo("durian up: stopping")
        finally:
            stack.stop()


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


# -- durian topics -----------------------------------------------------------


@main.group()
def topics() -> None:
    """Create and inspect durian's topics."""


@topics.command("create")
@click.pass_obj
def topics_create(obj: _Context) -> None:
    """Create every missing topic (idempotent); report the ones that exist."""
    with _errors():
        for status in TopicAdmin(obj.settings).ensure():
            policy = status.config.get("cleanup.policy", "")
            line = f"{status.action:8} {status.name}  partitions={status.partitions}"
            if policy:
                line += f" cleanup.policy={policy}"
            click.echo(line)
            if status.warning:
                click.echo(f"warning: {status.name} {status.warning}", err=True)


# -- durian hooks ------------------------------------------------------------


@main.group()
def hooks() -> None:
    """The hooks the sites declare (the hooks topic)."""


@hooks.command("list")
@click.pass_obj
def hooks_list(obj: _Context) -> None:
    """List every declared hook with the fields its events carry."""
    with _errors():
        declared = read_hooks(obj.settings)
    for spec in sorted(declared.values(), key=lambda spec: spec.name):
        fields = ", ".join(spec.fields) or "-"
        click.echo(
            f"{spec.name:24} {fields}" + (f"  ({spec.description})" if spec.description else "")
        )
    click.echo(f"{len(declared)} hook(s)", err=True)


# -- durian listeners --------------------------------------------------------


@main.group()
def listeners() -> None:
    """Manage listeners: records on the compacted listeners topic."""


_OPS = {"is", "startswith", "endswith", "contains", "like"}


def parse_condition(text: str) -> tuple[str, Matcher]:
    """``FIELD=COND`` from the command line: ``name=startswith:J``, ``age=is:42``, ``name=Joe``.

    ``COND`` is ``OP:PATTERN`` with OP one of any, is, startswith, endswith,
    contains, like; anything else is ``is``. Values of ``is``/``contains`` and
    plain values are read as JSON when they parse (``42``, ``true``,
    ``"42"``), else as text.
    """
    field, sep, cond = text.partition("=")
    if not sep or not field:
        raise InvalidListener(f"--match {text!r}: write FIELD=CONDITION, e.g. name=startswith:J")
    op, colon, pattern = cond.partition(":")
    if op.lower() == "any" and (not colon or not pattern):
        return field, AnyMatcher()
    if not colon or op.lower() not in _OPS:
        return field, Is(parse_operand(cond))
    return field, matcher_from_text(op, pattern)


def _match_spec(conditions: tuple[str, ...], match_json: str | None) -> dict[str, Any]:
    """The JSON match spec from ``--match`` options and/or ``--match-json``."""
    spec: dict[str, Any] = spec_from_json(msgspec.json.decode(match_json)) if match_json else {}
    for text in conditions:
        field, matcher = parse_condition(text)
        *parents, leaf = field.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidListener(f"--match {text!r}: {part!r} already has a condition")
        node[leaf] = matcher
    return spec_to_json(compile_spec(spec))


_MATCH_HELP = (
    "FIELD=CONDITION, repeatable; CONDITION is any, is:V, startswith:S, endswith:S, "
    "contains:V, like:REGEX or a plain value. Nested fields: address.city=Oslo."
)


@listeners.command("add")
@click.option("--hook", required=True, help="The hook (event) name, e.g. person.")
@click.option("--url", required=True, help="Where to POST the webhooks.")
@click.option("--match", "conditions", multiple=True, metavar="FIELD=CONDITION", help=_MATCH_HELP)
@click.option("--match-json", metavar="JSON", help='A whole spec: {"name": {"$startswith": "J"}}.')
@click.option("--description", default="", help="A note for people.")
@click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Extra header.")
@click.option("--rate-limit", type=float, default=None, help="Deliveries per second at most.")
@click.option("--id", "listener_id", default=None, help="Choose the id (default: generated).")
@click.option("--inactive", is_flag=True, help="Create it disabled.")
@click.option("--force", is_flag=True, help="Create it even for a hook no site declares.")
@click.pass_obj
def listeners_add(
    obj: _Context,
    hook: str,
    url: str,
    conditions: tuple[str, ...],
    match_json: str | None,
    description: str,
    headers: tuple[str, ...],
    rate_limit: float | None,
    listener_id: str | None,
    inactive: bool,
    force: bool,
) -> None:
    """Create a listener. Prints its signing secret once."""
    with _errors():
        if not force:
            _check_hook(obj.settings, hook)
        listener = new_listener(
            hook=hook,
            url=url,
            match=_match_spec(conditions, match_json),
            active=not inactive,
            description=description,
            headers=_headers(headers),
            rate_limit=rate_limit,
            id=listener_id,
        )
        with ListenerStore(obj.settings) as store:
            if listener_id and listener_id in _read(store).listeners:
                raise InvalidListener(
                    f"a listener with id {listener_id!r} exists; use `durian listeners update`"
                )
            store.put(listener)
        click.echo(f"created {listener.id}  hook={hook}  url={url}")
        click.echo(f"secret  {listener.secret}")
        click.echo("        (shown once: give it to the receiver to verify signatures)", err=True)


def _check_hook(settings: conf.Settings, hook: str) -> None:
    """Refuse a hook that no site declares on the hooks topic (it could never fire); only
    warn while no site has declared any."""
    declared = read_hooks(settings)
    if not declared:
        click.echo(
            f"warning: cannot check that hook {hook!r} exists: no site has declared its hooks "
            "yet (`manage.py durian_hooks` does, and so does a site's first event)",
            err=True,
        )
    elif hook not in declared:
        raise click.ClickException(
            f"no site declares hook {hook!r} (declared: {', '.join(sorted(declared))}); "
            "fix the name, or add --force to create it anyway"
        )


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise InvalidListener(f"--header {pair!r}: write NAME:VALUE")
        out[name.strip()] = value.strip()
    return out


def _read(store: ListenerStore) -> ListenerSnapshot:
    bar: Any = None

    def progress(done: int, expected: int) -> None:
        nonlocal bar
        if bar is None and expected >= _PROGRESS_FROM:
            bar = click.progressbar(length=expected, label="reading listeners", file=sys.stderr)
            bar.__enter__()
        if bar is not None:
            bar.update(done - bar.pos)

    try:
        table = store.read(progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    for problem in table.invalid:
        click.echo(f"warning: unreadable listener record skipped: {problem}", err=True)
    return table


@listeners.command("list")
@click.option("--hook", default=None, help="Only this hook's listeners.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (secrets left out).")
@click.pass_obj
def listeners_list(obj: _Context, hook: str | None, as_json: bool) -> None:
    """List the live listeners (the topic read to its end, tombstones applied)."""
    with _errors(), ListenerStore(obj.settings) as store:
        table = _read(store)
    rows = sorted(
        (lst for lst in table.listeners.values() if hook is None or lst.hook == hook),
        key=lambda lst: lst.id,
    )
    out = click.get_text_stream("stdout")
    if as_json:
        out.write("".join(_public_json(lst) + "\n" for lst in rows))
        return
    lines = [f"{'ID':34} {'HOOK':16} {'ACTIVE':6} {'URL':40} MATCH"]
    for lst in rows:
        match = msgspec.json.encode(lst.match).decode() if lst.match else "-"
        lines.append(
            f"{lst.id:34} {lst.hook:16} {'yes' if lst.active else 'no':6} {lst.url:40} {match}"
        )
    out.write("\n".join(lines) + "\n")
    click.echo(f"{len(rows)} listener(s)", err=True)


def _public_json(listener: ListenerSpec) -> str:
    data = msgspec.to_builtins(listener)
    data.pop("secret", None)
    data.pop("old_secrets", None)
    headers = data.get("options", {}).get("headers")
    if headers:  # header values are often credentials: names only
        data["options"]["headers"] = dict.fromkeys(headers, "**********")
    return msgspec.json.encode(data).decode()


@listeners.command("show")
@click.argument("listener_id")
@click.pass_obj
def listeners_show(obj: _Context, listener_id: str) -> None:
    """Show one listener (its secret is never shown again)."""
    with _errors(), ListenerStore(obj.settings) as store:
        listener = _get(store, listener_id)
    click.echo(f"id           {listener.id}")
    click.echo(f"hook         {listener.hook}")
    click.echo(f"url          {listener.url}")
    click.echo(f"active       {'yes' if listener.active else 'no'}")
    click.echo(
        "match        "
        + (msgspec.json.encode(listener.match).decode() if listener.match else "(every event)")
    )
    if listener.description:
        click.echo(f"description  {listener.description}")
    if listener.options.headers:
        click.echo(f"headers      {', '.join(sorted(listener.options.headers))}")
    if listener.options.rate_limit:
        click.echo(f"rate limit   {listener.options.rate_limit}/s")
    click.echo(f"created      {listener.created_at or '-'}")
    click.echo(f"updated      {listener.updated_at or '-'}")
    click.echo("secret       ********** (shown only at creation)")


def _get(store: ListenerStore, listener_id: str) -> ListenerSpec:
    try:
        return store.get(listener_id)
    except ListenerNotFound as exc:
        raise click.ClickException(f"{exc}; `durian listeners list` shows the ids") from None


@listeners.command("update")
@click.argument("listener_id")
@click.option("--url", default=None, help="New URL.")
@click.option(
    "--match",
    "conditions",
    multiple=True,
    metavar="FIELD=CONDITION",
    help=_MATCH_HELP + " Replaces the spec.",
)
@click.option("--match-json", metavar="JSON", help="A whole spec; replaces the spec.")
@click.option("--match-all", is_flag=True, help="Remove every condition: match all events.")
@click.option("--description", default=None)
@click.option("--active/--inactive", default=None, help="Enable or disable deliveries.")
@click.option("--rate-limit", type=float, default=None)
@click.pass_obj
def listeners_update(
    obj: _Context,
    listener_id: str,
    url: str | None,
    conditions: tuple[str, ...],
    match_json: str | None,
    match_all: bool,
    description: str | None,
    active: bool | None,
    rate_limit: float | None,
) -> None:
    """Change a listener; what is not given stays as it was."""
    with _errors(), ListenerStore(obj.settings) as store:
        listener = _get(store, listener_id)
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = url
        if match_all:
            changes["match"] = {}
        elif conditions or match_json:
            changes["match"] = _match_spec(conditions, match_json)
        if description is not None:
            changes["description"] = description
        if active is not None:
            changes["active"] = active
        if rate_limit is not None:
            changes["options"] = msgspec.structs.replace(listener.options, rate_limit=rate_limit)
        updated = changed(listener, **changes)
        store.put(updated)
    click.echo(f"updated {updated.id}")


@listeners.command("rm")
@click.argument("listener_ids", nargs=-1, required=True)
@click.pass_obj
def listeners_rm(obj: _Context, listener_ids: tuple[str, ...]) -> None:
    """Delete listeners (a tombstone each). Unknown ids: nothing is deleted."""
    with _errors(), ListenerStore(obj.settings) as store:
        live = _read(store).listeners
        unknown = [lid for lid in listener_ids if lid not in live]
        if unknown:
            raise click.ClickException(
                f"no listener with id {', '.join(map(repr, unknown))}; nothing was deleted"
            )
        for lid in listener_ids:
            store.delete(lid)
    for lid in listener_ids:
        click.echo(f"deleted {lid}")


@listeners.command("export")
@click.option("-o", "--output", type=click.File("w"), default="-", help="File (default: stdout).")
@click.pass_obj
def listeners_export(obj: _Context, output: IO[str]) -> None:
    """Write every listener as JSON lines, secrets included (a backup)."""
    with _errors(), ListenerStore(obj.settings) as store:
        table = _read(store)
    for listener in sorted(table.listeners.values(), key=lambda lst: lst.id):
        output.write(encode(listener).decode() + "\n")
    click.echo(
        f"exported {len(table.listeners)} listener(s); the file holds signing secrets", err=True
    )


@listeners.command("import")
@click.argument("source", type=click.File("rb"))
@click.option("--dry-run", is_flag=True, help="Check the file, write nothing.")
@click.pass_obj
def listeners_import(obj: _Context, source: IO[bytes], dry_run: bool) -> None:
    """Create or update listeners from JSON lines. Any bad line: nothing is written."""
    with _errors():
        listeners_in: list[ListenerSpec] = []
        problems: list[str] = []
        seen: set[str] = set()
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                listener = decode(line, ListenerSpec)
            except DecodeError as exc:
                problems.append(f"line {number}: {exc}")
                continue
            if listener.id in seen:
                problems.append(f"line {number}: listener {listener.id!r} appears twice")
            seen.add(listener.id)
            listeners_in.append(listener)
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise click.ClickException(
                f"{len(problems)} bad line(s), nothing was imported:\n  {shown}{more}"
            )
        if dry_run:
            click.echo(f"{len(listeners_in)} listener(s) are valid; nothing written (--dry-run)")
            return
        with ListenerStore(obj.settings) as store:
            store.put(*listeners_in)
    click.echo(f"imported {len(listeners_in)} listener(s)")


# -- durian dlq ----------------------------------------------------------------


@main.group()
def dlq() -> None:
    """Dead letters: jobs that ran out of retries, were refused, or whose listener was disabled."""


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """A point in time: ISO 8601 (``2026-11-25T10:00:00+00:00``, UTC when no zone is
    given) or a duration ago (``30m``, ``2h``, ``7d``). Returns Unix time."""
    moment = time.time() if now is None else now
    stripped = text.strip()
    unit = stripped[-1:].lower()
    if unit in _DURATION and stripped[:-1].replace(".", "", 1).isdigit():
        return moment - float(stripped[:-1]) * _DURATION[unit]
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an ISO time (2026-11-25T10:00) nor a duration ago (30m, 2h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _select(
    letters: list[DeadLetter],
    listener_ids: tuple[str, ...],
    job_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
) -> list[DeadLetter]:
    start = parse_when(since) if since else None
    end = parse_when(until) if until else None
    chosen = []
    for letter in letters:
        job = letter.job
        if job is None:
            continue
        if listener_ids and job.listener_id not in listener_ids:
            continue
        if job_ids and job.id not in job_ids:
            continue
        if start is not None and letter.timestamp < start:
            continue
        if end is not None and letter.timestamp >= end:
            continue
        chosen.append(letter)
    return chosen


def _filters(command: Any) -> Any:
    command = click.option("--listener", "listener_ids", multiple=True, help="Only this listener.")(
        command
    )
    command = click.option("--job", "job_ids", multiple=True, help="Only this job id.")(command)
    command = click.option("--since", metavar="WHEN", help="Dead since (ISO time or 2h).")(command)
    return click.option("--until", metavar="WHEN", help="Dead before (ISO time or 2h).")(command)


@dlq.command("list")
@_filters
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.pass_obj
def dlq_list(
    obj: _Context,
    listener_ids: tuple[str, ...],
    job_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """List the dead letters (after the purge mark), oldest first."""
    with _errors():
        letters = DeadLetters(obj.settings).read()
    for letter in letters:
        if letter.problem is not None:
            click.echo(f"warning: unreadable dead letter skipped: {letter.problem}", err=True)
    chosen = sorted(
        _select(letters, listener_ids, job_ids, since, until), key=lambda x: x.timestamp
    )
    out = click.get_text_stream("stdout")
    if as_json:
        for letter in chosen:
            assert letter.job is not None
            out.write(
                msgspec.json.encode(
                    {
                        "dead_at": datetime.fromtimestamp(letter.timestamp, UTC).isoformat(),
                        "job_id": letter.job.id,
                        "listener_id": letter.job.listener_id,
                        "hook": letter.job.event.hook,
                        "event_id": letter.job.event.id,
                        "attempts": letter.job.attempt,
                        "last_error": letter.job.last_error,
                    }
                ).decode()
                + "\n"
            )
        return
    lines = [f"{'DEAD AT':20} {'JOB':36} {'LISTENER':34} {'HOOK':16} {'ATT':3}  LAST ERROR"]
    for letter in chosen:
        job = letter.job
        assert job is not None
        when = datetime.fromtimestamp(letter.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{when:20} {job.id:36} {job.listener_id:34} {job.event.hook:16} "
            f"{job.attempt:3}  {job.last_error or '-'}"
        )
    out.write("\n".join(lines) + "\n")
    click.echo(f"{len(chosen)} dead letter(s)", err=True)


@dlq.command("replay")
@_filters
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
@click.pass_obj
def dlq_replay(
    obj: _Context,
    listener_ids: tuple[str, ...],
    job_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
    everything: bool,
) -> None:
    """Deliver dead letters again: same webhook-id, attempt 1, the listener as it is now.

    Choose them with --listener, --job, --since/--until, or --all. Letters whose
    listener was deleted or is disabled are skipped (enable it first).
    """
    if not (listener_ids or job_ids or since or until or everything):
        raise click.UsageError("say which letters: --listener, --job, --since/--until, or --all")
    with _errors():
        dead = DeadLetters(obj.settings)
        chosen = _select(dead.read(), listener_ids, job_ids, since, until)
        with ListenerStore(obj.settings) as store:
            live = _read(store).listeners
        report = dead.replay(chosen, live)
    click.echo(f"replayed {len(report.replayed)} dead letter(s)")
    for reason, ids in sorted(report.skipped.items()):
        click.echo(
            f"skipped {len(ids)}: {reason} ({', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''})"
        )


@dlq.command("purge")
@click.option("--before", metavar="WHEN", help="Only letters dead before this (ISO time or 7d).")
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_obj
def dlq_purge(obj: _Context, before: str | None, everything: bool, yes: bool) -> None:
    """Forget dead letters: list and replay no longer see them.

    A Kafka log cannot delete single records: purging moves a mark (the
    <prefix>.dlq group's offsets) and the records expire with the topic's
    retention. So it goes by time, never by listener.
    """
    if bool(before) == everything:
        raise click.UsageError("give exactly one of --before WHEN or --all")
    cutoff = parse_when(before) if before else None
    if not yes:
        what = "every dead letter" if cutoff is None else f"dead letters from before {before}"
        click.confirm(f"purge {what}?", abort=True)
    with _errors():
        purged = DeadLetters(obj.settings).purge(before=cutoff)
    click.echo(f"purged {purged} dead letter(s)")


# -- durian audit ----------------------------------------------------------------


def _at(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


@main.command("audit")
@click.option("--since", required=True, metavar="WHEN", help="From (ISO time or 2h).")
@click.option(
    "--grace",
    type=float,
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Records younger than this are still on their way and not judged.",
)
@click.option("--json", "as_json", is_flag=True, help="The whole report as JSON.")
@click.pass_obj
def audit_command(obj: _Context, since: str, grace: float, as_json: bool) -> None:
    """Check from the topics that nothing was lost since WHEN: every event has a job for
    each listener it matched, and every job an outcome (delivered, dead letter, parked,
    or waiting on a retry tier). Exits 1 when something is missing."""
    start = parse_when(since)
    with _errors():
        report = audit(obj.settings, start, grace=grace)
    if as_json:
        click.echo(
            msgspec.json.encode(
                {
                    "since": start,
                    "until": report.until,
                    "ok": report.ok,
                    "events": report.events,
                    "jobs": report.jobs,
                    "outcomes": dict(report.outcomes),
                    "unverifiable": report.unverifiable,
                    "unreadable": report.unreadable,
                    "missing_jobs": report.missing_jobs,
                    "missing_outcomes": report.missing_outcomes,
                }
            ).decode()
        )
    else:
        outcomes = ", ".join(f"{name} {n}" for name, n in sorted(report.outcomes.items()))
        click.echo(
            f"from {_at(start)} to {_at(report.until)} UTC: {report.events} event(s), "
            f"{report.jobs} job(s) ({outcomes or 'none'})"
        )
        if report.unverifiable:
            click.echo(
                f"{report.unverifiable} event/listener pair(s) not judged: the listener "
                "changed within seconds of the event"
            )
        if report.unreadable:
            click.echo(f"{len(report.unreadable)} unreadable record(s), parked by the workers")
        for job in report.missing_jobs:
            click.echo(
                f"MISSING JOB   event {job.event_id} ({job.event_at}) matched listener "
                f"{job.listener_id}: no job {job.job_id}"
            )
        for lost in report.missing_outcomes:
            click.echo(
                f"NO OUTCOME    job {lost.job_id} of listener {lost.listener_id}: last seen at "
                f"{lost.last_seen}, due {_at(lost.due)} UTC"
            )
        if report.ok:
            click.echo("ok: every event has its jobs, every job an outcome")
    if not report.ok:
        sys.exit(1)
