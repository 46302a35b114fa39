"""What every LLM synthesis step shares: its prompts (files), its LLM (from the factory, so
requests go through the request cache and the step's budget), its key material, reply
parsing with retries and counted rejects, the leakage check, and publishing the dataset
(Arrow + a JSONL preview + a W&B table of a sample) with the gates' kept / dropped counts.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from hydra.utils import get_class

from specalign.errors import SpecAlignError
from specalign.pipeline.dataset_io import save_dataset
from specalign.pipeline.key_sections import key_section, key_synthesizer
from specalign.pipeline.step import Artifact, Step
from specalign.synth.gates import GateReport, LeakageCheck
from specalign.synth.judge import Judge
from specalign.synth.prompts import PromptTemplate, load_prompts

log = logging.getLogger(__name__)
Chat = list[dict[str, str]]


def llm_key_material(ctx: Any) -> dict[str, Any]:
    """The synthesizer settings that change answers, plus the backbone when the backend
    generates with the run's backbone (synthesizer=local, or vllm without a model)."""
    cfg = key_synthesizer(ctx.section("synthesizer") or {})
    material: dict[str, Any] = {"synthesizer": cfg}
    if uses_backbone(cfg):
        material["backbone"] = key_section("backbone", ctx.section("backbone"))
    return material


def uses_backbone(cfg: dict[str, Any]) -> bool:
    """Whether the synthesizer generates with the run's backbone (no `model` of its own)."""
    try:
        takes = "backbone" in inspect.signature(get_class(cfg["_target_"])).parameters
    except Exception:  # an unknown class fails later, when the step builds it, with the fix
        takes = False
    return takes and not cfg.get("model")


def generator_name(ctx: Any) -> str:
    """Who wrote the rows (provenance): the synthesizer's model, the run's backbone, or else
    the backend class."""
    cfg = ctx.section("synthesizer")
    if cfg.get("model"):
        return str(cfg["model"])
    return str(ctx.section("backbone")["name"] if uses_backbone(cfg) else cfg["_target_"])


