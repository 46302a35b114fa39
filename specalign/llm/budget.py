"""Token and cost accounting per step, with limits that stop a step cleanly.

`check()` runs before each uncached batch: once a limit is reached the step raises
BudgetExceededError; everything generated so far is already in the request cache, so a
re-run with a higher budget continues instead of paying twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    usd_per_1k_prompt: float = 0.0
    usd_per_1k_completion: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_usd(self) -> float:
        return (
            self.prompt_tokens * self.usd_per_1k_prompt
            + self.completion_tokens * self.usd_per_1k_completion
        ) / 1000

    def charge(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def check(self) -> None:
        from specalign.llm.base import BudgetExceededError

        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExceededError(
                f"token budget spent: {self.tokens} >= max_tokens={self.max_tokens}. What was "
                "generated is cached; raise the budget and re-run to continue."
            )
        if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            raise BudgetExceededError(
                f"cost budget spent: ${self.cost_usd:.4f} >= max_cost_usd={self.max_cost_usd}. "
                "What was generated is cached; raise the budget and re-run to continue."
            )

    def summary(self) -> dict[str, float]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }
