"""Spec steps of the stage graph: rule annotations and sampled instances as datasets.

Both are keyed by the spec's content hash and their own settings, so editing the spec or
switching annotators recomputes them, and nothing else does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate

from specalign.errors import ConfigError, StepNotImplementedError
from specalign.pipeline.dataset_io import load_dataset, save_dataset
from specalign.pipeline.step import Artifact, Step
from specalign.spec.instances import DEFAULT_ORDER, sample_instances
from specalign.spec.model import Annotation
from specalign.spec.spec import load_named_spec

ANNOTATION_FIELDS = (
    "direction",
    "stage",
    "domain",
    "family",
    "priority",
    "has_exception",
    "specificity",
    "annotator",
)


class AnnotateRules(Step):
    """One row per rule: the rule (id, text, section, rationale, ...) and its tags."""

    produces = "dataset"
    uses = ("spec", "annotator")

    def __init__(self, name: str, settings: dict[str, Any], ctx: Any) -> None:
        super().__init__(name, settings, ctx)
        llm = (ctx.section("annotator") or {}).get("llm")
        if llm is not None:  # fail at plan time, not after the spec work, if it cannot run
            try:
                get_class(llm["_target_"])
            except Exception as err:
                raise StepNotImplementedError(
                    f"annotator=llm: not implemented yet: the LLM backend {llm['_target_']} "
                    "(specalign.llm). Use annotator=keyword for now."
                ) from err

    def fingerprint(self) -> dict[str, Any]:
        """annotator=llm: the synthesizer settings that change answers, and the backbone when
        it is the one generating (another backbone must not reuse these annotations)."""
        if (self.ctx.section("annotator") or {}).get("llm") is None:
            return {}
        from specalign.synth.llm_step import llm_key_material

        return {"llm": llm_key_material(self.ctx)}

    def estimate(self) -> dict[str, Any] | None:
        """First-attempt calls and an upper bound on tokens (prompt ~4 chars per token)."""
        cfg = self.ctx.section("annotator")
        if "llm" not in cfg:
            return None
        from specalign.spec.annotate import prompt

        rules = self.ctx.spec.rules
        prompt_tokens = sum(len(prompt(rule)) // 4 for rule in rules)
        completion = len(rules) * int(cfg.get("max_new_tokens", 256))
        return {
            "llm_calls": len(rules),
            "max_llm_calls": len(rules) * cfg["max_attempts"],
            "prompt_tokens~": prompt_tokens,
            "max_completion_tokens": completion,
        }

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from datasets import Dataset

        spec = self.ctx.spec
        cfg = self.ctx.section("annotator")
        llm = None
        if "llm" in cfg:  # the LLM comes from the factory: backbone, request cache, budget
            from specalign.llm.factory import build_llm

            llm = build_llm(self.ctx)
            cfg = {k: v for k, v in cfg.items() if k != "llm"}
        try:
            annotator = instantiate(cfg, **({"llm": llm} if llm is not None else {}))
        except InstantiationException as err:
            raise StepNotImplementedError(f"annotator: cannot be built: {err}") from err
        annotations = annotator.annotate(spec)
        rows = [
            {
                **rule.to_dict(),
                "section": list(rule.section),
                "examples": list(rule.examples),
                **{k: getattr(annotations[rule.id], k) for k in ANNOTATION_FIELDS},
                "spec_id": spec.id,
                "spec_hash": spec.hash,
            }
            for rule in spec.rules
        ]
        save_dataset(Dataset.from_list(rows), out, preview_rows=len(rows))
        self.log_table("rules", rows)
        directions = Counter(row["direction"] for row in rows)
        stages = Counter(row["stage"] for row in rows)
        return {
            "rules": len(rows),
            "do": directions["do"],
            "dont": directions["dont"],
            **{f"stage/{k}": v for k, v in sorted(stages.items())},
            "domains": len({row["domain"] for row in rows}),
            "families": len({row["family"] for row in rows}),
            "rejects": len(getattr(annotator, "rejects", [])),
            "retries": getattr(annotator, "retries", 0),
            "constrained": getattr(annotator, "constrained", 0),
            **({"llm_calls": llm.calls, **llm.budget.summary()} if llm is not None else {}),
        }


class SampleInstances(Step):
    """`count` sub-specs of `min_rules`-`max_rules` rules under SpecAlign's constraints."""

    consumes = ("dataset",)
    produces = "dataset"
    uses = ("seed",)

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        from datasets import Dataset

        rules = load_dataset(inputs["dataset"])
        pool = [
            Annotation(rule_id=row["id"], **{k: row[k] for k in ANNOTATION_FIELDS}) for row in rules
        ]
        by_id = {a.rule_id: a for a in pool}
        spec_id = rules[0]["spec_id"]
        instances = sample_instances(
            pool,
            int(self.settings.get("count", 64)),
            min_rules=int(self.settings.get("min_rules", 8)),
            max_rules=int(self.settings.get("max_rules", 13)),
            seed=int(self.ctx.cfg.seed),
            order_by=tuple(self.settings.get("order_by", DEFAULT_ORDER)),
            prefix=spec_id,
        )
        rows = []
        for inst in instances:
            chosen = [by_id[r] for r in inst.rule_ids]
            rows.append(
                {
                    **inst.to_dict(),
                    "rule_ids": list(inst.rule_ids),
                    "size": len(chosen),
                    "do": sum(a.direction == "do" for a in chosen),
                    "dont": sum(a.direction == "dont" for a in chosen),
                    "stages": sorted({a.stage for a in chosen}),
                    "domains": sorted({a.domain for a in chosen}),
                    "families": sorted({a.family for a in chosen}),
                    "spec_id": spec_id,
                    "spec_hash": rules[0]["spec_hash"],
                }
            )
        save_dataset(Dataset.from_list(rows), out)
        self.log_table("instances", rows[:50])
        return {
            "instances": len(rows),
            "mean_size": sum(r["size"] for r in rows) / len(rows),
            "mean_domains": sum(len(r["domains"]) for r in rows) / len(rows),
            "mean_families": sum(len(r["families"]) for r in rows) / len(rows),
            "max_do_dont_gap": max(abs(r["do"] - r["dont"]) for r in rows),
        }


