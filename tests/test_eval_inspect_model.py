"""The inspect model API over our LLMs: concurrent requests become one batched call, none is
lost when it arrives while a call is running, and outputs carry usage (no tiktoken)."""

from __future__ import annotations

import asyncio
import time

from eval_fakes import FunctionLLM

from specalign.eval.inspect_model import RequestBatcher, inspect_model


def test_requests_that_arrive_together_share_one_call_and_late_ones_are_served():
    calls: list[list[int]] = []

    def call(params, payloads):
        calls.append(list(payloads))
        time.sleep(0.2)  # a slow model: the late requests arrive while this runs
        return [p * 10 for p in payloads]

    batcher = RequestBatcher(call, wait_s=0.02, max_batch=3)

    async def main():
        early = [asyncio.create_task(batcher.submit({}, i)) for i in range(4)]
        await asyncio.sleep(0.1)
        late = [asyncio.create_task(batcher.submit({}, i)) for i in (7, 8)]
        return await asyncio.wait_for(asyncio.gather(*early, *late), timeout=10)

    assert asyncio.run(main()) == [0, 10, 20, 30, 70, 80]
    assert calls[0] == [0, 1, 2] and sorted(x for c in calls for x in c) == [0, 1, 2, 3, 7, 8]
    assert len(calls) <= 3


def test_generations_through_inspect_are_batched_and_counted():
    from inspect_ai.model import GenerateConfig

    seen_batches: list[int] = []

    class Counting(FunctionLLM):
        def _generate(self, chats, sampling):
            seen_batches.append(len(chats))
            assert sampling["temperature"] == 0.0 and sampling["max_new_tokens"] == 7
            return super()._generate(chats, sampling)

    llm = Counting(reply=lambda chat: chat[-1]["content"].upper())
    model = inspect_model(llm, "m", max_tokens=7)

    async def main():
        config = GenerateConfig(temperature=0.0)
        return await asyncio.gather(*(model.generate(f"hi {i}", config=config) for i in range(5)))

    outputs = asyncio.run(main())
    assert [o.completion for o in outputs] == [f"HI {i}" for i in range(5)]
    assert seen_batches == [5] and all(o.usage.output_tokens == 5 for o in outputs)
