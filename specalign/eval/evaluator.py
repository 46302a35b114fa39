"""The evaluator contract. An evaluator is a small named class (one file each in this package),
configured under `eval.evaluators.<name>` (conf/eval/), that

- says which items of the run's `eval_items` artifact it reads (`items`: "rules" or
  "forced_choice") and which of them it uses (`select`, where CPU sizes apply);
- says why it does not apply, when it does not (`skip_reason`): the eval step then logs the
  reason and moves on, so every spec can run every stage;
- scores one model (`evaluate`), returning per-item rows and their `Measure`s, and writes an
  inspect log of what it did into the step artifact;
- turns rows back into measures (`measures`), so a base model's stored rows can be paired
  with a trained model's to compute shifts.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError, SpecAlignError
from specalign.eval.records import EvalResult, Measure


@dataclass
class EvalSubject:
    """The model under evaluation, loaded once per eval step and shared by its evaluators."""

    label: str  # the model's artifact key (or the backbone's): its cache identity and log name
    model: Any
    tokenizer: Any
    backbone: Any
    batch_size: int = 16
    cache: Any = None  # the run's request cache: a killed eval resumes without regenerating
    artifact: Any = None  # the model artifact (None: the backbone), whose files vLLM loads

    @cached_property
    def llm(self) -> Any:
        """Generation and scoring through the LLM interface (request cache, batching)."""
        from specalign.llm.hf_backend import LoadedModelBackend

        return LoadedModelBackend(
            backbone=self.backbone,
            model=self.model,
            label=self.label,
            batch_size=self.batch_size,
            cache=self.cache,
        )

    def inspect_model(self, max_tokens: int) -> Any:
        from specalign.eval.inspect_model import inspect_model

        return inspect_model(self.llm, self.label, tokenizer=self.tokenizer, max_tokens=max_tokens)


@dataclass
class EvalRun:
    """What an evaluator gets for one model: the subject, its items, where its logs go, the
    spec, and a way to build the grader (`eval.grader`) when it needs one."""

    subject: EvalSubject
    items: list[dict[str, Any]]
    log_dir: Path
    spec: Any
    grader: Any = None  # a zero-argument callable returning an LLM
    seed: int = 0


def fixed_sample(ids: list[str], n: int | None) -> set[str]:
    """At most n of the ids, ranked by their sha256: the same ones for every model and run
    whatever order the data lists them in, and a larger n keeps a smaller one's ids."""
    if n is None or n >= len(ids):
        return set(ids)
    return set(sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[: int(n)])


def greedy_answers(run: EvalRun, prompts: list[str], max_tokens: int) -> list[str]:
    """The subject's greedy answer to each prompt as a single user turn (the refusal-style
    evaluators judge these; greedy, so a re-run and the request cache agree)."""
    chats = [[{"role": "user", "content": prompt}] for prompt in prompts]
    sampling = {"temperature": 0.0, "max_new_tokens": max_tokens, "seed": run.seed}
    return [answer.text for answer in run.subject.llm.generate(chats, sampling)]


class Evaluator:
    """Base class; subclasses set `items` and implement `evaluate` and `measures`."""

    items: ClassVar[str] = "rules"  # which file of the eval_items artifact it reads
    needs_grader: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    def select(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items this evaluator scores (all of them unless a size setting says less)."""
        return items

    def skip_reason(self, items: list[dict[str, Any]], spec: Any) -> str | None:
        """Why this evaluator does not apply to the run (None: it does)."""
        if not items:
            return f"spec {spec.id} has no {self.items} eval items"
        return None

    def evaluate(self, run: EvalRun) -> EvalResult:
        raise NotImplementedError

    def measures(self, rows: list[dict[str, Any]]) -> dict[str, Measure]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """Hashes of files the evaluator reads (prompt templates), for the eval step's key."""
        return {}


def build_evaluators(configs: dict[str, Any] | None) -> dict[str, Evaluator]:
    """`eval.evaluators` as instances; a config a user got wrong is one line with the key
    and the fix, never a Hydra instantiation traceback."""
    from hydra.utils import get_class

    evaluators: dict[str, Evaluator] = {}
    for name, cfg in (configs or {}).items():
        if cfg is None:  # set to null by a preset or size file: not run (like a stage step)
            continue
        key = f"eval.evaluators.{name}"
        if not isinstance(cfg, dict) or not cfg.get("_target_"):
            raise ConfigError(f"{key}: needs a `_target_` naming an evaluator class (conf/eval/).")
        target = str(cfg["_target_"])
        try:
            cls = get_class(target)
        except Exception as err:
            raise ConfigError(
                f"{key}._target_={target}: no such class. Fix: choose evaluators with "
                "eval=<option> (see conf/eval/) or name a class in specalign.eval."
            ) from err
        if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
            raise ConfigError(f"{key}._target_={target}: not a specalign Evaluator.")
        kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "name"}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ConfigError(
                f"{key}: unknown setting(s) {unknown}. Fix: remove them; {cls.__name__} "
                f"takes {sorted(accepted)}."
            )
        try:
            evaluators[name] = cls(name, **kwargs)
        except SpecAlignError:
            raise
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}: {err}. Fix: check the settings in conf/eval/.") from err
    return evaluators
