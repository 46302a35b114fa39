"""Any OpenAI-compatible chat-completions server: vLLM / SGLang servers or a hosted provider.

Requests run concurrently (bounded by `max_concurrency` and paced by `requests_per_minute`)
on one event loop that lives as long as the backend, so the concurrency limit, the rate
limiter's bucket and the HTTP connections carry over from one cache chunk to the next. They
are retried on what a busy server does under load: 429s (after `Retry-After`, capped at
`backoff_max_s`), 408s, 5xx, timeouts, dropped connections and truncated bodies. A request
that still fails becomes an "error" completion (never cached) so one bad prompt does not
kill a synthesis; a `content: null` answer is the model's refusal, counted as such. The
counters `retries`, `retry_reasons`, `failures` and `refusals` say how rough the run was.

A request with a JSON schema is sent with `response_format: {type: json_schema}`, which
vLLM, SGLang and OpenAI decode under (`structured_outputs: json_schema`). With `auto` (the
default), a server that answers such a request with 400 (it does not support it) is asked
again without it, and from then on the run parses and retries only (`schema_unsupported`
says so in the metrics); `none` never sends a schema.

The API key is read from the environment variable named by `api_key_env` at request time
and sent only in the Authorization header: it is never stored, logged or part of the cache
key, so caches can be shared and logs uploaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from typing import Any

import httpx
from tqdm.auto import tqdm

from specalign.errors import SpecAlignError
from specalign.llm.base import LLM, Chat, Completion
from specalign.llm.budget import Budget
from specalign.llm.cache import RequestCache
from specalign.llm.rate_limit import RateLimiter, full_jitter, parse_retry_after

log = logging.getLogger(__name__)
PROGRESS_MIN_REQUESTS = 20  # below this a progress bar is noise
# Status codes that mean the configuration is wrong: every request would fail the same way.
FATAL_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not found"}
RETRYABLE_STATUS = {408: "request_timeout", 429: "rate_limit"}  # and every 5xx
STRUCTURED_OUTPUTS = ("auto", "json_schema", "none")


class _Retryable(Exception):
    """An attempt failed in a way another attempt may not (load, truncation, ...)."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.retry_after = retry_after


class _Rejected(Exception):
    """The server refused this request itself (e.g. 400 prompt too long): retrying is futile."""


