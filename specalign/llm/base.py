"""The interface every backend implements, and the caching/budget logic they all share.

Backends implement `_generate(chats, sampling)` (and `_score` where they can); callers use
`generate` / `score`, which look every request up in the request cache first, send only
the misses, store the answers, and charge the budget. A killed synthesis therefore resumes
without repeating a call, and an identical re-run makes none.

A request that expects JSON passes its JSON schema (`generate(..., schema=...)`: one for
all chats, or one per chat). Requests are sent grouped by schema, the group's schema in
`sampling["schema"]`, and a backend whose `constrains` is true enforces it while decoding
(grammar-masked logits locally, structured outputs in vLLM, `response_format` on servers).
The schema is part of each request's cache key: a changed schema asks again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from specalign.errors import SpecAlignError
from specalign.llm.budget import Budget
from specalign.llm.cache import RequestCache, request_key
from specalign.progress import Progress

log = logging.getLogger(__name__)
Chat = list[dict[str, str]]
SAMPLING_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "max_new_tokens": 512,
    "seed": 0,
}


class BudgetExceededError(SpecAlignError):
    """A step's token or cost budget is spent; what was generated before is kept (cached)."""


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str = "stop"  # "stop" | "length" | "refusal" | "error" (never cached)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "cached"}


@dataclass(frozen=True)
class Scored:
    """log p(continuation | chat): the sum and each token's log-prob."""

    total: float
    tokens: list[float] = field(default_factory=list)


