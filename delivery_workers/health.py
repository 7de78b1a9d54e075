"""Endpoint health shared by every delivery worker, in Redis.

Before a job is sent, ``admit`` decides in one atomic Redis call (a Lua
script) whether it may go now:

* ``done``: the job was delivered before (deduplication: the ids of delivered
  jobs are kept for ``dedup_ttl``); skip it.
* ``disabled``: its listener was disabled after this job's listener snapshot
  was taken; the job goes to the dead letters (replayable once re-enabled).
* ``busy``: another worker holds the job's claim (it is in flight there, or
  that worker died with it); come back when the claim expires.
* ``open``: the endpoint's circuit breaker is open, or its half-open probe is
  in flight elsewhere; come back when it may be probed.
* ``rate``: the listener's rate limit has no room now; the job is given the
  next free slot (GCRA, the token bucket's exact equivalent, with a
  reservation) and comes back then without asking the limiter again.
* ``go``: send it. The job's claim is held until ``settle``.

``settle`` records the outcome: a success remembers the job id and closes
the breaker; a failure of a contacted endpoint counts towards opening it
(``breaker_threshold`` consecutive failures; the wait before a probe starts
at ``breaker_cooldown`` and doubles after every failed probe, up to
``breaker_max_cooldown``) and reports since when the endpoint has failed
without a success, which decides automatic disabling (``disable_after``).

Why scripts and not a library: the decision reads and writes four keys that
every worker shares; one script is one round trip and atomic, and no
rate-limit or breaker library combines deduplication, a claim, a breaker
and rate reservations in one step.

Calls made in the same turn of the event loop go to Redis together, as one
pipeline (``_Batched``): with many jobs in flight, one write and one read serve
them all instead of a round trip each.

Redis failures fail open: a worker that cannot reach Redis delivers anyway
(at least once beats not at all) and logs why. See docs/delivery.md for the
exact guarantee.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from durian import conf

__all__ = ["Admission", "EndpointHealth", "Settlement"]

logger = logging.getLogger(__name__)

Verdict = Literal["go", "done", "disabled", "busy", "open", "rate"]

# KEYS: done, claim, endpoint, disabled
# ARGV: now, claim_ms, token, rate, burst, throttled, listener_version, probe_s, endpoint_ttl
_ADMIT = """
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then return {'done', '0'} end
local disabled = redis.call('GET', KEYS[4])
if disabled and tonumber(disabled) >= tonumber(ARGV[7]) then return {'disabled', disabled} end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
  local left = redis.call('PTTL', KEYS[2])
  if left < 0 then left = tonumber(ARGV[2]) end
  return {'busy', tostring(now + left / 1000)}
end
local ep = redis.call('HMGET', KEYS[3], 'open_until', 'probe_until', 'tat')
local open_until = tonumber(ep[1]) or 0
local probing = false
if open_until > 0 then
  if now < open_until then
    redis.call('DEL', KEYS[2])
    return {'open', tostring(open_until)}
  end
  local probe_until = tonumber(ep[2]) or 0
  if now < probe_until then
    redis.call('DEL', KEYS[2])
    return {'open', tostring(probe_until)}
  end
  probing = true
end
local rate = tonumber(ARGV[4])
if rate > 0 and ARGV[6] == '0' then
  local interval = 1 / rate
  local tau = (tonumber(ARGV[5]) - 1) * interval
  local tat = math.max(tonumber(ep[3]) or 0, now)
  redis.call('HSET', KEYS[3], 'tat', tostring(tat + interval))
  redis.call('EXPIRE', KEYS[3], ARGV[9])
  if tat - now > tau then
    redis.call('DEL', KEYS[2])
    return {'rate', tostring(tat - tau)}
  end
end
if probing then
  redis.call('HSET', KEYS[3], 'probe_until', tostring(now + tonumber(ARGV[8])))
end
return {'go', '0'}
"""

# KEYS: done, claim, endpoint
# ARGV: ok, now, dedup_ttl, counts, threshold, cooldown, max_cooldown, endpoint_ttl, token
_SETTLE = """
if redis.call('GET', KEYS[2]) == ARGV[9] then redis.call('DEL', KEYS[2]) end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
  if redis.call('HEXISTS', KEYS[3], 'fails') == 1 then
    local was_open = redis.call('HEXISTS', KEYS[3], 'open_until') == 1
    redis.call('HDEL', KEYS[3], 'fails', 'since', 'open_until', 'probe_until')
    if was_open then return {'recovered', '0', '0'} end
  end
  return {'ok', '0', '0'}
end
if ARGV[4] == '0' then return {'ok', '0', '0'} end
local fails = redis.call('HINCRBY', KEYS[3], 'fails', 1)
local since = redis.call('HGET', KEYS[3], 'since')
if not since then
  since = ARGV[2]
  redis.call('HSET', KEYS[3], 'since', since)
end
redis.call('EXPIRE', KEYS[3], ARGV[8])
local threshold = tonumber(ARGV[5])
if fails >= threshold then
  local wait = math.min(tonumber(ARGV[6]) * 2 ^ math.min(fails - threshold, 30), tonumber(ARGV[7]))
  local open_until = tonumber(ARGV[2]) + wait
  redis.call('HSET', KEYS[3], 'open_until', tostring(open_until), 'probe_until', '0')
  return {'open', tostring(open_until), since}
