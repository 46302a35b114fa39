"""Structured output: ask for JSON, validate it, retry with the error, count rejects.

Small models and busy servers return junk now and then; a synthesis over thousands of
requests must not die on one. A request with a JSON schema is decoded under it where the
backend can (`LLM.constrains`), so its reply parses and its enums hold; parsing still
checks what a schema cannot say (word counts, a rule of this instance). Each round sends
only the still-invalid requests (batched), with the previous reply and the validation
error appended, and after `max_attempts` a request is recorded as a reject (None) for the
caller to count and handle.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Chat = list[dict[str, str]]
Schema = dict[str, Any]


@dataclass
class StructuredStats:
    constrained: int = 0  # requests decoded under their schema (every attempt counted)
    retries: int = 0
    rejects: list[int] = field(default_factory=list)  # indexes of requests with no valid reply
    errors: dict[int, str] = field(default_factory=dict)  # last validation error of each reject
    truncated: int = 0  # accepted replies that stopped at max_new_tokens (finish "length")
    truncated_dropped: list[int] = field(default_factory=list)  # rejected for it (drop)


def json_object(reply: str) -> dict[str, Any]:
    """The first {...} block of a reply (models wrap JSON in prose or code fences)."""
    match = re.search(r"\{.*\}", reply, flags=re.DOTALL)
    if not match:
        raise ValueError("no JSON object in the reply")
    return json.loads(match.group(0))


def generate_json(
    llm: Any,
    chats: list[Chat],
    validate: Callable[[dict[str, Any]], Any],
    *,
    max_attempts: int = 3,
    sampling: dict[str, Any] | None = None,
    schema: Schema | list[Schema | None] | None = None,
) -> tuple[list[Any | None], StructuredStats]:
    """`validate(json_dict)` returns the parsed value or raises ValueError with the reason."""
    return generate_parsed(
        llm,
        chats,
        lambda text: validate(json_object(text)),
        max_attempts=max_attempts,
        sampling=sampling,
        fix="Reply with only the JSON.",
        schema=schema,
    )


def generate_parsed(
    llm: Any,
    chats: list[Chat],
    parse: Callable[[str], Any],
    *,
    max_attempts: int = 3,
    sampling: dict[str, Any] | None = None,
    fix: str = "Reply again in the requested format.",
    truncated: str = "keep",
    schema: Schema | list[Schema | None] | None = None,
    desc: str | None = None,
) -> tuple[list[Any | None], StructuredStats]:
    """`parse(reply_text)` returns the value or raises ValueError with the reason; invalid
    replies are retried (batched) with the error appended, then recorded as rejects (None).
    `schema` (one for all, or one per chat) goes with each request to the backend.
    A reply cut at max_new_tokens is counted, and kept (`truncated="keep"`) or rejected at
    once (`"drop"`: a retry with the same token budget would be cut again). `desc` names
    the requests in progress lines (backends that take it)."""
    if truncated not in ("keep", "drop"):
        raise ValueError(f"truncated={truncated!r}: keep | drop")
    stats = StructuredStats()
    conversations = [list(chat) for chat in chats]
    results: list[Any | None] = [None] * len(chats)
    pending = list(range(len(chats)))
    generate = llm.generate
    if desc and "desc" in inspect.signature(generate).parameters:
        generate = functools.partial(generate, desc=desc)
    for attempt in range(1, max_attempts + 1):
        if not pending:
            break
        sent = [conversations[i] for i in pending]
        if schema is None:
            replies = generate(sent, sampling)
        else:
            schemas = [schema[i] if isinstance(schema, list) else schema for i in pending]
            replies = generate(sent, sampling, schema=schemas)
            if getattr(llm, "constrains", False):
                stats.constrained += sum(s is not None for s in schemas)
        still: list[int] = []
        for i, reply in zip(pending, replies, strict=True):
            text = getattr(reply, "text", reply)
            cut = getattr(reply, "finish_reason", "stop") == "length"
            if cut and truncated == "drop":
                stats.truncated_dropped.append(i)
                stats.errors[i] = "cut at max_new_tokens"
                continue
            finish = getattr(reply, "finish_reason", "stop")
            if finish == "error":  # transport failure: send the same request again, unchanged
                stats.errors[i] = "the backend returned no answer"
                still.append(i)
                stats.retries += attempt < max_attempts
                continue
            try:
                if finish == "refusal":
                    raise ValueError(f"the model refused ({text[:80]!r})" if text else "refused")
                results[i] = parse(text)
                stats.truncated += cut
            except (ValueError, TypeError, KeyError) as err:  # JSONDecodeError is a ValueError
                stats.errors[i] = str(err)
                still.append(i)
                if attempt < max_attempts:
                    stats.retries += 1
                    conversations[i] += [
                        {"role": "assistant", "content": text},
                        {"role": "user", "content": f"Invalid: {err}. {fix}"},
                    ]
        pending = still
    stats.rejects = pending
    stats.errors = {i: stats.errors[i] for i in pending}
    return results, stats
