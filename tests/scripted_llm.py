"""A scripted fake LLM for testing synthesis logic: canned, deterministic replies.

A script is a list of (regex, reply) pairs, named by a dotted path (`scripted_msm.SCRIPT`)
so that a run in a subprocess finds it too. The first regex that matches the chat's last
user turn picks the reply; `reply` is a string or a function of the chat. Scoring (the
log-prob judges) follows the same script: the option the scripted reply starts with gets
log-prob 0, the others -10. `fail_after` raises after that many requests, to simulate a
killed synthesis; requests answered before it are in the request cache.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from typing import Any

from specalign.llm.base import LLM, Completion, Scored

Chat = list[dict[str, str]]
Reply = str | Callable[[Chat], str]
Script = list[tuple[str, Reply]]


def load_script(path: str) -> Script:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def last_user(chat: Chat) -> str:
    return next(turn["content"] for turn in reversed(chat) if turn["role"] == "user")


class ScriptedLLM(LLM):
    commit_every = 4  # small chunks, so a kill mid-step leaves some answers committed

    def __init__(
        self,
        *,
        script: str,
        fail_after: int | None = None,
        can_score: bool = True,
        cut_words: int | None = None,
        cache: Any = None,
        budget: Any = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(cache=cache, budget=budget, sampling=sampling)
        self.script_name = script
        self.script = [
            (re.compile(p, re.DOTALL | re.IGNORECASE), r) for p, r in load_script(script)
        ]
        # the variable simulates a kill without changing the config (so step keys stay)
        env = os.environ.get("SCRIPTED_LLM_FAIL_AFTER")
        self.fail_after = int(env) if env else fail_after
        self.prompts: list[Chat] = []  # every chat sent (cache misses), for assertions
        self.cut_words = cut_words  # replies longer than this stop there, as at max_new_tokens
        if not can_score:  # behave like a generate-only server (judges parse text)
            self._score = super()._score  # type: ignore[method-assign]

    def identity(self) -> dict[str, Any]:
        return {"backend": "scripted", "script": self.script_name}

    def reply(self, chat: Chat) -> str:
        text = last_user(chat)
        for pattern, reply in self.script:
            if pattern.search(text):
                return reply(chat) if callable(reply) else reply
        return "I cannot help with that."

    def _generate(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        if self.fail_after is not None and self.calls + len(chats) > self.fail_after:
            raise RuntimeError("killed (scripted fail_after)")
        self.prompts += chats
        return [self.completion(c) for c in chats]

    def completion(self, chat: Chat) -> Completion:
        text, finish = self.reply(chat), "stop"
        if self.cut_words is not None and len(text.split()) > self.cut_words:
            text, finish = " ".join(text.split()[: self.cut_words]), "length"
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=len(str(chat)) // 4,
            completion_tokens=len(text.split()),
        )

    def _score(self, chats: list[Chat], continuations: list[str]) -> list[Scored]:
        out = []
        for chat, cont in zip(chats, continuations, strict=True):
            reply = self.reply(chat).strip()
            hit = (
                reply.lower().startswith(cont.lower())
                and not reply[len(cont) : len(cont) + 1].isalnum()
            )
            out.append(Scored(total=0.0 if hit else -10.0, tokens=[0.0 if hit else -10.0]))
        return out


class CountingLLM(ScriptedLLM):
    """A ScriptedLLM that "loads a model" on its first request and frees it on close():
    `live` counts the loaded ones across instances, `most` the largest number at once."""

    live = 0
    most = 0

    def _generate(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        self.load()
        return super()._generate(chats, sampling)

    def _score(self, chats: list[Chat], continuations: list[str]) -> list[Scored]:
        self.load()
        return super()._score(chats, continuations)

    def load(self) -> None:
        if not getattr(self, "loaded", False):
            self.loaded = True
            CountingLLM.live += 1
            CountingLLM.most = max(CountingLLM.most, CountingLLM.live)

    def close(self) -> None:
        if getattr(self, "loaded", False):
            self.loaded = False
            CountingLLM.live -= 1
