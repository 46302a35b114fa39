"""The triage step: label every pair of an existing preference dataset against the new spec
(labels.py). For each pair a judge answers, of chosen and of rejected separately, "does
this response violate the new spec?" (prompts/trace/violation_judge.txt, with the rules
the pair names, or the whole spec, in context); `judge: labels` reads labels the data
already carries instead.

With the spec diff wired in (`diff` input) only pairs whose rule ids touch an added,
removed or changed rule go to the judge; the others keep their preference (RETAIN) without
a call, and the manifest counts both. A pair without rule ids is always judged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from specalign.errors import ConfigError
from specalign.pipeline.dataset_io import load_dataset
from specalign.pipeline.step import Artifact
from specalign.synth.judge import Judge
from specalign.synth.llm_step import SynthesisStep
from specalign.trace.labels import LABELS, label_of, labels_in_data

log = logging.getLogger(__name__)
JUDGES = ("llm", "labels")
CONTEXTS = ("rules", "spec")
TOUCHED = ("added", "removed", "changed")


def reply_text(turns: Any) -> str:
    return turns if isinstance(turns, str) else "\n".join(t["content"] for t in turns)


def user_text(turns: Any) -> str:
    if isinstance(turns, str):
        return turns
    return "\n".join(f"{t['role']}: {t['content']}" for t in turns if t["role"] != "system")


class TriagePreferences(SynthesisStep):
    consumes = ("dataset",)
    optional = ("diff", "eval_items")
    slot_kinds: ClassVar[dict[str, str]] = {"diff": "dataset"}
    uses = ("spec",)
    prompt_roles: ClassVar[dict[str, set[str]]] = {
        "violation_judge": {"policy", "rules", "prompt", "response", "model_name", "provider"}
    }

    def __init__(self, name: str, settings: dict[str, Any], ctx: Any) -> None:
        for key, allowed in (("judge", JUDGES), ("context", CONTEXTS)):
            if settings.get(key, allowed[0]) not in allowed:
                value = settings.get(key)
                raise ConfigError(
                    f"stage.steps.{name}.{key}={value!r}: choose one of {list(allowed)}."
                )
        super().__init__(name, settings, ctx)

    def needed_prompts(self) -> dict[str, set[str]]:
        return {} if self.setting("judge", "llm") == "labels" else self.prompt_roles

    def touched_rules(self, inputs: dict[str, Artifact]) -> set[str] | None:
        """Rule ids the spec diff marks added / removed / changed; None: no diff wired."""
        if "diff" not in inputs:
            return None
        return {r["rule_id"] for r in load_dataset(inputs["diff"]) if r["change"] in TOUCHED}

    def context(self, rule_ids: list[str]) -> str:
        """The policy text the judge reads: the pair's rules (as the new spec states them),
        or the whole spec when asked or when the pair names none of its rules."""
        spec = self.ctx.spec
        known = [r for r in rule_ids if r in {rule.id for rule in spec.rules}]
        if self.setting("context", "rules") == "spec" or not known:
            return spec.text
        lines = []
        for rule in (spec.rule(r) for r in known):
            exception = f" Exception: {rule.exception}" if rule.exception else ""
            lines.append(f"[{rule.id}] {rule.text}{exception}")
        return "\n".join(lines)

    def judge_rows(self, rows: list[dict[str, Any]]) -> list[tuple[bool, bool] | None]:
        """(chosen violates, rejected violates) per row; None where the judge gave no answer."""
        judge = Judge(self.llm, **(self.setting("judging") or {"method": "auto"}))
        threshold = float(self.setting("threshold", 0.5))
        template = self.prompts["violation_judge"]
        spec = self.ctx.spec
        chats = []
        for row in rows:
            for side in ("chosen", "rejected"):
                chats.append(
                    template.render(
                        policy=f"{spec.id} {spec.version}",
                        rules=self.context(list(row.get("rule_ids") or [])),
                        prompt=user_text(row["prompt"]),
                        response=reply_text(row[side]),
                        model_name=spec.model_name,
                        provider=spec.provider,
                    )
                )
        probabilities = judge.yes_probability(chats)
        self.judge_stats = judge.metrics("judge")
        out: list[tuple[bool, bool] | None] = []
        for i in range(len(rows)):
            chosen, rejected = probabilities[2 * i], probabilities[2 * i + 1]
            if chosen is None or rejected is None:
                out.append(None)
                continue
            out.append((chosen >= threshold, rejected >= threshold))
            rows[i]["p_chosen_violates"], rows[i]["p_rejected_violates"] = chosen, rejected
        return out

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        rows = load_dataset(inputs["dataset"]).to_list()
        mode = self.setting("judge", "llm")
        touched = self.touched_rules(inputs)
        spec_ids = {rule.id for rule in self.ctx.spec.rules}
        routed = []
        for row in rows:
            ids = list(row.get("rule_ids") or [])
            row["routed_to_judge"] = touched is None or not ids or bool(set(ids) & touched)
            routed.append(row["routed_to_judge"])
        to_judge = [row for row, go in zip(rows, routed, strict=True) if go]
        if mode == "labels":
            where = f"{inputs['dataset'].step} ({inputs['dataset'].key})"
            verdicts = [labels_in_data(row, where) for row in to_judge]
        else:
            log.info(
                "%s: judging %d of %d pairs against %s",
                self.name,
                len(to_judge),
                len(rows),
                self.ctx.spec.id,
            )
            verdicts = self.judge_rows(to_judge)
        unjudged = 0
        for row, verdict in zip(to_judge, verdicts, strict=True):
            if verdict is None:  # counted; the pair keeps its preference
                unjudged += 1
                verdict = (False, False)
            row["chosen_violates"], row["rejected_violates"] = verdict
        for row in rows:
            if not row["routed_to_judge"]:  # the diff says no rule of this pair changed
                row["chosen_violates"], row["rejected_violates"] = False, False
            row["triage"] = label_of(row["chosen_violates"], row["rejected_violates"])
            violated = row["chosen_violates"] or row["rejected_violates"]
            row["violated_rule_ids"] = (
                [r for r in (row.get("rule_ids") or []) if r in spec_ids] if violated else []
            )
            row.setdefault("p_chosen_violates", None)
            row.setdefault("p_rejected_violates", None)
        metrics = self.publish(rows, out, "triage")
        counts = {label: sum(r["triage"] == label for r in rows) for label in LABELS}
        metrics.update({f"label/{k.lower()}": v for k, v in counts.items()})
        metrics.update(
            judge=mode,
            judged=len(to_judge),
            retained_by_diff=len(rows) - len(to_judge),
            unjudged=unjudged,
            **getattr(self, "judge_stats", {}),
        )
        log.info(
            "%s: %s (%d judged, %d kept by the spec diff without a call)",
            self.name,
            ", ".join(f"{k} {v}" for k, v in counts.items()),
            len(to_judge),
            len(rows) - len(to_judge),
        )
        return metrics