class LLM:
    """Base class: subclasses set `identity()` and implement `_generate` / `_score`."""

    commit_every = 64  # requests per cache commit and budget check (see generate)

    def __init__(
        self,
        *,
        cache: RequestCache | None = None,
        budget: Budget | dict[str, Any] | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        self.cache = cache
        # a Budget, or its settings as they come from the synthesizer YAML
        self.budget = budget if isinstance(budget, Budget) else Budget(**(budget or {}))
        self.default_sampling = {**SAMPLING_DEFAULTS, **(sampling or {})}
        self.calls = 0  # requests actually sent to the backend (cache misses)
        # the current call's progress, per thread: inspect's batcher calls from worker threads
        self.progress_state = threading.local()

    @property
    def bar(self) -> Progress | None:
        """This thread's current call's progress (see `progress`), if any."""
        return getattr(self.progress_state, "bar", None)

    def identity(self) -> dict[str, Any]:
        """What makes two backends give the same answer (model, revision, ...): cache key."""
        raise NotImplementedError

    @property
    def constrains(self) -> bool:
        """Whether this backend enforces a request's JSON schema while decoding (else the
        schema only keys the request, and the caller's parse + retry is all there is)."""
        return False

    def constraint_identity(self) -> dict[str, Any]:
        """What, besides the schema, decides a constrained answer (the grammar engine): part
        of the key of requests with a schema only, so free-text keys stay as they were."""
        return {}

    def _generate(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        raise NotImplementedError

    def _score(self, chats: list[Chat], continuations: list[str]) -> list[Scored]:
        raise SpecAlignError(
            f"{type(self).__name__} cannot score continuations; "
            "use synthesizer=local (transformers) for log-prob scoring."
        )

    def end_of_turn(self) -> str:
        """The text that ends an assistant turn in this backend's chat format ("" if it
        cannot score): a judge scores "1" and "10" as whole answers by appending it."""
        return ""

    def close(self) -> None:
        """Free the model or engine behind this backend (a later request loads it again)."""

    def sampling(self, overrides: dict[str, Any] | None) -> dict[str, Any]:
        return {**self.default_sampling, **(overrides or {})}

    def generate(
        self,
        chats: list[Chat],
        sampling: dict[str, Any] | None = None,
        schema: dict[str, Any] | list[dict[str, Any] | None] | None = None,
        desc: str = "generate",
    ) -> list[Completion]:
        """One completion per chat, from the cache where possible; order is kept. `schema`:
        the JSON schema every reply (a dict) or each reply (a list, None: free text) obeys.
        `desc` names the requests in progress lines (`planner: 40/120 requests, ...`)."""
        base = self.sampling(sampling)
        schemas = schema if isinstance(schema, list) else [schema] * len(chats)
        if len(schemas) != len(chats):
            raise ValueError(f"{len(schemas)} schemas for {len(chats)} chats")
        decoder = self.constraint_identity()
        params = [base if s is None else {**base, "schema": s, **decoder} for s in schemas]
        keys = [
            request_key(self.identity(), "generate", chat, p)
            for chat, p in zip(chats, params, strict=True)
        ]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        missing = [i for i, key in enumerate(keys) if key not in found]
        results: dict[int, Completion] = {
            i: Completion(**found[key], cached=True) for i, key in enumerate(keys) if key in found
        }
        if missing:
            with self.progress(len(chats), desc, initial=len(results)):
                self.send(chats, params, schemas, keys, missing, results)
        return [results[i] for i in range(len(chats))]

    @contextmanager
    def progress(self, total: int, desc: str, initial: int = 0) -> Iterator[Progress]:
        """Requests done out of `total` (cache hits counted as done), shown while the backend
        works; backends that batch (`self.bar`) tick per batch, the rest per call."""
        hits = f"{initial} from the cache"
        with Progress(total, desc, "requests", initial=initial, note=hits) as bar:
            self.progress_state.bar = bar
            try:
                yield bar
            finally:
                self.progress_state.bar = None

    def tick(self, n: int) -> None:
        """A backend finished `n` more requests (see `progress`)."""
        bar = self.bar
        if bar is not None:
            bar.update(n)

    def send(
        self,
        chats: list[Chat],
        params: list[dict[str, Any]],
        schemas: list[dict[str, Any] | None],
        keys: list[str],
        missing: list[int],
        results: dict[int, Completion],
    ) -> None:
        """The cache misses to the backend. In chunks: the budget is checked, and answers
        are committed to the cache, after every `commit_every` requests, so a kill loses at
        most one chunk of work."""
        for start in range(0, len(missing), self.commit_every):
            chunk = missing[start : start + self.commit_every]
            self.budget.check()
            for group in by_schema(chunk, schemas):  # one backend call per schema
                bar = self.bar
                before = bar.done if bar is not None else 0
                fresh = self._generate([chats[i] for i in group], params[group[0]])
                if bar is not None:  # what a backend that does not tick did
                    self.tick(len(group) - (bar.done - before))
                for i, completion in zip(group, fresh, strict=True):
                    results[i] = completion
                    self.budget.charge(completion.prompt_tokens, completion.completion_tokens)
            self.calls += len(chunk)
            if self.cache is not None:
                self.cache.put_many(
                    {
                        keys[i]: results[i].to_dict()
                        for i in chunk
                        if results[i].finish_reason != "error"
                    }
                )

    def score(self, chats: list[Chat], continuations: list[str]) -> list[Scored]:
        """log p(continuation | chat, assistant turn started) for each pair."""
        keys = [
            request_key(self.identity(), "score", chat, {"continuation": cont})
            for chat, cont in zip(chats, continuations, strict=True)
        ]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        missing = [i for i, key in enumerate(keys) if key not in found]
        results = {i: Scored(**found[key]) for i, key in enumerate(keys) if key in found}
        if missing:
            with self.progress(len(chats), "score", initial=len(results)) as bar:
                before = bar.done
                fresh = self._score(
                    [chats[i] for i in missing], [continuations[i] for i in missing]
                )
                self.tick(len(missing) - (bar.done - before))
            self.calls += len(missing)
            results.update(zip(missing, fresh, strict=True))
            if self.cache is not None:
                self.cache.put_many({keys[i]: asdict(results[i]) for i in missing})
        return [results[i] for i in range(len(chats))]


def by_schema(indexes: list[int], schemas: list[dict[str, Any] | None]) -> list[list[int]]:
    """The requests grouped by their schema (first appearance order), for one call each."""
    from specalign.llm.constrained import schema_text  # light: no torch or transformers

    groups: dict[str, list[int]] = {}
    for i in indexes:
        text = "" if schemas[i] is None else schema_text(schemas[i])
        groups.setdefault(text, []).append(i)
    return list(groups.values())
