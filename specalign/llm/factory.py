"""Build the run's LLM from the `synthesizer` group: the class it names, plus what only a
run knows (the backbone, the shared request cache under paths.cache, the step's budget)."""

from __future__ import annotations

import inspect
from typing import Any

from hydra.utils import get_class, instantiate

from specalign.llm.base import LLM
from specalign.llm.budget import Budget
from specalign.llm.cache import RequestCache

REQUEST_CACHE = "requests.sqlite"


def request_cache(ctx: Any) -> RequestCache:
    """The run's request cache, with the journal `paths.cache_journal` asks for."""
    journal = str(ctx.section("paths.cache_journal") or "wal")
    return RequestCache(ctx.cache_dir / REQUEST_CACHE, journal_mode=journal)


def player_synthesizer(ctx: Any, override: dict[str, Any] | None) -> dict[str, Any]:
    """A player's synthesizer: the run's `synthesizer` section with the player's keys over
    it, or, when the player names its own `_target_`, the player's config alone."""
    base = dict(ctx.section("synthesizer"))
    if not override:
        return base
    override = dict(override)
    return override if "_target_" in override else {**base, **override}


def build_llm(ctx: Any, section: str = "synthesizer", cfg: dict[str, Any] | None = None) -> LLM:
    """One backend per call; each step gets its own budget (token accounting per step).
    `cfg`: a synthesizer config to build instead of the run's section (a player's)."""
    cfg = dict(ctx.section(section) if cfg is None else cfg)
    cls = get_class(cfg["_target_"])
    budget = Budget(**(cfg.pop("budget", None) or {}))  # a fresh one: accounting per step
    extra: dict[str, Any] = {"cache": request_cache(ctx), "budget": budget}
    if "backbone" in inspect.signature(cls).parameters:
        extra["backbone"] = ctx.backbone
    # a partial, called with the live objects: instantiate() would turn a dataclass kwarg
    # (the Budget) into a config node
    return instantiate(cfg, _partial_=True, _convert_="all")(**extra)