end
return {'failing', '0', since}
"""

# KEYS: disabled; ARGV: listener_version, now, ttl
_DISABLE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class _Batched:
    """Calls of one Lua script, sent together: every call made before the event loop
    gets back to this one's flush goes in one pipeline (no transaction: each script
    is atomic on its own). A failure of the pipeline fails each of its calls.

    The calls are ``EVALSHA``; only when Redis does not know the script (first use,
    or after a restart) is it loaded and the batch sent again. redis-py's own script
    support asks ``SCRIPT EXISTS`` before every pipeline: a round trip per batch."""

    def __init__(self, redis: aioredis.Redis, script: AsyncScript) -> None:
        self.redis = redis
        self.script = script
        self._pending: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            results = await self._evalsha(batch)
            if any(isinstance(result, NoScriptError) for result in results):
                await self.redis.script_load(self.script.script)
                results = await self._evalsha(batch)
        except Exception as exc:  # every caller sees it (RedisError: they fail open)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _evalsha(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> Any:
        pipe = self.redis.pipeline(transaction=False)
        sha = self.script.sha
        for keys, args, _ in batch:
            pipe.evalsha(sha, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    until: float = 0.0
    """For busy/open/rate: when to come back. For disabled: when the listener was disabled."""


@dataclass(frozen=True)
class Settlement:
    state: Literal["ok", "recovered", "failing", "open"]
    open_until: float = 0.0
    failing_since: float | None = None


class EndpointHealth:
    """Deduplication, claims, circuit breakers and rate limits, shared through Redis."""

    def __init__(
        self,
        settings: conf.Settings,
        client: aioredis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.redis = client or aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self.prefix = f"{settings.topic_prefix}:"
        self.token = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}"
        self.claim_ms = int((settings.delivery_timeout + 10) * 1000)
        self.endpoint_ttl = int(settings.disable_after + 86400)
        self.disabled_ttl = int(sum(settings.retry_schedule) + settings.dedup_ttl)
        self._admit = _Batched(self.redis, self.redis.register_script(_ADMIT))
        self._settle = _Batched(self.redis, self.redis.register_script(_SETTLE))
        self._disable = self.redis.register_script(_DISABLE)
        self._last_warning = 0.0

    # -- keys ------------------------------------------------------------------

    def _keys(self, job_id: str, listener_id: str) -> list[str]:
        p = self.prefix
        return [f"{p}done:{job_id}", f"{p}claim:{job_id}", f"{p}endpoint:{listener_id}"]

    def _disabled_key(self, listener_id: str) -> str:
        return f"{self.prefix}disabled:{listener_id}"

    # -- the two steps of a delivery -------------------------------------------

    async def admit(
        self,
        job_id: str,
        listener_id: str,
        *,
        rate: float | None,
        throttled: bool,
        listener_version: float,
    ) -> Admission:
        keys = [*self._keys(job_id, listener_id), self._disabled_key(listener_id)]
        args: list[Any] = [
            repr(self.clock()),
            self.claim_ms,
            self.token,
            repr(rate or 0),
            1,
            "1" if throttled else "0",
            repr(listener_version),
            self.claim_ms / 1000,
            self.endpoint_ttl,
        ]
        try:
            verdict, until = await self._admit(keys=keys, args=args)
        except RedisError as exc:
            self._warn(f"cannot check endpoint health ({exc}); delivering without it")
            return Admission("go")
        return Admission(verdict.decode(), float(until))

    async def settle(self, job_id: str, listener_id: str, *, ok: bool, counts: bool) -> Settlement:
        """Record an attempt's outcome; ``counts`` = a failure of a contacted endpoint."""
        s = self.settings
        args: list[Any] = [
            "1" if ok else "0",
            repr(self.clock()),
            int(s.dedup_ttl),
            "1" if counts else "0",
            s.breaker_threshold,
            repr(s.breaker_cooldown),
            repr(s.breaker_max_cooldown),
            self.endpoint_ttl,
            self.token,
        ]
        try:
            state, until, since = await self._settle(
                keys=self._keys(job_id, listener_id), args=args
            )
        except RedisError as exc:
            self._warn(f"cannot record endpoint health ({exc})")
            return Settlement("ok")
        name = state.decode()
        failing_since = float(since) if name in ("failing", "open") else None
        return Settlement(name, float(until), failing_since)

    async def mark_disabled(self, listener_id: str, listener_version: float) -> bool:
        """Record that a listener (as of ``listener_version``) is disabled now.

        False when that version was already disabled, by this or another
        worker: only one of them writes the listener record and the event.
        """
        try:
            return bool(
                await self._disable(
                    keys=[self._disabled_key(listener_id)],
                    args=[repr(listener_version), repr(self.clock()), self.disabled_ttl],
                )
            )
        except RedisError as exc:
            self._warn(f"cannot record a disabled listener ({exc})")
            return True

    async def aclose(self) -> None:
        await self.redis.aclose()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            logger.warning("redis: %s", message)
