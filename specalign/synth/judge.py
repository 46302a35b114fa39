"""LLM judges as forced choices: compliance (Yes / No), quality (0-10 -> 0-1), AFT filters.

A judge asks a question whose answer is one of a few options. With a backend that can score
(`synthesizer=local`), the answer is read from the log-probabilities of the options: no
parsing, deterministic, and a probability rather than a coin flip, which small models need.
Where one option is a prefix of another ("1" and "10": most tokenizers split digits), an
open continuation "1" would also hold the mass of "10", so options are then scored as whole
answers, each followed by the end of the assistant turn.
Backends that only generate (vLLM, OpenAI-compatible servers) answer in text; a reply that
names no option is retried with the error, then counted as a reject (None).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from specalign.errors import ConfigError
from specalign.llm import schemas
from specalign.llm.base import LLM
from specalign.llm.structured import generate_parsed, json_object

Chat = list[dict[str, str]]
METHODS = ("auto", "logprob", "generate")
YES_NO = ("Yes", "No")
SCALE = tuple(str(i) for i in range(11))


def can_score(llm: Any) -> bool:
    """True when the backend overrides `_score` (on its class or, as a generate-only test
    double does, by resetting it on the instance to the base method)."""
    if not isinstance(llm, LLM):
        return False
    method = llm._score
    return getattr(method, "__func__", method) is not LLM._score


def whole_answers(options: Sequence[str], end_of_turn: str) -> list[str]:
    """The continuations to score: the options themselves, or, when one is a prefix of
    another, each followed by the end of the turn (so "1" no longer counts "10")."""
    prefix = any(a != b and b.startswith(a) for a in options for b in options)
    return [f"{o}{end_of_turn}" for o in options] if prefix and end_of_turn else list(options)


def pick_option(text: str, options: Sequence[str]) -> int:
    """The option a reply names: its `{"answer": ...}` (constrained decoding), else the option
    a free-text reply starts with (case and punctuation ignored)."""
    if text.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):  # not JSON after all: read it as text
            text = str(json_object(text).get("answer", ""))
    head = text.strip().lstrip("*\"'`#([ ").lower()
    for i in sorted(range(len(options)), key=lambda j: -len(options[j])):  # "10" before "1"
        option = options[i].lower()
        if head.startswith(option) and not head[len(option) : len(option) + 1].isalnum():
            return i
    raise ValueError(f"the reply does not start with one of {list(options)}")


@dataclass
class Judge:
    """Answers multiple-choice questions with an LLM; counts calls and rejects."""

    llm: Any
    method: str = "auto"
    max_attempts: int = 3
    max_new_tokens: int = 8
    rejects: int = 0
    retries: int = 0
    asked: int = 0
    constrained: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"judge method={self.method!r}: choose one of {list(METHODS)}.")
        if self.method == "logprob" and not can_score(self.llm):
            raise ConfigError(
                f"judge method=logprob needs a backend that scores ({type(self.llm).__name__} "
                "cannot). Fix: judge.method=generate, or synthesizer=local."
            )
        self.use_logprob = self.method == "logprob" or (
            self.method == "auto" and can_score(self.llm)
        )

    def distributions(self, chats: list[Chat], options: Sequence[str]) -> list[list[float] | None]:
        """P(option) for each chat; None where a generating judge gave no usable answer."""
        self.asked += len(chats)
        if not chats:
            return []
        if self.use_logprob:
            flat = [chat for chat in chats for _ in options]
            answers = whole_answers(options, self.llm.end_of_turn())
            scored = self.llm.score(flat, [answer for _ in chats for answer in answers])
            out = []
            for i in range(len(chats)):
                logps = [s.total for s in scored[i * len(options) : (i + 1) * len(options)]]
                top = max(logps)
                weights = [math.exp(lp - top) for lp in logps]
                out.append([w / sum(weights) for w in weights])
            return out
        picks, stats = generate_parsed(
            self.llm,
            chats,
            lambda text: pick_option(text, options),
            max_attempts=self.max_attempts,
            sampling={"temperature": 0.0, "max_new_tokens": self.max_new_tokens},
            fix=f"Reply with only one of: {', '.join(options)}.",
            schema=schemas.answer(options),
        )
        self.retries += stats.retries
        self.constrained += stats.constrained
        self.rejects += len(stats.rejects)
        self.errors += list(stats.errors.values())[:5]
        return [
            None if pick is None else [1.0 if j == pick else 0.0 for j in range(len(options))]
            for pick in picks
        ]

    def yes_probability(self, chats: list[Chat]) -> list[float | None]:
        return [None if d is None else d[0] for d in self.distributions(chats, YES_NO)]

    def scale(self, chats: list[Chat]) -> list[float | None]:
        """A 0-10 rating as a 0-1 score (the expected rating under log-prob judging)."""
        return [
            None if d is None else sum(i * p for i, p in enumerate(d)) / 10
            for d in self.distributions(chats, SCALE)
        ]

    def metrics(self, prefix: str) -> dict[str, int]:
        return {
            f"{prefix}/asked": self.asked,
            f"{prefix}/rejects": self.rejects,
            f"{prefix}/retries": self.retries,
            f"{prefix}/constrained": self.constrained,
        }