class OpenAIBackend(LLM):
    """Generation through `POST {base_url}/chat/completions`; cannot score log-probs."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str = "http://localhost:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        requests_per_minute: int = 600,
        timeout_s: float = 120,
        max_retries: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        structured_outputs: str = "auto",
        cache: RequestCache | None = None,
        budget: Budget | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(cache=cache, budget=budget, sampling=sampling)
        if int(max_concurrency) < 1:
            raise SpecAlignError(f"synthesizer.max_concurrency must be >= 1, got {max_concurrency}")
        if int(max_retries) < 0:
            raise SpecAlignError(f"synthesizer.max_retries must be >= 0, got {max_retries}")
        if float(requests_per_minute) <= 0:
            raise SpecAlignError(
                f"synthesizer.requests_per_minute must be positive, got {requests_per_minute}"
            )
        if structured_outputs not in STRUCTURED_OUTPUTS:
            raise SpecAlignError(
                f"synthesizer.structured_outputs={structured_outputs!r}: choose one of "
                f"{list(STRUCTURED_OUTPUTS)}."
            )
        self.structured_outputs = str(structured_outputs)
        self.schema_unsupported = False  # auto: the server rejected response_format once
        self.model = str(model)
        self.base_url = str(base_url).rstrip("/")
        self.api_key_env = str(api_key_env)  # the variable's *name*; its value is never kept
        self.max_concurrency = int(max_concurrency)
        # a cache-commit chunk must not cap concurrency: several rounds of requests per chunk
        self.commit_every = max(type(self).commit_every, 4 * self.max_concurrency)
        self.requests_per_minute = float(requests_per_minute)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.retries = 0
        self.retry_reasons: Counter[str] = Counter()
        self.failures = 0
        self.refusals = 0
        self.limiter = RateLimiter(self.requests_per_minute)  # one bucket for the whole run
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.base_url, "model": self.model}

    @property
    def constrains(self) -> bool:
        return self.structured_outputs != "none" and not self.schema_unsupported

    def constraint_identity(self) -> dict[str, Any]:
        return {"structured_outputs": self.structured_outputs != "none"}

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The backend's own loop, on a daemon thread: callers stay synchronous (and may sit
        inside another loop, as in a notebook) while requests of every chunk share it."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="openai-backend", daemon=True
            )
            self._thread.start()
        return self._loop

    def _generate(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        future = asyncio.run_coroutine_threadsafe(
            self._generate_all(chats, sampling), self.event_loop()
        )
        return future.result()

    def close(self) -> None:
        """Close the HTTP connections and stop the loop (a later request starts them again)."""
        if self._loop is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = self._client = self._semaphore = None

    async def _generate_all(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        if self._client is None:  # made on the backend's loop, kept for every chunk
            limits = httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            )
            self._client = httpx.AsyncClient(timeout=self.timeout_s, limits=limits)
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        client, semaphore, limiter = self._client, self._semaphore, self.limiter
        progress = tqdm(
            total=len(chats),
            desc=f"{self.model} requests",
            unit="req",
            disable=len(chats) <= PROGRESS_MIN_REQUESTS,
        )

        async def one(client: httpx.AsyncClient, chat: Chat) -> Completion:
            try:
                return await self._complete(client, semaphore, limiter, chat, sampling)
            finally:
                progress.update(1)

        try:
            # The TaskGroup cancels the siblings when one raises (a fatal 401/404).
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(client, chat)) for chat in chats]
        except* Exception as errors:  # the first cause, not an ExceptionGroup, for the app
            raise errors.exceptions[0] from None
        finally:
            progress.close()
        return [task.result() for task in tasks]

    def _payload(self, chat: Chat, sampling: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            "temperature": sampling["temperature"],
            "top_p": sampling["top_p"],
            "max_tokens": sampling["max_new_tokens"],
        }
        if sampling.get("seed") is not None:
            payload["seed"] = sampling["seed"]
        if sampling.get("schema") is not None and self.constrains:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": sampling["schema"], "strict": True},
            }
        return payload

    def _headers(self) -> dict[str, str]:
        """Read the key now (not at construction): it is never an attribute of the backend."""
        key = os.environ.get(self.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _redact(self, text: str) -> str:
        """Servers sometimes echo the key in error bodies; never let it reach a log or error."""
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key else text

    async def _complete(
        self,
        client: httpx.AsyncClient,
        semaphore: asyncio.Semaphore,
        limiter: RateLimiter,
        chat: Chat,
        sampling: dict[str, Any],
    ) -> Completion:
        """One chat, retried with backoff; an "error" completion when it keeps failing."""
        payload = self._payload(chat, sampling)
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                async with semaphore:
                    await limiter.acquire()
                    response = await client.post(self.url, json=payload, headers=self._headers())
                return self._parse(response)
            except _Retryable as err:
                reason, retry_after, last = err.reason, err.retry_after, str(err)
            except httpx.TimeoutException:
                reason, last = "timeout", f"no answer within {self.timeout_s}s"
            except httpx.TransportError as err:
                reason, last = "connection", type(err).__name__
            except _Rejected as err:
                if "response_format" in payload and self.structured_outputs == "auto":
                    # the server cannot decode under a schema: parse + retry from now on
                    if not self.schema_unsupported:
                        log.warning(
                            "%s rejected response_format json_schema (%s): replies are parsed "
                            "and retried, not constrained (structured_outputs=none to skip)",
                            self.url,
                            err,
                        )
                    self.schema_unsupported = True
                    payload = {k: v for k, v in payload.items() if k != "response_format"}
                    continue
                last = str(err)
                break
            if attempt == self.max_retries:
                break
            self.retries += 1
            self.retry_reasons[reason] += 1
            delay = retry_after
            if delay is None:
                delay = full_jitter(attempt, self.backoff_base_s, self.backoff_max_s)
            delay = min(delay, self.backoff_max_s)  # a server asking for an hour gets a minute
            log.debug("retrying request (%s, attempt %d) in %.2fs", reason, attempt + 1, delay)
            await asyncio.sleep(delay)
        self.failures += 1
        log.warning("request to %s failed (%s); recorded as an error completion", self.url, last)
        return Completion(text="", finish_reason="error")

    def _parse(self, response: httpx.Response) -> Completion:
        """A Completion from a 2xx answer; raises _Retryable / _Rejected / SpecAlignError."""
        status = response.status_code
        if status in RETRYABLE_STATUS:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise _Retryable(RETRYABLE_STATUS[status], f"HTTP {status}", retry_after)
        if status >= 500:
            raise _Retryable("server_error", f"HTTP {status}")
        if status in FATAL_STATUS:
            raise SpecAlignError(
                f"{self.url} answered {status} ({FATAL_STATUS[status]}): "
                f"{self._redact(response.text[:300])!r}. Check synthesizer.base_url, "
                f"synthesizer.model ({self.model!r}) and that ${self.api_key_env} holds a valid "
                "key (unset for servers without authentication)."
            )
        if status >= 400:
            raise _Rejected(f"HTTP {status}: {self._redact(response.text[:300])!r}")
        try:
            body = response.json()
            choice = body["choices"][0]
            message = choice["message"]
            text = message["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _Retryable("malformed", f"malformed body ({type(err).__name__})") from None
        usage = body.get("usage") or {}
        if text is None:  # the model declined (OpenAI puts its reason in `refusal`)
            self.refusals += 1
            return Completion(
                text=str(message.get("refusal") or ""),
                finish_reason="refusal",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        if not isinstance(text, str):
            raise _Retryable("malformed", "message.content is not a string")
        return Completion(
            text=text,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