class SynthesisStep(Step):
    """Base of the LLM-driven steps. Subclasses declare `prompt_roles`: role -> the
    variables its prompt file may use; the files come from the `prompts` setting."""

    produces = "dataset"
    optional = ("eval_items",)  # what the leakage gate checks against (leak_ngram)
    uses = ("spec", "seed")
    prompt_roles: ClassVar[dict[str, set[str]]] = {}
    preview_rows: ClassVar[int] = 20

    def __init__(self, name: str, settings: dict[str, Any], ctx: Any) -> None:
        super().__init__(name, settings, ctx)
        self.prompts: dict[str, PromptTemplate] = load_prompts(
            settings, self.needed_prompts(), name
        )
        self.report = GateReport(name)
        self.retries = 0  # reply retries across this step's `ask` calls
        self.truncated: dict[str, int] = {}  # role -> kept replies cut at max_new_tokens
        self.constrained: dict[str, int] = {}  # role -> requests decoded under their schema

    def needed_prompts(self) -> dict[str, set[str]]:
        """The roles this configuration calls (a mode without LLM calls needs none)."""
        return self.prompt_roles

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    def reply_schemas(self) -> dict[str, Any]:
        """Role -> the JSON schema its replies are decoded under (as the settings and spec
        make it; per-request enums narrow it further). In the key: a schema that changes,
        in code or through a setting, re-runs the step. Judges' answer schemas by default."""
        from specalign.llm import schemas
        from specalign.synth.judge import SCALE, YES_NO

        return {"judge_yes_no": schemas.answer(YES_NO), "judge_scale": schemas.answer(SCALE)}

    def fingerprint(self) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "prompts": {role: p.sha256() for role, p in sorted(self.prompts.items())},
        }
        if self.prompts:
            extra["llm"] = llm_key_material(self.ctx)
            extra["reply_schemas"] = self.reply_schemas()
        return extra

    def key_settings(self) -> dict[str, Any]:
        """Prompt files enter the key by their hashes (fingerprint), not by their paths."""
        return {k: v for k, v in super().key_settings().items() if k != "prompts"}

    def required_inputs(self) -> tuple[str, ...]:
        """With the leakage gate on, the eval items it checks against must be wired in."""
        return (*self.consumes, "eval_items") if self.setting("leak_ngram") else self.consumes

    @cached_property
    def llm(self) -> Any:
        from specalign.llm.factory import build_llm

        return build_llm(self.ctx)

    def release(self) -> None:
        if "llm" in self.__dict__:
            self.__dict__.pop("llm").close()

    def leakage(self, inputs: dict[str, Artifact]) -> LeakageCheck:
        """The leakage gate over the run's eval items (the `eval_items` input)."""
        from specalign.eval.items import eval_item_texts

        return LeakageCheck(eval_item_texts(inputs["eval_items"]), int(self.setting("leak_ngram")))

    @cached_property
    def provenance(self) -> dict[str, Any]:
        return {
            "spec_id": self.ctx.spec.id,
            "spec_hash": self.ctx.spec.hash,
            "generator": generator_name(self.ctx),
            "seed": int(self.ctx.cfg.seed),
        }

    def new_judge(self) -> Judge:
        """A judge on this step's LLM from its `judge` setting ({method, max_attempts}); its
        attempts default to the step's `max_attempts`."""
        cfg = dict(self.setting("judge") or {})
        cfg.setdefault("max_attempts", int(self.setting("max_attempts", 3)))
        return Judge(self.llm, **cfg)

    def sampling(self, **overrides: Any) -> dict[str, Any]:
        """The step's `sampling` setting over the synthesizer's, the run seed, then overrides."""
        return {"seed": int(self.ctx.cfg.seed), **(self.setting("sampling") or {}), **overrides}

    def ask(
        self,
        role: str,
        chats: list[Chat],
        parse: Callable[[str], Any],
        *,
        sampling: dict[str, Any] | None = None,
        fix: str = "Reply again in the requested format.",
        schema: dict[str, Any] | list[dict[str, Any] | None] | None = None,
        llm: Any = None,
    ) -> list[Any | None]:
        """Generate and parse; invalid replies are retried, then counted as `<role>_reject`.
        `schema`: the JSON schema of the replies (one, or one per chat), enforced by
        backends that decode under it. `llm`: another backend than the step's (a player's)."""
        from specalign.llm.structured import generate_parsed

        if not chats:
            return []
        log.info("%s: %d %s request(s)", self.name, len(chats), role)
        values, stats = generate_parsed(
            self.llm if llm is None else llm,
            chats,
            parse,
            max_attempts=int(self.setting("max_attempts", 3)),
            sampling=sampling or self.sampling(),
            fix=fix,
            truncated=str(self.setting("truncated", "keep")),
            schema=schema,
            desc=self.name if role == self.name else f"{self.name} {role}",
        )
        if stats.constrained:
            self.constrained[role] = self.constrained.get(role, 0) + stats.constrained
        if stats.truncated:
            self.truncated[role] = self.truncated.get(role, 0) + stats.truncated
            log.info(
                "%s: %d %s replies kept though cut at max_new_tokens",
                self.name,
                stats.truncated,
                role,
            )
        if stats.truncated_dropped:
            self.report.drop(f"{role}_truncated", len(stats.truncated_dropped))
        if stats.rejects:
            self.report.drop(f"{role}_reject", len(stats.rejects))
            first = next(iter(stats.errors.values()))
            log.warning(
                "%s: %d of %d %s replies invalid after retries (e.g. %s)",
                self.name,
                len(stats.rejects),
                len(chats),
                role,
                first,
            )
        self.retries += stats.retries
        return values

    def require(self, rows: list[Any], what: str) -> None:
        """Stop with the reasons when a level kept nothing: later levels would be empty."""
        if not rows:
            raise SpecAlignError(
                f"step {self.name}: no {what} survived (dropped: {dict(self.report.dropped)}). "
                "The synthesizer's replies were unusable: use a stronger model "
                "(synthesizer=vllm|openai), raise max_attempts or max_new_tokens, or check the "
                f"prompts ({', '.join(str(p.path) for p in self.prompts.values())})."
            )

    def publish(self, rows: list[dict[str, Any]], out: Path, table: str) -> dict[str, Any]:
        """Save the dataset, a JSONL preview and a W&B table of a seeded sample; metrics are
        the gates' counts and the LLM's usage."""
        from datasets import Dataset

        self.require(rows, table)
        dataset = Dataset.from_list(rows)
        rng = random.Random(int(self.ctx.cfg.seed))
        sample = sorted(rng.sample(range(len(rows)), min(self.preview_rows, len(rows))))
        save_dataset(dataset, out, preview_indices=sample)
        self.log_table(table, [rows[i] for i in sample])
        metrics: dict[str, Any] = {"rows": len(rows), **self.report.metrics(len(rows))}
        metrics.update({f"truncated/{role}": n for role, n in sorted(self.truncated.items())})
        metrics.update({f"constrained/{role}": n for role, n in sorted(self.constrained.items())})
        if "llm" in self.__dict__:  # only if this run called it (a cached level never builds it)
            metrics.update(
                {"llm_calls": self.llm.calls, "retries": self.retries},
                **self.llm.budget.summary(),
            )
            if getattr(self.llm, "schema_unsupported", False):
                metrics["schema_unsupported"] = True  # the server ignored response_format
        return metrics
