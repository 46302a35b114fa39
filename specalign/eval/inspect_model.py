"""inspect_ai's view of our LLM interface: a `ModelAPI` named "specalign" over any `LLM`
(the model under evaluation, held in memory; or a grader built from a synthesizer config).

inspect runs samples concurrently and calls `generate` once per sample; a local model is
fastest when those calls share a batch. Requests that arrive together are therefore queued
and sent to the LLM as one `generate` (or `score`) call, which also puts them through the
request cache (keyed by the LLM's identity: the model's artifact key) and its budget.

Offline: inspect's default token counter downloads a tiktoken encoding, so counting uses the
model's own tokenizer, and every output carries its usage.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
from inspect_ai.model import (
    ChatMessage,
    GenerateConfig,
    Model,
    ModelAPI,
    ModelOutput,
    ModelUsage,
    get_model,
    modelapi,
)

PROVIDER = "specalign"
STOP_REASONS = {"stop": "stop", "length": "max_tokens", "error": "unknown"}
Chat = list[dict[str, str]]


def as_chat(messages: list[ChatMessage]) -> Chat:
    return [{"role": m.role, "content": m.text} for m in messages]


def sampling_of(config: GenerateConfig, default_max_tokens: int) -> dict[str, Any]:
    """inspect's generation settings in our sampling terms; greedy unless a task says not."""
    return {
        "temperature": 0.0 if config.temperature is None else float(config.temperature),
        "top_p": 1.0 if config.top_p is None else float(config.top_p),
        "max_new_tokens": int(config.max_tokens or default_max_tokens),
        "seed": int(config.seed or 0),
    }


class RequestBatcher:
    """Collects requests that arrive within `wait_s` of each other into one LLM call (run in
    a worker thread, so inspect's event loop keeps serving the other samples)."""

    def __init__(self, call: Any, wait_s: float = 0.05, max_batch: int = 512) -> None:
        self.call = call  # call(params, payloads) -> results, in order
        self.wait_s = wait_s
        self.max_batch = max_batch
        self.pending: dict[str, list[tuple[Any, asyncio.Future]]] = {}
        self.flushing: dict[str, asyncio.Task] = {}

    async def submit(self, params: dict[str, Any], payload: Any) -> Any:
        group = json.dumps(params, sort_keys=True)
        future = asyncio.get_running_loop().create_future()
        self.pending.setdefault(group, []).append((payload, future))
        task = self.flushing.get(group)
        if task is None or task.done():
            self.flushing[group] = asyncio.create_task(self.flush(group, params))
        return await future

    async def flush(self, group: str, params: dict[str, Any]) -> None:
        """Until the group is empty: wait for arrivals to pause, send what is there as one
        call (requests arriving meanwhile are the next call's)."""
        while self.pending[group]:
            seen = -1
            while seen != len(self.pending[group]) and len(self.pending[group]) < self.max_batch:
                seen = len(self.pending[group])
                await asyncio.sleep(self.wait_s)
            batch = self.pending[group][: self.max_batch]
            self.pending[group] = self.pending[group][self.max_batch :]
            try:
                results = await anyio.to_thread.run_sync(
                    self.call, params, [payload for payload, _ in batch]
                )
            except BaseException as err:  # every waiting sample sees the failure
                for _, future in batch:
                    future.set_exception(err)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)


class SpecalignModelAPI(ModelAPI):
    """Model args: `llm` (an `LLM`), optional `tokenizer` (to count tokens offline),
    `max_tokens` (default new tokens) and `connections` (samples in flight)."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig = GenerateConfig(),  # noqa: B008 - inspect's own signature
        llm: Any = None,
        tokenizer: Any = None,
        max_tokens: int = 256,
        connections: int = 256,
        **_: Any,
    ) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config)
        if llm is None:
            raise ValueError("the specalign model API needs model_args llm=<LLM>")
        self.llm = llm
        self.tokenizer = tokenizer
        self.default_max_tokens = int(max_tokens)
        self.connections = int(connections)
        self.generations = RequestBatcher(lambda params, chats: self.llm.generate(chats, params))
        self.scores = RequestBatcher(
            lambda _, pairs: self.llm.score([c for c, _ in pairs], [x for _, x in pairs])
        )

    def max_connections(self) -> int:
        return self.connections

    def max_tokens(self) -> int | None:
        return self.default_max_tokens

    async def count_text_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(text) // 4 + 1

    async def generate(
        self, input: list[ChatMessage], tools: list[Any], tool_choice: Any, config: GenerateConfig
    ) -> ModelOutput:
        params = sampling_of(config, self.default_max_tokens)
        completion = await self.generations.submit(params, as_chat(input))
        output = ModelOutput.from_content(
            model=self.model_name,
            content=completion.text,
            stop_reason=STOP_REASONS.get(completion.finish_reason, "unknown"),
        )
        output.usage = ModelUsage(
            input_tokens=completion.prompt_tokens,
            output_tokens=completion.completion_tokens,
            total_tokens=completion.prompt_tokens + completion.completion_tokens,
        )
        return output

    async def score(self, chat: Chat, continuation: str) -> float:
        """log p(continuation | chat), batched with concurrent calls (graders' verdicts)."""
        scored = await self.scores.submit({}, (chat, continuation))
        return float(scored.total)


# registered under "specalign/<label>"; the decorator returns a factory, so the class keeps
# its name for isinstance checks (a scorer reaching a grader's LLM to score its verdict)
modelapi(name=PROVIDER)(SpecalignModelAPI)


def inspect_model(llm: Any, label: str, *, tokenizer: Any = None, max_tokens: int = 256) -> Model:
    """An inspect `Model` over `llm`; `label` names it in logs (use the model's key)."""
    return get_model(
        f"{PROVIDER}/{label}", llm=llm, tokenizer=tokenizer, max_tokens=max_tokens, memoize=False
    )


def run_inspect_tasks(tasks: list[Any], **eval_args: Any) -> list[Any]:
    """`inspect_ai.eval` of tasks at once (their requests batch together), returning their
    logs in order. inspect sets up logging the first time it runs (the root logger's level
    to its own `warning` default, its handler on the root): the run's own logging is put
    back as it was, so specalign keeps telling its story."""
    from inspect_ai import eval as inspect_eval

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        return list(inspect_eval(tasks, display="none", **eval_args))
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def run_inspect_task(task: Any, **eval_args: Any) -> Any:
    """`inspect_ai.eval` of one task, returning its log (see run_inspect_tasks)."""
    (log,) = run_inspect_tasks([task], **eval_args)
    return log