class SpecDiffStep(Step):
    """Rules added, removed and changed between `spec.previous` and the run's spec: what
    TRACE re-aligns for. Keyed by both specs' content hashes."""

    produces = "dataset"
    uses = ("spec",)

    def previous(self) -> Any:
        name = self.ctx.spec.settings.get("previous")
        if not name:
            raise ConfigError(
                f"spec={self.ctx.spec.id}: a spec diff needs `previous: <spec option or path>` "
                f"in conf/spec/{self.ctx.spec.id}.yaml (e.g. spec=harm_policy_v2)."
            )
        return load_named_spec(str(name))

    def fingerprint(self) -> dict[str, Any]:
        return {"previous_hash": self.previous().hash}

    def run(self, inputs: dict[str, Artifact], out: Path, work: Path) -> dict[str, Any]:
        import json

        from datasets import Dataset

        from specalign.spec.diff import diff_specs

        old, new = self.previous(), self.ctx.spec
        diff = diff_specs(old, new)
        (out / "diff.json").write_text(json.dumps(diff.to_dict(), indent=2))
        changed = {c.id: c for c in diff.changed}
        rows = []
        for kind, ids in (
            ("added", diff.added),
            ("removed", diff.removed),
            ("changed", tuple(changed)),
            ("unchanged", diff.unchanged),
        ):
            for rule_id in ids:
                before = old.rule(rule_id).text if kind != "added" else ""
                after = new.rule(rule_id).text if kind != "removed" else ""
                rows.append(
                    {
                        "rule_id": rule_id,
                        "change": kind,
                        "fields": list(changed[rule_id].fields) if kind == "changed" else [],
                        "old_text": before,
                        "new_text": after,
                        "old_spec": old.id,
                        "new_spec": new.id,
                        "old_hash": old.hash,
                        "new_hash": new.hash,
                    }
                )
        save_dataset(Dataset.from_list(rows), out, preview_rows=len(rows))
        self.log_table("spec_diff", rows)
        return {
            "added": len(diff.added),
            "removed": len(diff.removed),
            "changed": len(diff.changed),
            "unchanged": len(diff.unchanged),
        }
