"""Pacing for remote backends: a requests-per-minute token bucket and jittered backoff.

Hosted providers reject bursts with 429s; pacing every attempt (retries included) keeps a
large synthesis under the account's limit instead of spending its retries on rejections.
"""

from __future__ import annotations

import asyncio
import random
import time


class RateLimiter:
    """Async token bucket: `per_minute` requests a minute, bursts up to one second's worth.

    `acquire` reserves a slot before awaiting (no await between reading and updating the
    bucket), so concurrent coroutines on one event loop never take the same slot and no lock
    is needed. The bucket may go negative: that is the queue of reservations still waiting.
    """

    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, got {per_minute}")
        self.rate = per_minute / 60.0  # tokens per second
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def reserve(self) -> float:
        """Take one token now; return how many seconds to wait before using it."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


def full_jitter(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with full jitter: many clients retrying do not retry in lockstep."""
    return random.uniform(0.0, min(max_s, base_s * 2**attempt))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (the delta form); None when absent or a date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
