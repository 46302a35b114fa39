"""Test doubles for evaluators: a scoring LLM whose log-probs are a function the test writes,
a subject wrapping it, and inspect mockllm models that answer by rule (usage set, so inspect
never reaches for tiktoken's download)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specalign.eval.evaluator import EvalRun
from specalign.llm.base import LLM, Completion, Scored

Chat = list[dict[str, str]]


class FunctionLLM(LLM):
    """`score` gives log p(continuation | chat) = logp(prompt text, continuation), spread
    over `tokens(continuation)` tokens; `generate` answers reply(chat)."""

    def __init__(
        self,
        logp: Callable[[str, str], float] | None = None,
        reply: Callable[[Chat], str] | None = None,
        tokens: Callable[[str], int] = lambda text: max(1, len(text.split())),
    ) -> None:
        super().__init__()
        self.logp, self.reply, self.tokens = logp, reply, tokens
        self.scored: list[tuple[str, str]] = []

    def identity(self) -> dict[str, Any]:
        return {"backend": "function"}

    def _score(self, chats: list[Chat], continuations: list[str]) -> list[Scored]:
        out = []
        for chat, cont in zip(chats, continuations, strict=True):
            prompt = chat[-1]["content"]
            self.scored.append((prompt, cont))
            total, n = self.logp(prompt, cont), self.tokens(cont)
            out.append(Scored(total=total, tokens=[total / n] * n))
        return out

    def _generate(self, chats: list[Chat], sampling: dict[str, Any]) -> list[Completion]:
        return [
            Completion(text=self.reply(chat), prompt_tokens=5, completion_tokens=5)
            for chat in chats
        ]


@dataclass
class FakeSubject:
    llm: Any
    label: str = "fake-model"

    def inspect_model(self, max_tokens: int) -> Any:
        from specalign.eval.inspect_model import inspect_model

        return inspect_model(self.llm, self.label, max_tokens=max_tokens)


def run_of(llm: LLM, items: list[dict[str, Any]], tmp_path: Path, spec: Any = None) -> EvalRun:
    return EvalRun(FakeSubject(llm), items, tmp_path, spec)


def mock_model(answer: Callable[[str], str]) -> Any:
    """An inspect mockllm whose reply is answer(last user message), with usage set."""
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    def output(messages: list[Any], *_: Any) -> ModelOutput:
        text = answer(messages[-1].text)
        out = ModelOutput.from_content(model="mockllm", content=text)
        out.usage = ModelUsage(input_tokens=10, output_tokens=len(text.split()), total_tokens=20)
        return out

    return get_model("mockllm/model", custom_outputs=output, memoize=False)
