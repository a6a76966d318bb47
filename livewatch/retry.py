"""The one retry mechanism: tenacity with capped exponential backoff, jitter and a stop event.

Every retry in livewatch (the daemon's sink writes and classifications, the SageMaker classifier's
invocations, the DynamoDB sink's unprocessed items, the S3-events source's polling) goes through
`retry`, so they all back off alike, log alike, and end their wait at once when the daemon stops:
the wait between two attempts returns as soon as `stop` is set, and no further attempt is made
(the last failure is raised, so the caller releases its segment instead of holding it).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Awaitable, Callable, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_base

from .errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


class capped_exponential_jitter(wait_base):
    """Wait ``first * 2**(n-1)`` seconds after the n-th failure, capped at `longest`, times a
    random factor in [0.5, 1] ("equal jitter": retries spread out, yet never come at once)."""

    def __init__(self, first: float, longest: float):
        self.first, self.longest = first, longest

    def __call__(self, retry_state: RetryCallState) -> float:
        n = min(retry_state.attempt_number, 64)  # 2**64 s is past any cap; avoids an overflow
        return min(self.longest, self.first * 2 ** (n - 1)) * random.uniform(0.5, 1.0)


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    on: type[BaseException] | tuple[type[BaseException], ...] = TransientError,
    attempts: int | None = None,
    first: float = 0.5,
    longest: float = 30.0,
    stop: asyncio.Event | None = None,
    logger: logging.Logger = log,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Await `call()` until it returns, retrying the exceptions `on` with backoff.

    `attempts`: how many calls in all (None: until it succeeds or `stop` is set). Between two
    attempts it waits as `capped_exponential_jitter(first, longest)`; a set `stop` ends the wait at
    once and re-raises the last failure. Each retry is logged as a warning naming `what`, the
    attempt and the failure; `on_retry(attempt_number, exc)` runs before each wait (metrics).
    Other exceptions, and the last failure when attempts run out, propagate unchanged.
    """
    failed: list[BaseException] = []  # the last failure, raised if `stop` cuts a wait short
    limit = f"/{attempts}" if attempts is not None else ""

    def give_up(state: RetryCallState) -> bool:
        return (stop is not None and stop.is_set()) or (
            attempts is not None and state.attempt_number >= attempts)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        failed[:] = [exc]
        logger.warning("%s failed (attempt %d%s): %s; retrying in %.2fs", what,
                       state.attempt_number, limit, _words(exc),
                       state.next_action.sleep if state.next_action else 0.0)
        if on_retry is not None and exc is not None:
            on_retry(state.attempt_number, exc)

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(on),
        stop=give_up,
        wait=capped_exponential_jitter(first, longest),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    ):
        with attempt:
            if failed and stop is not None and stop.is_set():
                raise failed[0]  # woken by `stop`: no new attempt; the last failure stands
            return await call()
    raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


def _words(exc: BaseException | None) -> str:
    return str(exc) or type(exc).__name__
