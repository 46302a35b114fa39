"""One LLM interface (generate, score) with backends chosen by the `synthesizer` group;
every request goes through an on-disk cache and a token/cost budget."""

from specalign.llm.base import LLM, BudgetExceededError, Completion, Scored
from specalign.llm.budget import Budget
from specalign.llm.cache import RequestCache

__all__ = ["LLM", "Budget", "BudgetExceededError", "Completion", "RequestCache", "Scored"]
