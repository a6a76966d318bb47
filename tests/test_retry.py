"""`livewatch.retry`: the one retry mechanism (tenacity, capped exponential backoff with jitter, a
wait that a stop event ends at once)."""
import asyncio
import logging
import time

import pytest

from livewatch.errors import SegmentError, TransientError
from livewatch.retry import capped_exponential_jitter, retry


class Flaky:
    """Fails transiently `failures` times, then answers "done"."""

    def __init__(self, failures, exc=TransientError):
        self.failures, self.exc, self.calls = failures, exc, 0

    async def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"busy ({self.calls})")
        return "done"


async def test_retries_until_it_succeeds_and_logs_each_retry(caplog):
    call, seen = Flaky(3), []
    with caplog.at_level(logging.WARNING, logger="livewatch.retry"):
        result = await retry(call, what="the thing", first=0.001, longest=0.01,
                             on_retry=lambda n, exc: seen.append((n, str(exc))))
    assert result == "done" and call.calls == 4
    assert seen == [(1, "busy (1)"), (2, "busy (2)"), (3, "busy (3)")]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith("the thing failed (attempt 1): busy (1); retrying in")


async def test_bounded_attempts_raise_the_last_failure():
    call = Flaky(99)
    with pytest.raises(TransientError, match=r"busy \(3\)"):
        await retry(call, what="x", attempts=3, first=0.001, longest=0.01)
    assert call.calls == 3


async def test_other_exceptions_are_not_retried():
    call = Flaky(5, exc=SegmentError)
    with pytest.raises(SegmentError):
        await retry(call, what="x", first=0.001)
    assert call.calls == 1


async def test_a_stop_wakes_a_sleeping_retry_at_once_and_makes_no_new_attempt():
    stop, call = asyncio.Event(), Flaky(99)
    waiting = asyncio.create_task(retry(call, what="x", first=60.0, longest=60.0, stop=stop))
    deadline = time.monotonic() + 10
    while call.calls == 0 and time.monotonic() < deadline:  # the first attempt failed: it sleeps
        await asyncio.sleep(0.01)
    assert call.calls == 1 and not waiting.done()
    started = time.monotonic()
    stop.set()
    with pytest.raises(TransientError, match=r"busy \(1\)"):
        await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.0  # not the 30-60 s backoff
    assert call.calls == 1


def test_backoff_doubles_with_jitter_and_is_capped():
    class State:
        def __init__(self, n):
            self.attempt_number = n

    wait = capped_exponential_jitter(first=1.0, longest=10.0)
    for n, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (500, 10.0)]:
        waits = [wait(State(n)) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), n
        assert max(waits) - min(waits) > ceiling / 10  # jittered, not fixed
